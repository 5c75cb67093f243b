"""Set-based writes with their simple-history rows: source records, change markers, and any
model with history (``rows_create_with_history``, ``rows_update_with_history``).

On PostgreSQL rows go in with COPY (ids taken from the table's sequence first) and updates
go through a temporary table (``UPDATE ... FROM``, the history rows written from the
updated rows in the same statement); elsewhere through django-simple-history's bulk
helpers.  Either way every written row has its history row: no write path bypasses history.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from django.db import connection, transaction
from django.db.models import Model
from simple_history.models import HistoricalRecords
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from mdm.history import history_user
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


# ``count`` ids from a table's sequence.  The sequence is looked up once (the subquery is an
# InitPlan): as ``nextval(pg_get_serial_sequence(...))`` the name was resolved, and the text
# cast to a relation, for every row, 9-13 ms per 1,000 ids instead of 0.4-0.9 ms.
NEXT_IDS_SQL = (
    "SELECT nextval((SELECT pg_get_serial_sequence(%s, %s)::regclass)) FROM generate_series(1, %s)"
)


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


def table_analyze(*models: type[Model], keys_only: bool = False) -> None:
    """Refresh the planner's statistics of these models' tables after a bulk write.

    Without them (a fresh table, or autovacuum off) PostgreSQL estimates a handful of rows
    and picks plans for that: on the records table ~8x slower key lookups, on the
    cross-reference a member load 130x slower.  ``keys_only`` leaves out the JSON columns:
    no query filters on them, and sampling (detoasting) large documents is most of the
    cost of an ANALYZE.  A no-op elsewhere.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model in models:
            columns = ""
            if keys_only:
                names = [
                    str(f.column)
                    for f in model._meta.concrete_fields
                    if f.get_internal_type() != "JSONField"
                ]
                columns = f" ({', '.join(names)})"
            cursor.execute(f"ANALYZE {model._meta.db_table}{columns}")


def records_analyze() -> None:
    """Refresh the planner's statistics of the records table (and the references written
    with the records) after a bulk write."""
    from mdm.models import SourceReference

    table_analyze(SourceRecord, SourceReference)


def _use_copy() -> bool:
    return connection.vendor == "postgresql"


def uses_copy() -> bool:
    """Whether rows go in with COPY (PostgreSQL): JSON values may then be anything orjson
    serialises (dataclasses included); elsewhere they must be plain JSON types."""
    return _use_copy()


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
        cursor.execute(NEXT_IDS_SQL, [table, "id", len(records)])
        ids = [row[0] for row in cursor.fetchall()]
    for record, pk in zip(records, ids, strict=True):
        record.pk = pk
    _copy_records([_record_row(r) for r in records], table)
    _history_from_table(ids, "+", history_date, reason, user)


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
    _copy_records([_record_row(r) for r in records], "_aurum_upd")
    sets = ", ".join(
        f"{col} = u.{col}"
        for col in RECORD_FIELDS
        if col not in ("source_system_id", "domain", "source_key")
    )
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} t SET {sets} FROM _aurum_upd u WHERE t.id = u.id")  # noqa: S608  # nosec B608
        cursor.execute("TRUNCATE _aurum_upd")
    _history_from_table([_pk(r) for r in records], "~", history_date, reason, user)


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


class RawJSON(str):
    """JSON text that COPY writes as it is (already serialised, e.g. by the match engine)."""

    __slots__ = ()


def _json(value: Any) -> str:
    if type(value) is RawJSON:
        return str.__str__(value)
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


def _pk(record: RecordRow) -> int:
    assert record.pk is not None, "an existing record has an id"
    return record.pk


def int_array(values: Iterable[int]) -> str:
    """Integers as one PostgreSQL array literal (``%s::bigint[]``): a single text value,
    where a list parameter is quoted element by element in Python."""
    return "{" + ",".join(map(str, map(int, values))) + "}"


