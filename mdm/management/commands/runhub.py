"""python manage.py runhub [ADDRPORT] — the web server and a Celery worker (with beat) together.

On the embedded default the worker talks to the web server through the filesystem broker in
``var/broker``; with CELERY_BROKER_URL set it uses that broker instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve the hub and run its Celery worker and beat scheduler alongside."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--no-worker", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        worker: subprocess.Popen[bytes] | None = None
        if not options["no_worker"]:
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            cmd = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--beat",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
                "--pool",
                "threads",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ]
            worker = subprocess.Popen(cmd, env=os.environ.copy())  # noqa: S603
            broker = str(settings.CELERY_BROKER_URL).split("@")[-1]
            self.stdout.write(f"Celery worker started (pid {worker.pid}, broker {broker})")
        try:
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    worker.kill()
