"""On PostgreSQL golden records are written with COPY and UPDATE ... FROM: the same rows and
history rows as the generic Django path writes."""

from __future__ import annotations

import logging
import multiprocessing
from datetime import datetime
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mdm import bulk, forking
from mdm.models import CrossReference, GoldenRecord, SourceRecord
from mdm.services import golden
from mdm.services.golden import golden_records_apply_clusters, golden_records_rebuild
from sync.models import ChangeEvent

URL = "/api/v1/customer/records"
PEOPLE = [
    {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "email": "ann@example.com"},
    {"source_key": "B", "given_name": "Anne", "family_name": "Lee", "phone": "+442079460958"},
    {"source_key": "C", "given_name": "Bob", "family_name": "Ray"},
    {"source_key": "D", "given_name": "Bobby", "family_name": "Ray"},
    {"source_key": "E", "given_name": "Cy", "family_name": "Day"},
    {"source_key": "F", "given_name": "Di", "family_name": "Fox", "email": "di@example.com"},
]
# First run, a merge, a split, a merge into a new cluster, a rerun (no-op), and an
# incremental run that lists only some records.
STEPS = [["AB", "CD", "E", "F"], ["ABE", "CD", "F"], ["AB", "C", "DE", "F"], ["AB", "CDEF"]]
STEPS += [["AB", "CDEF"], ["AF"]]


def _run_scenario(records: dict[str, int]) -> list[tuple[datetime, datetime]]:
    """Apply every step, then a rebuild after a member changes; the time window of each."""
    windows = []
    for groups in STEPS:
        started = timezone.now()
        clusters = {records[k]: i for i, group in enumerate(groups) for k in group}
        golden_records_apply_clusters(domain="customer", clusters=clusters, reason="run")
        windows.append((started, timezone.now()))
    b = SourceRecord.objects.filter(pk=records["B"])
    original = b.get().attributes
    b.update(attributes={"given_name": "Annie", "family_name": "Lee"})
    started = timezone.now()
    ids = sorted(GoldenRecord.objects.values_list("id", flat=True))
    golden_records_rebuild(domain="customer", golden_ids=ids, reason="rebuild")
    windows.append((started, timezone.now()))
    b.update(attributes=original)
    return windows


def _snapshot(windows: list[tuple[datetime, datetime]]) -> dict[str, list[dict[str, Any]]]:
    """Every golden and cross-reference row and history row, with golden ids replaced by
    their creation rank and times by the step that wrote them."""
    rank = {
        gid: i for i, gid in enumerate(sorted(GoldenRecord.objects.values_list("id", flat=True)))
    }

    def norm(name: str, value: Any) -> Any:
        if name in ("id", "golden_id", "survivor_id") and value is not None:
            return ("golden", rank[value])
        if isinstance(value, datetime):
            step = [i for i, (a, b) in enumerate(windows) if a <= value <= b]
            assert len(step) == 1, f"{name} {value} written outside any step"
            return ("step", step[0])
        return value

    def rows(model: Any, order: str) -> list[dict[str, Any]]:
        fields = [f.attname for f in model._meta.concrete_fields if f.attname != "history_id"]
        return [
            {f: norm(f, getattr(obj, f)) for f in fields}
            for obj in model._default_manager.order_by(order)
        ]

    return {
        "golden": rows(GoldenRecord, "id"),
        "golden history": rows(GoldenRecord.history.model, "history_id"),
        "xref": rows(CrossReference, "record_id"),
        "xref history": rows(CrossReference.history.model, "history_id"),
    }


def _wipe() -> None:
    CrossReference.objects.all().delete()
    GoldenRecord.objects.update(survivor=None)
    GoldenRecord.objects.all().delete()
    CrossReference.history.all().delete()  # after the deletes: they write "-" rows
    GoldenRecord.history.all().delete()


