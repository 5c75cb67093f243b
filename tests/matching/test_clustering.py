import random

import pytest

from matching.clustering import ClusterResult, Edge, cluster, cluster_columns


def groups(result: ClusterResult) -> list[list]:
    out: dict = {}
    for item, key in result.clusters.items():
        out.setdefault(key, set()).add(item)
    return sorted(sorted(g) for g in out.values())


def test_components_above_the_threshold_and_singletons():
    result = cluster(
        [1, 2, 3, 4, 5],
        [Edge(1, 2, 0.99), Edge(2, 3, 0.96), Edge(4, 5, 0.5)],
        threshold=0.95,
    )

    assert groups(result) == [[1, 2, 3], [4], [5]]
    assert result.clusters[3] == 1  # keyed by the smallest member
    assert result.refused == ()


def test_cannot_link_holds_through_a_chain():
    # 1~2 and 2~3 both score high, but 1 and 3 are different people.
    result = cluster(
        [1, 2, 3],
        [Edge(1, 2, 0.99), Edge(2, 3, 0.98)],
        threshold=0.9,
        cannot_link=[(1, 3)],
    )

    assert groups(result) == [[1, 2], [3]]
    assert result.refused == (Edge(2, 3, 0.98),)


def test_the_stronger_link_wins_the_middle_record():
    result = cluster(
        [1, 2, 3],
        [Edge(1, 2, 0.91), Edge(2, 3, 0.99)],
        threshold=0.9,
        cannot_link=[(1, 3)],
    )

    assert groups(result) == [[1], [2, 3]]


def test_cannot_link_survives_merges_of_other_clusters():
    # 1≠6; 1-2-3 and 4-5-6 form; then a bridge 3~4 must be refused.
    edges = [
        Edge(1, 2, 0.99),
        Edge(2, 3, 0.99),
        Edge(4, 5, 0.99),
        Edge(5, 6, 0.99),
        Edge(3, 4, 0.97),
    ]
    result = cluster(range(1, 7), edges, threshold=0.9, cannot_link=[(1, 6)])

    assert groups(result) == [[1, 2, 3], [4, 5, 6]]
    assert Edge(3, 4, 0.97) in result.refused


def test_must_link_joins_below_the_threshold_and_blocks_conflicts():
    result = cluster(
        [1, 2, 3],
        [Edge(2, 3, 0.99)],
        threshold=0.95,
        must_link=[(1, 2)],
        cannot_link=[(1, 3)],
    )

    assert groups(result) == [[1, 2], [3]]


def test_contradictory_constraints_raise():
    with pytest.raises(ValueError, match="both must-link and cannot-link"):
        cluster([1, 2], [], threshold=0.9, must_link=[(1, 2)], cannot_link=[(2, 1)])


def test_ids_only_in_edges_or_constraints_are_clustered_too():
    result = cluster([], [Edge("a", "b", 0.99)], threshold=0.9, cannot_link=[("c", "d")])

    assert groups(result) == [["a", "b"], ["c"], ["d"]]


@pytest.mark.parametrize("seed", range(20))
def test_edges_by_column_cluster_as_edge_objects(seed):
    rng = random.Random(seed)
    ids = list(range(1, 61))
    # Few distinct probabilities: many ties, broken by the ids in both paths.
    edges = [
        Edge(a, b, rng.choice([0.5, 0.9, 0.96, 0.99, 1.0]))
        for a, b in (rng.sample(range(1, 71), 2) for _ in range(90))
    ]
    pairs: list[tuple[int, int]] = [(a, b) for a, b in (rng.sample(ids, 2) for _ in range(6))]
    must = pairs[:2] if seed % 2 else []
    cannot = [p for p in pairs[2:] if p not in must and p[::-1] not in must] if seed % 4 else []

    expected = cluster(ids, edges, threshold=0.95, must_link=must, cannot_link=cannot)
    result = cluster_columns(
        ids,
        [e.left for e in edges],
        [e.right for e in edges],
        [e.probability for e in edges],
        threshold=0.95,
        must_link=must,
        cannot_link=cannot,
    )

    assert result == expected
    if cannot:
        assert all(result.clusters[a] != result.clusters[b] for a, b in cannot)
