"""The admin subscriber API: CRUD, write-only secrets, rotation, pause/resume, dead letters,
replay and circuit reset; admins only, clear 400s, nothing written on bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from mdm.models import SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from sync.models import Delivery, Subscriber
from sync.receiver import Verifier
from sync.services import deliveries_send, subscriber_register, sync_relay
from sync.signing import secret_generate

URL = "/api/v1/subscribers"


def person(role):
    user = User.objects.create_user(f"{role}-user", password="pw")
    user.groups.add(Group.objects.get(name=role))
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def admin_api(db):
    return person("admin")


def state():
    return sorted(
        Subscriber.objects.values_list(
            "code", "url", "secret", "previous_secret", "is_active", "domains",
            "consecutive_failures",
        )
    ), sorted(Delivery.objects.values_list("pk", "status", "attempts"))  # fmt: skip


def one_golden(api):
    people = [{"source_key": "A", "given_name": "Ann", "family_name": "Lee", "country": "DE"}]
    assert api.post("/api/v1/customer/records", {"records": people}, format="json").status_code
    ids = list(SourceRecord.objects.values_list("pk", flat=True))
    return golden_records_apply_clusters(domain="customer", clusters={r: r for r in ids})


def drain():
    for _ in range(10):
        batches = sync_relay().batches
        if not batches:
            return
        for batch in batches:
            deliveries_send(delivery_ids=batch)


@pytest.mark.parametrize(
    ("persona", "status"),
    [("anonymous", 401), ("source", 403), ("viewer", 403), ("steward", 403), ("admin", None)],
)
def test_only_admins_reach_the_subscriber_api(persona, status, api, receiver, secret):
    client = {"anonymous": APIClient(), "source": api}.get(persona) or person(persona)
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    before = state()
    calls = [
        ("get", URL, None, 200),
        ("post", URL, {"code": "new", "kind": "pull"}, 201),
        ("get", f"{URL}/crm", None, 200),
        ("patch", f"{URL}/crm", {"name": "CRM"}, 200),
        ("post", f"{URL}/crm/rotate-secret", {}, 200),
        ("post", f"{URL}/crm/finish-rotation", {}, 200),
        ("post", f"{URL}/crm/pause", {}, 200),
        ("post", f"{URL}/crm/resume", {}, 200),
        ("post", f"{URL}/crm/reset-circuit", {}, 200),
        ("get", f"{URL}/crm/dead-letters", None, 200),
        ("post", f"{URL}/crm/dead-letters/replay", {}, 200),
        ("delete", f"{URL}/new", None, 204),
    ]
    got = [
        getattr(client, method)(url, body, format="json").status_code
        for method, url, body, _ in calls
    ]
    assert got == [status or ok for *_, ok in calls]
    if status is not None:
        assert state() == before


def test_register_shows_the_secret_once_and_never_again(admin_api, receiver, source):
    # when an admin registers a webhook subscriber without a secret
    response = admin_api.post(
        URL,
        {
            "code": "crm",
            "name": "CRM",
            "kind": "webhook",
            "url": receiver.url,
            "domains": ["customer"],
            "event_kinds": ["created", "merged"],
            "filters": {"country": ["DE", "FR"]},
            "source_system": source.code,
            "max_attempts": 3,
        },
        format="json",
    )
    # then the answer carries the generated secret, once
    assert response.status_code == 201, response.content
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and secret == Subscriber.objects.get(code="crm").secret
    sub = body["subscriber"]
    assert (sub["code"], sub["kind"], sub["url"], sub["source_system"]) == (
        "crm", "webhook", receiver.url, source.code,
    )  # fmt: skip
    assert (sub["domains"], sub["event_kinds"], sub["filters"], sub["max_attempts"]) == (
        ["customer"], ["created", "merged"], {"country": ["DE", "FR"]}, 3,
    )  # fmt: skip
    assert sub["is_active"] and not sub["rotating"]
    assert sub["health"] == {
        "lag": 0, "pending": 0, "dead_letters": 0, "failure_rate": 0.0, "circuit_open": False,
    }  # fmt: skip
    # and no later read shows it
    for read in (admin_api.get(URL), admin_api.get(f"{URL}/crm")):
        assert read.status_code == 200
        assert secret not in read.content.decode() and "secret" not in read.json().__repr__()


def test_a_given_secret_is_used_and_returned_once(admin_api):
    given = secret_generate()
    response = admin_api.post(URL, {"code": "dwh", "kind": "pull", "secret": given}, format="json")
    assert response.status_code == 201 and response.json()["secret"] == given


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"code": "x", "kind": "webhook", "url": "http://10.1.2.3/hook"}, "url", "non-public"),
        ({"code": "x", "kind": "webhook", "url": "http://127.0.0.1:9/h"}, "url", "loopback"),
        ({"code": "x", "kind": "webhook", "url": "ftp://example.com/"}, "url", "not an http(s)"),
        ({"code": "x", "kind": "fax"}, "kind", "not a valid choice"),
        ({"code": "x", "kind": "pull", "domains": ["planet"]}, "domains", "planet"),
        ({"code": "x", "kind": "pull", "event_kinds": ["moved"]}, "event_kinds", "moved"),
        ({"code": "x", "kind": "pull", "secret": "whsec_c2hvcnQ="}, "secret", "16 bytes"),
        ({"code": "x", "kind": "pull", "max_attempts": 0}, "max_attempts", "greater than"),
        ({"code": "x", "kind": "pull", "source_system": "nope"}, "source_system", "nope"),
        ({"code": "x", "kind": "amqp", "url": "amqp://h//"}, "exchange", "exchange"),
        ({"code": "bad code!", "kind": "pull"}, "code", "slug"),
        ({"code": "crm", "kind": "pull"}, "code", "already exists"),
    ],
)
def test_bad_registrations_answer_400_naming_the_field(
    admin_api, settings, receiver, secret, body, field, detail
):
    settings.AURUM_WEBHOOK_ALLOW_LOOPBACK = False
    settings.AURUM_WEBHOOK_ALLOW_PRIVATE = False
    Subscriber.objects.create(code="crm", kind="pull")
    before = state()
    response = admin_api.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    payload = response.json()
    assert payload["error"] == "invalid"
    assert field in payload["fields"], payload
    assert detail in str(payload["fields"][field]), payload
    assert state() == before


def test_update_changes_settings_and_refuses_bad_ones_whole(admin_api, receiver, secret, settings):
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    ok = admin_api.patch(
        f"{URL}/crm", {"domains": ["supplier"], "include_source_keys": False}, format="json"
    )
    assert ok.status_code == 200, ok.content
    assert (ok.json()["domains"], ok.json()["include_source_keys"]) == (["supplier"], False)
    before = state()
    settings.AURUM_WEBHOOK_ALLOW_LOOPBACK = False
    # a bad URL together with a good change: nothing is applied
    bad = admin_api.patch(
        f"{URL}/crm", {"url": "http://192.168.1.5/x", "name": "New"}, format="json"
    )
    assert bad.status_code == 400 and "url" in bad.json()["fields"]
    # the secret is not a setting: it changes by rotation
    secret_change = admin_api.patch(f"{URL}/crm", {"secret": secret_generate()}, format="json")
    assert secret_change.status_code == 400 and "secret" in secret_change.json()["fields"]
    assert state() == before
    assert Subscriber.objects.get(code="crm").name == ""
    assert admin_api.patch(f"{URL}/nope", {"name": "x"}, format="json").status_code == 404


def test_rotation_signs_with_both_secrets_until_finished(admin_api, api, receiver, secret):
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    rotated = admin_api.post(f"{URL}/crm/rotate-secret", {}, format="json")
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != secret and rotated.json()["subscriber"]["rotating"] is True
    assert new not in admin_api.get(f"{URL}/crm").content.decode()
    # a message sent now verifies with the old secret (the receiver's) and the new one
    one_golden(api)
    drain()
    assert len(receiver.received) == 1 and receiver.refused == []
    sub = Subscriber.objects.get(code="crm")
    assert (sub.secret, sub.previous_secret) == (new, secret)
    finished = admin_api.post(f"{URL}/crm/finish-rotation", {}, format="json")
    assert finished.status_code == 200 and finished.json()["rotating"] is False
    assert Subscriber.objects.get(code="crm").previous_secret == ""
    Verifier(secrets=[new])  # the new secret is a valid Standard Webhooks secret
    bad = admin_api.post(f"{URL}/crm/rotate-secret", {"secret": "whsec_x"}, format="json")
    assert bad.status_code == 400 and Subscriber.objects.get(code="crm").secret == new


def test_pause_holds_deliveries_and_resume_sends_them(admin_api, api, receiver, secret):
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    paused = admin_api.post(f"{URL}/crm/pause", {"reason": "maintenance"}, format="json")
    assert paused.status_code == 200
    assert (paused.json()["is_active"], paused.json()["disabled_reason"]) == (False, "maintenance")
    one_golden(api)
    drain()
    assert receiver.calls == 0
    resumed = admin_api.post(f"{URL}/crm/resume", {}, format="json")
    assert resumed.status_code == 200 and resumed.json()["is_active"] is True
    drain()
    assert [r.event["type"] for r in receiver.received] == ["golden.created"]


def test_dead_letters_listed_replayed_one_and_all(admin_api, api, receiver, secret):
    sub = subscriber_register(
        code="crm", kind="webhook", url=receiver.url, secret=secret, max_attempts=1
    )
    result = one_golden(api)
    receiver.status = 500
    drain()
    dead = admin_api.get(f"{URL}/crm/dead-letters").json()
    assert [(d["seq"], d["golden_id"], d["event_kind"], d["attempts"], d["response_code"],
             d["error"]) for d in dead] == [
        (1, result.golden_of[next(iter(result.golden_of))], "created", 1, 500, "HTTP 500")
    ]  # fmt: skip
    assert admin_api.get(f"{URL}/crm").json()["health"]["dead_letters"] == 1
    receiver.status = 200
    # replaying one that is not dead is refused; the dead one goes out again
    delivery_id = dead[0]["id"]
    replay = admin_api.post(f"{URL}/crm/dead-letters/{delivery_id}/replay", {}, format="json")
    assert replay.status_code == 200 and replay.json() == {"replayed": 1}
    again = admin_api.post(f"{URL}/crm/dead-letters/{delivery_id}/replay", {}, format="json")
    assert again.status_code == 400 and "not a dead letter" in again.json()["detail"]
    missing = admin_api.post(f"{URL}/crm/dead-letters/999999/replay", {}, format="json")
    assert missing.status_code == 404
    drain()
    assert len(receiver.received) == 1
    # replay all: every dead letter of the subscriber
    Delivery.objects.filter(subscriber=sub).update(status="dead")
    assert admin_api.post(f"{URL}/crm/dead-letters/replay", {}, format="json").json() == {
        "replayed": 1
    }
    assert Delivery.objects.get(subscriber=sub).status == "pending"


def test_reset_circuit_closes_it(admin_api, receiver, secret):
    sub = subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    Subscriber.objects.filter(pk=sub.pk).update(
        consecutive_failures=7, circuit_open_until=timezone.now() + timedelta(minutes=5)
    )
    assert admin_api.get(f"{URL}/crm").json()["health"]["circuit_open"] is True
    reset = admin_api.post(f"{URL}/crm/reset-circuit", {}, format="json")
    assert reset.status_code == 200
    body = reset.json()
    assert (body["consecutive_failures"], body["circuit_open_until"]) == (0, None)
    assert body["health"]["circuit_open"] is False


def test_delete_removes_the_subscriber_and_its_deliveries(admin_api, api, receiver, secret):
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    one_golden(api)
    sync_relay()
    assert Delivery.objects.count() == 1
    assert admin_api.delete(f"{URL}/crm").status_code == 204
    assert not Subscriber.objects.exists() and not Delivery.objects.exists()
    assert admin_api.delete(f"{URL}/crm").status_code == 404


def test_the_subscriber_command_adds_lists_rotates_and_replays(db, receiver, capsys):
    call_command("subscriber", "add", "crm", "--kind", "webhook", "--url", receiver.url,
                 "--domain", "customer")  # fmt: skip
    out = capsys.readouterr().out
    sub = Subscriber.objects.get(code="crm")
    assert sub.secret in out and sub.domains == ["customer"]
    call_command("subscriber", "list")
    listed = capsys.readouterr().out
    assert "crm" in listed and sub.secret not in listed
    call_command("subscriber", "rotate", "crm")
    rotated = capsys.readouterr().out
    sub.refresh_from_db()
    assert sub.secret in rotated and sub.previous_secret
    call_command("subscriber", "replay", "crm")
    assert "0 dead letters queued again" in capsys.readouterr().out
