"""Every write of the matching app: training, full match runs, constraints."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from array import array
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from matching.clustering import ClusterResult, Edge, cluster, cluster_columns
from matching.engine import get_engine
from matching.engine.interface import (
    Contribution,
    EngineRecord,
    LevelReport,
    MatchEngine,
    ScoredPair,
    ScoredPairs,
    TrainedModel,
)
from matching.models import MatchModel, MatchPair, MatchRun, PairConstraint
from matching.store import engine_records, engine_records_stream, store_for
from mdm import bulk
from mdm.domains import get_domain
from mdm.domains.match_spec import MatchSpec
from mdm.models import CrossReference, RecordChange, SourceRecord
from mdm.services.golden import golden_records_apply_clusters, golden_records_rebuild
from mdm.services.locks import golden_domain_lock
from stewardship.models import ReviewTask

ANALYZE_AT = 10_000  # refresh the planner's statistics after writing this many pairs


class MatchingError(ValueError):
    """A match request that cannot run; the message says what to do."""


def _spec(domain: str) -> MatchSpec:
    spec = get_domain(domain).match
    if spec is None:
        raise MatchingError(f"domain {domain} declares no match model")
    return spec


def _trained(model: MatchModel) -> TrainedModel:
    report = model.report
    return TrainedModel(
        parameters=model.parameters,
        prior=float(report.get("prior", 0.0)),
        levels=tuple(LevelReport(**level) for level in report.get("levels", [])),
        warnings=tuple(report.get("warnings", [])),
    )


def match_model_active(*, domain: str) -> MatchModel:
    model = MatchModel.objects.filter(domain=domain, is_active=True).first()
    if model is None:
        raise MatchingError(
            f"no active match model for {domain}: train one with `manage.py train_model {domain}`"
        )
    return model


def match_model_train(
    *, domain: str, activate: bool = False, engine: MatchEngine | None = None, seed: int = 42
) -> MatchModel:
    """Train a new model version on the domain's live records and store its report.

    It becomes active when ``activate`` is set or no model is active yet.  Not idempotent:
    each call stores a new version.
    """
    spec = _spec(domain)
    records = engine_records(domain)
    if len(records) < 10:
        raise MatchingError(f"{domain} has {len(records)} records; load some before training")
    started = time.perf_counter()
    trained = (engine or get_engine()).train(spec, records, seed=seed)
    seconds = time.perf_counter() - started
    with transaction.atomic():
        version = (
            MatchModel.objects.filter(domain=domain).aggregate(v=Max("version"))["v"] or 0
        ) + 1
        has_active = MatchModel.objects.select_for_update().filter(domain=domain, is_active=True)
        make_active = activate or not has_active.exists()
        if make_active:
            for old in has_active:
                old.is_active = False
                old.save()
        model = MatchModel.objects.create(
            domain=domain,
            version=version,
            parameters=dict(trained.parameters),
            report={
                "prior": trained.prior,
                "levels": [asdict(level) for level in trained.levels],
                "warnings": list(trained.warnings),
            },
            is_active=make_active,
            records_trained=len(records),
            training_seconds=seconds,
        )
        MatchRun.objects.create(
            domain=domain,
            kind=MatchRun.Kind.TRAIN,
            model=model,
            status=MatchRun.Status.SUCCEEDED,
            finished_at=timezone.now(),
            counts={"records": len(records)},
            timings={"train": round(seconds, 3)},
        )
    return model


def _constraints(domain: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    must: list[tuple[int, int]] = []
    cannot: list[tuple[int, int]] = []
    for left, right, kind in PairConstraint.objects.filter(domain=domain).values_list(
        "left_id", "right_id", "kind"
    ):
        (must if kind == PairConstraint.Kind.MUST_LINK else cannot).append((left, right))
    return must, cannot


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a full run.

    A full run builds millions of acyclic objects (records, members, attribute and
    provenance dictionaries); each full collection walks every live one, and at 1M records
    they cost more than the run's own work.  Nothing a run builds needs the collector: the
    memory is freed by reference counting as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _release_memory() -> None:
    """Give the heap memory freed by a phase back to the system (glibc's ``malloc_trim``).

    A full run frees hundreds of megabytes between its phases (the records' chunks, the
    scored rows); glibc keeps freed blocks in its heap, so without this the worker's
    resident memory only grows and the next phase's peak sits on top of the last one's.
    Does nothing where the C library has no ``malloc_trim``.
    """
    global _malloc_trim
    if _malloc_trim is None:
        name = ctypes.util.find_library("c")
        library = ctypes.CDLL(name) if name else None
        _malloc_trim = getattr(library, "malloc_trim", False) if library else False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _recording_ids(
    records: Iterable[EngineRecord], ids: array[int]
) -> Generator[EngineRecord, None, None]:
    """``records`` as they come, each one's id appended to ``ids`` on the way."""
    for record in records:
        ids.append(record.id)
        yield record


def match_run_full(*, domain: str, engine: MatchEngine | None = None) -> MatchRun:
    """Score every live record of the domain, cluster, and apply to the golden records.

    Above the model's upper threshold records are merged; between the thresholds a review
    task is opened (unless a steward already decided the pair); steward constraints always
    hold.  Consumes the domain's pending ``RecordChange`` markers.  Safe to repeat: a second
    run on unchanged data changes no golden record and opens no new task.
    """
    with _gc_paused():
        return _run_full(domain, engine)


def _run_full(domain: str, engine: MatchEngine | None) -> MatchRun:
    model = match_model_active(domain=domain)
    spec = _spec(domain)
    run = MatchRun.objects.create(domain=domain, kind=MatchRun.Kind.FULL, model=model)
    timings: dict[str, float] = {}
    try:
        last_change = RecordChange.objects.filter(domain=domain).aggregate(m=Max("id"))["m"] or 0
        t = time.perf_counter()
        # The records stream from the database into the engine (which prepares them a
        # chunk at a time): the domain is never alive in Python whole.  Their ids are kept
        # on the way, compactly, for clustering.
        seen: array[int] = array("q")
        stream = _recording_ids(engine_records_stream(domain), seen)
        try:
            pairs = (engine or get_engine()).score_all(
                spec, _trained(model), stream, threshold=model.lower_threshold
            )
            deque(stream, maxlen=0)  # an engine that stopped early: every id is still wanted
        finally:
            stream.close()
        timings["score"] = time.perf_counter() - t
        t = time.perf_counter()
        record_ids = sorted(seen)
        del seen
        _release_memory()
        columns = _columns(pairs)

        def clustered(
            columns: ScoredPairs, must: list[tuple[int, int]], cannot: list[tuple[int, int]]
        ) -> ClusterResult[int]:
            return cluster_columns(
                record_ids,
                columns.left,
                columns.right,
                columns.match_probability,
                threshold=model.upper_threshold,
                must_link=must,
                cannot_link=cannot,
            )

        must, cannot = _constraints(domain)
        result = clustered(columns, must, cannot)
        timings["cluster"] = time.perf_counter() - t
        t = time.perf_counter()
        with transaction.atomic():
            # Steward commands wait from here; one that committed while this run scored
            # changed the constraints: cluster again with them (scores stay valid).
            golden_domain_lock(domain)
            latest = _constraints(domain)
            if latest != (must, cannot):
                must, cannot = latest
                result = clustered(columns, must, cannot)
            pairs_written = _store_pairs(domain, model, pairs)
            # Written: the pairs (their contributions, hundreds of megabytes at 1M records)
            # are not needed by the golden records' apply, which holds its own plan.
            pair_count = len(pairs)
            auto_merge = sum(p >= model.upper_threshold for p in columns.match_probability)
            del pairs, columns
            _release_memory()
            # Records changed since their golden record was last survived (their markers,
            # consumed by this run): a golden record keeping its members is rebuilt too.
            changed = RecordChange.objects.filter(domain=domain, id__lte=last_change)
            applied = golden_records_apply_clusters(
                domain=domain,
                clusters=result.clusters,
                reason=f"match run {run.pk}",
                changed_records=changed.values_list("record_id", flat=True).iterator(10_000),
                # This transaction writes no source record: a second connection reads the
                # values this one would (new golden records' members are read aside).
                members_committed=True,
            )
            tasks = _review_tasks(domain, model, result.clusters, set(must) | set(cannot))
            changed.delete()
            committing = time.perf_counter()
        # Part of the apply: the deferred foreign-key checks still declared run here (the
        # cross-reference's links are checked per statement by mdm.triggers instead).
        timings["commit"] = time.perf_counter() - committing
        timings["apply"] = time.perf_counter() - t
        run.counts = {
            "records": len(record_ids),
            "pairs": pair_count,
            "pairs_written": pairs_written,
            "auto_merge_pairs": auto_merge,
            "review_pairs": pair_count - auto_merge,
            "refused_by_constraints": len(result.refused),
            "clusters": len(set(result.clusters.values())),
            "golden_created": applied.created,
            "golden_changed": applied.changed,
            "golden_retired": applied.retired,
            "records_moved": applied.moved,
            **tasks,
        }
        run.status = MatchRun.Status.SUCCEEDED
    except Exception as exc:
        run.status = MatchRun.Status.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        run.timings = {k: round(v, 3) for k, v in timings.items()}
        run.finished_at = timezone.now()
        run.save()
    return run


def _columns(pairs: Sequence[ScoredPair]) -> ScoredPairs:
    """The pairs by column (an engine's own ScoredPairs as they are; no contributions
    serialised for other engines' pairs: only the columns clustering reads are filled)."""
    if isinstance(pairs, ScoredPairs):
        return pairs
    return ScoredPairs(
        left=[p.left for p in pairs],
        right=[p.right for p in pairs],
        match_probability=[p.match_probability for p in pairs],
        match_weight=[p.match_weight for p in pairs],
        contributions_json=[""] * len(pairs),
    )


def _store_pairs(domain: str, model: MatchModel, pairs: Sequence[ScoredPair]) -> int:
    """Make the domain's stored pairs this run's (set-based); returns the pairs written.

    A pair stored by an earlier run stays as it is (with its id, so review tasks keep it)
    when this run scored it again with the same model, probability and weight and neither
    record changed since (no ``RecordChange`` marker: its values, and so the pair's
    contributions, are the ones scored before).  Every other stored pair is deleted and this
    run's pairs not kept are written: a re-run over unchanged data writes no pair.  Tasks
    lose a deleted pair as ``on_delete=SET_NULL`` says, in one statement per chunk (Django's
    delete collector would first load every pair to do the same).
    """
    table = MatchPair._meta.db_table
    columns = _columns(pairs)
    keep: set[int] = set()  # positions in ``pairs`` already stored as they are
    stale: list[int] = []  # ids of stored pairs this run does not keep
    stored = MatchPair.objects.filter(domain=domain).values_list(
        "id", "left_id", "right_id", "model_id", "match_probability", "match_weight"
    )
    if stored.exists():
        changed = set(
            RecordChange.objects.filter(domain=domain).values_list("record_id", flat=True)
        )
        at = {
            (min(left, right), max(left, right)): i
            for i, (left, right) in enumerate(zip(columns.left, columns.right, strict=True))
        }
        probability, weight = columns.match_probability, columns.match_weight
        for pk, left, right, model_id, p, w in stored.order_by().iterator(10_000):
            i = at.get((left, right))
            if (
                i is not None
                and model_id == model.pk
                and p == probability[i]
                and w == weight[i]
                and left not in changed
                and right not in changed
            ):
                keep.add(i)
            else:
                stale.append(pk)
        del at, changed
    if not keep:
        ReviewTask.objects.filter(pair__domain=domain).update(pair=None)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE domain = %s", [domain])  # noqa: S608  # nosec B608
    else:
        _delete_pairs(stale)
    written = [i for i in range(len(pairs)) if i not in keep] if keep else None
    if isinstance(pairs, ScoredPairs):
        _insert_pair_columns(domain, model, pairs, written)
    else:
        _insert_pairs(domain, model, pairs if written is None else [pairs[i] for i in written])
    count = len(pairs) if written is None else len(written)
    if count + len(stale) >= ANALYZE_AT:  # the review-task query reads them next
        bulk.table_analyze(MatchPair, keys_only=True)
    return count


def _delete_pairs(ids: list[int]) -> None:
    """Delete these pairs; their tasks keep no pair (``SET_NULL``), without the collector."""
    table = MatchPair._meta.db_table
    task_table = ReviewTask._meta.db_table
    step = 50_000 if connection.vendor == "postgresql" else 900
    with connection.cursor() as cursor:
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            params: list[Any]
            if connection.vendor == "postgresql":
                where, params = "= ANY(%s::bigint[])", [bulk.int_array(chunk)]
            else:
                where, params = f"IN ({', '.join(['%s'] * len(chunk))})", chunk
            cursor.execute(f"UPDATE {task_table} SET pair_id = NULL WHERE pair_id {where}", params)  # noqa: S608  # nosec B608
            cursor.execute(f"DELETE FROM {table} WHERE id {where}", params)  # noqa: S608  # nosec B608


def _insert_pairs(domain: str, model: MatchModel, pairs: Iterable[ScoredPair]) -> None:
    now = timezone.now()
    # COPY serialises the Contribution dataclasses itself (orjson), much faster than asdict.
    plain = not bulk.uses_copy()
    bulk.rows_create(
        MatchPair,
        PAIR_COLUMNS,
        (
            (
                domain,
                model.pk,
                min(p.left, p.right),
                max(p.left, p.right),
                p.match_probability,
                p.match_weight,
                [asdict(c) for c in p.contributions] if plain else p.contributions,
                now,
            )
            for p in pairs
        ),
    )


def _insert_pair_columns(
    domain: str, model: MatchModel, pairs: ScoredPairs, only: Sequence[int] | None = None
) -> None:
    """Insert pairs given by column (those at the positions ``only``, else all): their
    contributions JSON goes to COPY as it is."""
    if only is not None:
        pairs = ScoredPairs(
            left=[pairs.left[i] for i in only],
            right=[pairs.right[i] for i in only],
            match_probability=[pairs.match_probability[i] for i in only],
            match_weight=[pairs.match_weight[i] for i in only],
            contributions_json=[pairs.contributions_json[i] for i in only],
        )
    now = timezone.now()
    if bulk.uses_copy():
        _copy_pair_columns(domain, model, pairs, now)
        return
    bulk.rows_create(
        MatchPair,
        PAIR_COLUMNS,
        (
            (domain, model.pk, left, right, probability, weight, contribution, now)
            for left, right, probability, weight, contribution in zip(
                pairs.left,
                pairs.right,
                pairs.match_probability,
                pairs.match_weight,
                map(orjson.loads, pairs.contributions_json),
                strict=True,
            )
        ),
    )


PAIR_COLUMNS = (
    "domain",
    "model_id",
    "left_id",
    "right_id",
    "match_probability",
    "match_weight",
    "contributions",
    "scored_at",
)
COPY_BLOCK = 10_000  # pairs formatted at a time into one COPY write
# What COPY's text format escapes in a value: JSON may hold a backslash (an escape in a
# string) and, between its tokens, whitespace such as tab or newline.
_COPY_SPECIAL = ("\\", "\t", "\n", "\r")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_escaped(values: list[str]) -> list[str]:
    """``values`` as COPY text-format values: one scan of them all finds the (rare) block
    that needs escaping at all."""
    joined = "".join(values)
    if not any(special in joined for special in _COPY_SPECIAL):
        return values
    return [value.translate(_COPY_ESCAPES) for value in values]


def _copy_pair_columns(domain: str, model: MatchModel, pairs: ScoredPairs, now: Any) -> None:
    """COPY pairs by column into the pairs table, a block of text lines per write.

    Each line is formatted by one ``str.format`` (numbers by ``str``: for a float the
    shortest text that reads back to the same double, as psycopg writes it), the
    contributions JSON as it is: per pair no tuple, no adapter call and no value escaped
    one at a time (:func:`_copy_escaped`), where psycopg's ``write_row`` scanned each
    kilobyte of JSON for characters to escape.  The client's CPU time for 75,731 pairs
    (200k records), sending included: 1.03 s with ``write_row``, 0.70 s so.
    """
    constant = "\t".join(value.translate(_COPY_ESCAPES) for value in (domain, str(model.pk)))
    constant = constant.replace("{", "{{").replace("}", "}}")
    line = constant + "\t{}\t{}\t{}\t{}\t{}\t" + now.isoformat() + "\n"
    table = MatchPair._meta.db_table
    sql = f"COPY {table} ({', '.join(PAIR_COLUMNS)}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.copy(sql) as copy,
    ):
        for start in range(0, len(pairs), COPY_BLOCK):
            end = start + COPY_BLOCK
            lines = map(
                line.format,
                pairs.left[start:end],
                pairs.right[start:end],
                pairs.match_probability[start:end],
                pairs.match_weight[start:end],
                _copy_escaped(pairs.contributions_json[start:end]),
            )
            copy.write("".join(lines))


