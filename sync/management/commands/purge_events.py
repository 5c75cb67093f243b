"""``python manage.py purge_events [--days N] [--dry-run]``: apply the event retention now.

Beat runs the same (``sync.purge_events``) every hour.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.services import events_purge


class Command(BaseCommand):
    help = (
        "Delete change events (and their deliveries) older than the retention that every "
        "subscriber has delivered or acknowledged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=float, default=None,
            help="retention in days (default AURUM_SYNC_EVENT_RETENTION_DAYS)",
        )  # fmt: skip
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = events_purge(days=options["days"], dry_run=options["dry_run"])
        except ValidationError as exc:
            raise CommandError(str(exc.message_dict)) from exc
        verb = "would delete" if report.dry_run else "deleted"
        self.stdout.write(
            f"{verb} {report.events} events and {report.deliveries} deliveries up to seq "
            f"{report.upto_seq} (older than {report.cutoff:%Y-%m-%d %H:%M} UTC)"
        )
        self.stdout.write(f"held back by: {report.held_by}")
