"""Relationships between golden records: derived from source references, edited by stewards.

Source records name other records of their own source system by source key
(``SourceReference``, written by ingestion).  Golden relationships are derived from them
through the cross-reference, set-based, for the golden records whose membership or members
changed: ``relationships_recompute`` is called inside the transaction of every membership
change (match apply, rebuild, merge, split, undo), so relationships always follow their
records.  A reference whose target has not arrived (or is not matched yet) stays unresolved
until it does.

Survivorship: for a relationship type of cardinality "one", the members of a golden record
may name different targets; the type's rule decides ("source_priority": the most trusted
source, then the newest; "most_recent": the newest, then the most trusted; the lowest record
id last), and the provenance names the winner and the competitors it beat.

Stewards add, end and re-parent relationships (``golden_relationship_add`` / ``_end`` /
``_reparent``).  Their rows are ``steward_locked``: derivation never overrides them (an ended
one stays ended, an added parent outranks the sources'), and they are only re-pointed when a
golden record they name is merged away.  Hierarchy types refuse cycles: a steward's edit
answers ``RelationshipConflictError`` (409); a derived link that would close one is held
(status ``held``) until the cycle is gone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mdm import bulk
from mdm.audit.services import audit_record
from mdm.domains import all_domains, get_domain
from mdm.domains.base import RelationshipType
from mdm.models import GoldenRecord, GoldenRelationship, SourceReference
from mdm.services.locks import golden_domain_lock

BATCH = 900  # ids per IN (...) on SQLite (its parameter limit)
PG_BATCH = 50_000  # PostgreSQL takes an array: one round trip for most changes
# Above this many golden ids a recompute reads every relationship instead of IN batches.
ALL_AT = 20_000
# Refresh the planner's statistics after writing this many links.
ANALYZE_AT = 1_000

ACTIVE = GoldenRelationship.Status.ACTIVE.value
ENDED = GoldenRelationship.Status.ENDED.value
HELD = GoldenRelationship.Status.HELD.value


class RelationshipError(ValueError):
    """Bad input for a relationship command (HTTP 400); the message says what to fix."""


class RelationshipNotFoundError(LookupError):
    """No such relationship or golden record (HTTP 404)."""


class RelationshipConflictError(RuntimeError):
    """The change conflicts with the current state: a cycle, a duplicate, an ended link
    (HTTP 409).  Nothing was written."""


def max_depth() -> int:
    """How deep a hierarchy may be walked (cycle checks, reads)."""
    return int(getattr(settings, "AURUM_HIERARCHY_MAX_DEPTH", 1000))


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    size = PG_BATCH if connection.vendor == "postgresql" else BATCH
    for start in range(0, len(items), size):
        yield items[start : start + size]


def relationship_types() -> dict[str, tuple[str, RelationshipType]]:
    """Every declared relationship type by code, with the domain that declares it.

    A code names one type across all domains, so a link row needs no domain to be read.
    """
    found: dict[str, tuple[str, RelationshipType]] = {}
    for dom in all_domains():
        for rel in dom.relationships:
            if rel.code in found:
                raise ValueError(
                    f"relationship type {rel.code!r} is declared by {found[rel.code][0]} "
                    f"and {dom.code}; codes must be unique across domains"
                )
            found[rel.code] = (dom.code, rel)
    return found


def _types() -> dict[str, RelationshipType]:
    return {code: rel for code, (_, rel) in relationship_types().items()}


def _among(field: str, ids: Sequence[int]) -> Q:
    """``field`` is one of ``ids``, for the ORM: on PostgreSQL one array parameter (thousands
    of placeholders cost more to send than the query takes to run)."""
    if connection.vendor == "postgresql":
        return Q(**{f"{field}__in": RawSQL("SELECT unnest(%s::bigint[])", (list(ids),))})
    return Q(**{f"{field}__in": list(ids)})


def _in(column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
    """``column`` is one of ``ids``: an array on PostgreSQL, a list of parameters elsewhere."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(ids)]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)


# --- source references (ingestion) ---------------------------------------------------------