def _review_tasks(
    domain: str,
    model: MatchModel,
    clusters: dict[int, int],
    decided: set[tuple[int, int]],
) -> dict[str, int]:
    """Open a task for each review-band pair left in two clusters; close obsolete ones.

    The pairs' contributions (a new task's explanation) are read only for the tasks opened,
    a chunk at a time, and open tasks without theirs: at 1M records the band holds
    hundreds of thousands of pairs, most of them with a task already.
    """
    band = MatchPair.objects.filter(
        domain=domain,
        match_probability__gte=model.lower_threshold,
        match_probability__lt=model.upper_threshold,
    ).values_list("id", "left_id", "right_id", "match_probability")
    wanted: dict[tuple[int, int], tuple[int, float]] = {}
    for pk, left, right, probability in band.iterator(10_000):
        if (left, right) in decided or clusters.get(left) == clusters.get(right):
            continue
        wanted[(left, right)] = (pk, probability)
    open_tasks = {
        (t.left_record_id, t.right_record_id): t
        for t in ReviewTask.objects.filter(domain=domain, status=ReviewTask.Status.OPEN).only(
            "left_record_id", "right_record_id", "pair", "match_probability"
        )
    }
    obsolete = [t.pk for key, t in open_tasks.items() if key not in wanted]
    ReviewTask.objects.filter(pk__in=obsolete).update(status=ReviewTask.Status.OBSOLETE)
    for key, (pk, probability) in wanted.items():
        if key in open_tasks:
            open_tasks[key].pair_id = pk
            open_tasks[key].match_probability = probability
    ReviewTask.objects.bulk_update(
        [t for k, t in open_tasks.items() if k in wanted], ["pair", "match_probability"], 1000
    )
    new = [key for key in wanted if key not in open_tasks]
    for start in range(0, len(new), REVIEW_CHUNK):
        chunk = new[start : start + REVIEW_CHUNK]
        explanations = dict(
            MatchPair.objects.filter(id__in=[wanted[key][0] for key in chunk]).values_list(
                "id", "contributions"
            )
        )
        ReviewTask.objects.bulk_create(
            [
                ReviewTask(
                    domain=domain,
                    pair_id=wanted[key][0],
                    left_record_id=key[0],
                    right_record_id=key[1],
                    match_probability=wanted[key][1],
                    explanation=explanations[wanted[key][0]],
                )
                for key in chunk
            ],
            batch_size=2000,
        )
    return {"review_tasks_opened": len(new), "review_tasks_closed": len(obsolete)}


