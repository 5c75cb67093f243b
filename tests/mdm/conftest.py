"""Shared fixtures of the mdm tests."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from mdm.models import GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.sources import source_system_upsert


@pytest.fixture
def ann_golden(api: APIClient, other_api: APIClient) -> GoldenRecord:
    """One golden record of Ann (crm, trusted: priority 10) and Anne (erp: priority 20)."""
    source_system_upsert(code="crm", priority=10)
    source_system_upsert(code="erp", priority=20)
    body: dict[str, Any] = {"source_key": "A", "given_name": "Ann"}
    api.post("/api/v1/customer/records", body, format="json")
    body = {"source_key": "X", "given_name": "Anne"}
    other_api.post("/api/v1/customer/records", body, format="json")
    clusters = dict.fromkeys(SourceRecord.objects.values_list("id", flat=True), 1)
    golden_records_apply_clusters(domain="customer", clusters=clusters)
    return GoldenRecord.objects.get()
