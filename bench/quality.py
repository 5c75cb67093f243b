"""Data-quality benchmark: a whole-domain check of N customer records with one rule of each
kind, in records/s, then the same check again (issues seen again, none opened).

    DATABASE_URL=postgres://.../aurum_bench python bench/quality.py [--records 100000]

It deletes the customer domain's source records, quality rules, runs and issues first: use a
bench database.  Tasks are not opened (the rules have ``opens_tasks`` off), so the figure is
the check itself.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.figures import Figures, load_average  # noqa: E402
from mdm.models import QualityIssue, QualityRule, QualityRun, SourceRecord  # noqa: E402
from mdm.services.quality import quality_check_run  # noqa: E402
from mdm.services.sources import source_system_upsert  # noqa: E402

RULES = [
    ("email-present", "completeness", "email", {}),
    ("email-valid", "validity", "email", {}),
    ("email-unique", "uniqueness", "email", {}),
    (
        "org-named",
        "consistency",
        "organisation_name",
        {"when": "party_type", "equals": "organisation"},
    ),
    ("fresh", "freshness", "", {"max_age_days": 365}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/suite.py)")
    args = parser.parse_args()
    figures = Figures(args.json)
    rng = random.Random(8)
    system, _ = source_system_upsert(code="bench-dq", name="Bench DQ")
    QualityRun.objects.filter(domain="customer").delete()
    QualityRule.objects.filter(domain="customer").delete()
    SourceRecord.objects.filter(domain="customer").delete()
    now = timezone.now()
    batch = []
    for i in range(args.records):
        attributes: dict[str, object] = {"full_name": f"Person {i}", "party_type": "person"}
        roll = rng.random()
        if roll > 0.05:
            attributes["email"] = f"p{i % (args.records - 500)}@example.com"
        if roll < 0.01:
            attributes["email"] = f"broken{i}@"
        if roll > 0.97:
            attributes["party_type"] = "organisation"
        batch.append(
            SourceRecord(
                source_system=system, domain="customer", source_key=str(i),
                attributes=attributes, content_hash=str(i), received_at=now,
            )
        )  # fmt: skip
    SourceRecord.objects.bulk_create(batch, batch_size=5000)
    for name, kind, attribute, params in RULES:
        QualityRule.objects.create(
            domain="customer", name=name, kind=kind, attribute=attribute, params=params,
            opens_tasks=False,
        )  # fmt: skip
    print(f"{args.records:,} records, {len(RULES)} rules, {connection.vendor}")
    on = f"{args.records:,} customer records, {len(RULES)} rules, {connection.vendor}"
    for key, label in (("first", "first check"), ("second", "second check")):
        started = time.perf_counter()
        run = quality_check_run(domain="customer", trigger="manual")
        took = time.perf_counter() - started
        print(
            f"{label}: {took:.2f} s, {args.records / took:,.0f} records/s, "
            f"{run.failures:,} failures, {run.issues_opened:,} opened"
        )
        figures.add(
            f"quality.{key}_records_per_s",
            f"data-quality check, {label}",
            args.records / took,
            "records/s",
            f"{on}, {load_average()}",
        )
    # The next benchmark (matching) must not match these records: remove them, set-based
    # (Django's delete would write a history row per record, one at a time).
    QualityIssue.objects.filter(record__source_system=system)._raw_delete(connection.alias)
    SourceRecord.objects.filter(source_system=system)._raw_delete(connection.alias)
    QualityRun.objects.filter(domain="customer").delete()
    QualityRule.objects.filter(domain="customer").delete()


if __name__ == "__main__":
    main()
