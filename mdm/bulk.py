"""Set-based writes of source records, their history rows and change markers.

On PostgreSQL rows go in with COPY (ids taken from the table's sequence first); elsewhere
through django-simple-history's bulk helpers.  Either way every written record has its
history row: no write path bypasses history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import connection
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from mdm.models import RecordChange, SourceRecord

RECORD_FIELDS = (
    "source_system_id",
    "domain",
    "source_key",
    "attributes",
    "raw",
    "content_hash",
    "version",
    "received_at",
    "source_updated_at",
    "is_deleted",
    "deleted_at",
    "ingest_run_id",
)
# What changes on an update: everything but the natural key (ingest_run_id by its field name).
UPDATE_FIELDS = [
    f.removesuffix("_id")
    for f in RECORD_FIELDS
    if f not in ("source_system_id", "domain", "source_key")
]


@dataclass(slots=True)
class RecordRow:
    """A source record on its way into the table: plain data, no model instance."""

    pk: int | None
    source_system_id: int
    domain: str
    source_key: str
    attributes: dict[str, Any]
    raw: dict[str, Any]
    content_hash: str
    version: int
    received_at: datetime
    source_updated_at: datetime | None
    is_deleted: bool
    deleted_at: datetime | None
    ingest_run_id: int | None

    def to_model(self) -> SourceRecord:
        return SourceRecord(
            pk=self.pk,
            source_system_id=self.source_system_id,
            domain=self.domain,
            source_key=self.source_key,
            attributes=self.attributes,
            raw=self.raw,
            content_hash=self.content_hash,
            version=self.version,
            received_at=self.received_at,
            source_updated_at=self.source_updated_at,
            is_deleted=self.is_deleted,
            deleted_at=self.deleted_at,
            ingest_run_id=self.ingest_run_id,
        )


def records_analyze() -> None:
    """Refresh the planner's statistics of the records table after a bulk write.

    Without them (a fresh table, or autovacuum off) PostgreSQL estimates a handful of rows
    and filters the whole source instead of probing the key index: ~8x slower lookups.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {SourceRecord._meta.db_table}")


def _use_copy() -> bool:
    return connection.vendor == "postgresql"


def records_create(
    records: list[RecordRow], *, history_date: datetime, reason: str, user: Any = None
) -> None:
    """Insert new records with their '+' history rows; sets ``pk`` on each record."""
    if not records:
        return
    if not _use_copy():
        models = [r.to_model() for r in records]
        bulk_create_with_history(
            models,
            SourceRecord,
            batch_size=500,
            default_user=user,
            default_change_reason=reason,
            default_date=history_date,
        )
        for row, model in zip(records, models, strict=True):
            row.pk = model.pk
        return
    table = SourceRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, len(records)],
        )
        ids = [row[0] for row in cursor.fetchall()]
    for record, pk in zip(records, ids, strict=True):
        record.pk = pk
    rows = [_record_row(r) for r in records]
    _copy_records(rows, table)
    _copy_history(rows, "+", history_date, reason, user)


def records_update(
    records: list[RecordRow], *, history_date: datetime, reason: str, user: Any = None
) -> None:
    """Update changed records (all UPDATE_FIELDS) with their '~' history rows."""
    if not records:
        return
    if not _use_copy():
        bulk_update_with_history(
            [r.to_model() for r in records],
            SourceRecord,
            UPDATE_FIELDS,
            batch_size=500,
            default_user=user,
            default_change_reason=reason,
            default_date=history_date,
        )
        return
    table = SourceRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS _aurum_upd (LIKE {table} INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE _aurum_upd")
    rows = [_record_row(r) for r in records]
    _copy_records(rows, "_aurum_upd")
    sets = ", ".join(
        f"{col} = u.{col}"
        for col in RECORD_FIELDS
        if col not in ("source_system_id", "domain", "source_key")
    )
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} t SET {sets} FROM _aurum_upd u WHERE t.id = u.id")  # noqa: S608
        cursor.execute("TRUNCATE _aurum_upd")
    _copy_history(rows, "~", history_date, reason, user)


def changes_create(changes: Sequence[tuple[int, str]], *, domain: str, when: datetime) -> None:
    """Write a ``RecordChange`` marker (record id, kind) for each changed record."""
    if not changes:
        return
    if not _use_copy():
        RecordChange.objects.bulk_create(
            [
                RecordChange(record_id=pk, domain=domain, kind=kind, created_at=when)
                for pk, kind in changes
            ],
            batch_size=1000,
        )
        return
    table = RecordChange._meta.db_table
    sql = f"COPY {table} (record_id, domain, kind, created_at) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.copy(sql) as copy,
    ):
        for pk, kind in changes:
            copy.write_row((pk, domain, kind, when))


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _record_row(record: RecordRow) -> tuple[Any, ...]:
    return (
        record.pk,
        record.source_system_id,
        record.domain,
        record.source_key,
        _json(record.attributes),
        _json(record.raw),
        record.content_hash,
        record.version,
        record.received_at,
        record.source_updated_at,
        record.is_deleted,
        record.deleted_at,
        record.ingest_run_id,
    )


def _copy_records(rows: Sequence[tuple[Any, ...]], table: str) -> None:
    columns = ("id", *RECORD_FIELDS)
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.copy(sql) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _copy_history(
    records: Sequence[tuple[Any, ...]], kind: str, when: datetime, reason: str, user: Any
) -> None:
    history_model: Any = SourceRecord.history.model
    table = history_model._meta.db_table
    columns = (
        "id",
        *RECORD_FIELDS,
        "history_date",
        "history_change_reason",
        "history_type",
        "history_user_id",
    )
    user_id = getattr(user, "pk", None)
    rows = [(*record, when, reason, kind, user_id) for record in records]
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.copy(sql) as copy,
    ):
        for row in rows:
            copy.write_row(row)
