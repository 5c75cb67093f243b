"""Every write of the outbox: sequencing, planning, claiming, delivering, replaying.

The life of an event: a trigger writes it with the golden change (``sync.triggers``);
``change_events_sequence`` gives it its ``seq``; ``deliveries_plan`` writes one Delivery per
push subscriber that wants it; ``deliveries_claim`` picks due deliveries (SKIP LOCKED, at most
one in flight per subscriber and golden record) and the relay queues a task per delivery;
``delivery_attempt`` sends it and records the outcome: delivered, retried later with
exponential backoff and jitter, or a dead letter.
"""

from __future__ import annotations

import random
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

from mdm.models import GoldenRecord
from sync.models import ChangeEvent, Delivery, EventSequence, Subscriber
from sync.selectors import event_payloads, high_water_seq, payload_for, subscriber_wants
from sync.signing import secret_generate, signature_header
from sync.transports import Message, TransportError, address_refusal, amqp_send, webhook_send

IN_FLIGHT = (Delivery.Status.PENDING, Delivery.Status.QUEUED, Delivery.Status.SENDING)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- subscribers ---------------------------------------------------------------------------


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
) -> Subscriber:
    """Register a subscriber; it receives the events after ``from_seq`` (default: from now).

    A webhook URL that resolves to a loopback, link-local or private address is refused
    (see ``sync.transports.address_refusal``).  Not safe to repeat: the code is unique.
    """
    if kind not in Subscriber.Kind.values:
        raise ValidationError({"kind": f"unknown kind {kind!r}"})
    unknown = set(event_kinds) - set(ChangeEvent.Kind.values)
    if unknown:
        raise ValidationError({"event_kinds": f"unknown event kinds {sorted(unknown)}"})
    if kind == Subscriber.Kind.WEBHOOK:
        refusal = address_refusal(url)
        if refusal:
            raise ValidationError({"url": refusal})
    if kind == Subscriber.Kind.AMQP and not (url and exchange):
        raise ValidationError({"exchange": "an AMQP subscriber needs a broker URL and exchange"})
    start = high_water_seq() if from_seq is None else from_seq
    with transaction.atomic():
        return Subscriber.objects.create(
            code=code,
            kind=kind,
            url=url,
            exchange=exchange,
            secret=secret if secret is not None else secret_generate(),
            domains=list(domains),
            event_kinds=list(event_kinds),
            filters=filters or {},
            include_source_keys=include_source_keys,
            source_system=source_system,
            max_attempts=max_attempts,
            planned_seq=start,
            acked_seq=start,
        )


