"""Golden records: apply a clustering, keep ids stable, rebuild attributes by survivorship.

Set-based: the plan (which golden record each cluster keeps, which records move, which
golden records retire) is computed in memory from the cross-reference, then written once
per row through ``mdm.bulk``: COPY and ``UPDATE ... FROM`` on PostgreSQL,
django-simple-history's bulk helpers elsewhere.  Attributes are survived a chunk of golden
records at a time, their members read per chunk, so memory does not grow with the domain.
A new golden record is inserted with its survived attributes (one row, one history row); in
a full run the next chunk is read and survived on a second connection while this one writes.
"""

from __future__ import annotations

import logging
from array import array
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Iterator, Mapping
from concurrent.futures import (
    BrokenExecutor,
    Executor,
    Future,
    ThreadPoolExecutor,
)
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.db import connection, connections, transaction
from django.utils import timezone

from mdm import bulk
from mdm.bulk import RawJSON
from mdm.domains import get_domain
from mdm.domains.base import Domain
from mdm.forking import helper_pool
from mdm.models import CrossReference, GoldenRecord, SourceRecord, SourceSystem
from mdm.provenance import dumps_packed
from mdm.selectors import live_record_rows
from mdm.services.relationships import relationships_recompute
from mdm.survivorship import Member, RuleSet, survive_fast, survivorship_rules_active

logger = logging.getLogger(__name__)

BATCH = 900  # ids per IN (...) query: below SQLite's parameter limit
# Above this many ids a read takes the whole domain in one query instead of IN batches.
DOMAIN_READ_AT = 20_000
# Refresh the planner's statistics after writing this many rows (autovacuum may be off).
ANALYZE_AT = 10_000


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


class _Links:
    """(record id, golden id) pairs held as two arrays of machine integers: 16 bytes a
    link instead of a tuple of two ints (about 120), for a domain's whole cross-reference
    (a full run at 1M records).  Iterates as the pairs, as often as needed."""

    __slots__ = ("goldens", "records")

    def __init__(self, rows: Iterable[tuple[int, int]]) -> None:
        self.records = array("q")
        self.goldens = array("q")
        for record, golden in rows:
            self.records.append(record)
            self.goldens.append(golden)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self.records, self.goldens, strict=True)


def _domain_links(domain: str) -> _Links:
    """(record id, golden id) of every cross-reference of the domain."""
    rows = CrossReference.objects.filter(golden__domain=domain).values_list(
        "record_id", "golden_id"
    )
    return _Links(rows.iterator(5000))


def _links_of_records(
    domain: str, record_ids: list[int], every: _Links | None = None
) -> dict[int, int]:
    """record id -> golden id of these records' cross-references."""
    if every is not None or len(record_ids) > DOMAIN_READ_AT:
        wanted = set(record_ids)
        pairs = _domain_links(domain) if every is None else every
        return {rid: gid for rid, gid in pairs if rid in wanted}
    links: dict[int, int] = {}
    for batch in _chunks(record_ids):
        links.update(
            CrossReference.objects.filter(record_id__in=batch).values_list("record_id", "golden_id")
        )
    return links


def _links_of_goldens(
    domain: str, golden_ids: list[int], every: _Links | None = None
) -> list[tuple[int, int]]:
    """(record id, golden id) of every member of these golden records."""
    if every is not None or len(golden_ids) > DOMAIN_READ_AT:
        wanted = set(golden_ids)
        pairs = _domain_links(domain) if every is None else every
        return [(rid, gid) for rid, gid in pairs if gid in wanted]
    links: list[tuple[int, int]] = []
    for batch in _chunks(golden_ids):
        links.extend(
            CrossReference.objects.filter(golden_id__in=batch).values_list("record_id", "golden_id")
        )
    return links


# The columns of a source record survivorship reads (see ``members_from_rows``).
MEMBER_COLUMNS = (
    "id",
    "source_system_id",
    "source_key",
    "source_updated_at",
    "received_at",
    "attributes",
)


def members_from_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[Member]:
    """Members from rows of ``MEMBER_COLUMNS`` (``live_record_rows``), in their order."""
    systems = {
        pk: (code, priority)
        for pk, code, priority in SourceSystem.objects.values_list("pk", "code", "priority")
    }
    for rid, system, key, updated, received, attributes in rows:
        code, priority = systems[system]
        yield Member(rid, code, key, priority, updated or received, attributes)


# Records read and survived at a time by a large apply: its memory stays flat however many
# records the domain holds (one chunk of members, not every live record, at once).
SURVIVE_CHUNK = 20_000


