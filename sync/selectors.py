"""Reads of the outbox: event payloads, the change feed, snapshots and subscriber health."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from mdm.models import CrossReference, GoldenRecord
from sync.models import ChangeEvent, Delivery, Subscriber

BATCH = 900

Payload = dict[str, Any]


def _history_model() -> Any:
    return GoldenRecord.history.model


def event_payloads(events: Iterable[ChangeEvent]) -> dict[int, Payload]:
    """Event id -> its payload: the golden record at that version, what changed, its xref.

    The golden record comes from its history row of this version, so a payload says what
    the change was even when read later; the cross-reference is the golden record's current
    members (the golden id each source key now belongs to).  ``xref`` items carry ``source``
    and ``source_key``; subscribers that asked for no source keys get them stripped by
    ``payload_for``.
    """
    events = list(events)
    history = _history_model()
    rows: dict[int, Any] = {}
    ids = [e.history_id for e in events if e.history_id]
    for start in range(0, len(ids), BATCH):
        for row in history.objects.filter(history_id__in=ids[start : start + BATCH]):
            rows[row.history_id] = row
    golden_ids = sorted({e.golden_id for e in events})
    xref: dict[int, list[dict[str, str]]] = defaultdict(list)
    for start in range(0, len(golden_ids), BATCH):
        for gid, code, key in (
            CrossReference.objects.filter(golden_id__in=golden_ids[start : start + BATCH])
            .order_by("golden_id", "record__source_system__code", "record__source_key")
            .values_list("golden_id", "record__source_system__code", "record__source_key")
        ):
            xref[gid].append({"source": code, "source_key": key})
    payloads: dict[int, Payload] = {}
    for event in events:
        row = rows.get(event.history_id or -1)
        golden: dict[str, Any] = {"id": event.golden_id, "version": event.version}
        changed: list[str] = []
        if row is not None and event.kind != ChangeEvent.Kind.ERASED:
            golden.update(status=row.status, survivor_id=row.survivor_id, attributes=row.attributes)
            previous = (
                history.objects.filter(id=event.golden_id, history_id__lt=row.history_id)
                .order_by("-history_id")
                .values_list("attributes", flat=True)
                .first()
            )
            before = previous or {}
            after = row.attributes
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        payloads[event.pk] = {
            "type": f"golden.{event.kind}",
            "seq": event.seq,
            "domain": event.domain,
            "occurred_at": event.occurred_at.isoformat(),
            "reason": event.reason,
            "golden": golden,
            "changed": changed,
            "xref": list(xref.get(event.golden_id, [])),
        }
    return payloads


def payload_for(subscriber: Subscriber, payload: Payload) -> Payload:
    """The payload as this subscriber asked for it (source keys or not, only its own)."""
    out = dict(payload)
    if not subscriber.include_source_keys:
        out["xref"] = []
    elif subscriber.source_system_id is not None:
        code = subscriber.source_system.code if subscriber.source_system else ""
        out["xref"] = [x for x in payload["xref"] if x["source"] == code]
    return out


def subscriber_wants(subscriber: Subscriber, event: ChangeEvent, attributes: Any) -> bool:
    """Whether the subscriber's domains, event kinds and attribute filters let this through.

    An attribute filter applies to events that carry attributes; erasures always pass (a
    system that may hold the record must learn it is gone).
    """
    if subscriber.domains and event.domain not in subscriber.domains:
        return False
    if subscriber.event_kinds and event.kind not in subscriber.event_kinds:
        return False
    if subscriber.filters and event.kind != ChangeEvent.Kind.ERASED:
        values = attributes or {}
        for attribute, allowed in subscriber.filters.items():
            if values.get(attribute) not in allowed:
                return False
    return True


def high_water_seq() -> int:
    """The last sequenced event (0 when none)."""
    return ChangeEvent.objects.aggregate(m=Max("seq"))["m"] or 0


def change_feed(
    *, after: int, domain: str | None = None, limit: int = 100, upto: int | None = None
) -> list[ChangeEvent]:
    """Sequenced events after ``after`` (and at most ``upto``), in order, at most ``limit``."""
    qs = ChangeEvent.objects.filter(seq__gt=after)
    if upto is not None:
        qs = qs.filter(seq__lte=upto)
    if domain:
        qs = qs.filter(domain=domain)
    return list(qs.order_by("seq")[:limit])


def snapshot_rows(*, domain: str, include_xref: bool = True) -> Iterator[dict[str, Any]]:
    """Every active golden record of a domain with its members, in id order.

    Call inside the transaction that read the snapshot's sequence number.
    """
    last = 0
    while True:
        chunk = list(
            GoldenRecord.objects.filter(
                domain=domain, status=GoldenRecord.Status.ACTIVE, pk__gt=last
            ).order_by("pk")[:BATCH]
        )
        if not chunk:
            return
        xref: dict[int, list[dict[str, str]]] = defaultdict(list)
        if include_xref:
            for gid, code, key in (
                CrossReference.objects.filter(golden_id__in=[g.pk for g in chunk])
                .order_by("golden_id", "record__source_system__code", "record__source_key")
                .values_list("golden_id", "record__source_system__code", "record__source_key")
            ):
                xref[gid].append({"source": code, "source_key": key})
        for golden in chunk:
            yield {
                "id": golden.pk,
                "domain": golden.domain,
                "version": golden.version,
                "attributes": golden.attributes,
                "xref": xref.get(golden.pk, []),
                "updated_at": golden.updated_at.isoformat(),
            }
        last = chunk[-1].pk


def dead_letters(*, subscriber: Subscriber) -> QuerySet[Delivery]:
    return Delivery.objects.filter(subscriber=subscriber, status=Delivery.Status.DEAD)


@dataclass(frozen=True)
class SubscriberHealth:
    code: str
    kind: str
    is_active: bool
    circuit_open: bool
    lag: int  # events behind: not yet delivered (push) or not yet acknowledged (pull)
    pending: int
    dead_letters: int
    failure_rate: float  # failed attempts / attempts, since the subscriber was registered
    oldest_pending_at: datetime | None
    disabled_reason: str


def subscriber_health(*, now: datetime | None = None) -> list[SubscriberHealth]:
    """Per subscriber: lag, pending deliveries, dead letters, failure rate, circuit state.

    For the admin and the steward UI's health panel.
    """
    now = now or timezone.now()
    high = high_water_seq()
    counts: dict[int, Any] = {}
    for row in (
        Delivery.objects.exclude(status=Delivery.Status.DELIVERED)
        .values("subscriber_id")
        .annotate(
            open=Count("id", filter=~Q(status=Delivery.Status.DEAD)),
            dead=Count("id", filter=Q(status=Delivery.Status.DEAD)),
        )
    ):
        counts[row["subscriber_id"]] = row
    oldest = dict(
        Delivery.objects.filter(
            status__in=[Delivery.Status.PENDING, Delivery.Status.QUEUED, Delivery.Status.SENDING]
        )
        .values("subscriber_id")
        .annotate(first=Min("created_at"))
        .values_list("subscriber_id", "first")
    )
    out: list[SubscriberHealth] = []
    # Committed events the sequencer has not numbered yet are behind for everyone.
    unsequenced = ChangeEvent.objects.filter(seq__isnull=True).count()
    for sub in Subscriber.objects.order_by("code"):
        row = counts.get(sub.pk, {})
        pending = int(row.get("open", 0))
        if sub.kind == Subscriber.Kind.PULL:
            lag = max(0, high - sub.acked_seq) + unsequenced
        else:
            unplanned = (
                ChangeEvent.objects.filter(seq__gt=sub.planned_seq, seq__lte=high).count()
                if sub.planned_seq < high
                else 0
            )
            lag = pending + unplanned + unsequenced
        out.append(
            SubscriberHealth(
                code=sub.code,
                kind=sub.kind,
                is_active=sub.is_active,
                circuit_open=bool(sub.circuit_open_until and sub.circuit_open_until > now),
                lag=lag,
                pending=pending,
                dead_letters=int(row.get("dead", 0)),
                failure_rate=(sub.failures_total / sub.attempts_total)
                if sub.attempts_total
                else 0.0,
                oldest_pending_at=oldest.get(sub.pk),
                disabled_reason=sub.disabled_reason,
            )
        )
    return out
