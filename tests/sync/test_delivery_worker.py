"""Delivery through a real Celery worker on Redis, to a real HTTP receiver on loopback.

The relay runs inside the worker (the ``sync.relay`` task, as beat sends it in production);
the test sends it every half second.  Failures are real: the worker is killed with SIGKILL,
Redis (a server of the test's own) is restarted with a backlog, PostgreSQL connections are
terminated with ``pg_terminate_backend``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count

from config.celery import app
from mdm.models import SourceRecord
from mdm.services.golden import golden_records_apply_clusters, golden_records_rebuild
from sync.models import ChangeEvent, Delivery
from sync.services import subscriber_register
from sync.tasks import relay
from tests.sync.receiver_server import Receiver
from tests.test_celery_worker import Worker, _delete_queue, _stop, _test_database_url

REPO = Path(__file__).resolve().parent.parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def start_worker(
    redis_url: str,
    queue: str,
    log: Path,
    *,
    concurrency: int = 1,
    extra: dict[str, str] | None = None,
) -> Worker:
    env = {k: v for k, v in os.environ.items() if k != "CELERY_TASK_ALWAYS_EAGER"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=_test_database_url(),
        CELERY_BROKER_URL=redis_url,
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
        AURUM_SYNC_REQUEUE_AFTER="3",
        AURUM_SYNC_SEND_TIMEOUT="3",
        AURUM_SYNC_BACKOFF_BASE="0.2",
        **(extra or {}),
    )
    pool = ["--pool", "solo"] if concurrency == 1 else ["--pool", "prefork"]
    ready_before = len(re.findall(r"@\S+ ready\.", log.read_text())) if log.exists() else 0
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "config", "worker", *pool,
                "--concurrency", str(concurrency), "-Q", queue, "-n", f"{uuid.uuid4().hex}@%h",
                "--without-mingle", "--without-gossip", "--loglevel", "INFO",
            ],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    worker = Worker(queue, log, process)
    deadline = time.monotonic() + 60
    while len(re.findall(r"@\S+ ready\.", worker.log_tail(lines=100_000))) <= ready_before:
        worker.check_alive("it to be ready")
        if time.monotonic() > deadline:
            pytest.fail(f"worker not ready:\n{worker.log_tail()}")
        time.sleep(0.2)
    return worker


def send_relay(redis_url: str, queue: str) -> bool:
    try:
        with app.connection_for_write(redis_url) as conn:
            conn.ensure_connection(max_retries=1)
            relay.apply_async(kwargs={"queue": queue}, queue=queue, connection=conn)
        return True
    except Exception:  # the broker is down: the next round tries again
        return False


def wait_for(
    done: Callable[[], bool],
    *,
    redis_url: str,
    queue: str,
    workers: list[Worker],
    timeout: float,
    what: str,
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        for w in workers:
            w.check_alive(what)
        if time.monotonic() > deadline:
            counts = dict(Delivery.objects.values_list("status").annotate(n=Count("id")))
            pytest.fail(
                f"{what}: not done after {timeout:.0f} s; deliveries {counts}\n"
                f"{workers[-1].log_tail()}"
            )
        send_relay(redis_url, queue)
        time.sleep(0.5)


def make_changes(api: Any, golden_count: int) -> int:
    """golden_count golden records, each created (v1), then changed by a second ingest (v2)."""

    def post(country: str) -> None:
        people = [
            {
                "source_key": f"K{i:05d}",
                "given_name": f"Name{i}",
                "family_name": "Family",
                "country": country,
            }
            for i in range(golden_count)
        ]
        for start in range(0, len(people), 500):
            response = api.post(
                "/api/v1/customer/records", {"records": people[start : start + 500]}, format="json"
            )
            assert response.status_code == 200, response.content

    post("DE")
    ids = list(SourceRecord.objects.order_by("pk").values_list("pk", flat=True))
    result = golden_records_apply_clusters(domain="customer", clusters={rid: rid for rid in ids})
    assert result.created == golden_count
    assert ChangeEvent.objects.filter(kind="created", version=1).count() == golden_count
    post("FR")
    goldens = sorted(result.golden_of.values())
    assert golden_records_rebuild(domain="customer", golden_ids=goldens) == golden_count
    assert ChangeEvent.objects.filter(kind="updated", version=2).count() == golden_count
    return ChangeEvent.objects.count()


def all_delivered(receiver: Receiver, total: int) -> Callable[[], bool]:
    """Done when the receiver holds every event and every delivery row says so: the worker
    records "delivered" only after the receiver's answer, so the receiver sees the last
    event a moment before its row leaves "sending"."""

    def done() -> bool:
        return (
            len(receiver.unique_ids()) >= total
            and not Delivery.objects.exclude(status="delivered").exists()
        )

    return done


def assert_in_order(receiver: Receiver) -> None:
    seen: dict[int, int] = {}
    for r in receiver.received:
        gid, version = r.event["golden"]["id"], r.event["golden"]["version"]
        assert version > seen.get(gid, 0), f"golden {gid}: v{version} after v{seen[gid]}"
        seen[gid] = version


@pytest.fixture
def queue(redis_url: str) -> Iterator[str]:
    name = f"aurum-test-sync-{uuid.uuid4().hex}"
    yield name
    with contextlib.suppress(Exception):  # a Redis of the test's own may be gone already
        _delete_queue(redis_url, name)


@pytest.fixture
def live(require_postgres: None, redis_url: str, transactional_db: Any, secret: str):
    receiver = Receiver(secrets=[secret]).start()
    workers: list[Worker] = []
    yield receiver, workers
    for w in workers:
        _stop(w.process)
    receiver.stop()


def test_a_thousand_changes_are_all_delivered_signed_and_in_order(
    live: Any, api: Any, redis_url: str, queue: str, secret: str, tmp_path: Path
) -> None:
    receiver, workers = live
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    workers.append(start_worker(redis_url, queue, tmp_path / "worker.log"))
    total = make_changes(api, 500)
    assert total == 1000
    wait_for(
        all_delivered(receiver, total),
        redis_url=redis_url, queue=queue, workers=workers, timeout=300, what="1000 deliveries",
    )  # fmt: skip
    assert receiver.refused == []
    assert receiver.unique_ids() == {f"evt_{s}" for s in range(1, total + 1)}
    assert len(receiver.received) == total  # no duplicates without failures
    assert_in_order(receiver)
    assert Delivery.objects.filter(status="delivered").count() == total


def test_sigkill_mid_delivery_loses_nothing(
    live: Any, api: Any, redis_url: str, queue: str, secret: str, tmp_path: Path
) -> None:
    receiver, workers = live
    receiver.delay = 0.02
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    total = make_changes(api, 150)
    log = tmp_path / "worker.log"
    workers.append(start_worker(redis_url, queue, log))
    wait_for(
        lambda: len(receiver.unique_ids()) >= 40,
        redis_url=redis_url, queue=queue, workers=workers, timeout=120, what="first deliveries",
    )  # fmt: skip
    # when the worker is killed outright in the middle of its deliveries
    os.killpg(workers[0].process.pid, signal.SIGKILL)
    workers[0].process.wait(timeout=10)
    killed_at = len(receiver.unique_ids())
    assert killed_at < total
    workers.clear()
    workers.append(start_worker(redis_url, queue, log))
    wait_for(
        all_delivered(receiver, total),
        redis_url=redis_url, queue=queue, workers=workers, timeout=300, what="all deliveries",
    )  # fmt: skip
    assert receiver.unique_ids() == {f"evt_{s}" for s in range(1, total + 1)}
    duplicates = receiver.duplicates
    assert len(receiver.received) == total and receiver.calls == total + duplicates
    assert Delivery.objects.exclude(status="delivered").count() == 0
    print(f"killed after {killed_at} of {total}; duplicates after restart: {duplicates}")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A redis-server of this test's own (port chosen free), and a function restarting it."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "redis"
    data.mkdir()
    args = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
        "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def restart() -> None:
        procs[-1].terminate()
        procs[-1].wait(timeout=10)
        start()

    start()
    yield f"redis://127.0.0.1:{port}/0", restart
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(timeout=10)


def test_redis_restarted_with_a_backlog_loses_nothing(
    require_postgres: None,
    transactional_db: Any,
    api: Any,
    own_redis: tuple[str, Callable[[], None]],
    secret: str,
    tmp_path: Path,
) -> None:
    redis_url, restart = own_redis
    queue = f"aurum-test-sync-{uuid.uuid4().hex}"
    receiver = Receiver(secrets=[secret], delay=0.02).start()
    workers: list[Worker] = []
    try:
        subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
        total = make_changes(api, 150)
        workers.append(start_worker(redis_url, queue, tmp_path / "worker.log"))
        # a backlog: every delivery queued in Redis, a few delivered
        assert send_relay(redis_url, queue)
        deadline = time.monotonic() + 60
        while len(receiver.unique_ids()) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert Delivery.objects.filter(status__in=["queued", "sending"]).count() > 50
        # when Redis restarts without persistence: the queued messages are gone
        restart()
        wait_for(
            lambda: len(receiver.unique_ids()) >= total,
            redis_url=redis_url, queue=queue, workers=workers, timeout=300,
            what="deliveries after the Redis restart",
        )  # fmt: skip
        assert receiver.unique_ids() == {f"evt_{s}" for s in range(1, total + 1)}
        assert_in_order(receiver)
    finally:
        for w in workers:
            _stop(w.process)
        receiver.stop()


def _terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def test_postgres_connections_lost_under_load_lose_nothing(
    live: Any, api: Any, redis_url: str, queue: str, secret: str, tmp_path: Path
) -> None:
    receiver, workers = live
    receiver.delay = 0.02
    subscriber_register(code="crm", kind="webhook", url=receiver.url, secret=secret)
    total = make_changes(api, 150)
    workers.append(start_worker(redis_url, queue, tmp_path / "worker.log"))
    wait_for(
        lambda: len(receiver.unique_ids()) >= 30,
        redis_url=redis_url, queue=queue, workers=workers, timeout=120, what="first deliveries",
    )  # fmt: skip
    # when every database connection of the worker is cut, three times during the deliveries
    for _ in range(3):
        _terminate_other_backends()
        time.sleep(1.0)
    wait_for(
        lambda: len(receiver.unique_ids()) >= total,
        redis_url=redis_url, queue=queue, workers=workers, timeout=300,
        what="deliveries after the connection losses",
    )  # fmt: skip
    assert receiver.unique_ids() == {f"evt_{s}" for s in range(1, total + 1)}
    assert len(receiver.received) == total
    assert receiver.calls == total + receiver.duplicates
    assert_in_order(receiver)
    print(f"duplicates after the connection losses: {receiver.duplicates}")


def test_the_api_answers_503_then_recovers_when_its_connection_is_cut(
    require_postgres: None, transactional_db: Any, api: Any
) -> None:
    import psycopg

    assert api.get("/api/v1/events").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    # when another session terminates the API's connection (what a server restart does)
    with psycopg.connect(_test_database_url(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)
    # then the request on the dead connection fails cleanly, and the next one reconnects
    cut = api.get("/api/v1/events")
    assert cut.status_code == 503
    assert cut["Retry-After"] == "5"
    assert cut.json()["error"] == "unavailable"
    assert api.get("/api/v1/events").status_code == 200
