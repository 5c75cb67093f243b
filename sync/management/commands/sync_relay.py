"""``python manage.py sync_relay``: the outbox relay as a long-running process.

Beat runs the ``sync.relay`` task every two seconds, which is enough for most hubs.  This
command is the low-latency alternative: on PostgreSQL it LISTENs for the notification the
change-event trigger sends at commit and relays at once; otherwise (and as a safety net) it
polls every ``--interval`` seconds.  Several may run together (SKIP LOCKED).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections, connection

from sync.services import sync_relay
from sync.tasks import deliver_batch

CHANNEL = "aurum_change_events"


class Command(BaseCommand):
    help = "Relay committed change events to the delivery queue, continuously."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", default=None, help="Celery queue of the delivery tasks")
        parser.add_argument("--interval", type=float, default=1.0, help="poll interval, s")
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        listener = self._listen_or_none() if not options["once"] else None
        while True:
            close_old_connections()
            try:
                result = sync_relay()
            except Exception as exc:  # the database is away: wait and try again
                self.stderr.write(f"relay pass failed: {exc}")
                connection.close()
                time.sleep(options["interval"])
                continue
            for batch in result.batches:
                try:
                    deliver_batch.apply_async(args=[batch], queue=options["queue"])
                except Exception as exc:  # broker away: the stale sweep queues it again
                    self.stderr.write(f"could not queue {len(batch)} deliveries: {exc}")
                    break
            if options["once"]:
                self.stdout.write(f"{len(result.to_send)} deliveries queued")
                return
            if sum(len(b) for b in result.claimed) >= 500:
                continue  # more is due: no wait
            if listener is None and not options["once"]:
                listener = self._listen_or_none()
            listener = self._wait(listener, options["interval"])

    def _listen_or_none(self) -> Any:
        try:
            return self._listen()
        except Exception as exc:  # polling still works; LISTEN is tried again next pass
            self.stderr.write(f"cannot LISTEN, polling: {exc}")
            return None

    def _listen(self) -> Any:
        if connection.vendor != "postgresql":
            return None
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("prepare_threshold", None)
        listener = psycopg.connect(**params, autocommit=True)
        listener.execute(f"LISTEN {CHANNEL}")
        return listener

    def _wait(self, listener: Any, interval: float) -> Any:
        """Wait for a notification or the interval; the listener, or None if it broke."""
        if listener is None:
            time.sleep(interval)
            return None
        try:
            for _ in listener.notifies(timeout=interval, stop_after=1):
                break
            # Drain what else arrived: one pass serves them all.
            for _ in listener.notifies(timeout=0.01):
                pass
        except Exception:
            listener.close()
            time.sleep(interval)
            return None
        return listener
