from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "mdm.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from mdm.audit import receivers  # noqa: F401  (login signals)
