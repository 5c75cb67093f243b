"""A batch pushed through the API: a bounded number of SQL statements whatever its size,
the same outcome as before the set-based rewrite, and the match queued once, after commit."""

from __future__ import annotations

from unittest import mock

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mdm.models import QuarantinedPayload, RecordChange, SourceRecord
from mdm.services import ingest

URL = "/api/v1/customer/records"


def person(key: str, family: str = "Lee", **extra: str) -> dict[str, str]:
    return {
        "source_key": key,
        "given_name": "Ann",
        "family_name": family,
        "email": f"ann.{key.lower()}@example.com",
        "date_of_birth": "1980-02-29",
        "country": "GB",
        **extra,
    }


def mixed_batch(n: int, tag: str) -> list[dict[str, str]]:
    """n records already pushed (half of them changed), n/2 new ones, n/2 invalid."""
    changed = [person(f"{tag}{i}", "Lee-Smith") for i in range(0, n, 2)]
    same = [person(f"{tag}{i}") for i in range(1, n, 2)]
    new = [person(f"{tag}N{i}") for i in range(n // 2)]
    bad = [person(f"{tag}B{i}", email="not-an-address") for i in range(n // 2)]
    return changed + same + new + bad


def statements(api, records):
    with CaptureQueriesContext(connection) as captured:
        response = api.post(URL, {"records": records}, format="json")
    assert response.status_code == 200, response.content
    return len(captured.captured_queries), response.json()


# On PostgreSQL, where rows go in with COPY; SQLite (the embedded default) splits its
# inserts by its bound-parameter limit, so there the count grows with the batch.
@pytest.mark.django_db
def test_a_batch_takes_the_same_statements_whatever_its_size(api, require_postgres):
    api.post(URL, {"records": [person(f"S{i}") for i in range(8)]}, format="json")
    api.post(URL, {"records": [person(f"L{i}") for i in range(240)]}, format="json")

    small, small_body = statements(api, mixed_batch(8, "S"))
    large, large_body = statements(api, mixed_batch(240, "L"))

    assert small_body["counts"] == {
        "read": 16, "created": 4, "updated": 4, "unchanged": 4, "deleted": 0, "stale": 0,
        "quarantined": 4,
    }  # fmt: skip
    assert large_body["counts"]["read"] == 480
    assert large_body["counts"]["quarantined"] == 120
    assert large == small


@pytest.mark.django_db
def test_a_fresh_batch_stays_under_its_statement_budget(
    api, django_assert_max_num_queries, require_postgres
):
    api.post(URL, person("WARM"), format="json")  # the mapping and token caches

    with django_assert_max_num_queries(12):
        response = api.post(URL, {"records": [person(f"F{i}") for i in range(300)]}, format="json")

    assert response.status_code == 200
    assert response.json()["counts"]["created"] == 300


@pytest.mark.django_db
def test_history_rows_are_the_records_as_written_in_the_batch_order(api):
    api.post(URL, {"records": [person("H1"), person("H2")]}, format="json")
    api.post(
        URL, {"records": [person("H2", "Lee-Smith"), person("H3"), person("H1")]}, format="json"
    )

    history = SourceRecord.history.model.objects.order_by("history_id")
    assert [(h.source_key, h.history_type, h.version) for h in history] == [
        ("H1", "+", 1),
        ("H2", "+", 1),
        ("H3", "+", 1),  # a batch writes its new records, then its changed ones
        ("H2", "~", 2),
    ]
    fields = ["id", "attributes", "raw", "content_hash", "version", "received_at",
              "source_updated_at", "is_deleted", "deleted_at", "ingest_run_id"]  # fmt: skip
    for record in SourceRecord.objects.all():
        last = history.filter(id=record.pk).last()
        assert {f: getattr(last, f) for f in fields} == {f: getattr(record, f) for f in fields}
        run = record.ingest_run
        assert run is not None
        assert (
            last.history_change_reason == f"api ingest run {run.pk} from {run.source_system.code}"
        )
    assert SourceRecord.objects.get(source_key="H2").attributes["family_name"] == "Lee-Smith"


@pytest.mark.django_db
def test_the_existing_records_lookup_answers_as_the_key_list_query_did(api, require_postgres):
    api.post(URL, {"records": [person("E1"), person("E2"), person("E3")]}, format="json")
    api.post(URL, {"records": [{"source_key": "E3", "deleted": True}]}, format="json")
    record = SourceRecord.objects.get(source_key="E1")
    keys = ["E1", "E2", "E3", "E4", "e1", "E1 ", "E'5", 'E"6', "E\\7", "E,8", "{E9}", "Zoë"]

    with connection.cursor() as cursor:  # the query it replaces
        cursor.execute(
            "SELECT source_key, id, content_hash, version, is_deleted, source_updated_at "
            "FROM mdm_sourcerecord WHERE source_system_id = %s AND domain = %s "
            "AND source_key = ANY(%s::varchar[])",
            [record.source_system_id, "customer", keys],
        )
        before = {key: ingest._Existing(*rest) for key, *rest in cursor.fetchall()}

    after = ingest._existing(record.source_system_id, "customer", keys)
    assert after == before
    assert sorted(after) == ["E1", "E2", "E3"]
    assert after["E3"].is_deleted is True


@pytest.mark.django_db
def test_a_batch_queues_one_match_after_commit(api, settings, django_capture_on_commit_callbacks):
    settings.AURUM_MATCH_AFTER_INGEST = True
    settings.AURUM_QUALITY_AFTER_INGEST = False

    with mock.patch.object(ingest.current_app, "signature") as signature:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = api.post(
                URL, {"records": [person(f"M{i}") for i in range(50)]}, format="json"
            )
        assert signature.call_count == 0  # nothing before the commit
        for callback in callbacks:
            callback()

    assert response.status_code == 200
    assert len(callbacks) == 1
    signature.assert_called_once_with(ingest.MATCH_TASK, args=("customer",))
    signature.return_value.delay.assert_called_once_with()
    assert RecordChange.objects.count() == 50


@pytest.mark.django_db
def test_a_batch_takes_its_ids_from_the_table_sequence(api, require_postgres):
    api.post(URL, {"records": [person(f"Q{i}") for i in range(5)]}, format="json")
    api.post(URL, {"records": [person(f"R{i}") for i in range(3)]}, format="json")

    ids = list(SourceRecord.objects.order_by("source_key").values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM mdm_sourcerecord_id_seq")
        (last,) = cursor.fetchone()

    assert len(set(ids)) == 8
    assert ids[:5] == sorted(ids[:5]) and ids[5:] == sorted(ids[5:])
    assert min(ids[5:]) > max(ids[:5])
    assert max(ids) == last


@pytest.mark.django_db
def test_deleting_a_record_through_the_orm_deletes_its_change_markers(api):
    api.post(URL, {"records": [person("D1"), person("D2")]}, format="json")

    SourceRecord.objects.filter(source_key="D1").delete()

    assert list(RecordChange.objects.values_list("record__source_key", flat=True)) == ["D2"]


@pytest.mark.django_db
def test_records_and_markers_keep_only_the_source_system_constraint(require_postgres):
    # The run link and the marker's record link are checked by the ORM, not at every commit.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid::regclass::text IN "
            "('mdm_sourcerecord', 'mdm_recordchange')"
        )
        found = sorted(cursor.fetchall())

    assert found == [("mdm_sourcerecord", "mdm_sourcesystem")]


@pytest.mark.django_db
def test_a_bad_record_is_named_by_index_and_field_and_the_rest_applied(api):
    records = [person("Q0"), person("Q1", email="nope"), person("Q2", date_of_birth="2999-01-01")]

    response = api.post(URL, {"records": records}, format="json")

    results = response.json()["results"]
    assert [(r["index"], r["status"]) for r in results] == [
        (0, "created"), (1, "rejected"), (2, "rejected"),
    ]  # fmt: skip
    assert [e["field"] for e in results[1]["errors"]] == ["email"]
    assert [e["field"] for e in results[2]["errors"]] == ["date_of_birth"]
    assert list(SourceRecord.objects.values_list("source_key", flat=True)) == ["Q0"]
    assert QuarantinedPayload.objects.count() == 2


@pytest.mark.django_db
def test_the_lookup_probes_the_key_index_with_statistics_from_before_the_source(
    api, other_api, require_postgres
):
    # Statistics that know only another source: the planner expects no record of ours.
    other_api.post(URL, {"records": [person(f"O{i}") for i in range(300)]}, format="json")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE mdm_sourcerecord")
    api.post(URL, {"records": [person(f"P{i}") for i in range(300)]}, format="json")
    ours = SourceRecord.objects.filter(source_key="P1").get()
    keys = [f"P{i}" for i in range(0, 600, 2)]

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN " + ingest._EXISTING_SQL,
            {
                "keys": orjson.dumps(keys).decode(),
                "source": ours.source_system_id,
                "domain": "customer",
            },
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Index Scan using uniq_source_record" in plan, plan
    assert "mdm_sourcer_domain" not in plan and "Seq Scan on mdm_sourcerecord" not in plan, plan
    found = ingest._existing(ours.source_system_id, "customer", keys)
    assert sorted(found) == sorted(f"P{i}" for i in range(0, 300, 2))
