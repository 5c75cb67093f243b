"""A rule change recomputed by a real Celery worker, on PostgreSQL and Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery.result import EagerResult
from django.contrib.auth.models import Group, User

from config.celery import app
from mdm.models import SurvivorshipJob
from mdm.services import survivorship as services
from mdm.tasks import survivorship_recompute
from tests.test_celery_worker import WORK_TIMEOUT, Worker, worker  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def test_a_saved_rule_is_recomputed_by_the_worker(
    worker: Worker,  # noqa: F811
    redis_url: str,
    ann_golden: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a golden record of Ann (crm, trusted) and Anne (erp, newer), committed
    golden = ann_golden
    assert golden.attributes["given_name"] == "Ann"
    admin = User.objects.create_user("ada", password="pw")
    admin.groups.add(Group.objects.get_or_create(name="admin")[0])  # a flush drops migrated rows
    sent = []

    def send(job_id: int) -> None:  # the service's own after-commit send, to this queue
        with app.connection_for_write(redis_url) as conn:
            sent.append(
                survivorship_recompute.apply_async(
                    args=[job_id], queue=worker.queue, connection=conn
                )
            )

    monkeypatch.setattr(services, "_send", send)

    # when an admin saves "most recent wins" for the given name
    _, job = services.survivorship_rules_update(
        domain="customer",
        spec={"rules": {"given_name": {"strategy": "most_recent"}}},
        expected_version=0,
        actor=admin,
    )

    # then the worker recomputes the golden record and the job reports its progress
    assert len(sent) == 1 and not isinstance(sent[0], EagerResult)
    deadline = time.monotonic() + WORK_TIMEOUT
    while not SurvivorshipJob.objects.get(pk=job.pk).is_finished:
        worker.check_alive("the recompute")
        if time.monotonic() > deadline:
            pytest.fail(f"job not finished after {WORK_TIMEOUT:.0f} s:\n{worker.log_tail()}")
        time.sleep(0.2)
    job.refresh_from_db()
    assert (job.status, job.total, job.done, job.changed) == ("succeeded", 1, 1, 1)
    golden.refresh_from_db()
    assert golden.attributes["given_name"] == "Anne"
    assert golden.provenance["given_name"]["competitors"] == [
        {"value": "Ann", "source": "crm", "source_key": "A"}
    ]
    last = golden.history.first()
    assert (last.history_change_reason, last.history_user_id) == ("survivorship rules v1", admin.pk)
    assert "mdm.survivorship_recompute" in worker.log_tail(lines=10_000)
