"""Reads of the outbox: event payloads, the change feed, snapshots and subscriber health."""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, JSONField, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from mdm.models import CrossReference, GoldenRecord, GoldenRelationship, SourceRecord
from sync.models import ChangeEvent, Delivery, EventSequence, Subscriber

BATCH = 900

Payload = dict[str, Any]


def _history_model() -> Any:
    return GoldenRecord.history.model


def event_payloads(events: Iterable[ChangeEvent]) -> dict[int, Payload]:
    """Event id -> its payload: the golden record at that version, what changed, its xref.

    The golden record comes from its history row of this version, and the cross-reference
    is its members at that time (from the xref history), so a payload says what the change
    was even when read or replayed later.  ``xref`` items carry ``source``
    and ``source_key``; subscribers that asked for no source keys get them stripped by
    ``payload_for``.  Set-based: one query for the history rows with their previous
    version's attributes, three for the cross-reference as at each event, per 900 events.
    """
    events = list(events)
    history = _history_model()
    rows: dict[int, dict[str, Any]] = {}
    ids = [e.history_id for e in events if e.history_id]
    previous = (
        history.objects.filter(id=OuterRef("id"), history_id__lt=OuterRef("history_id"))
        .order_by("-history_id")
        .values("attributes")[:1]
    )
    for start in range(0, len(ids), BATCH):
        for row in (
            history.objects.filter(history_id__in=ids[start : start + BATCH])
            .annotate(before=Subquery(previous, output_field=JSONField()))
            .values("history_id", "status", "survivor_id", "attributes", "before")
        ):
            rows[row["history_id"]] = row
    xref = _xref_as_at(events)
    relationships = _relationship_payloads(events)
    payloads: dict[int, Payload] = {}
    for event in events:
        if event.kind == ChangeEvent.Kind.RELATIONSHIP:
            payloads[event.pk] = {
                "type": "golden.relationship",
                "seq": event.seq,
                "domain": event.domain,
                "occurred_at": event.occurred_at.isoformat(),
                "reason": event.reason,
                "golden": {"id": event.golden_id},
                "changed": ["relationships"],
                "xref": list(xref.get(event.pk, [])),
                "relationship": relationships.get(event.pk, {}),
            }
            continue
        row = rows.get(event.history_id or -1)
        golden: dict[str, Any] = {"id": event.golden_id, "version": event.version}
        changed: list[str] = []
        if row is not None and event.kind != ChangeEvent.Kind.ERASED:
            after = row["attributes"] or {}
            golden.update(status=row["status"], survivor_id=row["survivor_id"], attributes=after)
            before = row["before"] or {}
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        payloads[event.pk] = {
            "type": f"golden.{event.kind}",
            "seq": event.seq,
            "domain": event.domain,
            "occurred_at": event.occurred_at.isoformat(),
            "reason": event.reason,
            "golden": golden,
            "changed": changed,
            "xref": xref.get(event.pk, []),
        }
    return payloads


def _xref_as_at(events: list[ChangeEvent]) -> dict[int, list[dict[str, str]]]:
    """Event id -> the golden record's members when the event happened, from the
    cross-reference history (a change writes its golden and xref history rows with the
    same time).  A golden record with no xref history at all (rows loaded around the
    history) gets its current members.  Set-based: three queries per 900 golden records."""
    xref_history: Any = CrossReference.history.model
    golden_ids = sorted({e.golden_id for e in events})
    if not golden_ids:
        return {}
    latest = max(e.occurred_at for e in events)
    ever: dict[int, set[int]] = defaultdict(set)  # golden -> records ever linked to it
    for start in range(0, len(golden_ids), BATCH):
        for gid, rid in (
            xref_history.objects.filter(golden_id__in=golden_ids[start : start + BATCH])
            .values_list("golden_id", "record_id")
            .distinct()
        ):
            ever[gid].add(rid)
    record_ids = sorted(set().union(*ever.values())) if ever else []
    links: dict[int, list[tuple[datetime, int | None]]] = defaultdict(list)
    names: dict[int, tuple[str, str]] = {}
    for start in range(0, len(record_ids), BATCH):
        part = record_ids[start : start + BATCH]
        for rid, gid, kind, when in (
            xref_history.objects.filter(record_id__in=part, history_date__lte=latest)
            .order_by("record_id", "history_date", "history_id")
            .values_list("record_id", "golden_id", "history_type", "history_date")
        ):
            links[rid].append((when, None if kind == "-" else gid))
        names.update(
            (pk, (code, key))
            for pk, code, key in SourceRecord.objects.filter(pk__in=part).values_list(
                "pk", "source_system__code", "source_key"
            )
        )
    current: dict[int, list[dict[str, str]]] = defaultdict(list)
    unhistoried = [g for g in golden_ids if g not in ever]
    for start in range(0, len(unhistoried), BATCH):
        for gid, code, key in (
            CrossReference.objects.filter(golden_id__in=unhistoried[start : start + BATCH])
            .order_by("golden_id", "record__source_system__code", "record__source_key")
            .values_list("golden_id", "record__source_system__code", "record__source_key")
        ):
            current[gid].append({"source": code, "source_key": key})
    out: dict[int, list[dict[str, str]]] = {}
    for event in events:
        if event.golden_id not in ever:
            out[event.pk] = list(current.get(event.golden_id, []))
            continue
        members: list[tuple[str, str]] = []
        for rid in ever[event.golden_id]:
            history = links.get(rid, [])
            at = bisect_right([when for when, _ in history], event.occurred_at)
            if at and history[at - 1][1] == event.golden_id and rid in names:
                members.append(names[rid])
        out[event.pk] = [{"source": c, "source_key": k} for c, k in sorted(members)]
    return out


