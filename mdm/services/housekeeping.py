"""Housekeeping of the mdm app's own bookkeeping rows."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from mdm.models import IdempotencyKey


def idempotency_keys_purge(*, max_age_hours: int | None = None) -> int:
    """Delete idempotency keys older than the replay window (AURUM_IDEMPOTENCY_HOURS).

    Returns how many were deleted.  Safe to repeat.  A key older than the window is reusable:
    a retry after that long is a new request.
    """
    hours = max_age_hours if max_age_hours is not None else settings.AURUM_IDEMPOTENCY_HOURS
    cutoff = timezone.now() - timedelta(hours=hours)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
