"""Connector benchmark: a delta pull of N changed rows from a MariaDB "ERP" table.

    python bench/connector_mariadb.py [--rows 100000] [--batch-size 5000]
        [--mariadb-url mysql://root@127.0.0.1:3306/]

Creates a throw-away MariaDB database with N generated customers (the rows of
``bench/ingest.py``), runs the connector once for the first full load, then changes every
row (a new e-mail and updated-at) and times the delta pull of those N changed rows through
the connector: read from MariaDB, map, normalise, write records, history and match markers,
batch by batch.  It does so once per ``--workers`` value (0: one process; 1: mapping and
normalising in a worker process while the previous batch is written), so their ratio is
measured within one run.  It also times reading the same rows from MariaDB alone, so the share of
the source read is visible.  The hub database is DATABASE_URL (SQLite by default); the
bench source system's earlier records are removed first.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault("AURUM_MATCH_AFTER_INGEST", "0")
os.environ.setdefault("AURUM_QUALITY_AFTER_INGEST", "0")

import django  # noqa: E402

django.setup()

import pymysql  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import override_settings  # noqa: E402

from bench.ingest import MAPPING, customer_row, reset  # noqa: E402
from mdm.connectors.readers import DatabaseReader  # noqa: E402
from mdm.models import Connector  # noqa: E402
from mdm.services.connectors import connector_run, connector_upsert  # noqa: E402
from mdm.services.sources import source_mapping_register  # noqa: E402

COLUMNS = [
    "id",
    "first",
    "last",
    "dob",
    "sex",
    "email",
    "phone",
    "house",
    "street",
    "city",
    "zip",
    "country",
    "optin",
    "updated",
]


def server(url: str, database: str | None = None) -> pymysql.connections.Connection:
    u = urlsplit(url)
    return pymysql.connect(
        host=u.hostname or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        database=database,
        autocommit=True,
    )


def fill(url: str, name: str, rows: int, seed: int = 7) -> None:
    with server(url) as conn:
        conn.cursor().execute(f"CREATE DATABASE {name}")
    rng = random.Random(seed)
    with server(url, name) as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE customers (id VARCHAR(20) PRIMARY KEY, first VARCHAR(50), "
            "last VARCHAR(50), dob VARCHAR(10), sex CHAR(1), email VARCHAR(200), "
            "phone VARCHAR(40), house INT, street VARCHAR(100), city VARCHAR(100), "
            "zip VARCHAR(10), country CHAR(2), optin CHAR(1), updated DATETIME(6) NOT NULL, "
            "KEY customers_updated (updated))"
        )
        batch = []
        for i in range(rows):
            batch.append(tuple(customer_row(rng, i, "2026-11-01 09:00:00")))
            if len(batch) == 5000 or i == rows - 1:
                cur.executemany(
                    f"INSERT INTO customers ({', '.join(COLUMNS)}) VALUES "  # noqa: S608
                    f"({', '.join(['%s'] * len(COLUMNS))})",
                    batch,
                )
                batch = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--mariadb-url", default="mysql://root@127.0.0.1:3306/")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 1],
        help="AURUM_INGEST_WORKERS for each timed delta (each changes every row again)",
    )
    args = parser.parse_args()

    name = f"aurum_conn_bench_{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    fill(args.mariadb_url, name, args.rows)
    print(
        f"connector benchmark: {args.rows:,} rows in MariaDB table {name}.customers "
        f"(filled in {time.perf_counter() - t:.1f} s); hub database {connection.vendor}; "
        f"batches of {args.batch_size:,}; load average {os.getloadavg()[0]:.2f}"
    )
    try:
        Connector.objects.filter(name="bench-erp").delete()
        reset()
        mapping, _, _ = source_mapping_register(spec=MAPPING)
        connector, _ = connector_upsert(
            name="bench-erp",
            kind="database",
            source_system=mapping.source_system,
            domain="customer",
            mapping=mapping,
            config={
                "url": f"{args.mariadb_url.rstrip('/')}/{name}",
                "table": "customers",
                "key_column": "id",
                "watermark_column": "updated",
            },
            batch_size=args.batch_size,
        )

        def timed(label: str) -> None:
            t = time.perf_counter()
            run = connector_run(connector_id=connector.pk)
            seconds = time.perf_counter() - t
            if run.status != "succeeded":
                raise SystemExit(f"{label} failed: {run.error}")
            print(
                f"  {label:<22} {run.read_count:>9,} rows in {seconds:7.2f} s = "
                f"{run.read_count / seconds:>8,.0f} rows/s  (created {run.created_count:,}, "
                f"updated {run.updated_count:,}, unchanged {run.unchanged_count:,})"
            )

        timed("first full load")
        for workers in args.workers:
            with server(args.mariadb_url, name) as conn:
                conn.cursor().execute(
                    "UPDATE customers SET email = CONCAT('w', %s, '.', email), updated = NOW(6)",
                    [workers],
                )
            with override_settings(AURUM_INGEST_WORKERS=workers):
                timed(f"delta, {workers} worker(s)")
        reader = DatabaseReader(connector.config, "")
        t = time.perf_counter()
        read = sum(1 for _ in reader.rows(None, args.batch_size))
        seconds = time.perf_counter() - t
        print(
            f"  {'MariaDB read alone':<22} {read:>9,} rows in {seconds:7.2f} s = "
            f"{read / seconds:>8,.0f} rows/s"
        )
        timed("delta, nothing changed")
    finally:
        with server(args.mariadb_url) as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")


if __name__ == "__main__":
    main()
