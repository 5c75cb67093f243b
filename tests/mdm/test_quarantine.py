"""Fixing and replaying, or discarding, quarantined payloads (service and API)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from mdm.models import IngestRun, QuarantinedPayload, SourceRecord
from mdm.services.quarantine import (
    QuarantineStateError,
    quarantined_payload_discard,
    quarantined_payload_replay,
)

URL = "/api/v1/customer/records"
BAD = {"source_key": "C3", "given_name": "Cy", "email": "cy@@example"}


@pytest.fixture
def payload(api):
    api.post(URL, BAD, format="json")
    return QuarantinedPayload.objects.get()


@pytest.fixture
def steward(client, db):
    user = get_user_model().objects.create_user("steward", password="pw")
    user.groups.add(Group.objects.get(name="steward"))
    client.force_login(user)
    return client


def test_replay_with_a_fix_creates_the_record(payload):
    fixed = {**BAD, "email": "cy@example.com"}

    closed, result = quarantined_payload_replay(payload_id=payload.pk, data=fixed)

    assert result.status == "created"
    assert closed.status == "replayed"
    record = SourceRecord.objects.get()
    assert closed.record == record
    assert record.attributes["email"] == "cy@example.com"
    assert IngestRun.objects.filter(channel="replay").get().created_count == 1
    assert list(closed.history.values_list("status", flat=True)) == ["replayed", "open"]


def test_replay_that_still_fails_keeps_it_open_with_new_reasons(payload):
    still_bad = {**BAD, "email": "cy@example", "given_name": ""}

    same, result = quarantined_payload_replay(payload_id=payload.pk, data=still_bad)

    assert result.status == "rejected"
    assert same.status == "open"
    assert same.payload == still_bad
    assert [(e["field"], e["code"]) for e in same.errors] == [
        ("email", "invalid"),
        ("", "required"),
    ]
    assert QuarantinedPayload.objects.count() == 1
    assert SourceRecord.objects.count() == 0


def test_a_replayed_payload_cannot_be_replayed_again(payload):
    quarantined_payload_replay(payload_id=payload.pk, data={**BAD, "email": "cy@example.com"})

    with pytest.raises(QuarantineStateError, match="is replayed"):
        quarantined_payload_replay(payload_id=payload.pk)

    assert SourceRecord.objects.get().version == 1


def test_discard_needs_a_reason(payload):
    with pytest.raises(ValueError, match="reason is required"):
        quarantined_payload_discard(payload_id=payload.pk, reason="  ")

    closed = quarantined_payload_discard(payload_id=payload.pk, reason="test data")

    assert (closed.status, closed.resolution_note) == ("discarded", "test data")


def test_steward_replays_through_the_api(payload, steward):
    response = steward.post(
        f"/api/v1/quarantine/{payload.pk}/replay",
        {"payload": {**BAD, "email": "cy@example.com"}},
        content_type="application/json",
    )

    assert response.status_code == 200
    assert response.json()["status"] == "replayed"
    assert response.json()["result"]["status"] == "created"
    again = steward.post(f"/api/v1/quarantine/{payload.pk}/replay", {}, "application/json")
    assert again.status_code == 409


def test_replay_still_invalid_is_422(payload, steward):
    response = steward.post(f"/api/v1/quarantine/{payload.pk}/replay", {}, "application/json")

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "email"


def test_discard_through_the_api(payload, steward):
    missing = steward.post(f"/api/v1/quarantine/{payload.pk}/discard", {}, "application/json")
    response = steward.post(
        f"/api/v1/quarantine/{payload.pk}/discard", {"reason": "duplicate test"}, "application/json"
    )

    assert missing.status_code == 400
    assert missing.json()["fields"]["reason"] == ["This field is required."]
    assert response.status_code == 200
    assert QuarantinedPayload.objects.get().status == "discarded"


@pytest.mark.parametrize("who", ["anonymous", "source", "viewer"])
def test_only_stewards_resolve_quarantine(payload, api, client, who):
    if who == "source":
        caller = api
    else:
        caller = client
        if who == "viewer":
            client.force_login(get_user_model().objects.create_user("viewer", password="pw"))

    response = (
        caller.post(f"/api/v1/quarantine/{payload.pk}/discard", {"reason": "x"}, format="json")
        if who == "source"
        else caller.post(
            f"/api/v1/quarantine/{payload.pk}/discard", {"reason": "x"}, "application/json"
        )
    )

    assert response.status_code in (401, 403)
    assert QuarantinedPayload.objects.get().status == "open"


def test_a_source_reads_only_its_own_quarantine(payload, api, other_api):
    assert [q["id"] for q in api.get("/api/v1/quarantine").json()["results"]] == [payload.pk]
    assert other_api.get("/api/v1/quarantine").json()["results"] == []
    assert other_api.get(f"/api/v1/quarantine/{payload.pk}").status_code == 404
