"""Shared fixtures of the matching tests: the labelled fake_1000 set from ../shared/data."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from matching.engine.interface import EngineRecord
from mdm.domains import customer


def fake_1000_rows() -> list[dict[str, str]]:
    """The rows of ``fake_1000.csv`` (skips the test when the shared data is not there)."""
    candidates = [Path(__file__).resolve().parents[3] / "shared" / "data"]
    if env := os.environ.get("AURUM_SHARED_DATA"):
        candidates.insert(0, Path(env))
    for folder in candidates:
        if (folder / "fake_1000.csv").is_file():
            with (folder / "fake_1000.csv").open(newline="", encoding="utf-8") as file:
                return list(csv.DictReader(file))
    pytest.skip(f"shared data not found (looked in {', '.join(map(str, candidates))})")


@pytest.fixture(scope="session")
def records() -> list[EngineRecord]:
    """fake_1000 as normalised customer records.  Values the domain rejects (e-mails such
    as "ao24@green.@net") are left out, as ingestion would quarantine them."""
    out = []
    for row in fake_1000_rows():
        attributes, _errors = customer.DOMAIN.normalise(
            {
                "given_name": row["first_name"],
                "family_name": row["surname"],
                "date_of_birth": row["dob"],
                "city": row["city"],
                "email": row["email"],
            }
        )
        out.append(EngineRecord(int(row["unique_id"]), attributes))
    return out
