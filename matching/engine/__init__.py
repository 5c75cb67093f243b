"""The match engine: the only package that imports splink or duckdb (see interface.py)."""

from __future__ import annotations

from matching.engine.interface import MatchEngine


def get_engine() -> MatchEngine:
    """The configured engine (Splink on DuckDB)."""
    from matching.engine.splink_engine import SplinkEngine

    return SplinkEngine()


def ping() -> None:
    """Raise unless the engine's database (an in-memory DuckDB) opens and answers a query."""
    import duckdb

    connection = duckdb.connect(":memory:")
    try:
        connection.execute("SELECT 1").fetchall()
    finally:
        connection.close()
