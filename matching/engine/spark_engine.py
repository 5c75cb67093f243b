"""The full batch match on Splink's Spark backend: matching past one machine.

``AURUM_MATCH_ENGINE=spark`` (with the ``spark`` extra installed) makes ``get_engine()``
return a :class:`SparkEngine`, so ``match_run_full`` scores every blocked pair on a Spark
cluster (``AURUM_SPARK_MASTER``; local mode, ``local[*]``, by default) instead of an
in-memory DuckDB. Training and search-before-create stay on DuckDB: training works on a
sample and search on one candidate's blocks, neither needs a cluster.

The model is the one the DuckDB engine trains and stores: the same settings builder
(:func:`settings_for`), the same prepared table (:func:`prepare_table`). Splink writes a
model's SQL in the dialect it was built for, so the levels and blocking rules are
transpiled from DuckDB's SQL to Spark's with sqlglot, with the few functions whose
meaning differs replaced: a list's ``len`` is ``size``, ``left(s, -n)`` a substring, and
the string distances (Jaro-Winkler, Levenshtein, Damerau-Levenshtein) Python UDFs that
compute exactly DuckDB's. The pairs are the DuckDB engine's, with the same probabilities.

The UDFs (:mod:`matching.engine.spark_udfs`, no imports) are shipped to the executors
with the job, so a cluster's executors need a Python 3.11 and pyspark, not Aurum.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import sqlglot
from splink import Linker
from sqlglot import exp

from matching.engine import spark_udfs
from matching.engine.interface import EngineRecord, MatchSpec, ScoredPair, TrainedModel
from matching.engine.splink_engine import (
    SplinkEngine,
    _display_values,
    _link_type,
    _model_comparisons,
    _pairs,
    _scoring_settings,
    _select_sql,
    prepare_table,
)

logger = logging.getLogger(__name__)

_session_lock = threading.Lock()
_session: Any = None
_tables = iter(range(1, 1 << 62))


# DuckDB function (as sqlglot names it) -> the UDF registered in the Spark session.
UDFS = {
    "jarowinklersimilarity": "aurum_jaro_winkler",
    "levenshtein": "aurum_levenshtein",
    "damerau_levenshtein": "aurum_damerau_levenshtein",
}


def udfs_register(session: Any) -> None:
    """Register DuckDB's string distances (:mod:`spark_udfs`) in a session; safe to repeat."""
    from pyspark import cloudpickle
    from pyspark.sql.types import DoubleType, LongType

    cloudpickle.register_pickle_by_value(spark_udfs)
    session.udf.register("aurum_jaro_winkler", spark_udfs.jaro_winkler, DoubleType())
    session.udf.register("aurum_levenshtein", spark_udfs.levenshtein, LongType())
    session.udf.register("aurum_damerau_levenshtein", spark_udfs.damerau_levenshtein, LongType())


def duckdb_to_spark(sql: str) -> str:
    """One SQL condition of a model built for DuckDB, in Spark SQL."""
    # DuckDB's len() is a list's length here (strings use length()); say so before parsing,
    # as sqlglot reads both as LENGTH, which Spark applies to strings only.
    sql = re.sub(r"\blen\(", "array_length(", sql)

    def rename(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.JarowinklerSimilarity | exp.Levenshtein):
            name = UDFS[type(node).__name__.lower()]
            return exp.Anonymous(this=name, expressions=[node.this, node.expression])
        if isinstance(node, exp.Anonymous) and node.name.lower() in UDFS:
            return exp.Anonymous(this=UDFS[node.name.lower()], expressions=node.expressions)
        if isinstance(node, exp.Left | exp.Right) and _negative(node.expression):
            # DuckDB's left(s, -n) is s without its last n characters (right(s, -n): without
            # its first n); Spark answers '' for a negative length.
            text, cut = node.this, node.expression.this.copy()
            kept = exp.Sub(this=exp.Length(this=text.copy()), expression=cut)
            if isinstance(node, exp.Left):
                return exp.Substring(this=text, start=exp.Literal.number(1), length=kept)
            return exp.Substring(
                this=text, start=exp.Add(this=cut.copy(), expression=exp.Literal.number(1))
            )
        return node

    return sqlglot.parse_one(sql, read="duckdb").transform(rename).sql("spark")


def _negative(length: exp.Expression) -> bool:
    return isinstance(length, exp.Neg) and isinstance(length.this, exp.Literal)


def spark_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A Splink settings dictionary (a trained model) with its SQL in Spark's dialect."""
    out = deepcopy(dict(settings))
    for comparison in out.get("comparisons", []):
        for level in comparison["comparison_levels"]:
            if level["sql_condition"].strip().upper() != "ELSE":
                level["sql_condition"] = duckdb_to_spark(level["sql_condition"])
            level.pop("sql_dialect", None)
    for rule in out.get("blocking_rules_to_generate_predictions", []):
        rule["blocking_rule"] = duckdb_to_spark(rule["blocking_rule"])
        rule["sql_dialect"] = "spark"
    out.pop("sql_dialect", None)
    return out


