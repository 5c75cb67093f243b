"""The outbox: an event with every golden change, sequenced in commit order, delivered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from mdm.models import GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.lifecycle import golden_record_merge, golden_record_split
from sync.models import ChangeEvent, Delivery, Subscriber
from sync.services import (
    change_events_sequence,
    deliveries_replay_all,
    deliveries_send,
    delivery_attempt,
    delivery_replay,
    subscriber_enable,
    subscriber_register,
    sync_relay,
)
from tests.sync.changes import golden_records_change

URL = "/api/v1/customer/records"
PEOPLE = [
    {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "country": "DE"},
    {"source_key": "B", "given_name": "Anne", "family_name": "Lee", "country": "DE"},
    {"source_key": "C", "given_name": "Bob", "family_name": "Ray", "country": "FR"},
]


def load(api, people=PEOPLE):
    assert api.post(URL, {"records": people}, format="json").status_code == 200
    return dict(SourceRecord.objects.values_list("source_key", "id"))


def send(batches: list[list[int]]) -> list[str]:
    """Send each batch as the delivery task does; the outcomes of the attempts, in order."""
    outcomes: list[str] = []
    for batch in batches:
        got = deliveries_send(delivery_ids=batch)
        outcomes += [got[i] for i in batch if got[i] != "deferred"]
    return outcomes


def drain(rounds: int = 50) -> list[str]:
    """Relay and deliver in this process until nothing is due."""
    outcomes: list[str] = []
    for _ in range(rounds):
        result = sync_relay()
        if not result.batches:
            break
        outcomes += send(result.batches)
    return outcomes


def events():
    return list(ChangeEvent.objects.order_by("id").values_list("golden_id", "version", "kind"))


@pytest.fixture
def steward(db):
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("stella", password="pw")
    user.groups.add(Group.objects.get(name="steward"))
    return user


def test_every_golden_change_writes_one_event_in_its_transaction(api, steward):
    # given three records clustered into two golden records
    ids = load(api)
    golden_records_apply_clusters(
        domain="customer", clusters={ids["A"]: 1, ids["B"]: 1, ids["C"]: 2}
    )
    first, second = GoldenRecord.objects.order_by("pk").values_list("pk", flat=True)
    # then each new golden record has one created event (v1), written with its attributes
    assert events() == [(first, 1, "created"), (second, 1, "created")]
    # and a real change to both gives each an updated event (v2)
    golden_records_change(api, [{**p, "family_name": "Leigh"} for p in PEOPLE], [first, second])
    assert events() == [
        (first, 1, "created"),
        (second, 1, "created"),
        (first, 2, "updated"),
        (second, 2, "updated"),
    ]

    # when a steward merges them, then splits C out again
    golden_record_merge(domain="customer", golden_ids=[first, second], actor=steward)
    merged = events()[4:]
    assert (second, 3, "merged") in merged and (first, 3, "updated") in merged
    golden_record_split(domain="customer", golden_id=first, record_ids=[ids["C"]], actor=steward)
    kinds = [k for _, _, k in events()[len(merged) + 4 :]]
    assert "split" in kinds and "created" in kinds

    # and a change that rolls back leaves no event
    before = ChangeEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 9, ids["B"]: 8})
        assert ChangeEvent.objects.count() > before
        raise RuntimeError("roll back")
    assert ChangeEvent.objects.count() == before
    # every event's version matches its history row
    for event in ChangeEvent.objects.all():
        row = GoldenRecord.history.get(history_id=event.history_id)
        assert (row.id, row.version) == (event.golden_id, event.version)


def test_sequence_numbers_follow_commit_not_insert_order(api):
    ids = load(api)
    golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1, ids["C"]: 2})
    assert change_events_sequence() == 2
    # an event inserted with a lower id but committed after a later one gets the next seq
    late = ChangeEvent.objects.create(
        domain="customer", golden_id=1, version=9, kind="updated", occurred_at=timezone.now()
    )
    earlier_id = ChangeEvent.objects.create(
        domain="customer", golden_id=2, version=9, kind="updated", occurred_at=timezone.now()
    )
    ChangeEvent.objects.filter(pk=late.pk).update(id=earlier_id.pk + 100)
    assert change_events_sequence() == 2
    seqs = list(ChangeEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == [1, 2, 3, 4]
    assert change_events_sequence() == 0  # safe to repeat


def test_webhook_delivery_signed_in_order_with_xref(api, receiver, secret):
    sub = subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    # C first lives in ES, then moves to FR
    ids = load(api, [*PEOPLE[:2], {**PEOPLE[2], "country": "ES"}])
    result = golden_records_apply_clusters(
        domain="customer", clusters={ids["A"]: 1, ids["B"]: 1, ids["C"]: 2}
    )
    first, second = result.golden_of[1], result.golden_of[2]
    golden_records_change(api, PEOPLE[2:], [second])
    outcomes = drain()
    assert outcomes.count("delivered") == 3
    assert receiver.refused == []
    got = [r.event for r in receiver.received]
    assert [e["seq"] for e in got] == [1, 2, 3]
    assert [(e["type"], e["golden"]["id"], e["golden"]["version"]) for e in got] == [
        ("golden.created", first, 1),
        ("golden.created", second, 1),
        ("golden.updated", second, 2),
    ]
    # a created event carries the attributes the golden record was written with
    assert got[0]["golden"]["attributes"]["country"] == "DE"
    assert got[1]["golden"]["attributes"]["country"] == "ES"
    last = got[-1]
    assert last["type"] == "golden.updated"
    assert last["golden"]["attributes"]["country"] == "FR"
    assert last["changed"] and "country" in last["changed"]
    assert last["xref"] == [{"source": "crm", "source_key": "C"}]
    assert Delivery.objects.filter(subscriber=sub, status="delivered").count() == 3


def test_attribute_filters_and_event_kinds_route_events(api, receiver, secret):
    subscriber_register(
        code="eu",
        kind="webhook",
        url=receiver.url,
        secret=secret,
        filters={"country": ["FR"]},
        event_kinds=["updated"],
        include_source_keys=False,
    )
    ids = load(api)
    result = golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1, ids["C"]: 2})
    # created DE, created FR, then updated DE, updated FR: only the last passes both filters
    golden_records_change(
        api,
        [{**PEOPLE[0], "given_name": "Anna"}, {**PEOPLE[2], "given_name": "Robert"}],
        [result.golden_of[1], result.golden_of[2]],
    )
    assert [k for _, _, k in events()] == ["created", "created", "updated", "updated"]
    drain()
    got = [r.event for r in receiver.received]
    assert [(e["type"], e["golden"]["attributes"]["country"]) for e in got] == [
        ("golden.updated", "FR")
    ]
    assert got[0]["xref"] == []


def test_500_retries_with_backoff_then_dead_letter_then_replay(api, receiver, secret, settings):
    settings.AURUM_SYNC_CIRCUIT_FAILURES = 100
    sub = subscriber_register(
        code="crm", kind="webhook", url=receiver.url, secret=secret, max_attempts=3
    )
    ids = load(api, PEOPLE[:1])
    result = golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1})
    golden_records_change(api, [{**PEOPLE[0], "given_name": "Anna"}], [result.golden_of[1]])
    receiver.status = 500
    before = timezone.now()
    # two events of one golden record: the second waits for the first
    assert drain() == ["pending"]
    d = Delivery.objects.order_by("seq")[0]
    assert d.attempts == 1 and d.response_code == 500 and d.error == "HTTP 500"
    # backoff: between base/2 and base after the first failure (base 2 s)
    assert (
        before + timedelta(seconds=1) <= d.next_attempt_at <= timezone.now() + timedelta(seconds=2)
    )
    later = timezone.now() + timedelta(hours=2)
    for _ in range(8):
        send(sync_relay(now=later).batches)
    assert list(Delivery.objects.order_by("seq").values_list("status", "attempts")) == [
        ("dead", 3),
        ("dead", 3),
    ]
    assert receiver.received == []
    # when the receiver recovers and an admin replays one, then all
    receiver.status = 200
    assert delivery_replay(delivery=Delivery.objects.order_by("seq")[0])
    drain()
    assert len(receiver.received) == 1
    assert deliveries_replay_all(subscriber=sub) == 1
    drain()
    assert [r.event["seq"] for r in receiver.received] == [1, 2]
    assert receiver.calls == 8  # 3 + 3 failed, 2 replayed
    sub.refresh_from_db()
    assert (sub.attempts_total, sub.failures_total) == (8, 6)


def test_circuit_breaker_opens_then_probes(api, receiver, secret, settings):
    settings.AURUM_SYNC_CIRCUIT_FAILURES = 2
    settings.AURUM_SYNC_CIRCUIT_COOLDOWN = 30
    sub = subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    ids = load(api)
    result = golden_records_apply_clusters(
        domain="customer", clusters={ids["A"]: 1, ids["B"]: 2, ids["C"]: 3}
    )
    golden_records_change(
        api,
        [{**p, "family_name": "Leigh"} for p in PEOPLE],
        [result.golden_of[k] for k in (1, 2, 3)],
    )
    assert ChangeEvent.objects.count() == 6
    receiver.status = 500
    # three golden records, two versions each, all due at once, in one batch
    batches = sync_relay().batches
    assert [len(b) for b in batches] == [6]
    # the circuit opens after two failures: the batch stops, the rest is given back untried
    assert send(batches) == ["pending", "pending"]
    assert receiver.calls == 2
    sub.refresh_from_db()
    assert sub.consecutive_failures == 2
    assert sub.circuit_open_until is not None and sub.circuit_open_until > timezone.now()
    assert list(Delivery.objects.order_by("seq").values_list("status", "attempts")) == [
        ("pending", 1),
        ("pending", 1),
        ("pending", 0),
        ("pending", 0),
        ("pending", 0),
        ("pending", 0),
    ]
    Delivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())
    assert sync_relay().to_send == []  # open: no calls
    # after the cool-down exactly one probe goes
    later = timezone.now() + timedelta(seconds=31)
    probe = sync_relay(now=later).to_send
    assert len(probe) == 1
    assert sync_relay(now=later).to_send == []
    receiver.status = 200
    assert delivery_attempt(delivery_id=probe[0]) == "delivered"
    sub.refresh_from_db()
    assert sub.consecutive_failures == 0 and sub.circuit_open_until is None
    Delivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())
    drain()
    assert len(receiver.unique_ids()) == 6


def test_410_disables_the_subscriber_until_enabled(api, receiver, secret):
    sub = subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    ids = load(api, PEOPLE[:1])
    result = golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1})
    golden_records_change(api, [{**PEOPLE[0], "given_name": "Anna"}], [result.golden_of[1]])
    receiver.status = 410
    assert drain() == ["gone"]
    sub.refresh_from_db()
    assert not sub.is_active and "410" in sub.disabled_reason
    assert sync_relay().to_send == []
    assert receiver.calls == 1
    receiver.status = 200
    subscriber_enable(subscriber=sub)
    drain()
    assert [r.event["seq"] for r in receiver.received] == [1, 2]


def test_timeouts_are_retried(api, receiver, secret, settings):
    settings.AURUM_SYNC_SEND_TIMEOUT = 0.3
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    ids = load(api, PEOPLE[:1])
    golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1})
    receiver.delay = 1.0
    assert drain()[0] == "pending"
    d = Delivery.objects.order_by("seq")[0]
    assert "timed out" in d.error and d.response_code is None


def test_private_addresses_are_refused(db, settings):
    from django.core.exceptions import ValidationError

    settings.AURUM_WEBHOOK_ALLOW_LOOPBACK = False
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "ftp://example.com/",
    ]:
        with pytest.raises(ValidationError):
            subscriber_register(code="x", kind="webhook", url=url)
    assert not Subscriber.objects.exists()


def test_a_refused_address_at_send_time_is_a_dead_letter_at_once(api, receiver, secret, settings):
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    ids = load(api, PEOPLE[:1])
    golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1})
    settings.AURUM_WEBHOOK_ALLOW_LOOPBACK = False
    assert drain()[0] == "dead"
    assert "loopback" in Delivery.objects.order_by("seq")[0].error
    assert receiver.calls == 0


def test_a_duplicate_task_is_skipped(api, receiver, secret):
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    ids = load(api, PEOPLE[:1])
    golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1})
    first = sync_relay().to_send[0]
    assert delivery_attempt(delivery_id=first) == "delivered"
    assert delivery_attempt(delivery_id=first) == "skipped"
    assert receiver.calls == 1


def test_payload_xref_is_the_membership_at_event_time(api, steward):
    # given A and B in one golden record, then B split out into its own
    ids = load(api, PEOPLE[:2])
    result = golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1, ids["B"]: 1})
    golden = result.golden_of[1]
    golden_record_split(domain="customer", golden_id=golden, record_ids=[ids["B"]], actor=steward)
    change_events_sequence()
    # when a reader takes the feed from the start, after the split
    feed = {
        (e["golden"]["id"], e["golden"]["version"]): e["xref"]
        for e in api.get("/api/v1/events?after=0").json()["events"]
    }
    split_off = GoldenRecord.objects.exclude(pk=golden).get().pk
    a, b = {"source": "crm", "source_key": "A"}, {"source": "crm", "source_key": "B"}
    # then the created event still lists both members, as they were then
    assert feed[golden, 1] == [a, b]
    # and the events of the split list the members after it
    assert feed[golden, 2] == [a]
    assert feed[split_off, 1] == [b]


def test_set_based_planning_keeps_only_the_wanted_domains_and_kinds(api, receiver, secret):
    subscriber_register(
        code="upd", kind="webhook", url=receiver.url, secret=secret, event_kinds=["updated"]
    )
    subscriber_register(
        code="sup", kind="webhook", url=receiver.url, secret=secret, domains=["supplier"]
    )
    every = subscriber_register(code="all", kind="webhook", url=receiver.url, secret=secret)
    ids = load(api)
    result = golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1, ids["C"]: 2})
    golden_records_change(api, [{**PEOPLE[0], "given_name": "Anna"}], [result.golden_of[1]])
    sync_relay()
    planned = sorted(Delivery.objects.values_list("subscriber__code", "seq"))
    assert planned == [("all", 1), ("all", 2), ("all", 3), ("upd", 3)]
    assert sync_relay().planned == 0  # a repeat plans nothing new
    assert Subscriber.objects.get(pk=every.pk).planned_seq == 3
    assert Subscriber.objects.get(code="sup").planned_seq == 3
