"""Every write of the outbox: sequencing, planning, claiming, delivering, replaying.

The life of an event: a trigger writes it with the golden change (``sync.triggers``);
``change_events_sequence`` gives it its ``seq``; ``deliveries_plan`` writes one Delivery per
push subscriber that wants it; ``deliveries_claim`` picks due deliveries (SKIP LOCKED, at most
one in flight per subscriber and golden record) and the relay queues a task per delivery;
``delivery_attempt`` sends it and records the outcome: delivered, retried later with
exponential backoff and jitter, or a dead letter.
"""

from __future__ import annotations

import binascii
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q
from django.utils import timezone

from mdm.domains import UnknownDomainError, get_domain
from sync.models import ChangeEvent, Delivery, EventSequence, Subscriber
from sync.selectors import (
    event_attributes,
    event_payloads,
    high_water_seq,
    payload_for,
    purged_seq,
    subscriber_wants,
)
from sync.signing import secret_generate, secret_key, signature_header
from sync.transports import (
    AmqpSender,
    Message,
    TransportError,
    WebhookSender,
    address_refusal,
)

IN_FLIGHT = (Delivery.Status.PENDING, Delivery.Status.QUEUED, Delivery.Status.SENDING)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- subscribers ---------------------------------------------------------------------------


_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")


def _check_secret(secret: str) -> None:
    try:
        key = secret_key(secret)
    except (ValueError, binascii.Error) as exc:
        raise ValidationError({"secret": "whsec_ must be followed by base64"}) from exc
    if len(key) < 16:
        raise ValidationError({"secret": "a secret needs at least 16 bytes of key"})


def _check_settings(
    *,
    kind: str,
    url: str,
    exchange: str,
    domains: Sequence[str],
    event_kinds: Sequence[str],
    filters: Any,
    max_attempts: int,
) -> None:
    """Raise ValidationError naming the field to fix, before anything is written."""
    if kind not in Subscriber.Kind.values:
        raise ValidationError({"kind": f"unknown kind {kind!r}; one of {Subscriber.Kind.values}"})
    unknown = set(event_kinds) - set(ChangeEvent.Kind.values)
    if unknown:
        raise ValidationError({"event_kinds": f"unknown event kinds {sorted(unknown)}"})
    for code in domains:
        try:
            get_domain(code)
        except UnknownDomainError as exc:
            raise ValidationError({"domains": str(exc)}) from exc
    if not isinstance(filters, dict) or not all(
        isinstance(k, str) and isinstance(v, list) for k, v in filters.items()
    ):
        raise ValidationError(
            {"filters": 'attribute -> list of allowed values, e.g. {"country": ["DE"]}'}
        )
    if not 1 <= max_attempts <= 100:
        raise ValidationError({"max_attempts": "between 1 and 100"})
    if kind == Subscriber.Kind.WEBHOOK:
        refusal = address_refusal(url)
        if refusal:
            raise ValidationError({"url": refusal})
    if kind == Subscriber.Kind.AMQP and not (url.startswith("amqp") and exchange):
        raise ValidationError(
            {"exchange": "an AMQP subscriber needs a broker URL (amqp://...) and an exchange"}
        )


def subscriber_register(
    *,
    code: str,
    kind: str,
    url: str = "",
    exchange: str = "",
    secret: str | None = None,
    domains: Sequence[str] = (),
    event_kinds: Sequence[str] = (),
    filters: dict[str, list[Any]] | None = None,
    include_source_keys: bool = True,
    source_system: Any = None,
    max_attempts: int = 8,
    from_seq: int | None = None,
    name: str = "",
) -> Subscriber:
    """Register a subscriber; it receives the events after ``from_seq`` (default: from now).

    A webhook URL that resolves to a loopback, link-local or private address is refused
    (see ``sync.transports.address_refusal``).  Every check runs before anything is written;
    a failure raises ValidationError naming the field.  Not safe to repeat: the code is
    unique (a repeat is refused).
    """
    if not _SLUG.match(code or ""):
        raise ValidationError({"code": "1-50 letters, digits, '-' or '_'"})
    _check_settings(
        kind=kind,
        url=url,
        exchange=exchange,
        domains=domains,
        event_kinds=event_kinds,
        filters=filters if filters is not None else {},
        max_attempts=max_attempts,
    )
    if secret:
        _check_secret(secret)
    if from_seq is not None and from_seq < purged_seq():
        raise ValidationError(
            {
                "from_seq": f"events up to {purged_seq()} were purged by retention; start there "
                "or later (take a snapshot for what came before)"
            }
        )
    start = high_water_seq() if from_seq is None else from_seq
    with transaction.atomic():
        if Subscriber.objects.filter(code=code).exists():
            raise ValidationError({"code": f"a subscriber {code!r} already exists"})
        return Subscriber.objects.create(
            code=code,
            name=name,
            kind=kind,
            url=url,
            exchange=exchange,
            secret=secret or secret_generate(),
            domains=list(domains),
            event_kinds=list(event_kinds),
            filters=filters or {},
            include_source_keys=include_source_keys,
            source_system=source_system,
            max_attempts=max_attempts,
            planned_seq=start,
            acked_seq=start,
        )


