"""Accuracy of a clustering against the truth: pairwise and B-cubed precision, recall and F1.

Pure Python (no Splink, DuckDB or Django import) so that tests, benchmarks and the hub's own
reports can share it.

A *clustering* is a mapping ``record id -> cluster id``.  Two records are *in the same
cluster* when they map to equal cluster ids.  The records evaluated are the union of the
keys of the predicted and the true clustering; a record that is missing from one side is a
singleton on that side (it is in a cluster of its own, equal to no other cluster id).

Everything is computed from the contingency table ``n[p, t]`` = number of records in
predicted cluster ``p`` and true cluster ``t`` (with row sums ``a[p]`` and column sums
``b[t]``), never by enumerating pairs, so a cluster of 100,000 records costs no more than a
singleton.

Conventions when a denominator is zero (documented here once, tested in
tests/matching/test_evaluation.py):

* precision is 1.0 when nothing is predicted (no predicted pair / no record): nothing
  predicted is nothing predicted wrongly;
* recall is 1.0 when there is nothing to find (no true pair / no record);
* F1 is the harmonic mean of precision and recall, 0.0 when both are 0.0.

So "pairs predicted but no true pairs" gives precision 0.0, recall 1.0, F1 0.0; "true pairs
but nothing predicted" gives precision 1.0, recall 0.0, F1 0.0; both empty gives 1.0
everywhere.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "Id",
    "Scores",
    "bcubed_scores",
    "format_scores",
    "format_table",
    "pairs_to_clusters",
    "pairwise_scores",
]

Id = TypeVar("Id", bound=Hashable)  # a record id


@dataclass(frozen=True)
class Scores:
    """Precision, recall and F1, with the pair counts they were measured on.

    ``predicted_pairs`` is the number of record pairs in the same predicted cluster,
    ``true_pairs`` the number in the same true cluster and ``true_positive_pairs`` the number
    in both.  The counts are the pairwise ones whichever measure filled precision and recall
    (for B-cubed they describe the same clusterings, for context).
    """

    precision: float
    recall: float
    f1: float
    predicted_pairs: int
    true_pairs: int
    true_positive_pairs: int

    def format(self, digits: int = 4) -> str:
        """One line: "P 0.9990  R 0.9980  F1 0.9985  (pairs: 4,990 predicted, ...)"."""
        return format_scores(self, digits)


@dataclass(frozen=True, slots=True)
class _Singleton:
    """The cluster id of a record missing from one side: equal to no caller's cluster id."""

    record: Hashable


