"""A real Celery worker on the production parts: PostgreSQL and Redis.

The worker is another process, so the data it works on must be committed (``transactional_db``)
and it reads pytest-django's test database, not the one DATABASE_URL names.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from celery.result import EagerResult
from django.db import connection
from django.utils import timezone
from kombu import Exchange, Queue

from config.celery import app
from mdm.models import IdempotencyKey
from mdm.services.sources import source_system_upsert
from mdm.tasks import purge_idempotency_keys

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
WORK_TIMEOUT = 30.0


@dataclass
class Worker:
    queue: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no worker log)"
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, what: str) -> None:
        if self.process.poll() is not None:
            pytest.fail(
                f"the worker exited with {self.process.returncode} while waiting for {what}; "
                f"its log:\n{self.log_tail()}"
            )


def _test_database_url() -> str:
    """DATABASE_URL of the database pytest-django created (test_test, test_test_gw0, ...)."""
    db = connection.settings_dict
    user = quote(db["USER"] or "", safe="")
    password = quote(db["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = quote(db["HOST"] or "", safe="")  # a socket directory is percent-encoded
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}{host}{port}/{quote(db['NAME'], safe='')}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group (a warm shutdown), then SIGKILL if it hangs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _delete_queue(redis_url: str, queue: str) -> None:
    """Remove the one-off queue and its binding, so runs leave nothing behind in Redis."""
    with app.connection_for_write(redis_url) as conn:
        # kombu deletes the bindings this channel knows of: declare it here first.
        bound = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)(conn)
        bound.declare()
        bound.delete()


@pytest.fixture
def worker(
    require_postgres: None, redis_url: str, transactional_db: Any, tmp_path: Path
) -> Iterator[Worker]:
    """A worker consuming a queue of its own, on the test database and ``redis_url``.

    It depends on ``transactional_db`` so that it is stopped before the tables are flushed and
    before pytest-django drops the database it is connected to.
    """
    queue = f"aurum-test-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k != "CELERY_TASK_ALWAYS_EAGER"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=_test_database_url(),
        CELERY_BROKER_URL=redis_url,
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "-Q",
                queue,
                "-n",
                f"{queue}@%h",
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = Worker(queue, log, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not re.search(rf"{queue}@\S+ ready\.", started.log_tail(lines=10_000)):
            started.check_alive("it to be ready")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the worker was not ready after {START_TIMEOUT:.0f} s:\n{started.log_tail()}"
                )
            time.sleep(0.2)
        yield started
    finally:
        _stop(process)
        _delete_queue(redis_url, queue)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_worker_purges_old_idempotency_keys_from_redis_queue(
    worker: Worker, redis_url: str
) -> None:
    # given one key stored 100 h ago and one fresh, committed (the worker is another process)
    system, _ = source_system_upsert(code="crm")
    old = IdempotencyKey.objects.create(
        source_system=system, key="old", request_hash="a" * 64, status_code=201, response={}
    )
    fresh = IdempotencyKey.objects.create(
        source_system=system, key="fresh", request_hash="b" * 64, status_code=201, response={}
    )
    IdempotencyKey.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=100)
    )

    # when the purge is sent to the worker's queue through Redis (explicitly: the test
    # process's own broker setting may be anything)
    with app.connection_for_write(redis_url) as conn:
        result = purge_idempotency_keys.apply_async(
            kwargs={"max_age_hours": 72}, queue=worker.queue, connection=conn
        )
    assert not isinstance(result, EagerResult), "the task ran in the test process, not the worker"

    # then the worker deletes the old key and keeps the fresh one
    deadline = time.monotonic() + WORK_TIMEOUT
    while IdempotencyKey.objects.filter(pk=old.pk).exists():
        worker.check_alive("the purge")
        if time.monotonic() > deadline:
            pytest.fail(f"old key still there after {WORK_TIMEOUT:.0f} s:\n{worker.log_tail()}")
        time.sleep(0.2)
    assert list(IdempotencyKey.objects.values_list("pk", flat=True)) == [fresh.pk]
    succeeded = rf"Task mdm\.purge_idempotency_keys\[{result.id}\] succeeded in \S+: 1$"
    assert re.search(succeeded, worker.log_tail(lines=10_000), re.MULTILINE), worker.log_tail()


def test_a_lost_worker_does_not_lose_its_task_on_redis() -> None:
    """acks_late + reject_on_worker_lost, and a visibility timeout of at least an hour.

    The settings are read in a fresh process with a Redis broker URL, so this holds whatever
    broker the outer run uses; nothing connects to Redis.
    """
    code = (
        "import django, json; django.setup(); "
        "from config.celery import app; "
        "conn = app.connection_for_write(); "
        "print(json.dumps({"
        "'broker': app.conf.broker_url, "
        "'acks_late': app.conf.task_acks_late, "
        "'reject_on_worker_lost': app.conf.task_reject_on_worker_lost, "
        "'prefetch': app.conf.worker_prefetch_multiplier, "
        "'transport': conn.transport_cls, "
        "'visibility_timeout': conn.transport_options.get('visibility_timeout')}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        CELERY_BROKER_URL="redis://redis.invalid:6379/0",
    )

    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    conf = json.loads(done.stdout.strip().splitlines()[-1])
    assert conf["broker"] == "redis://redis.invalid:6379/0"
    assert conf["transport"] == "redis"
    assert conf["acks_late"] is True
    assert conf["reject_on_worker_lost"] is True
    assert conf["prefetch"] == 1
    assert conf["visibility_timeout"] >= 3600
    # and the test process's own app is configured the same way
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
