"""Privacy in a real browser: a viewer sees personal data masked on the golden record and
pair pages and in the queue, a steward sees it clear, and an admin erases a person with the
golden page's button."""

from __future__ import annotations

from typing import Any

import pytest

from mdm.models import ErasureRequest, GoldenRecord
from tests.stewardship.factories import (
    PASSWORD,
    golden_of,
    pair_task,
    record,
    source,
    user_with_role,
)

pytestmark = pytest.mark.django_db(transaction=True)


def log_in(page: Any, username: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


@pytest.fixture
def person() -> dict[str, Any]:
    from mdm.services.golden import golden_records_apply_clusters

    crm, erp = source("crm"), source("erp")
    left = record(
        crm, "C-1", given_name="Jane", family_name="Roe", email="jane.roe@example.com",
        phone="+12025554567", national_id="536-22-1234", country="US",
    )  # fmt: skip
    right = record(erp, "E-1", given_name="Jane", family_name="Roe", email="jane@example.org")
    golden_records_apply_clusters(domain="customer", clusters={left.pk: 1, right.pk: 2})
    from mdm.services.golden import golden_records_rebuild

    golden_records_rebuild(domain="customer", golden_ids=[golden_of(left), golden_of(right)])
    return {"golden": golden_of(left), "task": pair_task(left, right)}


@pytest.mark.parametrize("role", ["viewer", "steward"])
def test_golden_and_pair_pages_mask_personal_data_for_viewers(page, person, role):
    user_with_role(role, role)
    log_in(page, role)

    page.goto(f"/steward/golden/{person['golden']}/")
    golden_text = page.locator("main").inner_text()
    page.goto(f"/steward/tasks/{person['task'].pk}/")
    pair_text = page.locator("main").inner_text()
    page.goto("/steward/queue/matches/")
    queue_text = page.locator("main").inner_text()

    clear = ["jane.roe@example.com", "+12025554567", "536-22-1234", "Jane"]
    if role == "viewer":
        for value in clear:
            assert value not in golden_text and value not in pair_text
        assert "j***@example.com" in golden_text and "*******4567" in golden_text
        assert "j***@example.com" in pair_text
        assert "Jane" not in queue_text and "J***" in queue_text
    else:
        assert "jane.roe@example.com" in golden_text and "536-22-1234" in golden_text
        assert "jane.roe@example.com" in pair_text


def test_an_admin_erases_a_person_from_the_golden_page(page, person):
    user_with_role("ada", "admin")
    log_in(page, "ada")
    page.goto(f"/steward/golden/{person['golden']}/")
    page.on("dialog", lambda dialog: dialog.accept())

    page.fill("#erase-form input[name=reference]", "DSR-7")
    page.click("#erase")
    page.wait_for_load_state()

    assert f"Erased golden record {person['golden']}" in page.locator("body").inner_text()
    assert ErasureRequest.objects.get().reference == "DSR-7"
    golden = GoldenRecord.objects.get(pk=person["golden"])
    assert (golden.status, golden.attributes) == ("retired", {})
    assert "jane.roe@example.com" not in page.content()
    assert page.locator("#erase").count() == 0  # a retired record has no erase button
