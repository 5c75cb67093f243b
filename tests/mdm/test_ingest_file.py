"""File ingestion through the same path as `manage.py ingest`."""

from io import StringIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from mdm.models import IngestRun, QuarantinedPayload, RecordChange, SourceRecord
from mdm.services.sources import source_mapping_register

CRM_MAPPING = {
    "source": "crm",
    "domain": "customer",
    "name": "contacts",
    "key": {"field": "ContactId"},
    "updated_at": {"field": "Modified"},
    "deleted": {"field": "IsDeleted", "values": ["1"]},
    "attributes": {
        "given_name": "FirstName",
        "family_name": "LastName",
        "email": "Email",
        "date_of_birth": {"field": "Birthdate", "format": "%m/%d/%Y"},
        "country": {"const": "GB"},
    },
}
HEADER = "ContactId,FirstName,LastName,Email,Birthdate,Modified,IsDeleted\n"
GOOD = [
    "C1,Ann,Lee,ann@example.com,01/31/1980,2024-01-01T00:00:00Z,0\n",
    "C2,Bob,Ray,BOB@Example.com,,2024-01-01T00:00:00Z,0\n",
    "C3,Cy,Day,cy@example.com,12/01/1975,2024-01-01T00:00:00Z,0\n",
]
BAD_EMAIL = "C4,Dee,Fox,not-an-email,01/01/1990,2024-01-01T00:00:00Z,0\n"


def ingest(path, *args):
    out, err = StringIO(), StringIO()
    call_command("ingest", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def crm_mapping(source):
    mapping, _, _ = source_mapping_register(spec=CRM_MAPPING)
    return mapping


def test_csv_loads_good_rows_and_quarantines_the_bad_one_with_its_line(tmp_path, crm_mapping):
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + GOOD[0] + BAD_EMAIL + GOOD[1] + GOOD[2])

    out, err = ingest(path, "--source", "crm", "--domain", "customer")

    assert "read 4, created 3, updated 0, unchanged 0, deleted 0, stale 0, quarantined 1" in out
    assert "contacts.csv line 3: rejected (email:" in err
    records = {r.source_key: r for r in SourceRecord.objects.all()}
    assert sorted(records) == ["C1", "C2", "C3"]
    assert records["C1"].attributes["date_of_birth"] == "1980-01-31"
    assert records["C2"].attributes["email"] == "bob@example.com"
    assert records["C1"].raw["FirstName"] == "Ann"
    q = QuarantinedPayload.objects.get()
    assert (q.line_number, q.source_key, q.status) == (3, "C4", "open")
    assert q.payload["Email"] == "not-an-email"
    assert q.errors[0]["field"] == "email"
    run = IngestRun.objects.get()
    assert (run.status, run.read_count, run.created_count, run.quarantined_count) == (
        "partial",
        4,
        3,
        1,
    )
    assert run.mapping == crm_mapping
    assert RecordChange.objects.count() == 3


def test_reingest_of_the_same_file_changes_nothing(tmp_path, crm_mapping):
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + "".join(GOOD))
    ingest(path, "--source", "crm", "--domain", "customer")
    before = list(SourceRecord.objects.values_list("id", "version", "received_at"))
    history_before = SourceRecord.history.count()

    out, _ = ingest(path, "--source", "crm", "--domain", "customer")

    assert "read 3, created 0, updated 0, unchanged 3" in out
    assert list(SourceRecord.objects.values_list("id", "version", "received_at")) == before
    assert SourceRecord.history.count() == history_before
    assert RecordChange.objects.count() == 3


def test_changed_row_updates_with_a_new_version_and_history(tmp_path, crm_mapping):
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + "".join(GOOD))
    ingest(path, "--source", "crm", "--domain", "customer")
    path.write_text(
        HEADER + GOOD[0].replace("ann@example.com", "ann.lee@example.com") + GOOD[1] + GOOD[2]
    )

    out, _ = ingest(path, "--source", "crm", "--domain", "customer")

    assert "created 0, updated 1, unchanged 2" in out
    record = SourceRecord.objects.get(source_key="C1")
    assert record.version == 2
    assert record.attributes["email"] == "ann.lee@example.com"
    history = list(record.history.order_by("history_id").values_list("history_type", "version"))
    assert history == [("+", 1), ("~", 2)]
    old = record.history.earliest("history_id")
    assert old.attributes["email"] == "ann@example.com"
    assert "file ingest run" in old.history_change_reason
    assert RecordChange.objects.filter(record=record).count() == 2


def test_source_deleted_flag_tombstones_the_record(tmp_path, crm_mapping):
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + "".join(GOOD))
    ingest(path, "--source", "crm", "--domain", "customer")
    path.write_text(HEADER + GOOD[0][:-2] + "1\n")

    out, _ = ingest(path, "--source", "crm", "--domain", "customer")

    assert "deleted 1" in out
    record = SourceRecord.objects.get(source_key="C1")
    assert record.is_deleted and record.deleted_at is not None
    assert record.attributes["given_name"] == "Ann"  # kept for history and survivorship
    assert RecordChange.objects.filter(record=record, kind="delete").count() == 1