UPDATABLE = (
    "name",
    "url",
    "exchange",
    "domains",
    "event_kinds",
    "filters",
    "include_source_keys",
    "source_system",
    "max_attempts",
)


def subscriber_update(*, subscriber: Subscriber, changes: dict[str, Any]) -> Subscriber:
    """Change a subscriber's settings (only ``UPDATABLE`` fields; the secret changes by
    rotation).  The row is locked and the merged settings checked before anything is
    written.  Safe to repeat."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "cannot be changed here"})
    with transaction.atomic():
        sub = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        for name, value in changes.items():
            setattr(sub, name, value)
        _check_settings(
            kind=sub.kind,
            url=sub.url,
            exchange=sub.exchange,
            domains=sub.domains,
            event_kinds=sub.event_kinds,
            filters=sub.filters,
            max_attempts=sub.max_attempts,
        )
        sub.save(update_fields=[*changes])
    return sub


def subscriber_delete(*, subscriber: Subscriber) -> None:
    """Remove a subscriber with its deliveries (events stay).  Safe to repeat."""
    with transaction.atomic():
        Subscriber.objects.filter(pk=subscriber.pk).delete()


def subscriber_rotate_secret(*, subscriber: Subscriber, new_secret: str | None = None) -> str:
    """Start a rotation: sign with a new secret and keep the current one valid.  Returns it
    (the only time it is shown)."""
    if new_secret:
        _check_secret(new_secret)
    secret = new_secret or secret_generate()
    with transaction.atomic():
        Subscriber.objects.filter(pk=subscriber.pk).update(
            previous_secret=F("secret"), secret=secret
        )
    return secret


def subscriber_finish_rotation(*, subscriber: Subscriber) -> None:
    """End a rotation: the previous secret is no longer used.  Safe to repeat."""
    Subscriber.objects.filter(pk=subscriber.pk).update(previous_secret="")


def subscriber_enable(*, subscriber: Subscriber) -> None:
    """Re-enable (resume) a subscriber, after a pause or a 410, and close its circuit.
    Its waiting deliveries go out from where they stopped.  Safe to repeat."""
    Subscriber.objects.filter(pk=subscriber.pk).update(
        is_active=True, disabled_reason="", consecutive_failures=0, circuit_open_until=None
    )


def subscriber_pause(*, subscriber: Subscriber, reason: str = "paused by an admin") -> None:
    """Stop delivering to a subscriber; events keep being planned for it when resumed (its
    position does not move).  Safe to repeat."""
    Subscriber.objects.filter(pk=subscriber.pk).update(is_active=False, disabled_reason=reason)


def subscriber_circuit_reset(*, subscriber: Subscriber) -> None:
    """Close a subscriber's circuit now (its failure run forgotten).  Safe to repeat."""
    Subscriber.objects.filter(pk=subscriber.pk).update(
        consecutive_failures=0, circuit_open_until=None
    )


def consumer_ack(*, subscriber: Subscriber, seq: int) -> int:
    """Move a pull consumer's acknowledged position forward (never back).  Safe to repeat."""
    if subscriber.kind != Subscriber.Kind.PULL:
        raise ValidationError({"consumer": f"{subscriber.code} is not a pull consumer"})
    change_events_sequence()
    high = high_water_seq()
    if seq > high:
        raise ValidationError({"seq": f"{seq} is beyond the last event ({high})"})
    with transaction.atomic():
        Subscriber.objects.filter(pk=subscriber.pk, acked_seq__lt=seq).update(acked_seq=seq)
        return Subscriber.objects.values_list("acked_seq", flat=True).get(pk=subscriber.pk)


# --- sequencing and planning -------------------------------------------------------------

