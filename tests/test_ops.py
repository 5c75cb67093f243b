"""/healthz, /readyz (with the database or the broker down) and the Prometheus /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from matching.models import MatchRun
from mdm.models import IngestRun, QualityRule
from mdm.services.quality import quality_check_run
from stewardship.models import ReviewTask
from tests.stewardship.factories import record, source

ROOT = Path(__file__).resolve().parent.parent


def test_healthz_answers_without_the_database():
    assert Client().get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ok_when_everything_answers():
    response = Client().get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "down": [],
        "checks": {"database": "ok", "broker": "ok", "match_store": "ok"},
    }


@pytest.mark.django_db
def test_readyz_is_503_naming_a_broker_that_refuses_connections(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    response = Client().get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker"]
    assert body["checks"]["database"] == "ok"
    assert "Connection refused" in body["checks"]["broker"] or "Error" in body["checks"]["broker"]


@pytest.mark.django_db
def test_readyz_is_503_when_the_filesystem_broker_folder_is_gone(settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "missing")}

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["down"] == ["broker"]


@pytest.mark.django_db
def test_readyz_with_the_real_redis_broker(settings, redis_url):
    settings.CELERY_BROKER_URL = redis_url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    assert Client().get("/readyz").json()["checks"]["broker"] == "ok"


def test_readyz_is_503_when_the_database_is_down(tmp_path):
    # A real process whose database refuses connections (nothing listens on port 1).
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/aurum_down",
        "AURUM_VAR_DIR": str(tmp_path),
    }
    env.pop("CELERY_BROKER_URL", None)
    env.pop("REDIS_URL", None)
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/readyz', HTTP_HOST='localhost');"
        "print(json.dumps({**r.json(), 'code': r.status_code}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout.strip().splitlines()[-1])
    assert (body["code"], body["status"]) == (503, "unavailable")
    assert body["down"] == ["database"]
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["match_store"] == "ok"


def scrape(authorization: str = "") -> dict[tuple[str, tuple], float]:
    headers = {"Authorization": authorization} if authorization else {}
    response = Client().get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.mark.django_db
def test_metrics_expose_ingest_matching_review_and_quality_figures():
    crm, erp = source("crm"), source("erp")
    for system, read, rejected in [(crm, 10, 2), (crm, 5, 0), (erp, 7, 1)]:
        IngestRun.objects.create(
            source_system=system,
            domain="customer",
            channel="api",
            read_count=read,
            quarantined_count=rejected,
        )
    now = timezone.now()
    for seconds in (2.0, 4.0):
        run = MatchRun.objects.create(domain="customer", kind="incremental", status="succeeded")
        MatchRun.objects.filter(pk=run.pk).update(
            started_at=now - timedelta(seconds=seconds), finished_at=now
        )
    MatchRun.objects.create(domain="customer", kind="full")  # still running: not counted
    a, b = record(crm, "A"), record(erp, "B", email="b@example.com")
    ReviewTask.objects.create(domain="customer", left_record_id=a.pk, right_record_id=b.pk)
    ReviewTask.objects.create(
        domain="customer",
        left_record_id=b.pk,
        right_record_id=a.pk,
        due_at=now - timedelta(hours=1),
    )
    ReviewTask.objects.create(
        domain="customer", left_record_id=a.pk, right_record_id=a.pk, status="decided"
    )
    QualityRule.objects.create(
        domain="customer", name="email", kind="completeness", attribute="email", opens_tasks=False
    )
    quality_check_run(domain="customer", trigger="schedule")

    samples = scrape()

    crm_l = (("domain", "customer"), ("source", "crm"))
    erp_l = (("domain", "customer"), ("source", "erp"))
    assert samples[("aurum_ingest_records_total", crm_l)] == 15
    assert samples[("aurum_ingest_records_total", erp_l)] == 7
    assert samples[("aurum_ingest_rejects_total", crm_l)] == 2
    assert samples[("aurum_ingest_rejects_total", erp_l)] == 1
    inc = (("domain", "customer"), ("kind", "incremental"))
    assert samples[("aurum_match_run_duration_seconds_count", inc)] == 2
    assert samples[("aurum_match_run_duration_seconds_sum", inc)] == pytest.approx(6.0)
    assert samples[("aurum_match_run_last_duration_seconds", inc)] == pytest.approx(4.0)
    assert (
        "aurum_match_run_duration_seconds_count",
        (("domain", "customer"), ("kind", "full")),
    ) not in samples
    queue = (("domain", "customer"), ("queue", "potential_match"))
    assert samples[("aurum_review_backlog", queue)] == 2
    assert samples[("aurum_review_overdue", queue)] == 1
    dim = (("dimension", "completeness"), ("domain", "customer"))
    assert samples[("aurum_quality_score", dim)] == pytest.approx(0.5)
    assert samples[("aurum_broker_up", ())] == 1


@pytest.mark.django_db
def test_metrics_report_the_celery_queue_depth_of_the_redis_broker(settings, redis_url):
    import redis

    settings.CELERY_BROKER_URL = redis_url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    client.lpush("celery", "m1", "m2", "m3")
    try:
        samples = scrape()
    finally:
        client.delete("celery")

    assert samples[("aurum_celery_queue_depth", (("queue", "celery"),))] == 3
    assert samples[("aurum_broker_up", ())] == 1


@pytest.mark.django_db
def test_metrics_say_the_broker_is_down_instead_of_failing(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    samples = scrape()

    assert samples[("aurum_broker_up", ())] == 0
    assert not [key for key in samples if key[0] == "aurum_celery_queue_depth"]


@pytest.mark.django_db
def test_metrics_need_the_token_when_one_is_set(settings):
    settings.AURUM_METRICS_TOKEN = "s3cret"

    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape("Bearer s3cret")[("aurum_broker_up", ())] in (0, 1)
