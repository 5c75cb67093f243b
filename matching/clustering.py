"""Clustering scored pairs into entities, honouring steward constraints.

Pure Python, set-based over ids.  Must-link pairs are joined first; then scored pairs are
joined from the most to the least probable, and a join is refused when it would put any
cannot-link pair into one cluster, even through a chain of other matches (A~B, B~C with
A≠C: B joins A or C, whichever scores higher, never both).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

Id = TypeVar("Id", bound=Hashable)


@dataclass(frozen=True)
class Edge(Generic[Id]):
    left: Id
    right: Id
    probability: float


class _Forest(Generic[Id]):
    """Union-find that also tracks, per root, the roots it must never join."""

    def __init__(self, ids: Iterable[Id]) -> None:
        self.parent: dict[Id, Id] = {i: i for i in ids}
        self.size: dict[Id, int] = dict.fromkeys(self.parent, 1)
        self.forbidden: dict[Id, set[Id]] = {}

    def add(self, item: Id) -> None:
        if item not in self.parent:
            self.parent[item] = item
            self.size[item] = 1

    def find(self, item: Id) -> Id:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def forbid(self, a: Id, b: Id) -> None:
        ra, rb = self.find(a), self.find(b)
        self.forbidden.setdefault(ra, set()).add(rb)
        self.forbidden.setdefault(rb, set()).add(ra)

    def may_join(self, a: Id, b: Id) -> bool:
        ra, rb = self.find(a), self.find(b)
        return ra == rb or rb not in self.forbidden.get(ra, ())

    def join(self, a: Id, b: Id) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if rb in self.forbidden.get(ra, ()):
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        moved = self.forbidden.pop(rb, set())
        if moved:
            mine = self.forbidden.setdefault(ra, set())
            for other in moved:
                mine.add(other)
                peers = self.forbidden[other]
                peers.discard(rb)
                peers.add(ra)
        return True


def _order(item: Hashable) -> tuple[int, Any]:
    """Numbers in numeric order, anything else by its repr after them."""
    if isinstance(item, int):
        return (0, item)
    return (1, repr(item))


@dataclass(frozen=True)
class ClusterResult(Generic[Id]):
    clusters: dict[Id, Id]  # record id -> cluster key (the smallest member id)
    refused: tuple[Edge[Id], ...]  # scored pairs above the threshold kept apart by a constraint


def cluster(
    ids: Iterable[Id],
    edges: Iterable[Edge[Id]],
    *,
    threshold: float,
    must_link: Iterable[tuple[Id, Id]] = (),
    cannot_link: Iterable[tuple[Id, Id]] = (),
) -> ClusterResult[Id]:
    """Connected components of the edges at or above ``threshold``, under the constraints.

    Every id ends up in exactly one cluster (singletons included).  A must-link pair that is
    also cannot-linked is a contradiction and raises ValueError.  Deterministic: ties in
    probability are broken by the pair's ids.
    """
    strong = [(e.left, e.right, e.probability) for e in edges if e.probability >= threshold]
    return _cluster(ids, strong, must_link=must_link, cannot_link=cannot_link)


def cluster_columns(
    ids: Iterable[Id],
    left: Sequence[Id],
    right: Sequence[Id],
    probability: Sequence[float],
    *,
    threshold: float,
    must_link: Iterable[tuple[Id, Id]] = (),
    cannot_link: Iterable[tuple[Id, Id]] = (),
) -> ClusterResult[Id]:
    """:func:`cluster` of edges given by column (``left[i]``, ``right[i]``,
    ``probability[i]``): the same result, without an ``Edge`` object per scored pair."""
    strong = [t for t in zip(left, right, probability, strict=True) if t[2] >= threshold]
    return _cluster(ids, strong, must_link=must_link, cannot_link=cannot_link)


def _cluster(
    ids: Iterable[Id],
    strong: list[tuple[Id, Id, float]],
    *,
    must_link: Iterable[tuple[Id, Id]],
    cannot_link: Iterable[tuple[Id, Id]],
) -> ClusterResult[Id]:
    forest: _Forest[Id] = _Forest(ids)
    cannot = [(a, b) for a, b in cannot_link]
    for a, b in cannot:
        forest.add(a)
        forest.add(b)
    for a, b in cannot:
        forest.forbid(a, b)
    for a, b in must_link:
        forest.add(a)
        forest.add(b)
        if not forest.join(a, b):
            raise ValueError(f"records {a} and {b} are both must-link and cannot-link")
    refused: list[Edge[Id]] = []
    parent = forest.parent
    if cannot:
        # Only a cannot-link can refuse a join, and then the order decides which: the most
        # probable first.  Without one, every order gives the same components.
        strong.sort(key=lambda e: (-e[2], repr(e[0]), repr(e[1])))
        for left, right, probability in strong:
            forest.add(left)
            forest.add(right)
            if not forest.join(left, right):
                refused.append(Edge(left, right, probability))
    else:
        find = forest.find
        size = forest.size
        for left, right, _ in strong:
            if left not in parent:
                forest.add(left)
            if right not in parent:
                forest.add(right)
            ra, rb = find(left), find(right)
            if ra != rb:
                if size[ra] < size[rb]:
                    ra, rb = rb, ra
                parent[rb] = ra
                size[ra] += size[rb]
    members: dict[Id, list[Id]] = {}
    find = forest.find
    for item in parent:
        members.setdefault(find(item), []).append(item)
    # Plain integer ids (record ids) are already in _order's order: skip the key function.
    numeric = all(type(item) is int for item in parent)
    clusters: dict[Id, Id] = {}
    for group in members.values():
        key = cast(Id, min(cast(list[int], group))) if numeric else min(group, key=_order)
        for item in group:
            clusters[item] = key
    return ClusterResult(clusters, tuple(refused))