REVIEW_CHUNK = 900  # tasks opened at a time (their pairs read by id: SQLite's IN limit)


def _engine_for(domain: str, model: MatchModel, engine: MatchEngine | None) -> MatchEngine:
    if engine is not None:
        return engine
    from matching.engine.splink_engine import SplinkEngine

    return SplinkEngine(store=store_for(domain, model, _spec(domain), _trained(model)))


def match_pending(
    *, domain: str, engine: MatchEngine | None = None, limit: int = 5000
) -> MatchRun | None:
    """Match the records ingested or changed since the last run (their RecordChange markers).

    Each changed record is scored against the existing ones; above the upper threshold it
    joins (or merges) their golden records, in the review band a task is opened, below it
    founds a golden record of its own.  Steward constraints hold.  Returns None when there
    is nothing to do or no active model yet (the markers then wait for the first run).
    Safe to run twice and concurrently: markers are claimed under a lock and deleted in the
    same transaction as the result.
    """
    model = MatchModel.objects.filter(domain=domain, is_active=True).first()
    if model is None:
        return None
    started = time.perf_counter()
    with transaction.atomic():
        golden_domain_lock(domain)
        markers = list(
            RecordChange.objects.select_for_update(skip_locked=True)
            .filter(domain=domain)
            .order_by("id")
            .values_list("id", "record_id")[:limit]
        )
        if not markers:
            return None
        run = MatchRun.objects.create(domain=domain, kind=MatchRun.Kind.INCREMENTAL, model=model)
        ids = sorted({record_id for _, record_id in markers})
        spec, trained = _spec(domain), _trained(model)
        candidates = engine_records(domain, ids)
        pairs = _one_per_pair(
            _engine_for(domain, model, engine).score_candidates(
                spec, trained, candidates, threshold=model.lower_threshold, top=10
            )
        )
        current = dict(
            CrossReference.objects.filter(record_id__in=ids + [p.right for p in pairs]).values_list(
                "record_id", "golden_id"
            )
        )
        involved = {current[i] for i in ids if i in current}
        involved |= {
            current[p.right]
            for p in pairs
            if p.match_probability >= model.upper_threshold and p.right in current
        }
        members: dict[int, list[int]] = {}
        for rid, gid in CrossReference.objects.filter(golden_id__in=involved).values_list(
            "record_id", "golden_id"
        ):
            members.setdefault(gid, []).append(rid)
        candidate_ids = {c.id for c in candidates}
        edges = [Edge(p.left, p.right, p.match_probability) for p in pairs]
        for group in members.values():  # the others keep together what is together
            others = sorted(r for r in group if r not in candidate_ids)
            edges += [Edge(a, b, 1.0) for a, b in pairwise(others)]
        universe = candidate_ids | {r for g in members.values() for r in g}
        must, cannot = _constraints(domain)
        result = cluster(
            sorted(universe),
            edges,
            threshold=model.upper_threshold,
            must_link=[c for c in must if c[0] in universe and c[1] in universe],
            cannot_link=[c for c in cannot if c[0] in universe and c[1] in universe],
        )
        applied = golden_records_apply_clusters(
            domain=domain, clusters=result.clusters, reason=f"match run {run.pk}"
        )
        # A changed record that stayed where it was still changes its golden record.
        golden_records_rebuild(
            domain=domain,
            golden_ids=sorted(
                set(
                    CrossReference.objects.filter(record_id__in=sorted(candidate_ids)).values_list(
                        "golden_id", flat=True
                    )
                )
            ),
            reason=f"match run {run.pk}: source record changed",
        )
        deleted = set(ids) - candidate_ids
        if deleted:
            golden_records_rebuild(
                domain=domain,
                golden_ids=sorted({current[i] for i in deleted if i in current}),
                reason=f"match run {run.pk}: source record deleted",
            )
        _upsert_pairs(domain, model, pairs, candidate_ids | deleted)
        opened = _open_band_tasks(domain, model, pairs, set(must) | set(cannot))
        RecordChange.objects.filter(id__in=[m for m, _ in markers]).delete()
        run.counts = {
            "records": len(ids),
            "pairs": len(pairs),
            "golden_created": applied.created,
            "golden_changed": applied.changed,
            "golden_retired": applied.retired,
            "records_moved": applied.moved,
            "review_tasks_opened": opened,
        }
        run.status = MatchRun.Status.SUCCEEDED
        run.timings = {"total": round(time.perf_counter() - started, 3)}
        run.finished_at = timezone.now()
        run.save()
    return run


