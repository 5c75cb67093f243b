"""What the rest of Aurum sees of the match engine: frozen dataclasses and a Protocol.

No DataFrame, DuckDB connection or Splink object crosses this line.  A domain declares its
match model as a ``MatchSpec`` (engine-neutral); the engine turns it into Splink settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

import orjson

from mdm.domains.match_spec import ComparisonKind, ComparisonSpec, MatchSpec

__all__ = [
    "ComparisonKind",
    "ComparisonSpec",
    "Contribution",
    "EngineRecord",
    "LevelReport",
    "MatchEngine",
    "MatchSpec",
    "ScoredPair",
    "ScoredPairs",
    "TrainedModel",
]


@dataclass(frozen=True)
class EngineRecord:
    """A record as the engine sees it: an id (the source record id) and its attributes."""

    id: int
    attributes: Mapping[str, Any]
    dataset: str = ""  # the source system, for link-only jobs


@dataclass(frozen=True)
class LevelReport:
    comparison: str
    level: str
    m_probability: float | None
    u_probability: float | None
    match_weight: float | None
    warning: str | None = None


@dataclass(frozen=True)
class TrainedModel:
    """A trained model, JSON-serialisable through ``parameters`` (stored in MatchModel)."""

    parameters: Mapping[str, Any]
    prior: float  # probability that two random records match
    levels: tuple[LevelReport, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contribution:
    """One comparison's part in a score: its level and match weight (log2 Bayes factor)."""

    attribute: str
    level: str
    match_weight: float
    left: Any = None
    right: Any = None


@dataclass(frozen=True)
class ScoredPair:
    left: int
    right: int
    match_probability: float
    match_weight: float
    contributions: tuple[Contribution, ...] = field(default=())


class ScoredPairs(Sequence[ScoredPair]):
    """Scored pairs held by column, for a full run over many records.

    A sequence of :class:`ScoredPair` (each built on access, its contributions parsed from
    JSON), and the columns themselves: ``left``, ``right``, ``match_probability``,
    ``match_weight`` and ``contributions_json`` (each pair's contributions as the JSON
    array of ``{"attribute", "level", "match_weight", "left", "right"}`` objects that
    serialising its ``Contribution`` dataclasses gives).  Clustering and storing read the
    columns: no Python object per pair.
    """

    __slots__ = ("contributions_json", "left", "match_probability", "match_weight", "right")

    def __init__(
        self,
        *,
        left: list[int],
        right: list[int],
        match_probability: list[float],
        match_weight: list[float],
        contributions_json: list[str],
    ) -> None:
        sizes = {len(left), len(right), len(match_probability), len(match_weight)}
        if sizes | {len(contributions_json)} != {len(left)}:
            raise ValueError("every column of ScoredPairs must have the same length")
        self.left = left
        self.right = right
        self.match_probability = match_probability
        self.match_weight = match_weight
        self.contributions_json = contributions_json

    def __len__(self) -> int:
        return len(self.left)

    def _pair(self, i: int) -> ScoredPair:
        contributions = tuple(
            Contribution(**item) for item in orjson.loads(self.contributions_json[i])
        )
        return ScoredPair(
            self.left[i],
            self.right[i],
            self.match_probability[i],
            self.match_weight[i],
            contributions,
        )

    @overload
    def __getitem__(self, index: int) -> ScoredPair: ...

    @overload
    def __getitem__(self, index: slice) -> list[ScoredPair]: ...

    def __getitem__(self, index: int | slice) -> ScoredPair | list[ScoredPair]:
        if isinstance(index, slice):
            return [self._pair(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._pair(index)

    def __iter__(self) -> Iterator[ScoredPair]:
        for i in range(len(self)):
            yield self._pair(i)


class MatchEngine(Protocol):
    def train(
        self, spec: MatchSpec, records: Iterable[EngineRecord], *, seed: int = 42
    ) -> TrainedModel: ...

    def score_all(
        self,
        spec: MatchSpec,
        model: TrainedModel,
        records: Iterable[EngineRecord],
        *,
        threshold: float,
    ) -> Sequence[ScoredPair]: ...

    def score_candidates(
        self,
        spec: MatchSpec,
        model: TrainedModel,
        candidates: Sequence[EngineRecord],
        *,
        threshold: float,
        top: int = 10,
    ) -> list[ScoredPair]: ...