def source_references_replace(
    *,
    source_system_id: int,
    domain: str,
    references: Mapping[int, Sequence[tuple[str, str]]],
    replace: Sequence[int] = (),
) -> int:
    """Store the references of freshly written records: record id -> (type, target key).

    The records of ``replace`` (updated ones) lose their previous references first.  Called
    inside the ingest transaction; set-based (one delete, one bulk insert per call).  Safe to
    repeat.  Returns the references written.
    """
    dom = get_domain(domain)
    for batch in _chunks(list(replace)):
        SourceReference.objects.filter(_among("record_id", batch)).delete()
    rows = [
        SourceReference(
            record_id=rid,
            rel_type=code,
            source_system_id=source_system_id,
            target_domain=dom.relationship(code).target,
            target_key=key,
        )
        for rid, refs in references.items()
        for code, key in refs
    ]
    SourceReference.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


# --- derivation ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    from_id: int
    rel_type: str
    to_id: int
    record_id: int
    source: str
    priority: int
    source_key: str
    target_key: str
    updated: Any


_CANDIDATES_SQL = """
SELECT xf.golden_id, r.rel_type, xt.golden_id, r.record_id, s.code, s.priority,
       rec.source_key, r.target_key, COALESCE(rec.source_updated_at, rec.received_at)
FROM mdm_sourcereference r
JOIN mdm_sourcerecord rec ON rec.id = r.record_id AND rec.is_deleted = %s
JOIN mdm_crossreference xf ON xf.record_id = r.record_id
JOIN mdm_sourcesystem s ON s.id = r.source_system_id
JOIN mdm_sourcerecord t ON t.source_system_id = r.source_system_id
     AND t.domain = r.target_domain AND t.source_key = r.target_key AND t.is_deleted = %s
JOIN mdm_crossreference xt ON xt.record_id = t.id
"""

_REFERRERS_SQL = """
SELECT DISTINCT xf.golden_id
FROM mdm_crossreference xt
JOIN mdm_sourcerecord t ON t.id = xt.record_id
JOIN mdm_sourcereference r ON r.source_system_id = t.source_system_id
     AND r.target_domain = t.domain AND r.target_key = t.source_key
JOIN mdm_crossreference xf ON xf.record_id = r.record_id
"""