def _member_groups(domain: str, groups: Iterable[list[int]]) -> Iterator[list[Member]]:
    """The live members of each group of record ids (a cluster, a golden record's members),
    in the order of ``groups``; a deleted record is left out.

    Read a chunk of groups at a time (about ``SURVIVE_CHUNK`` records, one query on
    PostgreSQL): the caller survives a chunk before the next is read, so at most one
    chunk of members is alive at once.  Not while a COPY runs on the connection: each
    read is a query.
    """
    for chunk in _group_chunks(groups):
        yield from _chunk_members(domain, chunk)


def _group_chunks(groups: Iterable[list[int]]) -> Iterator[list[list[int]]]:
    """``groups`` in order, in lists of about ``SURVIVE_CHUNK`` record ids in all."""
    pending: list[list[int]] = []
    size = 0
    for group in groups:
        pending.append(group)
        size += len(group)
        if size >= SURVIVE_CHUNK:
            yield pending
            pending, size = [], 0
    if pending:
        yield pending


def _chunk_members(domain: str, groups: list[list[int]]) -> Iterator[list[Member]]:
    live = _read_members(domain, [r for group in groups for r in group])
    for group in groups:
        yield [live[r] for r in group if r in live]


def _read_members(domain: str, record_ids: list[int]) -> dict[int, Member]:
    """The live records among ``record_ids`` as survivorship sees them, by record id."""
    rows = live_record_rows(domain=domain, columns=MEMBER_COLUMNS, ids=record_ids)
    return {member.record_id: member for member in members_from_rows(rows)}


def _current_goldens(golden_ids: list[int], *, lock: bool) -> dict[int, tuple[Any, ...]]:
    """id -> (attributes, provenance, version) of these golden records."""
    found: dict[int, tuple[Any, ...]] = {}
    qs = GoldenRecord.objects.select_for_update() if lock else GoldenRecord.objects.all()
    for batch in _chunks(golden_ids):
        for pk, attributes, provenance, version in qs.filter(pk__in=batch).values_list(
            "id", "attributes", "provenance", "version"
        ):
            found[pk] = (attributes, provenance, version)
    return found


NEW_GOLDEN_COLUMNS = (
    "domain",
    "status",
    "attributes",
    "provenance",
    "version",
    "created_at",
    "updated_at",
)
REBUILD_CHUNK = 5_000  # golden records locked, survived and written at a time


def _write_rebuilt(
    dom: Domain,
    members_of: Mapping[int, list[int]],
    *,
    reason: str,
    now: datetime,
) -> int:
    """Survive each golden record of ``members_of`` (golden id -> record ids) and write the
    ones whose attributes or provenance change, with a new version and a history row.

    A chunk of golden records at a time (read, survived, written), so that a rebuild of
    many golden records holds one chunk of them and of their members in memory."""
    if not members_of:
        return 0
    rules = survivorship_rules_active(domain=dom.code)
    ordered = sorted(members_of)
    changed = 0
    for start in range(0, len(ordered), REBUILD_CHUNK):
        current = _current_goldens(ordered[start : start + REBUILD_CHUNK], lock=True)
        gids = sorted(current)
        rows: list[tuple[Any, ...]] = []
        groups = _member_groups(dom.code, (members_of[gid] for gid in gids))
        for gid, live in zip(gids, groups, strict=True):
            old_attributes, old_provenance, version = current[gid]
            attributes, provenance = survive_fast(dom, live, rules)
            if attributes != old_attributes or provenance != old_provenance:
                rows.append((gid, attributes, provenance, version + 1, now))
        changed += bulk.rows_update_with_history(
            GoldenRecord,
            ("id", "attributes", "provenance", "version", "updated_at"),
            rows,
            history_date=now,
            reason=reason,
        )
    return changed


