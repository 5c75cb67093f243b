"""python manage.py issue_token SOURCE [--name NAME] | --revoke PREFIX"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mdm.models import SourceSystem, SourceToken
from mdm.services.sources import source_token_issue, source_token_revoke


class Command(BaseCommand):
    help = "Issue an API token for a source system (printed once), or revoke one by its prefix."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", nargs="?")
        parser.add_argument("--name", default="default")
        parser.add_argument("--revoke", metavar="PREFIX")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["revoke"]:
            token = SourceToken.objects.filter(prefix=options["revoke"]).first()
            if token is None:
                raise CommandError(f"no token with prefix {options['revoke']!r}")
            source_token_revoke(token=token)
            self.stdout.write(f"revoked token {token.prefix} of {token.source_system.code}")
            return
        if not options["source"]:
            raise CommandError("give a source system code, or --revoke PREFIX")
        system = SourceSystem.objects.filter(code=options["source"]).first()
        if system is None:
            raise CommandError(f"unknown source system {options['source']!r}")
        issued = source_token_issue(source_system=system, name=options["name"])
        self.stdout.write(issued.secret)
