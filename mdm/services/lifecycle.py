"""A steward's changes to golden records: merge, split, correct an attribute, and undo.

Every change locks the golden records it touches (``select_for_update``, in id order so two
changes never deadlock), re-checks them under the lock (active, expected version, members),
and then in one transaction moves the cross-reference, writes the pair constraints that keep
matching from undoing the steward, rebuilds the attributes by survivorship, gives each
touched golden record one new version (history with the change reason and the acting user)
and writes its ``GoldenOperation`` audit row.  A change that lost a race, or found its golden
records changed since the caller read them, raises ``GoldenConflictError`` and writes nothing.

Constraints (``matching.PairConstraint``, reached through the app registry because mdm does
not import matching):
- a merge must-links all the merged records into one group and drops the cannot-links
  inside it;
- a split must-links the records split out into one group (with the members of the golden
  record they go to), cannot-links that group with every record left behind, drops the
  must-links across the cut and re-joins what each side had must-linked before;
- a correction must-links the steward record to a member of its golden record.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
from django.apps import apps
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from simple_history.models import HistoricalRecords
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from mdm.audit.services import audit_record
from mdm.domains import UnknownDomainError, get_domain
from mdm.models import (
    STEWARD_SOURCE,
    CrossReference,
    GoldenOperation,
    GoldenRecord,
    SourceRecord,
    SourceSystem,
)
from mdm.services.golden import golden_records_rebuild
from mdm.services.locks import golden_domain_lock
from mdm.services.relationships import relationships_recompute

MUST = "must_link"
CANNOT = "cannot_link"
STEWARD_PRIORITY = 0  # lower is more trusted: a steward's correction outranks every source


class GoldenOperationError(ValueError):
    """Bad input: the message says what to fix (HTTP 400)."""


class GoldenNotFoundError(GoldenOperationError):
    """No such golden record or operation in this domain (HTTP 404)."""


class GoldenConflictError(RuntimeError):
    """The golden records changed since the caller read them, or another change won the race
    (HTTP 409).  Nothing was written; read again and retry."""


def _pair_constraint() -> Any:
    return apps.get_model("matching", "PairConstraint")


class _Actor:
    """What django-simple-history reads the acting user from while a change is written."""

    def __init__(self, user: Any) -> None:
        self.user = user


_history_context: threading.local = HistoricalRecords.context


@contextmanager
def _acting_as(actor: Any) -> Iterator[None]:
    """Every history row written inside carries ``actor`` as its history_user."""
    previous = getattr(_history_context, "request", None)
    _history_context.request = _Actor(actor)
    try:
        yield
    finally:
        if previous is None:
            del _history_context.request
        else:
            _history_context.request = previous


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) and actor.pk else None


def _domain(code: str) -> str:
    try:
        return get_domain(code).code
    except UnknownDomainError as exc:
        raise GoldenNotFoundError(str(exc)) from exc


def _lock_goldens(domain: str, ids: Iterable[int]) -> dict[int, GoldenRecord]:
    golden_domain_lock(domain)  # waits for a match run's apply in progress
    wanted = sorted(set(ids))
    locked = {
        g.pk: g
        for g in GoldenRecord.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
    }
    missing = [i for i in wanted if i not in locked or locked[i].domain != domain]
    if missing:
        raise GoldenNotFoundError(f"no {domain} golden record {', '.join(map(str, missing))}")
    return locked


def _require_active(golden: GoldenRecord) -> None:
    if golden.status != GoldenRecord.Status.ACTIVE:
        survivor = f" into {golden.survivor_id}" if golden.survivor_id else ""
        raise GoldenConflictError(
            f"golden record {golden.pk} was retired{survivor} (version {golden.version}); "
            "read it again before changing it"
        )


def _check_version(golden: GoldenRecord, expected: int | None) -> None:
    if expected is not None and golden.version != expected:
        raise GoldenConflictError(
            f"golden record {golden.pk} is at version {golden.version}, not {expected}: "
            "it changed since you read it; read it again and retry"
        )


def _members(golden_ids: Iterable[int]) -> dict[int, list[int]]:
    """golden id -> sorted member record ids, the cross-reference rows locked."""
    out: dict[int, list[int]] = {gid: [] for gid in golden_ids}
    rows = (
        CrossReference.objects.select_for_update()
        .filter(golden_id__in=list(out))
        .order_by("record_id")
        .values_list("golden_id", "record_id")
    )
    for gid, rid in rows:
        out[gid].append(rid)
    return out


def _snapshot(
    goldens: Mapping[int, GoldenRecord], members: Mapping[int, list[int]]
) -> dict[str, Any]:
    return {
        str(gid): {
            "status": g.status,
            "survivor": g.survivor_id,
            "retired_at": g.retired_at.isoformat() if g.retired_at else None,
            "members": sorted(members.get(gid, [])),
        }
        for gid, g in goldens.items()
    }


# --- pair constraints ------------------------------------------------------------------


def _constraint_rows(records: Iterable[int], kind: str | None = None) -> list[Any]:
    """Constraints with both ends in ``records``."""
    ids = sorted(set(records))
    qs = _pair_constraint().objects.filter(left_id__in=ids, right_id__in=ids)
    if kind is not None:
        qs = qs.filter(kind=kind)
    return list(qs.order_by("pk"))


def _components(records: Iterable[int], links: Iterable[tuple[int, int]]) -> list[list[int]]:
    parent = {r: r for r in records}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for r in parent:
        groups[find(r)].append(r)
    return sorted(sorted(g) for g in groups.values())


def _connecting_links(
    records: Iterable[int], links: Iterable[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The fewest new pairs that join ``records`` into one group given existing ``links``."""
    groups = _components(records, links)
    if len(groups) < 2:
        return []
    anchor = groups[0][0]
    return [(min(anchor, g[0]), max(anchor, g[0])) for g in groups[1:]]


