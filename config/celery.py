"""The Celery application.  Broker and options come from Django settings (CELERY_*).

With no broker configured the embedded default is kombu's filesystem transport: messages are
files under ``var/broker``, so the web server and the worker need no service between them.
"""

import os
from pathlib import Path

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_init

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


before_task_publish.connect(logs.task_headers_add, weak=False)
task_prerun.connect(logs.task_correlation_set, weak=False)
task_postrun.connect(logs.task_correlation_reset, weak=False)
