"""Reads of the mdm app, already narrowed to what the caller may see."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, models
from django.db.models import QuerySet

from mdm.domains import get_domain
from mdm.mapping import CompiledMapping, compile_mapping, identity_mapping
from mdm.models import (
    CrossReference,
    GoldenRecord,
    IngestRun,
    QualityIssue,
    QualityRun,
    QualityScore,
    QuarantinedPayload,
    SourceMapping,
    SourceRecord,
    SourceSystem,
)
from mdm.provenance import unpack


class MappingNotFoundError(LookupError):
    pass


def mapping_for(
    *, source_system: SourceSystem, domain: str, name: str | None = None
) -> tuple[SourceMapping | None, CompiledMapping]:
    """The named mapping, else the default one, else the identity mapping."""
    get_domain(domain)  # raises for an unknown domain
    qs = SourceMapping.objects.filter(source_system=source_system, domain=domain)
    mapping = qs.filter(name=name).first() if name else qs.filter(is_default=True).first()
    if name and mapping is None:
        known = ", ".join(qs.values_list("name", flat=True)) or "none"
        raise MappingNotFoundError(
            f"source {source_system.code} has no mapping {name!r} for {domain} (known: {known})"
        )
    if mapping is None:
        return None, identity_mapping(domain)
    return mapping, compile_mapping(mapping.spec, domain=domain)


def source_records_visible(
    *, source_system: SourceSystem | None, domain: str | None = None
) -> QuerySet[SourceRecord]:
    """Records a caller may read: a source system sees only its own; staff see all."""
    qs = SourceRecord.objects.select_related("source_system")
    if source_system is not None:
        qs = qs.filter(source_system=source_system)
    if domain is not None:
        qs = qs.filter(domain=domain)
    return qs


def ingest_runs_visible(
    *, source_system: SourceSystem | None, domains: frozenset[str] | None = None
) -> QuerySet[IngestRun]:
    """Runs a caller may read: a source system's own; a user's in ``domains`` (None: all)."""
    qs = IngestRun.objects.select_related("source_system")
    if source_system is not None:
        qs = qs.filter(source_system=source_system)
    if domains is not None:
        qs = qs.filter(domain__in=sorted(domains))
    return qs


def quarantine_visible(
    *, source_system: SourceSystem | None, domains: frozenset[str] | None = None
) -> QuerySet[QuarantinedPayload]:
    """Quarantined payloads a caller may read: a source system's own; a user's in
    ``domains`` (None: all)."""
    qs = QuarantinedPayload.objects.select_related("source_system")
    if source_system is not None:
        qs = qs.filter(source_system=source_system)
    if domains is not None:
        qs = qs.filter(domain__in=sorted(domains))
    return qs


def golden_record_resolve(golden: GoldenRecord) -> GoldenRecord:
    """Follow retired golden records to the one that survives (bounded against loops)."""
    seen = {golden.pk}
    while golden.status == GoldenRecord.Status.RETIRED and golden.survivor_id:
        golden = GoldenRecord.objects.get(pk=golden.survivor_id)
        if golden.pk in seen:
            break
        seen.add(golden.pk)
    return golden


def golden_records_visible(*, domain: str) -> QuerySet[GoldenRecord]:
    return GoldenRecord.objects.filter(domain=domain)


def golden_record_for_source_key(
    *, domain: str, source_code: str, source_key: str
) -> GoldenRecord | None:
    """The (surviving) golden record a source system's key belongs to, if matched yet."""
    xref = (
        CrossReference.objects.select_related("golden")
        .filter(
            record__domain=domain,
            record__source_system__code=source_code,
            record__source_key=source_key,
        )
        .first()
    )
    return golden_record_resolve(xref.golden) if xref else None


# --- golden records through time -----------------------------------------------------------


@dataclass(frozen=True)
class GoldenMemberAsOf:
    record_id: int
    source: str
    source_key: str
    is_deleted: bool
    linked_by: str
    linked_at: datetime


