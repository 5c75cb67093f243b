"""Source systems pushing and reading their records through /api/v1/."""

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from mdm.models import IdempotencyKey, IngestRun, QuarantinedPayload, RecordChange, SourceRecord
from mdm.services.sources import source_token_revoke

URL = "/api/v1/customer/records"
ANN = {"source_key": "C1", "given_name": "Ann", "family_name": "Lee", "email": "Ann@Example.com"}
BOB = {"source_key": "C2", "given_name": "Bob", "phone": "+44 20 7946 0958"}
BAD = {"source_key": "C3", "given_name": "Cy", "email": "cy@@example"}


def nothing_written():
    return (
        SourceRecord.objects.count(),
        IngestRun.objects.count(),
        QuarantinedPayload.objects.count(),
        RecordChange.objects.count(),
        IdempotencyKey.objects.count(),
    ) == (0, 0, 0, 0, 0)


def test_push_one_record_creates_it(api):
    response = api.post(URL, ANN, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["counts"]["created"] == 1
    assert body["results"] == [
        {
            "index": 0,
            "source_key": "C1",
            "status": "created",
            "id": SourceRecord.objects.get().pk,
            "version": 1,
        }
    ]
    assert SourceRecord.objects.get().attributes["email"] == "ann@example.com"


def test_push_a_batch_reports_each_record(api):
    api.post(URL, ANN, format="json")
    changed_ann = {**ANN, "family_name": "Lee-Smith"}

    response = api.post(
        URL, {"records": [changed_ann, BOB, BAD, ANN | {"family_name": "Lee-Smith"}]}, format="json"
    )

    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["source_key"], r["status"]) for r in results] == [
        ("C1", "updated"),
        ("C2", "created"),
        ("C3", "rejected"),
        ("C1", "unchanged"),
    ]
    assert results[2]["errors"][0]["field"] == "email"
    assert QuarantinedPayload.objects.get().pk == results[2]["quarantine_id"]
    assert SourceRecord.objects.get(source_key="C2").attributes["phone"] == "+442079460958"
    assert response.json()["counts"] == {
        "read": 4,
        "created": 1,
        "updated": 1,
        "unchanged": 1,
        "deleted": 0,
        "stale": 0,
        "quarantined": 1,
    }


def test_single_rejected_record_is_422_and_quarantined(api):
    response = api.post(URL, BAD, format="json")

    assert response.status_code == 422
    assert response.json()["results"][0]["status"] == "rejected"
    assert QuarantinedPayload.objects.get().payload == BAD
    assert SourceRecord.objects.count() == 0