def _relationship_action(row: Any, previous: Any) -> str:
    if row.status == "held":
        return "held"
    if previous is None:
        return "added" if row.status == "active" else "ended"
    if row.status == "ended" and previous.status != "ended":
        return "ended"
    if row.status == "active" and previous.status != "active":
        return "added"
    if row.to_golden_id != previous.to_golden_id:
        return "re-pointed"
    return "updated"


def _relationship_payloads(events: list[ChangeEvent]) -> dict[int, dict[str, Any]]:
    """Event id -> the relationship as that event's history row has it, and what it did.

    ``action`` is ``added``, ``re-pointed`` (``previous_to_id`` says from where), ``ended``,
    ``held`` (would close a cycle) or ``updated`` (its provenance changed).
    """
    wanted = [e for e in events if e.kind == ChangeEvent.Kind.RELATIONSHIP]
    if not wanted:
        return {}
    history: Any = GoldenRelationship.history.model
    ids = [e.relationship_history_id for e in wanted if e.relationship_history_id]
    rows: dict[int, Any] = {}
    for start in range(0, len(ids), BATCH):
        for row in history.objects.filter(history_id__in=ids[start : start + BATCH]):
            rows[row.history_id] = row
    out: dict[int, dict[str, Any]] = {}
    for event in wanted:
        row = rows.get(event.relationship_history_id or -1)
        if row is None:
            continue
        previous = (
            history.objects.filter(id=row.id, history_id__lt=row.history_id)
            .order_by("-history_id")
            .first()
        )
        out[event.pk] = {
            "id": row.id,
            "type": row.rel_type,
            "from_id": row.from_golden_id,
            "to_id": row.to_golden_id,
            "status": row.status,
            "action": _relationship_action(row, previous),
            "previous_to_id": previous.to_golden_id if previous is not None else None,
            "origin": row.origin,
            "steward_locked": row.steward_locked,
            "version": row.version,
            "provenance": row.provenance,
            "started_at": row.started_at.isoformat(),
            "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        }
    return out


def event_attributes(events: Iterable[ChangeEvent]) -> dict[int, Any]:
    """Event id -> the attributes a subscriber's filters look at.

    A golden event: the record at that version; a relationship event: its "from" golden
    record as it is now.
    """
    events = list(events)
    history = _history_model()
    out: dict[int, Any] = {}
    by_history = {e.history_id: e.pk for e in events if e.history_id}
    keys = list(by_history)
    for start in range(0, len(keys), BATCH):
        for hid, attributes in history.objects.filter(
            history_id__in=keys[start : start + BATCH]
        ).values_list("history_id", "attributes"):
            out[by_history[hid]] = attributes
    rel_goldens = sorted({e.golden_id for e in events if e.kind == ChangeEvent.Kind.RELATIONSHIP})
    current: dict[int, Any] = {}
    for start in range(0, len(rel_goldens), BATCH):
        current.update(
            GoldenRecord.objects.filter(pk__in=rel_goldens[start : start + BATCH]).values_list(
                "pk", "attributes"
            )
        )
    for e in events:
        if e.kind == ChangeEvent.Kind.RELATIONSHIP:
            out[e.pk] = current.get(e.golden_id)
    return out


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


def purged_seq() -> int:
    """Events up to this seq were purged by retention (0: none was)."""
    return EventSequence.objects.filter(pk=1).values_list("purged_seq", flat=True).first() or 0


def change_feed(
    *,
    after: int,
    domain: str | None = None,
    domains: frozenset[str] | None = None,
    limit: int = 100,
    upto: int | None = None,
) -> list[ChangeEvent]:
    """Sequenced events after ``after`` (and at most ``upto``), in order, at most ``limit``;
    of one ``domain``, or of the caller's ``domains`` (None: every domain)."""
    qs = ChangeEvent.objects.filter(seq__gt=after)
    if upto is not None:
        qs = qs.filter(seq__lte=upto)
    if domain:
        qs = qs.filter(domain=domain)
    if domains is not None:
        qs = qs.filter(domain__in=sorted(domains))
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
