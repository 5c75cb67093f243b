"""Golden-record apply alone: a full run's ``golden_records_apply_clusters`` from scratch.

    DATABASE_URL=postgres://.../aurum_bench python bench/golden_apply.py [--domain customer]
                                                                         [--repeat 3] [--breakdown]

Run it after ``bench/matching_speed.py`` (whose full match leaves a clustering). The
domain's cross-reference is read as the clustering (record id -> golden id); then, in a
transaction rolled back at the end of each run, the domain's links and golden records are
removed (not timed) and the apply runs from scratch as a full run's does: every golden
record new, every record linked. Each run is made both ways, alternating: with the next
chunk's members read and survived by a helper process on its own connection while this
one writes (``members_committed=True``, what a full run does) and inline (each chunk read,
survived, then written). It prints the wall time of each run, this process's CPU time and
the CPU time of the transaction's PostgreSQL backend (on the same machine), then the
medians; ``--aside-only`` makes only the runs with members read aside. ``--breakdown``
also prints, for the runs with members read aside, the wall time and backend CPU of each
write step (COPY of golden records and of cross-references, their history rows, ids from
the sequence). A rolled-back run leaves dead rows: on the same
database each run is a little slower than the one before.
Nothing is changed in the database.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault("DEBUG", "false")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from bench.figures import load_average  # noqa: E402
from mdm import bulk  # noqa: E402
from mdm.models import CrossReference, GoldenRecord  # noqa: E402
from mdm.services import golden  # noqa: E402
from mdm.services.golden import golden_records_apply_clusters  # noqa: E402


class _RolledBack(Exception):
    pass


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --breakdown: (wall s, backend CPU s, calls) of each bulk write step, by step and model.
STEPS: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0])
_BACKEND: list[int] = []


def _timed(name: str, label: str) -> None:
    """Wrap ``mdm.bulk.<name>`` so that its calls on this thread add to ``STEPS``."""
    inner = getattr(bulk, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        if threading.current_thread() is not threading.main_thread() or not _BACKEND:
            return inner(*args, **kwargs)
        model = getattr(args[0], "__name__", "") if args else ""
        step = STEPS[f"{label} {model}".strip()]
        backend, wall = _backend_cpu(_BACKEND[0]), time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            step[0] += time.perf_counter() - wall
            step[1] += _backend_cpu(_BACKEND[0]) - backend
            step[2] += 1

    setattr(bulk, name, wrapper)


def _breakdown() -> None:
    _timed("_copy_rows", "COPY into")
    _timed("_history_from_rows", "history rows of")
    _timed("_history_from_values", "history rows (from values) of")
    _timed("_next_ids", "ids from the sequence of")
    submit = golden._AsideReader.submit

    def timed_submit(reader: Any, groups: list[list[int]]) -> Any:
        future = submit(reader, groups)
        result = future.result

        def timed_result(*args: Any, **kwargs: Any) -> Any:
            step, wall = STEPS["waiting for the reader's next chunk"], time.perf_counter()
            try:
                return result(*args, **kwargs)
            finally:
                step[0] += time.perf_counter() - wall
                step[1] += float("nan")
                step[2] += 1

        future.result = timed_result  # type: ignore[method-assign]
        return future

    golden._AsideReader.submit = timed_submit  # type: ignore[method-assign,assignment]


def _run(domain: str, clusters: dict[int, int], *, aside: bool) -> tuple[float, float, float]:
    """(wall s, this process's CPU s, the backend's CPU s) of one apply, rolled back."""
    with connection.cursor() as cursor:
        cursor.execute("SET jit = off")
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    local = connection.vendor == "postgresql" and Path(f"/proc/{pid}/stat").exists()
    _BACKEND[:] = [pid] if local else []
    figures = (0.0, 0.0, 0.0)
    try:
        with transaction.atomic():
            links = CrossReference.objects.filter(golden__domain=domain)
            links._raw_delete(links.db)  # set-based: no collector over a million rows
            golden = GoldenRecord.objects.filter(domain=domain)
            golden.update(survivor=None)
            golden._raw_delete(golden.db)
            backend = _backend_cpu(pid) if local else 0.0
            cpu, wall = time.process_time(), time.perf_counter()
            result = golden_records_apply_clusters(
                domain=domain, clusters=clusters, reason="bench", members_committed=aside
            )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            backend = (_backend_cpu(pid) - backend) if local else float("nan")
            if result.created != len(set(clusters.values())):
                raise SystemExit(f"{result.created} golden records created, expected more")
            figures = (wall, cpu, backend)
            raise _RolledBack
    except _RolledBack:
        pass
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--domain", default="customer")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--aside-only",
        action="store_true",
        help="only the runs with members read aside (what a full run does)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also print each write step's wall and PostgreSQL backend CPU (members read aside)",
    )
    args = parser.parse_args()
    if args.breakdown:
        _breakdown()
    clusters = dict(
        CrossReference.objects.filter(golden__domain=args.domain).values_list(
            "record_id", "golden_id"
        )
    )
    if not clusters:
        sys.exit(f"no cross-reference in {args.domain}: run bench/matching_speed.py first")
    print(
        f"golden apply from scratch: {len(clusters):,} records, "
        f"{len(set(clusters.values())):,} golden records, {connection.vendor}"
    )
    results: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for i in range(args.repeat):
        for aside in (True,) if args.aside_only else (True, False):
            STEPS.clear()
            figures = _run(args.domain, clusters, aside=aside)
            results[aside].append(figures)
            way = "members read aside" if aside else "inline            "
            print(
                f"  run {i + 1} {way}  wall {figures[0]:7.2f} s  this process CPU "
                f"{figures[1]:6.2f} s  PostgreSQL backend CPU {figures[2]:6.2f} s  "
                f"{load_average()}",
                flush=True,
            )
            if args.breakdown and aside:
                for step, (wall, backend, calls) in sorted(STEPS.items()):
                    cpu = "     -" if backend != backend else f"{backend:6.2f}"  # nan: none
                    print(
                        f"    {step:38} wall {wall:7.2f} s  backend CPU {cpu} s  {int(calls)} calls"
                    )
    for aside in (True, False):
        walls = [f[0] for f in results[aside]]
        if not walls:
            continue
        way = "members read aside (a full run)" if aside else "inline"
        print(f"median wall, {way}: {statistics.median(walls):.2f} s")


if __name__ == "__main__":
    main()
