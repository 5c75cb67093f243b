"""The snapshot export streams, and is consistent with the sequence number it reports."""

from __future__ import annotations

import io
import json
import threading

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import Group, User
from django.db import connection

from mdm.models import GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.lifecycle import golden_attribute_correct
from sync import snapshot
from sync.models import ChangeEvent
from sync.services import change_events_sequence

PEOPLE = [
    {"source_key": f"K{i}", "given_name": f"Name{i}", "family_name": "Lee", "country": "DE"}
    for i in range(25)
]


def goldens(api):
    assert api.post("/api/v1/customer/records", {"records": PEOPLE}, format="json").status_code
    ids = list(SourceRecord.objects.order_by("pk").values_list("pk", flat=True))
    result = golden_records_apply_clusters(domain="customer", clusters={r: r for r in ids})
    return sorted(result.golden_of.values())


def test_the_snapshot_streams_in_chunks_and_parquet_row_groups(api, monkeypatch):
    monkeypatch.setattr(snapshot, "ROW_GROUP", 10)
    ids = goldens(api)
    response = api.get("/api/v1/customer/snapshot")
    assert response.streaming
    chunks = list(response.streaming_content)
    assert len(chunks) == 3  # 10 + 10 + 5 records
    rows = [json.loads(line) for line in b"".join(chunks).splitlines()]
    assert [r["id"] for r in rows] == ids
    parquet = api.get("/api/v1/customer/snapshot?output=parquet")
    data = b"".join(parquet.streaming_content)
    file = pq.ParquetFile(io.BytesIO(data))
    assert file.metadata.num_row_groups == 3
    assert file.schema_arrow.metadata[b"aurum.seq"] == parquet["Aurum-Snapshot-Seq"].encode()
    assert file.read().column("id").to_pylist() == ids


@pytest.mark.postgres
def test_a_change_committed_while_streaming_is_not_in_the_snapshot(
    require_postgres, transactional_db, api, monkeypatch
):
    monkeypatch.setattr(snapshot, "ROW_GROUP", 10)
    ids = goldens(api)
    steward = User.objects.create_user("stella")
    # a transactional test before this one may have flushed the groups the migration made
    steward.groups.add(Group.objects.get_or_create(name="steward")[0])
    change_events_sequence()
    seq = ChangeEvent.objects.count()
    # given a snapshot whose first chunk was read
    response = api.get("/api/v1/customer/snapshot")
    assert response["Aurum-Snapshot-Seq"] == str(seq)
    chunks = iter(response.streaming_content)
    first = next(chunks)

    # when another session corrects the last golden record and commits
    done: list[object] = []

    def correct() -> None:
        try:
            golden_attribute_correct(
                domain="customer", golden_id=ids[-1], attribute="country", value="FR",
                actor=steward, reason="moved",
            )  # fmt: skip
            done.append(GoldenRecord.objects.get(pk=ids[-1]).attributes["country"])
        except Exception as exc:  # reported below
            done.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=correct)
    worker.start()
    worker.join(timeout=30)
    assert done == ["FR"]
    # then the rest of the stream still shows the records as of its sequence number
    rows = [json.loads(line) for line in (first + b"".join(chunks)).splitlines()]
    assert [(r["id"], r["version"], r["attributes"]["country"]) for r in rows] == [
        (gid, 1, "DE") for gid in ids
    ]
    assert GoldenRecord.objects.get(pk=ids[-1]).attributes["country"] == "FR"
    # and the change comes after it in the feed
    feed = api.get(f"/api/v1/events?after={seq}").json()
    assert [(e["golden"]["id"], e["golden"]["attributes"]["country"]) for e in feed["events"]] == [
        (ids[-1], "FR")
    ]
