"""The steward commands on golden records through the API: who may, what they answer."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework.test import APIClient

from mdm.models import CrossReference, GoldenOperation, GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.user_tokens import user_token_issue, user_token_revoke

URL = "/api/v1/customer/records"
GOLDEN = "/api/v1/customer/golden"


def hub_user(name, role=None, superuser=False):
    user = User.objects.create_user(name, password="pw", is_superuser=superuser)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def records(api):
    people = [
        {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "email": "ann@example.com"},
        {"source_key": "B", "given_name": "Anne", "family_name": "Lee"},
        {"source_key": "C", "given_name": "Bob", "family_name": "Ray"},
    ]
    api.post(URL, {"records": people}, format="json")
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    golden_records_apply_clusters(
        domain="customer", clusters={ids["A"]: 1, ids["B"]: 1, ids["C"]: 2}
    )
    return ids


def golden_of(records, key):
    return CrossReference.objects.get(record_id=records[key]).golden_id


@pytest.fixture
def steward_api():
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {user_token_issue(user=hub_user('stella', 'steward')).secret}"
    )
    return client


def persona_client(persona, api):
    if persona == "source":
        return api
    client = APIClient()
    if persona == "anonymous":
        return client
    user = {
        "viewer": lambda: hub_user("vic", "viewer"),
        "steward": lambda: hub_user("stu", "steward"),
        "admin": lambda: hub_user("ada", superuser=True),
    }[persona]()
    client.force_login(user)  # session authentication
    return client


@pytest.mark.parametrize(
    ("persona", "status"),
    [("anonymous", 401), ("source", 403), ("viewer", 403), ("steward", 200), ("admin", 200)],
)
def test_only_stewards_and_admins_may_merge(records, api, persona, status):
    ab, c = golden_of(records, "A"), golden_of(records, "C")

    response = persona_client(persona, api).post(
        f"{GOLDEN}/merge", {"golden_ids": [ab, c]}, format="json"
    )

    assert response.status_code == status, response.content
    merged = status == 200
    assert GoldenOperation.objects.count() == (1 if merged else 0)
    assert GoldenRecord.objects.get(pk=c).status == ("retired" if merged else "active")


def test_merge_answers_with_the_operation_and_the_golden_records(records, steward_api):
    ab, c = golden_of(records, "A"), golden_of(records, "C")
    version = GoldenRecord.objects.get(pk=ab).version

    response = steward_api.post(
        f"{GOLDEN}/merge",
        {
            "golden_ids": [ab, c],
            "target_id": ab,
            "reason": "same person",
            "expected_versions": {str(ab): version},
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    op = body["operation"]
    assert (op["kind"], op["actor"], op["reason"], op["target"], op["golden_ids"]) == (
        "merge",
        "stella",
        "same person",
        ab,
        [ab, c],
    )
    assert [(g["id"], g["status"]) for g in body["golden_records"]] == [
        (ab, "active"),
        (c, "retired"),
    ]
    assert body["golden_records"][0]["version"] == version + 1
    assert sorted(m["source_key"] for m in body["golden_records"][0]["members"]) == ["A", "B", "C"]


def test_a_stale_version_gets_409_and_changes_nothing(records, steward_api):
    ab, c = golden_of(records, "A"), golden_of(records, "C")
    stale = GoldenRecord.objects.get(pk=ab).version - 1  # read before its last change

    response = steward_api.post(
        f"{GOLDEN}/merge",
        {"golden_ids": [ab, c], "expected_versions": {str(ab): stale}},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert "changed since you read it" in response.json()["detail"]
    assert not GoldenOperation.objects.exists()
    assert GoldenRecord.objects.get(pk=c).status == "active"


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("merge", {"golden_ids": [1]}, 400, "golden_ids"),
        ("merge", {"golden_ids": [99999, 99998]}, 404, "no customer golden record"),
        ("{ab}/split", {"record_ids": []}, 400, "record_ids"),
        ("{ab}/split", {"record_ids": ["{A}", "{B}"]}, 400, "at least one record behind"),
        ("{ab}/split", {"record_ids": ["{C}"]}, 409, "not members"),
        ("{ab}/correct", {"attribute": "email", "value": "nope"}, 400, "email"),
        ("{ab}/correct", {"attribute": "colour", "value": "red"}, 400, "unknown attribute"),
    ],
)
def test_bad_commands_say_what_to_fix(records, steward_api, path, body, status, fragment):
    ab = golden_of(records, "A")
    fill = {"ab": ab, **{k: v for k, v in records.items()}}
    body = {
        k: [int(str(x).format(**fill)) for x in v] if isinstance(v, list) else v
        for k, v in body.items()
    }

    response = steward_api.post(f"{GOLDEN}/{path.format(**fill)}", body, format="json")

    assert response.status_code == status, response.content
    assert fragment in str(response.json())
    assert not GoldenOperation.objects.exists()


def test_split_correct_and_undo_through_the_api(records, steward_api):
    ab = golden_of(records, "A")

    split = steward_api.post(
        f"{GOLDEN}/{ab}/split", {"record_ids": [records["B"]], "reason": "twins"}, format="json"
    )
    assert split.status_code == 200, split.content
    new = split.json()["operation"]["target"]
    assert golden_of(records, "B") == new

    corrected = steward_api.post(
        f"{GOLDEN}/{ab}/correct", {"attribute": "given_name", "value": "Annie"}, format="json"
    )
    assert corrected.status_code == 200, corrected.content
    golden = corrected.json()["golden_records"][0]
    assert golden["attributes"]["given_name"] == "Annie"
    assert golden["provenance"]["given_name"]["source"] == "aurum-steward"

    undo = steward_api.post(
        f"{GOLDEN}/operations/{split.json()['operation']['id']}/undo", {}, format="json"
    )
    assert undo.status_code == 409  # the correction changed the golden record since
    correction = corrected.json()["operation"]["id"]
    assert steward_api.post(f"{GOLDEN}/operations/{correction}/undo").status_code == 200
    undo = steward_api.post(f"{GOLDEN}/operations/{split.json()['operation']['id']}/undo")
    assert undo.status_code == 200, undo.content
    assert golden_of(records, "B") == ab
    assert GoldenRecord.objects.get(pk=ab).attributes["given_name"] == "Ann"

    listed = steward_api.get(f"{GOLDEN}/operations", {"golden": ab}).json()["results"]
    assert [op["kind"] for op in listed] == ["undo", "undo", "correct", "split"]
    assert listed[-1]["undone_by"] == listed[0]["id"]


def test_as_of_reads_the_golden_record_as_it_was(records, steward_api, api):
    ab, c = golden_of(records, "A"), golden_of(records, "C")
    before = timezone.now()
    old = steward_api.get(f"{GOLDEN}/{ab}").json()
    steward_api.post(f"{GOLDEN}/merge", {"golden_ids": [ab, c]}, format="json")

    then = api.get(f"{GOLDEN}/{ab}", {"as_of": before.isoformat()})
    retired_then = api.get(f"{GOLDEN}/{c}", {"as_of": before.isoformat()})
    now = api.get(f"{GOLDEN}/{ab}")

    assert then.status_code == 200, then.content
    body = then.json()
    assert (body["version"], body["attributes"], body["status"]) == (
        old["version"],
        old["attributes"],
        "active",
    )
    assert sorted(m["source_key"] for m in body["members"]) == ["A", "B"]
    assert sorted(m["source_key"] for m in retired_then.json()["members"]) == ["C"]
    assert retired_then.json()["status"] == "active"
    assert sorted(m["source_key"] for m in now.json()["members"]) == ["A", "B", "C"]
    assert api.get(f"{GOLDEN}/{ab}", {"as_of": "2000-01-01"}).status_code == 404
    assert api.get(f"{GOLDEN}/{ab}", {"as_of": "yesterday"}).status_code == 400


def test_timeline_says_what_changed_why_and_who(records, steward_api):
    ab, c = golden_of(records, "A"), golden_of(records, "C")
    merge = steward_api.post(
        f"{GOLDEN}/merge", {"golden_ids": [ab, c], "reason": "dupes"}, format="json"
    ).json()["operation"]
    steward_api.post(
        f"{GOLDEN}/{ab}/correct", {"attribute": "family_name", "value": "Leigh"}, format="json"
    )

    timeline = steward_api.get(f"{GOLDEN}/{ab}/timeline").json()

    kinds = [(e["kind"], e["user"]) for e in timeline]
    assert kinds[:2] == [("correction", "stella"), ("merge", "stella")]
    assert kinds[-1] == ("created", None)
    correction, merged = timeline[0], timeline[1]
    assert correction["changes"]["family_name"] == {"from": "Lee", "to": "Leigh"}
    assert len(correction["members_added"]) == 1  # the steward record
    assert merged["members_added"] == [records["C"]]
    assert merged["reason"] == f"merge #{merge['id']}: dupes"
    assert merged["operation_id"] == merge["id"]
    assert [e["version"] for e in timeline] == sorted(
        (e["version"] for e in timeline), reverse=True
    )
    retired = steward_api.get(f"{GOLDEN}/{c}/timeline").json()[0]
    assert (retired["kind"], retired["status"], retired["survivor_id"]) == (
        "merge",
        "retired",
        ab,
    )
    assert retired["members_removed"] == [records["C"]]


def test_a_revoked_user_token_is_refused(records):
    issued = user_token_issue(user=hub_user("sam", "steward"))
    user_token_revoke(token=issued.token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")

    response = client.post(f"{GOLDEN}/merge", {"golden_ids": [1, 2]}, format="json")

    assert response.status_code == 401
    assert not GoldenOperation.objects.exists()


def test_the_commands_are_in_the_openapi_schema(db):
    client = APIClient()
    client.force_login(hub_user("vera", "viewer"))

    schema = client.get("/api/v1/schema", {"format": "json"}).json()

    paths = schema["paths"]
    for path in (
        "/api/v1/{domain}/golden/merge",
        "/api/v1/{domain}/golden/{id}/split",
        "/api/v1/{domain}/golden/{id}/correct",
        "/api/v1/{domain}/golden/operations/{id}/undo",
        "/api/v1/{domain}/golden/{id}/timeline",
    ):
        assert path in paths
    assert "as_of" in {
        p["name"] for p in paths["/api/v1/{domain}/golden/{id}"]["get"]["parameters"]
    }
    assert "userToken" in schema["components"]["securitySchemes"]


def test_issue_user_token_command_issues_and_revokes(records):
    from io import StringIO

    from django.core.management import call_command

    from mdm.models import UserToken

    hub_user("sue", "steward")
    out = StringIO()
    call_command("issue_user_token", "sue", stdout=out)
    secret = out.getvalue().strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    ab, c = golden_of(records, "A"), golden_of(records, "C")
    assert client.get(f"{GOLDEN}/{ab}/timeline").status_code == 200

    call_command("issue_user_token", "--revoke", UserToken.objects.get().prefix, stdout=out)

    assert client.post(f"{GOLDEN}/merge", {"golden_ids": [ab, c]}, format="json").status_code == 401


def test_admin_lists_the_operations(records, client):
    admin = hub_user("root", superuser=True)
    admin.is_staff = True
    admin.save()
    from mdm.services.lifecycle import golden_record_merge

    golden_record_merge(
        domain="customer",
        golden_ids=[golden_of(records, "A"), golden_of(records, "C")],
        actor=admin,
    )
    client.force_login(admin)

    page = client.get("/admin/mdm/goldenoperation/")

    assert page.status_code == 200
    assert b"merge" in page.content
