"""python manage.py runhub [ADDRPORT] — the web server and a Celery worker (with beat) together.

On the embedded default the worker talks to the web server through the filesystem broker in
``var/broker``; with CELERY_BROKER_URL set it uses that broker instead.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the worker child: receive SIGTERM when runhub ends, however it ends.

    runserver leaves with ``os._exit`` on some errors, which skips ``finally`` blocks.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the finally block below still stops the worker
        pass


def _check_port_free(addrport: str) -> None:
    host, _, port = addrport.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        raise CommandError(f"{addrport!r} is not an address:port (e.g. 127.0.0.1:8000)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            raise CommandError(
                f"cannot serve on {addrport}: {exc.strerror}. Is the hub already running? "
                "Pass another address, e.g. `runhub 127.0.0.1:8001` (or ADDRPORT=... make demo)."
            ) from exc


class Command(BaseCommand):
    help = "Serve the hub and run its Celery worker and beat scheduler alongside."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--no-worker", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        _check_port_free(options["addrport"])
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
            worker = subprocess.Popen(  # noqa: S603
                cmd, env=os.environ.copy(), preexec_fn=_die_with_parent
            )
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
