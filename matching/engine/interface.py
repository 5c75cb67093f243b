"""What the rest of Aurum sees of the match engine: frozen dataclasses and a Protocol.

No DataFrame, DuckDB connection or Splink object crosses this line.  A domain declares its
match model as a ``MatchSpec`` (engine-neutral); the engine turns it into Splink settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    ) -> list[ScoredPair]: ...

    def score_candidates(
        self,
        spec: MatchSpec,
        model: TrainedModel,
        candidates: Sequence[EngineRecord],
        *,
        threshold: float,
        top: int = 10,
    ) -> list[ScoredPair]: ...
