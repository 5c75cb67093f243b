"""Claim, release, assign, skip, escalate and data-quality tasks: the stewardship services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from stewardship import services
from stewardship.models import Priority, ReviewTask, ServiceLevel, TaskEvent
from tests.stewardship.factories import pair_task, record, source, two_people, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def steward():
    return user_with_role("sam", "steward")


@pytest.fixture
def task():
    left, right = two_people()
    return pair_task(left, right)


def test_claim_makes_the_steward_the_assignee_and_is_audited(task, steward):
    claimed = services.review_task_claim(task_id=task.pk, actor=steward)

    assert claimed.assignee_id == steward.pk
    assert claimed.assigned_at is not None
    event = TaskEvent.objects.get(task=task)
    assert (event.action, event.actor_id) == ("claim", steward.pk)
    # Claiming again is a no-op, not a second event.
    services.review_task_claim(task_id=task.pk, actor=steward)
    assert TaskEvent.objects.filter(task=task).count() == 1


def test_a_claimed_task_cannot_be_claimed_by_another_steward(task, steward):
    other = user_with_role("kim", "steward")
    services.review_task_claim(task_id=task.pk, actor=steward)

    with pytest.raises(services.TaskStateError, match="claimed by sam"):
        services.review_task_claim(task_id=task.pk, actor=other)

    task.refresh_from_db()
    assert task.assignee_id == steward.pk
    assert TaskEvent.objects.filter(task=task).count() == 1


def test_release_by_the_holder_and_refused_to_another_steward(task, steward):
    other = user_with_role("kim", "steward")
    services.review_task_claim(task_id=task.pk, actor=steward)

    with pytest.raises(services.TaskStateError):
        services.review_task_release(task_id=task.pk, actor=other)
    released = services.review_task_release(task_id=task.pk, actor=steward)

    assert released.assignee_id is None
    assert list(TaskEvent.objects.filter(task=task).values_list("action", flat=True)) == [
        "release",
        "claim",
    ]


def test_an_admin_may_release_anyone_s_task(task, steward):
    admin = user_with_role("ada", "admin")
    services.review_task_claim(task_id=task.pk, actor=steward)

    assert services.review_task_release(task_id=task.pk, actor=admin).assignee_id is None


def test_assign_only_to_stewards(task, steward):
    viewer = user_with_role("vic", "viewer")
    kim = user_with_role("kim", "steward")

    with pytest.raises(services.TaskInputError, match="active steward or admin"):
        services.review_task_assign(task_id=task.pk, assignee_id=viewer.pk, actor=steward)
    assigned = services.review_task_assign(task_id=task.pk, assignee_id=kim.pk, actor=steward)

    assert assigned.assignee_id == kim.pk
    event = TaskEvent.objects.get(task=task)
    assert event.detail == {"from": None, "to": kim.pk}


@pytest.mark.parametrize("role", [None, "viewer"])
def test_users_below_steward_may_not_change_tasks(task, role):
    user = user_with_role("u", role)

    for call in (
        lambda: services.review_task_claim(task_id=task.pk, actor=user),
        lambda: services.review_task_decide(task_id=task.pk, decision="skip", actor=user),
        lambda: services.review_tasks_decide_bulk(task_ids=[task.pk], decision="merge", actor=user),
    ):
        with pytest.raises(services.TaskPermissionError):
            call()

    task.refresh_from_db()
    assert (task.status, task.assignee_id) == ("open", None)
    assert not TaskEvent.objects.exists()


def test_skip_leaves_the_task_open_and_gives_it_back(task, steward):
    services.review_task_claim(task_id=task.pk, actor=steward)

    skipped = services.review_task_decide(
        task_id=task.pk, decision="skip", actor=steward, comment="need the CRM owner"
    )

    skipped.refresh_from_db()
    assert (skipped.status, skipped.decision, skipped.assignee_id) == ("open", "", None)
    event = TaskEvent.objects.get(task=task, action="skip")
    assert event.comment == "need the CRM owner"


def test_unknown_decision_is_refused_and_nothing_changes(task, steward):
    with pytest.raises(services.TaskInputError, match="merge, not_a_match, skip"):
        services.review_task_decide(task_id=task.pk, decision="maybe", actor=steward)

    task.refresh_from_db()
    assert task.status == "open"
    assert not TaskEvent.objects.exists()


def test_a_task_held_by_another_steward_cannot_be_decided(task, steward):
    kim = user_with_role("kim", "steward")
    services.review_task_claim(task_id=task.pk, actor=kim)

    with pytest.raises(services.TaskStateError, match="held by kim"):
        services.review_task_decide(task_id=task.pk, decision="skip", actor=steward)


def test_schedule_stamps_due_time_and_priority_from_the_domain_service_level(task):
    ServiceLevel.objects.create(domain="customer", due_hours=4, priority=Priority.HIGH)

    assert services.review_tasks_schedule() == 1
    assert services.review_tasks_schedule() == 0  # safe to repeat

    task.refresh_from_db()
    assert task.due_at == task.created_at + timedelta(hours=4)
    assert task.priority == Priority.HIGH


def test_escalation_raises_overdue_tasks_once():
    left, right = two_people()
    crm = source("crm")
    third = record(crm, "C-9", given_name="Cy")
    late = pair_task(left, right)
    on_time = pair_task(left, third)
    ServiceLevel.objects.create(domain="customer", due_hours=1, escalated_priority=Priority.URGENT)
    ReviewTask.objects.filter(pk=late.pk).update(created_at=timezone.now() - timedelta(hours=3))

    assert services.review_tasks_escalate() == 1
    assert services.review_tasks_escalate() == 0  # safe to run twice

    late.refresh_from_db()
    on_time.refresh_from_db()
    assert late.priority == Priority.URGENT and late.escalated_at is not None
    assert late.is_overdue
    assert on_time.escalated_at is None and on_time.priority == Priority.NORMAL
    assert list(TaskEvent.objects.values_list("task_id", "action")) == [(late.pk, "escalate")]


def test_escalation_task_runs_the_service(task):
    from stewardship.tasks import escalate_review_tasks_task

    ReviewTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(days=30))

    assert escalate_review_tasks_task.apply().get() == 1
    task.refresh_from_db()
    assert task.escalated_at is not None


def test_data_quality_task_is_opened_once_and_resolved(steward):
    rec = record(source("crm"), "C-5", email="not-an-email")

    first = services.data_quality_task_open(
        domain="customer", record_id=rec.pk, rule="email_valid", details={"value": "not-an-email"}
    )
    again = services.data_quality_task_open(domain="customer", record_id=rec.pk, rule="email_valid")

    assert first.pk == again.pk
    assert first.kind == ReviewTask.Kind.DATA_QUALITY and first.due_at is not None
    with pytest.raises(services.TaskInputError):
        services.review_task_decide(task_id=first.pk, decision="merge", actor=steward)
    done = services.review_task_decide(task_id=first.pk, decision="resolved", actor=steward)
    assert (done.status, done.decision, done.decided_by_id) == ("decided", "resolved", steward.pk)
    with pytest.raises(services.TaskStateError, match="already decided"):
        services.review_task_decide(task_id=first.pk, decision="resolved", actor=steward)


def test_schedule_is_one_update_per_domain(django_assert_num_queries):
    left, right = two_people()
    crm = source("crm")
    for i in range(3):
        pair_task(left, record(crm, f"S-{i}", given_name="Sy"))
    pair_task(left, right)

    # The distinct domains, the domain's service level, one UPDATE.
    with django_assert_num_queries(3):
        assert services.review_tasks_schedule() == 4
