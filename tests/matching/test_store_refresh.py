"""The process's match store follows what is ingested, changed and deleted through the API.

fake_1000 (shared data) pushed as customer records, a real model trained on them, then
search-before-create before and after each change: the store catches up through the
source-record history before every use, with no rebuild.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from matching.services import _trained, match_model_active, match_model_train, match_search
from matching.store import store_for, stores_clear
from mdm.domains import get_domain
from mdm.models import SourceRecord
from tests.matching.conftest import fake_1000_rows

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_stores():
    stores_clear()
    yield
    stores_clear()


@pytest.fixture
def people(api: APIClient, settings: Any) -> dict[str, dict[str, Any]]:
    settings.AURUM_MATCH_AFTER_INGEST = False
    rows = fake_1000_rows()
    records = {
        f"P{row['unique_id']}": {
            "source_key": f"P{row['unique_id']}",
            "given_name": row["first_name"] or None,
            "family_name": row["surname"] or None,
            "date_of_birth": row["dob"] or None,
            "city": row["city"] or None,
        }
        for row in rows
    }
    response = api.post(
        "/api/v1/customer/records", {"records": list(records.values())}, format="json"
    )
    assert response.status_code in (200, 201, 207), response.content
    match_model_train(domain="customer")
    return records


def found(attributes: dict[str, Any]) -> dict[str, float]:
    """Source key -> probability of each search result."""
    _, matches = match_search(domain="customer", attributes=attributes, min_probability=0.0)
    return {m.source_key: m.match_probability for m in matches}


def store_size() -> int:
    model = match_model_active(domain="customer")
    spec = get_domain("customer").match
    assert spec is not None
    return len(store_for("customer", model, spec, _trained(model)))


def test_the_store_follows_ingest_change_and_delete(
    api: APIClient, people: dict[str, dict[str, Any]]
) -> None:
    live = SourceRecord.objects.filter(domain="customer", is_deleted=False).count()
    anna = {"given_name": "Annabella", "family_name": "Quickthorpe", "date_of_birth": "1971-03-04"}
    assert "NEW-1" not in found(anna)  # builds the store
    assert store_size() == live

    # Ingested: found at once.
    response = api.post(
        "/api/v1/customer/records", {"source_key": "NEW-1", "city": "Leeds", **anna}, format="json"
    )
    assert response.status_code == 201, response.content
    assert found(anna)["NEW-1"] > 0.9
    assert store_size() == live + 1

    # Changed: found under its new names only.
    before = {k: v for k, v in people["P1"].items() if k != "source_key"}
    assert "P1" in found(before)
    renamed = {**people["P1"], "given_name": "Zacharias", "family_name": "Wolkenstein"}
    renamed["date_of_birth"] = "1901-01-01"
    renamed["city"] = "Nowhere"
    response = api.post("/api/v1/customer/records", renamed, format="json")
    assert response.status_code == 200, response.content
    assert "P1" not in found(before)
    assert "P1" in found({k: v for k, v in renamed.items() if k != "source_key"})

    # Deleted: gone.
    assert api.delete("/api/v1/customer/records/NEW-1").status_code in (200, 204)
    assert "NEW-1" not in found(anna)
    assert store_size() == live