def _query(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return list(cursor.fetchall())


def _affected(golden_ids: list[int], everything: bool) -> set[int]:
    """The golden records whose outgoing relationships may change with ``golden_ids``."""
    if everything:
        found = {
            row[0]
            for row in _query(
                "SELECT DISTINCT xf.golden_id FROM mdm_sourcereference r "
                "JOIN mdm_crossreference xf ON xf.record_id = r.record_id",
                [],
            )
        }
        found.update(
            GoldenRelationship.objects.exclude(status=ENDED).values_list(
                "from_golden_id", flat=True
            )
        )
        return found | set(golden_ids)
    found = set(golden_ids)
    for batch in _chunks(golden_ids):
        where, params = _in("xt.golden_id", batch)
        found.update(row[0] for row in _query(f"{_REFERRERS_SQL} WHERE {where}", params))
        found.update(
            GoldenRelationship.objects.filter(_among("to_golden_id", batch))
            .exclude(status=ENDED)
            .values_list("from_golden_id", flat=True)
        )
    return found


def _candidates(from_ids: list[int], everything: bool) -> list[_Candidate]:
    out: list[_Candidate] = []
    if everything:
        rows = _query(_CANDIDATES_SQL, [False, False])
        wanted = set(from_ids)
        out.extend(_Candidate(*row) for row in rows if row[0] in wanted)
        return out
    for batch in _chunks(from_ids):
        where, params = _in("xf.golden_id", batch)
        out.extend(
            _Candidate(*row)
            for row in _query(f"{_CANDIDATES_SQL} WHERE {where}", [False, False, *params])
        )
    return out


def _timestamp(value: Any) -> float:
    """A raw query's date-time (SQLite answers text) as seconds since the epoch."""
    if value is None:
        return 0.0
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            return 0.0
        value = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return float(value.timestamp())


def _sort_key(rule: str, c: _Candidate) -> tuple[Any, ...]:
    # Smaller is better.  Newest first: negate the timestamp.
    newest = -_timestamp(c.updated)
    if rule == "most_recent":
        return (newest, c.priority, c.source, c.record_id)
    return (c.priority, c.source, newest, c.record_id)


def _provenance(
    rel: RelationshipType, winner: _Candidate, others: list[_Candidate]
) -> dict[str, Any]:
    competitors = [
        {
            "to": c.to_id,
            "record": c.record_id,
            "source": c.source,
            "source_key": c.source_key,
            "target_key": c.target_key,
        }
        for c in others
        if c.to_id != winner.to_id
    ]
    agreeing = len([c for c in others if c.to_id == winner.to_id])
    if rel.cardinality == "many":
        rule = "every source"
    elif not competitors:
        rule = "only value" if not agreeing else "agreed"
    else:
        rule = rel.rule
    return {
        "record": winner.record_id,
        "source": winner.source,
        "source_key": winner.source_key,
        "target_key": winner.target_key,
        "rule": rule,
        "strategy": rel.rule if rel.cardinality == "one" else "union",
        "supporting": agreeing + 1,
        "competitors": competitors,
    }


def _desired(
    candidates: list[_Candidate], types: Mapping[str, RelationshipType]
) -> dict[tuple[int, str], dict[int, dict[str, Any]]]:
    """(from, type) -> {to: provenance} as the sources say, before steward locks."""
    grouped: dict[tuple[int, str], list[_Candidate]] = defaultdict(list)
    for c in candidates:
        if c.from_id != c.to_id and c.rel_type in types:
            grouped[(c.from_id, c.rel_type)].append(c)
    desired: dict[tuple[int, str], dict[int, dict[str, Any]]] = {}
    for (fid, code), found in grouped.items():
        rel = types[code]
        found.sort(key=lambda c: _sort_key(rel.rule, c))
        by_to: dict[int, list[_Candidate]] = defaultdict(list)
        for c in found:  # in order of preference: the first target is the winner
            by_to[c.to_id].append(c)
        if rel.cardinality == "one":
            # Every target, best first: a steward may have ended the winner's link.
            desired[(fid, code)] = {
                to: _provenance(rel, group[0], [c for c in found if c is not group[0]])
                for to, group in by_to.items()
            }
        else:
            desired[(fid, code)] = {
                to: _provenance(rel, group[0], group[1:]) for to, group in by_to.items()
            }
    return desired


def _survivors(ids: Iterable[int]) -> dict[int, int]:
    """Retired golden id -> the active golden record it was merged into (followed through)."""
    pointers: dict[int, int | None] = {}
    todo = sorted(set(ids))
    while todo:
        step: list[int] = []
        for batch in _chunks(todo):
            for pk, status, survivor in GoldenRecord.objects.filter(
                _among("pk", batch)
            ).values_list("pk", "status", "survivor_id"):
                if status == GoldenRecord.Status.ACTIVE:
                    continue
                pointers[pk] = survivor
                if survivor is not None and survivor not in pointers:
                    step.append(survivor)
        todo = sorted(set(step))
    resolved: dict[int, int] = {}
    for pk in pointers:
        seen = {pk}
        at: int | None = pk
        while at is not None and at in pointers:
            at = pointers[at]
            if at in seen:
                at = None
            elif at is not None:
                seen.add(at)
        if at is not None:
            resolved[pk] = at
    return resolved


def _parents_above(rel_type: str, starts: Iterable[int]) -> dict[int, int]:
    """child -> parent along the active links of ``rel_type`` above ``starts`` (inclusive)."""
    starts = sorted(set(starts))
    parents: dict[int, int] = {}
    sql = f"""
WITH RECURSIVE up(node, depth) AS (
    SELECT g.id, 0 FROM mdm_goldenrecord g WHERE {{where}}
    UNION
    SELECT r.to_golden_id, up.depth + 1 FROM mdm_goldenrelationship r
    JOIN up ON r.from_golden_id = up.node
    WHERE r.rel_type = %s AND r.status = '{ACTIVE}' AND up.depth < %s
)
SELECT r.from_golden_id, r.to_golden_id FROM mdm_goldenrelationship r
WHERE r.rel_type = %s AND r.status = '{ACTIVE}'
  AND r.from_golden_id IN (SELECT node FROM up)
"""  # noqa: S608 - constants only  # nosec B608
    for batch in _chunks(starts):
        where, params = _in("g.id", batch)
        parents.update(_query(sql.format(where=where), [*params, rel_type, max_depth(), rel_type]))
    return parents


def _closes_cycle(parents: Mapping[int, int], child: int, parent: int) -> list[int] | None:
    """The path parent -> ... -> child if linking child under parent closes a cycle."""
    path = [parent]
    at: int | None = parent
    for _ in range(max_depth() + 1):
        if at == child:
            return path
        at = parents.get(at) if at is not None else None
        if at is None:
            return None
        path.append(at)
    return path  # deeper than allowed: treat as a cycle


@dataclass
class _Plan:
    creates: list[tuple[Any, ...]]
    updates: list[tuple[Any, ...]]


def relationships_recompute(
    *, golden_ids: Iterable[int], reason: str, when: datetime | None = None
) -> int:
    """Bring the relationships of the golden records touched by a change up to date.

    ``golden_ids`` are the golden records whose membership or members changed (retired ones
    included).  Every relationship from them, and from golden records whose references point
    at their members, is derived again from the source references; steward-locked rows are
    kept, re-pointed to the survivor when a golden record they name was merged away.  Run
    it inside the transaction of the membership change (under the domain lock).  Set-based:
    a few reads, one bulk insert and one bulk update, each with history rows (and so change
    events).  Safe to repeat: a second call changes nothing.  Returns the rows written.
    """
    ids = sorted(set(golden_ids))
    if not ids:
        return 0
    if (
        not SourceReference.objects.exists()
        and not GoldenRelationship.objects.exclude(status=ENDED).exists()
    ):
        return 0
    now = when or timezone.now()
    types = _types()
    everything = len(ids) > ALL_AT
    with transaction.atomic():
        from_ids = sorted(_affected(ids, everything))
        desired = _desired(_candidates(from_ids, everything), types)
        existing: list[GoldenRelationship] = []
        for batch in _chunks(from_ids):
            existing.extend(
                GoldenRelationship.objects.filter(_among("from_golden_id", batch)).exclude(
                    status=ENDED, steward_locked=False
                )
            )
        # Locked rows pointing at a retired golden record from outside the affected set.
        inside = set(from_ids)
        for batch in _chunks(ids):
            existing.extend(
                row
                for row in GoldenRelationship.objects.filter(
                    _among("to_golden_id", batch), steward_locked=True, status=ACTIVE
                )
                if row.from_golden_id not in inside
            )
        survivors = _survivors(
            {r.from_golden_id for r in existing} | {r.to_golden_id for r in existing} | set(ids)
        )
        plan = _plan(desired, existing, survivors, types, now)
        plan = _hold_cycles(plan, existing, types)
        return _write(plan, now, reason)


def _plan(
    desired: dict[tuple[int, str], dict[int, dict[str, Any]]],
    existing: list[GoldenRelationship],
    survivors: Mapping[int, int],
    types: Mapping[str, RelationshipType],
    now: datetime,
) -> _Plan:
    creates: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    locked_active: dict[tuple[int, str], set[int]] = defaultdict(set)
    locked_ended: dict[tuple[int, str], set[int]] = defaultdict(set)
    source_rows: dict[tuple[int, str], list[GoldenRelationship]] = defaultdict(list)

    def end(row: GoldenRelationship, note: str = "") -> None:
        provenance = dict(row.provenance)
        if note:
            provenance["note"] = note
        updates.append((row.pk, row.to_golden_id, ENDED, provenance, row.version + 1, now, now))

    # Steward rows first: follow merges, and remember what they decide.
    seen_locked: set[tuple[str, int, int]] = set()
    for row in sorted(existing, key=lambda r: r.pk):
        if not row.steward_locked:
            source_rows[(row.from_golden_id, row.rel_type)].append(row)
            continue
        fid = survivors.get(row.from_golden_id, row.from_golden_id)
        tid = survivors.get(row.to_golden_id, row.to_golden_id)
        if row.status != ACTIVE:
            locked_ended[(fid, row.rel_type)].add(tid)
            continue
        key = (row.rel_type, fid, tid)
        if fid == tid or key in seen_locked:
            end(row, "merged into one golden record" if fid == tid else "duplicate after merge")
            continue
        seen_locked.add(key)
        locked_active[(fid, row.rel_type)].add(tid)
        if (fid, tid) != (row.from_golden_id, row.to_golden_id):
            if fid != row.from_golden_id:
                # The from side moved: a new row on the survivor, the old one ends.
                end(row, f"re-pointed to golden record {fid}")
                creates.append(
                    (
                        row.domain,
                        row.rel_type,
                        fid,
                        tid,
                        ACTIVE,
                        row.origin,
                        True,
                        {**row.provenance, "repointed_from": row.pk},
                        1,
                        now,
                        None,
                        now,
                    )
                )
            else:
                updates.append(
                    (
                        row.pk,
                        tid,
                        ACTIVE,
                        {**row.provenance, "previous_to": row.to_golden_id},
                        row.version + 1,
                        None,
                        now,
                    )
                )

    for unit in sorted(set(desired) | set(source_rows)):
        fid, code = unit
        rel = types.get(code)
        want = dict(desired.get(unit, {}))
        for tid in locked_ended.get(unit, ()):
            want.pop(tid, None)
        for tid in locked_active.get(unit, ()):
            want.pop(tid, None)
        if rel is not None and rel.cardinality == "one":
            if locked_active.get(unit):
                want = {}
            elif len(want) > 1:  # the winner was ended by a steward: the next one
                first = next(iter(want))
                want = {first: want[first]}
        rows = sorted(source_rows.get(unit, []), key=lambda r: (r.status != ACTIVE, r.pk))
        kept: set[int] = set()
        leftovers: list[GoldenRelationship] = []
        for row in rows:
            if row.to_golden_id in want and row.to_golden_id not in kept:
                kept.add(row.to_golden_id)
                provenance = want[row.to_golden_id]
                if provenance != row.provenance or row.status != ACTIVE:
                    updates.append(
                        (row.pk, row.to_golden_id, ACTIVE, provenance, row.version + 1, None, now)
                    )
            else:
                leftovers.append(row)
        missing = [tid for tid in want if tid not in kept]
        for row in leftovers:
            if missing and rel is not None and rel.cardinality == "one":
                tid = missing.pop(0)
                provenance = {**want[tid], "previous_to": row.to_golden_id}
                updates.append((row.pk, tid, ACTIVE, provenance, row.version + 1, None, now))
            else:
                end(row)
        for tid in missing:
            domain = relationship_types()[code][0]
            creates.append(
                (domain, code, fid, tid, ACTIVE, "source", False, want[tid], 1, now, None, now)
            )
    return _Plan(creates, updates)


_CREATE_COLUMNS = (
    "domain",
    "rel_type",
    "from_golden_id",
    "to_golden_id",
    "status",
    "origin",
    "steward_locked",
    "provenance",
    "version",
    "started_at",
    "ended_at",
    "updated_at",
)
_UPDATE_COLUMNS = (
    "id",
    "to_golden_id",
    "status",
    "provenance",
    "version",
    "ended_at",
    "updated_at",
)


def _hold_cycles(
    plan: _Plan, existing: list[GoldenRelationship], types: Mapping[str, RelationshipType]
) -> _Plan:
    """Hold every planned active link of a hierarchy type that would close a cycle."""
    by_pk = {r.pk: r for r in existing}
    hierarchies = {code for code, rel in types.items() if rel.hierarchy}
    proposed: dict[str, list[tuple[str, int, int, int]]] = defaultdict(list)
    for i, row in enumerate(plan.creates):
        if row[1] in hierarchies and row[4] == ACTIVE:
            proposed[row[1]].append(("c", i, row[2], row[3]))
    for i, row in enumerate(plan.updates):
        old = by_pk.get(row[0])
        if old is not None and old.rel_type in hierarchies and row[2] == ACTIVE:
            proposed[old.rel_type].append(("u", i, old.from_golden_id, row[1]))
    if not proposed:
        return plan
    creates = list(plan.creates)
    updates: list[tuple[Any, ...] | None] = list(plan.updates)
    for code, items in proposed.items():
        parents = _parents_above(code, [to for *_, to in items] + [f for _, _, f, _ in items])
        # What the plan changes: the affected children lose their current parent first.
        ended = {
            by_pk[u[0]].from_golden_id
            for u in plan.updates
            if u[0] in by_pk and u[2] != ACTIVE and by_pk[u[0]].rel_type == code
        }
        for child in ended | {f for _, _, f, _ in items}:
            parents.pop(child, None)
        for kind, i, child, parent in sorted(items, key=lambda t: (t[2], t[3])):
            path = _closes_cycle(parents, child, parent)
            if path is None:
                parents[child] = parent
                continue
            note = f"held: would close a cycle ({' -> '.join(map(str, [child, *path]))})"
            if kind == "c":
                row = creates[i]
                creates[i] = (*row[:4], HELD, *row[5:7], {**row[7], "note": note}, *row[8:])
            else:
                planned = updates[i]
                assert planned is not None
                row = planned
                old = by_pk[row[0]]
                provenance = {**row[3], "note": note}
                unchanged = (old.status, old.to_golden_id, old.provenance) == (
                    HELD,
                    row[1],
                    provenance,
                )
                updates[i] = None if unchanged else (row[0], row[1], HELD, provenance, *row[4:])
    return _Plan(creates, [u for u in updates if u is not None])


def _write(plan: _Plan, now: datetime, reason: str, user: Any = None) -> int:
    # Links that end (or are held) first: a link becoming active may take the place of one
    # that ends, and the unique index of active links is checked row by row.
    for active in (False, True):
        bulk.rows_update_with_history(
            GoldenRelationship,
            _UPDATE_COLUMNS,
            [u for u in plan.updates if (u[2] == ACTIVE) == active],
            history_date=now,
            reason=reason,
            user=user,
        )
    bulk.rows_create_with_history(
        GoldenRelationship,
        _CREATE_COLUMNS,
        plan.creates,
        history_date=now,
        reason=reason,
        user=user,
    )
    written = len(plan.creates) + len(plan.updates)
    if written >= ANALYZE_AT:
        # Without statistics the planner walks a fresh hierarchy with a nested loop over
        # the whole table per level: measured 46 s instead of 0.17 s for 10,000 nodes.
        bulk.table_analyze(GoldenRelationship, SourceReference)
    return written


# --- steward edits -------------------------------------------------------------------------


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) and actor.pk else None


