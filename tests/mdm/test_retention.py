"""Retention: purge_history deletes old history of retired, deleted and erased records."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from mdm.audit.models import AuditEntry
from mdm.models import CrossReference, GoldenRecord, SourceRecord
from mdm.services.erasure import erasure_request_file
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.lifecycle import golden_record_merge
from tests.stewardship.factories import user_with_role

URL = "/api/v1/customer/records"
GoldenHistory = GoldenRecord.history.model
RecordHistory = SourceRecord.history.model


@pytest.fixture
def aged(api, other_api):
    """Ann (two records, merged: one golden record retired), Bob deleted at his source,
    Cy erased, Di active: all of it three years ago."""
    people = [
        (api, {"source_key": "A1", "given_name": "Ann"}),
        (other_api, {"source_key": "A2", "given_name": "Ann"}),
        (api, {"source_key": "B", "given_name": "Bob"}),
        (api, {"source_key": "C", "given_name": "Cy"}),
        (api, {"source_key": "D", "given_name": "Di"}),
    ]
    for client, body in people:
        assert client.post(URL, body, format="json").status_code == 201
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    golden_records_apply_clusters(
        domain="customer", clusters={pk: i for i, pk in enumerate(ids.values())}
    )
    golden = {k: CrossReference.objects.get(record_id=pk).golden_id for k, pk in ids.items()}
    admin = user_with_role("ada", "admin")
    golden_record_merge(
        domain="customer",
        golden_ids=[golden["A1"], golden["A2"]],
        actor=admin,
        target_id=golden["A1"],
    )
    assert api.delete(f"{URL}/B").status_code == 200
    api.post(URL, {"source_key": "D", "given_name": "Dianne"}, format="json")
    erasure_request_file(domain="customer", golden_id=golden["C"], actor=admin)
    # Three years pass.
    past = timezone.now() - timedelta(days=3 * 365)
    GoldenHistory.objects.update(history_date=past)
    RecordHistory.objects.update(history_date=past)
    CrossReference.history.model.objects.update(history_date=past)
    GoldenRecord.objects.filter(status="retired").update(retired_at=past)
    SourceRecord.objects.filter(is_deleted=True).update(deleted_at=past)
    from mdm.models import ErasureRequest

    ErasureRequest.objects.update(erased_at=past)
    return {"ids": ids, "golden": golden}


def snapshot():
    return (
        GoldenHistory.objects.count(),
        RecordHistory.objects.count(),
        CrossReference.history.model.objects.count(),
    )


def test_dry_run_prints_what_it_would_delete_and_deletes_nothing(aged):
    before = snapshot()
    out = StringIO()

    call_command("purge_history", "--dry-run", stdout=out)

    assert snapshot() == before
    lines = out.getvalue().splitlines()
    assert "golden_history_retired: would delete 1 rows" in lines  # A2's older rows, not its last
    assert "golden_history_erased: would delete 1 rows" in lines
    assert "source_record_history_erased: would delete 1 rows" in lines
    assert lines[-1].startswith("would delete ")
    assert not AuditEntry.objects.filter(action="retention.purge").exists()


def test_purge_deletes_old_history_keeps_the_last_row_and_active_records_whole(aged):
    ids, golden = aged["ids"], aged["golden"]
    active_history = GoldenHistory.objects.filter(id=golden["D"]).count()
    d_history = RecordHistory.objects.filter(id=ids["D"]).count()
    dry = StringIO()
    call_command("purge_history", "--dry-run", stdout=dry)

    out = StringIO()
    call_command("purge_history", stdout=out)

    # The dry run said exactly what the purge did.
    assert (
        out.getvalue().replace(": deleted", ": would delete").replace("\ndeleted", "\nwould delete")
        == dry.getvalue()
    )
    retired = GoldenHistory.objects.filter(id=golden["A2"])
    assert list(retired.values_list("status", flat=True)) == ["retired"]  # its last row stays
    assert RecordHistory.objects.filter(id=ids["B"]).count() == 1  # the tombstone row
    assert not GoldenHistory.objects.filter(id=golden["C"]).exists()  # erased: nothing left
    assert not RecordHistory.objects.filter(id=ids["C"]).exists()
    assert GoldenHistory.objects.filter(id=golden["D"]).count() == active_history
    assert RecordHistory.objects.filter(id=ids["D"]).count() == d_history == 2
    (entry,) = AuditEntry.objects.filter(action="retention.purge")
    assert entry.detail["days"] == 730 and entry.detail["rows"]["golden_history_erased"] == 1
    # A second run finds nothing more.
    again = StringIO()
    call_command("purge_history", stdout=again)
    assert again.getvalue().splitlines()[-1].startswith("deleted 0 history rows")


def test_nothing_is_purged_within_the_period(aged):
    before = snapshot()
    call_command("purge_history", "--days", str(4 * 365), stdout=StringIO())
    assert snapshot() == before


def test_a_bad_period_is_refused(db):
    with pytest.raises(CommandError, match="at least one day"):
        call_command("purge_history", "--days", "0", stdout=StringIO())