_SEQUENCE_SQL = """
UPDATE sync_changeevent SET seq = %s + r.rn, sequenced_at = %s
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS rn FROM sync_changeevent
      WHERE seq IS NULL ORDER BY id LIMIT %s) AS r
WHERE sync_changeevent.id = r.id
"""


def change_events_sequence(*, limit: int = 20_000) -> int:
    """Give the next sequence numbers to committed events that have none, in id order.

    One sequencer at a time (the counter row is locked), and its numbers become visible all
    at once when it commits, above every number given before: a feed reader that has seen
    ``seq`` N never later finds an event with a number at or below N.  Safe to repeat.
    """
    EventSequence.objects.get_or_create(pk=1)
    with transaction.atomic():
        counter = EventSequence.objects.select_for_update().get(pk=1)
        with connection.cursor() as cursor:
            cursor.execute(_SEQUENCE_SQL, [counter.last_seq, timezone.now(), limit])
            count = cursor.rowcount
        if count:
            EventSequence.objects.filter(pk=1).update(last_seq=F("last_seq") + count)
    return count


_PLAN_SQL = """
INSERT INTO {delivery} (subscriber_id, event_id, seq, golden_id, status, attempts,
                        next_attempt_at, error, created_at)
SELECT %s, e.id, e.seq, e.golden_id, 'pending', 0, %s, '', %s FROM {event} e
WHERE e.seq > %s AND e.seq <= %s{where}
ON CONFLICT (subscriber_id, event_id) DO NOTHING
"""


def _plan_set_based(sub: Subscriber, *, upto: int, now: datetime) -> int:
    """One INSERT ... SELECT of the deliveries of a subscriber without attribute filters."""
    where = ""
    params: list[Any] = []
    if sub.domains:
        where += f" AND e.domain IN ({', '.join(['%s'] * len(sub.domains))})"
        params += list(sub.domains)
    if sub.event_kinds:
        where += f" AND e.kind IN ({', '.join(['%s'] * len(sub.event_kinds))})"
        params += list(sub.event_kinds)
    stamp = connection.ops.adapt_datetimefield_value(now)
    sql = _PLAN_SQL.format(
        delivery=Delivery._meta.db_table, event=ChangeEvent._meta.db_table, where=where
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [sub.pk, stamp, stamp, sub.planned_seq, upto, *params])
        return max(0, cursor.rowcount)


def _plan_filtered(sub: Subscriber, *, upto: int, now: datetime) -> int:
    """Deliveries of a subscriber with attribute filters: each event's attributes are read
    from its history row (one query per 900 events) and tested in Python."""
    events = list(
        ChangeEvent.objects.filter(seq__gt=sub.planned_seq, seq__lte=upto)
        .order_by("seq")
        .only("id", "seq", "golden_id", "domain", "kind", "history_id")
    )
    # A golden event: the record at that version; a relationship event: its "from" record.
    attributes = event_attributes(events)
    rows = [
        Delivery(
            subscriber=sub,
            event_id=event.pk,
            seq=event.seq or 0,
            golden_id=event.golden_id,
            next_attempt_at=now,
        )
        for event in events
        if subscriber_wants(sub, event, attributes.get(event.pk))
    ]
    Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    return len(rows)


def deliveries_plan(*, limit: int = 20_000, now: datetime | None = None) -> int:
    """Write a Delivery for each sequenced event each active push subscriber wants.

    Set-based: one INSERT ... SELECT per subscriber and pass (attribute filters need the
    event's attributes, read in one query per 900 events).  Each subscriber is planned by
    one relay at a time (its row locked, SKIP LOCKED) from its ``planned_seq`` up to at
    most ``limit`` events further (``seq`` is dense); the unique (subscriber, event) key
    makes a repeat harmless.  Returns the deliveries written.
    """
    now = now or timezone.now()
    high = high_water_seq()
    written = 0
    candidates = Subscriber.objects.filter(
        is_active=True,
        kind__in=[Subscriber.Kind.WEBHOOK, Subscriber.Kind.AMQP],
        planned_seq__lt=high,
    ).values_list("pk", flat=True)
    for pk in list(candidates):
        with transaction.atomic():
            sub = Subscriber.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if sub is None or sub.planned_seq >= high:
                continue
            upto = min(high, sub.planned_seq + limit)
            if sub.filters:
                written += _plan_filtered(sub, upto=upto, now=now)
            else:
                written += _plan_set_based(sub, upto=upto, now=now)
            Subscriber.objects.filter(pk=sub.pk).update(planned_seq=upto)
    return written


# --- claiming ------------------------------------------------------------------------------


