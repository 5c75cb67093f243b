"""Hierarchy benchmark: reading a hierarchy of 10,000 golden records through the API.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/aurum_bench_rel \\
        python bench/hierarchy.py [--nodes 10000] [--fanout 10] [--requests 40] [--skip-load]

Runs against the configured database (migrated first, treated as a bench database).  It
loads ``--nodes`` organisation records of the source system ``hierbench`` through ingestion
(identity mapping, each naming its parent's source key: a tree with ``--fanout`` children
per node), makes each its own golden record through the golden-record apply (which derives
the golden relationships, set-based, from the references), then times requests through
Django's full stack in this process, with a steward's user token:

- ``GET /api/v1/customer/golden/ROOT/hierarchy?down=10``: the whole tree (every node with
  its name, depth and parent), the figure the issue asks for;
- the hierarchy of a node in the middle (its ancestors and its subtree);
- a leaf's ancestors (``up=10&down=0``);
- ``GET .../golden/LEAF/relationships``;
- a refused steward edit (the root under a leaf: a cycle, 409), which walks the leaf's
  ancestors.

It prints the load figures and p50/p95/max per request after a warm-up.  Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

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

from mdm.mapping import identity_mapping  # noqa: E402
from mdm.models import (  # noqa: E402
    Channel,
    CrossReference,
    GoldenRecord,
    GoldenRelationship,
    SourceRecord,
)
from mdm.readers import SourceRow  # noqa: E402
from mdm.services.golden import golden_records_apply_clusters  # noqa: E402
from mdm.services.ingest import (  # noqa: E402
    ingest_run_start,
    source_records_ingest_rows,
)
from mdm.services.relationships import relationships_recompute  # noqa: E402
from mdm.services.sources import source_system_upsert  # noqa: E402
from mdm.services.user_tokens import user_token_issue  # noqa: E402

SOURCE = "hierbench"


def key(i: int) -> str:
    return f"N{i:06d}"


def parent_of(i: int, fanout: int) -> int | None:
    """Node 0 is the root; node i's parent is (i - 1) // fanout (a complete tree)."""
    return None if i == 0 else (i - 1) // fanout


def clear() -> None:
    system = SourceRecord.objects.filter(source_system__code=SOURCE)
    golden_ids = list(
        CrossReference.objects.filter(record__in=system).values_list("golden_id", flat=True)
    )
    with transaction.atomic():
        # Raw deletes: a bench database needs no history rows of its own clean-up.
        rels = GoldenRelationship.objects.filter(from_golden_id__in=golden_ids)
        rels._raw_delete(connection.alias)
        CrossReference.objects.filter(record__in=system)._raw_delete(connection.alias)
        GoldenRecord.objects.filter(pk__in=golden_ids).update(survivor=None)
        GoldenRecord.objects.filter(pk__in=golden_ids)._raw_delete(connection.alias)
        system.delete()


def load(nodes: int, fanout: int) -> dict[str, float]:
    system, _ = source_system_upsert(code=SOURCE, name="Hierarchy bench source")
    clear()
    mapping = identity_mapping("customer")
    rows = []
    for i in range(nodes):
        row: dict[str, Any] = {
            "source_key": key(i),
            "party_type": "organisation",
            "organisation_name": f"Company {i:05d} Ltd",
        }
        parent = parent_of(i, fanout)
        if parent is not None:
            row["references"] = {"child_of": key(parent)}
        rows.append(SourceRow(i + 1, row))
    figures: dict[str, float] = {}
    t = time.perf_counter()
    run = ingest_run_start(source_system=system, domain="customer", channel=Channel.FILE)
    for start in range(0, nodes, 5000):
        source_records_ingest_rows(run=run, mapping=mapping, rows=rows[start : start + 5000])
    figures["ingest (records + references)"] = time.perf_counter() - t
    ids = list(SourceRecord.objects.filter(source_system=system).values_list("id", flat=True))
    t = time.perf_counter()
    golden_records_apply_clusters(domain="customer", clusters={r: r for r in ids})
    figures["golden apply (incl. deriving the links)"] = time.perf_counter() - t
    return figures


def golden_of(i: int) -> int:
    return CrossReference.objects.get(
        record__source_system__code=SOURCE, record__source_key=key(i)
    ).golden_id


def timed(client: Client, method: str, url: str, requests: int, expect: int) -> list[float]:
    call = client.get if method == "get" else client.post
    response = call(url, content_type="application/json")  # warm-up
    assert response.status_code == expect, (url, response.status_code, response.content[:300])
    samples = []
    for _ in range(requests):
        t = time.perf_counter()
        response = call(url, content_type="application/json")
        if method == "get":
            _ = response.content
        samples.append(time.perf_counter() - t)
        assert response.status_code == expect
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    print(f"database: {connection.vendor}; load average: {os.getloadavg()}")
    if not args.skip_load:
        for what, seconds in load(args.nodes, args.fanout).items():
            print(f"{what}: {seconds:.2f} s for {args.nodes} nodes")
    active = GoldenRelationship.objects.filter(
        status="active", from_golden__members__record__source_system__code=SOURCE
    ).count()
    print(f"active child_of links: {active}")

    user, _ = User.objects.get_or_create(username="hierbench-steward")
    user.groups.add(Group.objects.get(name="steward"))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {user_token_issue(user=user).secret}")

    root, leaf = golden_of(0), golden_of(args.nodes - 1)
    middle = golden_of(1)
    api = "/api/v1/customer/golden"
    body = client.get(f"{api}/{root}/hierarchy?down=10").json()
    print(
        f"root hierarchy: {len(body['descendants'])} descendants, "
        f"depth {max(n['depth'] for n in body['descendants'])}, "
        f"{len(client.get(f'{api}/{root}/hierarchy?down=10').content) / 1e6:.1f} MB of JSON"
    )
    ids = list(
        CrossReference.objects.filter(record__source_system__code=SOURCE).values_list(
            "golden_id", flat=True
        )
    )
    t = time.perf_counter()
    relationships_recompute(golden_ids=ids, reason="bench: re-derive")
    print(f"re-derive every link (nothing changes): {time.perf_counter() - t:.2f} s")
    cases = [
        ("baseline: one golden record (GET golden/ID)", "get", f"{api}/{root}", 200),
        ("whole tree from the root (down=10)", "get", f"{api}/{root}/hierarchy?down=10", 200),
        ("a middle node (up=10, down=10)", "get", f"{api}/{middle}/hierarchy", 200),
        ("a leaf's ancestors (up=10, down=0)", "get", f"{api}/{leaf}/hierarchy?down=0", 200),
        ("a leaf's relationships", "get", f"{api}/{leaf}/relationships", 200),
    ]
    print(f"{'request':45} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, method, url, expect in cases:
        samples = timed(client, method, url, args.requests, expect)
        print(
            f"{label:45} {statistics.median(samples) * 1e3:8.1f} "
            f"{p95(samples) * 1e3:8.1f} {max(samples) * 1e3:8.1f}"
        )
    refused = []
    for _ in range(args.requests):
        t = time.perf_counter()
        response = client.post(
            f"{api}/{root}/relationships",
            {"type": "child_of", "to_golden_id": leaf},
            content_type="application/json",
        )
        refused.append(time.perf_counter() - t)
        assert response.status_code == 409, response.content
    label = "refused cycle (root under a leaf, 409)"
    print(
        f"{label:45} {statistics.median(refused) * 1e3:8.1f} "
        f"{p95(refused) * 1e3:8.1f} {max(refused) * 1e3:8.1f}"
    )


if __name__ == "__main__":
    main()
