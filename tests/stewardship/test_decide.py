"""Decisions take effect at once through the golden record lifecycle services."""

from __future__ import annotations

import pytest
from django.test import Client

from matching.models import PairConstraint
from mdm.models import GoldenOperation, GoldenRecord
from stewardship import services
from stewardship.models import ReviewTask, TaskEvent
from tests.stewardship.factories import (
    PASSWORD,
    golden_of,
    pair_task,
    record,
    source,
    two_people,
    user_with_role,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def steward():
    return user_with_role("sam", "steward")


def constraint(a, b):
    return PairConstraint.objects.filter(left_id=min(a.pk, b.pk), right_id=max(a.pk, b.pk)).first()


def test_merge_merges_the_golden_records_and_must_links(steward):
    left, right = two_people()
    task = pair_task(left, right)
    before = {golden_of(left), golden_of(right)}

    decided = services.review_task_decide(
        task_id=task.pk, decision="merge", actor=steward, comment="same e-mail domain owner"
    )

    assert (decided.status, decided.decision, decided.decided_by_id) == (
        "decided",
        "merge",
        steward.pk,
    )
    survivor = golden_of(left)
    assert golden_of(right) == survivor and survivor in before
    retired = GoldenRecord.objects.get(pk=(before - {survivor}).pop())
    assert (retired.status, retired.survivor_id) == ("retired", survivor)
    assert constraint(left, right).kind == "must_link"
    op = GoldenOperation.objects.get()
    assert (op.kind, op.actor_id, op.reason) == ("merge", steward.pk, "same e-mail domain owner")
    event = TaskEvent.objects.get(task=task, action="decide")
    assert event.detail["operation"] == op.pk
    assert event.detail["left_golden_after"] == event.detail["right_golden_after"] == survivor


def test_a_decision_is_applied_once(steward):
    left, right = two_people()
    task = pair_task(left, right)
    services.review_task_decide(task_id=task.pk, decision="merge", actor=steward)

    with pytest.raises(services.TaskStateError, match="already decided"):
        services.review_task_decide(task_id=task.pk, decision="not_a_match", actor=steward)

    assert GoldenOperation.objects.count() == 1
    assert constraint(left, right).kind == "must_link"


def test_not_a_match_on_records_together_splits_the_right_one_out(steward):
    left, right = two_people()
    merge = pair_task(left, right)
    services.review_task_decide(task_id=merge.pk, decision="merge", actor=steward)
    together = golden_of(left)
    ReviewTask.objects.filter(pk=merge.pk).update(status="obsolete")
    task = pair_task(left, right)

    services.review_task_decide(task_id=task.pk, decision="not_a_match", actor=steward)

    assert golden_of(left) == together
    assert golden_of(right) != together
    assert constraint(left, right).kind == "cannot_link"
    assert list(GoldenOperation.objects.order_by("id").values_list("kind", flat=True)) == [
        "merge",
        "split",
    ]


def test_not_a_match_on_records_apart_only_writes_a_cannot_link(steward):
    left, right = two_people()
    task = pair_task(left, right)
    goldens = golden_of(left), golden_of(right)

    services.review_task_decide(task_id=task.pk, decision="not_a_match", actor=steward)

    assert (golden_of(left), golden_of(right)) == goldens
    assert constraint(left, right).kind == "cannot_link"
    assert constraint(left, right).created_by_id == steward.pk
    assert not GoldenOperation.objects.exists()


def test_bulk_decides_each_and_reports_the_refused(steward):
    left, right = two_people()
    crm = source("crm")
    third, fourth = record(crm, "C-3", given_name="Bo"), record(crm, "C-4", given_name="Bob")
    from mdm.services.golden import golden_records_apply_clusters

    golden_records_apply_clusters(domain="customer", clusters={third.pk: 1, fourth.pk: 2})
    first, second = pair_task(left, right), pair_task(third, fourth)
    kim = user_with_role("kim", "steward")
    services.review_task_claim(task_id=second.pk, actor=kim)

    result = services.review_tasks_decide_bulk(
        task_ids=[first.pk, second.pk], decision="merge", actor=steward
    )

    assert result.decided == [first.pk]
    assert result.refused == {second.pk: f"review task {second.pk} is held by kim"}
    assert golden_of(left) == golden_of(right)
    assert golden_of(third) != golden_of(fourth)


def test_golden_page_split_and_undo_a_merge(steward):
    left, right = two_people()
    task = pair_task(left, right)
    services.review_task_decide(task_id=task.pk, decision="merge", actor=steward)
    survivor = golden_of(left)
    op = GoldenOperation.objects.get()
    client = Client()
    client.login(username="sam", password=PASSWORD)

    page = client.get(f"/steward/golden/{survivor}/").content.decode()
    assert f'id="operation-{op.pk}" data-kind="merge"' in page
    assert '<span id="member-count">2</span>' in page
    response = client.post(
        f"/steward/operations/{op.pk}/undo", {"next": f"/steward/golden/{survivor}/"}
    )

    assert response.status_code == 302
    assert golden_of(left) != golden_of(right)
    assert GoldenOperation.objects.filter(kind="undo").count() == 1

    viewer = Client()
    user_with_role("vic", "viewer")
    viewer.login(username="vic", password=PASSWORD)
    assert (
        viewer.post(f"/steward/golden/{golden_of(left)}/split", {"record": [left.pk]}).status_code
        == 403
    )


def test_a_merge_closes_the_other_open_pairs_it_settles(steward):
    crm = source("crm")
    a, b, c = (record(crm, f"K-{i}", given_name="Al") for i in range(3))
    from mdm.services.golden import golden_records_apply_clusters

    golden_records_apply_clusters(domain="customer", clusters={a.pk: 1, b.pk: 1, c.pk: 2})
    first, second = pair_task(a, c), pair_task(b, c)

    services.review_task_decide(task_id=first.pk, decision="merge", actor=steward)

    second.refresh_from_db()
    assert second.status == "obsolete"
    event = TaskEvent.objects.get(task=first, action="decide")
    assert event.detail["obsolete_tasks"] == 1


def test_a_lifecycle_conflict_leaves_the_task_open(steward):
    left, right = two_people()
    task = pair_task(left, right)
    GoldenRecord.objects.filter(pk=golden_of(right)).update(status="retired")

    with pytest.raises(services.TaskStateError):
        services.review_task_decide(task_id=task.pk, decision="merge", actor=steward)

    task.refresh_from_db()
    assert (task.status, task.decision) == ("open", "")
    assert not TaskEvent.objects.exists()
    assert not GoldenOperation.objects.exists()
    assert constraint(left, right) is None
