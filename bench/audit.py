"""Audit trail benchmark: entries written per second (each in its own transaction, as a
service writes them), the chain verified per second, and what token use costs a request
once its hourly entry is written (the in-process memo).

    DATABASE_URL=postgres://.../aurum_bench python bench/audit.py [--entries 5000]

It appends to the audit trail of the database it runs on: use a bench database (the trail
is append-only, on PostgreSQL even for the benchmark).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from mdm.api import authentication  # noqa: E402
from mdm.audit.selectors import audit_chain_verify  # noqa: E402
from mdm.audit.services import audit_record  # noqa: E402
from mdm.services.sources import source_system_upsert, source_token_issue  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=5000)
    args = parser.parse_args()
    n = args.entries

    started = time.perf_counter()
    for i in range(n):
        with transaction.atomic():
            audit_record(
                action="bench.write", target_type="bench", target_id=i, detail={"i": i, "ids": [i]}
            )
    write = time.perf_counter() - started

    started = time.perf_counter()
    report = audit_chain_verify()
    verify = time.perf_counter() - started

    system, _ = source_system_upsert(code="bench-audit", name="bench")
    token = source_token_issue(source_system=system).token
    authentication._audit_token_use("source_token", token, "bench")  # the hour's one entry
    calls = 100_000
    started = time.perf_counter()
    for _ in range(calls):
        authentication._audit_token_use("source_token", token, "bench")
    memo = (time.perf_counter() - started) / calls

    print(f"database: {connection.vendor}")
    print(f"audit_record: {n} entries in {write:.2f} s = {n / write:,.0f} entries/s")
    print(
        f"verify_audit: {report.checked} entries in {verify:.2f} s = "
        f"{report.checked / verify:,.0f} entries/s (ok={report.ok})"
    )
    print(f"token use after the hour's entry: {memo * 1e6:.2f} µs per request")


if __name__ == "__main__":
    main()
