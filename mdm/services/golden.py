"""Golden records: apply a clustering, keep ids stable, rebuild attributes by survivorship."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from mdm.domains import get_domain
from mdm.models import CrossReference, GoldenRecord, SourceRecord
from mdm.survivorship import Member, survive, survivorship_rules_active

BATCH = 900  # ids per IN (...) query: below SQLite's parameter limit
# Django's bulk_update writes one CASE per field: one statement for 36k rows took 23 s of
# SQL and as long again to build; batches of a few hundred keep it linear.
UPDATE_BATCH = 300


@dataclass(frozen=True)
class ApplyResult:
    created: int
    changed: int
    retired: int
    linked: int
    moved: int
    golden_of: dict[Hashable, int] = field(repr=False)  # cluster key -> golden id


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def golden_records_apply_clusters(
    *,
    domain: str,
    clusters: Mapping[int, Hashable],
    linked_by: str = CrossReference.LinkedBy.MATCH,
    reason: str = "match",
) -> ApplyResult:
    """Make golden records follow ``clusters`` (source record id -> cluster key).

    Stable ids: a cluster keeps the golden id most of its members had (ties: the older id),
    each golden id goes to at most one cluster (so a split keeps the id on the larger part),
    a golden record left with no members is retired with a pointer to the golden record that
    received most of them, and a cluster with no golden record gets a new one.  A member of a
    touched golden record that is not in ``clusters`` follows the cluster that holds most of
    that golden record's members (an incremental run need not list them).  Attributes of
    every golden record whose members changed are rebuilt by survivorship, with history.
    Atomic; safe to repeat (a second call with the same clusters changes nothing).
    """
    dom = get_domain(domain)
    now = timezone.now()
    with transaction.atomic():
        record_ids = list(clusters)
        current: dict[int, int] = {}
        for batch in _chunks(record_ids):
            current.update(
                CrossReference.objects.filter(record_id__in=batch).values_list(
                    "record_id", "golden_id"
                )
            )
        touched = set(current.values())
        # Members of touched golden records outside the clustering keep their golden record.
        outside: dict[int, int] = {}
        for batch in _chunks(sorted(touched)):
            for rid, gid in CrossReference.objects.filter(golden_id__in=batch).values_list(
                "record_id", "golden_id"
            ):
                if rid not in clusters:
                    outside[rid] = gid
        members: dict[Hashable, list[int]] = defaultdict(list)
        where: dict[int, Counter[Hashable]] = defaultdict(
            Counter
        )  # golden -> clusters of its members
        for rid, key in clusters.items():
            members[key].append(rid)
            if rid in current:
                where[current[rid]][key] += 1
        for rid, gid in sorted(outside.items()):
            # Not looked at by the caller: it follows its golden record's members.
            key = max(where[gid].items(), key=lambda kv: (kv[1], repr(kv[0])))[0]
            members[key].append(rid)
            current[rid] = gid

        claims: list[tuple[int, int, str, Hashable, int]] = []
        for key, rids in members.items():
            for gid, count in Counter(current[r] for r in rids if r in current).items():
                claims.append((count, -gid, repr(key), key, gid))
        claims.sort(reverse=True)
        golden_of: dict[Hashable, int] = {}
        used: set[int] = set()
        for _, _, _, key, gid in claims:
            if key not in golden_of and gid not in used:
                golden_of[key] = gid
                used.add(gid)

        new_keys = [k for k in members if k not in golden_of]
        created = [GoldenRecord(domain=dom.code) for _ in new_keys]
        if created:
            bulk_create_with_history(
                created, GoldenRecord, default_change_reason=f"{reason}: new", default_date=now
            )
        for key, golden in zip(new_keys, created, strict=True):
            golden_of[key] = golden.pk

        new_links: list[CrossReference] = []
        moved_links: list[CrossReference] = []
        received: dict[int, Counter[int]] = defaultdict(Counter)  # old golden -> new golden
        for key, rids in members.items():
            target = golden_of[key]
            for rid in rids:
                old = current.get(rid)
                if old is None:
                    new_links.append(
                        CrossReference(
                            record_id=rid, golden_id=target, linked_by=linked_by, linked_at=now
                        )
                    )
                elif old != target:
                    received[old][target] += 1
                    moved_links.append(
                        CrossReference(
                            record_id=rid, golden_id=target, linked_by=linked_by, linked_at=now
                        )
                    )
        if new_links:
            bulk_create_with_history(
                new_links, CrossReference, default_change_reason=reason, default_date=now
            )
        if moved_links:
            bulk_update_with_history(
                moved_links,
                CrossReference,
                ["golden", "linked_by", "linked_at"],
                batch_size=UPDATE_BATCH,
                default_change_reason=reason,
                default_date=now,
            )

        retired_ids = sorted(touched - used)
        retired: list[GoldenRecord] = []
        for batch in _chunks(retired_ids):
            for golden in GoldenRecord.objects.filter(pk__in=batch):
                survivor = received[golden.pk].most_common(1)
                golden.status = GoldenRecord.Status.RETIRED
                golden.survivor_id = survivor[0][0] if survivor else None
                golden.retired_at = now
                golden.version += 1
                retired.append(golden)
        if retired:
            bulk_update_with_history(
                retired,
                GoldenRecord,
                ["status", "survivor", "retired_at", "version"],
                batch_size=UPDATE_BATCH,
                default_change_reason=f"{reason}: merged",
                default_date=now,
            )

        affected = {golden_of[k] for k in new_keys}
        affected.update(link.golden_id for link in new_links + moved_links)
        affected.update(received)  # goldens that lost members
        affected.difference_update(retired_ids)
        changed = golden_records_rebuild(
            domain=dom.code, golden_ids=sorted(affected), reason=reason, when=now
        )
    return ApplyResult(
        created=len(created),
        changed=changed,
        retired=len(retired),
        linked=len(new_links),
        moved=len(moved_links),
        golden_of=golden_of,
    )


def golden_records_rebuild(
    *, domain: str, golden_ids: list[int], reason: str = "rebuild", when: Any = None
) -> int:
    """Recompute attributes and provenance of these golden records from their live members.

    Returns how many changed (each gets a new version and a history row).  Safe to repeat.
    """
    if not golden_ids:
        return 0
    dom = get_domain(domain)
    now = when or timezone.now()
    by_golden: dict[int, list[Member]] = defaultdict(list)
    for batch in _chunks(golden_ids):
        rows = SourceRecord.objects.filter(xref__golden_id__in=batch, is_deleted=False).values_list(
            "xref__golden_id",
            "id",
            "source_system__code",
            "source_key",
            "source_system__priority",
            "source_updated_at",
            "received_at",
            "attributes",
        )
        for gid, rid, code, key, priority, updated, received, attributes in rows:
            by_golden[gid].append(Member(rid, code, key, priority, updated or received, attributes))
    rules = survivorship_rules_active(domain=dom.code)
    changed: list[GoldenRecord] = []
    with transaction.atomic():
        for batch in _chunks(golden_ids):
            for golden in GoldenRecord.objects.select_for_update().filter(pk__in=batch):
                attributes, provenance = survive(dom, by_golden.get(golden.pk, []), rules)
                if attributes != golden.attributes or provenance != golden.provenance:
                    golden.attributes = attributes
                    golden.provenance = provenance
                    golden.version += 1
                    golden.updated_at = now
                    changed.append(golden)
        if changed:
            bulk_update_with_history(
                changed,
                GoldenRecord,
                ["attributes", "provenance", "version", "updated_at"],
                batch_size=UPDATE_BATCH,
                default_change_reason=reason,
                default_date=now,
            )
    return len(changed)