def _type_of(domain: str, code: str) -> RelationshipType:
    try:
        dom = get_domain(domain)
    except LookupError as exc:
        raise RelationshipNotFoundError(str(exc)) from exc
    try:
        return dom.relationship(code)
    except KeyError as exc:
        raise RelationshipError(str(exc.args[0])) from None


def _lock_goldens(domains: Iterable[str], ids: Iterable[int]) -> dict[int, GoldenRecord]:
    for domain in sorted(set(domains)):
        golden_domain_lock(domain)
    wanted = sorted(set(ids))
    locked = {
        g.pk: g
        for g in GoldenRecord.objects.select_for_update().filter(pk__in=wanted).order_by("pk")
    }
    missing = [str(i) for i in wanted if i not in locked]
    if missing:
        raise RelationshipNotFoundError(f"no golden record {', '.join(missing)}")
    return locked


def _require_active(golden: GoldenRecord) -> None:
    if golden.status != GoldenRecord.Status.ACTIVE:
        into = f" into {golden.survivor_id}" if golden.survivor_id else ""
        raise RelationshipConflictError(
            f"golden record {golden.pk} was retired{into}; link the active record instead"
        )


def _check_target(rel: RelationshipType, source: GoldenRecord, target: GoldenRecord) -> None:
    if target.domain != rel.target:
        raise RelationshipError(
            f"{rel.code} links to a {rel.target} golden record; "
            f"{target.pk} is a {target.domain} record"
        )
    if source.pk == target.pk:
        raise RelationshipError(f"golden record {source.pk} cannot be {rel.code} itself")
    _require_active(source)
    _require_active(target)