@pytest.mark.parametrize("domain_reads", [False, True], ids=["by-id reads", "domain reads"])
def test_copy_path_writes_what_the_orm_path_writes(
    require_postgres, api, monkeypatch, domain_reads
):
    api.post(URL, {"records": PEOPLE}, format="json")
    records = dict(SourceRecord.objects.values_list("source_key", "id"))
    if domain_reads:  # the reads a full run of a large domain takes
        monkeypatch.setattr(golden, "DOMAIN_READ_AT", 0)
    assert bulk.uses_copy()

    with monkeypatch.context() as patch:
        patch.setattr(bulk, "_use_copy", lambda: False)
        assert not bulk.uses_copy()
        orm = _snapshot(_run_scenario(records))
    _wipe()
    copied = _snapshot(_run_scenario(records))

    assert copied == orm
    # The scenario did exercise every kind of write.
    kinds = {(h["history_type"], h["history_change_reason"]) for h in copied["golden history"]}
    assert kinds == {("+", "run: new"), ("~", "run"), ("~", "run: merged"), ("~", "rebuild")}
    assert {h["history_type"] for h in copied["xref history"]} == {"+", "~"}
    assert any(g["survivor_id"] is not None for g in copied["golden"])
    assert max(g["version"] for g in copied["golden"]) > 2


@pytest.mark.parametrize(("analyze_at", "analyzed"), [(1, True), (10_000, False)])
def test_a_big_apply_refreshes_the_planner_statistics(
    require_postgres, api, monkeypatch, analyze_at, analyzed
):
    api.post(URL, {"records": PEOPLE}, format="json")
    records = dict(SourceRecord.objects.values_list("source_key", "id"))
    monkeypatch.setattr(golden, "ANALYZE_AT", analyze_at)

    with CaptureQueriesContext(connection) as queries:
        golden_records_apply_clusters(
            domain="customer", clusters={records[k]: k for k in "ABCDEF"}, reason="run"
        )

    statements = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("ANALYZE")]
    tables = [GoldenRecord._meta.db_table, CrossReference._meta.db_table]
    assert [s.split(" (")[0] for s in statements] == (
        [f"ANALYZE {t}" for t in tables] if analyzed else []
    )
    if analyzed:  # the key columns only: sampling the JSON documents is most of the cost
        assert "(id, domain, status, " in statements[0]
        assert "attributes" not in statements[0] and "provenance" not in statements[0]
    assert CrossReference.objects.count() == 6


COLUMNS = ("domain", "status", "attributes", "provenance", "version", "created_at", "updated_at")


def _golden_rows(now: datetime, names: list[str]) -> Any:
    for name in names:  # a generator: what a full match run streams
        yield ("customer", "active", {"given_name": name}, {}, 1, now, now)


def test_a_streamed_insert_writes_rows_history_and_events_in_order(db):
    now = timezone.now()

    ids = bulk.rows_create_with_history(
        GoldenRecord,
        COLUMNS,
        _golden_rows(now, ["Ann", "Bob", "Cy"]),
        history_date=now,
        reason="run: new",
        count=3,
    )

    assert ids == sorted(ids)
    names = dict(GoldenRecord.objects.values_list("id", "attributes__given_name"))
    assert [names[i] for i in ids] == ["Ann", "Bob", "Cy"]
    history = list(GoldenRecord.history.order_by("history_id").values_list("id", "history_type"))
    assert history == [(i, "+") for i in ids]
    events = list(ChangeEvent.objects.order_by("id").values_list("golden_id", "kind"))
    assert events == [(i, "created") for i in ids]


@pytest.mark.parametrize("given", [1, 3])
def test_a_streamed_insert_of_another_count_than_announced_writes_nothing(db, given):
    now = timezone.now()
    names = ["Ann", "Bob", "Cy"][:given]

    with pytest.raises(ValueError, match="rows"), transaction.atomic():
        bulk.rows_create_with_history(
            GoldenRecord,
            COLUMNS,
            _golden_rows(now, names),
            history_date=now,
            reason="run",
            count=2,
        )

    assert not GoldenRecord.objects.exists()
    assert not GoldenRecord.history.exists()
    assert not ChangeEvent.objects.exists()