def _create_goldens(
    dom: Domain,
    groups: list[list[int]],
    rules: RuleSet,
    *,
    ids: list[int] | None,
    now: datetime,
    reason: str,
    links: list[tuple[Any, ...]],
    linked_before: int,
    aside: bool,
) -> list[int]:
    """Insert a golden record per group of record ids, survived from its live members, with
    history rows (reason "<reason>: new"); returns their ids, in the order of ``groups``.

    ``ids`` (PostgreSQL: taken from the sequence by the caller) are the new golden records'
    ids; ``links`` (cross-reference rows) are written with their history rows, in their
    order, as soon as their golden record is: the first ``linked_before`` (to golden records
    that exist) with the first chunk, then each new golden record's after its chunk
    (``links`` names them in the order of ``groups``).  With ``aside`` (the
    caller's records were committed before its transaction began and it holds the domain's
    lock) the next chunk's members are read and survived on a second connection, by a
    forked process (a thread where none can be forked: :class:`_AsideReader`), while this
    connection writes the last chunk: PostgreSQL ingests one chunk while Python survives
    the next, where they took turns.  A chunk in which that connection does
    not see every record (written by the caller's own transaction, or deleted meanwhile) is
    read and survived here instead, as without ``aside``.
    """
    active = GoldenRecord.Status.ACTIVE.value
    chunks = list(_group_chunks(groups))
    created: list[int] = []
    written = 0
    reader = _AsideReader(dom, rules) if aside and ids is not None and len(chunks) > 1 else None
    ahead: Future[list[tuple[str, str]] | None] | None = None
    try:
        if reader is not None:
            ahead = reader.submit(chunks[0])
        for i, chunk in enumerate(chunks):
            survived: list[tuple[Any, Any]] | None = None
            if ahead is not None:
                assert reader is not None
                texts = ahead.result()
                logger.debug("chunk %d survived aside (%s): %s", i, reader.kind, texts is not None)
                if texts is not None:
                    survived = [(RawJSON(a), RawJSON(p)) for a, p in texts]
                del texts
            ahead = None
            if reader is not None and i + 1 < len(chunks):
                ahead = reader.submit(chunks[i + 1])
            if survived is None:
                survived = [
                    survive_fast(dom, live, rules) for live in _chunk_members(dom.code, chunk)
                ]
            if ids is None:
                rows: list[tuple[Any, ...]] = [
                    (dom.code, active, attributes, provenance, 1, now, now)
                    for attributes, provenance in survived
                ]
                columns: tuple[str, ...] = NEW_GOLDEN_COLUMNS
            else:
                first = len(created)
                rows = [
                    (pk, dom.code, active, attributes, provenance, 1, now, now)
                    for pk, (attributes, provenance) in zip(
                        ids[first : first + len(survived)], survived, strict=True
                    )
                ]
                columns = ("id", *NEW_GOLDEN_COLUMNS)
            del survived
            done = len(created)
            created += bulk.rows_create_with_history(
                GoldenRecord, columns, rows, history_date=now, reason=f"{reason}: new"
            )
            del rows
            # The links whose golden record is written by now: the first ``linked_before``
            # (to golden records that existed), then those to the golden records of this
            # chunk (``links`` follows ``groups``: earlier chunks' links are written).
            ready = set(created[done:])
            upto = max(written, linked_before)
            while upto < len(links) and links[upto][1] in ready:
                upto += 1
            _write_links(links[written:upto], now=now, reason=reason)
            written = upto
        _write_links(links[written:], now=now, reason=reason)
    finally:
        if reader is not None:
            if ahead is not None:  # stopped by an error: a running chunk finishes first
                ahead.cancel()
            reader.close()
    return created


def _write_links(rows: list[tuple[Any, ...]], *, now: datetime, reason: str) -> None:
    bulk.rows_create_with_history(
        CrossReference,
        ("record_id", "golden_id", "linked_by", "linked_at"),
        rows,
        history_date=now,
        reason=reason,
    )


class _AsideReader:
    """Reads and survives chunks of new golden records' members on a connection of its own,
    in a forked process when it can, else in a thread.

    In a process (:func:`mdm.forking.helper_pool`, where ``fork`` exists) the reading and
    survivorship run beside the caller's Python, which formats the COPY of the chunk
    before: both are Python, and in a thread they took turns on one interpreter. The
    process is forked before the first chunk (it inherits the code, the rules and Django's
    settings; nothing is imported again); it never uses the caller's connection
    (:func:`_aside_process_start`) and opens its own. Chunks come back as JSON text, what
    COPY writes.
    """

    def __init__(self, dom: Domain, rules: RuleSet) -> None:
        self._dom = dom
        self._rules = rules
        self._pool: Executor | None = helper_pool(_aside_process_start, (dom, rules))
        self._threaded = self._pool is None
        if self._threaded:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="aurum-survive")

    @property
    def kind(self) -> str:
        return "thread" if self._threaded else "process"

    def submit(self, groups: list[list[int]]) -> Future[list[tuple[str, str]] | None]:
        """Start reading and surviving ``groups`` (lists of record ids)."""
        assert self._pool is not None
        if self._threaded:
            return self._pool.submit(_survive_aside, self._dom, groups, self._rules)
        return self._pool.submit(_survive_in_process, groups)

    def close(self) -> None:
        """Close the reader's own connection, then stop it."""
        if self._pool is None:
            return
        try:
            self._pool.submit(_close_connection).result()
        except BrokenExecutor:  # the process died, and its connection with it
            pass
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_READER: list[tuple[Domain, RuleSet]] = []  # the forked reader's domain and rules


