"""bench/suite.py's table: figures read from the benchmarks' --json, judged against targets.

The suite itself runs in CI (`make bench QUICK=1`); these check its reading of the files.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import suite


def test_matching_speed_rows_become_figures(tmp_path: Path):
    path = tmp_path / "matching_speed.json"
    path.write_text(
        json.dumps(
            [
                {"label": "-- data", "value": "", "on": ""},
                {"label": "hub full match, total", "value": "41.20 s", "on": "1,000,000 records"},
                {
                    "label": "RATIO hub full match / bare predict+cluster",
                    "value": "1.31",
                    "on": "target <= 1.5 (met)",
                },
                {"label": "hub match_search p95", "value": "1,204.5 ms", "on": ""},
                {
                    "label": "RATIO hub p95 / predict_between p95",
                    "value": "> 2.5",
                    "on": "target <= 0.2 (NOT met)",
                },
            ]
        )
    )

    rows = [suite.judge(r) for r in suite.matching_rows(path, "postgresql aurum_bench")]

    assert [(r.key, r.value, r.unit, r.on, r.met) for r in rows] == [
        ("matching.full_match_s", 41.2, "s", "1,000,000 records", None),
        ("matching.full_match_ratio", 1.31, "x", "1,000,000 records, postgresql aurum_bench", True),
        ("matching.search_p95_ms", 1204.5, "ms", "1,000,000 records, postgresql aurum_bench", None),
        ("matching.search_ratio", None, "x", "1,000,000 records, postgresql aurum_bench", None),
    ]
    assert rows[3].note == "not finished: > 2.5"
    assert rows[1].target == "<= 1.5x bare Splink"


def test_targets_are_judged_in_their_direction():
    def row(key: str, value: float) -> suite.Row:
        return suite.judge(suite.Row("b", key, key, value, "", ""))

    assert row("api.read_rps", 1500).met is True
    assert row("api.read_rps", 1499.9).met is False
    assert row("api.read_p99_ms", 20.0).met is True
    assert row("worker.match_peak_rss_mb", 2048).met is False
    assert row("ingest.fresh_rows_per_s", 5).met is None  # no target: reported only


def test_records_scale_the_full_run_of_the_record_benchmarks_only():
    by_name = {bench.name: bench for bench in suite.BENCHES}

    assert suite.arguments(by_name["ingest"], False, 200_000) == ["--rows", "200000"]
    assert suite.arguments(by_name["api_load"], False, 5)[:2] == ["--golden", "5"]
    assert suite.arguments(by_name["quality"], False, 5) == ["--records", "100000"]
    assert suite.arguments(by_name["ingest"], True, 200_000) == ["--rows", "20000"]


def test_the_table_reports_a_failed_benchmark_with_its_reason():
    bench = suite.BENCHES[0]
    ok = suite.Outcome(
        bench, "ok", 1.0, rows=[suite.Row("ingest", "k", "file ingest", 1234.5, "rows/s", "on")]
    )
    matching = next(b for b in suite.BENCHES if b.name == "matching_speed")
    failed = suite.Outcome(matching, "failed", 2.0, "exit 1: boom")

    assert suite.table([ok, failed]) == [
        ["file ingest", "1,234", "rows/s", "", "", "on"],
        ["matching_speed: FAILED", "", "", "", "", "exit 1: boom"],
    ]