def _circuit_threshold() -> int:
    return int(_setting("AURUM_SYNC_CIRCUIT_FAILURES", 5))


def _circuit_cooldown() -> timedelta:
    return timedelta(seconds=float(_setting("AURUM_SYNC_CIRCUIT_COOLDOWN", 60)))


def _batch_size() -> int:
    return max(1, int(_setting("AURUM_SYNC_BATCH_SIZE", 100)))


def _partition(rows: Sequence[tuple[int, int, int]], size: int) -> list[list[int]]:
    """Split (pk, golden_id, seq) rows of one subscriber into batches of about ``size``,
    every version of a golden record in the same batch, each batch in seq order."""
    if not rows:
        return []
    parts = max(1, -(-len(rows) // size))
    batches: list[list[tuple[int, int]]] = [[] for _ in range(parts)]
    for pk, golden_id, seq in rows:
        batches[golden_id % parts].append((seq, pk))
    return [[pk for _, pk in sorted(b)] for b in batches if b]


def deliveries_claim(*, limit: int = 500, now: datetime | None = None) -> list[list[int]]:
    """Mark due deliveries queued and return them in batches, one delivery task each.

    Per subscriber (its row locked, SKIP LOCKED: one claimer per subscriber at a time), up
    to ``limit`` due deliveries in seq order.  Due: pending, time reached, subscriber
    active with a closed circuit, and no earlier delivery of the same golden record to the
    same subscriber in flight or waiting for a retry; earlier versions that are due are
    claimed with it, into the same batch (a batch sends in seq order and holds back a
    golden record's later versions once one fails).  A subscriber whose cool-down just
    ended gets one delivery, the probe, and its circuit stays open until the probe's
    outcome.
    """
    now = now or timezone.now()
    blocking = Delivery.objects.filter(
        subscriber_id=OuterRef("subscriber_id"),
        golden_id=OuterRef("golden_id"),
        seq__lt=OuterRef("seq"),
    ).filter(
        Q(status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING])
        | Q(status=Delivery.Status.PENDING, next_attempt_at__gt=now)
    )
    open_circuit = Q(subscriber__circuit_open_until__isnull=True) | Q(
        subscriber__circuit_open_until__lte=now
    )
    due_subscribers = set(
        Delivery.objects.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lte=now, subscriber__is_active=True
        )
        .filter(open_circuit)
        .order_by()  # the model's ordering would make DISTINCT per (seq, subscriber)
        .values_list("subscriber_id", flat=True)
        .distinct()
    )
    size = _batch_size()
    batches: list[list[int]] = []
    for sub_id in sorted(due_subscribers):
        with transaction.atomic():
            sub = (
                Subscriber.objects.select_for_update(skip_locked=True)
                .filter(pk=sub_id, is_active=True)
                .filter(Q(circuit_open_until__isnull=True) | Q(circuit_open_until__lte=now))
                .first()
            )
            if sub is None:
                continue
            probing = sub.consecutive_failures >= _circuit_threshold()
            rows = list(
                Delivery.objects.filter(
                    subscriber_id=sub_id,
                    status=Delivery.Status.PENDING,
                    next_attempt_at__lte=now,
                )
                .exclude(Exists(blocking))
                .order_by("seq")
                .values_list("pk", "golden_id", "seq")[: 1 if probing else limit]
            )
            if not rows:
                continue
            if probing:
                Subscriber.objects.filter(pk=sub_id).update(
                    circuit_open_until=now + _circuit_cooldown()
                )
            Delivery.objects.filter(
                pk__in=[r[0] for r in rows], status=Delivery.Status.PENDING
            ).update(status=Delivery.Status.QUEUED, claimed_at=now)
        batches += _partition(rows, size)
    return batches