def _one_per_pair(pairs: list[ScoredPair]) -> list[ScoredPair]:
    """Each pair once: two changed records that match each other are each scored against the
    other, and a pair is stored once (left < right)."""
    seen: set[tuple[int, int]] = set()
    unique = []
    for pair in pairs:
        key = (min(pair.left, pair.right), max(pair.left, pair.right))
        if key not in seen:
            seen.add(key)
            unique.append(pair)
    return unique


def _upsert_pairs(
    domain: str, model: MatchModel, pairs: list[ScoredPair], records: set[int]
) -> None:
    MatchPair.objects.filter(domain=domain).filter(
        Q(left_id__in=records) | Q(right_id__in=records)
    ).delete()
    _insert_pairs(domain, model, pairs)


def _open_band_tasks(
    domain: str, model: MatchModel, pairs: list[ScoredPair], decided: set[tuple[int, int]]
) -> int:
    band = [
        p
        for p in pairs
        if model.lower_threshold <= p.match_probability < model.upper_threshold
        and (min(p.left, p.right), max(p.left, p.right)) not in decided
    ]
    if not band:
        return 0
    ids = {i for p in band for i in (p.left, p.right)}
    golden = dict(
        CrossReference.objects.filter(record_id__in=ids).values_list("record_id", "golden_id")
    )
    open_pairs = set(
        ReviewTask.objects.filter(domain=domain, status=ReviewTask.Status.OPEN).values_list(
            "left_record_id", "right_record_id"
        )
    )
    stored = {
        (left, right): pk
        for pk, left, right in MatchPair.objects.filter(domain=domain, left_id__in=ids).values_list(
            "id", "left_id", "right_id"
        )
    }
    new = []
    for p in band:
        key = (min(p.left, p.right), max(p.left, p.right))
        if golden.get(key[0]) == golden.get(key[1]) or key in open_pairs:
            continue
        open_pairs.add(key)
        new.append(
            ReviewTask(
                domain=domain,
                pair_id=stored.get(key),
                left_record_id=key[0],
                right_record_id=key[1],
                match_probability=p.match_probability,
                explanation=[asdict(c) for c in p.contributions],
            )
        )
    ReviewTask.objects.bulk_create(new)
    return len(new)


