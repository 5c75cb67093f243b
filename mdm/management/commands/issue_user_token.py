"""python manage.py issue_user_token USERNAME [--name NAME] [--expires-in-days N]
| --revoke PREFIX"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from mdm.models import UserToken
from mdm.services.user_tokens import user_token_issue, user_token_revoke


class Command(BaseCommand):
    help = "Issue an API token for a hub user (printed once), or revoke one by its prefix."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?")
        parser.add_argument("--name", default="default")
        parser.add_argument("--expires-in-days", type=float, default=None)
        parser.add_argument("--revoke", metavar="PREFIX")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["revoke"]:
            token = UserToken.objects.filter(prefix=options["revoke"]).first()
            if token is None:
                raise CommandError(f"no user token with prefix {options['revoke']!r}")
            user_token_revoke(token=token)
            self.stdout.write(f"revoked token {token.prefix} of {token.user}")
            return
        if not options["username"]:
            raise CommandError("give a username, or --revoke PREFIX")
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"unknown user {options['username']!r}")
        days = options["expires_in_days"]
        expires_at = timezone.now() + timedelta(days=days) if days else None
        issued = user_token_issue(user=user, name=options["name"], expires_at=expires_at)
        self.stdout.write(issued.secret)