def test_idempotent_replay_returns_the_stored_response(api):
    first = api.post(URL, {"records": [ANN, BOB]}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    SourceRecord.objects.filter(source_key="C1")  # nothing else happens in between

    second = api.post(URL, {"records": [ANN, BOB]}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert second.status_code == first.status_code == 200
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert IngestRun.objects.count() == 1
    assert SourceRecord.history.count() == 2


def test_same_idempotency_key_with_another_body_is_409(api):
    api.post(URL, {"records": [ANN]}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    response = api.post(URL, {"records": [BOB]}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 409
    assert "already used with a different request body" in response.json()["detail"]
    assert not SourceRecord.objects.filter(source_key="C2").exists()


def test_idempotency_keys_are_per_source_system(api, other_api):
    api.post(URL, ANN, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    response = other_api.post(URL, BOB, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 201


def test_read_back_own_record_by_source_key(api):
    api.post(URL, ANN, format="json")

    response = api.get(f"{URL}/C1")

    assert response.status_code == 200
    body = response.json()
    assert (body["source"], body["source_key"], body["version"]) == ("crm", "C1", 1)
    assert body["attributes"]["given_name"] == "Ann"
    assert body["raw"] == ANN


def test_source_keys_with_slashes_and_spaces(api):
    api.post(URL, ANN | {"source_key": "ACME/01 7"}, format="json")

    assert api.get(f"{URL}/ACME/01%207").json()["source_key"] == "ACME/01 7"


def test_another_source_systems_record_is_404(api, other_api):
    api.post(URL, ANN, format="json")

    assert other_api.get(f"{URL}/C1").status_code == 404
    assert other_api.delete(f"{URL}/C1").status_code == 404
    assert other_api.get(f"{URL}/C1/history").status_code == 404
    assert other_api.get(URL).json()["results"] == []
    assert SourceRecord.objects.get().is_deleted is False


def test_pushing_the_same_key_from_another_source_is_a_separate_record(api, other_api):
    api.post(URL, ANN, format="json")

    response = other_api.post(URL, ANN | {"given_name": "Anne"}, format="json")

    assert response.status_code == 201
    assert sorted(
        SourceRecord.objects.values_list("source_system__code", "attributes__given_name")
    ) == [
        ("crm", "Ann"),
        ("erp", "Anne"),
    ]


def test_delete_tombstones_and_is_repeatable(api):
    api.post(URL, ANN, format="json")

    first = api.delete(f"{URL}/C1")
    second = api.delete(f"{URL}/C1")

    assert first.status_code == second.status_code == 200
    assert first.json()["is_deleted"] is True
    record = SourceRecord.objects.get()
    assert (record.is_deleted, record.version) == (True, 2)
    assert RecordChange.objects.filter(kind="delete").count() == 1
    assert api.delete(f"{URL}/nope").status_code == 404


def test_repushing_a_tombstoned_record_revives_it(api):
    api.post(URL, ANN, format="json")
    api.delete(f"{URL}/C1")

    response = api.post(URL, ANN, format="json")

    assert response.json()["results"][0]["status"] == "updated"
    assert SourceRecord.objects.get().is_deleted is False


def test_history_lists_every_version(api):
    api.post(URL, ANN, format="json")
    api.post(URL, ANN | {"family_name": "Ray"}, format="json")

    history = api.get(f"{URL}/C1/history").json()

    assert [(h["version"], h["history_type"], h["attributes"]["family_name"]) for h in history] == [
        (2, "changed", "Ray"),
        (1, "created", "Lee"),
    ]


def test_no_token_is_401_and_nothing_is_written(make_client, db):
    response = make_client().post(URL, ANN, format="json")

    assert response.status_code == 401
    assert nothing_written()


def test_bad_or_revoked_token_is_401(make_client, token):
    assert make_client("aur_beef_nope").post(URL, ANN, format="json").status_code == 401
    source_token_revoke(token=token.token)

    response = make_client(token.secret).post(URL, ANN, format="json")

    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"
    assert nothing_written()


def test_unknown_domain_is_404(api):
    response = api.post("/api/v1/starship/records", ANN, format="json")

    assert response.status_code == 404
    assert "starship" in response.json()["detail"]
    assert nothing_written()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([ANN], "non_field_errors"),
        ({"records": []}, "records"),
        ({"records": "C1"}, "records"),
        ({"records": [ANN, 5]}, "records"),
    ],
)
def test_malformed_bodies_are_400_and_nothing_is_written(api, body, field):
    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert nothing_written()


def test_broken_json_is_400(api):
    response = api.post(URL, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]
    assert nothing_written()


@override_settings(AURUM_MAX_REQUEST_BYTES=200)
def test_too_large_body_is_413(api):
    response = api.post(URL, {"records": [ANN, BOB, ANN, BOB]}, format="json")

    assert response.status_code == 413
    assert "limit is 200" in response.json()["detail"]
    assert nothing_written()


@override_settings(AURUM_MAX_BATCH_RECORDS=2)
def test_too_many_records_is_413(api):
    response = api.post(URL, {"records": [ANN, BOB, BAD]}, format="json")

    assert response.status_code == 413
    assert "limit is 2 per request" in response.json()["detail"]
    assert nothing_written()


def test_a_staff_user_cannot_push_as_a_source(client, db):
    user = get_user_model().objects.create_superuser("root", "r@example.com", "pw")
    client.force_login(user)

    response = client.post(URL, ANN, content_type="application/json")

    assert response.status_code == 403
    assert nothing_written()


def test_staff_read_a_record_with_its_source(api, client, db):
    api.post(URL, ANN, format="json")
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))

    assert client.get(f"{URL}/C1").status_code == 400
    assert client.get(f"{URL}/C1?source=crm").json()["source_key"] == "C1"
    assert client.get(f"{URL}/C1?source=erp").status_code == 404


def test_ingest_runs_are_visible_to_their_source_only(api, other_api):
    api.post(URL, {"records": [ANN, BAD]}, format="json")

    mine = api.get("/api/v1/ingest-runs").json()["results"]
    theirs = other_api.get("/api/v1/ingest-runs").json()["results"]

    assert [
        (r["channel"], r["status"], r["created_count"], r["quarantined_count"]) for r in mine
    ] == [("api", "partial", 1, 1)]
    assert theirs == []
    assert other_api.get(f"/api/v1/ingest-runs/{mine[0]['id']}").status_code == 404


def test_schema_and_docs_are_served_without_a_cdn(client, db):
    schema = client.get("/api/v1/schema")
    docs = client.get("/api/v1/docs")

    assert schema.status_code == 200
    assert b"/api/v1/{domain}/records" in schema.content
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()
    assert b"/static/drf_spectacular_sidecar/" in docs.content


def test_domains_endpoint_lists_attributes(api):
    domains = {d["code"]: d for d in api.get("/api/v1/domains").json()}

    assert set(domains) == {"customer", "supplier", "product"}
    email = next(a for a in domains["customer"]["attributes"] if a["name"] == "email")
    assert (email["type"], email["pii"]) == ("email", True)