def _aside_process_start(dom: Domain, rules: RuleSet) -> None:
    """In the forked reader, before its first chunk: keep the domain and rules, and leave
    the caller's connections alone (the next query opens the reader's own). psycopg does
    not end a session when a connection inherited from another process is dropped."""
    _READER.append((dom, rules))
    for conn in connections.all(initialized_only=True):
        conn.connection = None


def _survive_in_process(groups: list[list[int]]) -> list[tuple[str, str]] | None:
    dom, rules = _READER[-1]
    return _survive_aside(dom, groups, rules)


def _survive_aside(
    dom: Domain, groups: list[list[int]], rules: RuleSet
) -> list[tuple[str, str]] | None:
    """On the reader's own connection: (attributes, provenance) of each group, as JSON
    text (what COPY writes; the provenance packed as stored, :mod:`mdm.provenance`), or
    None when this connection does not see every record of the chunk (the caller's
    connection then reads it)."""
    record_ids = [r for group in groups for r in group]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {SourceRecord._meta.db_table} WHERE id = ANY(%s)",  # noqa: S608  # nosec B608
            [record_ids],
        )
        (seen,) = cursor.fetchone()
    if seen != len(record_ids):
        return None
    live = _read_members(dom.code, record_ids)
    dumps = orjson.dumps
    survived = []
    for group in groups:
        attributes, provenance = survive_fast(dom, [live[r] for r in group if r in live], rules)
        survived.append((dumps(attributes).decode(), dumps_packed(provenance)))
    return survived


def _close_connection() -> None:
    """Close the reader's own database connection."""
    connection.close()


