"""python manage.py match DOMAIN --full"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from matching.services import MatchingError, match_run_full
from mdm.domains import UnknownDomainError, get_domain


class Command(BaseCommand):
    help = (
        "Score all live records of the domain with its active model, cluster them under the "
        "steward constraints, and apply the result to golden records and review tasks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domain")
        parser.add_argument(
            "--full",
            action="store_true",
            help="score every record (the only mode so far; incremental matching comes next)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["full"]:
            raise CommandError("only full runs exist so far: run `manage.py match DOMAIN --full`")
        try:
            domain = get_domain(options["domain"]).code
            run = match_run_full(domain=domain)
        except (UnknownDomainError, MatchingError) as exc:
            raise CommandError(str(exc)) from exc
        counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in run.counts.items())
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in run.timings.items())
        self.stdout.write(f"match run {run.pk} {run.status}: {counts}")
        self.stdout.write(f"timings: {timings}")