class _Constraints:
    """Constraint changes of one operation, remembered for its undo."""

    def __init__(self, domain: str, actor: Any, reason: str) -> None:
        self.domain = domain
        self.actor = _user(actor)
        self.reason = reason
        # By pair and kind, not row id: an undo of a later change may re-create a row.
        self.added: list[tuple[int, int, str]] = []
        self.removed: list[dict[str, Any]] = []

    def remove(self, rows: Iterable[Any]) -> None:
        for row in rows:
            self.removed.append(
                {
                    "left": row.left_id,
                    "right": row.right_id,
                    "kind": row.kind,
                    "reason": row.reason,
                    "created_by": row.created_by_id,
                }
            )
            row._change_reason = self.reason
            row.delete()

    def add(self, pairs: Iterable[tuple[int, int]], kind: str) -> None:
        model = _pair_constraint()
        for left, right in sorted(set(pairs)):
            if left == right:
                continue
            existing = model.objects.filter(left_id=left, right_id=right).first()
            if existing is not None:
                if existing.kind == kind:
                    continue
                self.remove([existing])
            row = model(
                domain=self.domain,
                left_id=left,
                right_id=right,
                kind=kind,
                reason=self.reason,
                created_by=self.actor,
            )
            row._change_reason = self.reason
            row.save()
            self.added.append((left, right, kind))

    def restore(self, removed: Sequence[Mapping[str, Any]], added: Sequence[Sequence[Any]]) -> None:
        """Undo another operation's constraint changes: drop what it added, re-add the rest."""
        model = _pair_constraint()
        for left, right, kind in added:
            self.remove(model.objects.filter(left_id=left, right_id=right, kind=kind))
        for row in removed:
            existing = model.objects.filter(left_id=row["left"], right_id=row["right"]).first()
            if existing is not None:
                if existing.kind == row["kind"]:
                    continue
                raise GoldenConflictError(
                    f"records {row['left']} and {row['right']} have a newer constraint; "
                    "undo the later change first"
                )
            restored = model(
                domain=self.domain,
                left_id=row["left"],
                right_id=row["right"],
                kind=row["kind"],
                reason=row["reason"],
                created_by_id=row["created_by"],
            )
            restored._change_reason = self.reason
            restored.save()
            self.added.append((row["left"], row["right"], row["kind"]))

    def as_state(self) -> dict[str, Any]:
        return {"constraints_added": self.added, "constraints_removed": self.removed}


