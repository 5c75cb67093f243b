"""The benchmark suite: every benchmark in bench/, one table, the targets.

    make bench            # full: 1M records (about an hour on 2 cores)
    make bench QUICK=1    # small sizes, a few minutes (what CI runs)
    python bench/suite.py [--quick | --records N] [--only NAME ...] [--out var/bench]

Runs on the configured database (``DATABASE_URL``: a PostgreSQL *bench* database, the
benchmarks empty its tables) and broker (``REDIS_URL``/``CELERY_BROKER_URL``). Each
benchmark runs in its own process with ``--json``; its output goes to ``OUT/NAME.log``.
The suite then prints one table (figure, value, unit, target, met?, what it was measured
on) with the machine (cores, load average, database) and writes it to ``OUT/results.json``
and ``OUT/results.md``. A benchmark that fails is reported as such and the others still
run; the exit status is 1 when one failed (a target not met is reported, not an error: a
shared machine's figures vary).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    needs: tuple[str, ...] = ()  # "postgresql", "redis", "wrk"


# In this order: each benchmark sets up its own data, some on what the previous one left
# (worker_memory matches matching_speed's records; api_load reuses survivorship's golden
# records); ingest and quality remove their records at the end (quality's start deletes
# the domain's records one by one: it runs while there are none); delivery flushes the
# database, so it is last.
BENCHES = (
    Bench("ingest", "ingest.py", ("--rows", "1000000"), ("--rows", "20000")),
    Bench("quality", "quality.py", ("--records", "100000"), ("--records", "5000")),
    Bench(
        "matching_speed",
        "matching_speed.py",
        ("--records", "1000000", "--searches", "200"),
        ("--records", "10000", "--searches", "20"),
    ),
    Bench("worker_memory", "worker_memory.py", (), (), ("redis",)),
    Bench(
        "survivorship", "survivorship.py", ("--golden", "1000000"), ("--golden", "10000"),
        ("postgresql",),
    ),
    Bench(
        "api_load",
        "api_load.py",
        ("--golden", "1000000", "--reuse", "--duration", "30"),
        ("--golden", "10000", "--reuse", "--duration", "10", "--connections", "8",
         "--batch", "200"),
        ("postgresql", "wrk"),
    ),
    Bench(
        "steward_ui", "steward_ui.py", ("--tasks", "50000"), ("--tasks", "1000", "--requests", "10")
    ),
    Bench(
        "delivery", "delivery.py", ("--events", "2000", "--samples", "30"),
        ("--events", "100", "--samples", "3"), ("postgresql", "redis"),
    ),
)  # fmt: skip

# key -> (comparison, target, how the target reads)
TARGETS: dict[str, tuple[str, float, str]] = {
    "matching.full_match_ratio": ("<=", 1.5, "<= 1.5x bare Splink"),
    "matching.search_ratio": ("<=", 0.2, "<= 1/5 of predict_between"),
    "api.read_rps": (">=", 1500, ">= 1,500 req/s"),
    "api.read_p99_ms": ("<=", 20, "<= 20 ms"),
    "api.ingest_records_per_s": (">=", 10_000, ">= 10,000 records/s"),
    "worker.match_peak_rss_mb": ("<", 2048, "< 2 GB"),
}

# bench/matching_speed.py's report rows -> figures
MATCHING_ROWS = {
    "hub full match, total": ("matching.full_match_s", "full match (match_run_full)", "s"),
    "bare Splink predict + cluster": ("matching.bare_s", "bare Splink predict + cluster", "s"),
    "RATIO hub full match / bare predict+cluster": (
        "matching.full_match_ratio", "full match / bare Splink", "x",
    ),
    "hub match_search p50": ("matching.search_p50_ms", "search-before-create, p50", "ms"),
    "hub match_search p95": ("matching.search_p95_ms", "search-before-create, p95", "ms"),
    "Splink predict_between p95": (
        "matching.predict_between_p95_ms", "Splink predict_between, p95", "ms",
    ),
    "RATIO hub p95 / predict_between p95": (
        "matching.search_ratio", "search p95 / predict_between p95", "x",
    ),
    "peak RSS of the process": ("matching.peak_rss_mb", "matching bench process, peak RSS", "MB"),
}  # fmt: skip


@dataclass
class Row:
    bench: str
    key: str
    label: str
    value: float | None
    unit: str
    on: str
    note: str = ""
    target: str = ""
    met: bool | None = None


@dataclass
class Outcome:
    bench: Bench
    status: str  # ok | failed | skipped
    seconds: float
    detail: str = ""
    rows: list[Row] = field(default_factory=list)


def _number(text: str) -> float | None:
    match = re.search(r"-?[\d,]+(?:\.\d+)?", text)
    return float(match.group(0).replace(",", "")) if match else None


def matching_rows(path: Path, context: str) -> list[Row]:
    rows = []
    entries = json.loads(path.read_text())
    # Rows without their own note were measured on the benchmark's records.
    size = next((re.split(r",\s", e["on"])[0] for e in entries if " records" in e["on"]), "")
    context = f"{size}, {context}" if size else context
    for entry in entries:
        mapped = MATCHING_ROWS.get(entry["label"].strip())
        if mapped is None:
            continue
        key, label, unit = mapped
        value = _number(entry["value"]) if not entry["value"].startswith(">") else None
        note = "" if value is not None else f"not finished: {entry['value']}"
        if unit == "s" and entry["value"].endswith("ms"):
            unit = "ms"
        on = entry["on"] if entry["on"] and "target" not in entry["on"] else context
        rows.append(Row("matching_speed", key, label, value, unit, on, note))
    return rows


def figure_rows(name: str, path: Path) -> list[Row]:
    return [
        Row(name, f["key"], f["label"], f["value"], f["unit"], f["on"], f.get("note", ""))
        for f in json.loads(path.read_text())
    ]


def judge(row: Row) -> Row:
    if row.key in TARGETS:
        op, target, text = TARGETS[row.key]
        row.target = text
        if row.value is not None:
            row.met = {
                "<=": row.value <= target,
                ">=": row.value >= target,
                "<": row.value < target,
            }[op]
    return row


def machine() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    info: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cores": os.cpu_count(),
        "load_average": [round(one, 2), round(five, 2), round(fifteen, 2)],
        "python": platform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        info["commit"] = ""
    return info


def database() -> dict[str, str]:
    """The configured database and broker, as the benchmarks will see them."""
    code = (
        "import json, django; django.setup(); from django.db import connection; "
        "from django.conf import settings; c = connection.cursor(); "
        "v = c.execute('select version()').fetchone()[0] if connection.vendor == 'postgresql' "
        "else connection.Database.sqlite_version; "
        "print(json.dumps({'vendor': connection.vendor, 'name': str(connection.settings_dict["
        "'NAME']), 'version': v.split(' on ')[0], 'broker': settings.CELERY_BROKER_URL}))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local"}
    out = subprocess.run([PY, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"cannot reach the configured database:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def missing(bench: Bench, db: dict[str, str]) -> str:
    if "postgresql" in bench.needs and db["vendor"] != "postgresql":
        return "needs PostgreSQL (DATABASE_URL=postgres://...)"
    if "redis" in bench.needs and not db["broker"].startswith("redis"):
        return "needs Redis (REDIS_URL and CELERY_BROKER_URL)"
    if "wrk" in bench.needs and subprocess.run(["which", "wrk"], capture_output=True).returncode:
        return "needs wrk (apt-get install -y wrk)"
    return ""


SCALED = {"--rows", "--records", "--golden"}
SCALED_BENCHES = {"ingest", "matching_speed", "survivorship", "api_load"}


def arguments(bench: Bench, quick: bool, records: int | None) -> list[str]:
    """The benchmark's arguments; ``records`` replaces the full run's 1M records."""
    chosen = list(bench.quick if quick else bench.full)
    if records is not None and not quick and bench.name in SCALED_BENCHES:
        for i, arg in enumerate(chosen[:-1]):
            if arg in SCALED:
                chosen[i + 1] = str(records)
    return chosen


def run(
    bench: Bench, quick: bool, out: Path, db: dict[str, str], records: int | None = None
) -> Outcome:
    reason = missing(bench, db)
    if reason:
        return Outcome(bench, "skipped", 0.0, reason)
    figures, log = out / f"{bench.name}.json", out / f"{bench.name}.log"
    figures.unlink(missing_ok=True)
    command = [PY, str(ROOT / "bench" / bench.script), *arguments(bench, quick, records)]
    command += ["--json", str(figures)]
    print(f"== {bench.name}: {' '.join(command[1:])}", flush=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    rows: list[Row] = []
    if figures.exists():
        context = f"{db['vendor']} {db['name']}"
        rows = matching_rows(figures, context) if bench.name == "matching_speed" else (
            figure_rows(bench.name, figures)
        )  # fmt: skip
    if done.returncode != 0:
        tail = log.read_text()[-600:].strip().splitlines()[-1:] or [""]
        return Outcome(bench, "failed", seconds, f"exit {done.returncode}: {tail[0]}", rows)
    return Outcome(bench, "ok", seconds, "", rows)


def collected(bench: Bench, out: Path, db: dict[str, str]) -> Outcome:
    """The figures an earlier run left in ``out`` (``--table-only``)."""
    figures = out / f"{bench.name}.json"
    if not figures.exists():
        return Outcome(bench, "skipped", 0.0, f"no {figures.name} in {out}")
    if bench.name == "matching_speed":
        return Outcome(bench, "ok", 0.0, rows=matching_rows(figures, f"{db['vendor']}"))
    return Outcome(bench, "ok", 0.0, rows=figure_rows(bench.name, figures))


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.3f}" if value < 1 else f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def table(outcomes: list[Outcome]) -> list[list[str]]:
    lines = []
    for outcome in outcomes:
        for row in outcome.rows:
            met = "" if row.met is None else ("yes" if row.met else "NO")
            on = row.on + (f" ({row.note})" if row.note else "")
            lines.append([row.label, fmt(row.value, row.unit), row.unit, row.target, met, on])
        if outcome.status != "ok":
            lines.append([f"{outcome.bench.name}: {outcome.status.upper()}", "", "", "", "",
                          outcome.detail])  # fmt: skip
    return lines


def render_text(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(5)]
    out = []
    for r in [header, *lines]:
        cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1])]
        cells += [r[i].ljust(widths[i]) for i in (2, 3, 4)]
        out.append("  ".join(cells) + "  " + r[5])
    return "\n".join(out)


def render_markdown(header: list[str], lines: list[list[str]]) -> str:
    def escape(cell: str) -> str:
        return cell.replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(escape(c) for c in r) + " |" for r in lines]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    parser.add_argument("--only", nargs="*", choices=[b.name for b in BENCHES], default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="run nothing: print the table of the figures already in --out",
    )
    parser.add_argument(
        "--records",
        type=int,
        help="records (and golden records) of the full run instead of 1,000,000; "
        "the data-quality and steward benchmarks keep their own sizes",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local"}
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    db = database()
    before = machine()
    print(
        f"bench suite ({'quick' if args.quick else 'full'}) on {db['vendor']} {db['name']} "
        f"({db['version']}), {before['cores']} cores, load {before['load_average']}",
        flush=True,
    )
    started = time.perf_counter()
    chosen = [bench for bench in BENCHES if args.only is None or bench.name in args.only]
    if args.table_only:
        outcomes = [collected(bench, args.out, db) for bench in chosen]
    else:
        outcomes = [run(bench, args.quick, args.out, db, args.records) for bench in chosen]
    for outcome in outcomes:
        for row in outcome.rows:
            judge(row)
    after = machine()
    header = ["figure", "value", "unit", "target", "met?", "measured on"]
    lines = table(outcomes)
    summary = (
        f"{'quick' if args.quick else 'full'} run, {time.perf_counter() - started:,.0f} s; "
        f"{db['vendor']} {db['version']} ({db['name']}); {after['cores']} cores, "
        f"{after['memory_gb']} GB; load average {before['load_average']} at the start, "
        f"{after['load_average']} at the end; commit {after['commit']}; {after['date']}"
    )
    print("\n" + "=" * 100)
    print(render_text(header, lines))
    print("=" * 100)
    print(summary)
    (args.out / "results.md").write_text(f"{render_markdown(header, lines)}\n\n{summary}\n")
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "quick": args.quick,
                "database": db,
                "machine_before": before,
                "machine_after": after,
                "benches": [
                    {
                        "name": o.bench.name,
                        "status": o.status,
                        "seconds": round(o.seconds, 1),
                        "detail": o.detail,
                    }
                    for o in outcomes
                ],
                "figures": [vars(r) for o in outcomes for r in o.rows],
            },
            indent=2,
        )
    )
    print(f"written: {args.out / 'results.md'}, {args.out / 'results.json'}")
    sys.exit(1 if any(o.status == "failed" for o in outcomes) else 0)


if __name__ == "__main__":
    main()