def golden_records_apply_clusters(
    *,
    domain: str,
    clusters: Mapping[int, Hashable],
    linked_by: str = CrossReference.LinkedBy.MATCH,
    reason: str = "match",
    changed_records: Iterable[int] = (),
    members_committed: bool = False,
) -> ApplyResult:
    """Make golden records follow ``clusters`` (source record id -> cluster key).

    Stable ids: a cluster keeps the golden id most of its members had (ties: the older id),
    each golden id goes to at most one cluster (so a split keeps the id on the larger part),
    a golden record left with no members is retired with a pointer to the golden record that
    received most of them, and a cluster with no golden record gets a new one.  A member of a
    touched golden record that is not in ``clusters`` follows the cluster that holds most of
    that golden record's members (an incremental run need not list them).  Attributes of
    every golden record whose members changed, or one of whose members is in
    ``changed_records`` (records whose values changed since they were last survived), are
    rebuilt by survivorship, with history; a
    new golden record is written once, with its attributes (history reason "<reason>: new").
    Atomic; safe to repeat (a second call with the same clusters changes nothing).

    Members are read from the database a chunk of clusters at a time while survivorship
    runs (``_member_groups``): memory does not grow with the domain, and the values
    survived are the latest ones under the caller's lock.  ``members_committed`` says that
    no record was written by the caller's transaction (a full run): new golden records'
    members may then be read on a second connection while this one writes
    (``_create_goldens``).
    """
    dom = get_domain(domain)
    now = timezone.now()
    with transaction.atomic():
        record_ids = list(clusters)
        # A large clustering (a full run) reads the domain's cross-reference once.
        every = _domain_links(dom.code) if len(record_ids) > DOMAIN_READ_AT else None
        current = _links_of_records(dom.code, record_ids, every)
        touched = set(current.values())
        # Members of touched golden records outside the clustering keep their golden record.
        outside: dict[int, int] = {
            rid: gid
            for rid, gid in _links_of_goldens(dom.code, sorted(touched), every)
            if rid not in clusters
        }
        del every
        members: dict[Hashable, list[int]] = defaultdict(list)
        # golden -> clusters of its members, for the golden records with members outside
        # the clustering only (none in a full run: a Counter per golden record is hundreds
        # of megabytes at 1M records).
        followed = set(outside.values())
        where: dict[int, Counter[Hashable]] = defaultdict(Counter)
        for rid, key in clusters.items():
            members[key].append(rid)
            if followed and current.get(rid) in followed:
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

        # Who moves where (new golden ids are known only once they are written).
        new_links: list[tuple[int, Hashable]] = []  # (record id, cluster key)
        moves: list[tuple[int, Hashable, int]] = []  # (record id, cluster key, old golden)
        for key, rids in members.items():
            target = golden_of.get(key)
            for rid in rids:
                old = current.get(rid)
                if old is None:
                    new_links.append((rid, key))
                elif old != target:
                    moves.append((rid, key, old))

        affected = {golden_of[key] for key, _ in new_links if key in golden_of}
        affected.update(golden_of[key] for _, key, _ in moves if key in golden_of)
        affected.update(old for _, _, old in moves)  # goldens that lost members
        # Goldens that keep their members but one of whose members' values changed.
        affected.update(
            golden_of[clusters[rid]]
            for rid in changed_records
            if rid in clusters and clusters[rid] in golden_of
        )
        retired_ids = sorted(touched - used)
        affected.difference_update(retired_ids)
        rules = survivorship_rules_active(domain=dom.code)

        link_columns = ("record_id", "golden_id", "linked_by", "linked_at")
        # On PostgreSQL the new golden ids come from the sequence first: every
        # cross-reference row is then known before survivorship, and written a share after
        # each chunk of golden records (the server ingests while Python survives the next).
        new_ids = (
            bulk.next_ids(GoldenRecord, len(new_keys)) if bulk.uses_copy() and new_keys else None
        )
        fresh = set(new_keys)
        links: list[tuple[Any, ...]] = []
        linked_before = 0
        if new_ids is not None:
            # Links to golden records that exist first, then those to new ones in the order
            # of ``new_keys`` (``new_links`` follows ``members`` as ``new_keys`` does): each
            # is written once its golden record is (the links' trigger checks both ends).
            links = [(rid, golden_of[k], linked_by, now) for rid, k in new_links if k in golden_of]
            golden_of.update(zip(new_keys, new_ids, strict=True))
            linked_before = len(links)
            links += [(rid, golden_of[k], linked_by, now) for rid, k in new_links if k in fresh]
        created = _create_goldens(
            dom,
            [members[key] for key in new_keys],
            rules,
            ids=new_ids,
            now=now,
            reason=reason,
            links=links,
            linked_before=linked_before,
            aside=members_committed,
        )
        if new_ids is None:
            new_ids = created
            golden_of.update(zip(new_keys, new_ids, strict=True))
            bulk.rows_create_with_history(
                CrossReference,
                link_columns,
                [(rid, golden_of[key], linked_by, now) for rid, key in new_links],
                history_date=now,
                reason=reason,
            )
        del links, fresh
        moved = [(rid, golden_of[key]) for rid, key, _ in moves]
        received: dict[int, Counter[int]] = defaultdict(Counter)  # old golden -> new golden
        for (_, target), (_, _, old) in zip(moved, moves, strict=True):
            received[old][target] += 1

        bulk.rows_update_with_history(
            CrossReference,
            link_columns,
            [(rid, gid, linked_by, now) for rid, gid in moved],
            history_date=now,
            reason=reason,
        )

        versions = _current_goldens(retired_ids, lock=False)
        retired_rows = []
        for gid in retired_ids:
            survivor = received[gid].most_common(1)
            retired_rows.append(
                (
                    gid,
                    GoldenRecord.Status.RETIRED.value,
                    survivor[0][0] if survivor else None,
                    now,
                    versions[gid][2] + 1,
                )
            )
        bulk.rows_update_with_history(
            GoldenRecord,
            ("id", "status", "survivor_id", "retired_at", "version"),
            retired_rows,
            history_date=now,
            reason=f"{reason}: merged",
        )

        members_of = {g: members[k] for k, g in golden_of.items() if g in affected}
        changed = _write_rebuilt(dom, members_of, reason=reason, now=now)
        if len(new_ids) + len(new_links) + len(moved) >= ANALYZE_AT:
            bulk.table_analyze(GoldenRecord, CrossReference, keys_only=True)
        # Links follow their records: from and to every golden record whose members changed.
        relationships_recompute(
            golden_ids=sorted(affected | set(retired_ids) | set(new_ids)), reason=reason, when=now
        )
    return ApplyResult(
        created=len(new_ids),
        changed=changed,
        retired=len(retired_rows),
        linked=len(new_links),
        moved=len(moved),
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
    with transaction.atomic():
        members_of: dict[int, list[int]] = {gid: [] for gid in golden_ids}
        for rid, gid in _links_of_goldens(dom.code, sorted(set(golden_ids))):
            members_of[gid].append(rid)
        changed = _write_rebuilt(dom, members_of, reason=reason, now=now)
        # A changed member may name another parent; a deleted one no longer names any.
        relationships_recompute(golden_ids=golden_ids, reason=reason, when=now)
        return changed
