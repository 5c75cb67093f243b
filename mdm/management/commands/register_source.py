"""python manage.py register_source MAPPING_FILE [...] [--token]"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from mdm.mapping import MappingError, load_mapping_file
from mdm.services.connectors import ConnectorError, connector_register_spec
from mdm.services.sources import source_mapping_register, source_token_issue


class Command(BaseCommand):
    help = (
        "Register source systems and their field mappings from mapping files "
        "(see docs/mapping-format.md), and the connector of a file's [connector] table "
        "(docs/connectors.md). Safe to repeat; a changed file stores a new version."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument(
            "--token", action="store_true", help="also issue an API token for each source system"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        issued: set[str] = set()
        with transaction.atomic():
            for path in options["files"]:
                try:
                    spec = load_mapping_file(path)
                    connector_spec = spec.pop("connector", None)
                    mapping, _, created = source_mapping_register(spec=spec)
                    connector = (
                        connector_register_spec(spec=connector_spec, mapping=mapping)
                        if connector_spec is not None
                        else None
                    )
                except (MappingError, ConnectorError) as exc:
                    raise CommandError(f"{path}: {exc}") from exc
                verb = "registered" if created else "updated"
                self.stdout.write(
                    f"{verb} mapping {mapping.source_system.code}/{mapping.domain}/{mapping.name}"
                    f"{' (default)' if mapping.is_default else ''}"
                )
                if connector is not None:
                    c, connector_created = connector
                    self.stdout.write(
                        f"{'registered' if connector_created else 'updated'} connector {c.name} "
                        f"({c.kind}{', paused' if c.is_paused else ''})"
                    )
                code = mapping.source_system.code
                if options["token"] and code not in issued:
                    token = source_token_issue(source_system=mapping.source_system)
                    issued.add(code)
                    self.stdout.write(f"token for {code}: {token.secret}")
