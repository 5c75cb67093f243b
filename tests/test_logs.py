"""Structured JSON logs with a correlation id from the ingest request through its tasks."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from config.celery import app
from config.logs import JsonFormatter, correlation_id
from mdm.models import QualityRule
from mdm.tasks import quality_check_ingest_run

URL = "/api/v1/customer/records"


def test_the_json_formatter_writes_one_object_with_the_id_and_extras():
    token = correlation_id.set("req-1")
    try:
        record = logging.getLogger("aurum.test").makeRecord(
            "aurum.test", logging.INFO, __file__, 1, "run %s done", (7,), None, extra={"run": 7}
        )
    finally:
        correlation_id.reset(token)

    entry = json.loads(JsonFormatter().format(record))

    assert entry["message"] == "run 7 done"
    assert (entry["level"], entry["logger"]) == ("INFO", "aurum.test")
    assert entry["correlation_id"] == "req-1"
    assert entry["run"] == 7
    assert entry["time"].endswith("+00:00")


def test_the_default_log_format_is_json():
    logging_config: dict[str, Any] = settings.LOGGING
    formatter = logging_config["handlers"]["console"]["formatter"]

    assert logging_config["formatters"][formatter] == {"()": "config.logs.JsonFormatter"}


@pytest.fixture
def eager():
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.mark.django_db(transaction=True)
def test_the_request_id_follows_the_ingest_into_its_tasks(api, settings, eager, caplog):
    # No test transaction around it: the ingest commits, and queues its tasks, in the request.
    settings.AURUM_MATCH_AFTER_INGEST = False
    QualityRule.objects.create(
        domain="customer", name="email", kind="completeness", attribute="email"
    )
    caplog.set_level(logging.INFO)

    response = api.post(
        URL, {"source_key": "K1", "full_name": "Ann Lee"}, format="json",
        headers={"X-Request-ID": "ingest-42"},
    )  # fmt: skip

    assert response.status_code == 201
    assert response["X-Request-ID"] == "ingest-42"
    by_logger = {r.name: r for r in caplog.records}
    assert by_logger["mdm.services.ingest"].correlation_id == "ingest-42"
    assert by_logger["mdm.services.quality"].correlation_id == "ingest-42"
    assert (
        by_logger["mdm.services.quality"].getMessage().endswith("1 failures, 1 opened, 0 resolved")
    )
    assert correlation_id.get() == ""


@pytest.mark.django_db
def test_a_request_without_an_id_gets_a_new_one(client):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})["X-Request-ID"]

    assert len(first) == 32 and len(second) == 32 and first != second


def test_a_queued_task_carries_the_id_in_its_message_header():
    # A real broker (the embedded filesystem one, or Redis): read the message it stored.
    queue = "aurum-test-correlation"
    token = correlation_id.set("ingest-43")
    try:
        if str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
            options: dict[str, Any] = settings.CELERY_BROKER_TRANSPORT_OPTIONS
            folder = Path(options["data_folder_in"])
            before = set(folder.glob("*.msg"))
            quality_check_ingest_run.apply_async(args=(0,), queue=queue)
            written = set(folder.glob("*.msg")) - before
            bodies = [path.read_text() for path in written]
            for path in written:
                path.unlink()
        else:
            import redis

            client = redis.Redis.from_url(str(settings.CELERY_BROKER_URL))
            client.delete(queue)
            quality_check_ingest_run.apply_async(args=(0,), queue=queue)
            stored: list[bytes] = client.lrange(queue, 0, -1)  # type: ignore[assignment]
            bodies = [raw.decode() for raw in stored]
            client.delete(queue)
    finally:
        correlation_id.reset(token)

    assert len(bodies) == 1
    assert json.loads(bodies[0])["headers"]["correlation_id"] == "ingest-43"


@pytest.mark.django_db
def test_a_task_run_from_a_message_logs_under_the_messages_id(caplog):
    caplog.set_level(logging.INFO)

    quality_check_ingest_run.apply(args=(0,), headers={"correlation_id": "ingest-44"})

    task_logs = [r for r in caplog.records if r.name.startswith("celery")]
    assert task_logs and all(r.correlation_id == "ingest-44" for r in task_logs)
    assert correlation_id.get() == ""