@cache
def _history_insert_sql() -> str:
    # ``Model.history`` builds a new manager on every access (an inspect.getmembers walk).
    history_model: Any = SourceRecord.history.model
    columns = ("id", *RECORD_FIELDS)
    history_columns = (
        *columns,
        "history_date",
        "history_change_reason",
        "history_type",
        "history_user_id",
    )
    # One primary-key probe per id, whatever the statistics say: as a plain join, a batch
    # of 1,000 ids against statistics from when the table was small made PostgreSQL hash
    # the whole table on every request (the LIMIT keeps the subquery a per-id probe).
    # Table and column names come from the models, never from input.
    return (
        f"INSERT INTO {history_model._meta.db_table} ({', '.join(history_columns)}) "  # noqa: S608  # nosec B608
        f"SELECT {', '.join(f't.{c}' for c in columns)}, %s, %s, %s, %s "
        f"FROM unnest(%s::bigint[]) WITH ORDINALITY AS k(pk, n) CROSS JOIN LATERAL "
        f"(SELECT * FROM {SourceRecord._meta.db_table} WHERE id = k.pk LIMIT 1) AS t "
        f"ORDER BY k.n"
    )


def _history_from_table(
    ids: Sequence[int], kind: str, when: datetime, reason: str, user: Any
) -> None:
    """Write the history rows of the records ``ids`` from the rows just written, on the
    server: the records' JSON crosses the wire and gets parsed once, not twice.  The
    history ids follow the order of ``ids``."""
    with connection.cursor() as cursor:
        cursor.execute(
            _history_insert_sql(),
            [when, reason, kind, getattr(user, "pk", None), int_array(ids)],
        )


# --------------------------------------------------------------------------- any model

UPDATE_BATCH = 300  # the generic path: Django's bulk_update writes one CASE per field


def _field(model: type[Model], column: str) -> Any:
    return next(f for f in model._meta.concrete_fields if f.attname == column)


def _adapter(model: type[Model], column: str) -> Any:
    """How a Python value of ``column`` goes into COPY's text format (None: as it is).

    A JSON value goes through its field's ``get_prep_value`` first, as the ORM's writes do
    (a provenance is packed there, :mod:`mdm.provenance`); JSON text given is written as
    it is."""
    field = _field(model, column)
    if field.get_internal_type() == "JSONField":
        prep = field.get_prep_value
        return lambda value: _json(prep(value))
    return None


def _copy_rows(
    model: type[Model], table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    adapters = [(i, a) for i, c in enumerate(columns) if (a := _adapter(model, c)) is not None]
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.copy(sql) as copy,
    ):
        write = copy.write_row
        if not adapters:
            for row in rows:
                write(row)
            return
        for row in rows:
            values = list(row)
            for i, adapt in adapters:
                values[i] = adapt(values[i])
            write(values)


