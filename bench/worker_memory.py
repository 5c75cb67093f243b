"""Peak memory of a Celery worker running a full match of the customer domain.

    DATABASE_URL=postgres://.../aurum_bench REDIS_URL=redis://127.0.0.1:6379/7 \\
        python bench/worker_memory.py [--json PATH] [--timeout 3600]

Run it after ``bench/matching_speed.py`` (which loads the records and trains the model):
it starts a real worker (``celery -A config worker --pool solo -Q match``, the task runs in
the worker's own process) on the configured broker, queues ``matching.match_full`` for the
customer domain as a user's scheduler would, waits for the run to finish and reads the
worker's peak resident memory (``VmHWM``) from /proc. Target: under 2 GB at 1M records.

Along the run it samples the worker's resident memory (``VmRSS``) every half second and
prints the peak of each phase of the run (score, cluster, apply: from the run's own
timings) and, with ``--trace PATH``, every sample as CSV (seconds since queued, MB).
``tracemalloc`` would not see DuckDB's or Arrow's memory; the resident size does.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from bench.figures import Figures, load_average  # noqa: E402
from config.celery import app  # noqa: E402
from matching.models import MatchRun  # noqa: E402
from matching.tasks import match_full_task  # noqa: E402
from mdm.models import SourceRecord  # noqa: E402


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def children_kb(pid: int) -> int:
    """VmRSS of the processes ``pid`` started (the full match's preparing process)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += status_kb(int(stat.parent.name), "VmRSS")
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/suite.py)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--trace", type=Path, help="write every RSS sample here (CSV)")
    args = parser.parse_args()
    figures = Figures(args.json)
    records = SourceRecord.objects.filter(domain="customer", is_deleted=False).count()
    if records < 2:
        sys.exit("no customer records: run bench/matching_speed.py first")
    with app.connection_for_write() as conn:  # earlier benchmarks' queued incremental matches
        purged = conn.default_channel.queue_purge("match") or 0
    if purged:
        print(f"purged {purged:,} earlier messages from the match queue")
    log = Path(tempfile.mkstemp(prefix="aurum-worker-memory-", suffix=".log")[1])
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
        "-Q", "match", "-n", f"benchmem-{os.getpid()}@%h", "--without-mingle",
        "--without-gossip", "--loglevel", "WARNING",
    ]  # fmt: skip
    worker = subprocess.Popen(  # the worker's own process group: stopped below, and only it
        command, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        before = MatchRun.objects.filter(kind=MatchRun.Kind.FULL).order_by("-id").first()
        last = before.pk if before else 0
        time.sleep(5)  # the worker connects to the broker
        idle_kb = status_kb(worker.pid, "VmRSS")
        started = time.perf_counter()
        match_full_task.delay("customer")
        deadline = time.monotonic() + args.timeout
        samples: list[tuple[float, float]] = []  # (seconds since queued, VmRSS MB)
        family_mb = 0.0  # the worker's VmRSS with its children's, at the same sample
        run_seen_at: float | None = None  # when the run's row was first seen: its start
        while True:
            if worker.poll() is not None:
                sys.exit(f"the worker died (exit {worker.returncode}); see {log}")
            samples.append((time.perf_counter() - started, status_kb(worker.pid, "VmRSS") / 1024))
            family_mb = max(family_mb, samples[-1][1] + children_kb(worker.pid) / 1024)
            run = MatchRun.objects.filter(kind=MatchRun.Kind.FULL, id__gt=last).first()
            if run is not None and run_seen_at is None:
                run_seen_at = samples[-1][0]
            if run is not None and run.finished_at is not None:
                break
            if time.monotonic() > deadline:
                sys.exit(f"no finished full match after {args.timeout:.0f} s; see {log}")
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        peak_mb = status_kb(worker.pid, "VmHWM") / 1024
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    on = f"{records:,} customer records, worker --pool solo, {connection.vendor}, {load_average()}"
    if args.trace:
        args.trace.write_text("".join(f"{t:.1f},{mb:.0f}\n" for t, mb in samples))
    begin = run_seen_at or 0.0
    phases = []
    for phase in ("score", "cluster", "apply"):
        end = begin + float(run.timings.get(phase, 0.0))
        inside = [mb for t, mb in samples if begin <= t < end]
        if inside:
            phases.append(f"{phase} {max(inside):,.0f} MB ({end - begin:.1f} s)")
        begin = end
    print(f"peak RSS by phase (sampled every 0.5 s): {', '.join(phases)}; timings {run.timings}")
    print(
        f"full match on a worker: {run.status} in {seconds:.1f} s; worker peak RSS "
        f"{peak_mb:,.0f} MB (idle {idle_kb / 1024:,.0f} MB); {on}"
    )
    print(
        f"the worker with its child processes (a full run prepares records in one and "
        f"reads and survives new golden records in another), "
        f"sampled: peak {family_mb:,.0f} MB (a forked child shares pages with the worker: "
        "the sum counts them twice)"
    )
    figures.add("worker.match_peak_rss_mb", "worker peak RSS, full match", peak_mb, "MB", on)
    figures.add(
        "worker.match_family_rss_mb",
        "worker + child processes, peak of sampled RSS sum",
        family_mb,
        "MB",
        on,
    )
    figures.add("worker.match_s", "full match on a worker (queued to done)", seconds, "s", on)
    if run.status != MatchRun.Status.SUCCEEDED:
        sys.exit(f"the match run failed: {run.error}")


if __name__ == "__main__":
    main()
