"""python manage.py load_demo — source systems, mappings, demo exports and demo users.

Safe to repeat: mappings are upserted, files re-ingest as no-ops, users are kept.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from mdm.mapping import load_mapping_file
from mdm.models import SourceRecord, SourceSystem, SourceToken
from mdm.services.ingest import source_records_ingest_file
from mdm.services.sources import source_mapping_register, source_token_issue, source_token_revoke

DEMO_PASSWORD = "aurum-demo"  # noqa: S105 - printed on purpose: demo data only
DEMO_USERS = (
    ("admin", "admin", True),
    ("steward", "steward", False),
    ("viewer", "viewer", False),
)
ROLE_PERMISSIONS = {
    "steward": ["view_", "change_quarantinedpayload"],
    "viewer": ["view_"],
}


class Command(BaseCommand):
    help = "Load the demo: source systems, mappings, their exports, demo users and API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fixtures", type=Path, default=Path(settings.BASE_DIR) / "fixtures", help="folder"
        )
        parser.add_argument("--no-tokens", action="store_true", help="do not issue API tokens")
        parser.add_argument(
            "--no-match", action="store_true", help="do not train models and match (faster)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        folder: Path = options["fixtures"]
        manifest_path = folder / "demo.toml"
        if not manifest_path.is_file():
            raise CommandError(f"no demo manifest at {manifest_path}")
        manifest = tomllib.loads(manifest_path.read_text())
        for entry in manifest.get("load", []):
            spec = load_mapping_file(folder / entry["mapping"])
            mapping_obj, compiled, _ = source_mapping_register(spec=spec)
            result = source_records_ingest_file(
                path=folder / entry["file"],
                source_system=mapping_obj.source_system,
                mapping=compiled,
                mapping_obj=mapping_obj,
            )
            c = result.counts
            self.stdout.write(
                f"{entry['file']:<32} {mapping_obj.source_system.code:>8}/{compiled.domain.code:<9}"
                f" read {c.read:>5}  created {c.created:>5}  unchanged {c.unchanged:>5}  "
                f"quarantined {c.quarantined:>3}"
            )
        self._users()
        if not options["no_match"]:
            self._match()
        if not options["no_tokens"]:
            self._tokens()
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo login: admin / {DEMO_PASSWORD} (also steward, viewer with the same password)"
            )
        )

    def _match(self) -> None:
        """Train a model where a domain has none, then a full match (by command name: the
        mdm app does not import matching)."""
        from django.apps import apps

        model = apps.get_model("matching", "MatchModel")
        for domain in sorted(set(SourceRecord.objects.values_list("domain", flat=True))):
            if not model.objects.filter(domain=domain, is_active=True).exists():
                call_command("train_model", domain, stdout=self.stdout, stderr=self.stderr)
            call_command("match", domain, "--full", stdout=self.stdout)

    @transaction.atomic
    def _users(self) -> None:
        user_model = get_user_model()
        for role, username, is_admin in DEMO_USERS:
            user = user_model.objects.filter(username=username).first()
            if user is None:
                user = user_model.objects.create_user(
                    username=username, password=DEMO_PASSWORD, is_staff=True
                )
            if is_admin and not user.is_superuser:
                user.is_superuser = True
                user.save(update_fields=["is_superuser"])
            if role in ROLE_PERMISSIONS:
                group, _ = Group.objects.get_or_create(name=role)
                perms = Permission.objects.filter(content_type__app_label__in=["mdm"])
                wanted = [
                    p
                    for p in perms
                    if any(p.codename.startswith(prefix) for prefix in ROLE_PERMISSIONS[role])
                ]
                group.permissions.set(wanted)
                user.groups.add(group)

    def _tokens(self) -> None:
        for system in SourceSystem.objects.all():
            for old in SourceToken.objects.filter(
                source_system=system, name="demo", revoked_at__isnull=True
            ):
                source_token_revoke(token=old)
            issued = source_token_issue(source_system=system, name="demo")
            self.stdout.write(f"API token for {system.code:<8}: {issued.secret}")
