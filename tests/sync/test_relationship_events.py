"""Relationship changes reach subscribers: signed webhooks (routed by kind and by the
"from" record's attributes) and the pull feed, with what changed and from where."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from mdm.models import CrossReference, GoldenRelationship, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from sync.models import ChangeEvent, Delivery
from sync.services import subscriber_register
from tests.sync.receiver_server import Receiver
from tests.sync.test_outbox import drain

URL = "/api/v1/customer/records"


def org(key: str, country: str, parent: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source_key": key,
        "party_type": "organisation",
        "organisation_name": f"Company {key}",
        "country": country,
    }
    if parent:
        row["references"] = {"child_of": parent}
    return row


def golden(key: str) -> int:
    return CrossReference.objects.get(record__source_key=key).golden_id


def test_webhooks_carry_relationship_events(
    api: APIClient, receiver: Receiver, secret: str
) -> None:
    sub = subscriber_register(
        code="fr-links",
        kind="webhook",
        url=receiver.url,
        secret=secret,
        event_kinds=["relationship"],
        filters={"country": ["FR"]},
    )
    rows = [org("P", "DE"), org("A", "FR", parent="P"), org("B", "DE", parent="P")]
    assert api.post(URL, {"records": rows}, format="json").status_code == 200
    ids = list(SourceRecord.objects.values_list("id", flat=True))
    golden_records_apply_clusters(domain="customer", clusters={i: i for i in ids})
    assert ChangeEvent.objects.filter(kind="relationship").count() == 2  # A's and B's links

    assert drain() == ["delivered"]  # only the link from the French company passes
    assert receiver.refused == []
    [got] = [r.event for r in receiver.received]
    link = GoldenRelationship.objects.get(from_golden_id=golden("A"))
    assert got["type"] == "golden.relationship"
    assert got["golden"] == {"id": golden("A")}
    assert got["changed"] == ["relationships"]
    assert got["xref"] == [{"source": "crm", "source_key": "A"}]
    body = got["relationship"]
    assert {k: body[k] for k in ("id", "type", "from_id", "to_id", "status", "action")} == {
        "id": link.pk,
        "type": "child_of",
        "from_id": golden("A"),
        "to_id": golden("P"),
        "status": "active",
        "action": "added",
    }
    assert body["provenance"]["source_key"] == "A"
    assert body["provenance"]["target_key"] == "P"
    assert Delivery.objects.filter(subscriber=sub, status="delivered").count() == 1


def test_the_pull_feed_lists_relationship_events(api: APIClient) -> None:
    subscriber_register(code="puller", kind="pull")
    rows = [org("P", "DE"), org("A", "FR", parent="P")]
    assert api.post(URL, {"records": rows}, format="json").status_code == 200
    ids = list(SourceRecord.objects.values_list("id", flat=True))
    golden_records_apply_clusters(domain="customer", clusters={i: i for i in ids})
    drain()
    page = api.get("/api/v1/events?after=0&limit=10").json()
    kinds = [(e["type"], e["golden"]["id"]) for e in page["events"]]
    assert kinds == [
        ("golden.created", golden("P")),
        ("golden.created", golden("A")),
        ("golden.relationship", golden("A")),
    ]
    assert page["events"][-1]["relationship"]["to_id"] == golden("P")