def deliveries_requeue_stale(*, now: datetime | None = None) -> list[list[int]]:
    """Deliveries whose task was lost (broker restarted, worker killed): queue them again.

    Queued longer than ``AURUM_SYNC_REQUEUE_AFTER`` seconds, or sending longer than that plus
    the send timeout (a batch refreshes ``claimed_at`` of its rows as it goes).  Returned in
    batches like ``deliveries_claim``.  The delivery task locks then checks, so a task that
    was only late does no harm: the second copy finds the rows no longer queued and stops.
    """
    now = now or timezone.now()
    after = timedelta(seconds=float(_setting("AURUM_SYNC_REQUEUE_AFTER", 120)))
    send_timeout = timedelta(seconds=float(_setting("AURUM_SYNC_SEND_TIMEOUT", 10)))
    with transaction.atomic():
        stale = list(
            Delivery.objects.filter(
                Q(status=Delivery.Status.QUEUED, claimed_at__lt=now - after)
                | Q(status=Delivery.Status.SENDING, claimed_at__lt=now - after - send_timeout)
            )
            .select_for_update(skip_locked=True)
            .values_list("pk", "subscriber_id", "golden_id", "seq")[:5000]
        )
        if stale:
            Delivery.objects.filter(pk__in=[r[0] for r in stale]).update(
                status=Delivery.Status.QUEUED, claimed_at=now
            )
    by_subscriber: dict[int, list[tuple[int, int, int]]] = {}
    for pk, sub_id, golden_id, seq in stale:
        by_subscriber.setdefault(sub_id, []).append((pk, golden_id, seq))
    size = _batch_size()
    return [b for rows in by_subscriber.values() for b in _partition(rows, size)]


@dataclass(frozen=True)
class RelayResult:
    sequenced: int
    planned: int
    requeued: list[list[int]]
    claimed: list[list[int]]

    @property
    def batches(self) -> list[list[int]]:
        """The delivery batches to queue a task for, each one subscriber's, in seq order."""
        return self.requeued + self.claimed

    @property
    def to_send(self) -> list[int]:
        return [pk for batch in self.batches for pk in batch]


def sync_relay(*, limit: int = 500, now: datetime | None = None) -> RelayResult:
    """One relay pass: sequence, plan, requeue lost deliveries, claim due ones.

    Returns the delivery batches to queue tasks for; everything it wrote is committed when
    it returns, so the caller queues after commit.  Safe to run concurrently and to repeat.
    """
    sequenced = change_events_sequence()
    planned = deliveries_plan()
    requeued = deliveries_requeue_stale(now=now)
    claimed = deliveries_claim(limit=limit, now=now)
    return RelayResult(sequenced, planned, requeued, claimed)


# --- delivering ----------------------------------------------------------------------------


def backoff_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter: between half and all of base * 2^(attempts-1), capped."""
    base = float(_setting("AURUM_SYNC_BACKOFF_BASE", 2.0))
    cap = float(_setting("AURUM_SYNC_BACKOFF_MAX", 3600.0))
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=random.uniform(delay / 2, delay))


def message_build(*, subscriber: Subscriber, event: ChangeEvent, payload: Any = None) -> Message:
    """The signed message of an event for a subscriber (``payload``: from ``event_payloads``)."""
    if payload is None:
        payload = event_payloads([event])[event.pk]
    body = orjson.dumps(payload_for(subscriber, payload))
    timestamp = int(time.time())
    msg_id = event.message_id
    signature = signature_header(
        secrets_=[subscriber.secret, subscriber.previous_secret],
        msg_id=msg_id,
        timestamp=timestamp,
        body=body,
    )
    return Message(msg_id, timestamp, body, signature, f"{event.domain}.{event.kind}")


def _sender(sub: Subscriber, timeout: float) -> WebhookSender | AmqpSender:
    if sub.kind == Subscriber.Kind.AMQP:
        return AmqpSender(sub.url, sub.exchange, timeout=timeout)
    return WebhookSender(sub.url, timeout=timeout)


def _release(pks: Sequence[int]) -> None:
    """Give back deliveries a batch took but did not attempt: pending again, the attempt
    it counted taken back."""
    if pks:
        Delivery.objects.filter(pk__in=list(pks), status=Delivery.Status.SENDING).update(
            status=Delivery.Status.PENDING, attempts=F("attempts") - 1
        )


def _record_success(sub_id: int, sent: list[tuple[int, int | None]], waiting: list[int]) -> None:
    """Mark sent deliveries delivered (one UPDATE per response code), reset the subscriber's
    failure run, and refresh ``claimed_at`` of the batch's rows still to send."""
    now = timezone.now()
    with transaction.atomic():
        by_code: dict[int | None, list[int]] = {}
        for pk, code in sent:
            by_code.setdefault(code, []).append(pk)
        for code, pks in by_code.items():
            Delivery.objects.filter(pk__in=pks, status=Delivery.Status.SENDING).update(
                status=Delivery.Status.DELIVERED, response_code=code, error="", delivered_at=now
            )
        if sent:
            Subscriber.objects.filter(pk=sub_id).update(
                consecutive_failures=0,
                circuit_open_until=None,
                attempts_total=F("attempts_total") + len(sent),
            )
        if waiting:
            Delivery.objects.filter(pk__in=waiting, status=Delivery.Status.SENDING).update(
                claimed_at=now
            )


