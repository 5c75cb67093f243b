"""Mass assignment: every writable endpoint refuses (400, naming the field) what the hub owns
(ids, golden id, source system, status, version, actor...), and nothing changes.

A source record's own payload is the exception by design: an unknown attribute there rejects
the record into quarantine (422) instead, like any other bad field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mdm.models import QuarantinedPayload, SourceRecord
from stewardship.models import ReviewTask
from tests.test_api_personas import World, _fingerprint, world  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

Case = tuple[str, str, Callable[[dict[str, Any]], str], Callable[[dict[str, Any]], Any], str]

CASES: list[Case] = [
    (
        "source",
        "post",
        lambda i: "/api/v1/customer/records",
        lambda i: {"records": [{"source_key": "N", "given_name": "Nia"}], "source_system": "erp"},
        "source_system",
    ),
    (
        "admin",
        "post",
        lambda i: f"/api/v1/quarantine/{i['quarantine']}/replay",
        lambda i: {"payload": {"source_key": "Q", "email": "q@example.com"}, "status": "replayed"},
        "status",
    ),
    (
        "admin",
        "post",
        lambda i: f"/api/v1/quarantine/{i['quarantine']}/discard",
        lambda i: {"reason": "junk", "resolved_by": 1},
        "resolved_by",
    ),
    (
        "admin",
        "put",
        lambda i: "/api/v1/customer/survivorship-rules",
        lambda i: {"version": 0, "rules": {}, "id": 7},
        "id",
    ),
    (
        "admin",
        "post",
        lambda i: "/api/v1/customer/golden/merge",
        lambda i: {"golden_ids": [i["ann"], i["bob"]], "id": 99, "status": "retired"},
        "id",
    ),
    (
        "admin",
        "post",
        lambda i: f"/api/v1/customer/golden/{i['ann']}/split",
        lambda i: {"record_ids": [i["x"]], "golden_id": i["bob"]},
        "golden_id",
    ),
    (
        "admin",
        "post",
        lambda i: f"/api/v1/customer/golden/{i['ann']}/correct",
        lambda i: {"attribute": "city", "value": "York", "version": 9, "source_system": "erp"},
        "version",
    ),
    (
        "admin",
        "post",
        lambda i: f"/api/v1/customer/golden/operations/{i['op']}/undo",
        lambda i: {"reason": "oops", "actor": 1},
        "actor",
    ),
    (
        "admin",
        "post",
        lambda i: f"/api/v1/steward/tasks/{i['task']}/decide",
        lambda i: {"decision": "merge", "status": "decided", "decided_by": 1},
        "status",
    ),
    (
        "admin",
        "post",
        lambda i: f"/api/v1/steward/tasks/{i['task']}/assign",
        lambda i: {"assignee_id": None, "domain": "supplier"},
        "domain",
    ),
    (
        "admin",
        "post",
        lambda i: "/api/v1/steward/tasks/decide",
        lambda i: {"task_ids": [i["task"]], "decision": "merge", "decided_by": 1},
        "decided_by",
    ),
    (
        "source",
        "post",
        lambda i: "/api/v1/events/ack",
        lambda i: {"consumer": "crm-pull", "seq": 1, "acked_seq": 99},
        "acked_seq",
    ),
    (
        "source",
        "post",
        lambda i: "/api/v1/customer/match",
        lambda i: {"attributes": {"given_name": "Ann"}, "golden_id": i["ann"]},
        "golden_id",
    ),
    (
        "admin",
        "post",
        lambda i: f"/api/v1/source-tokens/{i['crm_token']}/rotate",
        lambda i: {"old_valid_hours": 1, "prefix": "deadbeef"},
        "prefix",
    ),
    (
        "admin",
        "post",
        lambda i: "/api/v1/user-tokens",
        lambda i: {"username": "viewer", "user_id": 1},
        "user_id",
    ),
]


@pytest.mark.parametrize(
    ("persona", "method", "url", "body", "field"),
    CASES,
    ids=[f"{c[1]} {c[4]}" for c in CASES],
)
def test_hub_owned_fields_are_refused(
    world: World,  # noqa: F811 - the fixture imported above
    persona: str,
    method: str,
    url: Callable[[dict[str, Any]], str],
    body: Callable[[dict[str, Any]], Any],
    field: str,
) -> None:
    before = _fingerprint()

    response = getattr(world.clients[persona], method)(
        url(world.ids), body(world.ids), format="json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid"
    assert field in response.json()["fields"]
    assert _fingerprint() == before


def test_a_record_cannot_claim_another_system_a_golden_id_or_a_status(world: World) -> None:  # noqa: F811
    before = SourceRecord.objects.count()
    body = {
        "source_key": "N",
        "given_name": "Nia",
        "source_system": "erp",
        "golden_id": world.ids["ann"],
        "is_deleted": True,
        "version": 7,
    }

    response = world.clients["source"].post("/api/v1/customer/records", body, format="json")

    assert response.status_code == 422
    result = response.json()["results"][0]
    assert result["status"] == "rejected"
    assert {e["field"] for e in result["errors"]} == {
        "source_system",
        "golden_id",
        "is_deleted",
        "version",
    }
    assert SourceRecord.objects.count() == before
    held = QuarantinedPayload.objects.get(pk=result["quarantine_id"])
    assert held.source_system.code == "crm"


def test_claim_takes_no_body_and_claims_for_the_caller(world: World) -> None:  # noqa: F811
    response = world.clients["steward"].post(
        f"/api/v1/steward/tasks/{world.ids['task']}/claim",
        {"assignee_id": 12345, "assignee": "admin"},
        format="json",
    )

    assert response.status_code == 200
    task = ReviewTask.objects.select_related("assignee").get(pk=world.ids["task"])
    assert task.assignee is not None and task.assignee.username == "steward"
