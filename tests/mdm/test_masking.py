"""PII masking by role in the API and the exports (the UI: tests/stewardship/test_views.py
and tests/e2e/test_privacy.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from rest_framework.test import APIClient

from mdm.domains import get_domain
from mdm.masking import mask_document, mask_value
from mdm.models import GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from tests.stewardship.factories import user_with_role

URL = "/api/v1/customer/records"
PERSON = {
    "source_key": "P-1",
    "given_name": "Jane",
    "family_name": "Roe",
    "email": "jane.roe@example.com",
    "phone": "+1 202 555 4567",
    "national_id": "536-22-1234",
    "country": "US",
}
CLEAR = ["jane.roe@example.com", "555 4567", "5554567", "536-22-1234", "536221234", "Jane", "Roe"]


def test_mask_value_by_type():
    customer = get_domain("customer")
    assert mask_value("john@example.com", customer.attribute("email")) == "j***@example.com"
    assert mask_value("+12025554567", customer.attribute("phone")) == "*******4567"
    assert mask_value("536-22-1234", customer.attribute("national_id")) == "***"
    assert mask_value("Jane", customer.attribute("given_name")) == "J***"
    assert mask_value("1990-02-03", customer.attribute("date_of_birth")) == "***"
    assert mask_value(None, customer.attribute("email")) is None
    assert mask_value("", customer.attribute("email")) == ""


def test_mask_document_masks_provenance_and_raw_but_keeps_ids_and_other_attributes():
    doc = {
        "domain": "customer",
        "attributes": {"email": "a@b.com", "country": "GB"},
        "provenance": {
            "email": {
                "record": 3,
                "source": "crm",
                "competitors": [{"value": "x@y.com", "source": "erp"}],
            }
        },
        "raw": {"mail": "a@b.com", "cust_no": 5},
        "changes": {"given_name": {"from": "Ann", "to": "Anne"}},
    }
    assert mask_document(doc) == {
        "domain": "customer",
        "attributes": {"email": "a***@b.com", "country": "GB"},
        "provenance": {
            "email": {
                "record": 3,
                "source": "crm",
                "competitors": [{"value": "x***@y.com", "source": "erp"}],
            }
        },
        "raw": {"mail": "a***@b.com", "cust_no": "***"},
        "changes": {"given_name": {"from": "A***", "to": "A***"}},
    }


@pytest.fixture
def person(api) -> GoldenRecord:
    response = api.post(URL, PERSON, format="json")
    assert response.status_code == 201, response.json()
    record = SourceRecord.objects.get()
    golden_records_apply_clusters(domain="customer", clusters={record.pk: 1})
    bad = {**PERSON, "source_key": "P-9", "date_of_birth": "not a date"}
    assert api.post(URL, bad, format="json").status_code == 422  # quarantined, with the values
    return GoldenRecord.objects.get()


def client_for(role: str | None) -> APIClient:
    client = APIClient()
    if role:
        client.force_authenticate(user_with_role(f"u-{role}", role))
    return client


def reads(golden: GoldenRecord) -> dict[str, str]:
    return {
        "golden": f"/api/v1/customer/golden/{golden.pk}",
        "golden_list": "/api/v1/customer/golden",
        "as_of": f"/api/v1/customer/golden/{golden.pk}?as_of=2999-01-01",
        "timeline": f"/api/v1/customer/golden/{golden.pk}/timeline",
        "records": URL,
        "record": f"{URL}/P-1?source=crm",
        "history": f"{URL}/P-1/history?source=crm",
        "events": "/api/v1/events",
        "quarantine": "/api/v1/quarantine",
    }


def body_of(response: Any) -> str:
    return response.content.decode()


@pytest.mark.parametrize(
    "endpoint",
    [
        "golden",
        "golden_list",
        "as_of",
        "timeline",
        "records",
        "record",
        "history",
        "events",
        "quarantine",
    ],
)
def test_a_viewer_reads_every_api_masked(person, endpoint):
    url = reads(person)[endpoint]

    as_viewer = client_for("viewer").get(url)
    as_steward = client_for("steward").get(url)

    assert as_viewer.status_code == as_steward.status_code == 200
    viewer_body, steward_body = body_of(as_viewer), body_of(as_steward)
    assert "jane.roe@example.com" in steward_body
    for clear in CLEAR:
        assert clear not in viewer_body, (endpoint, clear)
    if endpoint in ("golden", "as_of", "record"):
        attributes = as_viewer.json()["attributes"]
        assert attributes["email"] == "j***@example.com"
        assert attributes["phone"] == "*******4567"
        assert attributes["national_id"] == "***"
        assert attributes["given_name"] == "J***"
        assert attributes["country"] == "US"


@pytest.mark.parametrize("role", ["steward", "admin"])
def test_stewards_and_admins_read_clear_values(person, role):
    data = client_for(role).get(f"/api/v1/customer/golden/{person.pk}").json()
    assert data["attributes"]["email"] == "jane.roe@example.com"
    assert data["attributes"]["national_id"] == person.attributes["national_id"]


def test_a_source_system_reads_its_records_and_golden_records_clear(person, api):
    assert api.get(f"{URL}/P-1").json()["attributes"]["email"] == "jane.roe@example.com"
    golden = api.get(f"/api/v1/customer/golden/{person.pk}").json()
    assert golden["attributes"]["email"] == "jane.roe@example.com"


@pytest.mark.parametrize(("role", "masked"), [("viewer", True), ("steward", False)])
def test_snapshot_export_is_masked_for_viewers(person, role, masked):
    response = client_for(role).get("/api/v1/customer/snapshot")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    (row,) = [orjson.loads(line) for line in body.splitlines()]
    if masked:
        assert row["attributes"]["email"] == "j***@example.com"
        assert row["attributes"]["national_id"] == "***"
        assert all(clear not in body.decode() for clear in CLEAR)
    else:
        assert row["attributes"]["email"] == "jane.roe@example.com"


def test_parquet_snapshot_is_masked_for_viewers(person):
    import io

    import pyarrow.parquet as pq

    response = client_for("viewer").get("/api/v1/customer/snapshot?output=parquet")
    table = pq.read_table(io.BytesIO(b"".join(response.streaming_content)))  # type: ignore[attr-defined]
    (attributes,) = table.column("attributes").to_pylist()
    assert orjson.loads(attributes)["email"] == "j***@example.com"
