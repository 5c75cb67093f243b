"""The figures a benchmark hands to the suite (``bench/suite.py``): ``--json PATH``.

Each benchmark keeps printing its own report; with ``--json`` it also writes a list of
figures, each with its value, unit and what it was measured on.  Plain data, no Django.
"""

from __future__ import annotations

import json
import os
import resource
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Figure:
    key: str  # stable name, e.g. "ingest.fresh_rows_per_s"
    label: str  # what a reader sees in the table
    value: float | None  # None: not measured (the note says why)
    unit: str
    on: str = ""  # what it was measured on: rows, database, load
    note: str = ""


class Figures:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.items: list[Figure] = []

    def add(
        self, key: str, label: str, value: float | None, unit: str, on: str = "", note: str = ""
    ) -> None:
        self.items.append(Figure(key, label, value, unit, on, note))
        self.write()

    def write(self) -> None:
        """Written after every figure, so a benchmark that dies half-way keeps the rest."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps([asdict(f) for f in self.items], indent=2))


# The server settings a bulk write's speed depends on (docs/performance.md recommends values).
SERVER_SETTINGS = ("shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_buffers")


def server_settings() -> str:
    """The PostgreSQL settings a figure was measured with ("" on another database)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return ""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
            [list(SERVER_SETTINGS)],
        )
        found = dict(cursor.fetchall())
    return ", ".join(f"{name} {found[name]}" for name in SERVER_SETTINGS if name in found)


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024