@dataclass(frozen=True)
class SearchMatch:
    golden_id: int | None
    record_id: int
    source: str
    source_key: str
    match_probability: float
    match_weight: float
    reasons: tuple[Contribution, ...]


class CandidateInvalidError(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("the candidate record is not valid")
        self.errors = errors


def match_search(
    *,
    domain: str,
    attributes: dict[str, Any],
    min_probability: float = 0.5,
    top: int = 10,
    engine: MatchEngine | None = None,
) -> tuple[dict[str, Any], list[SearchMatch]]:
    """Search before create: the golden records a candidate most likely is, best first.

    Stores nothing.  The candidate is normalised like an ingested record; invalid values
    raise CandidateInvalidError with the field errors.  One result per golden record (its
    best-scoring member), with the match weight of each comparison as the reasons.  Values
    are validated; completeness is not (searching by an e-mail alone is fine).
    """
    dom = get_domain(domain)
    normalised, errors = dom.normalise(attributes)
    # Completeness rules are for storing a record; a search may give only an e-mail.
    errors = [e for e in errors if e.code != "required"]
    if errors:
        raise CandidateInvalidError([e.as_dict() for e in errors])
    model = match_model_active(domain=domain)
    candidate = EngineRecord(id=-1, attributes=normalised)
    pairs = _engine_for(domain, model, engine).score_candidates(
        _spec(domain), _trained(model), [candidate], threshold=min_probability, top=top * 3
    )
    existing = [p.right for p in pairs]
    info = {
        pk: (golden, code, key)
        for pk, golden, code, key in SourceRecord.objects.filter(id__in=existing).values_list(
            "id", "xref__golden_id", "source_system__code", "source_key"
        )
    }
    best: dict[Any, SearchMatch] = {}
    for p in sorted(pairs, key=lambda p: -p.match_probability):
        golden, code, key = info.get(p.right, (None, "", ""))
        group = golden if golden is not None else ("record", p.right)
        if group in best:
            continue
        best[group] = SearchMatch(
            golden, p.right, code, key, p.match_probability, p.match_weight, p.contributions
        )
    return normalised, list(best.values())[:top]
