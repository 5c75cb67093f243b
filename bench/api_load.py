"""API under concurrent load: golden record reads and batch ingests through a real server.

    DATABASE_URL=postgres://.../aurum_bench REDIS_URL=redis://127.0.0.1:6379/7 \\
        python bench/api_load.py [--golden 1000000 | --quick] [--reuse] [--duration 20]
                                 [--connections 16] [--workers 4] [--batch 1000] [--json PATH]
                                 [--only read|ingest] [--server granian|gunicorn]

The hub is served as in production: ``--server granian`` (the default; ``--workers``
processes, blocking threads, backlog and keep-alive from ``config/granian.py``) or
``--server gunicorn`` (worker class, threads and keep-alive from ``config/gunicorn.py``) on
``config.wsgi:application`` with ``config.settings.production`` (persistent connections,
JSON renderer only), on loopback. The load generator is wrk (``apt-get install wrk``) with
the Lua scripts in ``bench/wrk/``:

1. golden record read by id: ``GET /api/v1/customer/golden/<id>`` of random ids among the
   ``--golden`` active customer golden records, a source system's token; requests/s and
   p50/p95/p99 latency (targets: >= 1,500 requests/s, p99 <= 20 ms), and the CPU each read
   cost the server's processes, the PostgreSQL backends and wrk (less noisy than the rate on
   a shared machine); ``AURUM_HOT_GOLDEN_READ=0`` serves it through Django's whole request
   cycle instead of ``config/hot_read.py``, for a comparison;
2. batch ingest: ``POST /api/v1/customer/records`` with ``--batch`` new records per request
   (unique keys every run); records/s (target >= 10,000), with the ingest's after-commit
   work queued on the configured broker as in production.

``--only`` runs one of the two load tests (both by default).

The golden records are built as ``bench/survivorship.py`` builds them (it empties the
record and golden tables: use a bench database); ``--reuse`` keeps the golden records a
previous run (or ``bench/survivorship.py``) left when there are at least ``--golden``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from bench.figures import Figures, load_average  # noqa: E402
from mdm.models import GoldenRecord, SourceRecord, SourceSystem  # noqa: E402
from mdm.services.sources import source_system_upsert, source_token_issue  # noqa: E402

WRK = ROOT / "bench" / "wrk"
QUICK_GOLDEN = 20_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def golden_ready(n: int) -> int:
    """Active customer golden records with survived attributes."""
    return (
        GoldenRecord.objects.filter(domain="customer", status="active")
        .exclude(attributes={})[:n]
        .count()
    )


def build(n: int, seed: int) -> None:
    """N golden records with 1-3 members each, survived under the default rules."""
    from bench import survivorship as sv
    from mdm.services.survivorship import golden_records_recompute
    from mdm.survivorship import default_rules

    sv.reset()
    sv.build(n, seed)
    golden_records_recompute(domain="customer", rules=default_rules("customer"), reason="bench")


SERVERS = ("granian", "gunicorn")


def serve(server: str, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    """The hub under ``server`` with the project's settings for it (``config/granian.py``,
    ``config/gunicorn.py``) on loopback, once it answers."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(60),
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
    }
    if server == "granian":
        command = [
            sys.executable,
            "-m",
            "config.granian",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--config",
            "config/gunicorn.py",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--backlog",
            "2048",
        ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return process
        except OSError:
            time.sleep(0.3)
        if process.poll() is not None:
            break
    process.terminate()
    raise SystemExit(f"{server} did not answer on port {port}; see {log}")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used (from /proc; Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def server_pids(server: subprocess.Popen[bytes]) -> list[int]:
    """The server's master process, its workers, and the PostgreSQL backends of the bench
    database."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    pids = [server.pid, *(int(p) for p in children.read_text().split())]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        pids += [-int(pid) for (pid,) in cursor.fetchall()]  # negative: a PostgreSQL backend
    return pids


def cpu_used(before: dict[int, float], server: subprocess.Popen[bytes]) -> tuple[float, float]:
    """CPU seconds used since ``before`` by (the server, PostgreSQL): figures that do not
    depend on what else the machine runs, unlike the rates."""
    after = cpu_snapshot(server)
    app = sum(v - before.get(p, 0.0) for p, v in after.items() if p > 0)
    db = sum(v - before.get(p, 0.0) for p, v in after.items() if p < 0)
    return app, db


def cpu_snapshot(server: subprocess.Popen[bytes]) -> dict[int, float]:
    pids = server_pids(server)
    app = cpu_seconds([p for p in pids if p > 0])
    db = cpu_seconds([-p for p in pids if p < 0])
    return {**app, **{-p: v for p, v in db.items()}}


def wrk(
    script: str, url: str, *, duration: int, connections: int, env: dict[str, str]
) -> dict[str, float]:
    threads = max(1, min(2, connections))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "-s",
        str(WRK / script),
        url,
    ]
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    last = [line for line in done.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(last)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--golden", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_GOLDEN:,} golden records")
    parser.add_argument("--reuse", action="store_true", help="keep existing golden records")
    parser.add_argument("--duration", type=int, default=20, help="seconds per load test")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="server worker processes")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=SERVERS[0],
        help="the WSGI server (default: %(default)s, the faster on the golden read)",
    )
    parser.add_argument("--batch", type=int, default=1000, help="records per ingest request")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/suite.py)")
    parser.add_argument("--only", choices=("read", "ingest"), help="run one load test only")
    args = parser.parse_args()
    figures = Figures(args.json)
    n = QUICK_GOLDEN if args.quick else args.golden
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    if connection.vendor != "postgresql":
        sys.exit("Point DATABASE_URL at a PostgreSQL bench database.")

    t = time.perf_counter()
    if args.reuse and golden_ready(n) >= n:
        print(f"reusing {n:,} customer golden records")
    else:
        build(n, args.seed)
        print(f"built {n:,} customer golden records in {time.perf_counter() - t:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE mdm_goldenrecord")
        cursor.execute("VACUUM ANALYZE mdm_crossreference")
        cursor.execute(
            "SELECT pg_total_relation_size('mdm_goldenrecord')"
            " + pg_total_relation_size('mdm_historicalgoldenrecord')"
            " + pg_total_relation_size('mdm_crossreference')"
            " + pg_total_relation_size('mdm_historicalcrossreference'),"
            " (SELECT count(*) FROM mdm_goldenrecord)"
        )
        size, goldens = cursor.fetchall()[0]
    figures.add(
        "api.bytes_per_golden",
        "PostgreSQL size per golden record (with cross-reference, history, indexes)",
        size / max(goldens, 1),
        "bytes",
        f"{goldens:,} golden records",
    )
    system, _ = source_system_upsert(code="apibench", name="API bench")
    secret = source_token_issue(source_system=system, name="bench").secret
    ids = list(
        GoldenRecord.objects.filter(domain="customer", status="active")
        .order_by("?")
        .values_list("id", flat=True)[:20_000]
    )
    tmp = Path(tempfile.mkdtemp(prefix="aurum-api-bench-"))
    (tmp / "ids.txt").write_text("\n".join(map(str, ids)) + "\n")
    port = free_port()
    server = serve(args.server, port, args.workers, tmp / f"{args.server}.log")
    url = f"http://127.0.0.1:{port}"
    env = {"AURUM_TOKEN": secret, "AURUM_IDS": str(tmp / "ids.txt")}
    print(
        f"{args.server} {args.workers} workers (config/{args.server}.py) on {url}; "
        f"wrk {args.connections} connections, "
        f"{args.duration} s per test; {connection.settings_dict['NAME']}"
    )
    try:
        if args.only != "ingest":
            read_test(url, n, args, env, figures, server)
        if args.only != "read":
            ingest_test(url, n, args, env, figures, system, server)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)


def read_test(
    url: str,
    n: int,
    args: argparse.Namespace,
    env: dict[str, str],
    figures: Figures,
    server: subprocess.Popen[bytes],
) -> None:
    wrk("read.lua", url, duration=3, connections=args.connections, env=env)  # warm-up
    on = (
        f"{args.server} {args.workers} workers, {n:,} golden records, "
        f"{args.connections} connections, {load_average()}"
    )
    cpu_before = cpu_snapshot(server)
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    read = wrk("read.lua", url, duration=args.duration, connections=args.connections, env=env)
    app_cpu, db_cpu = cpu_used(cpu_before, server)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk: the only child waited for
    wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (
        wrk_before.ru_utime + wrk_before.ru_stime
    )
    seconds = read["duration_us"] / 1e6
    ok = read["requests"] - read["non_2xx"]
    rps = ok / seconds
    per = 1000 / max(read["requests"], 1)
    print(
        f"golden read by id: {rps:,.0f} requests/s, p50 {read['p50_us'] / 1000:.1f} ms, "
        f"p95 {read['p95_us'] / 1000:.1f} ms, p99 {read['p99_us'] / 1000:.1f} ms "
        f"({read['requests']:,} requests, {read['non_2xx']:,} not 2xx, "
        f"{read['socket_errors']:,} socket errors)"
    )
    print(
        f"  CPU per read: {args.server} {app_cpu * per:.3f} ms, PostgreSQL {db_cpu * per:.3f} ms, "
        f"wrk {wrk_cpu * per:.3f} ms ({on})"
    )
    figures.add("api.read_rps", "API golden read by id", rps, "req/s", on)
    figures.add(
        "api.read_cpu_ms",
        "API golden read by id, CPU per read (server + PostgreSQL)",
        (app_cpu + db_cpu) * per,
        "ms",
        on,
    )
    for p in (50, 95, 99):
        figures.add(
            f"api.read_p{p}_ms",
            f"API golden read by id, p{p}",
            read[f"p{p}_us"] / 1000,
            "ms",
            on,
        )


def ingest_test(
    url: str,
    n: int,
    args: argparse.Namespace,
    env: dict[str, str],
    figures: Figures,
    system: SourceSystem,
    server: subprocess.Popen[bytes],
) -> None:
    connections = max(2, args.workers)
    warm_env = {**env, "AURUM_BATCH": str(args.batch), "AURUM_RUN": secrets.token_hex(4)}
    wrk("ingest.lua", url, duration=3, connections=connections, env=warm_env)  # warm-up
    before = SourceRecord.objects.filter(source_system=system).count()
    ingest_env = {**env, "AURUM_BATCH": str(args.batch), "AURUM_RUN": secrets.token_hex(4)}
    on = (
        f"{args.server} {args.workers} workers, batches of {args.batch:,}, "
        f"{connections} connections, "
        f"{n:,} golden records in the database, {load_average()}"
    )
    cpu_before = cpu_snapshot(server)
    ingest = wrk("ingest.lua", url, duration=args.duration, connections=connections, env=ingest_env)
    app_cpu, db_cpu = cpu_used(cpu_before, server)
    seconds = ingest["duration_us"] / 1e6
    ok = ingest["requests"] - ingest["non_2xx"]
    created = SourceRecord.objects.filter(source_system=system).count() - before
    rate = ok * args.batch / seconds
    print(
        f"batch ingest: {rate:,.0f} records/s ({ok:,} requests of {args.batch:,} in "
        f"{seconds:.1f} s, {ingest['non_2xx']:,} not 2xx; {created:,} records created), "
        f"p50 {ingest['p50_us'] / 1000:.0f} ms, "
        f"p99 {ingest['p99_us'] / 1000:.0f} ms per request"
    )
    per_k = 1000 / max(created, 1)
    print(
        f"  CPU per 1,000 records: {args.server} {app_cpu * per_k * 1000:.0f} ms, "
        f"PostgreSQL {db_cpu * per_k * 1000:.0f} ms ({on})"
    )
    if created < ok * args.batch:
        print(f"  WARNING: {ok * args.batch - created:,} records of 2xx answers not in the DB")
    figures.add("api.ingest_records_per_s", "API batch ingest", rate, "records/s", on)
    figures.add(
        "api.ingest_cpu_ms_per_1000",
        "API batch ingest, CPU per 1,000 records (server + PostgreSQL)",
        (app_cpu + db_cpu) * per_k * 1000,
        "ms",
        on,
    )
    figures.add(
        "api.ingest_p99_ms",
        "API batch ingest, p99 per request",
        ingest["p99_us"] / 1000,
        "ms",
        on,
    )


if __name__ == "__main__":
    main()
