"""Retention: the history of retired and erased records is purged after a period.

``AURUM_RETENTION_DAYS`` (default 730) sets the period.  For a golden record retired, or a
source record deleted, longer ago than that, every history row older than the period is
deleted except the newest (the row that says it was retired or deleted, which as-of reads
and the change feed still use); for an erased person, every history row left (the erasure's
tombstone rows) goes once the erasure is older than the period.  Active records keep their
whole history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from mdm.audit.services import audit_record
from mdm.models import CrossReference, ErasureRequest, GoldenRecord, SourceRecord


def retention_days() -> int:
    return int(getattr(settings, "AURUM_RETENTION_DAYS", 730))


def _history(model: Any) -> Any:
    return model.history.model


def _old_but_newest(
    history: Any, ids: QuerySet[Any], cutoff: datetime, key: str = "id"
) -> QuerySet[Any]:
    mine = history.objects.filter(**{f"{key}__in": ids})
    newest = mine.values(key).annotate(last=Max("history_id"))
    return mine.filter(history_date__lt=cutoff).exclude(history_id__in=newest.values("last"))


def _purgeable(cutoff: datetime) -> dict[str, QuerySet[Any]]:
    golden_h, record_h, xref_h = (
        _history(GoldenRecord),
        _history(SourceRecord),
        _history(CrossReference),
    )
    erased = ErasureRequest.objects.filter(erased_at__lt=cutoff)
    # An erasure's golden ids: the one asked for and those retired into it (from its audit).
    erased_goldens = GoldenRecord.objects.filter(pk__in=erased.values("golden_id")).values("pk")
    erased_records = CrossReference.objects.filter(golden_id__in=erased_goldens).values("record_id")
    retired = (
        GoldenRecord.objects.filter(status=GoldenRecord.Status.RETIRED, retired_at__lt=cutoff)
        .exclude(pk__in=erased_goldens)
        .values("pk")
    )
    deleted = (
        SourceRecord.objects.filter(is_deleted=True, deleted_at__lt=cutoff)
        .exclude(pk__in=erased_records)
        .values("pk")
    )
    return {
        "golden_history_retired": _old_but_newest(golden_h, retired, cutoff),
        "source_record_history_deleted": _old_but_newest(record_h, deleted, cutoff),
        "xref_history_deleted": _old_but_newest(xref_h, deleted, cutoff, key="record_id"),
        "golden_history_erased": golden_h.objects.filter(id__in=erased_goldens),
        "source_record_history_erased": record_h.objects.filter(id__in=erased_records),
        "xref_history_erased": xref_h.objects.filter(record_id__in=erased_records),
    }


def history_purge(
    *, dry_run: bool, days: int | None = None, now: datetime | None = None, actor: Any = None
) -> dict[str, int]:
    """Delete (or, with ``dry_run``, only count) the history rows the retention policy lets
    go, table by table: one DELETE statement each, in one transaction with an audit entry.
    Safe to repeat: a second run finds nothing more until time passes."""
    days = retention_days() if days is None else days
    if days < 1:
        raise ValueError("the retention period is at least one day")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    if dry_run:
        return {name: qs.count() for name, qs in _purgeable(cutoff).items()}
    with transaction.atomic():
        counts = {name: qs.delete()[0] for name, qs in _purgeable(cutoff).items()}
        audit_record(
            action="retention.purge",
            actor=actor,
            target_type="history",
            detail={"days": days, "cutoff": cutoff.isoformat(), "rows": counts},
        )
    return counts
