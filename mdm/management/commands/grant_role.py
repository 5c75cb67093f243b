"""python manage.py grant_role USERNAME ROLE --domain DOMAIN | USERNAME --domain DOMAIN --revoke"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mdm.models import DomainRole
from mdm.services.access import GrantError, domain_role_grant, domain_role_revoke


class Command(BaseCommand):
    help = (
        "Give a hub user a role (viewer, steward, admin) in one domain, or take it away with "
        "--revoke.  Global roles are the groups of the same name (admin user page)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", nargs="?", choices=["viewer", "steward", "admin"])
        parser.add_argument("--domain", required=True)
        parser.add_argument("--revoke", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"unknown user {options['username']!r}")
        domain = options["domain"]
        if options["revoke"]:
            if domain_role_revoke(user=user, domain=domain):
                self.stdout.write(f"{user} has no role in {domain} any more (besides its groups)")
            else:
                self.stdout.write(f"{user} had no role in {domain}")
            return
        if not options["role"]:
            raise CommandError("give a role (viewer, steward, admin), or --revoke")
        try:
            grant, _ = domain_role_grant(user=user, domain=domain, role=options["role"])
        except GrantError as exc:
            raise CommandError(str(exc)) from exc
        label = DomainRole.Role(grant.role).label
        self.stdout.write(f"{user} is {label} of {grant.domain}")
