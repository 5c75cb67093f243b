"""Exact values of the clustering metrics on small hand-made examples."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from matching.evaluation import (
    Scores,
    bcubed_scores,
    format_scores,
    format_table,
    pairs_to_clusters,
    pairwise_scores,
)


def close(value: float, expected: Fraction | float) -> bool:
    return value == pytest.approx(float(expected), abs=1e-12)


def check(
    scores: Scores,
    precision: Fraction | float,
    recall: Fraction | float,
    f1: Fraction | float,
    pairs: tuple[int, int, int] | None = None,
) -> None:
    assert close(scores.precision, precision), scores
    assert close(scores.recall, recall), scores
    assert close(scores.f1, f1), scores
    if pairs is not None:
        assert (scores.predicted_pairs, scores.true_pairs, scores.true_positive_pairs) == pairs


# --------------------------------------------------------------------------- pairwise


def test_perfect_clustering_with_other_cluster_ids() -> None:
    true = {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3}
    predicted = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "z"}
    check(pairwise_scores(predicted, true), 1, 1, 1, (2, 2, 2))
    check(bcubed_scores(predicted, true), 1, 1, 1, (2, 2, 2))


def test_all_split() -> None:
    true = {"a": 1, "b": 1, "c": 1, "d": 2}
    predicted = {record: record for record in true}
    # Nothing predicted: precision 1.0 by convention, recall 0.
    check(pairwise_scores(predicted, true), 1, 0, 0, (0, 3, 0))
    # B-cubed: every record's predicted cluster is pure; a, b, c find 1/3 of theirs.
    check(bcubed_scores(predicted, true), 1, Fraction(1, 2), Fraction(2, 3), (0, 3, 0))


def test_all_merged() -> None:
    true = {"a": 1, "b": 1, "c": 2, "d": 2, "e": 3}
    predicted = dict.fromkeys(true, 0)
    # 10 predicted pairs, 2 true, both found.
    check(pairwise_scores(predicted, true), Fraction(1, 5), 1, Fraction(1, 3), (10, 2, 2))
    # Precision per record: 2/5 for a-d, 1/5 for e -> 9/25.
    check(bcubed_scores(predicted, true), Fraction(9, 25), 1, Fraction(9, 17), (10, 2, 2))


def test_one_wrong_merge() -> None:
    true = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 2, "f": 3}
    predicted = {"a": 1, "b": 1, "c": 1, "f": 1, "d": 2, "e": 2}
    check(pairwise_scores(predicted, true), Fraction(4, 7), 1, Fraction(8, 11), (7, 4, 4))
    # Precision per record: 3/4 for a, b, c; 1 for d, e; 1/4 for f -> 3/4.
    check(bcubed_scores(predicted, true), Fraction(3, 4), 1, Fraction(6, 7), (7, 4, 4))


def test_one_missed_link() -> None:
    true = {"a": 1, "b": 1, "c": 1}
    predicted = {"a": 1, "b": 1, "c": 2}
    check(pairwise_scores(predicted, true), 1, Fraction(1, 3), Fraction(1, 2), (1, 3, 1))
    # Recall per record: 2/3 for a and b, 1/3 for c -> 5/9.
    check(bcubed_scores(predicted, true), 1, Fraction(5, 9), Fraction(5, 7), (1, 3, 1))


def test_records_missing_from_one_side_are_singletons() -> None:
    true = {"a": 1, "b": 1, "c": 2}  # d is missing: a singleton in the truth
    predicted = {"a": "x", "b": "x", "d": "y"}  # c is missing: a singleton in the prediction
    check(pairwise_scores(predicted, true), 1, 1, 1, (1, 1, 1))
    check(bcubed_scores(predicted, true), 1, 1, 1, (1, 1, 1))


def test_missing_record_is_not_confused_with_a_cluster_named_like_it() -> None:
    # "b" is a cluster id on one side and a (missing) record on the other: no pair.
    true = {"a": "b"}
    predicted = {"b": "b"}
    check(pairwise_scores(predicted, true), 1, 1, 1, (0, 0, 0))
    # c is only predicted, in the same cluster as a: a predicted pair that is not true.
    check(pairwise_scores({"a": 1, "c": 1}, {"a": 1}), 0, 1, 0, (1, 0, 0))


def test_bcubed_textbook_example() -> None:
    # Bagga and Baldwin (1998), figure 3: two true clusters merged by the system.
    true = {**dict.fromkeys(range(1, 6), "A"), 6: "B", 7: "B", **dict.fromkeys(range(8, 13), "C")}
    predicted = {**dict.fromkeys(range(1, 6), 1), **dict.fromkeys(range(6, 13), 2)}
    # Precision: 1 for 1-5, 2/7 for 6-7, 5/7 for 8-12 -> (5 + 4/7 + 25/7) / 12 = 16/21.
    check(bcubed_scores(predicted, true), Fraction(16, 21), 1, Fraction(32, 37), (31, 21, 21))
    check(pairwise_scores(predicted, true), Fraction(21, 31), 1, Fraction(21, 26), (31, 21, 21))


# --------------------------------------------------------------------------- zero denominators


def test_no_records_at_all() -> None:
    check(pairwise_scores({}, {}), 1, 1, 1, (0, 0, 0))
    check(bcubed_scores({}, {}), 1, 1, 1, (0, 0, 0))


def test_no_true_pairs_and_none_predicted() -> None:
    true = {"a": 1, "b": 2, "c": 3}
    predicted = {"a": 1, "b": 2, "c": 3}
    check(pairwise_scores(predicted, true), 1, 1, 1, (0, 0, 0))
    check(bcubed_scores(predicted, true), 1, 1, 1, (0, 0, 0))


def test_no_true_pairs_but_some_predicted() -> None:
    true = {"a": 1, "b": 2, "c": 3}
    predicted = {"a": 1, "b": 1, "c": 3}
    # Precision 0 (one pair predicted, none true), recall 1.0 (nothing to find), F1 0.
    check(pairwise_scores(predicted, true), 0, 1, 0, (1, 0, 0))
    # B-cubed: a and b each share their predicted cluster with a stranger.
    check(bcubed_scores(predicted, true), Fraction(2, 3), 1, Fraction(4, 5), (1, 0, 0))


def test_true_pairs_but_none_predicted() -> None:
    true = {"a": 1, "b": 1}
    predicted = {"a": 1, "b": 2}
    check(pairwise_scores(predicted, true), 1, 0, 0, (0, 1, 0))
    check(bcubed_scores(predicted, true), 1, Fraction(1, 2), Fraction(2, 3), (0, 1, 0))


def test_large_cluster_is_counted_not_enumerated() -> None:
    n = 200_000
    true = dict.fromkeys(range(n), 0)
    predicted = {record: record % 2 for record in range(n)}
    half = n // 2
    expected_tp = 2 * (half * (half - 1) // 2)
    expected_true = n * (n - 1) // 2
    scores = pairwise_scores(predicted, true)
    assert (scores.predicted_pairs, scores.true_pairs, scores.true_positive_pairs) == (
        expected_tp,
        expected_true,
        expected_tp,
    )
    assert close(scores.precision, 1)
    assert close(scores.recall, Fraction(expected_tp, expected_true))


# --------------------------------------------------------------------------- clusters from pairs


def test_pairs_to_clusters_connected_components() -> None:
    clusters = pairs_to_clusters([1, 2, 3, 4, 5, 6], [(2, 3), (3, 1), (5, 6)])
    assert clusters == {1: 1, 2: 1, 3: 1, 4: 4, 5: 5, 6: 5}


def test_pairs_to_clusters_does_not_depend_on_pair_order() -> None:
    ids = ["a", "b", "c", "d"]
    pairs = [("d", "c"), ("b", "a"), ("c", "b")]
    expected = dict.fromkeys(ids, "a")
    assert pairs_to_clusters(ids, pairs) == expected
    assert pairs_to_clusters(ids, list(reversed(pairs))) == expected


def test_pairs_to_clusters_includes_ids_seen_only_in_pairs() -> None:
    assert pairs_to_clusters([1], [(7, 1), (8, 9)]) == {1: 1, 7: 1, 8: 8, 9: 8}
    assert pairs_to_clusters([], []) == {}


def test_pairs_to_clusters_feeds_the_scores() -> None:
    predicted = pairs_to_clusters(range(4), [(0, 1), (2, 3)])
    true = {0: "p", 1: "p", 2: "q", 3: "r"}
    check(pairwise_scores(predicted, true), Fraction(1, 2), 1, Fraction(2, 3), (2, 1, 1))


# --------------------------------------------------------------------------- formatting


def test_scores_are_frozen_and_formatted() -> None:
    scores = Scores(0.5, 0.25, 1 / 3, 1_000, 2_000, 500)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores.precision = 1.0  # type: ignore[misc]
    expected = "P 0.5000  R 0.2500  F1 0.3333  (pairs: 1,000 predicted, 2,000 true, 500 correct)"
    assert format_scores(scores) == expected
    assert scores.format(2).startswith("P 0.50  R 0.25  F1 0.33")


def test_format_table_aligns_columns() -> None:
    table = format_table(["data set", "F1", "pairs"], [["febrl4", 0.99912, 5000], ["x", None, 7]])
    assert table.splitlines() == [
        "data set  F1      pairs",
        "--------  ------  -----",
        "febrl4    0.9991  5,000",
        "x         -           7",
    ]
    right = format_table(["a", "bb"], [["x", "1.5"]], align="lr")
    assert right.splitlines() == ["a   bb", "-  ---", "x  1.5"]
    with pytest.raises(ValueError, match="align"):
        format_table(["a"], [], align="x")
