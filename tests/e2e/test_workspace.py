"""The steward workspace in a real browser: log in, work the queue with the keyboard, bulk
decisions, quarantine fix and replay, and a viewer who cannot decide."""

from __future__ import annotations

from typing import Any

import pytest

from matching.models import PairConstraint
from mdm.models import CrossReference, GoldenRecord, QuarantinedPayload
from mdm.services.ingest import REJECTED
from stewardship.models import ReviewTask, TaskEvent
from stewardship.services import review_tasks_schedule
from tests.stewardship.factories import (
    PASSWORD,
    golden_of,
    pair_task,
    record,
    source,
    two_people,
    user_with_role,
)

pytestmark = pytest.mark.django_db(transaction=True)


def log_in(page: Any, username: str) -> None:
    page.goto("/steward/queue/matches/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/steward/queue/matches/")


@pytest.fixture
def workload() -> dict[str, Any]:
    left, right = two_people()
    crm, web = source("crm"), source("webshop")
    b1 = record(crm, "C-30", given_name="Bo", family_name="Ray", country="US")
    b2 = record(web, "W-31", given_name="Bob", family_name="Ray", country="US")
    c1 = record(crm, "C-40", given_name="Cy", family_name="Day", email="cy@example.com")
    c2 = record(web, "W-41", given_name="Cyrus", family_name="Day", email="cy@example.com")
    from mdm.services.golden import golden_records_apply_clusters

    golden_records_apply_clusters(
        domain="customer", clusters={b1.pk: 1, b2.pk: 2, c1.pk: 3, c2.pk: 4}
    )
    tasks = {
        "ann": pair_task(left, right, probability=0.91),
        "bob": pair_task(b1, b2, probability=0.74),
        "cy": pair_task(c1, c2, probability=0.66),
    }
    review_tasks_schedule()  # due times from the service level, as the beat task does
    return {**tasks, "records": (left, right, b1, b2, c1, c2)}


def test_merge_with_the_keyboard_updates_the_golden_record(page, workload, screenshot):
    user_with_role("sam", "steward")
    left, right = workload["records"][:2]
    before = golden_of(left), golden_of(right)
    assert before[0] != before[1]

    log_in(page, "sam")
    assert page.locator("#task-count").inner_text() == "3 open tasks"
    screenshot(page, "queue")
    page.click(f"#task-{workload['ann'].pk} a.open-task")
    page.wait_for_selector("#compare")
    assert page.locator("#probability").inner_text() == "0.910"
    assert page.locator("#compare tr.differs").count() >= 2
    assert page.locator("#contributions .bar.negative").count() == 1
    screenshot(page, "pair")
    page.keyboard.press("m")
    page.wait_for_url(f"**/steward/tasks/{workload['bob'].pk}/")

    task = ReviewTask.objects.get(pk=workload["ann"].pk)
    assert (task.status, task.decision) == ("decided", "merge")
    assert task.decided_by is not None and task.decided_by.username == "sam"
    assert golden_of(left) == golden_of(right)
    survivor = golden_of(left)
    page.goto(f"/steward/golden/{survivor}/")
    assert page.locator("#member-count").inner_text() == "2"
    assert page.locator("#members tr[data-record]").count() == 2
    assert page.locator(".operation[data-kind=merge]").count() == 1
    screenshot(page, "golden")


def test_not_a_match_writes_a_cannot_link(page, workload):
    user_with_role("sam", "steward")
    b1, b2 = workload["records"][2:4]
    log_in(page, "sam")

    page.goto(f"/steward/tasks/{workload['bob'].pk}/")
    page.fill("#comment", "different people")
    page.click("#decide-not_a_match")
    page.wait_for_url(f"**/steward/tasks/{workload['cy'].pk}/")

    task = ReviewTask.objects.get(pk=workload["bob"].pk)
    assert (task.status, task.decision, task.comment) == (
        "decided",
        "not_a_match",
        "different people",
    )
    constraint = PairConstraint.objects.get(left_id=min(b1.pk, b2.pk), right_id=max(b1.pk, b2.pk))
    assert constraint.kind == "cannot_link"
    assert golden_of(b1) != golden_of(b2)


