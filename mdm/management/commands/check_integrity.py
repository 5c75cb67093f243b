"""``python manage.py check_integrity``: links the database does not check row by row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mdm.selectors import cross_reference_integrity


class Command(BaseCommand):
    help = (
        "Find cross-references whose source record or golden record does not exist; exit "
        "non-zero naming the first ones when there is any."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--show", type=int, default=20, help="broken links to list")

    def handle(self, *args: Any, **options: Any) -> None:
        report = cross_reference_integrity(show=max(options["show"], 0))
        if report.ok:
            self.stdout.write(f"cross-references intact: {report.links} links")
            return
        for link in report.examples:
            missing = " and ".join(
                what
                for what, gone in (
                    (f"source record {link.record_id}", link.record_missing),
                    (f"golden record {link.golden_id}", link.golden_missing),
                )
                if gone
            )
            self.stderr.write(
                f"cross-reference {link.record_id} -> {link.golden_id}: {missing} missing"
            )
        raise CommandError(
            f"cross-references broken: {report.record_missing} of {report.links} name a "
            f"missing source record, {report.golden_missing} a missing golden record"
        )
