"""The full batch match on Splink's Spark backend (local mode) gives DuckDB's results.

Needs pyspark (the ``spark`` extra) and Java 17. Without Java the tests skip and say so;
without pyspark they skip, or fail under ``AURUM_REQUIRE_SERVICES=1`` (CI installs it).
"""

from __future__ import annotations

import os
import shutil
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from matching.engine import get_engine
from matching.engine.interface import EngineRecord, TrainedModel
from matching.engine.splink_engine import SplinkEngine
from matching.models import MatchPair, MatchRun
from matching.store import stores_clear
from mdm.domains import customer
from mdm.models import CrossReference
from tests.conftest import missing_service

pytestmark = pytest.mark.slow


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


@pytest.fixture(scope="module")
def spark_engine():
    if _java() is None:
        pytest.skip("Java is absent (no JAVA_HOME, no java on PATH): Spark cannot start")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing_service("needs pyspark: pip install -e '.[spark]'")
    from matching.engine.spark_engine import SparkEngine, spark_session_stop

    yield SparkEngine()
    spark_session_stop()


def test_duckdb_sql_is_transpiled_for_spark():
    from matching.engine.spark_engine import duckdb_to_spark

    assert (
        duckdb_to_spark('jaro_winkler_similarity("city_l", "city_r") >= 0.92')
        == "AURUM_JARO_WINKLER(`city_l`, `city_r`) >= 0.92"
    )
    assert (
        duckdb_to_spark('length("p_l") >= 5 and left("p_l", -2) = left("p_r", -2)')
        == "LENGTH(`p_l`) >= 5 AND SUBSTRING(`p_l`, 1, LENGTH(`p_l`) - 2) = "
        "SUBSTRING(`p_r`, 1, LENGTH(`p_r`) - 2)"
    )
    assert (
        duckdb_to_spark(
            'len(list_filter("t_l", lambda token: list_contains("t_r", token))) * 1.5 '
            '>= 0.5 * (len("t_l") + len("t_r"))'
        )
        == "SIZE(FILTER(`t_l`, token -> ARRAY_CONTAINS(`t_r`, token))) * 1.5 "
        ">= 0.5 * (SIZE(`t_l`) + SIZE(`t_r`))"
    )
    assert (
        duckdb_to_spark('abs(length("a_l") - length("a_r")) <= 1')
        == "ABS(LENGTH(`a_l`) - LENGTH(`a_r`)) <= 1"
    )


def test_the_string_distances_are_duckdbs():
    import duckdb

    from matching.engine.spark_udfs import damerau_levenshtein, jaro_winkler, levenshtein

    words = ["abgail monica", "abigail", "Schönland", "Schoenland", "straße", "strasse", "ca",
             "abc", "abcd", "badc", "Łódź", "Lodz", "", "a", "Tayylor", "Tayolr"]  # fmt: skip
    pairs = [(a, b) for a in words for b in words]
    connection = duckdb.connect()
    rows = connection.execute(
        "select jaro_winkler_similarity(a, b), levenshtein(a, b), damerau_levenshtein(a, b) "
        "from (select unnest($1) as a, unnest($2) as b)",
        [[a for a, _ in pairs], [b for _, b in pairs]],
    ).fetchall()
    connection.close()

    assert [
        (jaro_winkler(a, b), levenshtein(a, b), damerau_levenshtein(a, b)) for a, b in pairs
    ] == [(pytest.approx(jw, abs=1e-12), lev, dl) for jw, lev, dl in rows]
    assert jaro_winkler("abgail monica", "abigail") == pytest.approx(0.8007326007326008)
    assert (levenshtein("ö", "o"), damerau_levenshtein("ca", "abc")) == (2, 2)  # bytes; not OSA
    assert jaro_winkler(None, "a") is None


def test_spark_scores_the_same_pairs_as_duckdb(spark_engine, records: list[EngineRecord]):
    spec = customer.DOMAIN.match
    assert spec is not None
    duckdb = SplinkEngine()
    model: TrainedModel = duckdb.train(spec, records)

    expected = duckdb.score_all(spec, model, records, threshold=0.01)
    got = spark_engine.score_all(spec, model, records, threshold=0.01)

    assert len(expected) > 1000  # fake_1000 has plenty of candidate pairs above 0.01
    # The same pairs; their order differs only among equal weights (sums in another order).
    by_pair = {(p.left, p.right): p for p in expected}
    assert sorted((p.left, p.right) for p in got) == sorted(by_pair)
    for spark_pair in got:
        duckdb_pair = by_pair[(spark_pair.left, spark_pair.right)]
        assert spark_pair.match_probability == pytest.approx(
            duckdb_pair.match_probability, abs=1e-6
        )
        assert spark_pair.match_weight == pytest.approx(duckdb_pair.match_weight, abs=1e-6)
        assert [(c.attribute, c.level) for c in spark_pair.contributions] == [
            (c.attribute, c.level) for c in duckdb_pair.contributions
        ]
    weights = [p.match_weight for p in got]
    assert weights == sorted(weights, reverse=True)  # best first, as DuckDB's


def test_match_command_on_spark_agrees_with_the_duckdb_run(spark_engine, db, settings):
    """The user's path: `manage.py match customer --full` with AURUM_MATCH_ENGINE=spark after
    a DuckDB full match of the same data changes no golden record and scores the same pairs."""
    stores_clear()
    call_command("load_demo", "--no-tokens", "--no-match", stdout=StringIO())
    call_command("train_model", "customer", stdout=StringIO())
    call_command("match", "customer", "--full", stdout=StringIO())
    duckdb_run = MatchRun.objects.get(kind="full")
    clusters = dict(CrossReference.objects.values_list("record_id", "golden_id"))
    pairs = dict(
        ((left, right), probability)
        for left, right, probability in MatchPair.objects.values_list(
            "left_id", "right_id", "match_probability"
        )
    )

    settings.AURUM_MATCH_ENGINE = "spark"
    assert type(get_engine()).__name__ == "SparkEngine"
    call_command("match", "customer", "--full", stdout=StringIO())

    spark_run = MatchRun.objects.filter(kind="full").latest("id")
    assert spark_run.pk != duckdb_run.pk
    assert spark_run.status == MatchRun.Status.SUCCEEDED
    assert spark_run.counts["pairs"] == duckdb_run.counts["pairs"] == len(pairs) > 0
    assert spark_run.counts["golden_created"] == 0
    assert spark_run.counts["golden_changed"] == 0
    assert spark_run.counts["records_moved"] == 0
    assert dict(CrossReference.objects.values_list("record_id", "golden_id")) == clusters
    for left, right, probability in MatchPair.objects.values_list(
        "left_id", "right_id", "match_probability"
    ):
        assert probability == pytest.approx(pairs[(left, right)], abs=1e-6)
    stores_clear()


def test_an_unknown_engine_is_refused(settings):
    settings.AURUM_MATCH_ENGINE = "duckbd"
    with pytest.raises(ImproperlyConfigured, match="'duckbd' is not an engine; use one of duckdb"):
        get_engine()
