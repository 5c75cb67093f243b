"""python manage.py connector list | run NAME [--full-compare] | pause NAME | resume NAME"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mdm.models import Connector, ConnectorRun
from mdm.services.connectors import (
    ConnectorError,
    connector_pause,
    connector_resume,
    connector_run,
)


class Command(BaseCommand):
    help = (
        "List, run now, pause or resume inbound connectors (configured with register_source "
        "or in the admin; see docs/connectors.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "run", "pause", "resume"])
        parser.add_argument("name", nargs="?")
        parser.add_argument(
            "--full-compare",
            action="store_true",
            help="run: also compare every key with the source now (database connectors)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action, name = options["action"], options["name"]
        if action == "list":
            for c in Connector.objects.select_related("source_system"):
                last = c.runs.first()
                self.stdout.write(
                    f"{c.name}\t{c.kind}\t{c.source_system.code}/{c.domain}\t"
                    f"{'paused' if c.is_paused else 'active'}\tnext {c.next_run_at or '-'}\t"
                    f"last {last.status if last else '-'}"
                )
            return
        if not name:
            raise CommandError(f"{action} needs a connector name")
        connector = Connector.objects.filter(name=name).first()
        if connector is None:
            known = ", ".join(Connector.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no connector {name!r}; known: {known}")
        try:
            if action == "pause":
                connector_pause(connector=connector)
                self.stdout.write(f"paused {name}")
            elif action == "resume":
                c = connector_resume(connector=connector)
                self.stdout.write(f"resumed {name}; next run at {c.next_run_at or 'on demand'}")
            else:
                run = connector_run(
                    connector_id=connector.pk,
                    trigger=ConnectorRun.Trigger.MANUAL,
                    full_compare=True if options["full_compare"] else None,
                )
                self._summary(run)
                if run.status == ConnectorRun.Status.FAILED:
                    raise CommandError(f"run {run.pk} failed: {run.error}")
        except ConnectorError as exc:
            raise CommandError(str(exc)) from exc

    def _summary(self, run: ConnectorRun) -> None:
        rate = run.read_count / run.duration_seconds if run.duration_seconds else 0.0
        self.stdout.write(
            f"run {run.pk} {run.status}: read {run.read_count}, created {run.created_count}, "
            f"updated {run.updated_count}, unchanged {run.unchanged_count}, "
            f"quarantined {run.quarantined_count}, deleted {run.deleted_count}"
            + (f", files {run.files_count}" if run.files_count else "")
            + f" in {run.duration_seconds or 0:.1f} s ({rate:,.0f} rows/s); "
            f"watermark {_wm(run.watermark_before)} -> {_wm(run.watermark_after)}"
        )


def _wm(value: Any) -> str:
    if not value:
        return "none"
    return str(value.get("value", value)) if isinstance(value, dict) else str(value)
