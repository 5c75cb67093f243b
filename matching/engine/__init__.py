"""The match engine: the only package that imports splink or duckdb (see interface.py)."""

from __future__ import annotations

from matching.engine.interface import MatchEngine


def get_engine() -> MatchEngine:
    """The configured engine (Splink on DuckDB)."""
    from matching.engine.splink_engine import SplinkEngine

    return SplinkEngine()
