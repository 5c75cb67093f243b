import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
application = get_wsgi_application()


def _warm_up() -> None:
    """Import what the first requests would (the URLconf, the domain modules with their
    normaliser libraries) while the worker starts, not while a client waits."""
    from django.urls import get_resolver

    from mdm.domains import all_domains

    get_resolver().url_patterns  # noqa: B018  # imports every app's views
    all_domains()


_warm_up()
