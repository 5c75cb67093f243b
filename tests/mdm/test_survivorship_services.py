"""Saving, previewing and recomputing survivorship rules (SQLite and PostgreSQL)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from config.celery import app
from mdm.models import GoldenRecord, SourceRecord, SurvivorshipJob, SurvivorshipRuleSet
from mdm.services import survivorship as services
from mdm.services.golden import golden_records_apply_clusters, golden_records_rebuild
from mdm.services.sources import source_system_upsert
from mdm.services.survivorship import (
    SurvivorshipRulesConflictError,
    golden_records_recompute,
    survivorship_jobs_resume,
    survivorship_recompute,
    survivorship_rules_preview,
    survivorship_rules_update,
)
from mdm.survivorship import RulesError, survivorship_rules_active

URL = "/api/v1/customer/records"
ERP_FIRST = {"rules": {"email": {"strategy": "source_priority", "sources": ["erp", "crm"]}}}


@pytest.fixture
def admin(db):
    user = User.objects.create_user("ada", password="pw")
    user.groups.add(Group.objects.get(name="admin"))
    return user


@pytest.fixture
def goldens(api, other_api):
    """Three golden records: Ann and Bob in crm and erp, Cy in crm only; crm more trusted."""
    source_system_upsert(code="crm", priority=10)
    source_system_upsert(code="erp", priority=20)
    api.post(
        URL,
        {
            "records": [
                {"source_key": "A", "given_name": "Ann", "email": "ann@crm.example"},
                {"source_key": "B", "given_name": "Bob", "email": "bob@crm.example"},
                {"source_key": "C", "given_name": "Cy", "email": "cy@crm.example"},
            ]
        },
        format="json",
    )
    other_api.post(
        URL,
        {
            "records": [
                {"source_key": "X", "given_name": "Anne", "email": "ann@erp.example"},
                {"source_key": "Y", "given_name": "Bob", "email": "bob@erp.example"},
            ]
        },
        format="json",
    )
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    clusters = {ids["A"]: 1, ids["X"]: 1, ids["B"]: 2, ids["Y"]: 2, ids["C"]: 3}
    result = golden_records_apply_clusters(domain="customer", clusters=clusters)
    return {name: result.golden_of[key] for name, key in (("ann", 1), ("bob", 2), ("cy", 3))}


def email_of(golden_id):
    return GoldenRecord.objects.get(pk=golden_id).attributes["email"]


def counts():
    return (
        GoldenRecord.objects.count(),
        GoldenRecord.history.count(),
        SurvivorshipRuleSet.objects.count(),
        SurvivorshipRuleSet.history.count(),
        SurvivorshipJob.objects.count(),
        sorted(GoldenRecord.objects.values_list("id", "version", "attributes", "provenance")),
    )


@pytest.fixture
def eager():
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_preview_counts_and_samples_the_changes_and_writes_nothing(goldens):
    before = counts()

    preview = survivorship_rules_preview(domain="customer", spec=ERP_FIRST)

    assert (preview.total, preview.changed, preview.provenance_only) == (3, 2, 0)
    assert preview.attributes == {"email": 2}
    assert [c.golden_id for c in preview.sample] == [goldens["ann"], goldens["bob"]]
    ann = preview.sample[0]
    assert (ann.before["email"], ann.after["email"]) == ("ann@crm.example", "ann@erp.example")
    assert ann.changed_attributes == ["email"]
    assert ann.provenance_after["email"]["competitors"] == [
        {"value": "ann@crm.example", "source": "crm", "source_key": "A"}
    ]
    assert counts() == before


def test_preview_of_a_bad_spec_names_the_field_and_writes_nothing(goldens):
    before = counts()

    with pytest.raises(RulesError) as caught:
        survivorship_rules_preview(
            domain="customer", spec={"rules": {"email": {"strategy": "newest"}}}
        )

    assert list(caught.value.errors) == ["rules.email.strategy"]
    assert counts() == before


def test_saving_stores_a_version_with_history_and_recomputes_after_commit(
    goldens, admin, eager, django_capture_on_commit_callbacks
):
    cy_history = GoldenRecord.objects.get(pk=goldens["cy"]).history.count()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ruleset, job = survivorship_rules_update(
            domain="customer", spec=ERP_FIRST, expected_version=0, actor=admin, comment="erp first"
        )

    assert len(callbacks) == 1
    assert ruleset.version == 1
    assert survivorship_rules_active(domain="customer").version == 1
    stored = SurvivorshipRuleSet.objects.get(domain="customer")
    assert stored.spec["rules"]["email"]["sources"] == ["erp", "crm"]
    assert stored.spec["rules"]["given_name"]["strategy"] == "source_priority"  # explicit
    history = stored.history.get()
    assert (history.history_user, history.history_change_reason) == (admin, "erp first")
    job.refresh_from_db()
    assert (job.status, job.rule_version, job.total, job.done, job.changed) == (
        "succeeded",
        1,
        3,
        3,
        2,
    )
    assert email_of(goldens["ann"]) == "ann@erp.example"
    assert email_of(goldens["bob"]) == "bob@erp.example"
    assert email_of(goldens["cy"]) == "cy@crm.example"
    ann = GoldenRecord.objects.get(pk=goldens["ann"])
    assert ann.provenance["email"]["source"] == "erp"
    assert ann.provenance["given_name"]["source"] == "crm"  # other attributes kept their rule
    last = ann.history.first()
    assert (last.history_change_reason, last.history_user, last.version) == (
        "survivorship rules v1",
        admin,
        ann.version,
    )
    assert GoldenRecord.objects.get(pk=goldens["cy"]).history.count() == cy_history  # untouched


def test_a_stale_version_is_a_conflict_and_writes_nothing(goldens, admin):
    survivorship_rules_update(domain="customer", spec=ERP_FIRST, expected_version=0, actor=admin)
    before = counts()

    with pytest.raises(SurvivorshipRulesConflictError, match="version 1, not 0"):
        survivorship_rules_update(domain="customer", spec={}, expected_version=0, actor=admin)

    assert counts() == before


def test_a_bad_spec_is_refused_before_anything_is_written(goldens, admin):
    before = counts()

    with pytest.raises(RulesError) as caught:
        survivorship_rules_update(
            domain="customer",
            spec={"rules": {"email": {"strategy": "source_priority", "sources": ["ledger"]}}},
            expected_version=0,
            actor=admin,
        )

    assert caught.value.errors == {"rules.email.sources": ["Unknown source system 'ledger'."]}
    assert counts() == before


def test_recompute_twice_writes_nothing_the_second_time(goldens, admin):
    survivorship_rules_update(domain="customer", spec=ERP_FIRST, expected_version=0, actor=admin)

    first = golden_records_recompute(domain="customer", chunk=2)
    history = GoldenRecord.history.count()
    second = golden_records_recompute(domain="customer", chunk=2)

    assert (first.total, first.changed) == (3, 2)
    assert (second.total, second.changed) == (3, 0)
    assert GoldenRecord.history.count() == history


def test_a_job_is_claimed_once(goldens, admin):
    _, job = survivorship_rules_update(
        domain="customer", spec=ERP_FIRST, expected_version=0, actor=admin
    )

    first = survivorship_recompute(job_id=job.pk)
    history = GoldenRecord.history.count()
    again = survivorship_recompute(job_id=job.pk)  # a redelivered message

    assert first.status == again.status == "succeeded"
    assert GoldenRecord.history.count() == history


def test_an_older_job_is_superseded_by_a_newer_version(goldens, admin):
    _, old = survivorship_rules_update(
        domain="customer", spec=ERP_FIRST, expected_version=0, actor=admin
    )
    _, new = survivorship_rules_update(domain="customer", spec={}, expected_version=1, actor=admin)

    old = survivorship_recompute(job_id=old.pk)
    new = survivorship_recompute(job_id=new.pk)

    assert (old.status, new.status) == ("superseded", "succeeded")
    assert email_of(goldens["ann"]) == "ann@crm.example"


def test_matching_rebuilds_use_the_active_rules(goldens, admin):
    survivorship_rules_update(domain="customer", spec=ERP_FIRST, expected_version=0, actor=admin)

    golden_records_rebuild(domain="customer", golden_ids=[goldens["ann"]])

    assert email_of(goldens["ann"]) == "ann@erp.example"
    assert email_of(goldens["bob"]) == "bob@crm.example"  # not rebuilt yet


def test_a_lost_job_message_is_sent_again_by_the_sweep(goldens, admin, eager, monkeypatch):
    _, job = survivorship_rules_update(
        domain="customer", spec=ERP_FIRST, expected_version=0, actor=admin
    )  # no on-commit callbacks run here: as if the broker had been down
    lost: list[int] = []
    monkeypatch.setattr(services, "_send", lost.append)  # the next message is lost too
    later = timezone.now() + timedelta(minutes=5)

    too_young = survivorship_jobs_resume()
    first = survivorship_jobs_resume(now=later)
    too_soon = survivorship_jobs_resume(now=later + timedelta(seconds=30))
    monkeypatch.undo()
    second = survivorship_jobs_resume(now=later + timedelta(minutes=5))

    assert (too_young, first, too_soon, second) == ([], [job.pk], [], [job.pk])
    assert lost == [job.pk]
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert email_of(goldens["ann"]) == "ann@erp.example"


@pytest.fixture
def many_goldens(api, other_api):
    """60 golden records; the 30 with an even number have an erp e-mail that differs."""
    source_system_upsert(code="crm", priority=10)
    source_system_upsert(code="erp", priority=20)
    api.post(
        URL,
        {
            "records": [
                {"source_key": f"c{i}", "given_name": "P", "email": f"p{i}@crm.example"}
                for i in range(60)
            ]
        },
        format="json",
    )
    other_api.post(
        URL,
        {
            "records": [
                {"source_key": f"e{i}", "given_name": "P", "email": f"p{i}@erp.example"}
                for i in range(0, 60, 2)
            ]
        },
        format="json",
    )
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    clusters = {ids[f"c{i}"]: i for i in range(60)}
    clusters.update({ids[f"e{i}"]: i for i in range(0, 60, 2)})
    golden_records_apply_clusters(domain="customer", clusters=clusters)


def test_preview_of_a_large_domain_reads_a_spread_sample_and_scales_the_counts(many_goldens):
    before = counts()

    full = survivorship_rules_preview(domain="customer", spec=ERP_FIRST)
    sampled = survivorship_rules_preview(domain="customer", spec=ERP_FIRST, limit=20)

    assert (full.estimated, full.total, full.domain_total, full.changed) == (False, 60, 60, 30)
    assert sampled.estimated and sampled.domain_total == 60
    assert 10 <= sampled.total <= 20  # windows of 2 records spread over the ids, no repeats
    assert abs(sampled.changed - 30) <= 6  # every other golden record changes
    assert sampled.attributes == {"email": sampled.changed}
    assert counts() == before