# 45 records in 15 clusters of 3 whose members disagree (new golden records over several
# chunks), then merged two by two.
MANY = [
    {
        "source_key": f"K{i:02}",
        "given_name": ["Ann", "Anne", "Annie"][i % 3] + f" {i // 3}",
        "family_name": "Lee" if i % 3 else "Leigh",
        **({"email": f"p{i // 3}.{i % 3}@example.com"} if i % 2 else {}),
        **({"phone": "+442079460958"} if i % 5 == 0 else {}),
    }
    for i in range(45)
]


def _apply_many(records: dict[str, int], *, aside: bool) -> list[tuple[datetime, datetime]]:
    windows = []
    for size in (3, 6):
        started = timezone.now()
        golden_records_apply_clusters(
            domain="customer",
            clusters={records[f"K{i:02}"]: i // size for i in range(45)},
            reason="run",
            members_committed=aside,
        )
        windows.append((started, timezone.now()))
    return windows


def _events() -> list[tuple[Any, ...]]:
    rank = {
        gid: i
        for i, gid in enumerate(
            sorted(GoldenRecord.history.values_list("id", flat=True).distinct())
        )
    }
    return [
        (rank[golden_id], version, kind, reason)
        for golden_id, version, kind, reason in ChangeEvent.objects.order_by("id").values_list(
            "golden_id", "version", "kind", "reason"
        )
    ]


def _chunks_aside(caplog: pytest.LogCaptureFixture, kind: str = "process") -> list[bool]:
    """Whether each chunk read aside (by a reader of ``kind``) was survived there (True) or
    left to the caller, as the apply logs it (the reader is another process: nothing in it
    can be spied on from here)."""
    return [
        r.getMessage().endswith("True")
        for r in caplog.records
        if r.name == "mdm.services.golden" and f"survived aside ({kind})" in r.getMessage()
    ]


def _backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("where", "kind"),
    [("plain process", "process"), ("no fork", "thread"), ("daemonic process", "process")],
)
def test_members_read_aside_write_what_members_read_inline_write(
    require_postgres, api, monkeypatch, caplog, where, kind
):
    # Given committed records, survived 7 records at a time (several chunks), by a reader
    # process (also from a daemonic process, as a Celery prefork worker's task runs in) or,
    # where none can be forked, a reader thread
    if where == "no fork":
        monkeypatch.setattr(forking.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    if where == "daemonic process":
        process: Any = multiprocessing.current_process()
        monkeypatch.setitem(process._config, "daemon", True)
    api.post(URL, {"records": MANY}, format="json")
    records = dict(SourceRecord.objects.values_list("source_key", "id"))
    monkeypatch.setattr(golden, "SURVIVE_CHUNK", 7)
    inline = _snapshot(_apply_many(records, aside=False))
    inline_events = _events()
    _wipe()
    ChangeEvent.objects.all().delete()
    caplog.set_level(logging.DEBUG, logger="mdm.services.golden")
    backends = _backends()

    # When the new golden records' members are read on a second connection
    aside = _snapshot(_apply_many(records, aside=True))

    # Then the same rows, history rows and events are written, and that connection is closed
    assert aside == inline
    assert _events() == inline_events
    assert len(aside["golden"]) == 15
    assert sum(h["history_type"] == "+" for h in aside["xref history"]) == 45
    assert _chunks_aside(caplog, kind) == [True] * 5  # 15 clusters of 3, chunks of >= 7 records
    assert _backends() == backends


def test_records_the_second_connection_cannot_see_are_read_inline(
    require_postgres, api, monkeypatch, caplog
):
    # Given records written by this (test) transaction, invisible to another connection
    api.post(URL, {"records": MANY}, format="json")
    records = dict(SourceRecord.objects.values_list("source_key", "id"))
    monkeypatch.setattr(golden, "SURVIVE_CHUNK", 7)
    caplog.set_level(logging.DEBUG, logger="mdm.services.golden")

    # When an apply is told the records are committed
    windows = _apply_many(records, aside=True)
    seen = _chunks_aside(caplog)

    # Then each chunk is read on the caller's connection: what an inline apply writes
    aside = _snapshot(windows)
    assert seen and not any(seen)
    _wipe()
    assert _snapshot(_apply_many(records, aside=False)) == aside
    assert len(aside["golden"]) == 15