def _must_pairs(rows: Iterable[Any]) -> list[tuple[int, int]]:
    return [(r.left_id, r.right_id) for r in rows if r.kind == MUST]


# --- membership, status and versions -----------------------------------------------------


def _move(records: Iterable[int], target: int, when: datetime, reason: str) -> None:
    links = list(CrossReference.objects.filter(record_id__in=list(records)))
    for link in links:
        link.golden_id = target
        link.linked_by = CrossReference.LinkedBy.STEWARD
        link.linked_at = when
    if links:
        bulk_update_with_history(
            links,
            CrossReference,
            ["golden", "linked_by", "linked_at"],
            default_change_reason=reason,
            default_date=when,
        )


def _finish(
    *,
    domain: str,
    goldens: Mapping[int, GoldenRecord],
    versions: Mapping[int, int],
    when: datetime,
    reason: str,
) -> None:
    """Rebuild the active golden records touched and give each exactly one new version."""
    active = sorted(g for g, obj in goldens.items() if obj.status == GoldenRecord.Status.ACTIVE)
    retired = [obj for obj in goldens.values() if obj.status != GoldenRecord.Status.ACTIVE]
    for obj in retired:
        obj.version = versions[obj.pk] + 1
        obj.updated_at = when
    if retired:
        bulk_update_with_history(
            retired,
            GoldenRecord,
            ["status", "survivor", "retired_at", "version", "updated_at"],
            default_change_reason=reason,
            default_date=when,
        )
    # An undo re-activating a golden record: its history row is the rebuild's or the
    # version bump's below, both written from rows read after this update.
    GoldenRecord.objects.filter(pk__in=active).exclude(status=GoldenRecord.Status.ACTIVE).update(
        status=GoldenRecord.Status.ACTIVE, survivor=None, retired_at=None
    )
    golden_records_rebuild(domain=domain, golden_ids=active, reason=reason, when=when)
    # Links of and to the retired ones move to their survivors (the active ones are done).
    relationships_recompute(golden_ids=[o.pk for o in retired], reason=reason, when=when)
    stale = [
        g
        for g in GoldenRecord.objects.filter(pk__in=active).order_by("pk")
        if g.version == versions.get(g.pk, 0)
    ]
    for obj in stale:
        obj.version += 1
        obj.updated_at = when
    if stale:
        bulk_update_with_history(
            stale,
            GoldenRecord,
            ["version", "updated_at"],
            default_change_reason=reason,
            default_date=when,
        )


def _retire(golden: GoldenRecord, survivor: int | None, when: datetime) -> None:
    golden.status = GoldenRecord.Status.RETIRED
    golden.survivor_id = survivor
    golden.retired_at = when


def _new_golden(domain: str, when: datetime, reason: str) -> GoldenRecord:
    golden = GoldenRecord(domain=domain, version=0, created_at=when)
    golden._change_reason = reason  # type: ignore[attr-defined]
    golden._history_date = when  # type: ignore[attr-defined]
    golden.save()
    return golden


def _reason(kind: str, op: GoldenOperation, text: str) -> str:
    label = f"{kind} #{op.pk}"
    return f"{label}: {text}" if text else label


def _operation(domain: str, kind: str, actor: Any, reason: str, when: datetime) -> GoldenOperation:
    return GoldenOperation.objects.create(
        domain=domain, kind=kind, actor=_user(actor), reason=reason, created_at=when
    )


