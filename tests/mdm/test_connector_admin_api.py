"""Connectors as an admin reaches them: a mapping file with [connector] for register_source,
the admin pages, the API (run now, pause, resume, runs), and the beat schedule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from config.celery import app
from mdm.models import Connector, ConnectorRun, SourceRecord
from mdm.services.connectors import connectors_schedule_due, schedule_next

MAPPING_FILE = """
source = "partner"
domain = "customer"
name = "drops"

[key]
field = "ref"

[attributes]
given_name = "first"
family_name = "last"
email = "email"

[connector]
name = "partner-drop"
kind = "file_drop"
path = "{folder}"
every_seconds = 600
batch_size = 1000
"""

SECRET = "tok-5d1e0c9b-never-shown"

HTTP_MAPPING_FILE = """
source = "saas"
domain = "customer"
[key]
field = "id"
[attributes]
email = "email"
[connector]
name = "saas-contacts"
kind = "http"
url = "http://127.0.0.1:9/contacts"
pagination = "offset"
cron = "*/15 * * * *"
secret_env = "AURUM_TEST_SAAS_TOKEN"
"""


def person(role: str) -> APIClient:
    user = User.objects.create_user(f"{role}-user", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def eager() -> Iterator[None]:
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def drop(tmp_path: Path, db: Any) -> tuple[Path, Connector]:
    folder = tmp_path / "inbox"
    folder.mkdir()
    spec = tmp_path / "partner.toml"
    spec.write_text(MAPPING_FILE.format(folder=folder))
    call_command("register_source", str(spec))
    return folder, Connector.objects.get(name="partner-drop")


def test_register_source_creates_the_connector_from_the_mapping_file(
    drop: tuple[Path, Connector], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, connector = drop
    assert (connector.kind, connector.domain, connector.source_system.code) == (
        "file_drop",
        "customer",
        "partner",
    )
    assert connector.mapping is not None and connector.mapping.name == "drops"
    assert connector.config == {"path": str(folder)}
    assert (connector.interval_seconds, connector.batch_size) == (600, 1000)
    assert connector.next_run_at is not None


def test_the_secret_comes_from_the_environment_and_a_missing_one_is_refused(
    tmp_path: Path, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "saas.toml"
    spec.write_text(HTTP_MAPPING_FILE)
    with pytest.raises(CommandError) as exc:
        call_command("register_source", str(spec))
    assert "secret_env: the environment variable AURUM_TEST_SAAS_TOKEN is not set" in str(exc.value)
    assert Connector.objects.count() == 0
    assert not SourceRecord.objects.exists()

    monkeypatch.setenv("AURUM_TEST_SAAS_TOKEN", SECRET)
    call_command("register_source", str(spec))
    connector = Connector.objects.get()
    assert connector.cron == "*/15 * * * *"
    assert connector.has_secret and SECRET not in connector.secret_encrypted

    from mdm.connectors.crypto import secret_decrypt

    assert secret_decrypt(connector.secret_encrypted) == SECRET


@pytest.mark.parametrize(
    ("persona", "status"),
    [("anonymous", 401), ("source", 403), ("viewer", 403), ("steward", 403), ("admin", 200)],
)
def test_only_admins_reach_connectors(
    persona: str, status: int, api: APIClient, drop: tuple[Path, Connector]
) -> None:
    client = {"anonymous": APIClient(), "source": api}.get(persona) or person(persona)

    answers = [
        client.get("/api/v1/connectors").status_code,
        client.get("/api/v1/connectors/partner-drop").status_code,
        client.get("/api/v1/connectors/partner-drop/runs").status_code,
        client.post("/api/v1/connectors/partner-drop/pause").status_code,
    ]

    assert answers == [status] * 4
    assert Connector.objects.get().is_paused is (status == 200)


def test_run_now_runs_the_connector_and_its_runs_are_listed(
    drop: tuple[Path, Connector],
    eager: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    folder, _connector = drop
    (folder / "a.csv").write_text("ref,first,last,email\nP1,Ann,Lee,ann@example.com\n")
    admin = person("admin")

    with django_capture_on_commit_callbacks(execute=True):
        answer = admin.post("/api/v1/connectors/partner-drop/run")

    assert answer.status_code == 202
    assert answer.json() == {"queued": True, "connector": "partner-drop"}
    runs = admin.get("/api/v1/connectors/partner-drop/runs").json()
    assert [(r["status"], r["trigger"], r["created_count"], r["files_count"]) for r in runs] == [
        ("succeeded", "manual", 1, 1)
    ]
    assert runs[0]["watermark_before"] is None
    assert runs[0]["watermark_after"] == {"type": "string", "value": "a.csv"}
    detail = admin.get("/api/v1/connectors/partner-drop").json()
    assert detail["last_run"]["id"] == runs[0]["id"]
    assert detail["has_secret"] is False
    assert "secret_encrypted" not in detail


def test_run_now_is_refused_while_a_run_holds_the_connector(
    drop: tuple[Path, Connector], django_capture_on_commit_callbacks: Any
) -> None:
    _, connector = drop
    held = ConnectorRun.objects.create(connector=connector)
    Connector.objects.filter(pk=connector.pk).update(
        current_run=held, lease_until=timezone.now() + timedelta(minutes=5)
    )
    with django_capture_on_commit_callbacks() as callbacks:
        answer = person("admin").post("/api/v1/connectors/partner-drop/run")
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "conflict",
        "detail": f"run {held.pk} of partner-drop is still going",
    }
    assert callbacks == []
    assert ConnectorRun.objects.count() == 1


def test_pause_and_resume(drop: tuple[Path, Connector]) -> None:
    admin = person("admin")
    paused = admin.post("/api/v1/connectors/partner-drop/pause").json()
    assert paused["is_paused"] is True
    # A paused connector is not scheduled, however late it is.
    Connector.objects.update(next_run_at=timezone.now() - timedelta(hours=1))
    assert connectors_schedule_due() == []
    before = timezone.now()
    resumed = admin.post("/api/v1/connectors/partner-drop/resume").json()
    assert resumed["is_paused"] is False
    next_run = Connector.objects.get().next_run_at
    assert next_run is not None and next_run >= before + timedelta(seconds=600)
    assert admin.get("/api/v1/connectors/nope").status_code == 404


def test_the_schedule_queues_due_connectors_once(
    drop: tuple[Path, Connector], eager: None, django_capture_on_commit_callbacks: Any
) -> None:
    folder, connector = drop
    (folder / "a.csv").write_text("ref,first,last,email\nP1,Ann,Lee,ann@example.com\n")
    now = timezone.now()
    Connector.objects.update(next_run_at=now - timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        first = connectors_schedule_due(now=now)
    second = connectors_schedule_due(now=now)

    assert first == [connector.pk]
    assert second == []  # its next run moved on
    assert Connector.objects.get().next_run_at == now + timedelta(seconds=600)
    run = ConnectorRun.objects.get()
    assert (run.trigger, run.status, run.created_count) == ("schedule", "succeeded", 1)


def test_cron_schedules_find_the_next_slot() -> None:
    after = timezone.now().replace(minute=7, second=30, microsecond=0)
    nxt = schedule_next(interval_seconds=None, cron="*/15 * * * *", after=after)
    assert nxt is not None
    assert (nxt - after) == timedelta(minutes=7, seconds=30)
    assert schedule_next(interval_seconds=None, cron="", after=after) is None


def test_the_admin_page_keeps_the_secret_write_only(
    drop: tuple[Path, Connector], tmp_path: Path
) -> None:
    _, connector = drop
    admin = person("admin")
    page = f"/admin/mdm/connector/{connector.pk}/change/"
    form = admin.get(page)
    assert form.status_code == 200
    data = {
        "name": "partner-drop",
        "kind": "http",
        "source_system": connector.source_system_id,
        "domain": "customer",
        "mapping": connector.mapping_id,
        "config": '{"url": "https://crm.example.com/api/contacts", "pagination": "cursor"}',
        "interval_seconds": "",
        "cron": "0 * * * *",
        "batch_size": "500",
        "secret": SECRET,
    }

    saved = admin.post(page, data)

    assert saved.status_code == 302, saved.content.decode()[:2000]
    connector.refresh_from_db()
    assert (connector.kind, connector.cron, connector.batch_size) == ("http", "0 * * * *", 500)
    assert connector.has_secret
    shown = admin.get(page).content.decode()
    assert SECRET not in shown
    assert "stored (encrypted)" in shown
    assert SECRET not in admin.get(f"/admin/mdm/connector/{connector.pk}/history/").content.decode()

    bad = admin.post(page, {**data, "config": '{"url": "ftp://x"}'})
    assert bad.status_code == 200
    assert "config.url: an http(s) URL of the endpoint is required" in bad.content.decode()
    connector.refresh_from_db()
    assert connector.config["url"] == "https://crm.example.com/api/contacts"

    steward = person("steward")
    assert steward.get(page).status_code in (302, 403)
    assert steward.get("/admin/mdm/connectorrun/").status_code in (302, 403)


def test_the_connector_commands_are_in_the_openapi_schema(db: Any) -> None:
    schema = person("admin").get("/api/v1/schema", {"format": "json"}).json()
    paths = set(schema["paths"])
    assert {
        "/api/v1/connectors",
        "/api/v1/connectors/{name}",
        "/api/v1/connectors/{name}/runs",
        "/api/v1/connectors/{name}/run",
        "/api/v1/connectors/{name}/pause",
        "/api/v1/connectors/{name}/resume",
    } <= paths
    connector = schema["components"]["schemas"]["Connector"]["properties"]
    assert "has_secret" in connector
    assert not any("secret_encrypted" in name for name in connector)


def test_the_connector_command_lists_runs_and_pauses(
    drop: tuple[Path, Connector], capsys: pytest.CaptureFixture[str]
) -> None:
    from mdm.tasks import connector_run as connector_run_task

    folder, connector = drop
    (folder / "a.csv").write_text("ref,first,last,email\nP1,Ann,Lee,ann@example.com\n")
    capsys.readouterr()

    call_command("connector", "run", "partner-drop")
    call_command("connector", "pause", "partner-drop")
    call_command("connector", "list")

    out = capsys.readouterr().out.splitlines()
    run = ConnectorRun.objects.get(connector=connector)
    assert out[0].startswith(
        f"run {run.pk} succeeded: read 1, created 1, updated 0, unchanged 0, quarantined 0, "
        "deleted 0, files 1 in "
    )
    assert out[0].endswith("watermark none -> a.csv")
    assert out[1] == "paused partner-drop"
    assert out[2].startswith("partner-drop\tfile_drop\tpartner/customer\tpaused\t")
    assert out[2].endswith("last succeeded")
    with pytest.raises(CommandError) as exc:
        call_command("connector", "run", "nope")
    assert str(exc.value) == "no connector 'nope'; known: partner-drop"

    # A scheduled run of a paused connector is refused; a manual one still runs.
    assert connector_run_task(connector.pk, "schedule") == "refused: partner-drop is paused"
    assert ConnectorRun.objects.count() == 1
    assert connector_run_task(connector.pk, "manual") == "succeeded"
    assert ConnectorRun.objects.count() == 2
