"""File-drop connectors: a folder where a partner drops CSV/JSON/Parquet files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdm.models import Connector, ConnectorFile, SourceRecord
from mdm.services.connectors import ConnectorBusyError, connector_run, connector_upsert
from mdm.services.sources import source_mapping_register

MAPPING: dict[str, Any] = {
    "source": "partner",
    "domain": "customer",
    "name": "drops",
    "key": {"field": "ref"},
    "deleted": {"field": "status", "values": ["gone"]},
    "attributes": {
        "party_type": {"const": "person"},
        "given_name": "first",
        "family_name": "last",
        "email": "email",
    },
}


def csv_text(rows: list[tuple[str, str, str, str, str]]) -> str:
    lines = ["ref,first,last,email,status"] + [",".join(r) for r in rows]
    return "\n".join(lines) + "\n"


def row(n: int, email: str | None = None, status: str = "") -> tuple[str, str, str, str, str]:
    return (f"P{n}", f"Given{n}", f"Family{n}", email or f"p{n}@example.com", status)


def make_connector(folder: Path, batch_size: int = 5000) -> Connector:
    mapping, _, _ = source_mapping_register(spec=dict(MAPPING))
    connector, _ = connector_upsert(
        name="partner-drop",
        kind="file_drop",
        source_system=mapping.source_system,
        domain="customer",
        mapping=mapping,
        config={"path": str(folder), "pattern": "*.*"},
        interval_seconds=60,
        batch_size=batch_size,
    )
    return connector


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.exists() else []


@pytest.mark.django_db
def test_each_dropped_file_is_processed_once_and_moved(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "2026-11-01.csv").write_text(csv_text([row(1), row(2), row(3)]))
    connector = make_connector(inbox)

    first = connector_run(connector_id=connector.pk)

    assert first.status == "succeeded", first.error
    assert (first.files_count, first.read_count, first.created_count) == (1, 3, 3)
    assert names(inbox) == []
    assert names(inbox / "done") == ["2026-11-01.csv"]

    # The next night: changes as JSON Lines and Parquet, the same CSV dropped again, and a
    # file that is not what its name says.
    (inbox / "2026-11-01.csv").write_text(csv_text([row(1), row(2), row(3)]))
    (inbox / "2026-11-02.jsonl").write_text(
        json.dumps(
            dict(
                zip(
                    ["ref", "first", "last", "email", "status"],
                    row(1, "new@example.com"),
                    strict=True,
                )
            )
        )
        + "\n"
        + json.dumps(
            dict(
                zip(["ref", "first", "last", "email", "status"], row(2, status="gone"), strict=True)
            )
        )
        + "\n"
    )
    columns = ["ref", "first", "last", "email", "status"]
    parquet = {name: [value] for name, value in zip(columns, row(4), strict=True)}
    pq.write_table(pa.table(parquet), inbox / "2026-11-03.parquet")
    (inbox / "2026-11-04.parquet").write_bytes(b"this is not parquet")

    second = connector_run(connector_id=connector.pk)

    assert second.status == "partial"  # one file failed
    assert second.files_count == 3  # the CSV seen before is not processed again
    assert (second.created_count, second.updated_count, second.deleted_count) == (1, 1, 1)
    assert "2026-11-04.parquet is not a readable Parquet file" in second.error
    assert names(inbox) == []
    done = names(inbox / "done")
    again = [n for n in done if n.startswith("2026-11-01.2")]  # the copy dropped again
    assert len(again) == 1
    assert done == sorted(["2026-11-01.csv", *again, "2026-11-02.jsonl", "2026-11-03.parquet"])
    assert names(inbox / "failed") == ["2026-11-04.parquet"]
    statuses = dict(ConnectorFile.objects.values_list("name", "status"))
    assert statuses == {
        "2026-11-01.csv": "done",
        "2026-11-02.jsonl": "done",
        "2026-11-03.parquet": "done",
        "2026-11-04.parquet": "failed",
    }
    live = {
        r.source_key: r.attributes["email"] for r in SourceRecord.objects.filter(is_deleted=False)
    }
    assert live == {"P1": "new@example.com", "P3": "p3@example.com", "P4": "p4@example.com"}


@pytest.mark.django_db
def test_a_file_interrupted_part_way_is_processed_again_without_duplicates(tmp_path: Path) -> None:
    (tmp_path / "big.csv").write_text(csv_text([row(n) for n in range(1, 11)]))
    connector = make_connector(tmp_path, batch_size=4)
    refused: list[str] = []

    def interrupt(batch: int) -> None:
        with pytest.raises(ConnectorBusyError) as exc:
            connector_run(connector_id=connector.pk)
        refused.append(str(exc.value))
        raise OSError("disk went away")

    failed = connector_run(connector_id=connector.pk, on_batch=interrupt)

    assert failed.status == "failed"
    assert len(refused) == 1
    assert failed.created_count == 4
    assert names(tmp_path) == ["big.csv"]  # still waiting in the folder
    assert ConnectorFile.objects.count() == 0

    retried = connector_run(connector_id=connector.pk)

    assert (retried.created_count, retried.unchanged_count, retried.files_count) == (6, 4, 1)
    assert SourceRecord.objects.count() == 10
    assert SourceRecord.history.count() == 10
    assert names(tmp_path / "done") == ["big.csv"]


@pytest.mark.django_db
def test_a_missing_folder_fails_the_run_with_its_name(tmp_path: Path) -> None:
    connector = make_connector(tmp_path / "nowhere")
    run = connector_run(connector_id=connector.pk)
    assert run.status == "failed"
    assert run.error == f"the folder {tmp_path / 'nowhere'} does not exist"


@pytest.mark.django_db
def test_a_source_update_to_a_corrected_value_keeps_the_stewards_and_opens_a_task(
    tmp_path: Path, django_user_model: Any
) -> None:
    from mdm.models import GoldenRecord
    from mdm.services.golden import golden_records_apply_clusters, golden_records_rebuild
    from mdm.services.lifecycle import golden_attribute_correct
    from stewardship.models import ReviewTask

    (tmp_path / "day1.csv").write_text(csv_text([row(1, "old@example.com"), row(2)]))
    connector = make_connector(tmp_path)
    connector_run(connector_id=connector.pk)
    p1 = SourceRecord.objects.get(source_key="P1")
    golden_records_apply_clusters(domain="customer", clusters={p1.pk: 1})
    golden = GoldenRecord.objects.get()
    steward = django_user_model.objects.create_superuser("stella", "s@example.com", "pw")
    golden_attribute_correct(
        domain="customer", golden_id=golden.pk, attribute="email",
        value="ann.lee@example.com", actor=steward, reason="confirmed by phone",
    )  # fmt: skip

    # The source changes another attribute only, then sends the steward's own value: no task.
    (tmp_path / "day2.csv").write_text(csv_text([("P1", "Ann", "Family1", "old@example.com", "")]))
    connector_run(connector_id=connector.pk)
    (tmp_path / "day3.csv").write_text(
        csv_text([("P1", "Ann", "Family1", "ann.lee@example.com", "")])
    )
    connector_run(connector_id=connector.pk)
    assert ReviewTask.objects.count() == 0

    (tmp_path / "day4.csv").write_text(
        csv_text([("P1", "Ann", "Family1", "ann@elsewhere.com", "")])
    )
    run = connector_run(connector_id=connector.pk)
    golden_records_rebuild(domain="customer", golden_ids=[golden.pk])

    assert run.updated_count == 1
    golden.refresh_from_db()
    assert golden.attributes["email"] == "ann.lee@example.com"  # the steward's value stays
    assert golden.provenance["email"]["source"] == "aurum-steward"
    task = ReviewTask.objects.get()
    assert (task.kind, task.status, task.left_record_id) == ("data_quality", "open", p1.pk)
    assert task.rule == "source disagrees with a steward correction"
    assert task.details["golden_id"] == golden.pk
    assert task.details["attributes"] == {
        "email": {
            "steward_value": "ann.lee@example.com",
            "source_value": "ann@elsewhere.com",
            "previous_source_value": "ann.lee@example.com",
        }
    }
    assert task.details["message"] == (
        "partner sent email = 'ann@elsewhere.com' for P1; golden record "
        f"{golden.pk} keeps the steward's email = 'ann.lee@example.com'"
    )

    # The same disagreement again (another file) does not open a second task.
    (tmp_path / "day5.csv").write_text(
        csv_text([("P1", "Annie", "Family1", "ann@elsewhere.com", "")])
    )
    connector_run(connector_id=connector.pk)
    (tmp_path / "day6.csv").write_text(csv_text([("P1", "Annie", "Family1", "ann@third.com", "")]))
    connector_run(connector_id=connector.pk)
    assert ReviewTask.objects.count() == 1
