from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "matching"

    def ready(self) -> None:
        from matching.erasure import erase
        from mdm.erasure import erasure_hook_register

        erasure_hook_register("matching", erase)
