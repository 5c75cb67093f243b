"""Run the data-quality rules over a whole domain now (the hourly beat task does the same)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mdm.domains import domain_codes
from mdm.models import QualityRun
from mdm.services.quality import quality_check_all, quality_check_run


class Command(BaseCommand):
    help = "Run the data-quality rules of one domain (or every domain with rules) and print scores."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "domain", nargs="?", help="customer, supplier or product (default: all)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        domain = options.get("domain")
        if domain and domain not in domain_codes():
            raise CommandError(
                f"Unknown domain {domain!r}; expected one of: {', '.join(domain_codes())}"
            )
        runs = (
            [quality_check_run(domain=domain, trigger=QualityRun.Trigger.MANUAL)]
            if domain
            else quality_check_all(trigger=QualityRun.Trigger.MANUAL)
        )
        for run in runs:
            self.stdout.write(
                f"{run.domain}: {run.records_checked} records, {run.failures} failures, "
                f"{run.issues_opened} new issues, {run.issues_resolved} resolved "
                f"in {run.duration_seconds or 0:.2f} s"
            )
