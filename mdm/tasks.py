"""Background jobs of the mdm app.  Thin: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from mdm.services import survivorship as survivorship_services
from mdm.services.housekeeping import idempotency_keys_purge


@shared_task(name="mdm.purge_idempotency_keys")
def purge_idempotency_keys(max_age_hours: int | None = None) -> int:
    """Delete stored API responses older than the replay window.  Safe to repeat."""
    return idempotency_keys_purge(max_age_hours=max_age_hours)


@shared_task(name="mdm.survivorship_recompute")
def survivorship_recompute(job_id: int) -> str:
    """Recompute a domain's golden records for a survivorship job.  Safe to run twice."""
    return survivorship_services.survivorship_recompute(job_id=job_id).status


@shared_task(name="mdm.survivorship_jobs_resume")
def survivorship_jobs_resume() -> int:
    """Queue again survivorship jobs whose message was lost or whose worker died."""
    return len(survivorship_services.survivorship_jobs_resume())
