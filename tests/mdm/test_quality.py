"""Data-quality rules: each kind, the issues and scores a run records, the tasks it opens,
and the check queued after an ingest."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from config.celery import app
from mdm.admin import QualityRuleForm
from mdm.models import QualityIssue, QualityRule, QualityRun, QualityScore, SourceRecord
from mdm.services.quality import quality_check_all, quality_check_run
from stewardship.models import ReviewTask
from tests.stewardship.factories import record, source

pytestmark = pytest.mark.django_db


def rule(name: str, kind: str, attribute: str = "", **params: Any) -> QualityRule:
    return QualityRule.objects.create(
        domain="customer", name=name, kind=kind, attribute=attribute, params=params
    )


def failing(name: str) -> list[str]:
    return sorted(
        QualityIssue.objects.filter(rule__name=name, resolved_at__isnull=True).values_list(
            "record__source_key", flat=True
        )
    )


def dq_tasks() -> list[tuple[int, str]]:
    return sorted(
        ReviewTask.objects.filter(kind=ReviewTask.Kind.DATA_QUALITY).values_list(
            "left_record_id", "rule"
        )
    )


def test_completeness_fails_records_without_the_value():
    crm = source("crm")
    record(crm, "A", email="a@example.com")
    record(crm, "B", email="")
    record(crm, "C")
    rule("email-present", "completeness", "email")

    run = quality_check_run(domain="customer")

    assert failing("email-present") == ["B", "C"]
    assert (run.records_checked, run.failures, run.issues_opened) == (3, 2, 2)


def test_validity_rechecks_stored_values_with_the_attributes_validator():
    crm = source("crm")
    record(crm, "A", email="ann@example.com", country="GB")
    record(crm, "B", email="not-an-email", country="GB")
    record(crm, "C", country="Atlantis")
    record(crm, "D")  # no value: completeness's business, not validity's
    rule("email-valid", "validity", "email")
    rule("country-valid", "validity", "country")

    quality_check_run(domain="customer")

    assert failing("email-valid") == ["B"]
    assert failing("country-valid") == ["C"]
    message = QualityIssue.objects.get(rule__name="email-valid").message
    assert "not-an-email" in message


def test_uniqueness_within_a_source_and_across_the_domain():
    crm, erp = source("crm"), source("erp")
    record(crm, "A", email="ann@example.com")
    record(crm, "B", email="ANN@example.com ")
    record(crm, "C", email="bob@example.com")
    record(erp, "D", email="bob@example.com")
    gone = record(crm, "E", email="bob@example.com")
    SourceRecord.objects.filter(pk=gone.pk).update(is_deleted=True)
    rule("email-unique-per-source", "uniqueness", "email")
    rule("email-unique", "uniqueness", "email", scope="domain")

    quality_check_run(domain="customer")

    assert failing("email-unique-per-source") == ["A", "B"]
    assert failing("email-unique") == ["A", "B", "C", "D"]
    assert QualityIssue.objects.get(rule__name="email-unique", record__source_key="C").message == (
        "email 'bob@example.com' is held by 2 records"
    )


def test_consistency_between_attributes():
    crm = source("crm")
    record(crm, "A", party_type="organisation", organisation_name="Acme")
    record(crm, "B", party_type="organisation")
    record(crm, "C", party_type="person")
    for key, width, length in [("D", 30.0, 120.0), ("E", 80.5, 60.0), ("F", 10.0, None)]:
        SourceRecord.objects.create(
            source_system=crm, domain="product", source_key=key, content_hash=key,
            attributes={"width_cm": width, "length_cm": length}, received_at=timezone.now(),
        )  # fmt: skip
    rule("org-named", "consistency", "organisation_name", when="party_type", equals="organisation")
    QualityRule.objects.create(
        domain="product", name="width-within-length", kind="consistency", attribute="width_cm",
        params={"not_after": "length_cm"},
    )  # fmt: skip

    quality_check_run(domain="customer")
    quality_check_run(domain="product")

    assert failing("org-named") == ["B"]
    assert failing("width-within-length") == ["E"]
    assert QualityIssue.objects.get(rule__name="width-within-length").message == (
        "width_cm 80.5 is after length_cm 60.0"
    )


def test_freshness_by_the_sources_update_time_else_the_hubs_receipt():
    crm = source("crm")
    now = timezone.now()
    old = record(crm, "A")
    SourceRecord.objects.filter(pk=old.pk).update(received_at=now - timedelta(days=400))
    revived = record(crm, "B")
    SourceRecord.objects.filter(pk=revived.pk).update(
        received_at=now - timedelta(days=400), source_updated_at=now - timedelta(days=3)
    )
    record(crm, "C")
    rule("fresh", "freshness", max_age_days=365)

    quality_check_run(domain="customer")

    assert failing("fresh") == ["A"]


def test_a_source_scoped_rule_checks_only_that_source():
    crm, erp = source("crm"), source("erp")
    record(crm, "A")
    record(erp, "B")
    QualityRule.objects.create(
        domain="customer", name="crm-email", kind="completeness", attribute="email",
        source_system=crm,
    )  # fmt: skip

    quality_check_run(domain="customer")

    assert failing("crm-email") == ["A"]


def test_scores_per_rule_and_source_of_a_whole_domain_run():
    crm, erp = source("crm"), source("erp")
    record(crm, "A", email="a@example.com")
    record(crm, "B")
    record(crm, "C")
    record(erp, "D", email="d@example.com")
    rule("email-present", "completeness", "email")

    run = quality_check_run(domain="customer", trigger=QualityRun.Trigger.SCHEDULE)

    scores = sorted(
        QualityScore.objects.filter(run=run).values_list(
            "source_system__code", "dimension", "attribute", "checked", "failed"
        )
    )
    assert scores == [
        ("crm", "completeness", "email", 3, 2),
        ("erp", "completeness", "email", 1, 0),
    ]


def test_a_failing_record_opens_one_task_and_a_repeat_opens_none():
    crm = source("crm")
    a = record(crm, "A")
    record(crm, "B", email="b@example.com")
    rule("email-present", "completeness", "email")
    QualityRule.objects.create(
        domain="customer", name="quiet", kind="completeness", attribute="phone", opens_tasks=False
    )

    quality_check_run(domain="customer")
    second = quality_check_run(domain="customer")

    assert dq_tasks() == [(a.pk, "email-present")]
    task = ReviewTask.objects.get(kind=ReviewTask.Kind.DATA_QUALITY)
    assert task.details == {
        "quality_rule": "email-present",
        "kind": "completeness",
        "attribute": "email",
        "message": "email is empty",
    }
    assert task.due_at is not None
    assert (second.failures, second.issues_opened) == (3, 0)
    assert QualityIssue.objects.count() == 3


def test_a_fixed_record_resolves_its_issue_and_a_relapse_reopens_it():
    crm = source("crm")
    a = record(crm, "A")
    rule("email-present", "completeness", "email")
    quality_check_run(domain="customer")

    SourceRecord.objects.filter(pk=a.pk).update(attributes={"email": "a@example.com"})
    fixed = quality_check_run(domain="customer")

    assert fixed.issues_resolved == 1
    assert failing("email-present") == []
    assert list(ReviewTask.objects.values_list("status", flat=True)) == ["obsolete"]

    SourceRecord.objects.filter(pk=a.pk).update(attributes={})
    relapsed = quality_check_run(domain="customer")

    assert relapsed.issues_opened == 1
    assert failing("email-present") == ["A"]
    assert sorted(ReviewTask.objects.values_list("status", flat=True)) == ["obsolete", "open"]


def test_issues_of_deleted_records_and_inactive_rules_are_resolved():
    crm = source("crm")
    a = record(crm, "A")
    b = record(crm, "B")
    r = rule("email-present", "completeness", "email")
    rule("phone-present", "completeness", "phone")
    quality_check_run(domain="customer")

    SourceRecord.objects.filter(pk=a.pk).update(is_deleted=True)
    QualityRule.objects.filter(name="phone-present").update(is_active=False)
    quality_check_run(domain="customer")

    assert failing("email-present") == ["B"]
    assert failing("phone-present") == []
    open_tasks = ReviewTask.objects.filter(status="open").values_list("left_record_id", "rule")
    assert sorted(open_tasks) == [(b.pk, "email-present")]
    assert r.issues.filter(resolved_at__isnull=False).count() == 1


def test_check_all_runs_only_domains_with_active_rules():
    record(source("crm"), "A")
    rule("email-present", "completeness", "email")

    runs = quality_check_all()

    assert [(r.domain, r.trigger) for r in runs] == [("customer", "schedule")]


@pytest.fixture
def eager():
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_an_ingest_queues_the_rules_over_its_records_after_commit(
    api, settings, eager, django_capture_on_commit_callbacks
):
    settings.AURUM_MATCH_AFTER_INGEST = False
    rule("email-present", "completeness", "email")
    record(source("erp"), "OLD")  # not in the ingest run: not checked after it

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post(
            "/api/v1/customer/records",
            {"records": [{"source_key": "N1", "full_name": "Ann Lee"},
                         {"source_key": "N2", "full_name": "Bob", "email": "bob@example.com"}]},
            format="json",
        )  # fmt: skip

    assert response.status_code == 200, response.content
    assert len(callbacks) == 1
    run = QualityRun.objects.get()
    assert (run.trigger, run.records_checked, run.failures) == ("ingest", 2, 1)
    assert run.ingest_run is not None and run.ingest_run.read_count == 2
    assert failing("email-present") == ["N1"]
    assert [r for _, r in dq_tasks()] == ["email-present"]


def test_an_unchanged_ingest_queues_nothing(api, settings, django_capture_on_commit_callbacks):
    settings.AURUM_MATCH_AFTER_INGEST = False
    body = {"source_key": "N1", "full_name": "Ann Lee"}
    api.post("/api/v1/customer/records", body, format="json")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        api.post("/api/v1/customer/records", body, format="json")

    assert callbacks == []


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"kind": "completeness", "attribute": "emial"}, ["attribute"]),
        ({"kind": "freshness", "attribute": "", "params": {}}, ["params"]),
        ({"kind": "uniqueness", "attribute": "email", "params": {"scope": "x"}}, ["params"]),
        ({"kind": "consistency", "attribute": "email", "params": {"when": "nope"}}, ["params"]),
        ({"kind": "consistency", "attribute": "email", "params": {}}, ["params"]),
    ],
)
def test_the_admin_form_refuses_a_rule_that_cannot_run(fields, errors):
    data = {"domain": "customer", "name": "r", "is_active": True, **fields}
    data["params"] = json.dumps(data.get("params", {}))

    form = QualityRuleForm(data=data)

    assert not form.is_valid()
    assert sorted(form.errors) == errors
    assert QualityRule.objects.count() == 0


def test_the_admin_form_accepts_a_good_rule():
    form = QualityRuleForm(
        data={
            "domain": "customer",
            "name": "org-named",
            "kind": "consistency",
            "attribute": "organisation_name",
            "params": '{"when": "party_type", "equals": "organisation"}',
            "is_active": True,
            "opens_tasks": True,
        }
    )

    assert form.is_valid(), form.errors
    assert form.save().params == {"when": "party_type", "equals": "organisation"}


def test_the_command_runs_a_domain_and_prints_its_figures():
    from io import StringIO

    from django.core.management import CommandError, call_command

    record(source("crm"), "A")
    rule("email-present", "completeness", "email")
    out = StringIO()

    call_command("quality_check", "customer", stdout=out)

    assert out.getvalue().startswith("customer: 1 records, 1 failures, 1 new issues, 0 resolved")
    assert QualityRun.objects.get().trigger == "manual"
    with pytest.raises(CommandError, match="Unknown domain 'nope'"):
        call_command("quality_check", "nope")