def _save_operation(
    op: GoldenOperation,
    *,
    golden_ids: Sequence[int],
    target: int | None,
    before: dict[str, Any],
    constraints: _Constraints,
    extra: dict[str, Any] | None = None,
) -> GoldenOperation:
    touched = sorted({int(g) for g in before} | set(golden_ids))
    after_goldens = {g.pk: g for g in GoldenRecord.objects.filter(pk__in=touched)}
    after_members = _members(touched)
    op.golden_ids = list(dict.fromkeys([*golden_ids, *touched]))
    op.target_id = target
    op.state = {
        "before": before,
        "after": _snapshot(after_goldens, after_members),
        "versions": {str(g): obj.version for g, obj in after_goldens.items()},
        **constraints.as_state(),
        **(extra or {}),
    }
    op.save()
    audit_record(
        action=f"golden.{op.kind}",
        actor=op.actor,
        target_type="golden_record",
        target_id=target if target is not None else (op.golden_ids[0] if op.golden_ids else None),
        domain=op.domain,
        detail={
            "operation": op.pk,
            "golden_ids": op.golden_ids,
            **({"undoes": op.undoes_id} if op.undoes_id else {}),
        },
        when=op.created_at,
    )
    return op


# --- merge ---------------------------------------------------------------------------------


def golden_record_merge(
    *,
    domain: str,
    golden_ids: Sequence[int],
    actor: Any,
    reason: str = "",
    expected_versions: Mapping[int, int] | None = None,
    target_id: int | None = None,
) -> GoldenOperation:
    """Merge two or more active golden records into one (``target_id``, else the one with
    the most members, ties to the oldest id); the others are retired with a pointer to it.

    Must-links all their records so that no later match run takes them apart, drops the
    cannot-links among them, rebuilds the survivor's attributes and writes the audit row.
    Raises ``GoldenConflictError`` when a record is no longer active or not at the expected
    version (so of two concurrent merges of the same records exactly one applies), and
    ``GoldenOperationError`` for bad input.  Not idempotent: a repeat finds them retired.
    """
    domain = _domain(domain)
    ids = list(dict.fromkeys(int(g) for g in golden_ids))
    if len(ids) < 2:
        raise GoldenOperationError("give at least two different golden record ids to merge")
    if target_id is not None and target_id not in ids:
        raise GoldenOperationError(f"target {target_id} must be one of the merged records {ids}")
    expected = {int(k): int(v) for k, v in (expected_versions or {}).items()}
    unknown = sorted(set(expected) - set(ids))
    if unknown:
        raise GoldenOperationError(f"expected_versions names records not merged: {unknown}")
    now = timezone.now()
    with _acting_as(_user(actor)), transaction.atomic():
        goldens = _lock_goldens(domain, ids)
        for gid in ids:
            _require_active(goldens[gid])
            _check_version(goldens[gid], expected.get(gid))
        members = _members(ids)
        if target_id is None:
            target_id = min(ids, key=lambda g: (-len(members[g]), g))
        before = _snapshot(goldens, members)
        versions = {g: obj.version for g, obj in goldens.items()}
        op = _operation(domain, GoldenOperation.Kind.MERGE, actor, reason, now)
        why = _reason("merge", op, reason)
        union = sorted(r for g in ids for r in members[g])
        constraints = _Constraints(domain, actor, why)
        rows = _constraint_rows(union)
        constraints.remove(r for r in rows if r.kind == CANNOT)
        constraints.add(_connecting_links(union, _must_pairs(rows)), MUST)
        for gid in ids:
            if gid != target_id:
                _move(members[gid], target_id, now, why)
                _retire(goldens[gid], target_id, now)
        _finish(domain=domain, goldens=goldens, versions=versions, when=now, reason=why)
        return _save_operation(
            op,
            golden_ids=[target_id, *[g for g in ids if g != target_id]],
            target=target_id,
            before=before,
            constraints=constraints,
        )


