"""The pull feed, acknowledgements, snapshots, reconciliation and subscriber health."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from mdm.models import GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from sync.models import ChangeEvent, Delivery, Subscriber
from sync.selectors import subscriber_health
from sync.services import deliveries_send, subscriber_register, sync_relay
from tests.sync.changes import golden_records_change

URL = "/api/v1/customer/records"
PEOPLE = [
    {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "country": "DE"},
    {"source_key": "B", "given_name": "Bob", "family_name": "Ray", "country": "FR"},
]


@pytest.fixture
def two_golden(api):
    assert api.post(URL, {"records": PEOPLE}, format="json").status_code == 200
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    result = golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1, ids["B"]: 2})
    # each is created once (v1, with its attributes), then really changed (v2): four events
    assert list(ChangeEvent.objects.order_by("id").values_list("version", "kind")) == [
        (1, "created"),
        (1, "created"),
    ]
    renamed = [{**PEOPLE[0], "given_name": "Anna"}, {**PEOPLE[1], "given_name": "Robert"}]
    golden_records_change(api, renamed, [result.golden_of[1], result.golden_of[2]])
    return ids


@pytest.fixture
def viewer_api(db, make_client):
    user = User.objects.create_user("vera", password="pw")
    user.groups.add(Group.objects.get(name="viewer"))
    client = make_client()
    client.force_authenticate(user)
    return client


def test_feed_pages_in_order_and_never_skips(two_golden, api):
    page = api.get("/api/v1/events?after=0&limit=3").json()
    assert [e["seq"] for e in page["events"]] == [1, 2, 3]
    assert page["next_after"] == 3 and page["high_water"] == 4
    assert page["events"][0]["type"] == "golden.created"
    assert page["events"][0]["golden"]["attributes"]["given_name"] == "Ann"  # written once
    page = api.get(f"/api/v1/events?after={page['next_after']}&limit=3").json()
    assert [e["seq"] for e in page["events"]] == [4]
    assert page["events"][0]["xref"] == [{"source": "crm", "source_key": "B"}]
    assert page["next_after"] == 4
    empty = api.get("/api/v1/events?after=4").json()
    assert empty == {"events": [], "next_after": 4, "high_water": 4}


def test_feed_filters_by_domain_and_validates(two_golden, api):
    page = api.get("/api/v1/events?after=0&domain=product").json()
    assert page["events"] == [] and page["next_after"] == 4
    assert len(api.get("/api/v1/events?domain=customer").json()["events"]) == 4
    bad = api.get("/api/v1/events?after=x")
    assert bad.status_code == 400 and "after" in bad.json()["fields"]
    assert api.get("/api/v1/events?limit=5000").status_code == 400
    assert api.get("/api/v1/events?domain=nope").status_code == 400


@pytest.mark.parametrize(
    "who, status", [("anonymous", 401), ("no_role", 403), ("viewer", 200), ("source", 200)]
)
def test_feed_permissions(two_golden, make_client, token, who, status):
    client = make_client()
    if who == "no_role":
        client.force_authenticate(User.objects.create_user("nobody"))
    elif who == "viewer":
        user = User.objects.create_user("vera")
        user.groups.add(Group.objects.get(name="viewer"))
        client.force_authenticate(user)
    elif who == "source":
        client = make_client(token.secret)
    assert client.get("/api/v1/events").status_code == status


def test_ack_moves_forward_only(two_golden, viewer_api):
    subscriber_register(code="dwh", kind="pull", from_seq=0)
    ack = viewer_api.post("/api/v1/events/ack", {"consumer": "dwh", "seq": 3}, format="json")
    assert ack.status_code == 200 and ack.json() == {"consumer": "dwh", "acked_seq": 3}
    back = viewer_api.post("/api/v1/events/ack", {"consumer": "dwh", "seq": 1}, format="json")
    assert back.json()["acked_seq"] == 3
    beyond = viewer_api.post("/api/v1/events/ack", {"consumer": "dwh", "seq": 99}, format="json")
    assert beyond.status_code == 400
    unknown = viewer_api.post("/api/v1/events/ack", {"consumer": "x", "seq": 1}, format="json")
    assert unknown.status_code == 400
    assert Subscriber.objects.get(code="dwh").acked_seq == 3
    [health] = subscriber_health()
    assert (health.code, health.lag) == ("dwh", 1)


def test_a_source_system_acks_only_its_own_consumer(two_golden, api, source):
    subscriber_register(code="theirs", kind="pull", from_seq=0)
    subscriber_register(code="mine", kind="pull", from_seq=0, source_system=source)
    assert (
        api.post("/api/v1/events/ack", {"consumer": "theirs", "seq": 1}, format="json").status_code
        == 403
    )
    assert (
        api.post("/api/v1/events/ack", {"consumer": "mine", "seq": 1}, format="json").status_code
        == 200
    )


def test_snapshot_jsonl_and_parquet_with_their_seq(two_golden, api):
    response = api.get("/api/v1/customer/snapshot")
    assert response.status_code == 200
    assert response["Aurum-Snapshot-Seq"] == "4"
    assert response.streaming
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [(r["version"], r["attributes"]["country"]) for r in rows] == [(2, "DE"), (2, "FR")]
    assert rows[0]["xref"] == [{"source": "crm", "source_key": "A"}]
    parquet = api.get("/api/v1/customer/snapshot?output=parquet")
    table = pq.read_table(io.BytesIO(b"".join(parquet.streaming_content)))
    assert table.schema.metadata[b"aurum.seq"] == b"4"
    assert table.column("id").to_pylist() == list(
        GoldenRecord.objects.order_by("pk").values_list("pk", flat=True)
    )
    assert api.get("/api/v1/customer/snapshot?output=csv").status_code == 400
    assert api.get("/api/v1/nope/snapshot").status_code == 404


def test_reconcile_reports_and_resends(two_golden, receiver, secret, capsys):
    sub = subscriber_register(
        code="crm", kind="webhook", url=receiver.url, secret=secret, from_seq=0
    )
    receiver.status = 500
    for _ in range(2):
        for batch in sync_relay().batches:
            deliveries_send(delivery_ids=batch)
    # the first events failed; make them dead letters, and lose one delivery row entirely
    Delivery.objects.update(status="dead")
    Delivery.objects.filter(seq=4).delete()
    call_command("reconcile", "crm")
    out = capsys.readouterr().out
    assert "behind (newer version held):   2" in out and "differences found" in out
    receiver.status = 200
    call_command("reconcile", "crm", "--resend")
    assert "re-sent: 2" in capsys.readouterr().out
    for _ in range(3):
        for batch in sync_relay().batches:
            deliveries_send(delivery_ids=batch)
    got = sorted((r.event["golden"]["id"], r.event["golden"]["version"]) for r in receiver.received)
    assert got == sorted(GoldenRecord.objects.values_list("pk", "version"))
    call_command("reconcile", "crm")
    assert "in sync" in capsys.readouterr().out
    assert ChangeEvent.objects.count() == 4
    [health] = subscriber_health()
    assert health.dead_letters == 2 and health.failure_rate > 0  # the older v1 events
    assert sub.pk


def test_admin_pages_show_health(two_golden, admin_client, receiver, secret):
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret, from_seq=0)
    page = admin_client.get("/admin/sync/subscriber/")
    assert page.status_code == 200
    assert b"Lag (events behind)" in page.content
    assert b'<td class="field-lag">4</td>' in page.content
    assert admin_client.get("/admin/sync/delivery/").status_code == 200
    assert admin_client.get("/admin/sync/changeevent/").status_code == 200


def test_admin_actions_pause_and_close_the_circuit(admin_client, receiver, secret):
    sub = subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    Subscriber.objects.filter(pk=sub.pk).update(consecutive_failures=9)
    for action in ("pause", "reset_circuit"):
        response = admin_client.post(
            "/admin/sync/subscriber/", {"action": action, "_selected_action": [sub.pk]}
        )
        assert response.status_code == 302
    sub.refresh_from_db()
    assert (sub.is_active, sub.disabled_reason, sub.consecutive_failures) == (
        False, "paused by an admin", 0,
    )  # fmt: skip
