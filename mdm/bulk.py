"""Set-based writes of source records, their history rows and change markers.

On PostgreSQL rows go in with COPY (ids taken from the table's sequence first); elsewhere
through django-simple-history's bulk helpers.  Either way every written record has its
history row: no write path bypasses history.
"""

from __future__ import annotations

from collections.abc import Sequence
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
UPDATE_FIELDS = [
    "attributes",
    "raw",
    "content_hash",
    "version",
    "received_at",
    "source_updated_at",
    "is_deleted",
    "deleted_at",
    "ingest_run",
]


def _use_copy() -> bool:
    return connection.vendor == "postgresql"


def records_create(
    records: list[SourceRecord], *, history_date: datetime, reason: str, user: Any = None
) -> None:
    """Insert new records with their '+' history rows; sets ``pk`` on each record."""
    if not records:
        return
    if not _use_copy():
        bulk_create_with_history(
            records,
            SourceRecord,
            batch_size=500,
            default_user=user,
            default_change_reason=reason,
            default_date=history_date,
        )
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
    _copy_records(records, table, with_id=True)
    _copy_history(records, "+", history_date, reason, user)


def records_update(
    records: list[SourceRecord], *, history_date: datetime, reason: str, user: Any = None
) -> None:
    """Update changed records (all UPDATE_FIELDS) with their '~' history rows."""
    if not records:
        return
    if not _use_copy():
        bulk_update_with_history(
            records,
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
    _copy_records(records, "_aurum_upd", with_id=True)
    sets = ", ".join(
        f"{col} = u.{col}"
        for col in RECORD_FIELDS
        if col not in ("source_system_id", "domain", "source_key")
    )
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} t SET {sets} FROM _aurum_upd u WHERE t.id = u.id")  # noqa: S608
        cursor.execute("TRUNCATE _aurum_upd")
    _copy_history(records, "~", history_date, reason, user)


def changes_create(changes: Sequence[RecordChange]) -> None:
    if not changes:
        return
    if not _use_copy():
        RecordChange.objects.bulk_create(changes, batch_size=1000)
        return
    table = RecordChange._meta.db_table
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.copy(  # type: ignore[attr-defined]
            f"COPY {table} (record_id, domain, kind, created_at) FROM STDIN"
        ) as copy:
            for change in changes:
                copy.write_row((change.record_id, change.domain, change.kind, change.created_at))


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _record_row(record: SourceRecord) -> tuple[Any, ...]:
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


def _copy_records(records: Sequence[SourceRecord], table: str, *, with_id: bool) -> None:
    columns = ("id", *RECORD_FIELDS)
    # Build every row before COPY starts: a lazy field load during COPY would deadlock.
    rows = [_record_row(record) for record in records]
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.copy(  # type: ignore[attr-defined]
            f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)


def _copy_history(
    records: Sequence[SourceRecord], kind: str, when: datetime, reason: str, user: Any
) -> None:
    history_model: Any = SourceRecord.history.model  # type: ignore[attr-defined]
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
    rows = [(*_record_row(record), when, reason, kind, user_id) for record in records]
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.copy(  # type: ignore[attr-defined]
            f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)

