"""Event retention: only events older than the retention that every subscriber received go;
a feed reader behind the purged horizon gets a 410 telling it to take a snapshot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from mdm.models import SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from sync.models import ChangeEvent, Delivery, EventSequence
from sync.services import (
    consumer_ack,
    deliveries_send,
    events_purge,
    subscriber_pause,
    subscriber_register,
    sync_relay,
)
from sync.tasks import purge_events
from tests.sync.changes import golden_records_change

PEOPLE = [
    {"source_key": "A", "given_name": "Ann", "family_name": "Lee"},
    {"source_key": "B", "given_name": "Bob", "family_name": "Ray"},
]


@pytest.fixture
def four_events(api):
    """Two golden records, created (seq 1, 2) then changed (seq 3, 4), sequenced 40 days ago."""
    assert api.post("/api/v1/customer/records", {"records": PEOPLE}, format="json").status_code
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    result = golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1, ids["B"]: 2})
    golden_records_change(
        api, [{**p, "family_name": "X"} for p in PEOPLE], sorted(result.golden_of.values())
    )
    sync_relay()
    assert ChangeEvent.objects.filter(seq__isnull=False).count() == 4
    ChangeEvent.objects.update(sequenced_at=timezone.now() - timedelta(days=40))


def deliver_all():
    for _ in range(5):
        for batch in sync_relay().batches:
            deliveries_send(delivery_ids=batch)


def remaining():
    return (
        list(ChangeEvent.objects.order_by("seq").values_list("seq", flat=True)),
        list(Delivery.objects.order_by("seq").values_list("seq", "status")),
    )


@pytest.fixture
def viewer(make_client, db):
    user = User.objects.create_user("vera", password="pw")
    user.groups.add(Group.objects.get(name="viewer"))
    client = make_client()
    client.force_authenticate(user)
    return client


def test_only_what_every_subscriber_received_is_purged(four_events, receiver, secret, viewer):
    crm = subscriber_register(
        code="crm", kind="webhook", url=receiver.url, secret=secret, from_seq=0
    )
    dwh = subscriber_register(code="dwh", kind="pull", from_seq=0)
    deliver_all()
    assert len(receiver.unique_ids()) == 4
    consumer_ack(subscriber=dwh, seq=2)
    # a dry run counts and deletes nothing
    dry = events_purge(days=30, dry_run=True)
    assert (dry.upto_seq, dry.events, dry.deliveries) == (2, 2, 2)
    assert dry.held_by == "consumer dwh (acknowledged 2)"
    assert len(remaining()[0]) == 4 and EventSequence.objects.get().purged_seq == 0
    # then the purge deletes the events the pull consumer acknowledged, with their deliveries
    report = events_purge(days=30)
    assert (report.upto_seq, report.events, report.deliveries) == (2, 2, 2)
    assert remaining() == ([3, 4], [(3, "delivered"), (4, "delivered")])
    assert EventSequence.objects.get().purged_seq == 2
    # a reader behind the horizon is told to take a snapshot; one at it reads on
    gone = viewer.get("/api/v1/events?after=1")
    assert gone.status_code == 410
    assert gone.json()["error"] == "purged" and "snapshot" in gone.json()["detail"]
    page = viewer.get("/api/v1/events?after=2").json()
    assert [e["seq"] for e in page["events"]] == [3, 4]
    # and a subscriber cannot start below the horizon
    with pytest.raises(ValidationError, match="purged by retention"):
        subscriber_register(code="late", kind="pull", from_seq=1)
    assert crm.pk  # the webhook subscriber held nothing back: it had everything


def test_a_dead_letter_or_a_paused_subscriber_holds_events_back(four_events, receiver, secret):
    crm = subscriber_register(
        code="crm", kind="webhook", url=receiver.url, secret=secret, from_seq=0, max_attempts=1
    )
    receiver.status = 500
    for batch in sync_relay().batches:  # every attempt fails: four dead letters
        deliveries_send(delivery_ids=batch)
    assert sorted(Delivery.objects.values_list("seq", "status")) == [
        (1, "dead"), (2, "dead"), (3, "dead"), (4, "dead"),
    ]  # fmt: skip
    before = remaining()
    report = events_purge(days=30)
    assert (report.upto_seq, report.events) == (0, 0)
    assert report.held_by == "subscriber crm (undelivered 1)"
    assert remaining() == before
    # a paused subscriber that has not been planned this far holds back too
    receiver.status = 200
    Delivery.objects.update(status="delivered")
    subscriber_pause(subscriber=crm)
    subscriber_register(code="erp", kind="webhook", url=receiver.url, secret=secret, from_seq=1)
    subscriber_pause(subscriber=type(crm).objects.get(code="erp"))
    report = events_purge(days=30)
    assert (report.upto_seq, report.events, report.held_by) == (
        1, 1, "subscriber erp (planned 1)",
    )  # fmt: skip


def test_recent_events_stay_and_the_task_and_command_run(four_events, receiver, secret, capsys):
    subscriber_register(code="dwh", kind="pull", from_seq=4)
    ChangeEvent.objects.filter(seq__gte=3).update(sequenced_at=timezone.now())
    call_command("purge_events", "--days", "30", "--dry-run")
    out = capsys.readouterr().out
    assert "would delete 2 events and 0 deliveries up to seq 2" in out
    assert "held back by: age" in out
    assert len(remaining()[0]) == 4
    assert purge_events() == 2  # the beat task, default retention (30 days)
    assert remaining()[0] == [3, 4]
    assert purge_events() == 0  # safe to repeat
    with pytest.raises(Exception, match="0 or more"):
        call_command("purge_events", "--days", "-1")
