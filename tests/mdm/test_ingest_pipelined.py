"""The pipelined file path (normalisation in a worker process) gives the sequential outcome."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

from mdm.models import IngestRun, QuarantinedPayload, RecordChange, SourceRecord

HEADER = "source_key,given_name,family_name,email\n"


def rows(n, start=0, email="p{i}@example.com"):
    return "".join(f"K{i},Ann{i},Lee,{email.format(i=i)}\n" for i in range(start, start + n))


def ingest(path):
    out = StringIO()
    call_command("ingest", str(path), "--source", "crm", "--domain", "customer", stdout=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def parallel():
    with override_settings(AURUM_INGEST_PARALLEL_MIN_BYTES=0, AURUM_INGEST_WORKERS=1):
        yield


def test_pipelined_load_equals_the_sequential_outcome(tmp_path, source):
    path = tmp_path / "people.csv"
    path.write_text(HEADER + rows(1200) + "K9999,Bad,Row,not-an-email\n")

    out = ingest(path)

    assert "read 1201, created 1200, updated 0, unchanged 0" in out
    assert "quarantined 1" in out
    assert SourceRecord.objects.count() == 1200
    assert SourceRecord.history.count() == 1200
    assert RecordChange.objects.count() == 1200
    assert SourceRecord.objects.get(source_key="K7").attributes == {
        "given_name": "Ann7",
        "family_name": "Lee",
        "email": "p7@example.com",
    }
    assert QuarantinedPayload.objects.get().line_number == 1202
    run = IngestRun.objects.get()
    assert (run.read_count, run.created_count, run.quarantined_count) == (1201, 1200, 1)


def test_a_key_repeated_in_a_later_chunk_is_applied_in_order(tmp_path, source):
    # Chunks are 500 rows (test settings): K3 is in the first and the third chunk.
    path = tmp_path / "people.csv"
    path.write_text(HEADER + rows(1000) + "K3,Ann3,Lee,changed@example.com\n")

    out = ingest(path)

    assert "read 1001, created 1000, updated 1" in out
    record = SourceRecord.objects.get(source_key="K3")
    assert (record.version, record.attributes["email"]) == (2, "changed@example.com")
    assert SourceRecord.history.filter(source_key="K3").count() == 2


def test_pipelined_reload_is_a_no_op(tmp_path, source):
    path = tmp_path / "people.csv"
    path.write_text(HEADER + rows(1100))
    ingest(path)

    out = ingest(path)

    assert "read 1100, created 0, updated 0, unchanged 1100" in out
    assert SourceRecord.history.count() == 1100