# --- split ---------------------------------------------------------------------------------


def golden_record_split(
    *,
    domain: str,
    golden_id: int,
    record_ids: Sequence[int],
    actor: Any,
    reason: str = "",
    into_golden_id: int | None = None,
    expected_version: int | None = None,
) -> GoldenOperation:
    """Split source records out of a golden record into a new one, or into an existing
    active golden record (``into_golden_id``).  The golden record keeps its id and the rest
    of its members.

    The records split out are must-linked together (and with the members of the golden
    record they join) and cannot-linked with every record left behind, so no later match
    run puts them back.  Raises ``GoldenConflictError`` when a record is not (any longer) a
    member or the version moved on, ``GoldenOperationError`` for bad input (no records, all
    members).  Not idempotent: a repeat finds the records gone.
    """
    domain = _domain(domain)
    moving = sorted({int(r) for r in record_ids})
    if not moving:
        raise GoldenOperationError("give the ids of the source records to split out")
    if into_golden_id is not None and into_golden_id == golden_id:
        raise GoldenOperationError("split into a different golden record than the source one")
    known = set(
        SourceRecord.objects.filter(pk__in=moving, domain=domain).values_list("pk", flat=True)
    )
    if len(known) != len(moving):
        missing = [r for r in moving if r not in known]
        raise GoldenOperationError(f"no {domain} source record {', '.join(map(str, missing))}")
    now = timezone.now()
    with _acting_as(_user(actor)), transaction.atomic():
        ids = [golden_id] + ([into_golden_id] if into_golden_id is not None else [])
        goldens = _lock_goldens(domain, ids)
        for gid in ids:
            _require_active(goldens[gid])
        _check_version(goldens[golden_id], expected_version)
        members = _members(ids)
        outside = [r for r in moving if r not in members[golden_id]]
        if outside:
            raise GoldenConflictError(
                f"record(s) {', '.join(map(str, outside))} are not members of golden record "
                f"{golden_id} (any longer); read it again"
            )
        staying = [r for r in members[golden_id] if r not in set(moving)]
        if not staying:
            raise GoldenOperationError(
                "a split must leave at least one record behind; merge instead to move them all"
            )
        before = _snapshot(goldens, members)
        versions = {g: obj.version for g, obj in goldens.items()}
        op = _operation(domain, GoldenOperation.Kind.SPLIT, actor, reason, now)
        why = _reason("split", op, reason)
        if into_golden_id is None:
            new = _new_golden(domain, now, why)
            goldens = {**goldens, new.pk: new}
            versions[new.pk] = 0
            target = new.pk
            joined = moving
        else:
            target = into_golden_id
            joined = sorted(moving + members[into_golden_id])
        constraints = _Constraints(domain, actor, why)
        old_rows = _constraint_rows(members[golden_id])
        old_must = _must_pairs(old_rows)
        moving_set = set(moving)
        constraints.remove(
            r
            for r in old_rows
            if r.kind == MUST and ((r.left_id in moving_set) != (r.right_id in moving_set))
        )
        kept = [(a, b) for a, b in old_must if (a in moving_set) == (b in moving_set)]
        # What the steward had joined on the side that stays keeps together.
        for group in _components(members[golden_id], old_must):
            side = [r for r in group if r not in moving_set]
            constraints.add(_connecting_links(side, kept), MUST)
        joined_rows = _constraint_rows(joined)
        constraints.remove(r for r in joined_rows if r.kind == CANNOT)
        constraints.add(_connecting_links(joined, _must_pairs(joined_rows) + kept), MUST)
        anchor = moving[0]
        constraints.add(((min(anchor, r), max(anchor, r)) for r in staying), CANNOT)
        _move(moving, target, now, why)
        _finish(domain=domain, goldens=goldens, versions=versions, when=now, reason=why)
        before.setdefault(str(target), None)
        return _save_operation(
            op,
            golden_ids=[golden_id, target],
            target=target,
            before=before,
            constraints=constraints,
        )


