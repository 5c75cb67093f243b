"""A real change to golden records that already exist: a changed ingest, then a rebuild.

A new golden record is written once (one history row, one 'created' event at version 1, its
attributes already computed); an 'updated' event comes only from a real later change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mdm.services.golden import golden_records_rebuild

URL = "/api/v1/customer/records"


def golden_records_change(
    api: Any, people: Iterable[Mapping[str, Any]], golden_ids: list[int]
) -> None:
    """Ingest ``people`` (changed values of existing source keys), then rebuild ``golden_ids``:
    each of them must get exactly one new version."""
    response = api.post(URL, {"records": [dict(p) for p in people]}, format="json")
    assert response.status_code == 200, response.content
    changed = golden_records_rebuild(domain="customer", golden_ids=golden_ids)
    assert changed == len(golden_ids)
