"""Filing erasure requests: who may, by which identifier, and the errors (the full trace
search is tests/mdm/test_erasure.py)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from mdm.audit.models import AuditEntry
from mdm.models import ErasureRequest, GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from sync.models import ChangeEvent
from tests.stewardship.factories import PASSWORD, user_with_role

URL = "/api/v1/customer/records"


@pytest.fixture
def people(api, other_api) -> dict[str, int]:
    """Jane (crm P-1 and erp E-1, one golden record) and John (crm P-2)."""
    for client, body in (
        (api, {"source_key": "P-1", "given_name": "Jane", "email": "jane@example.com"}),
        (other_api, {"source_key": "E-1", "given_name": "Jane", "email": "jane@example.com"}),
        (api, {"source_key": "P-2", "given_name": "John", "email": "john@example.com"}),
    ):
        assert client.post(URL, body, format="json").status_code == 201
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    golden_records_apply_clusters(
        domain="customer", clusters={ids["P-1"]: 1, ids["E-1"]: 1, ids["P-2"]: 2}
    )
    return {key: GoldenRecord.objects.get(members__record_id=pk).pk for key, pk in ids.items()}


def admin_api() -> APIClient:
    from django.contrib.auth.models import User

    user = User.objects.filter(username="ada").first() or user_with_role("ada", "admin")
    client = APIClient()
    client.force_authenticate(user)
    return client


def nothing_erased() -> None:
    assert ErasureRequest.objects.count() == 0
    assert not AuditEntry.objects.filter(action="erasure.completed").exists()
    assert not ChangeEvent.objects.filter(kind="erased").exists()
    assert SourceRecord.objects.filter(is_deleted=True).count() == 0


def test_admin_erases_by_golden_id_and_only_that_person(people):
    response = admin_api().post(
        "/api/v1/customer/erasures", {"golden_id": people["P-1"]}, format="json"
    )

    assert response.status_code == 201, response.json()
    jane, john = (
        GoldenRecord.objects.get(pk=people["P-1"]),
        GoldenRecord.objects.get(pk=people["P-2"]),
    )
    assert (jane.status, jane.attributes) == ("retired", {})
    assert john.attributes["email"] == "john@example.com" and john.status == "active"
    assert SourceRecord.objects.get(source_key="P-2").attributes["given_name"] == "John"
    assert SourceRecord.objects.filter(is_deleted=True).count() == 2
    assert ChangeEvent.objects.filter(kind="erased").count() == 1
    listed = admin_api().get("/api/v1/customer/erasures").json()["results"]
    assert [(e["golden_id"], e["requested_by"]) for e in listed] == [(people["P-1"], "ada")]


@pytest.mark.parametrize("role", [None, "viewer", "steward"])
def test_only_admins_may_erase(people, role):
    client = APIClient()
    if role:
        client.force_authenticate(user_with_role("u", role))
    response = client.post("/api/v1/customer/erasures", {"golden_id": people["P-1"]}, format="json")
    assert response.status_code in ((401, 403) if role is None else (403,))
    nothing_erased()


def test_a_source_system_may_not_erase(people, api):
    response = api.post("/api/v1/customer/erasures", {"golden_id": people["P-1"]}, format="json")
    assert response.status_code == 403
    nothing_erased()


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({}, 400, "Give either golden_id, or source and source_key (not both)."),
        ({"golden_id": 1, "source": "crm", "source_key": "P-1"}, 400, "Give either golden_id"),
        ({"source": "crm"}, 400, "Give both source and source_key."),
        ({"golden_id": 999999}, 404, "there is no customer golden record 999999"),
        ({"source": "crm", "source_key": "nope"}, 404, "no matched customer record"),
    ],
)
def test_bad_requests_say_what_to_fix_and_erase_nothing(people, body, status, detail):
    response = admin_api().post("/api/v1/customer/erasures", body, format="json")
    assert response.status_code == status
    assert detail in response.json()["detail"]
    nothing_erased()


def test_a_second_erasure_is_refused(people):
    client = admin_api()
    body = {"source": "erp", "source_key": "E-1"}
    assert client.post("/api/v1/customer/erasures", body, format="json").status_code == 201
    again = client.post("/api/v1/customer/erasures", {"golden_id": people["P-1"]}, format="json")
    assert again.status_code == 409
    assert ErasureRequest.objects.count() == 1


def test_a_golden_record_erased_with_its_survivor_is_not_erased_again(people):
    admin = user_with_role("ada", "admin")
    from mdm.services.lifecycle import golden_record_merge

    golden_record_merge(
        domain="customer",
        golden_ids=[people["P-1"], people["P-2"]],
        actor=admin,
        target_id=people["P-1"],
    )
    client = admin_api()
    assert (
        client.post(
            "/api/v1/customer/erasures", {"golden_id": people["P-1"]}, format="json"
        ).status_code
        == 201
    )
    again = client.post("/api/v1/customer/erasures", {"golden_id": people["P-2"]}, format="json")
    assert again.status_code == 409
    assert again.json()["detail"] == f"golden record {people['P-2']} was erased already"
    assert ErasureRequest.objects.count() == 1


def test_management_command(people):
    out = StringIO()
    call_command("erase_person", "customer", "--source", "crm", "--key", "P-2", stdout=out)
    erasure = ErasureRequest.objects.get()
    assert out.getvalue().startswith(
        f"erased customer golden record {people['P-2']} (request {erasure.pk},"
    )
    assert AuditEntry.objects.get(action="erasure.completed").actor == "manage.py erase_person"
    with pytest.raises(CommandError, match="erased already"):
        call_command("erase_person", "customer", "--golden", str(people["P-2"]), stdout=out)
    with pytest.raises(CommandError, match="either a golden id"):
        call_command("erase_person", "customer", stdout=out)


def test_the_golden_page_has_an_erase_button_for_admins_only(people):
    url = f"/steward/golden/{people['P-1']}/"
    for role, shown in (("viewer", False), ("steward", False), ("admin", True)):
        user_with_role(role, role)
        client = Client()
        client.login(username=role, password=PASSWORD)
        assert ('id="erase"' in client.get(url).content.decode()) is shown
        response = client.post(f"/steward/golden/{people['P-1']}/erase", {"reference": "DSR-1"})
        if not shown:
            assert response.status_code == 403
            nothing_erased()
    assert ErasureRequest.objects.get().reference == "DSR-1"
    assert GoldenRecord.objects.get(pk=people["P-1"]).attributes == {}


def test_an_opt_out_propagates_to_subscribers_like_any_change(people, api):
    """Consent attributes are ordinary attributes: withdrawing consent is a golden change."""
    body = {
        "source_key": "P-2",
        "given_name": "John",
        "email": "john@example.com",
        "consent_marketing": False,
    }
    assert api.post(URL, body, format="json").status_code == 200
    from mdm.services.golden import golden_records_rebuild

    golden_records_rebuild(domain="customer", golden_ids=[people["P-2"]], reason="ingest")
    from sync.selectors import event_payloads

    events = list(ChangeEvent.objects.filter(golden_id=people["P-2"]).order_by("id"))
    last = event_payloads(events)[events[-1].pk]
    assert last["type"] == "golden.updated"
    assert last["changed"] == ["consent_marketing"]
    assert last["golden"]["attributes"]["consent_marketing"] is False


def test_an_erased_persons_links_go_with_their_history(people):
    from mdm.models import GoldenRelationship
    from mdm.services.relationships import golden_relationship_add

    steward = user_with_role("sam", "steward")
    link = golden_relationship_add(
        domain="customer",
        from_golden_id=people["P-1"],
        rel_type="member_of_household",
        to_golden_id=people["P-2"],
        actor=steward,
    )
    history = GoldenRelationship.history.model

    response = admin_api().post(
        "/api/v1/customer/erasures", {"golden_id": people["P-1"]}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert not GoldenRelationship.objects.filter(pk=link.pk).exists()
    assert not history.objects.filter(id=link.pk).exists()
    assert GoldenRecord.objects.get(pk=people["P-2"]).status == "active"
