"""A real PostgreSQL restart under load: nothing committed is lost, nothing is sent twice
to the subscriber's application, the API answers 503 during the outage, the worker recovers.

The test makes a throwaway PostgreSQL cluster of its own (``initdb`` as the ``postgres`` OS
user when run as root, on a free port), migrates the hub into it and runs the hub as its
users do: gunicorn serving the API, the relay command, a Celery worker (solo pool, on a
Redis server of the test's own) and a signed-webhook receiver on loopback.  While a load
thread corrects golden records and ingests source records through the API, PostgreSQL is
restarted three times: ``pg_ctl restart -m fast``, a fast stop and start with the API probed
during the outage, and an immediate stop (a crash: recovery replays the WAL) and start.

What it proves, read from the cluster and the receiver afterwards:

- every golden history row (every committed change) has exactly one event, numbered
  without gaps, and every correction the API acknowledged is among them;
- every event reached the receiver, each version of a golden record in order; delivery is
  at least once, so the receiver dedupes by ``webhook-id`` (the Standard Webhooks id,
  ``evt_<seq>``): each version is processed exactly once, and retries of a message already
  processed are counted as duplicates and acknowledged;
- during each outage the API answers 503 with Retry-After, and 200 after it;
- the worker, the relay and the API server are the same processes at the end.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from sync.signing import secret_generate
from tests.processes import free_port
from tests.sync.receiver_server import Receiver

REPO = Path(__file__).resolve().parent.parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.postgres]
GOLDEN_COUNT = 40


def _initdb() -> str | None:
    found = shutil.which("initdb")
    if found:
        return found
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return versions[-1] if versions else None


@dataclass
class Cluster:
    """A PostgreSQL cluster of the test's own, controlled with pg_ctl."""

    bindir: Path
    base: Path
    port: int
    as_postgres: list[str]
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.base / "postgres.log"

    @property
    def data(self) -> Path:
        return self.base / "data"

    def url(self, db: str = "aurum") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [
            *self.as_postgres, str(self.bindir / "pg_ctl"), "-D", str(self.data),
            "-l", str(self.log), "-w", "-t", "120", *args,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        if check and done.returncode != 0:
            raise AssertionError(
                f"pg_ctl {' '.join(args)} failed: {done.stdout}{done.stderr}\n{self.log_tail()}"
            )
        return done

    def start(self) -> None:
        # pg_ctl start does not reuse the last options (restart does): give them again.
        self.ctl(
            "-o",
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=50",
            "start",
        )

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return ""

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url(), connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    initdb = _initdb()
    if initdb is None:
        pytest.skip("initdb is not installed (Debian: apt-get install postgresql)")
    bindir = Path(initdb).parent
    # Not under pytest's tmp_path: the postgres user must be able to reach the directory.
    base = Path(tempfile.mkdtemp(prefix="aurum-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    pg = Cluster(bindir, base, port, as_postgres)
    started = False
    try:
        subprocess.run(
            [*as_postgres, initdb, "-D", str(pg.data), "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--no-instructions"],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        pg.start()
        started = True
        with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE aurum")
        yield pg
    finally:
        if started or (pg.data / "postmaster.pid").exists():
            pg.ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def broker() -> Iterator[str]:
    """A redis-server of the test's own (the worker's broker)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="aurum-redis-"))
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(data, ignore_errors=True)


SETUP = """
import json
from django.contrib.auth.models import Group, User
from mdm.services.sources import source_system_upsert, source_token_issue
from mdm.services.user_tokens import user_token_issue
from sync.services import subscriber_register

system, _ = source_system_upsert(code="crm", name="CRM")
steward = User.objects.create_user("stella")
steward.groups.add(Group.objects.get(name="steward"))
subscriber_register(code="dwh", kind="webhook", url={url!r}, secret={secret!r}, from_seq=0)
print(json.dumps({{"source": source_token_issue(source_system=system).secret,
                  "steward": user_token_issue(user=steward).secret}}))
"""

CLUSTER = """
import json
from mdm.models import SourceRecord
from mdm.services.golden import golden_records_apply_clusters

ids = list(SourceRecord.objects.order_by("pk").values_list("pk", flat=True))
result = golden_records_apply_clusters(domain="customer", clusters={r: r for r in ids})
print(json.dumps(sorted(result.golden_of.values())))
"""


@dataclass
class Hub:
    env: dict[str, str]
    logdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def shell(self, script: str) -> Any:
        """Run a script in ``manage.py shell``; its last printed line, as JSON."""
        return json.loads(self.manage("shell", "-c", script).strip().splitlines()[-1])

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}"
        return done.stdout

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.logdir / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, *args], cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.processes[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 40) -> str:
        text = (self.logdir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            assert proc.poll() is None, f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}"

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 15)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(timeout=10)


@dataclass
class Load:
    """Golden corrections and source ingests through the API, until stopped."""

    base: str
    source_token: str
    steward_token: str
    golden_ids: list[int]
    statuses: Counter[int] = field(default_factory=Counter)
    acknowledged: list[tuple[int, int]] = field(default_factory=list)  # (golden, version)
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                gid = self.golden_ids[n % len(self.golden_ids)]
                if n % 5 == 0:
                    response = client.post(
                        "/api/v1/customer/records",
                        headers={"Authorization": f"Bearer {self.source_token}"},
                        json={"records": [{"source_key": f"K{n % GOLDEN_COUNT:03d}",
                                           "given_name": f"Name{n % GOLDEN_COUNT}",
                                           "family_name": f"Load{n}"}]},
                    )  # fmt: skip
                else:
                    response = client.post(
                        f"/api/v1/customer/golden/{gid}/correct",
                        headers={"Authorization": f"Bearer {self.steward_token}"},
                        json={"attribute": "city", "value": f"City {n}", "reason": f"load {n}"},
                    )
                    if response.status_code == 200:
                        for golden in response.json()["golden_records"]:
                            self.acknowledged.append((golden["id"], golden["version"]))
                self.statuses[response.status_code] += 1
                if response.status_code not in (200, 503):
                    self.unexpected.append(f"{response.status_code}: {response.text[:300]}")
                time.sleep(0.02)


def _probe(base: str, token: str, want: int, timeout: float) -> httpx.Response:
    """GET the feed until it answers ``want``; that response."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(
                f"{base}/api/v1/events?limit=1",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last.status_code == want:
                return last
        time.sleep(0.1)
    raise AssertionError(f"the API did not answer {want} in {timeout} s; last: {last!r}")


def _wait(done: Callable[[], bool], hub: Hub, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        hub.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not done in {timeout:.0f} s\n{hub.log_tail('worker')}")
        time.sleep(0.5)


def test_postgres_restarts_under_load_lose_nothing(
    cluster: Cluster, broker: str, tmp_path: Path
) -> None:
    secret = secret_generate()
    receiver = Receiver(secrets=[secret]).start()
    queue = f"aurum-restart-{uuid.uuid4().hex[:8]}"
    api_port = free_port()
    base = f"http://127.0.0.1:{api_port}"
    env = {k: v for k, v in os.environ.items() if k != "CELERY_TASK_ALWAYS_EAGER"}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=cluster.url(),
        CELERY_BROKER_URL=broker,
        REDIS_URL=broker,
        PYTHONUNBUFFERED="1",
        AURUM_MATCH_AFTER_INGEST="0",
        AURUM_QUALITY_AFTER_INGEST="0",
        AURUM_SYNC_REQUEUE_AFTER="5",
        AURUM_SYNC_SEND_TIMEOUT="3",
        AURUM_SYNC_BACKOFF_BASE="0.2",
        AURUM_SYNC_BACKOFF_MAX="2",
        AURUM_LOG_FORMAT="plain",
    )
    hub = Hub(env, tmp_path)
    load: Load | None = None
    try:
        # given a migrated hub with a webhook subscriber and GOLDEN_COUNT golden records
        hub.manage("migrate", "--noinput")
        tokens = hub.shell(SETUP.format(url=receiver.url, secret=secret))
        api = hub.spawn(
            "api",
            ["-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{api_port}", "-w", "1",
             "--threads", "4", "--timeout", "60"],
        )  # fmt: skip
        _probe(base, tokens["source"], 200, 60)
        people = [
            {"source_key": f"K{i:03d}", "given_name": f"Name{i}", "family_name": "Start"}
            for i in range(GOLDEN_COUNT)
        ]
        created = httpx.post(
            f"{base}/api/v1/customer/records", json={"records": people}, timeout=60,
            headers={"Authorization": f"Bearer {tokens['source']}"},
        )  # fmt: skip
        assert created.status_code == 200, created.text
        golden_ids = hub.shell(CLUSTER)
        assert len(golden_ids) == GOLDEN_COUNT
        worker = hub.spawn(
            "worker",
            ["-m", "celery", "-A", "config", "worker", "--pool", "solo", "-Q", queue,
             "-n", f"{queue}@%h", "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        )  # fmt: skip
        relay = hub.spawn(
            "relay", ["manage.py", "sync_relay", "--queue", queue, "--interval", "0.3"]
        )
        _wait(lambda: len(receiver.unique_ids()) >= GOLDEN_COUNT, hub, 120, "first deliveries")

        # when PostgreSQL restarts three times under load
        load = Load(base, tokens["source"], tokens["steward"], golden_ids)
        thread = threading.Thread(target=load.run, daemon=True)
        thread.start()
        time.sleep(3)
        cluster.ctl("restart", "-m", "fast")
        time.sleep(3)
        outages: list[httpx.Response] = []
        for mode in ("fast", "immediate"):
            cluster.ctl("stop", "-m", mode)
            # then the API answers 503 while it is down ...
            outages.append(_probe(base, tokens["source"], 503, 30))
            time.sleep(1)
            cluster.start()
            # ... and 200 once it is back
            _probe(base, tokens["source"], 200, 60)
            time.sleep(3)
        load.stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive()

        total = cluster.query("SELECT count(*) FROM sync_changeevent")[0][0]

        def all_delivered() -> bool:
            pending = cluster.query(
                "SELECT count(*) FROM sync_delivery WHERE status <> 'delivered'"
            )[0][0]
            events = cluster.query("SELECT count(*) FROM sync_changeevent")[0][0]
            planned = cluster.query("SELECT count(*) FROM sync_delivery")[0][0]
            return pending == 0 and planned == events and len(receiver.unique_ids()) >= events

        _wait(all_delivered, hub, 300, "every delivery after the restarts")

        # every committed change has exactly one event, numbered without gaps
        history = cluster.query(
            "SELECT h.history_id, h.id, h.version, count(e.id) FROM mdm_historicalgoldenrecord h "
            "LEFT JOIN sync_changeevent e ON e.history_id = h.history_id "
            "GROUP BY h.history_id, h.id, h.version"
        )
        assert [row for row in history if row[3] != 1] == []
        events = cluster.query("SELECT seq, golden_id, version FROM sync_changeevent ORDER BY seq")
        assert len(events) == len(history) == total
        assert [seq for seq, _, _ in events] == list(range(1, total + 1))
        # every correction the API acknowledged is among the events
        versions = {(g, v) for _, g, v in events}
        assert load.acknowledged and set(load.acknowledged) <= versions
        # every event arrived once after dedupe, each golden record's versions in order
        assert receiver.refused == []
        assert receiver.unique_ids() == {f"evt_{s}" for s in range(1, total + 1)}
        arrived = [
            (r.event["golden"]["id"], r.event["golden"]["version"]) for r in receiver.received
        ]
        assert len(arrived) == len(set(arrived)) == total
        last: dict[int, int] = {}
        for gid, version in arrived:
            assert version > last.get(gid, 0), f"golden {gid}: v{version} after v{last[gid]}"
            last[gid] = version
        assert receiver.calls == total + receiver.duplicates
        assert cluster.query("SELECT count(*) FROM sync_delivery WHERE status = 'dead'")[0][0] == 0
        # the outages answered 503 with Retry-After, and nothing but 200 or 503 otherwise
        assert [(r.status_code, r.headers["Retry-After"]) for r in outages] == [
            (503, "5"),
            (503, "5"),
        ]
        assert load.unexpected == []
        assert load.statuses[200] > 0
        # and the hub's processes are the ones started before the restarts
        hub.check_alive()
        assert {p.pid for p in (api, worker, relay)} == {
            hub.processes[n].pid for n in ("api", "worker", "relay")
        }
        print(
            f"\nevents {total}, load answers {dict(load.statuses)}, receiver calls "
            f"{receiver.calls}, duplicates deduped {receiver.duplicates}"
        )
    finally:
        if load is not None:
            load.stop.set()
        hub.stop()
        receiver.stop()
