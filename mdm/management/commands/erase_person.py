from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mdm.services.erasure import ErasureError, erasure_request_file


class Command(BaseCommand):
    help = (
        "Erase a person from the hub (right to erasure): by golden id, or by source system and "
        "source key.  Keeps a tombstone and an audit entry; publishes an 'erased' event."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domain")
        parser.add_argument("--golden", type=int, help="The golden record id.")
        parser.add_argument("--source", help="A source system code (with --key).")
        parser.add_argument("--key", help="That system's source key of the person.")
        parser.add_argument("--reference", default="", help="Your case or ticket number.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            erasure = erasure_request_file(
                domain=options["domain"],
                actor="manage.py erase_person",
                golden_id=options["golden"],
                source=options["source"],
                source_key=options["key"],
                reference=options["reference"],
            )
        except ErasureError as exc:
            raise CommandError(str(exc)) from exc
        changed = sum(erasure.counts.values())
        self.stdout.write(
            f"erased {erasure.domain} golden record {erasure.golden_id} "
            f"(request {erasure.pk}, {changed} rows changed)"
        )