def _refuse_cycle(rel: RelationshipType, child: int, parent: int) -> None:
    if not rel.hierarchy:
        return
    parents = _parents_above(rel.code, [parent])
    path = _closes_cycle(parents, child, parent)
    if path is not None:
        chain = " -> ".join(str(g) for g in [child, *path])
        raise RelationshipConflictError(
            f"refused: golden record {parent} is already below {child} in the {rel.code} "
            f"hierarchy, so linking {child} {rel.code} {parent} would make a cycle ({chain}); "
            f"re-parent {parent} first"
        )


def _steward_reason(action: str, reason: str) -> str:
    return f"steward {action}: {reason}" if reason else f"steward {action}"


def golden_relationship_add(
    *,
    domain: str,
    from_golden_id: int,
    rel_type: str,
    to_golden_id: int,
    actor: Any,
    reason: str = "",
) -> GoldenRelationship:
    """A steward links ``from_golden_id`` ``rel_type`` ``to_golden_id`` (a locked link).

    For a type of cardinality one, the record must have no active link of the type yet
    (re-parent it instead).  Refused with ``RelationshipConflictError`` for a cycle in a
    hierarchy, a link that exists, or a retired record; ``RelationshipError`` for an unknown
    type or a target of the wrong domain.  Atomic; nothing is written when refused.  Not
    idempotent: a repeat is refused as a duplicate (409).
    """
    rel = _type_of(domain, rel_type)
    now = timezone.now()
    with transaction.atomic():
        locked = _lock_goldens([domain, rel.target], [from_golden_id, to_golden_id])
        source, target = locked[from_golden_id], locked[to_golden_id]
        if source.domain != domain:
            raise RelationshipNotFoundError(f"no {domain} golden record {from_golden_id}")
        _check_target(rel, source, target)
        current = GoldenRelationship.objects.select_for_update().filter(
            from_golden_id=from_golden_id, rel_type=rel.code, status=ACTIVE
        )
        if any(r.to_golden_id == to_golden_id for r in current):
            raise RelationshipConflictError(
                f"golden record {from_golden_id} is already {rel.code} {to_golden_id}"
            )
        if rel.cardinality == "one" and current:
            other = current[0]
            raise RelationshipConflictError(
                f"golden record {from_golden_id} is already {rel.code} {other.to_golden_id} "
                f"(relationship {other.pk}); re-parent that relationship instead"
            )
        _refuse_cycle(rel, from_golden_id, to_golden_id)
        row = GoldenRelationship(
            domain=domain,
            rel_type=rel.code,
            from_golden_id=from_golden_id,
            to_golden_id=to_golden_id,
            origin=GoldenRelationship.Origin.STEWARD,
            steward_locked=True,
            provenance={"rule": "steward", "source": "aurum-steward", "reason": reason},
            started_at=now,
            updated_at=now,
        )
        row._change_reason = _steward_reason("add", reason)  # type: ignore[attr-defined]
        row._history_user = _user(actor)  # type: ignore[attr-defined]
        row.save()
        audit_record(
            action="relationship.add",
            actor=actor,
            target_type="relationship",
            target_id=row.pk,
            domain=domain,
            detail={"from": from_golden_id, "type": rel.code, "to": to_golden_id},
        )
    return row


