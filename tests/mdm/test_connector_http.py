"""HTTP JSON connectors against a small server on loopback: cursor pages, an updated-since
parameter, a header token, and a 429 answered once."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import override_settings
from django.utils import timezone

from mdm.models import Connector, ConnectorRun, SourceRecord
from mdm.services.connectors import ConnectorBusyError, connector_run, connector_upsert
from mdm.services.sources import source_mapping_register
from tests.test_celery_worker import _test_database_url

TOKEN = "crm-token-7f3a9c"

CRM_MAPPING: dict[str, Any] = {
    "source": "saas-crm",
    "domain": "customer",
    "name": "api",
    "key": {"field": "id"},
    "updated_at": {"field": "updated_at"},
    "deleted": {"field": "archived", "values": ["true"]},
    "attributes": {
        "party_type": {"const": "person"},
        "given_name": "first",
        "family_name": "last",
        "email": "contact.email",
    },
}


def record(n: int, minute: int, email: str | None = None, archived: bool = False) -> dict[str, Any]:
    return {
        "id": f"C{n:03d}",
        "first": f"Given{n}",
        "last": f"Family{n}",
        "contact": {"email": email or f"c{n}@example.com"},
        "updated_at": f"2026-11-01T09:{minute:02d}:00Z",
        "archived": archived,
    }


@dataclass
class Api:
    """The CRM's endpoint: records newer than ``updated_since``, by ``updated_at`` then id,
    ``page_size`` a page, with an opaque cursor."""

    records: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    throttle_next: int = 0  # answer this many requests with 429 first
    block_after_pages: int | None = None  # hold the next page until ``release`` is set
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        since = query.get("updated_since", [""])[0]
        rows = sorted(
            (r for r in self.records if not since or r["updated_at"] >= since),
            key=lambda r: (r["updated_at"], r["id"]),
        )
        size = int(query.get("limit", ["2"])[0])
        start = int(base64.b64decode(query["cursor"][0])) if "cursor" in query else 0
        chunk = rows[start : start + size]
        after = start + len(chunk)
        nxt = base64.b64encode(str(after).encode()).decode() if after < len(rows) else None
        return {"results": chunk, "meta": {"next": nxt}}


def _handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            api.requests.append(query)
            if self.headers.get("X-Api-Key") != TOKEN:
                return self._send(401, {"error": "bad token"})
            if api.throttle_next:
                api.throttle_next -= 1
                return self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
            served = len(api.requests) - 1  # requests answered before this one
            if api.block_after_pages is not None and served >= api.block_after_pages:
                api.release.wait(60)
            return self._send(200, api.page(query))

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def crm_api() -> Iterator[Api]:
    api = Api()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}/api/contacts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.release.set()
        server.shutdown()
        server.server_close()


def make_connector(api: Api, token: str = TOKEN) -> Connector:
    mapping, _, _ = source_mapping_register(spec=dict(CRM_MAPPING))
    connector, _ = connector_upsert(
        name="crm-contacts",
        kind="http",
        source_system=mapping.source_system,
        domain="customer",
        mapping=mapping,
        config={
            "url": api.url,
            "pagination": "cursor",
            "page_size": 2,
            "size_param": "limit",
            "cursor_param": "cursor",
            "next_cursor_path": "meta.next",
            "records_path": "results",
            "updated_since_param": "updated_since",
            "watermark_field": "updated_at",
            "auth_header": "X-Api-Key",
            "auth_scheme": "",
        },
        secret=token,
        cron="*/15 * * * *",
        batch_size=2,
    )
    return connector


def counts(run: ConnectorRun) -> tuple[int, int, int, int, int]:
    return (
        run.read_count,
        run.created_count,
        run.updated_count,
        run.unchanged_count,
        run.deleted_count,
    )


FAST_BACKOFF = override_settings(AURUM_CONNECTOR_HTTP_BACKOFF=0.01)


@pytest.mark.django_db
@FAST_BACKOFF
def test_cursor_pages_then_deltas_with_a_429_retried(crm_api: Api) -> None:
    crm_api.records = [record(n, n) for n in range(1, 6)]
    crm_api.throttle_next = 1
    connector = make_connector(crm_api)

    first = connector_run(connector_id=connector.pk)

    assert first.status == "succeeded", first.error
    assert counts(first) == (5, 5, 0, 0, 0)
    # 429 once, then three pages of 2, 2 and 1 with the cursor; the first full load sends no
    # updated_since.
    assert len(crm_api.requests) == 4
    assert crm_api.requests[0] == crm_api.requests[1] == {"limit": ["2"]}
    assert [q.get("cursor") for q in crm_api.requests[1:]] == [None, ["Mg=="], ["NA=="]]
    assert first.watermark_after == {"type": "datetime", "value": "2026-11-01T09:05:00+00:00"}

    crm_api.records[0] = record(1, 10, email="first.changed@example.com")
    crm_api.records[1] = record(2, 11, archived=True)
    crm_api.records.append(record(6, 12))
    crm_api.requests.clear()

    second = connector_run(connector_id=connector.pk)

    # Record 5 sits at the old watermark: sent again, found unchanged.
    assert counts(second) == (4, 1, 1, 1, 1)
    assert crm_api.requests[0]["updated_since"] == ["2026-11-01T09:05:00+00:00"]
    live = {
        r.source_key: r.attributes["email"] for r in SourceRecord.objects.filter(is_deleted=False)
    }
    assert live == {
        "C001": "first.changed@example.com",
        "C003": "c3@example.com",
        "C004": "c4@example.com",
        "C005": "c5@example.com",
        "C006": "c6@example.com",
    }
    connector.refresh_from_db()
    assert connector.watermark == {"type": "datetime", "value": "2026-11-01T09:12:00+00:00"}


@pytest.mark.django_db
@FAST_BACKOFF
def test_a_wrong_token_fails_the_run_at_once_and_is_never_shown(
    crm_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    crm_api.records = [record(1, 1)]
    wrong = "not-the-token-91b2"
    connector = make_connector(crm_api, token=wrong)

    run = connector_run(connector_id=connector.pk)

    assert run.status == "failed"
    assert run.error.startswith(f"{crm_api.url} answered 401 Unauthorized")
    assert len(crm_api.requests) == 1  # a 401 is not retried
    assert wrong not in run.error and wrong not in caplog.text
    assert wrong not in Connector.objects.get(pk=connector.pk).secret_encrypted
    assert SourceRecord.objects.count() == 0
    connector.refresh_from_db()
    assert connector.watermark is None


@pytest.mark.django_db
@override_settings(AURUM_CONNECTOR_HTTP_BACKOFF=0.01, AURUM_CONNECTOR_HTTP_RETRIES=2)
def test_a_source_that_keeps_failing_fails_the_run_after_the_retries(crm_api: Api) -> None:
    crm_api.records = [record(1, 1)]
    crm_api.throttle_next = 10
    connector = make_connector(crm_api)

    run = connector_run(connector_id=connector.pk)

    assert run.status == "failed"
    assert run.error == f"{crm_api.url} failed 3 times; last: 429 Too Many Requests"
    assert len(crm_api.requests) == 3


@pytest.mark.django_db
@FAST_BACKOFF
def test_a_run_failing_between_pages_is_retried_and_overlaps_are_refused(crm_api: Api) -> None:
    crm_api.records = [record(n, n) for n in range(1, 8)]
    connector = make_connector(crm_api)
    refused: list[str] = []

    def interrupt(batch: int) -> None:
        with pytest.raises(ConnectorBusyError) as exc:
            connector_run(connector_id=connector.pk)
        refused.append(str(exc.value))
        if batch == 2:
            raise ConnectionResetError("killed between pages")

    failed = connector_run(connector_id=connector.pk, on_batch=interrupt)

    assert failed.status == "failed"
    assert len(refused) == 2
    assert failed.created_count == 4
    connector.refresh_from_db()
    assert connector.watermark is None and connector.current_run_id is None

    retried = connector_run(connector_id=connector.pk)

    assert counts(retried) == (7, 3, 0, 4, 0)
    assert SourceRecord.objects.count() == 7
    assert SourceRecord.history.count() == 7


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_with_sigkill_mid_run_is_taken_over_without_loss_or_duplication(
    crm_api: Api, require_postgres: None
) -> None:
    """A real ``manage.py connector run`` process, killed by SIGKILL while the source holds
    its third page: the batches it committed stay, its watermark never moved, a new run is
    refused while its lease lasts and then takes over and finishes the window."""
    crm_api.records = [record(n, n) for n in range(1, 8)]
    crm_api.block_after_pages = 2
    connector = make_connector(crm_api)
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _test_database_url(),
        "AURUM_CONNECTOR_LEASE_SECONDS": "3",
        "AURUM_MATCH_AFTER_INGEST": "0",
        "AURUM_QUALITY_AFTER_INGEST": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "connector", "run", connector.name],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            run = ConnectorRun.objects.filter(connector=connector).first()
            if len(crm_api.requests) >= 3 and run is not None and run.read_count == 4:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                out = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"the run did not reach its third page; its output:\n{out}")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    killed = ConnectorRun.objects.get(connector=connector)
    assert (killed.status, killed.created_count) == ("running", 4)
    assert SourceRecord.objects.count() == 4
    connector.refresh_from_db()
    assert connector.watermark is None
    assert connector.current_run_id == killed.pk
    with pytest.raises(ConnectorBusyError):  # its lease still holds
        connector_run(connector_id=connector.pk)

    crm_api.block_after_pages = None
    crm_api.release.set()
    assert connector.lease_until is not None
    time.sleep(max(0.0, (connector.lease_until - timezone.now()).total_seconds()) + 0.2)
    crm_api.requests.clear()

    retried = connector_run(connector_id=connector.pk)

    assert retried.status == "succeeded", retried.error
    assert counts(retried) == (7, 3, 0, 4, 0)
    assert crm_api.requests[0] == {"limit": ["2"]}  # the same window again: from the start
    assert SourceRecord.objects.count() == 7
    assert SourceRecord.history.count() == 7
    killed.refresh_from_db()
    assert killed.status == "failed"
    assert killed.error.startswith("abandoned")
    connector.refresh_from_db()
    assert connector.watermark == {"type": "datetime", "value": "2026-11-01T09:07:00+00:00"}
    assert connector.current_run_id is None