def subscriber_rotate_secret(*, subscriber: Subscriber, new_secret: str | None = None) -> str:
    """Start a rotation: sign with a new secret and keep the current one valid.  Returns it."""
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
    """Re-enable a subscriber (after a 410) and close its circuit.  Safe to repeat."""
    Subscriber.objects.filter(pk=subscriber.pk).update(
        is_active=True, disabled_reason="", consecutive_failures=0, circuit_open_until=None
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


def deliveries_plan(*, limit: int = 5_000, now: datetime | None = None) -> int:
    """Write a Delivery for each sequenced event each active push subscriber wants.

    Each subscriber is planned by one relay at a time (its row locked, SKIP LOCKED) from its
    ``planned_seq``; the unique (subscriber, event) key makes a repeat harmless.
    """
    now = now or timezone.now()
    high = high_water_seq()
    written = 0
    candidates = Subscriber.objects.filter(
        is_active=True,
        kind__in=[Subscriber.Kind.WEBHOOK, Subscriber.Kind.AMQP],
        planned_seq__lt=high,
    ).values_list("pk", flat=True)
    history: Any = GoldenRecord.history.model
    for pk in list(candidates):
        with transaction.atomic():
            sub = Subscriber.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            if sub is None:
                continue
            events = list(
                ChangeEvent.objects.filter(seq__gt=sub.planned_seq, seq__isnull=False).order_by(
                    "seq"
                )[:limit]
            )
            if not events:
                continue
            attributes: dict[int, Any] = {}
            if sub.filters:
                ids = [e.history_id for e in events if e.history_id]
                for start in range(0, len(ids), 900):
                    attributes.update(
                        history.objects.filter(history_id__in=ids[start : start + 900]).values_list(
                            "history_id", "attributes"
                        )
                    )
            rows = [
                Delivery(
                    subscriber=sub,
                    event=event,
                    seq=event.seq or 0,
                    golden_id=event.golden_id,
                    next_attempt_at=now,
                )
                for event in events
                if subscriber_wants(sub, event, attributes.get(event.history_id or -1))
            ]
            Delivery.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
            Subscriber.objects.filter(pk=sub.pk).update(planned_seq=events[-1].seq)
            written += len(rows)
    return written


# --- claiming ------------------------------------------------------------------------------


def _circuit_threshold() -> int:
    return int(_setting("AURUM_SYNC_CIRCUIT_FAILURES", 5))


def _circuit_cooldown() -> timedelta:
    return timedelta(seconds=float(_setting("AURUM_SYNC_CIRCUIT_COOLDOWN", 60)))


def deliveries_claim(*, limit: int = 500, now: datetime | None = None) -> list[int]:
    """Mark due deliveries queued and return their ids, for the relay to queue tasks for.

    Due: pending, time reached, subscriber active with a closed circuit, and no earlier
    delivery of the same golden record to the same subscriber still open (versions reach a
    subscriber in order).  A subscriber whose cool-down just ended gets one delivery, the
    probe, and its circuit stays open until the probe's outcome.  Rows are locked with SKIP
    LOCKED, so relays running together claim different rows.
    """
    now = now or timezone.now()
    earlier_open = Delivery.objects.filter(
        subscriber_id=OuterRef("subscriber_id"),
        golden_id=OuterRef("golden_id"),
        seq__lt=OuterRef("seq"),
        status__in=IN_FLIGHT,
    )
    with transaction.atomic():
        rows = list(
            Delivery.objects.filter(
                status=Delivery.Status.PENDING,
                next_attempt_at__lte=now,
                subscriber__is_active=True,
            )
            .filter(
                Q(subscriber__circuit_open_until__isnull=True)
                | Q(subscriber__circuit_open_until__lte=now)
            )
            .exclude(Exists(earlier_open))
            .order_by("seq", "subscriber_id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "subscriber_id", "subscriber__consecutive_failures")[:limit]
        )
        threshold = _circuit_threshold()
        probing: set[int] = set()
        ids: list[int] = []
        for pk, sub_id, failures in rows:
            if failures >= threshold:
                if sub_id in probing:
                    continue
                probing.add(sub_id)
            ids.append(pk)
        if probing:
            Subscriber.objects.filter(pk__in=probing).update(
                circuit_open_until=now + _circuit_cooldown()
            )
        if ids:
            Delivery.objects.filter(pk__in=ids, status=Delivery.Status.PENDING).update(
                status=Delivery.Status.QUEUED, claimed_at=now
            )
    return ids


def deliveries_requeue_stale(*, now: datetime | None = None) -> list[int]:
    """Deliveries whose task was lost (broker restarted, worker killed): queue them again.

    Queued longer than ``AURUM_SYNC_REQUEUE_AFTER`` seconds, or sending longer than that plus
    the send timeout.  The delivery task is idempotent, so a task that was only late does no
    harm: the second copy finds the row no longer queued and stops.
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
            .values_list("pk", flat=True)[:5000]
        )
        if stale:
            Delivery.objects.filter(pk__in=stale).update(
                status=Delivery.Status.QUEUED, claimed_at=now
            )
    return stale


@dataclass(frozen=True)
class RelayResult:
    sequenced: int
    planned: int
    requeued: list[int]
    claimed: list[int]

    @property
    def to_send(self) -> list[int]:
        return self.requeued + self.claimed


def sync_relay(*, limit: int = 500, now: datetime | None = None) -> RelayResult:
    """One relay pass: sequence, plan, requeue lost deliveries, claim due ones.

    Returns the delivery ids to queue tasks for; everything it wrote is committed when it
    returns, so the caller queues after commit.  Safe to run concurrently and to repeat.
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


def message_build(*, subscriber: Subscriber, event: ChangeEvent) -> Message:
    payload = payload_for(subscriber, event_payloads([event])[event.pk])
    body = orjson.dumps(payload)
    timestamp = int(time.time())
    msg_id = event.message_id
    signature = signature_header(
        secrets_=[subscriber.secret, subscriber.previous_secret],
        msg_id=msg_id,
        timestamp=timestamp,
        body=body,
    )
    return Message(msg_id, timestamp, body, signature, f"{event.domain}.{event.kind}")


def delivery_attempt(*, delivery_id: int) -> str:
    """Send one queued delivery and record the outcome; returns it ("delivered", ...).

    Claims the row with a compare-and-swap (queued -> sending), so a duplicate task stops
    at once ("skipped").  A crash while sending leaves the row sending; the relay queues it
    again later (at least once: the receiver dedupes by ``webhook-id``).  Safe to repeat.
    """
    now = timezone.now()
    claimed = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.QUEUED).update(
        status=Delivery.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        return "skipped"
    delivery = Delivery.objects.select_related(
        "subscriber", "subscriber__source_system", "event"
    ).get(pk=delivery_id)
    sub = delivery.subscriber
    if not sub.is_active:
        Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.SENDING).update(
            status=Delivery.Status.PENDING, attempts=F("attempts") - 1
        )
        return "paused"
    timeout = float(_setting("AURUM_SYNC_SEND_TIMEOUT", 10))
    try:
        message = message_build(subscriber=sub, event=delivery.event)
        if sub.kind == Subscriber.Kind.AMQP:
            amqp_send(url=sub.url, exchange=sub.exchange, message=message, timeout=timeout)
            code: int | None = None
        else:
            code = webhook_send(url=sub.url, message=message, timeout=timeout)
    except TransportError as exc:
        return _record_failure(delivery, exc)
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.SENDING).update(
            status=Delivery.Status.DELIVERED,
            response_code=code,
            error="",
            delivered_at=timezone.now(),
        )
        Subscriber.objects.filter(pk=sub.pk).update(
            consecutive_failures=0,
            circuit_open_until=None,
            attempts_total=F("attempts_total") + 1,
        )
    return "delivered"


def _record_failure(delivery: Delivery, exc: TransportError) -> str:
    sub = delivery.subscriber
    now = timezone.now()
    with transaction.atomic():
        failures = sub.consecutive_failures + 1
        changes: dict[str, Any] = {
            "consecutive_failures": F("consecutive_failures") + 1,
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
    return "gone" if exc.gone else str(outcome)


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
        history: Any = GoldenRecord.history.model
        attrs = dict(
            history.objects.filter(
                history_id__in=[e.history_id for e in latest_events.values() if e.history_id]
            ).values_list("history_id", "attributes")
        )
        latest = {
            g: s
            for g, s in latest.items()
            if subscriber_wants(
                subscriber, latest_events[g], attrs.get(latest_events[g].history_id)
            )
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