def _pairs(n: int) -> int:
    """C(n, 2): the number of unordered pairs among ``n`` records."""
    return n * (n - 1) // 2


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 1.0 when the denominator is 0 (nothing to get wrong)."""
    return numerator / denominator if denominator else 1.0


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0


def _contingency(
    predicted: Mapping[Id, Hashable], true: Mapping[Id, Hashable]
) -> tuple[Counter[tuple[Hashable, Hashable]], Counter[Hashable], Counter[Hashable]]:
    """The cells ``n[p, t]``, the predicted cluster sizes ``a[p]`` and true sizes ``b[t]``."""
    cells: Counter[tuple[Hashable, Hashable]] = Counter()
    for record, cluster in predicted.items():
        truth = true[record] if record in true else _Singleton(record)
        cells[(cluster, truth)] += 1
    for record, truth in true.items():
        if record not in predicted:
            cells[(_Singleton(record), truth)] += 1
    predicted_sizes: Counter[Hashable] = Counter()
    true_sizes: Counter[Hashable] = Counter()
    for (cluster, truth), count in cells.items():
        predicted_sizes[cluster] += count
        true_sizes[truth] += count
    return cells, predicted_sizes, true_sizes


def _pair_counts(
    cells: Counter[tuple[Hashable, Hashable]],
    predicted_sizes: Counter[Hashable],
    true_sizes: Counter[Hashable],
) -> tuple[int, int, int]:
    return (
        sum(_pairs(n) for n in predicted_sizes.values()),
        sum(_pairs(n) for n in true_sizes.values()),
        sum(_pairs(n) for n in cells.values()),
    )


def pairwise_scores(
    predicted_clusters: Mapping[Id, Hashable],
    true_clusters: Mapping[Id, Hashable],
) -> Scores:
    """Pairwise precision, recall and F1 of a clustering.

    Over all unordered pairs of distinct records: a pair is *predicted* when both records
    are in the same predicted cluster and *true* when both are in the same true cluster.

    * precision = |predicted and true pairs| / |predicted pairs|
    * recall = |predicted and true pairs| / |true pairs|
    * F1 = 2 * precision * recall / (precision + recall)

    Counted as TP = sum over cells C(n[p, t], 2), predicted pairs = sum C(a[p], 2), true
    pairs = sum C(b[t], 2).  Zero denominators: see the module's docstring.
    """
    cells, predicted_sizes, true_sizes = _contingency(predicted_clusters, true_clusters)
    predicted_pairs, true_pairs, true_positives = _pair_counts(cells, predicted_sizes, true_sizes)
    precision = _ratio(true_positives, predicted_pairs)
    recall = _ratio(true_positives, true_pairs)
    return Scores(
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        predicted_pairs=predicted_pairs,
        true_pairs=true_pairs,
        true_positive_pairs=true_positives,
    )


def bcubed_scores(
    predicted_clusters: Mapping[Id, Hashable],
    true_clusters: Mapping[Id, Hashable],
) -> Scores:
    """B-cubed precision, recall and F1 of a clustering (Bagga and Baldwin, 1998).

    For each record e, with P(e) its predicted cluster and T(e) its true cluster (both
    including e itself):

    * precision(e) = |P(e) & T(e)| / |P(e)|,  recall(e) = |P(e) & T(e)| / |T(e)|;
    * B-cubed precision and recall are their means over all N records;
    * F1 is their harmonic mean (Amigo et al., 2009).

    Counted as precision = (1/N) sum over cells n[p, t]^2 / a[p] and recall = (1/N) sum
    n[p, t]^2 / b[t].  With no records at all both are 1.0.  Singletons count: a record
    correctly left alone scores 1.0 on both.  The pair counts in the result are the
    pairwise ones (see :class:`Scores`).
    """
    cells, predicted_sizes, true_sizes = _contingency(predicted_clusters, true_clusters)
    records = sum(predicted_sizes.values())
    precision_sum = math.fsum(n * n / predicted_sizes[p] for (p, _), n in cells.items())
    recall_sum = math.fsum(n * n / true_sizes[t] for (_, t), n in cells.items())
    precision = _ratio(precision_sum, records)
    recall = _ratio(recall_sum, records)
    predicted_pairs, true_pairs, true_positives = _pair_counts(cells, predicted_sizes, true_sizes)
    return Scores(
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        predicted_pairs=predicted_pairs,
        true_pairs=true_pairs,
        true_positive_pairs=true_positives,
    )


def pairs_to_clusters(ids: Iterable[Id], pairs: Iterable[tuple[Id, Id]]) -> dict[Id, Id]:
    """Connected components of the graph with ``ids`` as nodes and ``pairs`` as edges.

    Returns ``record id -> cluster id``, where a cluster's id is the id of its member that
    comes first (``ids`` in order, then ids seen only in ``pairs`` in order of appearance),
    so the result does not depend on the order of the pairs.  Ids that appear only in
    ``pairs`` are included; ids without a pair are singletons (their own cluster id).
    Union-find with path halving and union by first appearance: near-linear.
    """
    parent: dict[Id, Id] = {}
    rank: dict[Id, int] = {}  # order of first appearance; lower is the root

    def add(node: Id) -> None:
        if node not in parent:
            parent[node] = node
            rank[node] = len(rank)

    def find(node: Id) -> Id:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for node in ids:
        add(node)
    for left, right in pairs:
        add(left)
        add(right)
        root_left, root_right = find(left), find(right)
        if root_left == root_right:
            continue
        if rank[root_right] < rank[root_left]:
            root_left, root_right = root_right, root_left
        parent[root_right] = root_left
    return {node: find(node) for node in parent}


def format_scores(scores: Scores, digits: int = 4) -> str:
    """One line: precision, recall, F1 and the pair counts they were measured on."""
    return (
        f"P {scores.precision:.{digits}f}  R {scores.recall:.{digits}f}  "
        f"F1 {scores.f1:.{digits}f}  (pairs: {scores.predicted_pairs:,} predicted, "
        f"{scores.true_pairs:,} true, {scores.true_positive_pairs:,} correct)"
    )


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None
) -> str:
    """A plain-text table: columns padded to their widest cell.

    Floats are shown with 4 decimals and ints with thousands separators; ``None`` as "-".
    ``align`` gives each column's alignment ("l" or "r", e.g. "lrr"); without it numbers
    are right-aligned and everything else left-aligned.
    """
    if align is not None and (len(align) != len(headers) or set(align) - {"l", "r"}):
        raise ValueError(f"align must be one 'l' or 'r' per column, got {align!r}")

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return str(value)
        if isinstance(value, float):
            return f"{value:.4f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    body = [
        [
            (cell(value), align[index] == "r" if align else isinstance(value, int | float))
            for index, value in enumerate(row)
        ]
        for row in rows
    ]
    widths = [len(header) for header in headers]
    for row in body:
        for index, (text, _) in enumerate(row):
            widths[index] = max(widths[index], len(text))

    def line(cells: Sequence[tuple[str, bool]]) -> str:
        return "  ".join(
            text.rjust(width) if numeric else text.ljust(width)
            for (text, numeric), width in zip(cells, widths, strict=True)
        ).rstrip()

    header_right = [align[index] == "r" if align else False for index in range(len(headers))]
    out = [line(list(zip(headers, header_right, strict=True)))]
    out.append("  ".join("-" * width for width in widths))
    out.extend(line(row) for row in body)
    return "\n".join(out)
