"""``python manage.py reconcile SUBSCRIBER [--resend]``: what the hub holds vs what it delivered."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.models import Subscriber
from sync.services import subscriber_reconcile


class Command(BaseCommand):
    help = (
        "Compare each active golden record's current version with the last version the "
        "subscriber acknowledged (delivered, or acked in the feed); --resend queues what is "
        "missing again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("subscriber", help="the subscriber's code")
        parser.add_argument("--resend", action="store_true", help="re-send what is missing")
        parser.add_argument("--show", type=int, default=20, help="golden ids to list")

    def handle(self, *args: Any, **options: Any) -> None:
        sub = Subscriber.objects.filter(code=options["subscriber"]).first()
        if sub is None:
            raise CommandError(f"No subscriber {options['subscriber']!r}.")
        report = subscriber_reconcile(subscriber=sub, resend=options["resend"])
        w = self.stdout.write
        w(f"subscriber {sub.code} ({sub.kind}), events up to seq {report.high_water}")
        w(f"  golden records it should hold: {report.expected}")
        w(f"  up to date:                    {report.up_to_date}")
        w(f"  behind (newer version held):   {len(report.behind)}")
        w(f"  pending deliveries:            {report.pending}")
        w(f"  dead letters:                  {report.dead}")
        if report.behind:
            shown = ", ".join(str(g) for g in report.behind[: options["show"]])
            w(f"  behind: {shown}{' ...' if len(report.behind) > options['show'] else ''}")
        if options["resend"]:
            w(f"  re-sent: {report.resent}")
        if report.behind and not options["resend"]:
            self.stdout.write(self.style.WARNING("differences found; --resend queues them"))
        elif not report.behind:
            self.stdout.write(self.style.SUCCESS("in sync"))