def deliveries_send(*, delivery_ids: Sequence[int]) -> dict[int, str]:
    """Send a batch of queued deliveries of one subscriber, in seq order, and record each
    outcome.  Returns delivery id -> "delivered", "pending" (retry later), "dead", "gone",
    "deferred" (not attempted: an earlier version of its golden record is still open, the
    batch ran out of time, or the circuit opened), "paused" or "skipped".

    Lock, then check: the rows still queued are locked (SKIP LOCKED) and moved to sending
    in one transaction, so a duplicate task finds them taken and skips them.  Messages go
    over one pooled connection; successes are written every ``AURUM_SYNC_FLUSH_EVERY``
    sends (a crash before that leaves them sending, and the relay sends them again: at
    least once, the receiver dedupes by ``webhook-id``).  A failure is written at once and
    holds back the later versions of its golden record in the batch; a 410 or an opening
    circuit ends the batch.  Safe to repeat.
    """
    ids = sorted(set(delivery_ids))
    if not ids:
        return {}
    now = timezone.now()
    with transaction.atomic():
        taken = list(
            Delivery.objects.filter(pk__in=ids, status=Delivery.Status.QUEUED)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        if taken:
            Delivery.objects.filter(pk__in=taken).update(
                status=Delivery.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
            )
    outcomes = dict.fromkeys(ids, "skipped")
    if not taken:
        return outcomes
    rows = list(
        Delivery.objects.filter(pk__in=taken, status=Delivery.Status.SENDING)
        .select_related("event")
        .order_by("seq")
    )
    if not rows:
        return outcomes
    by_subscriber: dict[int, list[Delivery]] = {}
    for row in rows:
        by_subscriber.setdefault(row.subscriber_id, []).append(row)
    for sub_id, part in by_subscriber.items():  # one, from the relay
        outcomes.update(_send_rows(sub_id, part))
    return outcomes


def _send_rows(sub_id: int, rows: list[Delivery]) -> dict[int, str]:
    """Send one subscriber's taken (sending) deliveries in seq order; their outcomes."""
    outcomes: dict[int, str] = {}
    sub = Subscriber.objects.select_related("source_system").get(pk=sub_id)
    if not sub.is_active:
        _release([r.pk for r in rows])
        return dict.fromkeys((r.pk for r in rows), "paused")
    # An earlier version still open outside this batch goes first (a requeued or replayed
    # delivery can meet one): hold this golden record's versions back.
    batch_pks = {r.pk for r in rows}
    earliest_open: dict[int, int] = {}
    for gid, seq in (
        Delivery.objects.filter(
            subscriber=sub, golden_id__in={r.golden_id for r in rows}, status__in=IN_FLIGHT
        )
        .exclude(pk__in=batch_pks)
        .values_list("golden_id", "seq")
    ):
        earliest_open[gid] = min(seq, earliest_open.get(gid, seq))
    payloads = event_payloads([r.event for r in rows])
    timeout = float(_setting("AURUM_SYNC_SEND_TIMEOUT", 10))
    # Stop well before the stale sweep would queue the batch's rows again.
    requeue_after = float(_setting("AURUM_SYNC_REQUEUE_AFTER", 120))
    budget = float(_setting("AURUM_SYNC_BATCH_SECONDS", min(30.0, requeue_after / 2)))
    flush_every = int(_setting("AURUM_SYNC_FLUSH_EVERY", 50))
    started = time.monotonic()
    held: set[int] = set()
    stop = False
    sent: list[tuple[int, int | None]] = []
    deferred: list[int] = []
    with _sender(sub, timeout) as sender:
        for index, row in enumerate(rows):
            if (
                stop
                or row.golden_id in held
                or row.seq > earliest_open.get(row.golden_id, row.seq)
                or time.monotonic() - started > budget
            ):
                deferred.append(row.pk)
                outcomes[row.pk] = "deferred"
                continue
            message = message_build(subscriber=sub, event=row.event, payload=payloads[row.event_id])
            try:
                code = sender.send(message)
            except TransportError as exc:
                _record_success(sub.pk, sent, [])
                sent = []
                outcome, failures = _record_failure(row, exc)
                outcomes[row.pk] = outcome
                if outcome != Delivery.Status.DEAD:
                    held.add(row.golden_id)
                stop = exc.gone or failures >= _circuit_threshold()
                continue
            sent.append((row.pk, code))
            outcomes[row.pk] = "delivered"
            if len(sent) >= flush_every:
                _record_success(sub.pk, sent, [r.pk for r in rows[index + 1 :]])
                sent = []
    _record_success(sub.pk, sent, [])
    _release(deferred)
    return outcomes


def delivery_attempt(*, delivery_id: int) -> str:
    """Send one queued delivery (a batch of one) and return its outcome.  Safe to repeat."""
    return deliveries_send(delivery_ids=[delivery_id])[delivery_id]


def _record_failure(delivery: Delivery, exc: TransportError) -> tuple[str, int]:
    """Record a failed attempt: retry later, dead letter, or (410) disable the subscriber.
    Returns the outcome and the subscriber's failures in a row."""
    now = timezone.now()
    with transaction.atomic():
        sub = Subscriber.objects.select_for_update().get(pk=delivery.subscriber_id)
        failures = sub.consecutive_failures + 1
        changes: dict[str, Any] = {
            "consecutive_failures": failures,
            "attempts_total": F("attempts_total") + 1,
            "failures_total": F("failures_total") + 1,
        }
        if exc.gone:
            changes.update(
                is_active=False, disabled_reason=f"{sub.url} answered 410 Gone at {now:%c}"
            )
        elif failures >= _circuit_threshold():
            changes["circuit_open_until"] = now + _circuit_cooldown()
        Subscriber.objects.filter(pk=sub.pk).update(**changes)
        if exc.gone:
            outcome = Delivery.Status.PENDING
            next_at = now
        elif exc.permanent or delivery.attempts >= sub.max_attempts:
            outcome = Delivery.Status.DEAD
            next_at = now
        else:
            outcome = Delivery.Status.PENDING
            next_at = now + backoff_delay(delivery.attempts)
        Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING).update(
            status=outcome, response_code=exc.status, error=str(exc)[:2000], next_attempt_at=next_at
        )
    return ("gone" if exc.gone else str(outcome)), failures


