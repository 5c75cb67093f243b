from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mdm.audit.selectors import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Walk the audit trail's hash chain; exit non-zero naming the first missing, edited "
        "or relinked entry."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_chain_verify()
        if report.problem is not None:
            raise CommandError(
                f"audit trail broken at entry {report.problem.seq} ({report.problem.kind}): "
                f"{report.problem.message}; {report.checked} entries before it are intact"
            )
        self.stdout.write(f"audit trail intact: {report.checked} entries")
