"""Survivorship benchmark: recompute N golden records after a rule change, rows/s.

    DATABASE_URL=postgres://.../aurum_bench python bench/survivorship.py [--golden 200000]

Builds N customer golden records with 1-3 members each from three generated source systems
(``bench-crm``, ``bench-erp``, ``bench-shop``), written with COPY on PostgreSQL.  Then times:

1. the first build of every golden record under the default rules;
2. the preview of a rule change (every strategy kind in one rule set), which writes nothing;
3. the recompute job after saving that change (``survivorship_recompute``, in-process, the
   code a Celery worker runs), with its history rows;
4. the same job again, which finds nothing to change.

It empties the source record, golden record and cross-reference tables (all domains) and the
customer domain's survivorship rules: use a bench database.  Figures are golden records per second.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from bench.figures import Figures, load_average  # noqa: E402
from mdm.bulk import NEXT_IDS_SQL, RecordRow, records_create  # noqa: E402
from mdm.models import (  # noqa: E402
    CrossReference,
    GoldenRecord,
    RecordChange,
    SourceRecord,
    SurvivorshipJob,
    SurvivorshipRuleSet,
)
from mdm.services import survivorship as services  # noqa: E402
from mdm.services.sources import source_system_upsert  # noqa: E402
from mdm.survivorship import default_rules  # noqa: E402

DOMAIN = "customer"
SOURCES = (("bench-crm", 10), ("bench-erp", 20), ("bench-shop", 30))
GIVEN = [
    "Ann",
    "Anne",
    "Bob",
    "Bobby",
    "Cara",
    "Dan",
    "Eve",
    "Finn",
    "Gina",
    "Hugo",
    "Iris",
    "Jack",
    "Kate",
    "Liam",
    "Mia",
    "Noah",
]
FAMILY = [
    "Lee",
    "Smith",
    "Brown",
    "Jones",
    "Patel",
    "Garcia",
    "Muller",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Nguyen",
    "Kim",
]
CITIES = (("London", "SW1A 1AA"), ("Leeds", "LS1 4AP"), ("York", "YO1 7HH"), ("Bath", "BA1 1AA"))
CHANGE = {
    "rules": {
        "email": {
            "strategy": "source_priority",
            "sources": ["bench-shop", "bench-erp", "bench-crm"],
            "decay_half_life_days": 365,
        },
        "given_name": {"strategy": "most_frequent", "tie_breakers": ["most_recent"]},
        "family_name": {"strategy": "longest", "tie_breakers": ["source_priority"]},
        "phone": {"strategy": "aggregate", "tie_breakers": ["most_recent"]},
        "address": {"strategy": "preferred_source", "sources": ["bench-erp"]},
        "consent_email": {"strategy": "most_recent", "tie_breakers": []},
    }
}
BATCH = 50_000
T = TypeVar("T")


def _table(model: type) -> str:
    return model._meta.db_table  # type: ignore[attr-defined]


def reset() -> None:
    """Empty the record and golden tables (TRUNCATE: a row-by-row delete writes history)."""
    tables = [
        _table(m)
        for m in (
            CrossReference,
            CrossReference.history.model,
            GoldenRecord,
            GoldenRecord.history.model,
            RecordChange,
            SourceRecord,
            SourceRecord.history.model,
        )
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    SurvivorshipRuleSet.objects.filter(domain=DOMAIN).delete()
    SurvivorshipJob.objects.filter(domain=DOMAIN).delete()


def person(rng: random.Random, i: int) -> dict[str, object]:
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    city, postcode = rng.choice(CITIES)
    return {
        "given_name": given,
        "family_name": family,
        "email": f"{given.lower()}.{family.lower()}{i}@example.com",
        "phone": f"+4420794{i % 100000:05d}",
        "address_line1": f"{rng.randint(1, 200)} High St",
        "city": city,
        "postal_code": postcode,
        "country": "GB",
        "consent_email": rng.random() < 0.5,
    }


def variant(rng: random.Random, base: dict[str, object], i: int) -> dict[str, object]:
    """The same person as another system holds them: some values differ, some are missing."""
    record = dict(base)
    if rng.random() < 0.4:
        record["email"] = f"{base['given_name']}{i}@mail.example".lower()
    if rng.random() < 0.3:
        record["given_name"] = rng.choice(GIVEN)
    if rng.random() < 0.3:
        record["family_name"] = f"{base['family_name']}-{rng.choice(FAMILY)}"
    if rng.random() < 0.3:
        record["phone"] = f"+4479460{i % 100000:05d}"
    if rng.random() < 0.3:
        city, postcode = rng.choice(CITIES)
        record.update(city=city, postal_code=postcode, address_line1="1 Station Rd")
    if rng.random() < 0.5:
        record["consent_email"] = not record["consent_email"]
    for name in ("phone", "email"):
        if rng.random() < 0.1:
            record.pop(name, None)
    return record


def build(n: int, seed: int) -> int:
    """N golden records with their members; returns the number of source records."""
    rng = random.Random(seed)
    systems = [source_system_upsert(code=c, priority=p)[0] for c, p in SOURCES]
    now = datetime.now(UTC)
    total = 0
    with connection.cursor() as cursor:
        cursor.execute(NEXT_IDS_SQL, [_table(GoldenRecord), "id", n])
        golden_ids = [row[0] for row in cursor.fetchall()]
    for start in range(0, n, BATCH):
        ids = golden_ids[start : start + BATCH]
        records: list[RecordRow] = []
        owner: list[int] = []
        for offset, gid in enumerate(ids):
            i = start + offset
            base = person(rng, i)
            for k, system in enumerate(rng.sample(systems, rng.choice((1, 2, 2, 3, 3)))):
                attributes = base if k == 0 else variant(rng, base, i)
                records.append(
                    RecordRow(
                        pk=None,
                        source_system_id=system.pk,
                        domain=DOMAIN,
                        source_key=f"{system.code}-{i}",
                        attributes=attributes,
                        raw=attributes,
                        content_hash=f"{i:032x}",
                        version=1,
                        received_at=now,
                        source_updated_at=now - timedelta(days=rng.randint(0, 1500)),
                        is_deleted=False,
                        deleted_at=None,
                        ingest_run_id=None,
                    )
                )
                owner.append(gid)
        with transaction.atomic():
            records_create(records, history_date=now, reason="bench")
            with connection.cursor() as cursor:
                with cursor.copy(
                    f"COPY {_table(GoldenRecord)} (id, domain, status, attributes, provenance, "
                    "version, created_at, updated_at) FROM STDIN"
                ) as copy:
                    for gid in ids:
                        copy.write_row((gid, DOMAIN, "active", "{}", "{}", 1, now, now))
                with cursor.copy(
                    f"COPY {_table(CrossReference)} (record_id, golden_id, linked_by, linked_at) "
                    "FROM STDIN"
                ) as copy:
                    for record, gid in zip(records, owner, strict=True):
                        copy.write_row((record.pk, gid, "match", now))
        total += len(records)
        print(f"  built {min(start + BATCH, n):,} golden records, {total:,} source records")
    with connection.cursor() as cursor:
        for model in (SourceRecord, GoldenRecord, CrossReference):
            cursor.execute(f"ANALYZE {_table(model)}")
    return total


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


FIGURES = Figures(None)


def timed(
    label: str, n: int, func: Callable[..., T], *args: Any, key: str = "", **kwargs: Any
) -> T:
    """Run and print wall time, rate, and this process's CPU time (the rest is the
    database, or waiting for a core on a busy machine)."""
    cpu, start = _cpu(), time.perf_counter()
    result = func(*args, **kwargs)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    print(f"{label:<42} {seconds:7.1f} s {n / seconds:9,.0f} golden records/s  (CPU {cpu:5.1f} s)")
    if key:
        on = f"{n:,} golden records, postgresql, {load_average()}"
        FIGURES.add(f"survivorship.{key}", f"golden {label}", n / seconds, "golden/s", on)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=int, default=200_000, help="golden records")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="20,000 golden records")
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/suite.py)")
    args = parser.parse_args()
    FIGURES.path = args.json
    n = 20_000 if args.quick else args.golden
    if connection.vendor != "postgresql":
        sys.exit("Point DATABASE_URL at a PostgreSQL bench database (COPY is the measured path).")
    print(f"database {connection.settings_dict['NAME']}, {n:,} golden records")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    reset()
    records = build(n, args.seed)
    print(f"{records:,} source records ({records / n:.2f} per golden record)")

    first = timed(
        "first build under the default rules",
        n,
        services.golden_records_recompute,
        domain=DOMAIN,
        rules=default_rules(DOMAIN),
        reason="bench: first build",
        key="first_build_per_s",
    )
    preview = timed(
        "preview of the rule change (no writes)",
        n,
        services.survivorship_rules_preview,
        domain=DOMAIN,
        spec=CHANGE,
    )
    services._send = lambda job_id: None  # the job runs below, in this process
    _, job = services.survivorship_rules_update(
        domain=DOMAIN, spec=CHANGE, expected_version=0, comment="bench"
    )
    job = timed(
        "recompute job after the rule change",
        n,
        services.survivorship_recompute,
        job_id=job.pk,
        key="recompute_per_s",
    )
    again = timed(
        "recompute again (nothing to change)",
        n,
        services.golden_records_recompute,
        domain=DOMAIN,
        reason="bench: again",
    )
    print(
        f"first build changed {first.changed:,}; preview: {preview.changed:,} would change "
        f"values, {preview.provenance_only:,} only provenance; job {job.status}: "
        f"{job.changed:,} of {job.total:,} changed; again: {again.changed:,} changed"
    )
    print(
        f"load average {os.getloadavg()[0]:.1f}; "
        f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"
    )


if __name__ == "__main__":
    main()
