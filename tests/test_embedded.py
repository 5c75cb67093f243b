"""The embedded default (``make demo``): SQLite and the filesystem broker, no service at all.

Everything runs in subprocesses with their own ``AURUM_VAR_DIR``; the outer run's database and
broker, whatever they are, are never touched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.processes import free_port, group_alive

REPO = Path(__file__).resolve().parent.parent
MANAGE = str(REPO / "manage.py")
# What would point a subprocess at the outer run's services, make Celery eager, or turn off
# the DEBUG that lets `make demo`'s runserver serve the API docs' static assets.
OUTER_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "DEBUG",
)
START_TIMEOUT = 60.0
PORT_ATTEMPTS = 5
# runhub's own check, or runserver's if the port is taken between that check and the bind.
PORT_IN_USE = re.compile(r"That port is already in use|Address already in use")
WORK_TIMEOUT = 30.0
URL = "/api/v1/customer/records"
ANN = {"source_key": "K1", "given_name": "Ann", "family_name": "Lee"}


@dataclass
class Embedded:
    """A fresh ``var/`` and the environment of ``make demo`` pointed at it."""

    var_dir: Path
    env: dict[str, str]

    def manage(self, *args: str) -> str:
        """Run ``manage.py ARGS`` on this var dir; its stdout."""
        done = subprocess.run(
            [sys.executable, MANAGE, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (
            f"manage.py {' '.join(args)} exited with {done.returncode}:\n"
            f"{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "--no-imports", "-c", code)

    def idempotency_keys(self) -> set[str]:
        # The SQLite file directly: cheaper than a Django process per poll, and WAL lets us
        # read while the worker writes.
        with sqlite3.connect(self.var_dir / "aurum.sqlite3", timeout=10) as db:
            return {key for (key,) in db.execute("SELECT key FROM mdm_idempotencykey")}


@dataclass
class Hub:
    """``manage.py runhub`` running on a free port."""

    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no runhub log)"
        return "\n".join(text.splitlines()[-lines:])

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - http:// to the server this test started
            self.url + path, data=data, method=method, headers=headers or {}
        )
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def check_alive(self, what: str) -> None:
        if self.process.poll() is not None:
            pytest.fail(
                f"runhub exited with {self.process.returncode} while waiting for {what}; "
                f"runhub log:\n{self.log_tail()}"
            )

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive(what)
            if condition():
                return
            time.sleep(0.25)
        pytest.fail(f"no {what} after {timeout:.0f} s; runhub log:\n{self.log_tail()}")

    def wait_until_serving(self) -> bool:
        """True once /healthz answers; False if runserver lost its port (the caller retries)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None and PORT_IN_USE.search(self.log_tail()):
                return False
            self.check_alive("an answer on /healthz")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.25)
        pytest.fail(f"no answer on /healthz after {START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def worker_ready(self) -> bool:
        return re.search(r"celery@\S+ ready\.", self.log_tail(lines=10_000)) is not None


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM runhub's whole process group (runserver, worker, beat); SIGKILL what is left."""
    pgid = process.pid  # start_new_session=True: the leader's pid is the group id
    if group_alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while group_alive(pgid) and time.monotonic() < deadline:
        process.poll()  # reap the leader, or the group stays alive as a zombie
        time.sleep(0.2)
    if group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture
def embedded(tmp_path: Path) -> Embedded:
    """A migrated database in a fresh var dir, with no trace of the outer run's services."""
    var_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in OUTER_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        AURUM_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
    )
    site = Embedded(var_dir, env)
    site.manage("migrate", "--no-input")
    return site


def _start_hub(embedded: Embedded, log: Path) -> Hub:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, MANAGE, "runhub", f"127.0.0.1:{port}"],
            cwd=REPO,
            env=embedded.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown reaches the worker
        )
    return Hub(f"http://127.0.0.1:{port}", log, process)


