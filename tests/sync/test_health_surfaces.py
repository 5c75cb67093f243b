"""Subscriber lag, failures and dead letters where operators and stewards look: the
Prometheus metrics, the steward dashboard and the alert signals."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.test import Client

from mdm.models import AlertRule, SourceRecord
from mdm.services.alerts import alerts_evaluate
from mdm.services.golden import golden_records_apply_clusters
from sync.services import subscriber_register, sync_relay

PEOPLE = [
    {"source_key": "A", "given_name": "Ann", "family_name": "Lee"},
    {"source_key": "B", "given_name": "Bob", "family_name": "Ray"},
]


@pytest.fixture
def behind(api):
    """A pull consumer that has acknowledged nothing of two golden changes."""
    subscriber_register(code="dwh", kind="pull", from_seq=0)
    assert (
        api.post("/api/v1/customer/records", {"records": PEOPLE}, format="json").status_code == 200
    )
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1, ids["B"]: 2})
    sync_relay()


def test_metrics_expose_lag_dead_letters_failures_and_circuit_per_subscriber(behind):
    body = Client().get("/metrics").content.decode()

    assert 'aurum_outbox_lag_events{kind="pull",subscriber="dwh"} 2.0' in body
    assert 'aurum_delivery_dead_letters{subscriber="dwh"} 0.0' in body
    assert 'aurum_delivery_failure_ratio{subscriber="dwh"} 0.0' in body
    assert 'aurum_subscriber_circuit_open{subscriber="dwh"} 0.0' in body


def test_the_steward_dashboard_shows_each_subscribers_lag(behind):
    viewer = User.objects.create_user("vera", password="pw")
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client = Client()
    client.force_login(viewer)

    page = client.get("/steward/").content.decode()

    assert 'id="subscriber-health"' in page
    assert '<tr data-subscriber="dwh">' in page
    assert '<td class="num lag">2</td>' in page


def test_an_outbox_lag_alert_fires_once(behind):
    AlertRule.objects.create(
        name="feed behind", signal="outbox_lag", threshold=1, channel="email",
        target="ops@example.com",
    )  # fmt: skip

    fired = alerts_evaluate()
    again = alerts_evaluate()

    assert [event.alert.name for event in fired] == ["feed behind"]
    assert again == []  # the same incident is not notified twice
    assert len(mail.outbox) == 1 and "outbox_lag = 2" in mail.outbox[0].subject
