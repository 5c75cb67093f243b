"""Reads of the mdm app, already narrowed to what the caller may see."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from django.db import connection
from django.db.models import QuerySet

from mdm.domains import get_domain
from mdm.mapping import CompiledMapping, compile_mapping, identity_mapping
from mdm.models import (
    CrossReference,
    GoldenRecord,
    IngestRun,
    QuarantinedPayload,
    SourceMapping,
    SourceRecord,
    SourceSystem,
)


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


def ingest_runs_visible(*, source_system: SourceSystem | None) -> QuerySet[IngestRun]:
    qs = IngestRun.objects.select_related("source_system")
    if source_system is not None:
        qs = qs.filter(source_system=source_system)
    return qs


def quarantine_visible(*, source_system: SourceSystem | None) -> QuerySet[QuarantinedPayload]:
    qs = QuarantinedPayload.objects.select_related("source_system")
    if source_system is not None:
        qs = qs.filter(source_system=source_system)
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


def live_record_rows(
    *, domain: str, columns: Sequence[str], ids: Sequence[int] | None = None
) -> Iterator[tuple[Any, ...]]:
    """Values of ``columns`` (field attnames) of the domain's live source records, all of
    them or those of ``ids``, in no particular order.  For bulk reads (a full match):
    on PostgreSQL the rows stream from a server-side cursor and JSON is decoded by orjson,
    a few times faster than the ORM's ``json.loads`` per value."""
    if connection.vendor != "postgresql":
        qs = SourceRecord.objects.filter(domain=domain, is_deleted=False)
        if ids is None:
            yield from qs.values_list(*columns).iterator(5000)
            return
        for start in range(0, len(ids), 900):
            yield from qs.filter(id__in=ids[start : start + 900]).values_list(*columns)
        return
    fields: dict[str, Any] = {f.attname: f for f in SourceRecord._meta.concrete_fields}
    json_at = [i for i, c in enumerate(columns) if fields[c].get_internal_type() == "JSONField"]
    sql = (
        f"SELECT {', '.join(fields[c].column for c in columns)} "  # noqa: S608
        f"FROM {SourceRecord._meta.db_table} WHERE domain = %s AND NOT is_deleted"
    )
    params: list[Any] = [domain]
    if ids is not None:
        sql += " AND id = ANY(%s)"
        params.append(list(ids))
    loads = orjson.loads
    with connection.chunked_cursor() as cursor:
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