def spark_session() -> Any:
    """The process's Spark session, built once from the settings (``AURUM_SPARK_*``).

    ``AURUM_SPARK_MASTER`` is the cluster (``local[*]``, ``spark://host:7077``, ``yarn``,
    ``k8s://...``), ``AURUM_SPARK_CONF`` more Spark properties, and
    ``AURUM_SPARK_CHECKPOINT_DIR`` the folder where Splink writes the intermediate tables it
    breaks lineage on (a filesystem every executor reaches on a cluster: HDFS, S3, NFS).
    """
    global _session
    with _session_lock:
        if _session is not None:
            return _session
        from django.conf import settings
        from pyspark.sql import SparkSession
        from splink.backends.spark import similarity_jar_location

        checkpoints = str(settings.AURUM_SPARK_CHECKPOINT_DIR)
        if "://" not in checkpoints:
            Path(checkpoints).mkdir(parents=True, exist_ok=True)
        builder = (
            SparkSession.builder.master(settings.AURUM_SPARK_MASTER)
            .appName("aurum-match")
            .config("spark.jars", similarity_jar_location())
            .config("spark.ui.enabled", "false")
            .config("spark.sql.warehouse.dir", f"{checkpoints}/warehouse")
            .config("spark.sql.shuffle.partitions", "8")
            # Local mode: the Python workers run this interpreter (its virtualenv).
            .config("spark.pyspark.python", sys.executable)
        )
        for key, value in settings.AURUM_SPARK_CONF.items():
            builder = builder.config(key, value)
        started = time.perf_counter()
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        session.sparkContext.setCheckpointDir(checkpoints)
        logger.info(
            "Spark session on %s in %.1f s",
            settings.AURUM_SPARK_MASTER,
            time.perf_counter() - started,
        )
        _session = session
        return session


def spark_session_stop() -> None:
    """Stop the process's Spark session (a later call of :func:`spark_session` starts one)."""
    global _session
    with _session_lock:
        if _session is not None:
            _session.stop()
            _session = None


class SparkEngine:
    """The ``MatchEngine`` whose full batch match runs on Splink's Spark backend.

    ``score_all`` scores on Spark; ``train`` and ``score_candidates`` are the DuckDB
    engine's (``duckdb``, a fresh :class:`SplinkEngine` by default).
    """

    def __init__(self, duckdb: SplinkEngine | None = None, session: Any = None) -> None:
        self._duckdb = duckdb or SplinkEngine()
        self._session = session

    def train(
        self, spec: MatchSpec, records: Iterable[EngineRecord], *, seed: int = 42
    ) -> TrainedModel:
        """As :meth:`SplinkEngine.train` (DuckDB): the model is engine-neutral."""
        return self._duckdb.train(spec, records, seed=seed)

    def score_candidates(
        self,
        spec: MatchSpec,
        model: TrainedModel,
        candidates: Sequence[EngineRecord],
        *,
        threshold: float,
        top: int = 10,
    ) -> list[ScoredPair]:
        """As :meth:`SplinkEngine.score_candidates` (DuckDB, the match store)."""
        return self._duckdb.score_candidates(spec, model, candidates, threshold=threshold, top=top)

    def score_all(
        self,
        spec: MatchSpec,
        model: TrainedModel,
        records: Iterable[EngineRecord],
        *,
        threshold: float,
    ) -> list[ScoredPair]:
        """Every blocked pair of ``records`` at or above ``threshold``, best first, on Spark.

        The same pairs as :meth:`SplinkEngine.score_all` with the same probabilities (up to
        the last bits of floating-point sums); ``left`` is the lower id. Pure: reads nothing
        but its arguments (and the Spark session).
        """
        from splink.backends.spark import SparkAPI

        records = list(records)
        if len(records) < 2:
            return []
        started = time.perf_counter()
        table = prepare_table(spec, records)
        duckdb_settings = _scoring_settings(model.parameters, link_type=_link_type(records))
        comparisons = _model_comparisons(duckdb_settings)
        session = self._session or spark_session()
        udfs_register(session)
        db_api = SparkAPI(spark_session=session, break_lineage_method="parquet")
        sdf = db_api.register(table, table_name=f"aurum_records_{next(_tables)}")
        linker = Linker(sdf, spark_settings(duckdb_settings), log_level=None)
        predictions = linker.inference.predict(
            threshold_match_probability=threshold, warning_mode="never"
        )
        try:
            select = duckdb_to_spark(_select_sql(predictions.physical_name, comparisons))
            rows = session.sql(select).collect()
        finally:
            predictions.drop_table_from_database_and_remove_from_cache()
        values = _display_values(records, comparisons)
        pairs = _pairs(rows, comparisons, values, values, lower_first=True)
        logger.info(
            "Spark scored %d records into %d pairs in %.1f s",
            len(records),
            len(pairs),
            time.perf_counter() - started,
        )
        return pairs
