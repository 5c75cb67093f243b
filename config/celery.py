"""The Celery application.  Broker and options come from Django settings (CELERY_*).

With no broker configured the embedded default is kombu's filesystem transport: messages are
files under ``var/broker``, so the web server and the worker need no service between them.
"""

import os
from pathlib import Path

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
)

from config import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("aurum")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def ensure_broker_folders() -> None:
    from django.conf import settings

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    if str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        for key in ("data_folder_in", "data_folder_out", "processed_folder"):
            if options.get(key):
                Path(options[key]).mkdir(parents=True, exist_ok=True)


@worker_init.connect
def _worker_init(**kwargs: object) -> None:
    ensure_broker_folders()


def _scrub_worker_logs(logger: object = None, **kwargs: object) -> None:
    """A worker installs its own log handlers: they scrub PII, tokens and secrets too."""
    for handler in getattr(logger, "handlers", []):
        if not any(isinstance(f, logs.ScrubFilter) for f in handler.filters):
            handler.addFilter(logs.ScrubFilter())


after_setup_logger.connect(_scrub_worker_logs, weak=False)
after_setup_task_logger.connect(_scrub_worker_logs, weak=False)
before_task_publish.connect(logs.task_headers_add, weak=False)
task_prerun.connect(logs.task_correlation_set, weak=False)
task_postrun.connect(logs.task_correlation_reset, weak=False)
