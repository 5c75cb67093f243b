"""The match model page: threshold explorer figures against a hand-computed case, the
histogram, the m/u table, and who may read it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from matching.models import MatchModel, MatchPair, PairConstraint
from matching.selectors import probability_histogram, threshold_explore
from tests.stewardship.factories import PASSWORD, record, source, user_with_role

pytestmark = pytest.mark.django_db

REPORT = {
    "prior": 0.0012,
    "levels": [
        {"comparison": "email", "level": "exact", "m_probability": 0.8,
         "u_probability": 0.0001, "match_weight": 12.97, "warning": None},
        {"comparison": "email", "level": "different", "m_probability": 0.2,
         "u_probability": 0.9999, "match_weight": -2.32, "warning": "m looks high"},
    ],
    "warnings": ["email: the m probability of 'different' is high"],
}  # fmt: skip

# probability of each scored pair, and the steward's label (None: undecided)
PAIRS = [
    (0.99, "must_link"),
    (0.97, "cannot_link"),
    (0.90, "must_link"),
    (0.80, None),
    (0.70, None),
    (0.50, "must_link"),
    (0.30, "cannot_link"),
]


@pytest.fixture
def scored():
    crm = source("crm")
    model = MatchModel.objects.create(
        domain="customer", version=1, parameters={}, report=REPORT, is_active=True
    )
    now = timezone.now()
    for i, (p, label) in enumerate(PAIRS):
        left, right = record(crm, f"L{i}"), record(crm, f"R{i}")
        MatchPair.objects.create(
            domain="customer", model=model, left=left, right=right, match_probability=p,
            match_weight=0.0, scored_at=now,
        )  # fmt: skip
        if label:
            PairConstraint.objects.create(domain="customer", left=left, right=right, kind=label)
    # A must-link between records the model never scored: a miss at every threshold.
    left, right = record(crm, "X1"), record(crm, "X2")
    PairConstraint.objects.create(domain="customer", left=left, right=right, kind="must_link")
    return model


def test_threshold_explorer_matches_the_hand_computed_figures(scored):
    figures = threshold_explore(domain="customer", lower=0.6, upper=0.95)

    # auto-merge: 0.99, 0.97; review: 0.9, 0.8, 0.7; apart: 0.5, 0.3
    assert (figures.auto_merge, figures.review, figures.apart) == (2, 3, 2)
    assert (figures.labelled_same, figures.labelled_different) == (4, 2)
    # at 0.95: TP {0.99}, FP {0.97}; 4 must-links in all
    assert (figures.precision, figures.recall) == (0.5, 0.25)
    # at 0.6: TP {0.99, 0.9}, FP {0.97}
    assert figures.precision_with_review == pytest.approx(2 / 3)
    assert figures.recall_with_review == 0.5


def test_moving_the_thresholds_moves_the_figures(scored):
    figures = threshold_explore(domain="customer", lower=0.4, upper=0.98)

    assert (figures.auto_merge, figures.review, figures.apart) == (1, 5, 1)
    assert (figures.precision, figures.recall) == (1.0, 0.25)
    assert (figures.precision_with_review, figures.recall_with_review) == (0.75, 0.75)


def test_without_decisions_there_is_no_precision_or_recall(scored):
    PairConstraint.objects.all().delete()

    figures = threshold_explore(domain="customer", lower=0.6, upper=0.95)

    assert figures.labelled == 0
    assert (figures.precision, figures.recall) == (None, None)


def test_histogram_bins_the_stored_probabilities(scored):
    counts, edges = probability_histogram(domain="customer", bins=10)

    assert counts == [0, 0, 0, 1, 0, 1, 0, 1, 1, 3]
    assert edges[0] == 0.0 and edges[-1] == 1.0 and len(edges) == 11


def test_the_page_shows_levels_distribution_and_explorer(scored):
    user_with_role("vera", "viewer")
    client = Client()
    client.login(username="vera", password=PASSWORD)

    response = client.get("/matching/customer/model?lower=0.6&upper=0.95")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<div class="tile" data-band="auto_merge"><strong>2</strong>' in html
    assert '<div class="tile" data-band="review"><strong>3</strong>' in html
    assert "12.97" in html and "0.0001" in html and "m looks high" in html
    assert 'class="chart histogram"' in html and 'data-mark="upper"' in html
    assert '<td class="num">50%</td><td class="num">25%</td>' in html


@pytest.mark.parametrize(("role", "status"), [(None, 403), ("viewer", 200), ("steward", 200)])
def test_who_may_read_the_page(scored, role, status):
    user_with_role("u", role)
    client = Client()
    client.login(username="u", password=PASSWORD)

    assert client.get("/matching/customer/model").status_code == status


def test_anonymous_is_sent_to_log_in():
    response = Client().get("/matching/customer/model")

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