def delivery_replay(*, delivery: Delivery) -> bool:
    """Send a dead letter again from scratch (attempts reset).  False if it was not dead."""
    return bool(
        Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.DEAD).update(
            status=Delivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
    )


def deliveries_replay_all(*, subscriber: Subscriber) -> int:
    """Send every dead letter of a subscriber again.  Returns how many."""
    return Delivery.objects.filter(subscriber=subscriber, status=Delivery.Status.DEAD).update(
        status=Delivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
    )


# --- retention -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeReport:
    cutoff: datetime
    upto_seq: int  # events up to this seq are (or would be) gone
    held_by: str  # what stopped the purge going further
    events: int
    deliveries: int
    dry_run: bool


def _purge_bound(cutoff: datetime) -> tuple[int, str]:
    """The highest seq that may go: older than the cutoff, and below what every subscriber
    still needs (a push subscriber: its first unplanned event and its first delivery not yet
    delivered, dead letters included, since they may be replayed; a pull consumer: its
    acknowledged position).  Paused and disabled subscribers count: they resume."""
    bounds: list[tuple[int, str]] = []
    old = (
        ChangeEvent.objects.filter(seq__isnull=False, sequenced_at__lt=cutoff).aggregate(
            m=Max("seq")
        )["m"]
        or 0
    )
    bounds.append((old, "age"))
    for code, kind, planned, acked in Subscriber.objects.values_list(
        "code", "kind", "planned_seq", "acked_seq"
    ):
        if kind == Subscriber.Kind.PULL:
            bounds.append((acked, f"consumer {code} (acknowledged {acked})"))
        else:
            bounds.append((planned, f"subscriber {code} (planned {planned})"))
    first_open = (
        Delivery.objects.exclude(status=Delivery.Status.DELIVERED)
        .order_by("seq")
        .values_list("seq", "subscriber__code")
        .first()
    )
    if first_open is not None:
        bounds.append(
            (first_open[0] - 1, f"subscriber {first_open[1]} (undelivered {first_open[0]})")
        )
    return min(bounds)


