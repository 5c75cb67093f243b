"""The data-quality page: scores per dimension, trend chart, worst lists, drill-down, roles."""

from __future__ import annotations

import pytest
from django.test import Client

from mdm.models import QualityRule, SourceRecord
from mdm.selectors import quality_overview
from mdm.services.quality import quality_check_run
from tests.stewardship.factories import PASSWORD, record, source, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def checked():
    crm, erp = source("crm"), source("erp")
    a = record(crm, "A", email="a@example.com", phone="+442071234567")
    record(crm, "B", email="not-an-email")
    record(erp, "C", email="c@example.com")
    record(erp, "D")
    for name, kind, attribute in [
        ("email-present", "completeness", "email"),
        ("email-valid", "validity", "email"),
        ("phone-present", "completeness", "phone"),
    ]:
        QualityRule.objects.create(
            domain="customer", name=name, kind=kind, attribute=attribute, opens_tasks=False
        )
    quality_check_run(domain="customer", trigger="schedule")
    SourceRecord.objects.filter(source_key="D").update(attributes={"email": "d@example.com"})
    quality_check_run(domain="customer", trigger="schedule")
    return a


def test_overview_scores_dimensions_attributes_sources_and_trend(checked):
    overview = quality_overview(domain="customer")

    dims = {f.label: (f.checked, f.failed) for f in overview.dimensions}
    # completeness: email 4 checked, 0 failing now; phone 4 checked, 3 failing
    assert dims["completeness"] == (8, 3)
    assert dims["validity"] == (4, 1)
    assert dims["uniqueness"] == (0, 0)
    assert [(f.label, f.failed, f.checked) for f in overview.worst_attributes] == [
        ("phone · completeness", 3, 4),
        ("email · validity", 1, 4),
        ("email · completeness", 0, 4),
    ]
    assert [(f.label, f.failed, f.checked) for f in overview.worst_sources] == [
        ("crm", 2, 6),
        ("erp", 2, 6),
    ]
    # first run: completeness 4 failing of 8; second run: 3 of 8
    assert [point["completeness"] for _, point in overview.trend] == [0.5, 0.625]


def test_overview_of_one_source(checked):
    overview = quality_overview(domain="customer", source_code="erp")

    dims = {f.label: (f.checked, f.failed) for f in overview.dimensions}
    assert dims["completeness"] == (4, 2)
    assert [f.label for f in overview.worst_sources] == ["erp"]


def login(role: str) -> Client:
    user_with_role(role, role)
    client = Client()
    client.login(username=role, password=PASSWORD)
    return client


def test_the_page_shows_scores_chart_and_failing_records(checked):
    response = login("steward").get("/quality/customer/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-dimension="completeness"><strong>62.5%</strong>' in html
    assert 'class="chart line"' in html and 'data-series="completeness"' in html
    assert "not-an-email" in html  # the validity failure's message, for a steward
    assert html.count("<tr data-record=") == 4  # B invalid; B, C, D without phone


def test_the_drill_down_filters_by_rule_and_source(checked):
    response = login("steward").get("/quality/customer/?source=erp&rule=phone-present")

    html = response.content.decode()
    assert html.count("<tr data-record=") == 2
    assert "email-valid</td>" not in html


def test_viewers_see_pii_failure_messages_masked(checked):
    html = login("viewer").get("/quality/customer/").content.decode()

    assert "not-an-email" not in html
    assert "(masked)" in html


@pytest.mark.parametrize(("path", "status"), [("/quality/customer/", 403), ("/quality/nope/", 404)])
def test_a_user_without_a_role_is_refused_and_an_unknown_domain_is_404(path, status):
    user_with_role("nobody", None)
    client = Client()
    client.login(username="nobody", password=PASSWORD)
    if status == 404:
        user_with_role("v", "viewer")
        client.login(username="v", password=PASSWORD)

    assert client.get(path).status_code == status
