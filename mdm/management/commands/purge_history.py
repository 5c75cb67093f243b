from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mdm.services.retention import history_purge, retention_days


class Command(BaseCommand):
    help = (
        "Purge the history of golden records retired, source records deleted and people "
        "erased longer ago than the retention period (AURUM_RETENTION_DAYS)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")
        parser.add_argument("--days", type=int, help="Override the retention period.")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] if options["days"] is not None else retention_days()
        try:
            counts = history_purge(
                dry_run=options["dry_run"], days=days, actor="manage.py purge_history"
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        verb = "would delete" if options["dry_run"] else "deleted"
        for name, n in counts.items():
            self.stdout.write(f"{name}: {verb} {n} rows")
        self.stdout.write(
            f"{verb} {sum(counts.values())} history rows older than {days} days in total"
        )