def events_purge(
    *, days: float | None = None, dry_run: bool = False, now: datetime | None = None
) -> PurgeReport:
    """Delete the events (and their deliveries) older than the retention that every
    subscriber has delivered or acknowledged, from the oldest up: the purged range is
    contiguous, and ``EventSequence.purged_seq`` records its end, so a feed reader asking
    for ``after`` below it is told to take a snapshot.  ``dry_run`` counts, deletes nothing.
    Batched (10,000 events a transaction).  Safe to repeat and to run beside the relay.
    """
    days = float(_setting("AURUM_SYNC_EVENT_RETENTION_DAYS", 30) if days is None else days)
    if days < 0:
        raise ValidationError({"days": "must be 0 or more"})
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    EventSequence.objects.get_or_create(pk=1)
    upto, held_by = _purge_bound(cutoff)
    purged = EventSequence.objects.values_list("purged_seq", flat=True).get(pk=1)
    upto = max(upto, purged)
    events = ChangeEvent.objects.filter(seq__isnull=False, seq__lte=upto)
    if dry_run:
        return PurgeReport(
            cutoff,
            upto,
            held_by,
            events.count(),
            Delivery.objects.filter(event__seq__lte=upto).count(),
            True,
        )
    deleted_events = deleted_deliveries = 0
    while True:
        with transaction.atomic():
            ids = list(events.order_by("seq").values_list("pk", flat=True)[:10_000])
            if not ids:
                break
            deleted_deliveries += Delivery.objects.filter(event_id__in=ids).delete()[0]
            deleted_events += ChangeEvent.objects.filter(pk__in=ids).delete()[0]
    with transaction.atomic():
        EventSequence.objects.filter(pk=1, purged_seq__lt=upto).update(purged_seq=upto)
    return PurgeReport(cutoff, upto, held_by, deleted_events, deleted_deliveries, False)


# --- reconciliation ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconcileReport:
    high_water: int
    expected: int  # golden records with an event the subscriber wants
    up_to_date: int
    behind: list[int]  # golden ids whose latest wanted event was not delivered / acknowledged
    pending: int
    dead: int
    resent: int


def subscriber_reconcile(*, subscriber: Subscriber, resend: bool = False) -> ReconcileReport:
    """Compare, per golden record, the latest event the subscriber wants with the latest one
    it received (delivered, or at most its acknowledged feed position); with ``resend``,
    queue the latest event of each golden record that is behind again (a dead letter is
    replayed, a missing delivery written).  In-flight deliveries count as not behind.
    Safe to repeat.
    """
    change_events_sequence()
    high = high_water_seq()
    events = ChangeEvent.objects.filter(seq__isnull=False, seq__lte=high)
    if subscriber.domains:
        events = events.filter(domain__in=subscriber.domains)
    if subscriber.event_kinds:
        events = events.filter(kind__in=subscriber.event_kinds)
    latest = dict(events.values("golden_id").annotate(m=Max("seq")).values_list("golden_id", "m"))
    latest_events = {
        e.golden_id: e for e in ChangeEvent.objects.filter(seq__in=list(latest.values()))
    }
    if subscriber.filters:
        attrs = event_attributes(latest_events.values())
        latest = {
            g: s
            for g, s in latest.items()
            if subscriber_wants(subscriber, latest_events[g], attrs.get(latest_events[g].pk))
        }
    deliveries = Delivery.objects.filter(subscriber=subscriber)
    if subscriber.kind == Subscriber.Kind.PULL:
        behind = sorted(g for g, s in latest.items() if s > subscriber.acked_seq)
        in_flight: set[int] = set()
    else:
        received = dict(
            deliveries.filter(status=Delivery.Status.DELIVERED)
            .values("golden_id")
            .annotate(m=Max("seq"))
            .values_list("golden_id", "m")
        )
        in_flight = set(deliveries.filter(status__in=IN_FLIGHT).values_list("golden_id", flat=True))
        behind = sorted(
            g for g, s in latest.items() if received.get(g, 0) < s and g not in in_flight
        )
    pending = deliveries.filter(status__in=IN_FLIGHT).count()
    dead = deliveries.filter(status=Delivery.Status.DEAD).count()
    resent = 0
    if resend and subscriber.kind != Subscriber.Kind.PULL and behind:
        now = timezone.now()
        with transaction.atomic():
            for gid in behind:
                event = latest_events[gid]
                updated = (
                    deliveries.filter(event=event)
                    .exclude(status__in=IN_FLIGHT)
                    .update(status=Delivery.Status.PENDING, attempts=0, next_attempt_at=now)
                )
                if not updated:
                    Delivery.objects.create(
                        subscriber=subscriber,
                        event=event,
                        seq=event.seq or 0,
                        golden_id=gid,
                        next_attempt_at=now,
                    )
                resent += 1
    return ReconcileReport(
        high_water=high,
        expected=len(latest),
        up_to_date=len(latest) - len(behind) - len(in_flight & set(latest)),
        behind=behind,
        pending=pending,
        dead=dead,
        resent=resent,
    )