def test_bulk_decision_from_the_queue(page, workload, screenshot):
    user_with_role("sam", "steward")
    log_in(page, "sam")

    # Claim from the row: htmx (served by the hub) swaps the row in place.
    page.click(f"#task-{workload['ann'].pk} button:has-text('Claim')")
    page.wait_for_selector(f"#task-{workload['ann'].pk} button:has-text('Release')")
    assert page.locator(f"#task-{workload['ann'].pk} td.assignee").inner_text() == "sam"
    claimed = ReviewTask.objects.get(pk=workload["ann"].pk).assignee
    assert claimed is not None and claimed.username == "sam"
    # Filtering reloads the table only, and the URL keeps the filter.
    page.select_option("select[name=assignee]", "me")
    page.wait_for_function("document.querySelector('#task-count').innerText === '1 open task'")
    assert "assignee=me" in page.url
    page.select_option("select[name=assignee]", "")
    page.wait_for_function("document.querySelector('#task-count').innerText === '3 open tasks'")

    page.check(f"#task-{workload['bob'].pk} input[name=task]")
    page.check(f"#task-{workload['cy'].pk} input[name=task]")
    page.click("#bulk-not-a-match")
    page.wait_for_selector(".msg.success")

    assert "Not a match: 2 task(s) decided." in page.locator(".messages").inner_text()
    assert page.locator("#task-count").inner_text() == "1 open task"
    decided = ReviewTask.objects.filter(status="decided").values_list("id", flat=True)
    assert sorted(decided) == sorted([workload["bob"].pk, workload["cy"].pk])
    assert TaskEvent.objects.filter(action="decide").count() == 2
    page.goto("/steward/")
    assert page.locator("#decided-today").inner_text() == "2"
    screenshot(page, "dashboard")


def test_fix_and_replay_a_quarantined_payload(page, api, screenshot):
    response = api.post(
        "/api/v1/customer/records",
        {"source_key": "Q1", "given_name": "Zoe", "email": "zoe@@example"},
        format="json",
    )
    assert response.json()["results"][0]["status"] == REJECTED
    payload = QuarantinedPayload.objects.get()
    user_with_role("sam", "steward")
    log_in(page, "sam")

    page.goto("/steward/quarantine/")
    page.click("a.open-payload")
    field = page.locator(".field.has-error")
    assert field.locator("label").inner_text() == "email"
    assert "not a valid e-mail address" in field.locator(".field-error").inner_text()
    screenshot(page, "quarantine")
    field.locator("input").fill("zoe@example.com")
    page.click("#replay")
    page.wait_for_url("**/steward/quarantine/")

    assert "replayed" in page.locator(".messages").inner_text()
    payload.refresh_from_db()
    assert payload.status == "replayed" and payload.record is not None
    assert payload.record.attributes["email"] == "zoe@example.com"


def test_a_viewer_sees_no_decision_buttons_and_cannot_decide(page, workload):
    user_with_role("vic", "viewer")
    log_in(page, "vic")

    assert page.locator("#bulk-merge").count() == 0
    assert page.locator("input[name=task]").count() == 0
    page.goto(f"/steward/tasks/{workload['ann'].pk}/")
    assert page.locator("#read-only").is_visible()
    assert page.locator("#decide-merge").count() == 0
    page.keyboard.press("m")  # the shortcut has no button to press
    page.keyboard.press("j")  # but moving to the next task works for every role
    page.wait_for_url(f"**/steward/tasks/{workload['bob'].pk}/")
    # A forged POST is refused by the server.
    status = page.evaluate(
        """async (id) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const r = await fetch(`/steward/tasks/${id}/decide`, {method: "POST",
                headers: {"X-CSRFToken": token,
                          "Content-Type": "application/x-www-form-urlencoded"},
                body: "decision=merge"});
            return r.status;
        }""",
        workload["ann"].pk,
    )

    assert status == 403
    assert ReviewTask.objects.get(pk=workload["ann"].pk).status == "open"
    assert not TaskEvent.objects.exists()
    assert GoldenRecord.objects.filter(status="retired").count() == 0
    assert CrossReference.objects.count() == 6
