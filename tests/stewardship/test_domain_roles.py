"""Per-domain roles: a steward of the supplier domain only, in the API and the steward pages.

The world: a customer review task between crm's Ann and erp's Anne (a golden record each), a
customer steward correction, a quarantined customer payload, and a supplier review task.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from mdm.models import DomainRole, GoldenOperation, GoldenRecord, QuarantinedPayload, SourceRecord
from mdm.roles import Role, user_domains, user_has_role, user_role_in
from mdm.services.access import domain_role_grant
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.lifecycle import golden_attribute_correct
from mdm.services.user_tokens import user_token_issue
from stewardship.models import ReviewTask, TaskEvent
from tests.stewardship.factories import PASSWORD, pair_task, source, two_people, user_with_role

pytestmark = pytest.mark.django_db


def _supplier_task() -> ReviewTask:
    system = source("plm")
    left, right = (
        SourceRecord.objects.create(
            source_system=system,
            domain="supplier",
            source_key=key,
            attributes={"legal_name": name},
            content_hash=key,
            received_at=timezone.now(),
        )
        for key, name in (("S1", "Acme Ltd"), ("S2", "ACME Limited"))
    )
    golden_records_apply_clusters(domain="supplier", clusters={left.pk: 1, right.pk: 2})
    a, b = sorted([left.pk, right.pk])
    return ReviewTask.objects.create(
        domain="supplier", left_record_id=a, right_record_id=b, match_probability=0.8
    )


@pytest.fixture
def world() -> dict[str, Any]:
    left, right = two_people()
    task = pair_task(left, right)
    admin = user_with_role("boss", "admin")
    golden = GoldenRecord.objects.get(members__record=left)
    op = golden_attribute_correct(
        domain="customer", golden_id=golden.pk, attribute="city", value="Leeds", actor=admin
    )
    payload = QuarantinedPayload.objects.create(
        source_system=left.source_system,
        domain="customer",
        source_key="Q1",
        payload={"source_key": "Q1", "email": "bad"},
        errors=[{"field": "email", "message": "bad", "code": "invalid"}],
    )
    user = user_with_role("sam", None)
    domain_role_grant(user=user, domain="supplier", role="steward")
    return {
        "task": task,
        "supplier_task": _supplier_task(),
        "golden": golden,
        "right": right,
        "op": op,
        "payload": payload,
        "user": user,
    }


def _state() -> tuple[Any, ...]:
    return (
        sorted(ReviewTask.objects.values_list("pk", "status", "assignee_id")),
        GoldenOperation.objects.count(),
        sorted(GoldenRecord.objects.values_list("pk", "version", "status")),
        sorted(QuarantinedPayload.objects.values_list("pk", "status")),
        TaskEvent.objects.count(),
    )


def test_grants_add_to_global_groups() -> None:
    both = user_with_role("vic", "viewer")
    domain_role_grant(user=both, domain="supplier", role="steward")
    fresh = User.objects.get(pk=both.pk)  # no cached roles

    assert user_role_in(fresh, "supplier") is Role.STEWARD
    assert user_role_in(fresh, "customer") is Role.VIEWER
    assert user_has_role(fresh, Role.STEWARD)  # somewhere
    assert not user_has_role(fresh, Role.STEWARD, "customer")
    assert user_domains(fresh, Role.STEWARD) == frozenset({"supplier"})
    assert user_domains(fresh, Role.VIEWER) is None  # every domain


def test_grant_role_command() -> None:
    user_with_role("ann", None)
    out = io.StringIO()

    call_command("grant_role", "ann", "steward", domain="supplier", stdout=out)
    call_command("grant_role", "ann", "admin", domain="supplier", stdout=out)

    assert list(DomainRole.objects.values_list("domain", "role")) == [("supplier", Role.ADMIN)]
    assert "ann is admin of supplier" in out.getvalue()
    with pytest.raises(CommandError, match="unknown domain"):
        call_command("grant_role", "ann", "viewer", domain="nope", stdout=out)
    call_command("grant_role", "ann", domain="supplier", revoke=True, stdout=out)
    assert not DomainRole.objects.exists()


def test_api_hides_and_refuses_other_domains(world: dict[str, Any]) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token_issue(user=world['user']).secret}")
    task, supplier_task = world["task"], world["supplier_task"]
    before = _state()

    listing = api.get("/api/v1/steward/tasks")
    assert [t["id"] for t in listing.json()["results"]] == [supplier_task.pk]
    assert api.get(f"/api/v1/steward/tasks/{task.pk}").status_code == 404
    bodies: dict[str, dict[str, Any]] = {
        "decide": {"decision": "merge"},
        "claim": {},
        "release": {},
        "assign": {"assignee_id": None},
    }
    for command, body in bodies.items():
        response = api.post(f"/api/v1/steward/tasks/{task.pk}/{command}", body, format="json")
        assert response.status_code == 404, command
    bulk = api.post(
        "/api/v1/steward/tasks/decide",
        {"task_ids": [task.pk], "decision": "merge"},
        format="json",
    )
    assert bulk.json() == {
        "decided": [],
        "refused": {str(task.pk): f"there is no review task {task.pk}"},
    }
    golden = world["golden"]
    merge = api.post(
        "/api/v1/customer/golden/merge",
        {"golden_ids": [golden.pk, GoldenRecord.objects.exclude(pk=golden.pk).first().pk]},  # type: ignore[union-attr]
        format="json",
    )
    assert merge.status_code == 403
    assert merge.json()["detail"] == "This needs the steward role in domain customer."
    assert api.get(f"/api/v1/customer/golden/{golden.pk}").status_code == 403
    assert api.get("/api/v1/quarantine").json()["results"] == []
    assert (
        api.post(
            f"/api/v1/quarantine/{world['payload'].pk}/discard", {"reason": "x"}, format="json"
        ).status_code
        == 404
    )
    assert _state() == before

    decided = api.post(
        f"/api/v1/steward/tasks/{supplier_task.pk}/decide",
        {"decision": "not_a_match"},
        format="json",
    )
    assert decided.status_code == 200
    assert ReviewTask.objects.get(pk=supplier_task.pk).status == ReviewTask.Status.DECIDED


def test_a_global_viewer_with_a_supplier_grant_sees_customer_tasks_but_cannot_decide(
    world: dict[str, Any],
) -> None:
    viewer = user_with_role("vic", "viewer")
    domain_role_grant(user=viewer, domain="supplier", role="steward")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token_issue(user=viewer).secret}")
    task = world["task"]

    assert api.get(f"/api/v1/steward/tasks/{task.pk}").status_code == 200
    response = api.post(
        f"/api/v1/steward/tasks/{task.pk}/decide", {"decision": "merge"}, format="json"
    )

    assert response.status_code == 403
    assert "steward role in domain customer" in response.json()["detail"]
    assert ReviewTask.objects.get(pk=task.pk).status == ReviewTask.Status.OPEN


def test_tasks_are_assigned_only_to_stewards_of_their_domain(world: dict[str, Any]) -> None:
    steward = user_with_role("stella", "steward")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token_issue(user=steward).secret}")
    task = world["task"]

    response = api.post(
        f"/api/v1/steward/tasks/{task.pk}/assign", {"assignee_id": world["user"].pk}, format="json"
    )

    assert response.status_code == 400
    assert "steward or admin of domain customer" in response.json()["detail"]
    assert ReviewTask.objects.get(pk=task.pk).assignee_id is None


def test_steward_pages_hide_and_refuse_other_domains(world: dict[str, Any]) -> None:
    client = Client()
    assert client.login(username="sam", password=PASSWORD)
    task, golden, payload = world["task"], world["golden"], world["payload"]
    before = _state()

    assert client.get(f"/steward/tasks/{task.pk}/").status_code == 404
    for command in ("decide", "claim", "release", "assign"):
        response = client.post(f"/steward/tasks/{task.pk}/{command}", {"decision": "merge"})
        assert response.status_code == 404, command
    client.post("/steward/tasks/bulk", {"task": [task.pk], "decision": "merge"})
    assert client.get(f"/steward/golden/{golden.pk}/").status_code == 404
    split = client.post(f"/steward/golden/{golden.pk}/split", {"record": [world["right"].pk]})
    assert split.status_code == 404
    assert client.post(f"/steward/operations/{world['op'].pk}/undo").status_code == 404
    assert client.get(f"/steward/quarantine/{payload.pk}/").status_code == 404
    assert (
        client.post(f"/steward/quarantine/{payload.pk}/discard", {"reason": "x"}).status_code == 404
    )
    assert client.post(f"/steward/quarantine/{payload.pk}/replay").status_code == 404
    quarantine = client.get("/steward/quarantine/")
    assert quarantine.status_code == 200 and "Q1" not in quarantine.content.decode()
    queue = client.get("/steward/queue/matches/")
    assert f"/steward/tasks/{task.pk}/" not in queue.content.decode()
    assert f"/steward/tasks/{world['supplier_task'].pk}/" in queue.content.decode()
    assert client.get("/survivorship/customer/").status_code == 403
    assert _state() == before

    assert client.get(f"/steward/tasks/{world['supplier_task'].pk}/").status_code == 200
