"""The match engine: the only package that imports splink or duckdb (see interface.py)."""

from __future__ import annotations

from matching.engine.interface import MatchEngine

ENGINES = ("duckdb", "spark")


def get_engine() -> MatchEngine:
    """The configured engine: Splink on DuckDB, or on Spark with ``AURUM_MATCH_ENGINE=spark``.

    Raises ``ImproperlyConfigured`` for another name, or for ``spark`` without pyspark.
    """
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    name = getattr(settings, "AURUM_MATCH_ENGINE", "duckdb")
    if name == "spark":
        try:
            import pyspark  # noqa: F401
        except ImportError as exc:
            raise ImproperlyConfigured(
                "AURUM_MATCH_ENGINE=spark needs pyspark: pip install 'aurum[spark]' "
                "(and Java 17 for local mode)"
            ) from exc
        from matching.engine.spark_engine import SparkEngine

        return SparkEngine()
    if name != "duckdb":
        raise ImproperlyConfigured(
            f"AURUM_MATCH_ENGINE={name!r} is not an engine; use one of {', '.join(ENGINES)}"
        )
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
