"""python manage.py issue_token SOURCE [--name NAME] [--domains D,...] [--access A]
[--expires-in-days N] | --rotate PREFIX [--grace-hours H | --valid-until TIME]
| --revoke PREFIX | --list [SOURCE]"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mdm.models import SourceSystem, SourceToken, TokenAccess
from mdm.services.sources import (
    TokenScopeError,
    source_token_issue,
    source_token_revoke,
    source_token_rotate,
)


class Command(BaseCommand):
    help = (
        "Issue an API token for a source system (printed once) with its scopes, rotate one "
        "(a new token; the old one stays valid for --grace-hours), revoke one, or list them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", nargs="?")
        parser.add_argument("--name", default="default")
        parser.add_argument(
            "--domains",
            default="",
            help="comma-separated domains the token may touch (default: the system's "
            "mapped domains, or every domain when it has no mapping)",
        )
        parser.add_argument(
            "--access", default=TokenAccess.READ_WRITE, choices=list(TokenAccess.values)
        )
        parser.add_argument("--expires-in-days", type=float, default=None)
        parser.add_argument("--rotate", metavar="PREFIX")
        parser.add_argument(
            "--grace-hours",
            type=float,
            default=24.0,
            help="with --rotate: how long the old token keeps working (default 24; 0 = now)",
        )
        parser.add_argument(
            "--valid-until",
            metavar="TIME",
            help="with --rotate: the ISO 8601 time until which the old token keeps working "
            "(instead of --grace-hours)",
        )
        parser.add_argument("--revoke", metavar="PREFIX")
        parser.add_argument("--list", action="store_true")

    def _token(self, prefix: str) -> SourceToken:
        token = SourceToken.objects.select_related("source_system").filter(prefix=prefix).first()
        if token is None:
            raise CommandError(f"no token with prefix {prefix!r}")
        return token

    def handle(self, *args: Any, **options: Any) -> None:
        if options["revoke"]:
            token = source_token_revoke(token=self._token(options["revoke"]))
            self.stdout.write(f"revoked token {token.prefix} of {token.source_system.code}")
            return
        if options["rotate"]:
            old = self._token(options["rotate"])
            until = timezone.now() + timedelta(hours=options["grace_hours"])
            if options["valid_until"]:
                parsed = parse_datetime(options["valid_until"])
                if parsed is None:
                    raise CommandError("--valid-until takes an ISO 8601 time")
                until = parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
            try:
                issued = source_token_rotate(token=old, old_valid_until=until)
            except TokenScopeError as exc:
                raise CommandError(str(exc)) from exc
            self.stderr.write(
                f"token {old.prefix} stays valid until {until.isoformat(timespec='seconds')}; "
                f"the new one is {issued.token.prefix}:"
            )
            self.stdout.write(issued.secret)
            return
        if options["list"]:
            tokens = SourceToken.objects.select_related("source_system").order_by("created_at")
            if options["source"]:
                tokens = tokens.filter(source_system__code=options["source"])
            for t in tokens:
                state = "active" if t.is_active else ("revoked" if t.revoked_at else "expired")
                expires = t.expires_at.isoformat(timespec="seconds") if t.expires_at else "-"
                domains = ",".join(t.domains) or "(system's)"
                self.stdout.write(
                    f"{t.prefix}  {t.source_system.code:<12} {t.name:<12} {t.access:<10} "
                    f"{domains:<24} expires {expires:<25} {state}"
                )
            return
        if not options["source"]:
            raise CommandError("give a source system code, or --rotate/--revoke PREFIX, or --list")
        system = SourceSystem.objects.filter(code=options["source"]).first()
        if system is None:
            raise CommandError(f"unknown source system {options['source']!r}")
        days = options["expires_in_days"]
        try:
            issued = source_token_issue(
                source_system=system,
                name=options["name"],
                domains=[d for d in options["domains"].split(",") if d.strip()],
                access=options["access"],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
        except TokenScopeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(issued.secret)
