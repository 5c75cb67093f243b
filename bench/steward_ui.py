"""Steward workspace benchmark: server time of the queue page and the pair page.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aurum_bench_ui \\
        python bench/steward_ui.py [--tasks 50000] [--requests 60] [--seed 7] [--skip-load]

Runs against the configured database (point it at PostgreSQL for real figures; it is
migrated first and treated as a bench database).  It loads ``--tasks`` open potential-match
tasks in the customer domain (twice as many source records of the source system ``uibench``,
each in a golden record; a tenth of the tasks claimed, due times stamped by the service
level, some overdue), then times requests through Django's full stack (middleware, session,
role check, selectors, templates) in this process, logged in as a steward:

- the queue page, default sort (priority, due time), page 1;
- the queue filtered (domain, probability range, unassigned) and sorted by age;
- a deep page (page 500) of the queue;
- the htmx partial the filter form asks for;
- the pair page of random tasks (records side by side, contributions, history, next task).

It prints p50/p95/max per page after a warm-up request.  Nothing here is a test: the
figures go into the README and the closing note.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault("DEBUG", "false")  # production-like: no query log
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.figures import Figures, load_average  # noqa: E402
from mdm.models import CrossReference, GoldenRecord, SourceRecord  # noqa: E402
from mdm.services.sources import source_system_upsert  # noqa: E402
from stewardship.models import ReviewTask, TaskEvent  # noqa: E402
from stewardship.services import review_tasks_escalate  # noqa: E402

GIVEN = ["Ann", "Anne", "Bob", "Robert", "Cy", "Dora", "Eve", "Finn", "Gus", "Hana", "Ivo", "Jo"]
FAMILY = ["Lee", "Ray", "Day", "Novak", "Smith", "Okafor", "Garcia", "Kim", "Rossi", "Berg"]
COMPARISONS = ["given_name", "family_name", "email", "date_of_birth", "phone", "postcode"]


def load(tasks: int, seed: int) -> None:
    rng = random.Random(seed)
    system, _ = source_system_upsert(code="uibench", name="UI bench source")
    started = time.perf_counter()
    with transaction.atomic():
        # Raw deletes: a bench database needs no history rows of its own clean-up.
        TaskEvent.objects.all()._raw_delete(connection.alias)
        ReviewTask.objects.filter(domain="customer")._raw_delete(connection.alias)
        bench_records = SourceRecord.objects.filter(source_system=system)
        golden_ids = list(
            CrossReference.objects.filter(record__in=bench_records).values_list(
                "golden_id", flat=True
            )
        )
        CrossReference.objects.filter(record__in=bench_records)._raw_delete(connection.alias)
        GoldenRecord.objects.filter(pk__in=golden_ids)._raw_delete(connection.alias)
        bench_records._raw_delete(connection.alias)
        now = timezone.now()
        records = SourceRecord.objects.bulk_create(
            [
                SourceRecord(
                    source_system=system,
                    domain="customer",
                    source_key=f"U{i:07d}",
                    attributes={
                        "given_name": rng.choice(GIVEN),
                        "family_name": rng.choice(FAMILY),
                        "email": f"p{i // 2}@example.com" if rng.random() < 0.6 else f"x{i}@ex.org",
                        "country": "GB",
                    },
                    content_hash=f"{i:032d}",
                    received_at=now,
                )
                for i in range(tasks * 2)
            ],
            batch_size=5000,
        )
        goldens = GoldenRecord.objects.bulk_create(
            [GoldenRecord(domain="customer", attributes=r.attributes) for r in records],
            batch_size=5000,
        )
        CrossReference.objects.bulk_create(
            [
                CrossReference(record=r, golden=g, linked_at=now)
                for r, g in zip(records, goldens, strict=True)
            ],
            batch_size=5000,
        )
        steward = User.objects.get(username="bench-steward")
        ReviewTask.objects.bulk_create(
            [
                ReviewTask(
                    domain="customer",
                    left_record_id=records[2 * i].pk,
                    right_record_id=records[2 * i + 1].pk,
                    match_probability=round(rng.uniform(0.6, 0.95), 4),
                    explanation=[
                        {"attribute": c, "level": "l", "match_weight": round(rng.uniform(-6, 9), 2)}
                        for c in COMPARISONS
                    ],
                    assignee=steward if rng.random() < 0.1 else None,
                )
                for i in range(tasks)
            ],
            batch_size=5000,
        )
        # Spread the opening times over 60 days so that due times and escalation vary.
        ids = list(ReviewTask.objects.filter(domain="customer").values_list("id", flat=True))
        for offset in range(0, 60):
            ReviewTask.objects.filter(pk__in=ids[offset::60]).update(
                created_at=now - timedelta(days=offset, hours=rng.randint(0, 23))
            )
    escalated = review_tasks_escalate()
    print(
        f"loaded {tasks:,} open tasks, {tasks * 2:,} records"
        f" in {time.perf_counter() - started:.1f} s; {escalated:,} escalated"
    )


def timed(client: Client, url: str, n: int, headers: dict[str, str] | None = None) -> list[float]:
    response = client.get(url, headers=headers)  # warm-up
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


FIGURES = Figures(None)
ON = ""


def report(name: str, times: list[float], key: str = "") -> None:
    ordered = sorted(times)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    if key:
        FIGURES.add(f"steward_ui.{key}_p95_ms", f"steward UI, {name}, p95", p95, "ms", ON)
    print(
        f"{name:<44} n={len(times):<4} p50 {statistics.median(times):7.1f} ms"
        f"   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here (bench/suite.py)")
    args = parser.parse_args()
    global ON
    FIGURES.path = args.json

    call_command("migrate", verbosity=0)
    user, created = User.objects.get_or_create(username="bench-steward")
    if created:
        user.set_password("bench")
        user.save()
    user.groups.add(Group.objects.get_or_create(name="steward")[0])
    if not args.skip_load:
        load(args.tasks, args.seed)
    if connection.vendor == "postgresql":
        # The load rewrites every task a few times (opening times, due times, escalation);
        # autovacuum would clean up after it in a while, the bench does it now.
        with connection.cursor() as cursor:
            for table in ("stewardship_reviewtask", "stewardship_taskevent", "mdm_sourcerecord"):
                cursor.execute(f"VACUUM ANALYZE {table}")
    open_tasks = ReviewTask.objects.filter(status="open").count()
    print(
        f"database: {connection.vendor} ({connection.settings_dict['NAME']}), "
        f"{open_tasks:,} open tasks; {args.requests} requests per page after a warm-up"
    )
    ON = f"{open_tasks:,} open tasks, {connection.vendor}, {load_average()}"
    client = Client()
    client.force_login(user)
    n = args.requests
    report("queue, page 1 (priority, due)", timed(client, "/steward/queue/matches/", n), "queue")
    report(
        "queue, filtered + sorted by age",
        timed(
            client,
            "/steward/queue/matches/?domain=customer&min_p=0.7&max_p=0.9&assignee=none&sort=oldest",
            n,
        ),
    )
    report("queue, page 500", timed(client, "/steward/queue/matches/?page=500", n))
    report(
        "queue, htmx partial (filter change)",
        timed(
            client,
            "/steward/queue/matches/?sort=probability&overdue=1",
            n,
            {"HX-Request": "true", "HX-Target": "queue-table"},
        ),
    )
    rng = random.Random(args.seed)
    ids = list(ReviewTask.objects.filter(status="open").values_list("id", flat=True)[:5000])
    pair_times: list[float] = []
    for task_id in rng.sample(ids, min(n, len(ids))):
        pair_times += timed(client, f"/steward/tasks/{task_id}/", 1)
    report("pair page (random tasks)", pair_times, "pair")
    report("dashboard", timed(client, "/steward/", max(10, n // 4)))


if __name__ == "__main__":
    main()
