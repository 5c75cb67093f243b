"""The relationships of a golden record in a real browser: the hierarchy tree, a refused
cycle, a re-parent and an end, all through the htmx section of the golden record page."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from mdm.models import CrossReference, GoldenRelationship, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from tests.stewardship.factories import PASSWORD, user_with_role

pytestmark = pytest.mark.django_db(transaction=True)


def log_in(page: Any, username: str, then: str) -> None:
    page.goto(then)
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{then}")


@pytest.fixture
def group(api: APIClient) -> dict[str, int]:
    """Holding <- Acme <- (Acme North, Acme South); Ann works for Acme North (crm keys)."""

    def org(key: str, name: str, parent: str | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "source_key": key,
            "party_type": "organisation",
            "organisation_name": name,
        }
        if parent:
            row["references"] = {"child_of": parent}
        return row

    rows = [
        org("H", "Holding plc"),
        org("A", "Acme Ltd", "H"),
        org("AN", "Acme North", "A"),
        org("AS", "Acme South", "A"),
        {"source_key": "P", "full_name": "Ann Lee", "references": {"works_for": "AN"}},
    ]
    assert api.post("/api/v1/customer/records", {"records": rows}, format="json").status_code in (
        200,
        201,
    )
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    golden_records_apply_clusters(domain="customer", clusters={i: i for i in ids.values()})
    return dict(
        (key, CrossReference.objects.get(record_id=rid).golden_id) for key, rid in ids.items()
    )


def tree_ids(page: Any) -> list[str]:
    return page.locator(
        "#relationships .hierarchy[data-type=child_of] li[data-golden]"
    ).evaluate_all("els => els.map(e => e.dataset.golden)")


def test_the_tree_and_steward_edits(page: Any, group: dict[str, int], screenshot: Any) -> None:
    user_with_role("stella", "steward")
    log_in(page, "stella", f"/steward/golden/{group['A']}/")

    # Acme's place: under Holding, above North and South, drawn as nested lists.
    section = page.locator("#relationships")
    assert section.locator("li.current strong").inner_text() == "Acme Ltd"
    assert tree_ids(page) == [str(group[k]) for k in ("H", "A", "AN", "AS")]
    holding = section.locator(f"li.ancestor[data-golden='{group['H']}']")
    assert holding.locator(f"li[data-golden='{group['AN']}']").count() == 1  # nested below
    rows = section.locator("#relationship-list tbody tr[data-relationship]")
    assert rows.count() == 3  # child of Holding, parent of North and South
    screenshot(page, "relationships")

    # Holding under Acme North would be a cycle: refused, with the reason, nothing written.
    page.goto(f"/steward/golden/{group['H']}/")
    form = page.locator("#relationship-add")
    form.locator("select[name=type]").select_option("child_of")
    form.locator("input[name=to_golden_id]").fill(str(group["AN"]))
    form.locator("button[type=submit]").click()
    error = page.locator("#relationships .msg.error")
    error.wait_for()
    assert "would make a cycle" in error.inner_text()
    assert not GoldenRelationship.objects.filter(from_golden_id=group["H"]).exists()

    # Re-parent Acme South directly under Holding: the tree on Holding's page follows.
    south = GoldenRelationship.objects.get(from_golden_id=group["AS"], status="active")
    page.goto(f"/steward/golden/{group['AS']}/")
    row = page.locator(f"#relationship-list tr[data-relationship='{south.pk}']")
    row.locator("input[name=to_golden_id]").fill(str(group["H"]))
    row.locator("button.reparent").click()
    page.locator("#relationships .msg.success").wait_for()
    assert tree_ids(page) == [str(group["H"]), str(group["AS"])]
    south.refresh_from_db()
    assert south.status == "ended"

    # End Ann's employment from her page.
    job = GoldenRelationship.objects.get(from_golden_id=group["P"], rel_type="works_for")
    page.goto(f"/steward/golden/{group['P']}/")
    row = page.locator(f"#relationship-list tr[data-relationship='{job.pk}']")
    row.locator("input[name=reason]").fill("left the company")
    row.locator("button.end-relationship").click()
    page.locator(
        f"#relationship-list tr[data-relationship='{job.pk}'][data-status=ended]"
    ).wait_for()
    job.refresh_from_db()
    assert (job.status, job.provenance["reason"]) == ("ended", "left the company")


def test_a_viewer_sees_the_tree_but_no_edit_forms(page: Any, group: dict[str, int]) -> None:
    user_with_role("vic", "viewer")
    log_in(page, "vic", f"/steward/golden/{group['AN']}/")
    assert tree_ids(page) == [str(group[k]) for k in ("H", "A", "AN")]
    assert page.locator("#relationship-add").count() == 0
    assert page.locator("#relationships button.end-relationship").count() == 0
    # Ann's name is personal data: a viewer sees it masked in the list of Acme North's links.
    other = page.locator("#relationship-list tr[data-direction=incoming] td").nth(1).inner_text()
    assert "Ann Lee" not in other