# --- correction ----------------------------------------------------------------------------


def steward_source() -> SourceSystem:
    """The hub's own source system for steward corrections (created on first use)."""
    system, _ = SourceSystem.objects.get_or_create(
        code=STEWARD_SOURCE,
        defaults={
            "name": "Aurum data stewards",
            "description": "Corrections of golden attributes made by stewards in the hub.",
            "priority": STEWARD_PRIORITY,
        },
    )
    return system


def _hash(attributes: Mapping[str, Any], deleted: bool) -> str:
    data = orjson.dumps({"attributes": attributes, "deleted": deleted}, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _steward_record_set(
    record: SourceRecord, attributes: dict[str, Any], deleted: bool, when: datetime, reason: str
) -> None:
    record.attributes = attributes
    record.raw = dict(attributes)
    record.is_deleted = deleted
    record.deleted_at = when if deleted else None
    record.received_at = when
    record.source_updated_at = when
    record.content_hash = _hash(attributes, deleted)
    if record.pk:
        record.version += 1
    record._change_reason = reason  # type: ignore[attr-defined]
    record._history_date = when  # type: ignore[attr-defined]
    record.save()


def _steward_record_of(
    source: SourceSystem, domain: str, golden_id: int, members: list[int]
) -> tuple[SourceRecord | None, str | None]:
    """The steward record a correction of ``golden_id`` goes to, and the key for a new one.

    The one among its members keyed by its id, else another steward record among its members
    (one that came with a merge), else its own unlinked one (an undone correction); None
    with a free key when there is none, or with no key when its own went elsewhere (a split
    moved it), so the caller makes a new one under a key of its own.
    """
    own = list(
        SourceRecord.objects.select_for_update()
        .filter(source_system=source, domain=domain)
        .filter(models.Q(pk__in=members) | models.Q(source_key=str(golden_id)))
        .order_by("pk")
    )
    linked = [r for r in own if r.pk in members]
    for record in linked:
        if record.source_key == str(golden_id):
            return record, record.source_key
    if linked:
        return linked[0], linked[0].source_key
    keyed = next((r for r in own if r.source_key == str(golden_id)), None)
    if keyed is None:
        return None, str(golden_id)
    return keyed, None


def _anchor(records: list[int]) -> int | None:
    """The member a steward record is must-linked to: the oldest live source record."""
    if not records:
        return None
    live = (
        SourceRecord.objects.filter(pk__in=records, is_deleted=False)
        .exclude(source_system__code=STEWARD_SOURCE)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    return live if live is not None else min(records)


def golden_attribute_correct(
    *,
    domain: str,
    golden_id: int,
    attribute: str,
    value: Any,
    actor: Any,
    reason: str = "",
    expected_version: int | None = None,
) -> GoldenOperation:
    """Correct one attribute of an active golden record (``value=None`` withdraws the
    correction).

    The value is normalised like an ingested one and kept as the golden record's steward
    record: a source record of the hub's ``aurum-steward`` source (the most trusted), keyed
    by the golden id, linked to the golden record and must-linked to one of its members.
    Survivorship then picks it like any other value, so a later ingest does not overwrite it
    unless the rules say newer values win, and the provenance names it.  For an attribute
    of a group (an address) the steward record takes the golden record's whole group, so the
    group stays whole.  Raises ``GoldenOperationError`` for an unknown attribute or an
    invalid value, ``GoldenConflictError`` when the version moved on.
    """
    domain = _domain(domain)
    dom = get_domain(domain)
    by_name = {a.name: a for a in dom.attributes}
    if attribute not in by_name:
        raise GoldenOperationError(
            f"unknown attribute {attribute!r} for {domain}; expected one of: {', '.join(by_name)}"
        )
    now = timezone.now()
    source = steward_source()
    with _acting_as(_user(actor)), transaction.atomic():
        goldens = _lock_goldens(domain, [golden_id])
        golden = goldens[golden_id]
        _require_active(golden)
        _check_version(golden, expected_version)
        group = [
            a.name
            for a in dom.attributes
            if by_name[attribute].group and a.group == by_name[attribute].group
        ] or [attribute]
        normalised: Any = None
        if value is not None and value != "":
            values, errors = dom.normalise({**golden.attributes, attribute: value})
            errors = [e for e in errors if e.field == attribute]
            if errors:
                raise GoldenOperationError(f"{attribute}: {errors[0].message}")
            normalised = values.get(attribute)
            if normalised is None:
                raise GoldenOperationError(f"{attribute}: the value is empty once normalised")
        members = _members([golden_id])
        record, key = _steward_record_of(source, domain, golden_id, members[golden_id])
        link = CrossReference.objects.filter(record=record).first() if record else None
        if link is not None and link.golden_id != golden_id:  # it went elsewhere: a new one
            record, link = None, None
        before = _snapshot(goldens, members)
        versions = {golden_id: golden.version}
        op = _operation(domain, GoldenOperation.Kind.CORRECT, actor, reason, now)
        why = _reason("correct", op, f"{attribute}" + (f": {reason}" if reason else ""))
        previous = (
            {"attributes": dict(record.attributes), "is_deleted": record.is_deleted}
            if record is not None and link is not None
            else None
        )
        attributes = dict(record.attributes) if record is not None and not record.is_deleted else {}
        if link is None:
            attributes = {}
        if normalised is None:
            attributes.pop(attribute, None)
        else:
            for name in group:
                if name != attribute and name not in attributes and name in golden.attributes:
                    attributes[name] = golden.attributes[name]
            attributes[attribute] = normalised
        if record is None:
            record = SourceRecord(
                source_system=source,
                domain=domain,
                source_key=key or f"{golden_id}-{op.pk}",
                received_at=now,
            )
        _steward_record_set(record, attributes, False, now, why)
        constraints = _Constraints(domain, actor, why)
        if link is None:
            link = CrossReference(
                record=record,
                golden_id=golden_id,
                linked_by=CrossReference.LinkedBy.STEWARD,
                linked_at=now,
            )
            link._change_reason = why  # type: ignore[attr-defined]
            link._history_date = now  # type: ignore[attr-defined]
            link.save()
            anchor = _anchor([r for r in members[golden_id] if r != record.pk])
            if anchor is not None:
                constraints.add([(min(anchor, record.pk), max(anchor, record.pk))], MUST)
        _finish(domain=domain, goldens=goldens, versions=versions, when=now, reason=why)
        return _save_operation(
            op,
            golden_ids=[golden_id],
            target=golden_id,
            before=before,
            constraints=constraints,
            extra={
                "steward_record": {
                    "id": record.pk,
                    "before": previous,
                    "after": {"attributes": attributes, "is_deleted": False},
                },
                "attribute": attribute,
                "value": normalised,
            },
        )


# --- undo ----------------------------------------------------------------------------------


def golden_record_undo(*, operation_id: int, actor: Any, reason: str = "") -> GoldenOperation:
    """Undo a merge, split, correction (or an undo): membership, status, constraints and
    the steward record go back to what they were, and attributes are rebuilt from them, so
    they come back exactly when the members did not change since.  Versions still go up.

    Allowed only while the golden records it touched are as it left them (same members and
    status); otherwise, or when it was already undone, raises ``GoldenConflictError``.
    """
    now = timezone.now()
    with _acting_as(_user(actor)), transaction.atomic():
        original = GoldenOperation.objects.select_for_update().filter(pk=operation_id).first()
        if original is None:
            raise GoldenNotFoundError(f"no golden operation {operation_id}")
        if GoldenOperation.objects.filter(undoes=original).exists():
            raise GoldenConflictError(f"operation {operation_id} was already undone")
        domain = original.domain
        state = original.state
        after: dict[str, Any] = state["after"]
        prior: dict[str, Any] = state["before"]
        ids = sorted(int(g) for g in after)
        goldens = _lock_goldens(domain, ids)
        members = _members(ids)
        changed = [
            g
            for g in ids
            if sorted(members[g]) != after[str(g)]["members"]
            or goldens[g].status != after[str(g)]["status"]
        ]
        if changed:
            raise GoldenConflictError(
                f"golden record(s) {', '.join(map(str, changed))} changed since operation "
                f"{operation_id} (members or status); undo the later changes first"
            )
        before = _snapshot(goldens, members)
        versions = {g: obj.version for g, obj in goldens.items()}
        op = _operation(domain, GoldenOperation.Kind.UNDO, actor, reason, now)
        op.undoes = original
        try:
            op.save()
        except IntegrityError as exc:  # another undo of the same operation committed first
            raise GoldenConflictError(f"operation {operation_id} was already undone") from exc
        why = _reason(
            "undo", op, f"{original.kind} #{original.pk}" + (f": {reason}" if reason else "")
        )

        steward = state.get("steward_record")
        extra: dict[str, Any] = {}
        if steward:
            record = SourceRecord.objects.select_for_update().get(pk=steward["id"])
            wanted = steward["before"]
            extra["steward_record"] = {
                "id": record.pk,
                "before": steward["after"],
                "after": wanted,
            }
            if wanted is None:
                _steward_record_set(record, {}, True, now, why)
            else:
                _steward_record_set(
                    record, dict(wanted["attributes"]), wanted["is_deleted"], now, why
                )

        # Membership: every record goes back to the golden record it was in.
        home = {r: int(g) for g, snap in prior.items() if snap for r in snap["members"]}
        was = {r: g for g in ids for r in members[g]}
        moves: dict[int, list[int]] = defaultdict(list)
        for rid, gid in was.items():
            if rid in home and home[rid] != gid:
                moves[home[rid]].append(rid)
        for target, rids in sorted(moves.items()):
            _move(rids, target, now, why)
        gone = [rid for rid in was if rid not in home]
        if gone:
            links = list(CrossReference.objects.filter(record_id__in=gone))
            for link in links:
                link._change_reason = why  # type: ignore[attr-defined]
                link._history_date = now  # type: ignore[attr-defined]
                link.delete()
        back = [rid for rid in home if rid not in was]
        if back:
            links = [
                CrossReference(
                    record_id=rid,
                    golden_id=home[rid],
                    linked_by=CrossReference.LinkedBy.STEWARD,
                    linked_at=now,
                )
                for rid in back
            ]
            bulk_create_with_history(
                links, CrossReference, default_change_reason=why, default_date=now
            )

        # Status: what it was before; a golden record the operation created is retired into
        # the one that took most of its members back.
        for gid in ids:
            obj = goldens[gid]
            snap = prior.get(str(gid))
            if snap is None:
                received = Counter(home[r] for r in members[gid] if r in home)
                _retire(obj, received.most_common(1)[0][0] if received else None, now)
            elif snap["status"] == GoldenRecord.Status.ACTIVE:
                obj.status = GoldenRecord.Status.ACTIVE
                obj.survivor_id = None
                obj.retired_at = None
            else:
                obj.status = snap["status"]
                obj.survivor_id = snap["survivor"]
                obj.retired_at = (
                    datetime.fromisoformat(snap["retired_at"]) if snap["retired_at"] else None
                )

        constraints = _Constraints(domain, actor, why)
        constraints.restore(
            state.get("constraints_removed", []), state.get("constraints_added", [])
        )
        _finish(domain=domain, goldens=goldens, versions=versions, when=now, reason=why)
        return _save_operation(
            op,
            golden_ids=list(original.golden_ids),
            target=original.golden_ids[0] if original.golden_ids else None,
            before=before,
            constraints=constraints,
            extra=extra,
        )
