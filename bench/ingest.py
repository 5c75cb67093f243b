"""Ingest benchmark: N generated customer rows through the same path as `manage.py ingest`.

    python bench/ingest.py [--rows 1000000] [--chunk-size 5000]

Runs against the configured database (DATABASE_URL; SQLite by default).  Prints rows/s for a
fresh load and for a re-load of the unchanged file, and the process's peak memory.  The rows
belong to a source system `bench`, whose records are removed first and at the end
(`--keep-records` leaves them).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from bench.figures import Figures, load_average  # noqa: E402
from mdm.mapping import compile_mapping  # noqa: E402
from mdm.models import IngestRun, QuarantinedPayload, RecordChange, SourceRecord  # noqa: E402
from mdm.services.ingest import source_records_ingest_file  # noqa: E402
from mdm.services.sources import source_mapping_register, source_system_upsert  # noqa: E402

GIVEN = (
    "Ann Bob Cara Dan Eve Finn Gina Hugo Iris Jack Kate Liam Mia Noah Olga Paul Rosa Sam Tara Ugo"
)
FAMILY = "Lee Smith Brown Jones Patel Garcia Müller Rossi Dubois Kowalski Nguyen Kim Silva Cohen"
STREETS = "High St|Station Rd|Church Lane|Park Ave|Mill Road|King St|Queen St|Bridge Rd|Elm Grove"
CITIES = {
    "US": ["New York", "Boston", "Chicago", "Denver", "Austin"],
    "GB": ["London", "Leeds", "Bristol", "York", "Bath"],
    "AU": ["Sydney", "Perth", "Hobart", "Darwin", "Cairns"],
    "DE": ["Berlin", "Köln", "Bonn", "Essen", "Kiel"],
}
HEADER = [
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
MAPPING = {
    "source": "bench",
    "domain": "customer",
    "name": "bench",
    "key": {"field": "id"},
    "updated_at": {"field": "updated"},
    "attributes": {
        "given_name": "first",
        "family_name": "last",
        "date_of_birth": {"field": "dob", "format": "%d/%m/%Y"},
        "gender": {"field": "sex", "map": {"F": "female", "M": "male"}},
        "email": "email",
        "phone": "phone",
        "address_line1": {"template": "{house} {street}"},
        "city": "city",
        "postal_code": "zip",
        "country": "country",
        "consent_email": {"field": "optin", "map": {"Y": True, "N": False}},
    },
}


def phone(rng: random.Random, country: str) -> str:
    if country == "US":
        area = rng.choice([212, 415, 617, 312, 303])
        return f"({area}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
    if country == "GB":
        return f"020 {rng.choice([7, 8])}{rng.randint(0, 999):03d} {rng.randint(0, 9999):04d}"
    if country == "AU":
        return f"(02) 9{rng.randint(0, 999):03d} {rng.randint(0, 9999):04d}"
    return f"030 {rng.randint(1000000, 9999999)}"


_GIVEN, _FAMILY, _STREETS = GIVEN.split(), FAMILY.split(), STREETS.split("|")
_COUNTRIES = list(CITIES)


def customer_row(rng: random.Random, i: int, updated: str) -> list[Any]:
    """Row ``i`` of the generated customer export, in ``HEADER``'s order."""
    first, last = rng.choice(_GIVEN), rng.choice(_FAMILY)
    country = _COUNTRIES[i % 4]
    return [
        f"B{i:08d}",
        first,
        last,
        f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1940, 2005)}",
        rng.choice("FM"),
        f"{first}.{last}.{i}@example.com".lower(),
        phone(rng, country),
        rng.randint(1, 300),
        rng.choice(_STREETS),
        rng.choice(CITIES[country]),
        f"{rng.randint(10000, 99999)}",
        country,
        rng.choice("YN"),
        updated,
    ]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(rows):
            w.writerow(customer_row(rng, i, "2024-05-01T10:00:00Z"))


def reset() -> None:
    """Remove the bench source's earlier records (and their history) set-based."""
    system, _ = source_system_upsert(code="bench", name="Benchmark")
    history = SourceRecord.history.model._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"DELETE FROM {history} WHERE source_system_id = %s", [system.pk])  # noqa: S608
    RecordChange.objects.filter(record__source_system=system).delete()
    QuarantinedPayload.objects.filter(source_system=system).delete()
    SourceRecord.objects.filter(source_system=system)._raw_delete(connection.alias)
    IngestRun.objects.filter(source_system=system).delete()


def peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated CSV")
    parser.add_argument(
        "--keep-records", action="store_true", help="leave the ingested records in the database"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/suite.py)")
    args = parser.parse_args()
    figures = Figures(args.json)

    db = connection.vendor
    tmp = Path(tempfile.mkdtemp(prefix="aurum-bench-"))
    path = tmp / "customers.csv"
    t0 = time.perf_counter()
    generate(path, args.rows)
    gen_s = time.perf_counter() - t0
    reset()
    mapping_obj, compiled, _ = source_mapping_register(spec=MAPPING)
    compiled = compile_mapping(mapping_obj.spec)

    print(
        f"ingest benchmark: {args.rows:,} customer rows, database {db}, "
        f"CSV {path.stat().st_size / 1e6:.0f} MB generated in {gen_s:.1f} s"
    )
    on = f"{args.rows:,} customer rows, {db}, {load_average()}"
    for key, label in (("fresh", "fresh load"), ("unchanged", "unchanged re-load")):
        t = time.perf_counter()
        result = source_records_ingest_file(
            path=path,
            source_system=mapping_obj.source_system,
            mapping=compiled,
            mapping_obj=mapping_obj,
            chunk_size=args.chunk_size,
        )
        seconds = time.perf_counter() - t
        c = result.counts
        rate = c.read / seconds
        print(
            f"  {label:<18} {c.read:>9,} rows in {seconds:7.2f} s = {rate:>9,.0f} rows/s"
            f"  (created {c.created:,}, unchanged {c.unchanged:,}, quarantined {c.quarantined:,})"
        )
        figures.add(f"ingest.{key}_rows_per_s", f"file ingest, {label}", rate, "rows/s", on)
    print(
        f"  peak memory (RSS)  {peak_mb():,.0f} MB main process, "
        f"{peak_mb(resource.RUSAGE_CHILDREN):,.0f} MB largest worker process"
    )
    figures.add("ingest.peak_rss_mb", "file ingest, peak RSS", peak_mb(), "MB", on)
    if db == "postgresql":
        # What a source record costs on disk, its history row and indexes included: the basis
        # of the storage estimate in docs/performance.md.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE mdm_sourcerecord")
            cursor.execute(
                "SELECT pg_total_relation_size('mdm_sourcerecord')"
                " + pg_total_relation_size('mdm_historicalsourcerecord'),"
                " (SELECT count(*) FROM mdm_sourcerecord)"
            )
            size, count = cursor.fetchall()[0]
        per_record = size / max(count, 1)
        print(f"  on disk            {per_record:,.0f} bytes per source record (history, indexes)")
        figures.add(
            "ingest.bytes_per_record",
            "PostgreSQL size per source record (with history, indexes)",
            per_record,
            "bytes",
            f"{count:,} source records",
        )
    history_rows = SourceRecord.history.filter(source_system__code="bench").count()
    print(f"  history rows       {history_rows:,}")
    if not args.keep_records:  # the next benchmark (matching) must not match them too
        reset()
    if not args.keep:
        path.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
