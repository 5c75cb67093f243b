import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django_application = get_wsgi_application()

from config.hot_read import HotGoldenRead  # noqa: E402  # needs the settings set up

# The golden read by a source system's token is answered before Django's request cycle
# (config/hot_read.py); every other request goes to Django.
application = HotGoldenRead(django_application)


def _warm_up() -> None:
    """Import what the first requests would (the URLconf, the domain modules with their
    normaliser libraries, Celery's task registry) while the worker starts, not while a
    client waits; then move everything loaded so far out of the garbage collector's sight
    (``gc.freeze``).

    Modules, classes and settings live as long as the process, yet every full collection
    walks them: a batch ingest allocates enough to trigger one every few requests, and
    the walk cost a fifth of the request's Python time (measured in-process, batches of
    1,000 records).  Frozen objects are still freed by reference counting."""
    from django.urls import get_resolver

    from config.celery import app as celery_app
    from mdm.domains import all_domains

    get_resolver().url_patterns  # noqa: B018  # imports every app's views
    all_domains()
    # The first task an ingest queues after commit would build the task registry (and
    # import Celery's Django task class): 1-4 s of a client's wait at a load of 10.
    celery_app.finalize(auto=True)
    gc.collect()
    gc.freeze()


_warm_up()
