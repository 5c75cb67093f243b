"""Background jobs of the mdm app.  Thin: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from mdm.services.housekeeping import idempotency_keys_purge


@shared_task(name="mdm.purge_idempotency_keys")
def purge_idempotency_keys(max_age_hours: int | None = None) -> int:
    """Delete stored API responses older than the replay window.  Safe to repeat."""
    return idempotency_keys_purge(max_age_hours=max_age_hours)
