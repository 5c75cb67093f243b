"""The match store of each process: existing records prepared for fast scoring.

One store per domain and active model, built on first use from the database and kept in
step before every use: the source-record history is read after a watermark (its primary
key), so records ingested by any process since are upserted (or deleted) first.  Scoring a
candidate then needs no scan of the database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from matching.engine.interface import EngineRecord, MatchSpec, TrainedModel
from matching.models import MatchModel
from mdm.models import STEWARD_SOURCE, SourceRecord
from mdm.selectors import live_record_rows


@dataclass
class _Entry:
    model_id: int
    store: Any  # matching.engine.splink_engine.MatchStore
    watermark: int


_lock = threading.Lock()
_stores: dict[str, _Entry] = {}


def _history_max() -> int:
    history: Any = SourceRecord.history.model
    last = history.objects.order_by("-history_id").values_list("history_id", flat=True).first()
    return int(last or 0)


def engine_records(domain: str, ids: list[int] | None = None) -> list[EngineRecord]:
    # A steward's correction is no entity of its own: it stays with its golden record by a
    # must-link and is never scored against other records.
    rows = live_record_rows(
        domain=domain, columns=("id", "attributes"), ids=ids, exclude_sources=(STEWARD_SOURCE,)
    )
    return sorted(
        (EngineRecord(id=pk, attributes=attributes) for pk, attributes in rows),
        key=lambda r: r.id,
    )


def engine_records_stream(domain: str) -> Iterator[EngineRecord]:
    """The domain's live records as ``engine_records`` reads them, one at a time and in no
    particular order: from a server-side cursor on PostgreSQL, so a full run's engine can
    prepare them a chunk at a time without the whole domain alive in Python."""
    rows = live_record_rows(
        domain=domain, columns=("id", "attributes"), exclude_sources=(STEWARD_SOURCE,)
    )
    for pk, attributes in rows:
        yield EngineRecord(id=pk, attributes=attributes)


def store_for(domain: str, model: MatchModel, spec: MatchSpec, trained: TrainedModel) -> Any:
    """The up-to-date store of ``domain`` for ``model`` (built or refreshed as needed)."""
    from matching.engine.splink_engine import MatchStore

    with _lock:
        entry = _stores.get(domain)
        if entry is None or entry.model_id != model.pk:
            if entry is not None:
                entry.store.close()
            watermark = _history_max()
            store = MatchStore(spec, trained, engine_records(domain))
            _stores[domain] = entry = _Entry(model.pk, store, watermark)
            return store
        history: Any = SourceRecord.history.model
        changed = list(
            history.objects.filter(history_id__gt=entry.watermark, domain=domain).values_list(
                "history_id", "id"
            )
        )
        if changed:
            ids = sorted({pk for _, pk in changed})
            live = engine_records(domain, ids)
            entry.store.upsert(live)
            entry.store.delete(set(ids) - {r.id for r in live})
            entry.watermark = max(h for h, _ in changed)
        return entry.store


def stores_clear() -> None:
    """Drop every store of this process (tests; a retrained model replaces its own)."""
    with _lock:
        for entry in _stores.values():
            entry.store.close()
        _stores.clear()
