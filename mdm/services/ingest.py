"""Ingestion: rows from the API or a file become source records, set-based and repeatable.

The contract, for every entry point here:

* A row whose content hash (mapping fingerprint + raw payload) equals the stored one is a
  no-op, so re-sending the same data is cheap and changes nothing.
* A row that cannot be mapped or fails validation is stored in quarantine with its reasons
  and line number; the other rows are still applied.
* Each applied chunk is one transaction: records, their history rows, quarantine rows and the
  ``RecordChange`` markers that matching consumes are committed together or not at all.
* A row older than what the hub holds (by the source's own updated-at) is reported ``stale``
  and not applied, so out-of-order deliveries cannot overwrite newer data.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from celery import current_app
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from mdm import bulk
from mdm.bulk import RecordRow
from mdm.domains.base import FieldError
from mdm.mapping import CompiledMapping, RowMeta
from mdm.models import (
    STEWARD_SOURCE,
    Channel,
    CrossReference,
    IngestRun,
    QuarantinedPayload,
    RecordChange,
    SourceMapping,
    SourceRecord,
    SourceReference,
    SourceSystem,
)
from mdm.parallel import Normalised, normalise_rows, worker_init, worker_normalise
from mdm.readers import SourceRow, detect_format, line_label, open_rows
from mdm.services.quality import quality_check_notify, quality_task_open
from mdm.services.relationships import source_references_replace

logger = logging.getLogger(__name__)

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
DELETED = "deleted"
STALE = "stale"
REJECTED = "rejected"
MAX_STORED_ERRORS = 100
MATCH_TASK = "matching.match_pending"


@dataclass(frozen=True, slots=True)
class RowResult:
    """What happened to one input row."""

    index: int
    line: int | None
    source_key: str | None
    status: str
    record_id: int | None = None
    version: int | None = None
    errors: tuple[FieldError, ...] = ()
    quarantine_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "source_key": self.source_key}
        out["status"] = self.status
        if self.record_id is not None:
            out["id"] = self.record_id
            out["version"] = self.version
        if self.errors:
            out["errors"] = [e.as_dict() for e in self.errors]
        if self.quarantine_id is not None:
            out["quarantine_id"] = self.quarantine_id
        return out


@dataclass
class Counts:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    stale: int = 0
    quarantined: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, results: Iterable[RowResult], label: str = "line") -> None:
        for r in results:
            self.read += 1
            if r.status == REJECTED:
                self.quarantined += 1
                if len(self.errors) < MAX_STORED_ERRORS:
                    self.errors.append(
                        {
                            label: r.line,
                            "source_key": r.source_key,
                            "errors": [e.as_dict() for e in r.errors],
                            "quarantine_id": r.quarantine_id,
                        }
                    )
            else:
                setattr(self, r.status, getattr(self, r.status) + 1)

    def as_dict(self) -> dict[str, int]:
        return {
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "stale": self.stale,
            "quarantined": self.quarantined,
        }


def content_hash(fingerprint: str, data: Mapping[str, Any]) -> str:
    """Hash of a raw payload under a mapping: equal hashes mean nothing to do."""
    payload = orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(fingerprint.encode() + payload, digest_size=16).hexdigest()


def ingest_run_start(
    *,
    source_system: SourceSystem,
    domain: str,
    channel: str,
    mapping: SourceMapping | None = None,
    file_name: str = "",
    user: Any = None,
) -> IngestRun:
    """Open an ``IngestRun`` row (status running).  Not idempotent: one call, one run."""
    return IngestRun.objects.create(
        source_system=source_system,
        domain=domain,
        channel=channel,
        mapping=mapping,
        file_name=file_name,
        created_by=user if getattr(user, "pk", None) else None,
    )


def records_changed_notify(*, domain: str) -> None:
    """After commit, ask matching (by task name: mdm does not import it) to look at the
    domain's new RecordChange markers.  The markers are the durable part: if the broker is
    down the message is lost but the markers wait for the periodic sweep."""

    def send() -> None:
        try:
            current_app.signature(MATCH_TASK, args=(domain,)).delay()
        except Exception:  # the broker is down: the periodic sweep will catch up
            logger.warning("could not queue %s for %s; the sweep will", MATCH_TASK, domain)

    if settings.AURUM_MATCH_AFTER_INGEST:
        transaction.on_commit(send)


def ingest_run_finish(
    *, run: IngestRun, counts: Counts, started: float, failure: str | None = None
) -> IngestRun:
    """Close a run with its counts and timing; status from the outcome.  Safe to repeat."""
    run.finished_at = timezone.now()
    run.duration_seconds = time.perf_counter() - started
    _copy_counts(run, counts)
    errors = list(counts.errors)
    if failure:
        run.status = IngestRun.Status.FAILED
        errors.insert(0, {"error": failure})
    elif counts.quarantined:
        run.status = IngestRun.Status.PARTIAL
    else:
        run.status = IngestRun.Status.SUCCEEDED
    run.errors = errors[:MAX_STORED_ERRORS]
    run.save()
    logger.info(
        "ingest run %s finished: %s",
        run.pk,
        run.status,
        extra={
            "ingest_run": run.pk,
            "source_system": run.source_system_id,
            "counts": counts.as_dict(),
        },
    )
    if counts.created or counts.updated or counts.deleted:
        records_changed_notify(domain=run.domain)
        quality_check_notify(ingest_run_id=run.pk)
    return run


def _copy_counts(run: IngestRun, counts: Counts) -> None:
    run.read_count = counts.read
    run.created_count = counts.created
    run.updated_count = counts.updated
    run.unchanged_count = counts.unchanged
    run.deleted_count = counts.deleted
    run.stale_count = counts.stale
    run.quarantined_count = counts.quarantined


@dataclass(slots=True)
class _Pending:
    index: int
    row: SourceRow
    key: str
    updated_at: datetime | None
    deleted: bool
    digest: str
    references: tuple[tuple[str, str], ...] = ()


class _Retry(Exception):
    """A record changed under us between the read and the lock; classify again."""


def source_records_ingest_rows(
    *,
    run: IngestRun,
    mapping: CompiledMapping,
    rows: Sequence[SourceRow],
    start_index: int = 0,
    user: Any = None,
    quarantine_rejects: bool = True,
) -> list[RowResult]:
    """Apply a chunk of rows for ``run``'s source system and domain.  Returns one result per row.

    Atomic per chunk; safe to repeat (a repeat finds every row unchanged).  Can run inside an
    outer transaction (the API wraps it with the idempotency key).
    """
    results: list[RowResult] = []
    # A key that occurs twice in one chunk is applied in order: split into rounds of unique keys.
    for round_rows in _rounds_of_unique_keys(rows, mapping, start_index):
        for attempt in range(3):
            try:
                results.extend(_apply_round(run, mapping, round_rows, user, quarantine_rejects))
                break
            except (_Retry, IntegrityError):
                if attempt == 2:
                    raise
                logger.info("ingest run %s: concurrent change, retrying chunk", run.pk)
    results.sort(key=lambda r: r.index)
    return results


_Item = tuple[int, SourceRow, RowMeta | None]


def _rounds_of_unique_keys(
    rows: Sequence[SourceRow], mapping: CompiledMapping, start_index: int
) -> Iterator[list[_Item]]:
    seen: dict[Any, int] = {}
    rounds: list[list[_Item]] = [[]]
    for offset, row in enumerate(rows):
        meta = mapping.meta(row.data) if row.data is not None else None
        key = meta.source_key if meta is not None else None
        n = seen.get(key, 0) if key is not None else 0
        if key is not None:
            seen[key] = n + 1
        while len(rounds) <= n:
            rounds.append([])
        rounds[n].append((start_index + offset, row, meta))
    yield from (r for r in rounds if r)


@dataclass
class _Plan:
    """A round of rows, classified against what the hub holds, before any write."""

    results: list[RowResult]
    rejects: list[tuple[int, SourceRow, str | None, tuple[FieldError, ...]]]
    to_normalise: list[tuple[_Pending, _Existing | None]]
    to_create: list[tuple[_Pending, RecordRow]]
    to_update: list[tuple[_Pending, RecordRow, str]]
    now: datetime
    fingerprint: str
    # The mapping can carry references (relationship type, target key) per row.
    references: bool = False


def _classify(run: IngestRun, mapping: CompiledMapping, rows: list[_Item]) -> _Plan:
    """Decide per row: reject, unchanged, stale, tombstone, or needs normalising."""
    domain = mapping.domain
    plan = _Plan([], [], [], [], [], timezone.now(), mapping.fingerprint, mapping.has_references)
    pending: list[_Pending] = []
    for index, row, meta in rows:
        if row.data is None or meta is None:
            error = FieldError("", row.error or "the row cannot be read", "unreadable")
            plan.rejects.append((index, row, None, (error,)))
            continue
        if meta.errors:
            plan.rejects.append((index, row, meta.source_key, meta.errors))
            continue
        assert meta.source_key is not None
        digest = content_hash(mapping.fingerprint, row.data)
        pending.append(
            _Pending(
                index,
                row,
                meta.source_key,
                meta.source_updated_at,
                meta.deleted,
                digest,
                meta.references,
            )
        )

    existing = _existing(run.source_system_id, domain.code, [p.key for p in pending])
    for p in pending:
        ex = existing.get(p.key)
        if ex is not None and ex.content_hash == p.digest and ex.is_deleted == p.deleted:
            plan.results.append(RowResult(p.index, p.row.line, p.key, UNCHANGED, ex.pk, ex.version))
        elif ex is None and p.deleted:
            # A tombstone for a record the hub never had: nothing to do.
            plan.results.append(RowResult(p.index, p.row.line, p.key, UNCHANGED))
        elif (
            ex is not None
            and ex.source_updated_at is not None
            and p.updated_at is not None
            and p.updated_at < ex.source_updated_at
        ):
            plan.results.append(RowResult(p.index, p.row.line, p.key, STALE, ex.pk, ex.version))
        elif p.deleted:
            assert ex is not None
            record = _record_from(ex, run, p, plan.now)
            record.is_deleted = True
            record.deleted_at = plan.now
            plan.to_update.append((p, record, DELETED))
        else:
            plan.to_normalise.append((p, ex))
    return plan


def _complete(plan: _Plan, run: IngestRun, normalised: Sequence[Normalised]) -> None:
    """Turn normalised rows into records to create or update, or rejects."""
    for (p, ex), (attributes, errors) in zip(plan.to_normalise, normalised, strict=True):
        assert p.row.data is not None
        if errors:
            plan.rejects.append((p.index, p.row, p.key, errors))
        elif ex is None:
            new = RecordRow(
                None,
                run.source_system_id,
                run.domain,
                p.key,
                attributes,
                p.row.data,
                p.digest,
                1,
                plan.now,
                p.updated_at,
                False,
                None,
                run.pk,
            )
            plan.to_create.append((p, new))
        else:
            record = _record_from(ex, run, p, plan.now)
            record.attributes = attributes
            plan.to_update.append((p, record, UPDATED))
    plan.to_normalise = []


def _apply_round(
    run: IngestRun,
    mapping: CompiledMapping,
    rows: list[_Item],
    user: Any,
    quarantine_rejects: bool = True,
) -> list[RowResult]:
    plan = _classify(run, mapping, rows)
    normalised = normalise_rows(mapping, [p.row.data or {} for p, _ in plan.to_normalise])
    _complete(plan, run, normalised)
    return _write(plan, run, user, quarantine_rejects)


def _write(plan: _Plan, run: IngestRun, user: Any, quarantine_rejects: bool) -> list[RowResult]:
    """Apply a completed plan in one transaction (lock, then check versions)."""
    now, rejects, to_create, to_update = plan.now, plan.rejects, plan.to_create, plan.to_update
    results = plan.results
    tombstones = [rec for _, rec, status in to_update if status == DELETED]
    if tombstones:
        # Tombstones keep their last attributes; `_existing` did not load them.
        kept = dict(
            SourceRecord.objects.filter(id__in=[r.pk for r in tombstones]).values_list(
                "id", "attributes"
            )
        )
        for rec in tombstones:
            rec.attributes = kept[_pk(rec)]
    reason = f"{run.channel} ingest run {run.pk} from {run.source_system.code}"
    with transaction.atomic():
        if to_update:
            _lock_and_check([(_pk(rec), rec.version - 1) for _, rec, _ in to_update])
        quarantine_ids = _quarantine(plan, run, user, reason) if quarantine_rejects else {}
        bulk.records_create([r for _, r in to_create], history_date=now, reason=reason, user=user)
        updated = [(p.key, rec) for p, rec, status in to_update if status == UPDATED]
        if updated:
            steward_conflicts_check(run=run, updated=updated)
        bulk.records_update(
            [r for _, r, _ in to_update], history_date=now, reason=reason, user=user
        )
        upsert, delete = RecordChange.Kind.UPSERT.value, RecordChange.Kind.DELETE.value
        changes: list[tuple[int, str]] = [(r.pk, upsert) for _, r in to_create if r.pk] + [
            (r.pk, delete if status == DELETED else upsert) for _, r, status in to_update if r.pk
        ]
        bulk.changes_create(changes, domain=run.domain, when=now)
        _write_references(plan, run)

    for index, row, key, reasons in rejects:
        results.append(
            RowResult(
                index,
                row.line,
                key,
                REJECTED,
                errors=reasons,
                quarantine_id=quarantine_ids.get(index),
            )
        )
    for p, record in to_create:
        results.append(RowResult(p.index, p.row.line, p.key, CREATED, record.pk, record.version))
    for p, record, status in to_update:
        results.append(RowResult(p.index, p.row.line, p.key, status, record.pk, record.version))
    return results


def _write_references(plan: _Plan, run: IngestRun) -> None:
    """Replace the references of the records written (set-based; none for most mappings)."""
    updated = [r.pk for _, r, status in plan.to_update if status == UPDATED and r.pk]
    if not plan.references:
        if (
            updated
            and SourceReference.objects.filter(source_system_id=run.source_system_id).exists()
        ):
            # A mapping that no longer declares references: the records' old ones go.
            source_references_replace(
                source_system_id=run.source_system_id,
                domain=run.domain,
                references={},
                replace=updated,
            )
        return
    written = [(p, r) for p, r in plan.to_create] + [
        (p, r) for p, r, status in plan.to_update if status == UPDATED
    ]
    source_references_replace(
        source_system_id=run.source_system_id,
        domain=run.domain,
        references={r.pk: p.references for p, r in written if r.pk and p.references},
        replace=updated,
    )


def _quarantine(plan: _Plan, run: IngestRun, user: Any, reason: str) -> dict[int, int]:
    """Store rejected rows; one already waiting in quarantine (same content) is not stored twice.

    Returns the quarantine id of each rejected row, by row index.
    """
    if not plan.rejects:
        return {}
    payloads: list[dict[str, Any]] = [
        row.data if row.data is not None else {"_unparsed": row.text}
        for _, row, _, _ in plan.rejects
    ]
    hashes = [content_hash(plan.fingerprint, payload) for payload in payloads]
    waiting = dict(
        QuarantinedPayload.objects.filter(
            source_system_id=run.source_system_id,
            domain=run.domain,
            status=QuarantinedPayload.Status.OPEN,
            content_hash__in=set(hashes),
        ).values_list("content_hash", "id")
    )
    new: list[tuple[int, QuarantinedPayload]] = []
    ids: dict[int, int] = {}
    for (index, row, key, errors), payload, digest in zip(
        plan.rejects, payloads, hashes, strict=True
    ):
        if digest in waiting:
            ids[index] = waiting[digest]
            continue
        stored = QuarantinedPayload(
            source_system_id=run.source_system_id,
            domain=run.domain,
            ingest_run=run,
            mapping_id=run.mapping_id,
            source_key=key or "",
            line_number=row.line,
            payload=payload,
            content_hash=digest,
            errors=[e.as_dict() for e in errors],
        )
        waiting[digest] = -1  # the same bad row twice in one chunk is stored once
        new.append((index, stored))
    if new:
        bulk_create_with_history(
            [q for _, q in new],
            QuarantinedPayload,
            default_change_reason=reason,
            default_date=plan.now,
            default_user=user if getattr(user, "pk", None) else None,
        )
        by_hash = {q.content_hash: q.pk for _, q in new}
        for index, q in new:
            ids[index] = q.pk
        for (index, *_), digest in zip(plan.rejects, hashes, strict=True):
            if ids.get(index) == -1 or index not in ids:
                ids[index] = by_hash[digest]
    return ids


def _pk(record: RecordRow) -> int:
    assert record.pk is not None, "an existing record has an id"
    return record.pk


@dataclass(frozen=True, slots=True)
class _Existing:
    pk: int
    content_hash: str
    version: int
    is_deleted: bool
    source_updated_at: datetime | None


def _record_from(ex: _Existing, run: IngestRun, p: _Pending, now: datetime) -> RecordRow:
    """The next version of an existing record (attributes are filled in by the caller)."""
    assert p.row.data is not None
    return RecordRow(
        ex.pk,
        run.source_system_id,
        run.domain,
        p.key,
        {},
        p.row.data,
        p.digest,
        ex.version + 1,
        now,
        p.updated_at or ex.source_updated_at,
        False,
        None,
        run.pk,
    )


# One probe of the unique index (source_system_id, domain, source_key) per key, whatever
# the planner's statistics say.  With plain equalities and statistics taken before the
# source had records (a new source system; autovacuum not yet run), PostgreSQL estimates
# one row for the source either way, and may pick the (domain, source_system_id) index and
# filter the keys: the lookup then reads every record of the source (seconds per batch at
# 60,000 records).  Here each key takes the first index entry at or after (source, domain,
# key) in the unique index's order, then keeps it if it is that key: a row comparison and
# that order only the unique index can give, so no statistics make another plan cheap, and
# a missing key costs one descent too.  The LIMIT keeps the filter outside the subquery.
# The keys go as one JSON array (serialised in C; a list parameter is quoted key by key).
_EXISTING_SQL = (
    "SELECT k.key, r.id, r.content_hash, r.version, r.is_deleted, r.source_updated_at "
    "FROM jsonb_array_elements_text(%(keys)s::jsonb) AS k(key) CROSS JOIN LATERAL ("
    "SELECT id, source_system_id, domain, source_key, content_hash, version, is_deleted, "
    "source_updated_at FROM mdm_sourcerecord "
    "WHERE (source_system_id, domain, source_key) >= (%(source)s, %(domain)s, k.key) "
    "ORDER BY source_system_id, domain, source_key LIMIT 1) AS r "
    "WHERE r.source_system_id = %(source)s AND r.domain = %(domain)s AND r.source_key = k.key"
)


def _existing(source_system_id: int, domain: str, keys: list[str]) -> dict[str, _Existing]:
    """What the hub holds for these keys: just enough to classify, no model instances."""
    if not keys:
        return {}
    found: dict[str, _Existing] = {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _EXISTING_SQL,
                {"keys": orjson.dumps(keys).decode(), "source": source_system_id, "domain": domain},
            )
            for key, *rest in cursor.fetchall():
                found[key] = _Existing(*rest)
        return found
    step = 900  # below SQLite's bound-parameter limit
    for start in range(0, len(keys), step):
        rows = SourceRecord.objects.filter(
            source_system_id=source_system_id,
            domain=domain,
            source_key__in=keys[start : start + step],
        ).values_list(
            "source_key", "id", "content_hash", "version", "is_deleted", "source_updated_at"
        )
        for key, *rest in rows:
            found[key] = _Existing(*rest)
    return found


def _lock_and_check(expected: list[tuple[int, int]]) -> None:
    """Lock the records about to change and check nobody changed them since we read them."""
    want = dict(expected)
    ids = list(want)
    for start in range(0, len(ids), 5000):
        batch = ids[start : start + 5000]
        current = (
            SourceRecord.objects.select_for_update()
            .filter(id__in=batch)
            .values_list("id", "version")
        )
        for pk, version in current:
            if want[pk] != version:
                raise _Retry(pk)


# --- steward corrections a source disagrees with ---------------------------------------------

STEWARD_CONFLICT_RULE = "source disagrees with a steward correction"


def steward_conflicts_check(*, run: IngestRun, updated: Sequence[tuple[str, RecordRow]]) -> int:
    """Open a task for each updated record whose golden record a steward corrected, when the
    source now sends, for a corrected attribute, a new value that differs from the steward's.

    The steward's value stays (the ``aurum-steward`` source outranks every source under the
    default rules); the task (a data-quality exception, through the openers the steward queue
    registers: mdm imports no other app) makes the disagreement visible.  Called inside the
    ingest transaction before the records are written, so the stored attributes are the old
    ones.  Two queries for a chunk without corrections; safe to repeat (one open task per
    record).  Returns the number of records with a disagreement.
    """
    ids = [r.pk for _, r in updated if r.pk is not None]
    steward = (
        SourceRecord.objects.filter(
            source_system__code=STEWARD_SOURCE,
            domain=run.domain,
            is_deleted=False,
            xref__golden__members__record_id__in=ids,
        )
        .values_list("xref__golden_id", "attributes")
        .distinct()
    )
    corrections = {golden: attrs for golden, attrs in steward if attrs}
    if not corrections:
        return 0
    golden_of = dict(
        CrossReference.objects.filter(
            record_id__in=ids, golden_id__in=list(corrections)
        ).values_list("record_id", "golden_id")
    )
    old = dict(SourceRecord.objects.filter(pk__in=list(golden_of)).values_list("pk", "attributes"))
    found = 0
    for key, record in updated:
        golden = golden_of.get(record.pk or 0)
        if golden is None:
            continue
        before = old.get(record.pk or 0, {})
        disputed = {
            name: {
                "steward_value": value,
                "source_value": record.attributes.get(name),
                "previous_source_value": before.get(name),
            }
            for name, value in corrections[golden].items()
            if record.attributes.get(name) is not None
            and record.attributes.get(name) != value
            and record.attributes.get(name) != before.get(name)
        }
        if not disputed:
            continue
        found += 1
        quality_task_open(
            domain=run.domain,
            record_id=record.pk or 0,
            rule=STEWARD_CONFLICT_RULE,
            details={
                "golden_id": golden,
                "source": run.source_system.code,
                "source_key": key,
                "ingest_run": run.pk,
                "attributes": disputed,
                "message": (
                    f"{run.source_system.code} sent "
                    + ", ".join(f"{name} = {d['source_value']!r}" for name, d in disputed.items())
                    + f" for {key}; golden record {golden} keeps the steward's "
                    + ", ".join(f"{name} = {d['steward_value']!r}" for name, d in disputed.items())
                ),
            },
        )
    return found


# --- records gone from the source (full key comparison) ---------------------------------------


def source_records_tombstone_missing(
    *, run: IngestRun, present_keys: set[str], user: Any = None
) -> list[RowResult]:
    """Tombstone the run's source-system records of its domain whose keys the source no
    longer holds (a full key comparison), set-based, in one transaction.

    Safe to repeat: a tombstone is not tombstoned again.  A key that comes back later is
    a changed record (live again) on its next ingest.
    """
    live = list(
        SourceRecord.objects.filter(
            source_system_id=run.source_system_id, domain=run.domain, is_deleted=False
        ).values_list("source_key", "id", "version")
    )
    missing = [(key, pk, version) for key, pk, version in live if key not in present_keys]
    if not missing:
        return []
    now = timezone.now()
    reason = (
        f"{run.channel} ingest run {run.pk} from {run.source_system.code}: gone from the source"
    )
    results: list[RowResult] = []
    with transaction.atomic():
        for start in range(0, len(missing), 5000):
            part = missing[start : start + 5000]
            _lock_and_check([(pk, version) for _, pk, version in part])
            stored = {
                pk: (attributes, raw, digest, updated_at)
                for pk, attributes, raw, digest, updated_at in SourceRecord.objects.filter(
                    id__in=[pk for _, pk, _ in part]
                ).values_list("id", "attributes", "raw", "content_hash", "source_updated_at")
            }
            rows = [
                RecordRow(
                    pk,
                    run.source_system_id,
                    run.domain,
                    key,
                    stored[pk][0],
                    stored[pk][1],
                    stored[pk][2],
                    version + 1,
                    now,
                    stored[pk][3],
                    True,
                    now,
                    run.pk,
                )
                for key, pk, version in part
            ]
            bulk.records_update(rows, history_date=now, reason=reason, user=user)
            bulk.changes_create(
                [(pk, RecordChange.Kind.DELETE.value) for _, pk, _ in part],
                domain=run.domain,
                when=now,
            )
            results.extend(
                RowResult(-1, None, key, DELETED, pk, version + 1) for key, pk, version in part
            )
    return results


# --- whole files ------------------------------------------------------------------------


@dataclass(frozen=True)
class FileIngestResult:
    run: IngestRun
    counts: Counts
    label: str


def source_records_ingest_file(
    *,
    path: Path,
    source_system: SourceSystem,
    mapping: CompiledMapping,
    mapping_obj: SourceMapping | None = None,
    file_format: str | None = None,
    chunk_size: int | None = None,
    user: Any = None,
    on_progress: Callable[[int, int, Counts], None] | None = None,
) -> FileIngestResult:
    """Stream a CSV/JSON/JSONL/Parquet export into the hub, one transaction per chunk.

    Safe to repeat: a re-run of the same file finds every row unchanged.  A failure part-way
    (database gone) marks the run failed; the chunks already committed stay, and a re-run
    picks up the rest.
    """
    fmt = detect_format(path, file_format or mapping.file_format)
    rows, progress = open_rows(path, fmt, delimiter=mapping.delimiter, encoding=mapping.encoding)
    label = line_label(fmt)
    size = chunk_size or settings.AURUM_INGEST_CHUNK_SIZE
    run = ingest_run_start(
        source_system=source_system,
        domain=mapping.domain.code,
        channel=Channel.FILE,
        mapping=mapping_obj,
        file_name=path.name,
        user=user,
    )
    counts = Counts()
    started = time.perf_counter()
    workers = settings.AURUM_INGEST_WORKERS
    parallel = workers > 0 and path.stat().st_size >= settings.AURUM_INGEST_PARALLEL_MIN_BYTES
    try:
        if parallel:
            _ingest_pipelined(
                run,
                mapping,
                _chunks(rows, size),
                counts,
                label,
                user,
                workers,
                lambda: (
                    on_progress(progress.position, progress.total, counts) if on_progress else None
                ),
            )
        else:
            for chunk in _chunks(rows, size):
                _file_chunk(run, mapping, chunk, counts, label, user)
                if on_progress:
                    on_progress(progress.position, progress.total, counts)
    except Exception as exc:
        ingest_run_finish(
            run=run, counts=counts, started=started, failure=f"{type(exc).__name__}: {exc}"
        )
        raise
    if counts.created + counts.updated + counts.deleted >= 1000:
        bulk.records_analyze()
    ingest_run_finish(run=run, counts=counts, started=started)
    return FileIngestResult(run, counts, label)


def _chunks(rows: Iterable[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    chunk: list[SourceRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def source_records_ingest_chunks(
    *,
    run: IngestRun,
    mapping: CompiledMapping,
    chunks: Iterable[list[SourceRow]],
    counts: Counts,
    label: str = "line",
    user: Any = None,
    on_chunk: Callable[[], None] | None = None,
    parallel_min_rows: int = 2000,
) -> None:
    """Apply a stream of chunks for ``run`` (one transaction each), adding to ``counts`` and
    the run's stored counts, calling ``on_chunk`` after each committed chunk.

    With ``AURUM_INGEST_WORKERS`` > 0 and a first chunk of at least ``parallel_min_rows``
    rows (a large load: worth starting worker processes), the next chunk is mapped and
    normalised in the workers while the current one is written (the same outcome as one by
    one).  Safe to repeat: a repeat finds every row unchanged.
    """
    workers = settings.AURUM_INGEST_WORKERS
    tick = on_chunk or (lambda: None)
    stream = iter(chunks)
    first = next(stream, None)
    if first is None:
        return
    chunks = itertools.chain([first], stream)
    if workers > 0 and len(first) >= parallel_min_rows:
        _ingest_pipelined(run, mapping, iter(chunks), counts, label, user, workers, tick)
        return
    for chunk in chunks:
        _file_chunk(run, mapping, chunk, counts, label, user)
        tick()


@dataclass
class _InFlight:
    chunk: list[SourceRow]
    plan: _Plan | None  # None: the chunk repeats a key, apply it sequentially
    futures: list[Future[list[Normalised]]]


def _ingest_pipelined(
    run: IngestRun,
    mapping: CompiledMapping,
    chunks: Iterator[list[SourceRow]],
    counts: Counts,
    label: str,
    user: Any,
    workers: int,
    tick: Callable[[], None],
) -> None:
    """Map and normalise chunk N+1 in worker processes while chunk N is written.

    Chunk N+1 is classified before chunk N commits; a key that appears in both is caught by
    the unique constraint or the version check in ``_write``, and that chunk is then applied
    again sequentially, so the outcome is the same as the sequential path.
    """
    pool: ProcessPoolExecutor | None = None

    def get_pool() -> ProcessPoolExecutor:
        # Started on first need: a re-load of an unchanged file never pays for it.
        nonlocal pool
        if pool is None:
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker_init,
                initargs=(mapping.spec, mapping.domain.code, mapping.identity),
            )
        return pool

    try:
        inflight: _InFlight | None = None
        for chunk in chunks:
            rounds = list(_rounds_of_unique_keys(chunk, mapping, 0))
            current = _InFlight(chunk, None, [])
            if len(rounds) == 1:
                current.plan = _classify(run, mapping, rounds[0])
                datas = [p.row.data or {} for p, _ in current.plan.to_normalise]
                step = max(1, -(-len(datas) // workers))
                current.futures = [
                    get_pool().submit(worker_normalise, datas[k : k + step])
                    for k in range(0, len(datas), step)
                ]
            if inflight is not None:
                _finish(run, mapping, inflight, counts, label, user)
                tick()
            inflight = current
        if inflight is not None:
            _finish(run, mapping, inflight, counts, label, user)
            tick()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _finish(
    run: IngestRun,
    mapping: CompiledMapping,
    inflight: _InFlight,
    counts: Counts,
    label: str,
    user: Any,
) -> None:
    if inflight.plan is None:
        _file_chunk(run, mapping, inflight.chunk, counts, label, user)
        return
    normalised = [item for f in inflight.futures for item in f.result()]
    _complete(inflight.plan, run, normalised)
    try:
        results = _write(inflight.plan, run, user, True)
    except (_Retry, IntegrityError):
        _file_chunk(run, mapping, inflight.chunk, counts, label, user)
        return
    results.sort(key=lambda r: r.index)
    _record_counts(run, counts, results, label)


def _file_chunk(
    run: IngestRun,
    mapping: CompiledMapping,
    chunk: list[SourceRow],
    counts: Counts,
    label: str,
    user: Any,
) -> None:
    results = source_records_ingest_rows(run=run, mapping=mapping, rows=chunk, user=user)
    _record_counts(run, counts, results, label)


ANALYZE_FIRST_AT = 20_000


def _record_counts(run: IngestRun, counts: Counts, results: list[RowResult], label: str) -> None:
    before = counts.created + counts.updated + counts.deleted
    counts.add(results, label)
    written = counts.created + counts.updated + counts.deleted
    # Statistics on a doubling schedule (20k, 40k, 80k, ... rows written): a load into an
    # empty table keeps fast key lookups all the way, for a handful of ANALYZEs in total.
    threshold = ANALYZE_FIRST_AT
    while threshold <= before:
        threshold *= 2
    if before < threshold <= written:
        bulk.records_analyze()
    _copy_counts(run, counts)
    IngestRun.objects.filter(pk=run.pk).update(
        read_count=run.read_count,
        created_count=run.created_count,
        updated_count=run.updated_count,
        unchanged_count=run.unchanged_count,
        deleted_count=run.deleted_count,
        stale_count=run.stale_count,
        quarantined_count=run.quarantined_count,
    )


# --- single records ---------------------------------------------------------------------


def source_record_tombstone(
    *, source_system: SourceSystem, domain: str, source_key: str, user: Any = None
) -> SourceRecord | None:
    """Mark a record deleted in its source (a tombstone).  Returns None for an unknown key.

    Safe to repeat: tombstoning a tombstone changes nothing.
    """
    with transaction.atomic():
        record = (
            SourceRecord.objects.select_for_update()
            .filter(source_system=source_system, domain=domain, source_key=source_key)
            .first()
        )
        if record is None or record.is_deleted:
            return record
        now = timezone.now()
        run = ingest_run_start(
            source_system=source_system, domain=domain, channel=Channel.API, user=user
        )
        record.is_deleted = True
        record.deleted_at = now
        record.received_at = now
        record.version += 1
        record.ingest_run = run
        record._change_reason = f"deleted through the API by {source_system.code}"  # type: ignore[attr-defined]
        record.save()
        RecordChange.objects.create(
            record=record, domain=domain, kind=RecordChange.Kind.DELETE, created_at=now
        )
        counts = Counts(read=1, deleted=1)
        ingest_run_finish(run=run, counts=counts, started=time.perf_counter())
    return record
