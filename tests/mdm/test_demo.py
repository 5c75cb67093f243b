"""The demo data loads as the README says, and loading it again changes nothing."""

import csv
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from mdm.models import IngestRun, QuarantinedPayload, SourceMapping, SourceRecord, SourceSystem

FIXTURES = Path(settings.BASE_DIR) / "fixtures"


@pytest.mark.slow
def test_load_demo_loads_every_source_and_is_repeatable(db):
    out = StringIO()
    call_command("load_demo", "--no-match", stdout=out)

    assert sorted(SourceSystem.objects.values_list("code", flat=True)) == [
        "billing",
        "crm",
        "erp",
        "pim",
        "webshop",
    ]
    assert SourceMapping.objects.count() == 8
    bad_rows = list(csv.DictReader((FIXTURES / "bad_rows.csv").open()))
    assert QuarantinedPayload.objects.count() == len(bad_rows)
    truth_rows = sum(1 for _ in (FIXTURES / "ground_truth.csv").open()) - 1
    tombstones_never_seen = sum(r.unchanged_count for r in IngestRun.objects.all())
    assert SourceRecord.objects.count() == truth_rows - len(bad_rows) - tombstones_never_seen
    assert set(SourceRecord.objects.values_list("domain", flat=True)) == {
        "customer",
        "supplier",
        "product",
    }
    assert "Demo login: admin / aurum-demo" in out.getvalue()
    assert get_user_model().objects.get(username="admin").check_password("aurum-demo")
    records_before = SourceRecord.objects.count()
    history_before = SourceRecord.history.count()

    call_command("load_demo", "--no-tokens", "--no-match", stdout=StringIO())

    assert SourceRecord.objects.count() == records_before
    assert SourceRecord.history.count() == history_before
    assert QuarantinedPayload.objects.count() == len(bad_rows)
    last_runs = IngestRun.objects.order_by("-id")[:8]
    assert all(r.created_count == r.updated_count == 0 for r in last_runs)
