"""Delivery benchmark: events/s to a local webhook with one and two workers, and the latency
from an API ingest to its webhook arriving (p50, p95); the snapshot export's memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aurum_bench \\
    REDIS_URL=redis://127.0.0.1:6379/7 python bench/delivery.py [--events 2000] [--samples 30] \\
        [--batch-sizes 1,100] [--snapshot-records 100000] [--profile]

It flushes the database (use a bench database), loads the demo (trains the match models and
matches, which writes the golden changes the throughput runs deliver), then:

1. throughput: a webhook subscriber registered ``--events`` events back; the relay command
   (``manage.py sync_relay``) and 1, then 2, Celery workers (solo pool, Redis broker) deliver
   them to a receiver on loopback that verifies every signature; figures are events per
   second from registration to the last arrival;
   Each run is repeated per ``--batch-sizes`` (``AURUM_SYNC_BATCH_SIZE``: deliveries per
   task); batch size 1 is one task per event, as delivery worked before batches, so the
   ratio between the rows is the before/after comparison within one run (same load);
2. latency: one record at a time POSTed to the API; the ingest queues incremental matching
   on the worker, the golden change's trigger notifies the relay, the relay queues the
   delivery; the time from the POST to the webhook carrying the record's source key;
3. snapshot: ``--snapshot-records`` golden records (bulk-inserted into the product domain,
   without members, removed afterwards) exported through ``GET /api/v1/product/snapshot``:
   seconds, bytes and the Python heap's peak (tracemalloc) while streaming, against
   materialising the same rows in memory as the export did before it streamed;
4. ``--profile``: one in-process relay and send of up to 1,000 events under pyinstrument.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ["AURUM_WEBHOOK_ALLOW_LOOPBACK"] = "1"
if os.environ.get("REDIS_URL"):
    os.environ.setdefault("CELERY_BROKER_URL", os.environ["REDIS_URL"])

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from bench.figures import Figures, load_average  # noqa: E402
from config.celery import app  # noqa: E402
from mdm.services.sources import source_system_upsert, source_token_issue  # noqa: E402
from sync.models import ChangeEvent  # noqa: E402
from sync.selectors import high_water_seq  # noqa: E402
from sync.services import (  # noqa: E402
    change_events_sequence,
    subscriber_pause,
    subscriber_register,
)
from sync.signing import secret_generate  # noqa: E402
from tests.sync.receiver_server import Receiver  # noqa: E402


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def start_workers(count: int, queue: str, logdir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(count):
        log = logdir / f"worker-{queue}-{i}.log"
        procs.append(
            spawn(
                [
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--pool",
                    "solo",
                    "-Q",
                    queue,
                    "-n",
                    f"bench{i}-{uuid.uuid4().hex[:6]}@%h",
                    "--without-mingle",
                    "--without-gossip",
                    "--loglevel",
                    "WARNING",
                ],
                log,
            )
        )
    # ready: each worker answers a ping
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= count:
            break
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, 15)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)


def throughput(workers: int, events: int, logdir: Path, batch_size: int) -> float:
    os.environ["AURUM_SYNC_BATCH_SIZE"] = str(batch_size)
    queue = f"aurum-bench-{uuid.uuid4().hex[:8]}"
    secret = secret_generate()
    receiver = Receiver(secrets=[secret]).start()
    procs = start_workers(workers, queue, logdir)
    procs.append(
        spawn(
            ["manage.py", "sync_relay", "--queue", queue, "--interval", "0.2"],
            logdir / f"relay-{queue}.log",
        )
    )
    try:
        high = high_water_seq()
        start_seq = max(0, high - events)
        expected = ChangeEvent.objects.filter(seq__gt=start_seq, seq__lte=high).count()
        started = time.time()
        sub = subscriber_register(
            code=f"bench-{workers}w-{queue[-8:]}", kind="webhook", url=receiver.url,
            secret=secret, from_seq=start_seq,
        )  # fmt: skip
        deadline = time.monotonic() + 1800
        while len(receiver.unique_ids()) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(receiver.unique_ids())} of {expected} arrived")
            time.sleep(0.05)
        elapsed = max(r.arrived for r in receiver.received) - started
        rate = expected / elapsed
        print(
            f"throughput, batch size {batch_size:>3}, {workers} worker(s): "
            f"{expected} events in {elapsed:.1f} s = "
            f"{rate:.0f} events/s (calls {receiver.calls}, duplicates {receiver.duplicates}, "
            f"refused {len(receiver.refused)})",
            flush=True,
        )
        # Its receiver goes away: pause it, or later runs would keep trying to reach it.
        subscriber_pause(subscriber=sub)
        return rate
    finally:
        stop(procs)
        receiver.stop()


def latency(samples: int, logdir: Path) -> tuple[float, float]:
    queue = ",".join(settings.AURUM_QUEUES)  # the ingest's matching, the relay's deliveries
    with app.connection_for_write() as conn:
        for name in settings.AURUM_QUEUES:
            conn.default_channel.queue_purge(name)
    secret = secret_generate()
    receiver = Receiver(secrets=[secret]).start()
    procs = start_workers(1, queue, logdir)
    procs.append(spawn(["manage.py", "sync_relay", "--interval", "1.0"], logdir / "relay-lat.log"))
    system, _ = source_system_upsert(code="bench-api", name="Bench API")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {source_token_issue(source_system=system).secret}"
    )
    change_events_sequence()
    subscriber_register(code=f"bench-lat-{uuid.uuid4().hex[:6]}", kind="webhook",
                        url=receiver.url, secret=secret)  # fmt: skip
    times: list[float] = []
    try:
        for i in range(samples):
            key = f"LAT-{uuid.uuid4().hex[:10]}"
            record = {"source_key": key, "given_name": f"Zed{i}", "family_name": "Latency",
                      "email": f"{key.lower()}@example.org"}  # fmt: skip
            sent = time.time()
            response = client.post("/api/v1/customer/records", {"records": [record]}, format="json")
            assert response.status_code == 200, response.content
            deadline = time.monotonic() + 60
            arrived = None
            while arrived is None:
                for r in list(receiver.received):
                    if any(x["source_key"] == key for x in r.event.get("xref", [])):
                        arrived = r.arrived
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"record {key} did not arrive in 60 s")
                time.sleep(0.01)
            times.append(arrived - sent)
            time.sleep(0.2)
    finally:
        stop(procs)
        receiver.stop()
    times.sort()
    p50 = statistics.median(times)
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    print(
        f"latency, API ingest -> webhook ({samples} records, 1 worker, relay on LISTEN): "
        f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms",
        flush=True,
    )
    return p50, p95


def profile_send(events: int) -> None:
    """One relay pass and the sends of its batches, in this process, under pyinstrument."""
    from pyinstrument import Profiler

    from sync.services import deliveries_send, sync_relay

    secret = secret_generate()
    receiver = Receiver(secrets=[secret]).start()
    high = high_water_seq()
    sub = subscriber_register(
        code=f"bench-prof-{uuid.uuid4().hex[:6]}", kind="webhook", url=receiver.url,
        secret=secret, from_seq=max(0, high - events),
    )  # fmt: skip
    profiler = Profiler()
    started = time.perf_counter()
    with profiler:
        while batches := sync_relay().batches:
            for batch in batches:
                deliveries_send(delivery_ids=batch)
    elapsed = time.perf_counter() - started
    subscriber_pause(subscriber=sub)
    receiver.stop()
    print(profiler.output_text(color=False, show_all=False)[:6000])
    print(
        f"profiled in-process send: {len(receiver.unique_ids())} events in {elapsed:.2f} s "
        "(the receiver shares the process)",
        flush=True,
    )


def snapshot_memory(count: int) -> None:
    """Export ``count`` golden records: streamed vs materialised (the export before)."""
    import tracemalloc

    import orjson
    from django.contrib.auth.models import User
    from django.utils import timezone

    from mdm.models import GoldenRecord
    from sync.selectors import snapshot_rows

    now = timezone.now()
    first = GoldenRecord.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    batch = 10_000
    for start in range(0, count, batch):
        GoldenRecord.objects.bulk_create(
            GoldenRecord(
                domain="product",
                status="active",
                version=1,
                created_at=now,
                updated_at=now,
                attributes={
                    "title": f"Bench product {i}",
                    "brand": "Bench",
                    "gtin": f"{i:013d}",
                    "category": "bench",
                    "mpn": f"MPN-{i}",
                },
            )
            for i in range(start, min(count, start + batch))
        )
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    admin, _ = User.objects.get_or_create(username="bench-admin", is_superuser=True)
    client = APIClient()
    client.force_authenticate(admin)
    try:
        tracemalloc.start()
        started = time.perf_counter()
        response: Any = client.get("/api/v1/product/snapshot")
        size = 0
        for chunk in response.streaming_content:
            size += len(chunk)
        streamed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        tracemalloc.start()
        started = time.perf_counter()
        rows = list(snapshot_rows(domain="product"))
        body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        materialised = time.perf_counter() - started
        _, peak_before = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"snapshot, {count} golden records ({len(rows)} in the domain), JSON Lines "
            f"{size / 1e6:.0f} MB: streamed in {streamed:.1f} s, peak heap "
            f"{peak / 1e6:.1f} MB; materialised (before) {materialised:.1f} s, peak heap "
            f"{peak_before / 1e6:.1f} MB ({len(body) / 1e6:.0f} MB body)",
            flush=True,
        )
    finally:
        # Set-based: they were inserted without history (bulk_create) and have no members;
        # the ORM's delete would write a history row and a change event for each, one at a
        # time (minutes for 100,000).
        bench_rows = GoldenRecord.objects.filter(
            pk__gt=first, domain="product", attributes__brand="Bench"
        )
        bench_rows._raw_delete(bench_rows.db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded demo")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/aurum-bench-delivery"))
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/suite.py)")
    parser.add_argument(
        "--batch-sizes", default="1,100", help="deliveries per task, comma-separated"
    )
    parser.add_argument("--snapshot-records", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="pyinstrument one send")
    args = parser.parse_args()
    figures = Figures(args.json)
    args.logs.mkdir(parents=True, exist_ok=True)
    if connection.vendor != "postgresql":
        raise SystemExit("set DATABASE_URL to a PostgreSQL bench database")
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("set REDIS_URL (the workers' broker)")
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    if not args.skip_load:
        call_command("flush", interactive=False, verbosity=0)
        settings.AURUM_MATCH_AFTER_INGEST = False  # load_demo matches itself
        call_command("load_demo", "--no-tokens", verbosity=0)
        settings.AURUM_MATCH_AFTER_INGEST = True
    change_events_sequence()
    how = "reused" if args.skip_load else "loaded and matched"
    print(
        f"demo {how} in {time.perf_counter() - started:.0f} s: {high_water_seq()} change events",
        flush=True,
    )
    if args.profile:
        profile_send(min(args.events, 1000))
    rates: dict[tuple[int, int], float] = {}
    sizes = [int(x) for x in args.batch_sizes.split(",") if x]
    for size in sizes:
        for workers in (1, 2):
            rates[size, workers] = throughput(workers, args.events, args.logs, size)
    if len(sizes) > 1:
        for workers in (1, 2):
            base = rates[sizes[0], workers]
            print(
                f"ratio, {workers} worker(s): "
                + ", ".join(f"batch {s}: x{rates[s, workers] / base:.1f}" for s in sizes),
                flush=True,
            )
    on = f"{args.events:,} events, webhook on loopback, Redis broker, {load_average()}"
    for workers in (1, 2):
        figures.add(
            f"delivery.events_per_s_{workers}w",
            f"events delivered, {workers} worker{'s' if workers > 1 else ''}, batch {sizes[-1]}",
            rates[sizes[-1], workers],
            "events/s",
            on,
        )
    os.environ["AURUM_SYNC_BATCH_SIZE"] = str(sizes[-1])
    p50, p95 = latency(args.samples, args.logs)
    on = (
        f"{args.samples} single-record API ingests, incremental match on 1 worker, {load_average()}"
    )
    figures.add("delivery.latency_p50_ms", "API ingest to webhook, p50", p50 * 1000, "ms", on)
    figures.add("delivery.latency_p95_ms", "API ingest to webhook, p95", p95 * 1000, "ms", on)
    if args.snapshot_records:
        snapshot_memory(args.snapshot_records)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
