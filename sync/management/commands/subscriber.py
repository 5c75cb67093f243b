"""``python manage.py subscriber add|list|rotate|replay``: subscribers from the shell.

The same services as the admin pages and ``/api/v1/subscribers``; a secret is printed only
by ``add`` and ``rotate``, the commands that make it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mdm.models import SourceSystem
from sync.models import ChangeEvent, Subscriber
from sync.selectors import subscriber_health
from sync.services import deliveries_replay_all, subscriber_register, subscriber_rotate_secret


class Command(BaseCommand):
    help = "Add, list, rotate the secret of, or replay the dead letters of a subscriber."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="register a subscriber (prints its secret once)")
        add.add_argument("code")
        add.add_argument("--kind", choices=Subscriber.Kind.values, required=True)
        add.add_argument("--url", default="", help="webhook URL, or the AMQP broker URL")
        add.add_argument("--exchange", default="", help="AMQP exchange")
        add.add_argument("--domain", action="append", default=[], help="repeat; default all")
        add.add_argument(
            "--event", action="append", default=[], choices=ChangeEvent.Kind.values,
            help="event kinds, repeat; default all",
        )  # fmt: skip
        add.add_argument("--source", help="source system code: only its keys in xref")
        add.add_argument("--no-source-keys", action="store_true")
        add.add_argument("--max-attempts", type=int, default=8)
        add.add_argument("--from-seq", type=int, default=None, help="default: from now")
        sub.add_parser("list", help="every subscriber with its lag and dead letters")
        rotate = sub.add_parser("rotate", help="start a secret rotation (prints the new one)")
        rotate.add_argument("code")
        replay = sub.add_parser("replay", help="send every dead letter of a subscriber again")
        replay.add_argument("code")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            self._list()
            return
        if action == "add":
            self._add(options)
            return
        sub = Subscriber.objects.filter(code=options["code"]).first()
        if sub is None:
            raise CommandError(f"No subscriber {options['code']!r}.")
        if action == "rotate":
            secret = subscriber_rotate_secret(subscriber=sub)
            self.stdout.write(f"{sub.code}: new secret (shown once) {secret}")
            self.stdout.write("both secrets sign until the rotation is finished (admin or API)")
        else:
            count = deliveries_replay_all(subscriber=sub)
            self.stdout.write(f"{sub.code}: {count} dead letters queued again")

    def _add(self, options: dict[str, Any]) -> None:
        source = None
        if options["source"]:
            source = SourceSystem.objects.filter(code=options["source"]).first()
            if source is None:
                raise CommandError(f"No source system {options['source']!r}.")
        try:
            sub = subscriber_register(
                code=options["code"],
                kind=options["kind"],
                url=options["url"],
                exchange=options["exchange"],
                domains=options["domain"],
                event_kinds=options["event"],
                include_source_keys=not options["no_source_keys"],
                source_system=source,
                max_attempts=options["max_attempts"],
                from_seq=options["from_seq"],
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from exc
        self.stdout.write(f"subscriber {sub.code} ({sub.kind}) from seq {sub.planned_seq}")
        self.stdout.write(f"secret (shown once): {sub.secret}")

    def _list(self) -> None:
        health = {h.code: h for h in subscriber_health()}
        self.stdout.write(f"{'code':20} {'kind':8} {'active':6} {'lag':>8} {'dead':>6}  url")
        for sub in Subscriber.objects.order_by("code"):
            h = health.get(sub.code)
            self.stdout.write(
                f"{sub.code:20} {sub.kind:8} {'yes' if sub.is_active else 'no':6} "
                f"{h.lag if h else 0:>8} {h.dead_letters if h else 0:>6}  {sub.url}"
            )
