"""The data-quality and match model pages in a real browser: scores and the trend chart,
drill-down to the failing records, and the threshold explorer answering as thresholds move."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from matching.models import MatchModel, MatchPair, PairConstraint
from mdm.models import QualityRule, SourceRecord
from mdm.services.quality import quality_check_run
from tests.stewardship.factories import PASSWORD, record, source, user_with_role

pytestmark = pytest.mark.django_db(transaction=True)


def log_in(page: Any, username: str, path: str) -> None:
    page.goto(path)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")


@pytest.fixture
def quality_data() -> None:
    crm, erp, web = source("crm"), source("erp"), source("webshop")
    people = [
        (crm, "C-1", {"full_name": "Ann Lee", "email": "ann@example.com", "country": "GB"}),
        (crm, "C-2", {"full_name": "Bo Ray", "email": "bo@example", "country": "US"}),
        (crm, "C-3", {"full_name": "Cy Day", "country": "US"}),
        (erp, "E-1", {"full_name": "Ann Lee", "email": "ann@example.com", "country": "GB"}),
        (erp, "E-2", {"full_name": "Di Fox", "email": "di@example.com"}),
        (web, "W-1", {"full_name": "Ed Kim", "email": "ed@example.com", "country": "Atlantis"}),
        (web, "W-2", {"full_name": "Flo Nu", "email": "flo@example.com", "country": "DE"}),
    ]
    for system, key, attributes in people:
        record(system, key, **attributes)
    for name, kind, attribute, params in [
        ("email-present", "completeness", "email", {}),
        ("country-present", "completeness", "country", {}),
        ("email-valid", "validity", "email", {}),
        ("country-valid", "validity", "country", {}),
        ("email-unique", "uniqueness", "email", {"scope": "domain"}),
        ("fresh", "freshness", "", {"max_age_days": 365}),
    ]:
        QualityRule.objects.create(
            domain="customer", name=name, kind=kind, attribute=attribute, params=params
        )
    quality_check_run(domain="customer", trigger="schedule")
    SourceRecord.objects.filter(source_key="C-3").update(
        attributes={"full_name": "Cy Day", "email": "cy@example.com", "country": "US"}
    )
    quality_check_run(domain="customer", trigger="schedule")


def test_data_quality_page_scores_trend_and_drill_down(page, quality_data, screenshot):
    user_with_role("sam", "steward")
    log_in(page, "sam", "/quality/customer/")

    assert page.locator("[data-dimension=completeness] strong").inner_text() == "92.9%"
    assert page.locator("[data-dimension=validity] strong").inner_text() == "85.7%"
    assert page.locator("svg.chart.line polyline").count() == 4
    worst = page.locator("#worst-attributes tbody tr").first.inner_text()
    assert worst.split("\t") == ["email · uniqueness", "2 / 7", "71.4%"]
    screenshot(page, "quality")

    page.click("#rules a:text('email-valid')")
    page.wait_for_url("**rule=email-valid**")
    rows = page.locator("#failing tbody tr")
    assert rows.count() == 1
    assert "C-2" in rows.first.inner_text()

    page.click("#worst-sources a:text('webshop')")
    page.wait_for_url("**source=webshop**")
    assert page.locator("[data-dimension=validity] strong").inner_text() == "75.0%"


@pytest.fixture
def model_data() -> None:
    crm = source("crm")
    model = MatchModel.objects.create(
        domain="customer",
        version=3,
        parameters={},
        is_active=True,
        report={
            "prior": 0.0008,
            "levels": [
                {"comparison": "name", "level": "exact", "m_probability": 0.62,
                 "u_probability": 0.0004, "match_weight": 10.6, "warning": None},
                {"comparison": "name", "level": "Jaro-Winkler >= 0.8", "m_probability": 0.3,
                 "u_probability": 0.01, "match_weight": 4.9, "warning": None},
                {"comparison": "name", "level": "different", "m_probability": 0.08,
                 "u_probability": 0.9896, "match_weight": -3.63, "warning": None},
                {"comparison": "email", "level": "exact", "m_probability": 0.71,
                 "u_probability": 0.0001, "match_weight": 12.79, "warning": None},
                {"comparison": "email", "level": "different", "m_probability": 0.29,
                 "u_probability": 0.9999, "match_weight": -1.79, "warning": None},
            ],
            "warnings": [],
        },
    )  # fmt: skip
    now = timezone.now()
    probabilities = [0.99, 0.98, 0.96, 0.93, 0.88, 0.81, 0.75, 0.66, 0.62, 0.4, 0.2]
    labels = {0.99: "must_link", 0.93: "must_link", 0.88: "cannot_link", 0.66: "must_link"}
    for i, p in enumerate(probabilities):
        left, right = record(crm, f"L{i}"), record(crm, f"R{i}")
        MatchPair.objects.create(
            domain="customer", model=model, left=left, right=right, match_probability=p,
            match_weight=0.0, scored_at=now,
        )  # fmt: skip
        if p in labels:
            PairConstraint.objects.create(domain="customer", left=left, right=right, kind=labels[p])


def test_match_model_page_explorer_follows_the_thresholds(page, model_data, screenshot):
    user_with_role("ada", "admin")
    log_in(page, "ada", "/matching/customer/model")

    def band(name: str) -> str:
        return page.locator(f"[data-band={name}] strong").inner_text()

    assert (band("auto_merge"), band("review"), band("apart")) == ("3", "6", "2")
    assert page.locator("#levels tbody tr").count() == 5
    assert page.locator("svg.chart.histogram rect").count() == 20
    precision = page.locator("#decision-scores tr[data-when=auto_merge] td.num")
    assert precision.all_inner_texts() == ["100%", "33%"]
    screenshot(page, "match-model")

    page.fill("input[name=upper]", "0.9")
    page.wait_for_function(
        "document.querySelector('[data-band=auto_merge] strong').innerText === '4'"
    )
    assert (band("auto_merge"), band("review"), band("apart")) == ("4", "5", "2")
    assert precision.all_inner_texts() == ["100%", "67%"]
    assert "upper=0.9" in page.url