def _lock_relationship(domain: str, relationship_id: int) -> GoldenRelationship:
    row = GoldenRelationship.objects.filter(pk=relationship_id, domain=domain).first()
    if row is None:
        raise RelationshipNotFoundError(f"no {domain} relationship {relationship_id}")
    _lock_goldens([domain], [row.from_golden_id, row.to_golden_id])
    row = GoldenRelationship.objects.select_for_update().get(pk=relationship_id)
    if row.status != ACTIVE:
        raise RelationshipConflictError(
            f"relationship {relationship_id} is {row.status} (version {row.version}), "
            "not active: read it again"
        )
    return row


def _end(row: GoldenRelationship, *, actor: Any, reason: str, action: str, now: datetime) -> None:
    row.status = GoldenRelationship.Status.ENDED
    row.steward_locked = True
    row.ended_at = now
    row.updated_at = now
    row.version += 1
    row.provenance = {**row.provenance, "ended_by": "steward", "reason": reason}
    row._change_reason = _steward_reason(action, reason)  # type: ignore[attr-defined]
    row._history_user = _user(actor)  # type: ignore[attr-defined]
    row.save()


def golden_relationship_end(
    *,
    domain: str,
    relationship_id: int,
    actor: Any,
    reason: str = "",
    expected_version: int | None = None,
) -> GoldenRelationship:
    """A steward ends an active relationship; it stays ended whatever the sources say.

    ``RelationshipConflictError`` when it is not active or not at ``expected_version``.
    Atomic; not repeatable (a second end is a 409).
    """
    now = timezone.now()
    with transaction.atomic():
        row = _lock_relationship(domain, relationship_id)
        if expected_version is not None and row.version != expected_version:
            raise RelationshipConflictError(
                f"relationship {row.pk} is at version {row.version}, not {expected_version}"
            )
        _end(row, actor=actor, reason=reason, action="end", now=now)
        audit_record(
            action="relationship.end",
            actor=actor,
            target_type="relationship",
            target_id=row.pk,
            domain=domain,
        )
    return row