def rows_create(model: type[Model], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert rows (values of ``columns``, field attnames) of a model without history.

    Columns left out must have a database default or be nullable (COPY runs no ``pre_save``).
    """
    if not _use_copy():
        model._default_manager.bulk_create(
            (model(**dict(zip(columns, row, strict=True))) for row in rows), batch_size=2000
        )
        return
    _copy_rows(model, model._meta.db_table, columns, rows)


@cache
def _history_model(model: type[Model]) -> Any:
    # ``Model.history`` builds a new manager on every access (an inspect.getmembers walk).
    return model.history.model  # type: ignore[attr-defined]


def _tracked_columns(model: type[Model]) -> list[str]:
    return [f.attname for f in _history_model(model).tracked_fields]


def next_ids(model: type[Model], count: int) -> list[int]:
    """``count`` new primary keys of ``model`` from its table's sequence (PostgreSQL), in
    order: what ``rows_create_with_history`` would take for ``count`` rows."""
    return _next_ids(model, count)


def _next_ids(model: type[Model], count: int) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(NEXT_IDS_SQL, [model._meta.db_table, model._meta.pk.column, count])
        return [row[0] for row in cursor.fetchall()]


def _context_user() -> Any:
    """The user simple-history would record now (a steward command sets it for its writes)."""
    return history_user(request=getattr(HistoricalRecords.context, "request", None))


def rows_create_with_history(
    model: type[Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]] | Iterable[Sequence[Any]],
    *,
    history_date: datetime,
    reason: str,
    user: Any = None,
    count: int | None = None,
) -> list[Any]:
    """Insert ``rows`` (values of ``columns``, field attnames) with their '+' history rows.

    Returns the primary keys in the order of ``rows``: generated from the table's sequence
    when ``columns`` does not name the primary key.  Columns left out take their model
    default; ``auto_now``/``auto_now_add`` fields must be given (COPY runs no ``pre_save``).

    ``rows`` may be an iterator when ``count`` says how many it yields (and ``columns``
    does not name the primary key): on PostgreSQL the ids are then taken first and each
    row goes to COPY as it is produced, so the server stores rows while the caller is still
    computing the next ones.
    """
    user = user if user is not None else _context_user()
    pk = model._meta.pk
    assert pk is not None
    if count is not None and _use_copy() and pk.attname not in columns:
        if not count:
            for _ in rows:
                raise ValueError("0 rows announced, more given")
            return []
        return _rows_stream_with_history(
            model, columns, rows, count, history_date=history_date, reason=reason, user=user
        )
    if not isinstance(rows, Sequence):
        rows = list(rows)
    if count is not None and len(rows) != count:
        raise ValueError(f"{count} rows announced, {len(rows)} given")
    if not rows:
        return []
    if not _use_copy():
        objs = [model(**dict(zip(columns, row, strict=True))) for row in rows]
        bulk_create_with_history(
            objs,
            model,
            batch_size=500,
            default_user=user,
            default_change_reason=reason,
            default_date=history_date,
        )
        return [obj.pk for obj in objs]
    tracked = _tracked_columns(model)
    given = list(columns)
    if pk.attname in given:
        ids = [row[given.index(pk.attname)] for row in rows]
        full_rows: Sequence[Sequence[Any]] = rows
    else:
        ids = _next_ids(model, len(rows))
        given = [pk.attname, *given]
        full_rows = [(i, *row) for i, row in zip(ids, rows, strict=True)]
    missing = [c for c in tracked if c not in given]
    defaults = tuple(_default(model, c) for c in missing)
    all_columns = [*given, *missing]
    if defaults:
        full_rows = [(*row, *defaults) for row in full_rows]
    with transaction.atomic():
        _copy_rows(model, model._meta.db_table, all_columns, full_rows)
        if _history_by_values(model):
            _history_from_values(model, all_columns, full_rows, history_date, reason, user)
        else:
            _history_from_rows(model, ids, history_date, reason, user)
    return ids


@cache
def _history_by_values(model: type[Model]) -> bool:
    """Whether a model's '+' history rows are written from its rows' values, sent again as
    one array per column (small rows without JSON, such as cross-references): at a
    million links, reading the rows back by key took PostgreSQL twice as long. Rows with
    JSON documents (golden records) are copied on the server (:func:`_history_from_rows`):
    their JSON crosses the wire and is parsed once."""
    return not any(
        f.get_internal_type() == "JSONField" for f in _history_model(model).tracked_fields
    )


def _history_from_values(
    model: type[Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    history_date: datetime,
    reason: str,
    user: Any,
) -> None:
    """The '+' history rows of ``rows`` (values of ``columns``, every tracked column among
    them) just written, in the order of ``rows``: one ``INSERT ... SELECT FROM unnest`` of
    an array per column, or of one value where every row has the same (a full run's
    links share their ``linked_by`` and ``linked_at``)."""
    history = _history_model(model)
    tracked = _tracked_columns(model)
    by_column = dict(zip(columns, zip(*rows, strict=True), strict=True))
    selected: list[str] = []
    arrays: list[str] = []
    params: list[Any] = []
    array_params: list[Any] = []
    names: list[str] = []
    for n, column in enumerate(tracked):
        values = by_column[column]
        db_type = _field(history, column).db_type(connection)
        if len(set(values)) == 1:
            selected.append(f"%s::{db_type}")
            params.append(values[0])
            continue
        names.append(f"c{n}")
        selected.append(f"u.c{n}")
        arrays.append(f"%s::{db_type}[]")
        ints = db_type in ("bigint", "integer") and None not in values
        array_params.append(int_array(values) if ints else list(values))
    history_columns = [
        *tracked,
        "history_date",
        "history_change_reason",
        "history_type",
        "history_user_id",
    ]
    source = (
        f"FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS u({', '.join(names)}, n) ORDER BY u.n"
        if arrays
        else "FROM generate_series(1, %s)"
    )
    tail = array_params if arrays else [len(rows)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {history._meta.db_table} ({', '.join(history_columns)}) "  # nosec B608
            f"SELECT {', '.join(selected)}, %s, %s, '+', %s {source}",
            [*params, history_date, reason, getattr(user, "pk", None), *tail],
        )


def _rows_stream_with_history(
    model: type[Model],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    count: int,
    *,
    history_date: datetime,
    reason: str,
    user: Any,
) -> list[Any]:
    """``rows_create_with_history`` for an iterator of ``count`` rows, on PostgreSQL."""
    pk = model._meta.pk
    assert pk is not None
    tracked = _tracked_columns(model)
    missing = [c for c in tracked if c not in columns and c != pk.attname]
    defaults = tuple(_default(model, c) for c in missing)
    ids = _next_ids(model, count)

    def full_rows() -> Iterator[tuple[Any, ...]]:
        given = 0
        for row in rows:
            if given == count:
                raise ValueError(f"{count} rows announced, more given")
            yield (ids[given], *row, *defaults)
            given += 1
        if given != count:
            raise ValueError(f"{count} rows announced, {given} given")

    with transaction.atomic():
        # A wrong count raises inside COPY: the COPY and its savepoint are rolled back.
        _copy_rows(model, model._meta.db_table, [pk.attname, *columns, *missing], full_rows())
        _history_from_rows(model, ids, history_date, reason, user)
    return ids


def _history_from_rows(
    model: type[Model], ids: Sequence[Any], history_date: datetime, reason: str, user: Any
) -> None:
    """The '+' history rows of the rows ``ids`` just written, in the order of ``ids``.

    Copied from the rows on the server: the values (large JSON documents) cross the wire
    and get parsed once, not twice.  WITH ORDINALITY keeps the history ids in that order.
    """
    pk = model._meta.pk
    assert pk is not None
    tracked = _tracked_columns(model)
    history = _history_model(model)
    history_columns = [
        *tracked,
        "history_date",
        "history_change_reason",
        "history_type",
        "history_user_id",
    ]
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {history._meta.db_table} ({', '.join(history_columns)}) "  # noqa: S608  # nosec B608
            f"SELECT {', '.join(f't.{c}' for c in tracked)}, %s, %s, '+', %s "
            f"FROM unnest(%s::{pk.db_type(connection)}[]) WITH ORDINALITY AS k(pk, n) "
            f"JOIN {table} t ON t.{pk.column} = k.pk ORDER BY k.n",
            [history_date, reason, getattr(user, "pk", None), list(ids)],
        )


def _default(model: type[Model], column: str) -> Any:
    field = _field(model, column)
    if not field.has_default():
        if field.null:
            return None
        raise ValueError(f"{model.__name__}.{column} has no default: give it a value")
    return field.get_default()


def rows_update_with_history(
    model: type[Model],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    history_date: datetime,
    reason: str,
    user: Any = None,
) -> int:
    """Set ``columns[1:]`` of the rows whose primary key is ``columns[0]``, with a '~'
    history row each (a snapshot of the whole updated row).  Returns the rows updated."""
    user = user if user is not None else _context_user()
    if not rows:
        return 0
    pk = model._meta.pk
    assert pk is not None and columns[0] == pk.attname
    fields = list(columns[1:])
    if not _use_copy():
        values = {row[0]: row[1:] for row in rows}
        objs: list[Model] = []
        keys = list(values)
        for start in range(0, len(keys), 900):
            for obj in model._default_manager.filter(pk__in=keys[start : start + 900]):
                for name, value in zip(fields, values[obj.pk], strict=True):
                    setattr(obj, name, value)
                objs.append(obj)
        bulk_update_with_history(
            objs,
            model,
            [_field(model, f).name for f in fields],
            batch_size=UPDATE_BATCH,
            default_user=user,
            default_change_reason=reason,
            default_date=history_date,
        )
        return len(objs)
    table = model._meta.db_table
    temp = f"_aurum_upd_{table}"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS "  # noqa: S608  # nosec B608
            f"SELECT {', '.join(columns)} FROM {table} WITH NO DATA"
        )
        _copy_rows(model, temp, columns, rows)
        history = _history_model(model)
        tracked = _tracked_columns(model)
        sets = ", ".join(f"{c} = u.{c}" for c in fields)
        returning = ", ".join(f"t.{c}" for c in tracked)
        history_columns = [
            *tracked,
            "history_date",
            "history_change_reason",
            "history_type",
            "history_user_id",
        ]
        # Model and column names come from the models, never from input.
        cursor.execute(
            f"WITH changed AS (UPDATE {table} t SET {sets} FROM {temp} u "  # noqa: S608  # nosec B608
            f"WHERE t.{pk.column} = u.{pk.attname} RETURNING {returning}) "
            f"INSERT INTO {history._meta.db_table} ({', '.join(history_columns)}) "
            f"SELECT {', '.join(tracked)}, %s, %s, '~', %s FROM changed",
            [history_date, reason, getattr(user, "pk", None)],
        )
        updated = cursor.rowcount
        cursor.execute(f"DROP TABLE {temp}")
    return updated
