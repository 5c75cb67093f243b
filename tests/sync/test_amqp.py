"""The AMQP destination on a real RabbitMQ (127.0.0.1:5672, guest/guest)."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from mdm.models import SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from sync.models import Delivery
from sync.receiver import Verifier
from sync.services import deliveries_send, subscriber_register, sync_relay
from tests.conftest import missing_service
from tests.sync.changes import golden_records_change

AMQP_URL = os.environ.get("AURUM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def rabbit() -> Iterator[tuple[str, Queue]]:
    try:
        socket.create_connection(("127.0.0.1", 5672), 1).close()
    except OSError:
        missing_service("needs RabbitMQ at 127.0.0.1:5672")
    name = f"aurum_test_{uuid.uuid4().hex}"
    exchange = Exchange(name, type="topic", durable=True)
    queue = Queue(name, exchange, routing_key="customer.#", durable=False, auto_delete=False)
    with Connection(AMQP_URL) as conn:
        queue(conn.default_channel).declare()
    yield name, queue
    with Connection(AMQP_URL) as conn:
        queue(conn.default_channel).delete()
        exchange(conn.default_channel).delete()


def drain() -> list[str]:
    outcomes: list[str] = []
    for _ in range(20):
        batches = sync_relay().batches
        if not batches:
            break
        for batch in batches:
            got = deliveries_send(delivery_ids=batch)
            outcomes += [got[i] for i in batch if got[i] != "deferred"]
    return outcomes


def test_events_are_published_signed_persistent_and_in_order(
    api: Any, rabbit: tuple[str, Queue], secret: str
) -> None:
    exchange, queue = rabbit
    subscriber_register(code="bus", kind="amqp", url=AMQP_URL, exchange=exchange, secret=secret)
    people = [{"source_key": k, "given_name": k, "family_name": "Lee"} for k in "ABC"]
    assert (
        api.post("/api/v1/customer/records", {"records": people}, format="json").status_code == 200
    )
    ids = list(SourceRecord.objects.order_by("pk").values_list("pk", flat=True))
    result = golden_records_apply_clusters(domain="customer", clusters={r: r for r in ids})
    # three created (v1), then a real change to each: three updated (v2)
    changed = [{**p, "family_name": "Leigh"} for p in people]
    golden_records_change(api, changed, [result.golden_of[r] for r in ids])
    assert drain().count("delivered") == 6

    verifier = Verifier(secrets=[secret])
    got: list[tuple[str, dict[str, Any]]] = []
    with Connection(AMQP_URL) as conn:
        bound = queue(conn.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            event = verifier.verify(message.headers, message.body)
            assert message.properties["delivery_mode"] == 2
            assert message.properties["message_id"] == message.headers["webhook-id"]
            got.append((message.delivery_info["routing_key"], event))
    assert [e["seq"] for _, e in got] == [1, 2, 3, 4, 5, 6]
    assert [k for k, _ in got] == ["customer.created"] * 3 + ["customer.updated"] * 3
    assert json.loads(json.dumps(got[-1][1]))["xref"] == [{"source": "crm", "source_key": "C"}]


def test_an_unreachable_broker_is_retried(api: Any, db: Any, secret: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    subscriber_register(
        code="bus", kind="amqp", url=f"amqp://guest:guest@127.0.0.1:{port}//", exchange="x",
        secret=secret,
    )  # fmt: skip
    people = [{"source_key": "A", "given_name": "A", "family_name": "Lee"}]
    assert (
        api.post("/api/v1/customer/records", {"records": people}, format="json").status_code == 200
    )
    ids = list(SourceRecord.objects.values_list("pk", flat=True))
    golden_records_apply_clusters(domain="customer", clusters={r: r for r in ids})
    assert drain() == ["pending"]
    delivery = Delivery.objects.order_by("seq")[0]
    assert delivery.attempts == 1 and delivery.status == "pending" and delivery.error