@dataclass(frozen=True)
class GoldenRecordAsOf:
    """A golden record as it was at ``as_of``: its version, attributes and members then."""

    id: int
    domain: str
    status: str
    version: int
    attributes: dict[str, Any]
    provenance: dict[str, Any]
    survivor_id: int | None
    members: list[GoldenMemberAsOf]
    created_at: datetime
    updated_at: datetime
    as_of: datetime
    history_date: datetime


def golden_record_as_of(*, golden_id: int, when: datetime) -> GoldenRecordAsOf | None:
    """The golden record as it was at ``when`` (its last version then, and the members its
    cross-reference had then), or None when it did not exist yet."""
    row = (
        GoldenRecord.history.filter(id=golden_id, history_date__lte=when)
        .order_by("-history_date", "-history_id")
        .first()
    )
    if row is None or row.history_type == "-":
        return None
    xref_history: Any = CrossReference.history.model
    ever = sorted(
        set(xref_history.objects.filter(golden_id=golden_id).values_list("record_id", flat=True))
    )
    links: dict[int, Any] = {}
    for start in range(0, len(ever), 900):
        qs = xref_history.objects.filter(
            record_id__in=ever[start : start + 900], history_date__lte=when
        ).order_by("history_date", "history_id")
        for link in qs:
            links[link.record_id] = link
    member_ids = sorted(
        rid
        for rid, link in links.items()
        if link.golden_id == golden_id and link.history_type != "-"
    )
    record_history: Any = SourceRecord.history.model
    deleted: dict[int, bool] = {}
    for start in range(0, len(member_ids), 900):
        qs = record_history.objects.filter(
            id__in=member_ids[start : start + 900], history_date__lte=when
        ).order_by("history_date", "history_id")
        for version in qs.values_list("id", "is_deleted"):
            deleted[version[0]] = version[1]
    names = {
        pk: (code, key)
        for pk, code, key in SourceRecord.objects.filter(pk__in=member_ids).values_list(
            "pk", "source_system__code", "source_key"
        )
    }
    return GoldenRecordAsOf(
        id=golden_id,
        domain=row.domain,
        status=row.status,
        version=row.version,
        attributes=row.attributes,
        provenance=row.provenance,
        survivor_id=row.survivor_id,
        members=[
            GoldenMemberAsOf(
                record_id=rid,
                source=names.get(rid, ("", ""))[0],
                source_key=names.get(rid, ("", ""))[1],
                is_deleted=deleted.get(rid, False),
                linked_by=links[rid].linked_by,
                linked_at=links[rid].linked_at,
            )
            for rid in member_ids
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
        as_of=when,
        history_date=row.history_date,
    )


@dataclass(frozen=True)
class TimelineEntry:
    """One version of a golden record (or a change of its members): what, why and who."""

    version: int
    at: datetime
    kind: str  # created, ingest, match, merge, split, undo, correction, rule change, rebuild
    reason: str
    user: str | None
    status: str
    survivor_id: int | None
    changes: dict[str, dict[str, Any]]
    members_added: list[int]
    members_removed: list[int]
    operation_id: int | None


_OPERATION = re.compile(r"^(merge|split|undo|correct) #(\d+)")


def _kind_of(reason: str) -> tuple[str, int | None]:
    found = _OPERATION.match(reason)
    if found:
        kind = found.group(1)
        return ("correction" if kind == "correct" else kind), int(found.group(2))
    text = reason.lower()
    if "source record" in text or text.startswith("ingest"):
        return "ingest", None
    if text.startswith("match"):
        return "match", None
    if "rule" in text:
        return "rule change", None
    return (text.split(":", 1)[0].strip() or "change"), None


def golden_record_timeline(*, golden_id: int) -> list[TimelineEntry]:
    """Every version of a golden record, newest first: the attributes that changed (from,
    to), the members that joined or left, the kind of change (ingest, match, merge, split,
    undo, correction, rule change), its reason, operation and user."""
    rows = list(
        GoldenRecord.history.filter(id=golden_id)
        .select_related("history_user")
        .order_by("history_date", "history_id")
    )
    if not rows:
        return []
    xref_history: Any = CrossReference.history.model
    ever = sorted(
        set(xref_history.objects.filter(golden_id=golden_id).values_list("record_id", flat=True))
    )
    joined: dict[datetime, list[int]] = defaultdict(list)
    left: dict[datetime, list[int]] = defaultdict(list)
    moves: dict[datetime, tuple[str, str | None]] = {}
    for start in range(0, len(ever), 900):
        previous: dict[int, int | None] = {}
        qs = (
            xref_history.objects.filter(record_id__in=ever[start : start + 900])
            .select_related("history_user")
            .order_by("history_date", "history_id")
        )
        for link in qs:
            now_in = link.golden_id if link.history_type != "-" else None
            was_in = previous.get(link.record_id)
            previous[link.record_id] = now_in
            if was_in == now_in:
                continue
            if now_in == golden_id:
                joined[link.history_date].append(link.record_id)
            elif was_in == golden_id:
                left[link.history_date].append(link.record_id)
            else:
                continue
            user = link.history_user.get_username() if link.history_user else None
            moves.setdefault(link.history_date, (link.history_change_reason or "", user))
    entries: list[TimelineEntry] = []
    last: Any = None
    dates = sorted({r.history_date for r in rows} | set(joined) | set(left))
    by_date: dict[datetime, list[Any]] = defaultdict(list)
    for r in rows:
        by_date[r.history_date].append(r)
    for date in dates:
        versions = by_date.get(date) or [None]
        for index, row in enumerate(versions):
            current = row or last
            changes: dict[str, dict[str, Any]] = {}
            if row is not None:
                old = last.attributes if last is not None else {}
                for name in sorted(set(old) | set(row.attributes)):
                    if old.get(name) != row.attributes.get(name):
                        changes[name] = {"from": old.get(name), "to": row.attributes.get(name)}
                reason = row.history_change_reason or ""
                user = row.history_user.get_username() if row.history_user else None
            else:
                reason, user = moves.get(date, ("", None))
            kind, operation = _kind_of(reason)
            if row is not None and row.history_type == "+":
                kind = "created" if operation is None else kind
            closing = index == len(versions) - 1  # members go with the last row of the instant
            entries.append(
                TimelineEntry(
                    version=current.version if current is not None else 0,
                    at=date,
                    kind=kind,
                    reason=reason,
                    user=user,
                    status=current.status if current is not None else "",
                    survivor_id=current.survivor_id if current is not None else None,
                    changes=changes,
                    members_added=sorted(joined.get(date, [])) if closing else [],
                    members_removed=sorted(left.get(date, [])) if closing else [],
                    operation_id=operation,
                )
            )
            if row is not None:
                last = row
    entries.reverse()
    return entries


def live_record_rows(
    *,
    domain: str,
    columns: Sequence[str],
    ids: Sequence[int] | None = None,
    exclude_sources: Sequence[str] = (),
) -> Iterator[tuple[Any, ...]]:
    """Values of ``columns`` (field attnames) of the domain's live source records, all of
    them or those of ``ids``, without those of the source systems ``exclude_sources``, in
    no particular order.  For bulk reads (a full match): on PostgreSQL the rows stream from
    a server-side cursor and JSON is decoded by orjson, a few times faster than the ORM's
    ``json.loads`` per value."""
    excluded = (
        list(SourceSystem.objects.filter(code__in=exclude_sources).values_list("id", flat=True))
        if exclude_sources
        else []
    )
    if connection.vendor != "postgresql":
        qs = SourceRecord.objects.filter(domain=domain, is_deleted=False).exclude(
            source_system_id__in=excluded
        )
        if ids is None:
            yield from qs.values_list(*columns).iterator(5000)
            return
        for start in range(0, len(ids), 900):
            yield from qs.filter(id__in=ids[start : start + 900]).values_list(*columns)
        return
    fields: dict[str, Any] = {f.attname: f for f in SourceRecord._meta.concrete_fields}
    json_at = [i for i, c in enumerate(columns) if fields[c].get_internal_type() == "JSONField"]
    sql = (
        f"SELECT {', '.join(fields[c].column for c in columns)} "  # noqa: S608  # nosec B608
        f"FROM {SourceRecord._meta.db_table} WHERE domain = %s AND NOT is_deleted"
    )
    params: list[Any] = [domain]
    if ids is not None:
        sql += " AND id = ANY(%s)"
        params.append(list(ids))
    if excluded:
        sql += " AND NOT (source_system_id = ANY(%s))"
        params.append(excluded)
    loads = orjson.loads
    with connection.chunked_cursor() as cursor:
        if settings.USE_TZ and connection.timezone_name == "UTC":
            # psycopg's own (C) loader: the session is in UTC, so it reads the same aware
            # datetimes as Django's Python subclass of it, ten times faster.
            from psycopg.types.datetime import TimestamptzLoader

            cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(5000):
            if not json_at:
                yield from rows
                continue
            for row in rows:
                values = list(row)
                for i in json_at:
                    if values[i] is not None:
                        values[i] = loads(values[i])
                yield tuple(values)


# --- data quality ---------------------------------------------------------------------

QUALITY_DIMENSIONS = ("completeness", "validity", "uniqueness", "consistency", "freshness")


def quality_latest_runs() -> dict[str, int]:
    """The latest whole-domain quality run of each domain: domain -> run id."""
    rows = (
        QualityRun.objects.exclude(trigger=QualityRun.Trigger.INGEST)
        .filter(finished_at__isnull=False)
        .values("domain")
        .annotate(latest=models.Max("id"))
        .order_by()
    )
    return {row["domain"]: row["latest"] for row in rows}


def quality_dimension_scores(
    *, domain: str | None = None, source_code: str | None = None
) -> dict[str, dict[str, float]]:
    """domain -> dimension -> share of checks passed (0-1), from the latest whole-domain run.

    A dimension's score pools its rules: 1 - failed / checked over all of them."""
    runs = quality_latest_runs()
    if domain is not None:
        runs = {domain: runs[domain]} if domain in runs else {}
    scores = QualityScore.objects.filter(run_id__in=runs.values())
    if source_code:
        scores = scores.filter(source_system__code=source_code)
    rows = (
        scores.values("domain", "dimension")
        .annotate(checked=models.Sum("checked"), failed=models.Sum("failed"))
        .order_by("domain", "dimension")
    )
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        if row["checked"]:
            out[row["domain"]][row["dimension"]] = 1 - row["failed"] / row["checked"]
    return dict(out)


@dataclass(frozen=True)
class QualityFigure:
    """A score line: what was checked (a dimension, attribute or source) and how it fared."""

    label: str
    checked: int
    failed: int

    @property
    def score(self) -> float:
        return 1 - self.failed / self.checked if self.checked else 1.0

    @property
    def percent(self) -> str:
        return f"{self.score * 100:.1f}%"


@dataclass(frozen=True)
class QualityOverview:
    run: QualityRun | None
    dimensions: list[QualityFigure]
    worst_attributes: list[QualityFigure]
    worst_sources: list[QualityFigure]
    rules: list[QualityFigure]
    trend: list[tuple[datetime, dict[str, float]]]


def _figures(scores: QuerySet[QualityScore], key: str) -> list[QualityFigure]:
    rows = (
        scores.values(key)
        .annotate(checked=models.Sum("checked"), failed=models.Sum("failed"))
        .order_by(key)
    )
    return [
        QualityFigure(str(row[key] or "(record)"), row["checked"], row["failed"]) for row in rows
    ]


def quality_overview(
    *, domain: str, source_code: str | None = None, trend_runs: int = 30
) -> QualityOverview:
    """The data-quality page's figures for a domain (optionally one source system): scores per
    dimension, attribute, source and rule of the latest whole-domain run, worst first where
    it matters, and the dimension scores of the last ``trend_runs`` runs, oldest first."""
    runs = list(
        QualityRun.objects.filter(domain=domain, finished_at__isnull=False)
        .exclude(trigger=QualityRun.Trigger.INGEST)
        .order_by("-id")[:trend_runs]
    )
    scores = QualityScore.objects.filter(domain=domain)
    if source_code:
        scores = scores.filter(source_system__code=source_code)
    latest = scores.filter(run=runs[0]) if runs else scores.none()
    dims = {figure.label: figure for figure in _figures(latest, "dimension")}
    dimensions = [dims.get(d, QualityFigure(d, 0, 0)) for d in QUALITY_DIMENSIONS]

    def worst(figures: list[QualityFigure]) -> list[QualityFigure]:
        return sorted(figures, key=lambda f: (f.score, -f.failed, f.label))[:8]

    attribute_rows = (
        latest.values("attribute", "dimension")
        .annotate(checked=models.Sum("checked"), failed=models.Sum("failed"))
        .order_by()
    )
    attributes = [
        QualityFigure(
            f"{row['attribute'] or 'record'} · {row['dimension']}", row["checked"], row["failed"]
        )
        for row in attribute_rows
    ]
    trend_rows = (
        scores.filter(run__in=runs)
        .values("run_id", "measured_at", "dimension")
        .annotate(checked=models.Sum("checked"), failed=models.Sum("failed"))
        .order_by("run_id")
    )
    trend: dict[int, tuple[datetime, dict[str, float]]] = {}
    for row in trend_rows:
        point = trend.setdefault(row["run_id"], (row["measured_at"], {}))
        if row["checked"]:
            point[1][row["dimension"]] = 1 - row["failed"] / row["checked"]
    return QualityOverview(
        run=runs[0] if runs else None,
        dimensions=dimensions,
        worst_attributes=worst(attributes),
        worst_sources=worst(_figures(latest, "source_system__code")),
        rules=worst(_figures(latest, "rule__name")),
        trend=[trend[k] for k in sorted(trend)],
    )


def quality_issues_open(
    *,
    domain: str,
    source_code: str | None = None,
    rule_name: str | None = None,
    attribute: str | None = None,
) -> QuerySet[QualityIssue]:
    """The records failing the domain's rules now, newest first, filtered as asked."""
    issues = QualityIssue.objects.filter(domain=domain, resolved_at__isnull=True)
    if source_code:
        issues = issues.filter(source_system__code=source_code)
    if rule_name:
        issues = issues.filter(rule__name=rule_name)
    if attribute:
        issues = issues.filter(rule__attribute=attribute)
    return issues.select_related("rule", "record", "source_system").order_by(
        "-first_seen_at", "-id"
    )


GOLDEN_READ_FIELDS = ("id", "domain", "status", "version", "attributes", "provenance")
MEMBER_READ_FIELDS = ("record_id", "source", "source_key", "is_deleted", "linked_by", "linked_at")


@lru_cache(maxsize=1)
def _golden_read_sql() -> str:
    """The golden record and its members in one statement (portable SQL, built once: the ORM
    spent longer compiling this query than the database spent answering it)."""
    golden, xref = GoldenRecord._meta.db_table, CrossReference._meta.db_table
    record, system = SourceRecord._meta.db_table, SourceSystem._meta.db_table
    return (
        "SELECT g.id, g.domain, g.status, g.version, g.attributes, g.provenance,"  # noqa: S608  # nosec B608
        " g.survivor_id, g.created_at, g.updated_at,"
        " x.record_id, s.code, r.source_key, r.is_deleted, x.linked_by, x.linked_at"
        f" FROM {golden} g LEFT JOIN {xref} x ON x.golden_id = g.id"
        f" LEFT JOIN {record} r ON r.id = x.record_id"
        f" LEFT JOIN {system} s ON s.id = r.source_system_id"
        " WHERE g.id = %s AND g.domain = %s ORDER BY x.record_id"
    )


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _aware(value: Any) -> datetime | None:
    """A timestamp as the ORM gives it (SQLite hands raw SQL text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def golden_record_read(*, domain: str, pk: int) -> dict[str, Any] | None:
    """The golden record ``pk`` of ``domain`` as the API shows it, or None.

    A retired id answers with its survivor (and ``retired_id``). One query per record read:
    the golden record's columns and its members' (source system code, key, deleted flag,
    link) joined, ordered by record id; no source record payloads are read. The hot path of
    ``GET /api/v1/<domain>/golden/<id>``.
    """
    requested = pk
    seen: set[int] = set()
    # PostgreSQL plans the join for longer than it runs it: prepared once per connection
    # (config/postgresql/base.py); other databases take a plain cursor.
    cursor_of = getattr(connection, "prepared_cursor", connection.cursor)
    while True:
        with cursor_of() as cursor:
            cursor.execute(_golden_read_sql(), [pk, domain])
            rows = cursor.fetchall()
        if not rows:
            return None
        first = rows[0]
        survivor = first[6]
        if first[2] == GoldenRecord.Status.RETIRED and survivor and survivor not in seen:
            seen.add(pk)
            pk = survivor
            continue
        break
    golden: dict[str, Any] = dict(zip(GOLDEN_READ_FIELDS, first[:6], strict=True))
    golden["attributes"], golden["provenance"] = _json(first[4]), unpack(_json(first[5]))
    golden["members"] = [
        {
            "record_id": row[9],
            "source": row[10],
            "source_key": row[11],
            "is_deleted": bool(row[12]),
            "linked_by": row[13],
            "linked_at": _aware(row[14]),
        }
        for row in rows
        if row[9] is not None
    ]
    golden["created_at"], golden["updated_at"] = _aware(first[7]), _aware(first[8])
    if pk != requested:
        golden["retired_id"] = requested
    return golden


@dataclass(frozen=True)
class BrokenLink:
    record_id: int
    golden_id: int
    record_missing: bool
    golden_missing: bool


@dataclass(frozen=True)
class IntegrityReport:
    """What ``cross_reference_integrity`` found: links checked, broken ones by kind, and the
    first few broken links (by record id)."""

    links: int
    record_missing: int
    golden_missing: int
    examples: list[BrokenLink]

    @property
    def ok(self) -> bool:
        return not (self.record_missing or self.golden_missing)


def cross_reference_integrity(*, show: int = 20) -> IntegrityReport:
    """Cross-references whose source record or golden record does not exist.

    The database does not check these links row by row (``CrossReference``): its triggers
    refuse such a write or delete on PostgreSQL, and this finds what they cannot see (a
    ``TRUNCATE``, SQLite, a trigger disabled).  Set-based: two anti-joins over the whole
    cross-reference, whatever its size; reads only.
    """
    record_gone = ~models.Exists(SourceRecord.objects.filter(pk=models.OuterRef("record_id")))
    golden_gone = ~models.Exists(GoldenRecord.objects.filter(pk=models.OuterRef("golden_id")))
    links = CrossReference.objects.order_by()
    broken = links.annotate(record_gone=record_gone, golden_gone=golden_gone).filter(
        models.Q(record_gone=True) | models.Q(golden_gone=True)
    )
    return IntegrityReport(
        links=links.count(),
        record_missing=links.filter(record_gone).count(),
        golden_missing=links.filter(golden_gone).count(),
        examples=[
            BrokenLink(rid, gid, bool(no_record), bool(no_golden))
            for rid, gid, no_record, no_golden in broken.order_by("record_id").values_list(
                "record_id", "golden_id", "record_gone", "golden_gone"
            )[:show]
        ],
    )
