"""Reads for the match model page: the model's parameters, the scored pairs' distribution
and the threshold explorer, with the steward decisions as labels."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from matching.models import MatchModel, MatchPair, PairConstraint

BINS = 20


@dataclass(frozen=True)
class ThresholdFigures:
    """What a pair of thresholds would do to the domain's scored pairs, and how well the
    steward decisions say it would do.

    ``precision``/``recall`` treat "auto-merge" (at or above ``upper``) as a match;
    ``precision_with_review``/``recall_with_review`` treat "auto-merge or review" (at or above
    ``lower``) as one.  A must-link between records never scored counts as missed.  None
    where nothing is there to divide by."""

    lower: float
    upper: float
    auto_merge: int
    review: int
    apart: int
    labelled_same: int
    labelled_different: int
    precision: float | None
    recall: float | None
    precision_with_review: float | None
    recall_with_review: float | None

    @property
    def total(self) -> int:
        return self.auto_merge + self.review + self.apart

    @property
    def labelled(self) -> int:
        return self.labelled_same + self.labelled_different


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def decision_labels(*, domain: str) -> list[tuple[bool, float]]:
    """Each steward-decided pair of the domain as (same entity?, its stored match probability,
    0 when the pair was never scored)."""
    constraints = list(
        PairConstraint.objects.filter(domain=domain).values_list("left_id", "right_id", "kind")
    )
    lefts = {left for left, _, _ in constraints}
    scored = {
        (left, right): p
        for left, right, p in MatchPair.objects.filter(
            domain=domain, left_id__in=lefts
        ).values_list("left_id", "right_id", "match_probability")
    }
    return [
        (kind == PairConstraint.Kind.MUST_LINK, scored.get((left, right), 0.0))
        for left, right, kind in constraints
    ]


def threshold_explore(*, domain: str, lower: float, upper: float) -> ThresholdFigures:
    """Counts of the domain's scored pairs per band, and the precision and recall implied by
    the steward decisions, for ``lower`` <= ``upper``."""
    counts = MatchPair.objects.filter(domain=domain).aggregate(
        auto_merge=Count("id", filter=Q(match_probability__gte=upper)),
        review=Count("id", filter=Q(match_probability__gte=lower, match_probability__lt=upper)),
        apart=Count("id", filter=Q(match_probability__lt=lower)),
    )
    labels = decision_labels(domain=domain)
    same = sum(1 for is_same, _ in labels if is_same)

    def scores(threshold: float) -> tuple[float | None, float | None]:
        true_pos = sum(1 for is_same, p in labels if is_same and p >= threshold)
        false_pos = sum(1 for is_same, p in labels if not is_same and p >= threshold)
        return _ratio(true_pos, true_pos + false_pos), _ratio(true_pos, same)

    precision, recall = scores(upper)
    precision_review, recall_review = scores(lower)
    return ThresholdFigures(
        lower=lower,
        upper=upper,
        auto_merge=counts["auto_merge"],
        review=counts["review"],
        apart=counts["apart"],
        labelled_same=same,
        labelled_different=len(labels) - same,
        precision=precision,
        recall=recall,
        precision_with_review=precision_review,
        recall_with_review=recall_review,
    )


def probability_histogram(*, domain: str, bins: int = BINS) -> tuple[list[int], list[float]]:
    """How many scored pairs fall in each of ``bins`` equal bins of probability 0-1."""
    counts = [0] * bins
    for p in MatchPair.objects.filter(domain=domain).values_list("match_probability", flat=True):
        counts[min(int(p * bins), bins - 1)] += 1
    return counts, [i / bins for i in range(bins + 1)]


def match_model_for_page(*, domain: str, version: int | None = None) -> MatchModel | None:
    """The requested version of the domain's model, else the active one, else the newest."""
    models = MatchModel.objects.filter(domain=domain)
    if version is not None:
        return models.filter(version=version).first()
    return models.filter(is_active=True).first() or models.order_by("-version").first()
