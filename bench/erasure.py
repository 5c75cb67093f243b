"""Erasure benchmark: how long one person's erasure takes in a hub of N golden records.

    DATABASE_URL=postgres://.../aurum_bench python bench/erasure.py [--golden 50000]

Builds the survivorship benchmark's customers (``bench/survivorship.py``: N golden records
with 1-3 members from three source systems, their history, then a first survivorship
build), then erases ``--people`` of them one by one through ``erasure_request_file`` and
prints the seconds per erasure and the rows each changed.  Most of the time is the search
for the person's values in the JSON and text columns of the history tables.  It empties the
record and golden tables first: use a bench database.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from django.db import connection  # noqa: E402

from bench.survivorship import DOMAIN, build, reset  # noqa: E402  (sets Django up)
from mdm.models import ErasureRequest, GoldenRecord  # noqa: E402
from mdm.services import survivorship as services  # noqa: E402
from mdm.services.erasure import erasure_request_file  # noqa: E402
from mdm.survivorship import default_rules  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=int, default=50_000)
    parser.add_argument("--people", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Point DATABASE_URL at a PostgreSQL bench database.")
    print(f"database {connection.settings_dict['NAME']}, {args.golden:,} golden records")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    reset()
    ErasureRequest.objects.all().delete()
    records = build(args.golden, args.seed)
    services.golden_records_recompute(
        domain=DOMAIN, rules=default_rules(DOMAIN), reason="bench: first build"
    )
    print(f"{records:,} source records")
    ids = list(GoldenRecord.objects.filter(domain=DOMAIN).values_list("pk", flat=True))
    chosen = random.Random(args.seed).sample(ids, args.people)
    times = []
    for golden_id in chosen:
        started = time.perf_counter()
        erasure = erasure_request_file(domain=DOMAIN, golden_id=golden_id, actor="bench")
        times.append(time.perf_counter() - started)
        print(f"  golden {golden_id}: {times[-1]:.2f} s, {sum(erasure.counts.values())} rows")
    print(
        f"erasure: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
        f"per person in {args.golden:,} golden records ({records:,} source records)"
    )
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
