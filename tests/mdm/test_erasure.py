"""The right to erasure: after it, a marker seeded in several sources, matched, decided by
stewards and delivered to a subscriber is nowhere in the database or the match store."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from matching.services import match_pending, match_search
from matching.store import stores_clear
from mdm.audit.models import AuditEntry
from mdm.audit.selectors import audit_chain_verify
from mdm.models import CrossReference, ErasureRequest, GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.lifecycle import golden_attribute_correct
from mdm.services.sources import source_system_upsert, source_token_issue
from stewardship.models import ReviewTask
from stewardship.services import review_task_decide
from sync.models import ChangeEvent, Delivery
from sync.services import (
    change_events_sequence,
    deliveries_send,
    subscriber_register,
    sync_relay,
)
from tests.stewardship.factories import pair_task, user_with_role
from tests.sync.receiver_server import Receiver

MARKERS = ("zq-marker-7731@example.com", "zqmarkerova", "+44 20 7946 0773", "442079460773")
URL = "/api/v1/customer/records"


def marker_hits() -> list[tuple[str, str]]:
    """Every (table, column value) of the whole database that holds a marker: each table
    the database has, each row, each column as text."""
    hits = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608 - names from introspection
            for row in cursor.fetchall():
                for value in row:
                    text = str(value).lower()
                    for marker in MARKERS:
                        if marker in text:
                            hits.append((table, text[:120]))
    return hits


def kept_version(golden: int) -> int:
    return GoldenRecord.objects.get(pk=golden).version


def relay_and_deliver() -> None:
    while batches := sync_relay().batches:
        for batch in batches:
            deliveries_send(delivery_ids=batch)


@pytest.fixture
def seeded(db, settings) -> Iterator[dict[str, Any]]:
    """The person in three sources with a quarantined bad row, matched (a model trained on
    the demo customers), merged by a steward's task decision, corrected by a steward, and
    delivered to a webhook subscriber."""
    stores_clear()
    call_command("load_demo", "--no-tokens", "--no-match", stdout=StringIO())
    call_command("train_model", "customer", stdout=StringIO())
    call_command("match", "customer", "--full", stdout=StringIO())
    receiver = Receiver(secrets=["whsec_" + "a" * 32]).start()
    change_events_sequence()  # the demo's events are before the subscriber's start
    subscriber_register(code="hook", kind="webhook", url=receiver.url, secret="whsec_" + "a" * 32)
    clients = {}
    for code in ("zqcrm", "zqerp", "zqweb"):
        system, _ = source_system_upsert(code=code, name=code)
        client = APIClient()
        client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {source_token_issue(source_system=system).secret}"
        )
        clients[code] = client
    person = {
        "given_name": "Zqmarkerova",
        "family_name": "Quill",
        "email": "zq-marker-7731@example.com",
        "phone": "+44 20 7946 0773",
        "country": "GB",
    }
    for code, key in (("zqcrm", "ZQ-1"), ("zqerp", "ZQ-2")):
        response = clients[code].post(
            URL, {"source_key": key, **person}, format="json", HTTP_IDEMPOTENCY_KEY=f"k-{key}"
        )
        assert response.status_code == 201, response.json()
    match_pending(domain="customer")  # the two match each other in one incremental run
    bad = {"source_key": "ZQ-3", **person, "date_of_birth": "not a date"}
    assert clients["zqweb"].post(URL, bad, format="json").status_code == 422
    records = dict(
        SourceRecord.objects.filter(source_key__startswith="ZQ-").values_list("source_key", "id")
    )
    # Make sure the two are in separate golden records, then let a steward merge them.
    golden_records_apply_clusters(
        domain="customer", clusters={records["ZQ-1"]: 1, records["ZQ-2"]: 2}
    )
    steward = user_with_role("stella", "steward")
    task = pair_task(
        SourceRecord.objects.get(pk=records["ZQ-1"]),
        SourceRecord.objects.get(pk=records["ZQ-2"]),
    )
    task.explanation = [
        {
            "attribute": "email",
            "level": "exact",
            "match_weight": 9.0,
            "left": person["email"],
            "right": person["email"],
        },
    ]
    task.save(update_fields=["explanation"])
    review_task_decide(
        task_id=task.pk, decision="merge", actor=steward, comment="same person, Zqmarkerova"
    )
    golden = CrossReference.objects.get(record_id=records["ZQ-1"]).golden_id
    golden_attribute_correct(
        domain="customer",
        golden_id=golden,
        attribute="family_name",
        value="Quill-Zqmarkerova",
        actor=steward,
        reason="married name Zqmarkerova",
    )
    _, matches = match_search(
        domain="customer",
        attributes={"given_name": "Zqmarkerova", "family_name": "Quill", "email": person["email"]},
    )
    assert {m.golden_id for m in matches} == {golden}
    relay_and_deliver()
    assert Delivery.objects.filter(golden_id=golden, status="delivered").exists()
    yield {"golden": golden, "records": records, "receiver": receiver, "task": task}
    receiver.stop()
    stores_clear()


@pytest.mark.slow
def test_erasure_leaves_no_trace_of_the_person_anywhere(seeded):
    assert marker_hits()  # the search finds the seeded person before the erasure ...
    # (Search-before-create masks the candidate for a viewer, like every other read.)
    candidate = {"attributes": {"given_name": "Zqmarkerova", "email": MARKERS[0]}}
    for role, email in (("viewer", "z***@example.com"), ("steward", MARKERS[0])):
        reader = APIClient()
        reader.force_authenticate(user_with_role(f"r-{role}", role))
        found = reader.post("/api/v1/customer/match", candidate, format="json")
        assert found.status_code == 200, found.json()
        assert found.json()["candidate"]["email"] == email
        assert [m["golden_id"] for m in found.json()["matches"]] == [seeded["golden"]]
    admin = user_with_role("ada", "admin")
    client = APIClient()
    client.force_authenticate(admin)

    response = client.post(
        "/api/v1/customer/erasures",
        {"source": "zqerp", "source_key": "ZQ-2", "reference": "DSR-42"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    golden = seeded["golden"]
    assert (body["golden_id"], body["reference"], body["requested_by"]) == (golden, "DSR-42", "ada")
    hits = marker_hits()
    assert hits == [], "\n".join(map(str, hits))  # ... and nowhere after it
    # The tombstone, the audit entry and the event for subscribers.
    erasure = ErasureRequest.objects.get()
    assert erasure.golden_id == golden
    (entry,) = AuditEntry.objects.filter(action="erasure.completed")
    assert (entry.target_id, entry.actor, entry.detail["request"]) == (
        str(golden),
        "ada",
        erasure.pk,
    )
    assert audit_chain_verify().ok
    assert ChangeEvent.objects.filter(golden_id=golden, kind="erased").count() == 1
    relay_and_deliver()
    erased = [r.event for r in seeded["receiver"].received if r.event["type"] == "golden.erased"]
    # One for the golden record and one for the one merged into it by the steward.
    assert len(entry.detail["golden_ids"]) == 2 and golden in entry.detail["golden_ids"]
    assert sorted((e["golden"]["id"], e["golden"]["version"], e["reason"]) for e in erased) == [
        (g, kept_version(g), f"erased: request {erasure.pk}") for g in entry.detail["golden_ids"]
    ]
    assert all(marker not in str(erased) for marker in MARKERS)
    # The records are deleted tombstones; the golden record is empty and retired.
    kept = GoldenRecord.objects.get(pk=golden)
    assert (kept.status, kept.attributes, kept.provenance) == ("retired", {}, {})
    records = SourceRecord.objects.filter(pk__in=seeded["records"].values())
    assert [(r.is_deleted, r.attributes, r.raw, r.source_key) for r in records] == [
        (True, {}, {}, f"erased-{erasure.pk}-{r.pk}") for r in records
    ]
    # The match store forgot them: a search for the person finds nobody.
    _, matches = match_search(
        domain="customer",
        attributes={
            "given_name": "Zqmarkerova",
            "family_name": "Quill",
            "email": "zq-marker-7731@example.com",
        },
    )
    assert matches == []
    # The task lost the compared values but kept its decision.
    task = ReviewTask.objects.get(pk=seeded["task"].pk)
    assert (task.decision, task.explanation) == (
        "merge",
        [{"attribute": "email", "level": "exact", "match_weight": 9.0}],
    )
