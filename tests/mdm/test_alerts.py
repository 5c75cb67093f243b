"""Alerts: fire once per incident, clear once on recovery, by e-mail or webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from mdm.admin import AlertRuleForm
from mdm.models import AlertEvent, AlertRule, QualityRule, SourceRecord
from mdm.services.alerts import alerts_evaluate, quality_score_drop
from mdm.services.quality import quality_check_run
from stewardship.models import ReviewTask
from tests.stewardship.factories import record, source

pytestmark = pytest.mark.django_db


def overdue_task(key: str) -> ReviewTask:
    rec = record(source("crm"), key)
    return ReviewTask.objects.create(
        domain="customer",
        kind=ReviewTask.Kind.DATA_QUALITY,
        left_record_id=rec.pk,
        rule="r",
        due_at=timezone.now() - timedelta(hours=1),
    )


def test_an_alert_fires_once_per_incident_and_clears_once(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    alert = AlertRule.objects.create(
        name="backlog late", signal="overdue_tasks", threshold=1, channel="email",
        target="ops@example.com, lead@example.com",
    )  # fmt: skip
    first = overdue_task("A")

    assert alerts_evaluate() == []  # 1 overdue: not above the threshold
    second = overdue_task("B")
    fired = alerts_evaluate()
    again = alerts_evaluate()  # still 2 overdue: the same incident

    assert [(e.kind, e.value, e.delivered) for e in fired] == [("fired", 2.0, True)]
    assert again == []
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com", "lead@example.com"]
    assert mail.outbox[0].subject == (
        "[Aurum] FIRING: backlog late (overdue_tasks = 2, all domains)"
    )
    alert.refresh_from_db()
    assert (alert.firing, alert.last_value) == (True, 2.0)

    ReviewTask.objects.filter(pk__in=[first.pk, second.pk]).update(status="decided")
    cleared = alerts_evaluate()
    alerts_evaluate()

    assert [(e.kind, e.value) for e in cleared] == [("cleared", 0.0)]
    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject.startswith("[Aurum] resolved: backlog late")
    alert.refresh_from_db()
    assert alert.firing is False and alert.cleared_at is not None

    overdue_task("C"), overdue_task("D")
    assert [e.kind for e in alerts_evaluate()] == ["fired"]  # a new incident
    assert list(AlertEvent.objects.order_by("id").values_list("kind", flat=True)) == [
        "fired",
        "cleared",
        "fired",
    ]


def test_an_alert_of_one_domain_ignores_the_others(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    AlertRule.objects.create(
        name="suppliers late", signal="overdue_tasks", domain="supplier", threshold=0,
        channel="email", target="ops@example.com",
    )  # fmt: skip
    overdue_task("A")  # a customer task

    assert alerts_evaluate() == []
    assert mail.outbox == []


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 204

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(_Hook.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received, _Hook.status = [], 204
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_a_webhook_gets_the_firing_and_the_recovery(webhook):
    AlertRule.objects.create(
        name="late", signal="overdue_tasks", threshold=0, channel="webhook", target=webhook
    )
    task = overdue_task("A")

    alerts_evaluate()
    alerts_evaluate()
    ReviewTask.objects.filter(pk=task.pk).update(status="decided")
    alerts_evaluate()

    assert [(h["state"], h["value"], h["threshold"]) for h in _Hook.received] == [
        ("firing", 1.0, 0.0),
        ("resolved", 0.0, 0.0),
    ]
    assert _Hook.received[0]["alert"] == "late"
    assert AlertEvent.objects.filter(delivered=True).count() == 2


def test_a_failed_webhook_is_recorded_and_not_resent_each_check(webhook):
    _Hook.status = 500
    AlertRule.objects.create(
        name="late", signal="overdue_tasks", threshold=0, channel="webhook", target=webhook
    )
    overdue_task("A")

    alerts_evaluate()
    alerts_evaluate()

    event = AlertEvent.objects.get()
    assert (event.kind, event.delivered) == ("fired", False)
    assert "500" in event.error
    assert len(_Hook.received) == 1


def test_quality_score_drop_against_the_recent_best(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    crm = source("crm")
    for key in "ABCD":
        record(crm, key, email=f"{key.lower()}@example.com")
    QualityRule.objects.create(
        domain="customer", name="email", kind="completeness", attribute="email",
        opens_tasks=False,
    )  # fmt: skip
    AlertRule.objects.create(
        name="quality fell", signal="quality_score_drop", domain="customer", threshold=20,
        channel="email", target="dq@example.com",
    )  # fmt: skip
    quality_check_run(domain="customer", trigger="schedule")
    assert quality_score_drop("customer") is None  # one check: nothing to compare

    SourceRecord.objects.filter(source_key__in=["A", "B"]).update(attributes={})
    quality_check_run(domain="customer", trigger="schedule")

    assert quality_score_drop("customer") == pytest.approx(50.0)  # 100% -> 50%
    assert [e.kind for e in alerts_evaluate()] == ["fired"]

    SourceRecord.objects.filter(source_key="A").update(attributes={"email": "a@example.com"})
    quality_check_run(domain="customer", trigger="schedule")

    assert quality_score_drop("customer") == pytest.approx(25.0)  # still above 20: no news
    assert alerts_evaluate() == []
    SourceRecord.objects.filter(source_key="B").update(attributes={"email": "b@example.com"})
    quality_check_run(domain="customer", trigger="schedule")

    assert quality_score_drop("customer") == pytest.approx(0.0)
    assert [e.kind for e in alerts_evaluate()] == ["cleared"]
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["[Aurum] FIRING", "[Aurum] resolved"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"signal": "nope"}, "signal"),
        ({"channel": "email", "target": "not-an-address"}, "target"),
        ({"channel": "webhook", "target": "ftp://example.com/x"}, "target"),
    ],
)
def test_the_admin_form_refuses_a_bad_alert(fields, field):
    data = {
        "name": "a", "signal": "overdue_tasks", "threshold": "1", "channel": "email",
        "target": "ops@example.com", "is_active": True, **fields,
    }  # fmt: skip

    form = AlertRuleForm(data=data)

    assert not form.is_valid()
    assert list(form.errors) == [field]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/mdm/alertrule/add/",
        "/admin/mdm/alertrule/",
        "/admin/mdm/alertevent/",
        "/admin/mdm/qualityrule/add/",
        "/admin/mdm/qualityrule/",
        "/admin/mdm/qualityrun/",
    ],
)
def test_the_admin_pages_open_for_an_admin(client, django_user_model, path):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)

    response = client.get(path)

    assert response.status_code == 200


def test_an_admin_saves_an_alert_through_the_admin(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)

    response = client.post(
        "/admin/mdm/alertrule/add/",
        {"name": "late", "signal": "overdue_tasks", "domain": "", "threshold": "5",
         "channel": "webhook", "target": "https://hooks.example.com/aurum", "is_active": "on"},
    )  # fmt: skip

    assert response.status_code == 302, response.content
    alert = AlertRule.objects.get()
    assert (alert.signal, alert.threshold, alert.firing) == ("overdue_tasks", 5.0, False)