def test_older_row_is_stale_and_not_applied(tmp_path, crm_mapping):
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + GOOD[0].replace("2024-01-01", "2024-06-01"))
    ingest(path, "--source", "crm", "--domain", "customer")
    path.write_text(HEADER + GOOD[0].replace("ann@example.com", "old@example.com"))

    out, _ = ingest(path, "--source", "crm", "--domain", "customer")

    assert "stale 1" in out
    assert SourceRecord.objects.get().attributes["email"] == "ann@example.com"


def test_same_key_twice_in_one_file_applies_in_order(tmp_path, crm_mapping):
    path = tmp_path / "contacts.csv"
    second = GOOD[0].replace("ann@example.com", "ann2@example.com")
    path.write_text(HEADER + GOOD[0] + second)

    out, _ = ingest(path, "--source", "crm", "--domain", "customer")

    assert "created 1, updated 1" in out
    record = SourceRecord.objects.get()
    assert (record.version, record.attributes["email"]) == (2, "ann2@example.com")


IDENTITY_ROWS = [
    {"source_key": "P1", "given_name": "Ann", "family_name": "Lee", "email": "a@example.com"},
    {"source_key": "P2", "given_name": "Bo", "email": "bad@"},
    {"source_key": "P3", "family_name": "Ray", "country": "Germany"},
]


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_every_format_loads_and_quarantines_bad_rows(tmp_path, source, fmt):
    path = tmp_path / f"people.{fmt}"
    cols = ["source_key", "given_name", "family_name", "email", "country"]
    if fmt == "csv":
        lines = [",".join(cols)] + [",".join(r.get(c, "") for c in cols) for r in IDENTITY_ROWS]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "json":
        path.write_bytes(orjson.dumps(IDENTITY_ROWS))
    elif fmt == "jsonl":
        path.write_bytes(b"\n".join(orjson.dumps(r) for r in IDENTITY_ROWS) + b"\n")
    else:
        schema = pa.schema([(c, pa.string()) for c in cols])
        pq.write_table(pa.Table.from_pylist(IDENTITY_ROWS, schema=schema), path)

    out, err = ingest(path, "--source", "crm", "--domain", "customer")

    assert "read 3, created 2" in out
    assert "quarantined 1" in out
    label = {"csv": "line 3", "json": "item 2", "jsonl": "line 2", "parquet": "row 2"}[fmt]
    assert f"people.{fmt} {label}: rejected (email:" in err
    assert sorted(SourceRecord.objects.values_list("source_key", flat=True)) == ["P1", "P3"]
    assert SourceRecord.objects.get(source_key="P3").attributes["country"] == "DE"
    assert QuarantinedPayload.objects.get().source_key == "P2"
    out2, _ = ingest(path, "--source", "crm", "--domain", "customer")
    assert "created 0, updated 0, unchanged 2" in out2


def test_ingest_with_a_mapping_file_registers_it(tmp_path, source):
    mapping_file = tmp_path / "crm.toml"
    mapping_file.write_text(
        'source = "crm"\ndomain = "customer"\nname = "contacts"\n'
        '[key]\nfield = "ContactId"\n[attributes]\ngiven_name = "FirstName"\n'
    )
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + GOOD[0])

    out, _ = ingest(path, "--source", "crm", "--domain", "customer", "--mapping", str(mapping_file))

    assert "created 1" in out
    assert SourceRecord.objects.get().attributes == {"given_name": "Ann"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nope", "--domain", "customer"], "unknown source system 'nope'"),
        (["--source", "crm", "--domain", "starship"], "starship"),
        (["--source", "crm", "--domain", "customer", "--mapping", "nope"], "no mapping 'nope'"),
    ],
)
def test_bad_arguments_fail_clearly_and_write_nothing(tmp_path, source, args, message):
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + GOOD[0])

    with pytest.raises(CommandError, match=message):
        ingest(path, *args)

    assert SourceRecord.objects.count() == 0
    assert IngestRun.objects.count() == 0


def test_unknown_identity_field_is_rejected_with_the_expected_names(tmp_path, source):
    path = tmp_path / "people.jsonl"
    path.write_bytes(orjson.dumps({"source_key": "X", "given_name": "A", "shoe": 1}) + b"\n")

    _, err = ingest(path, "--source", "crm", "--domain", "customer")

    assert "line 1: rejected (shoe: unknown attribute 'shoe' for domain customer" in err
    assert SourceRecord.objects.count() == 0


def test_rerun_with_a_bad_row_keeps_one_quarantined_payload(tmp_path, crm_mapping):
    path = tmp_path / "contacts.csv"
    path.write_text(HEADER + GOOD[0] + BAD_EMAIL)
    ingest(path, "--source", "crm", "--domain", "customer")
    first = QuarantinedPayload.objects.get()

    out, err = ingest(path, "--source", "crm", "--domain", "customer")

    assert "unchanged 1" in out
    assert "quarantined 1" in out  # still reported, so the operator sees it
    assert "line 3: rejected" in err
    assert list(QuarantinedPayload.objects.values_list("id", flat=True)) == [first.pk]
    assert QuarantinedPayload.history.count() == 1
