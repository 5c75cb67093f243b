"""The survivorship rules API: admins only, clear 400s, 409 on a stale version."""

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from mdm.models import GoldenRecord, SurvivorshipJob, SurvivorshipRuleSet

RULES = "/api/v1/customer/survivorship-rules"
PREVIEW = "/api/v1/customer/survivorship-rules/preview"
NEWEST_NAME = {"rules": {"given_name": {"strategy": "most_recent", "tie_breakers": []}}}


def person(role):
    user = User.objects.create_user(f"{role}-user", password="pw")
    user.groups.add(Group.objects.get(name=role))
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def admin_api(db):
    return person("admin")


@pytest.fixture
def goldens(ann_golden):
    return ann_golden


def writes():
    return (
        SurvivorshipRuleSet.objects.count(),
        SurvivorshipRuleSet.history.count(),
        SurvivorshipJob.objects.count(),
        GoldenRecord.history.count(),
        sorted(GoldenRecord.objects.values_list("id", "version", "attributes")),
    )


@pytest.mark.parametrize(
    ("persona", "status"),
    [("anonymous", 401), ("source", 403), ("viewer", 403), ("steward", 403), ("admin", 200)],
)
def test_only_admins_read_and_change_rules(persona, status, api, db):
    client = {"anonymous": APIClient(), "source": api}.get(persona) or person(persona)
    before = writes()

    read = client.get(RULES)
    put = client.put(RULES, {"version": 0, **NEWEST_NAME}, format="json")
    preview = client.post(PREVIEW, NEWEST_NAME, format="json")

    assert (read.status_code, put.status_code, preview.status_code) == (status, status, status)
    if status != 200:
        assert writes() == before


def test_read_lists_every_unit_with_its_rule(admin_api):
    body = admin_api.get(RULES).json()

    assert body["version"] == 0
    assert body["groups"]["address"][:2] == ["address_line1", "address_line2"]
    assert body["rules"]["email"] == {
        "strategy": "source_priority",
        "sources": [],
        "decay_half_life_days": None,
        "tie_breakers": ["most_recent", "most_frequent", "most_complete"],
    }
    assert body["rules"]["consent_email"]["strategy"] == "most_recent"
    assert "city" not in body["rules"]  # part of the address group
    assert "aurum-steward" in body["sources"]
    assert "aggregate" in body["strategies"]


def test_preview_then_save_then_follow_the_job(
    admin_api, goldens, django_capture_on_commit_callbacks
):
    assert goldens.attributes["given_name"] == "Ann"  # crm is more trusted
    before = writes()

    preview = admin_api.post(PREVIEW, NEWEST_NAME, format="json")

    assert preview.status_code == 200
    assert writes() == before
    assert preview.json() == {
        "total": 1,
        "domain_total": 1,
        "estimated": False,
        "changed": 1,
        "provenance_only": 0,
        "attributes": {"given_name": 1},
        "sample": [
            {
                "golden_id": goldens.pk,
                "changed_attributes": ["given_name"],
                "before": {"given_name": "Ann"},
                "after": {"given_name": "Anne"},
                "provenance": {
                    "given_name": {
                        "record": preview.json()["sample"][0]["provenance"]["given_name"]["record"],
                        "source": "erp",
                        "source_key": "X",
                        "rule": "most_recent",
                        "strategy": "most_recent",
                        "competitors": [{"value": "Ann", "source": "crm", "source_key": "A"}],
                    }
                },
            }
        ],
    }

    with django_capture_on_commit_callbacks(execute=False) as queued:
        saved = admin_api.put(
            RULES, {"version": 0, "comment": "newest", **NEWEST_NAME}, format="json"
        )

    assert saved.status_code == 200, saved.json()
    assert len(queued) == 1
    body = saved.json()
    assert (body["version"], body["comment"], body["updated_by"]) == (1, "newest", "admin-user")
    assert body["rules"]["given_name"]["strategy"] == "most_recent"
    assert body["job"]["status"] == "queued"
    job = admin_api.get(f"/api/v1/customer/survivorship-jobs/{body['job']['id']}").json()
    assert (job["rule_version"], job["status"], job["percent"]) == (1, "queued", 0)


def test_a_stale_version_answers_409_and_writes_nothing(admin_api, db):
    assert admin_api.put(RULES, {"version": 0, **NEWEST_NAME}, format="json").status_code == 200
    before = writes()

    response = admin_api.put(RULES, {"version": 0, "rules": {}}, format="json")

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert "version 1, not 0" in response.json()["detail"]
    assert writes() == before


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        (
            {"version": 0, "rules": {"email": {"strategy": "best"}}},
            "rules.email.strategy",
            "rules.email.strategy: Unknown strategy 'best'",
        ),
        (
            {"version": 0, "rules": {"email": {"strategy": "longest", "tie_breakers": ["x"]}}},
            "rules.email.tie_breakers",
            "rules.email.tie_breakers: Unknown tie-breaker 'x'",
        ),
        (
            {"version": 0, "rules": {"email": {"strategy": "source_priority", "sources": ["z"]}}},
            "rules.email.sources",
            "rules.email.sources: Unknown source system 'z'.",
        ),
        ({"rules": {}}, "version", "version: This field is required."),
        ({"version": -1, "rules": {}}, "version", "version: Ensure this value is greater"),
        ({"version": 0, "rules": {"email": "longest"}}, "rules", "rules: email: Expected a"),
    ],
)
def test_a_bad_body_answers_400_naming_the_field(admin_api, body, field, detail):
    before = writes()

    put = admin_api.put(RULES, body, format="json")
    preview = admin_api.post(PREVIEW, body, format="json")

    assert put.status_code == 400
    assert put.json()["error"] == "invalid"
    assert field in put.json()["fields"]
    assert put.json()["detail"].startswith(detail), put.json()["detail"]
    if field != "version":
        assert preview.status_code == 400
        assert field in preview.json()["fields"]
    assert writes() == before


def test_an_unknown_domain_is_404(admin_api):
    assert admin_api.get("/api/v1/planet/survivorship-rules").status_code == 404
    assert admin_api.get("/api/v1/customer/survivorship-jobs/999").status_code == 404


def test_a_golden_record_shows_each_attributes_provenance_with_the_values_it_beat(api, goldens):
    body = api.get(f"/api/v1/customer/golden/{goldens.pk}").json()

    assert body["attributes"]["given_name"] == "Ann"
    assert body["provenance"]["given_name"] == {
        "record": body["provenance"]["given_name"]["record"],
        "source": "crm",
        "source_key": "A",
        "rule": "source_priority",
        "strategy": "source_priority",
        "competitors": [{"value": "Anne", "source": "erp", "source_key": "X"}],
    }


def test_a_long_comment_is_kept_whole_and_the_history_reason_is_cut(admin_api):
    comment = "why " * 200

    response = admin_api.put(RULES, {"version": 0, "rules": {}, "comment": comment}, format="json")

    assert response.status_code == 200, response.content
    row = SurvivorshipRuleSet.objects.get(domain="customer")
    assert row.comment == comment.strip()  # as DRF trims it
    assert row.history.first().history_change_reason == comment.strip()[:100]
