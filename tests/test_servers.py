"""The production WSGI servers (Granian, ``config/granian.py``; gunicorn,
``config/gunicorn.py``) serve the hub as the tests' in-process clients see it.

Each server is started for real on a free port, in production settings, over a fresh
SQLite database of its own (migrated and filled by ``manage.py`` subprocesses; the outer
run's database and broker are never touched).  Through it: the golden read (answered by
``config/hot_read.py``, with the request id echoed), a body over
``AURUM_MAX_REQUEST_BYTES`` (413 before it is parsed), a database that cannot be reached
(503 with Retry-After, from ``DatabaseUnavailableMiddleware``), and SIGTERM while a batch
ingest is in flight: the request is answered and committed, the server exits with 0 and
leaves no worker behind.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port, group_alive

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
SERVERS = ("granian", "gunicorn")
# What would point a subprocess at the outer run's services or make Celery eager.
OUTER_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER")
MAX_BYTES = 200_000
SETUP = """
import json
from django.test import Client
from mdm.models import GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.sources import source_system_upsert, source_token_issue
crm, _ = source_system_upsert(code="crm", name="CRM")
secret = source_token_issue(source_system=crm).secret
ann = {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "email": "ann@example.com"}
client = Client(headers={"authorization": f"Bearer {secret}"}, HTTP_HOST="127.0.0.1")
assert client.post("/api/v1/customer/records", ann, "application/json").status_code == 201
record = SourceRecord.objects.get(source_key="A").pk
golden_records_apply_clusters(domain="customer", clusters={record: 1})
print(json.dumps({"secret": secret, "golden": GoldenRecord.objects.get().pk}))
"""


@dataclass
class Hub:
    """A migrated SQLite hub in ``var_dir`` with one customer golden record."""

    env: dict[str, str]
    secret: str
    golden: int


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {args[0]}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Hub:
    var_dir = tmp_path_factory.mktemp("hub")
    env = {k: v for k, v in os.environ.items() if k not in OUTER_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(60),
        SECURE_SSL_REDIRECT="0",
        ALLOWED_HOSTS="127.0.0.1",
        AURUM_VAR_DIR=str(var_dir),
        AURUM_MAX_REQUEST_BYTES=str(MAX_BYTES),
        AURUM_MATCH_AFTER_INGEST="0",
        AURUM_QUALITY_AFTER_INGEST="0",
        AURUM_LOG_FORMAT="plain",
        PYTHONUNBUFFERED="1",
    )
    _manage(env, "migrate", "--noinput")
    made = json.loads(_manage(env, "shell", "--no-imports", "-c", SETUP).splitlines()[-1])
    return Hub(env=env, secret=made["secret"], golden=made["golden"])


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _start(name: str, env: dict[str, str], log: Path, *, wait_for: int = 200) -> Served:
    """``name`` serving the hub on a free port with the project's settings for it, once
    ``/healthz`` answers."""
    port = free_port()
    bind = f"127.0.0.1:{port}"
    if name == "granian":
        command = ["-m", "config.granian", "--workers", "1", "--bind", bind]
    else:
        command = ["-m", "gunicorn", "config.wsgi:application", "-c", "config/gunicorn.py"]
        command += ["--workers", "1", "--bind", bind]
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a stray worker can be found and killed by its group
    )
    served = Served(process, f"http://{bind}", log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"{served.base}/healthz", timeout=2)
            return served
        except httpx.TransportError:
            time.sleep(0.2)
    _stop(served)
    raise AssertionError(f"{name} did not answer:\n{served.output()}")


def _stop(served: Served) -> None:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(served.process.pid, signal.SIGKILL)
            served.process.wait()


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, hub: Hub, tmp_path: Path) -> Iterator[Served]:
    served = _start(request.param, hub.env, tmp_path / f"{request.param}.log")
    try:
        yield served
    finally:
        _stop(served)


def _request(
    served: Served,
    path: str,
    *,
    secret: str,
    body: bytes | None = None,
    request_id: str | None = None,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    if body is None:
        return httpx.get(served.base + path, headers=headers, timeout=60)
    headers["Content-Type"] = "application/json"
    return httpx.post(served.base + path, content=body, headers=headers, timeout=60)


def _idle_keep_alive(served: Served, secret: str) -> socket.socket:
    """A connection that made one request, got its answer and stays open, idle."""
    host, port = served.base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n\r\n".encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def test_golden_read_413_and_sigterm(server: Served, hub: Hub) -> None:
    # a golden read by a source system's token, with the client's request id echoed
    read = _request(
        server,
        f"/api/v1/customer/golden/{hub.golden}",
        secret=hub.secret,
        request_id="r-1",
    )
    assert read.status_code == 200, read.text
    assert read.json()["id"] == hub.golden
    assert read.json()["attributes"]["given_name"] == "Ann"
    assert read.headers["X-Request-ID"] == "r-1"
    assert read.headers["Content-Type"] == "application/json"
    assert read.headers["X-Frame-Options"] == "DENY"
    # an unknown id goes through Django: 404, with a request id of the hub's own
    missing = _request(server, "/api/v1/customer/golden/999999", secret=hub.secret)
    assert missing.status_code == 404, missing.text
    assert missing.headers["X-Request-ID"]

    # clients holding idle keep-alive connections, more than the server has threads, do
    # not keep the next client waiting
    idle = [_idle_keep_alive(server, hub.secret) for _ in range(6)]
    try:
        started = time.monotonic()
        again = _request(server, f"/api/v1/customer/golden/{hub.golden}", secret=hub.secret)
        assert again.status_code == 200
        assert time.monotonic() - started < 5
    finally:
        for sock in idle:
            sock.close()

    # a body over AURUM_MAX_REQUEST_BYTES: 413
    big = [{"source_key": f"big{i}", "given_name": "x" * 200} for i in range(1000)]
    refused = _request(
        server,
        "/api/v1/customer/records",
        secret=hub.secret,
        body=json.dumps({"records": big}).encode(),
    )
    assert refused.status_code == 413, refused.text
    assert str(MAX_BYTES) in refused.json()["detail"]

    # SIGTERM while a batch ingest is in flight: answered and committed, then a clean exit
    run = secrets.token_hex(4)  # new keys: the hub is shared by both servers' tests
    batch = [{"source_key": f"T{run}-{i}", "given_name": f"N{i}"} for i in range(500)]
    answers: list[httpx.Response] = []

    def ingest() -> None:
        body = json.dumps({"records": batch}).encode()
        answers.append(_request(server, "/api/v1/customer/records", secret=hub.secret, body=body))

    thread = threading.Thread(target=ingest)
    thread.start()
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    thread.join(timeout=60)
    assert answers, server.output()
    assert answers[0].status_code == 200, (answers[0].text, server.output())
    assert answers[0].json()["counts"]["created"] == len(batch)
    assert server.process.wait(timeout=30) == 0, server.output()
    deadline = time.monotonic() + 10
    while group_alive(server.process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(server.process.pid), "a worker outlived the server"
    assert "Traceback" not in server.output()


@pytest.mark.parametrize("name", SERVERS)
def test_database_outage_is_503(name: str, hub: Hub, tmp_path: Path) -> None:
    # PostgreSQL on a port nobody listens on: every request's first query fails
    env = {**hub.env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/aurum"}
    served = _start(name, env, tmp_path / f"{name}.log")
    try:
        answer = _request(served, f"/api/v1/customer/golden/{hub.golden}", secret=hub.secret)
    finally:
        _stop(served)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert answer.json()["error"] == "unavailable"