@pytest.fixture
def hub(embedded: Embedded, tmp_path: Path) -> Iterator[Hub]:
    """runhub answering on /healthz.

    The free port is only free when we look: any process's outgoing connection can take it
    before runserver binds it, so a start that loses the port is retried on another.
    """
    started: Hub | None = None
    try:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            candidate = started = _start_hub(embedded, tmp_path / f"runhub-{attempt}.log")
            if candidate.wait_until_serving():
                break
            _stop_group(candidate.process)
        else:
            pytest.fail(f"no free port in {PORT_ATTEMPTS} attempts:\n{candidate.log_tail()}")
        yield started
    finally:
        if started is not None:
            _stop_group(started.process)


@pytest.mark.slow
def test_embedded_default_serves_the_api_and_runs_the_worker(embedded: Embedded, hub: Hub) -> None:
    # given a source system with a token, and the hub up
    embedded.shell(
        "from mdm.services.sources import source_system_upsert; source_system_upsert(code='demo')"
    )
    secret = embedded.manage("issue_token", "demo").strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {secret}"}

    # then the health check and the API docs answer, with the docs' assets served locally
    status, body = hub.request("GET", "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, body = hub.request("GET", "/api/v1/docs")
    assert status == 200, hub.log_tail()
    assert b"/static/drf_spectacular_sidecar/" in body
    asset = re.search(rb"/static/drf_spectacular_sidecar/[^\"']+\.js", body)
    assert asset is not None, body.decode(errors="replace")
    assert hub.request("GET", asset.group().decode())[0] == 200

    # when a record is pushed, then it is created and reads back
    status, body = hub.request("POST", URL, ANN, auth)
    assert status == 201, (body, hub.log_tail())
    assert json.loads(body)["results"][0]["status"] == "created"
    status, body = hub.request("GET", f"{URL}/K1", headers=auth)
    assert status == 200, (body, hub.log_tail())
    record = json.loads(body)
    assert (record["source"], record["source_key"], record["version"]) == ("demo", "K1", 1)
    assert record["attributes"]["given_name"] == "Ann"
    assert record["attributes"]["family_name"] == "Lee"
    assert record["raw"] == ANN

    # given two stored idempotency keys: "old" aged 2 h, "new" fresh.  2 h is inside the default
    # 72 h window, so only the task sent below (max 1 h) can remove "old", not beat's schedule.
    for key, source_key in (("old", "K2"), ("new", "K3")):
        status, body = hub.request(
            "POST", URL, {**ANN, "source_key": source_key}, {**auth, "Idempotency-Key": key}
        )
        assert status == 201, (body, hub.log_tail())
    embedded.shell(
        "from datetime import timedelta; from django.utils import timezone; "
        "from mdm.models import IdempotencyKey; "
        "assert IdempotencyKey.objects.filter(key='old')"
        ".update(created_at=timezone.now() - timedelta(hours=2)) == 1"
    )
    assert embedded.idempotency_keys() == {"old", "new"}
    hub.wait_for(hub.worker_ready, START_TIMEOUT, "Celery worker ready")

    # when another process sends the purge task through the filesystem broker
    embedded.shell("from mdm.tasks import purge_idempotency_keys; purge_idempotency_keys.delay(1)")

    # then runhub's worker runs it: the old key goes, the fresh one stays
    hub.wait_for(
        lambda: "old" not in embedded.idempotency_keys(), WORK_TIMEOUT, "purge of the old key"
    )
    assert embedded.idempotency_keys() == {"new"}
    succeeded = r"Task mdm\.purge_idempotency_keys\[[\w-]+\] succeeded in \S+: 1$"
    assert re.search(succeeded, hub.log_tail(lines=10_000), re.MULTILINE), hub.log_tail()


@pytest.mark.slow
def test_runhub_on_a_busy_port_says_so_and_leaves_no_worker(embedded: Embedded) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, MANAGE, "runhub", f"127.0.0.1:{port}"],
            cwd=REPO,
            env=embedded.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert done.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Celery worker started" not in done.stdout
    leftovers = subprocess.run(
        ["pgrep", "-f", f"{embedded.var_dir}/celerybeat-schedule"], capture_output=True, check=False
    )
    assert leftovers.stdout == b""