def golden_relationship_reparent(
    *,
    domain: str,
    relationship_id: int,
    to_golden_id: int,
    actor: Any,
    reason: str = "",
    expected_version: int | None = None,
) -> GoldenRelationship:
    """A steward moves a relationship to another target (a new parent, a new employer).

    The old link ends and a new locked link starts, in one transaction.  Refused like
    ``golden_relationship_add`` (cycle, duplicate, wrong domain, retired) and when the
    relationship is not active.  Returns the new relationship.
    """
    now = timezone.now()
    with transaction.atomic():
        row = _lock_relationship(domain, relationship_id)
        rel = _type_of(domain, row.rel_type)
        if expected_version is not None and row.version != expected_version:
            raise RelationshipConflictError(
                f"relationship {row.pk} is at version {row.version}, not {expected_version}"
            )
        if row.to_golden_id == to_golden_id:
            raise RelationshipConflictError(
                f"relationship {row.pk} already points to golden record {to_golden_id}"
            )
        locked = _lock_goldens([rel.target], [row.from_golden_id, to_golden_id])
        _check_target(rel, locked[row.from_golden_id], locked[to_golden_id])
        if GoldenRelationship.objects.filter(
            from_golden_id=row.from_golden_id,
            rel_type=rel.code,
            to_golden_id=to_golden_id,
            status=ACTIVE,
        ).exists():
            raise RelationshipConflictError(
                f"golden record {row.from_golden_id} is already {rel.code} {to_golden_id}"
            )
        _refuse_cycle(rel, row.from_golden_id, to_golden_id)
        _end(row, actor=actor, reason=reason, action="re-parent", now=now)
        new = GoldenRelationship(
            domain=domain,
            rel_type=rel.code,
            from_golden_id=row.from_golden_id,
            to_golden_id=to_golden_id,
            origin=GoldenRelationship.Origin.STEWARD,
            steward_locked=True,
            provenance={
                "rule": "steward",
                "source": "aurum-steward",
                "reason": reason,
                "previous_to": row.to_golden_id,
                "replaces": row.pk,
            },
            started_at=now,
            updated_at=now,
        )
        new._change_reason = _steward_reason("re-parent", reason)  # type: ignore[attr-defined]
        new._history_user = _user(actor)  # type: ignore[attr-defined]
        new.save()
        audit_record(
            action="relationship.reparent",
            actor=actor,
            target_type="relationship",
            target_id=new.pk,
            domain=domain,
            detail={"replaces": row.pk, "to": new.to_golden_id},
        )
    return new
