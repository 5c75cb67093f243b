from django.apps import AppConfig


class MdmConfig(AppConfig):
    name = "mdm"
    verbose_name = "Master data"

    def ready(self) -> None:
        from config.celery import ensure_broker_folders

        ensure_broker_folders()
