"""Background jobs of the mdm app.  Thin: ids in, one service call, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from mdm.services import quality as quality_services
from mdm.services import survivorship as survivorship_services
from mdm.services.housekeeping import idempotency_keys_purge


@shared_task(name="mdm.purge_idempotency_keys")
def purge_idempotency_keys(max_age_hours: int | None = None) -> int:
    """Delete stored API responses older than the replay window.  Safe to repeat."""
    return idempotency_keys_purge(max_age_hours=max_age_hours)


@shared_task(name="mdm.purge_history")
def purge_history() -> int:
    """Apply the retention policy (AURUM_RETENTION_DAYS).  Safe to repeat."""
    from mdm.services.retention import history_purge

    return sum(history_purge(dry_run=False, actor="beat: purge_history").values())


@shared_task(name="mdm.survivorship_recompute")
def survivorship_recompute(job_id: int) -> str:
    """Recompute a domain's golden records for a survivorship job.  Safe to run twice."""
    return survivorship_services.survivorship_recompute(job_id=job_id).status


@shared_task(name="mdm.survivorship_jobs_resume")
def survivorship_jobs_resume() -> int:
    """Queue again survivorship jobs whose message was lost or whose worker died."""
    return len(survivorship_services.survivorship_jobs_resume())


@shared_task(name="mdm.quality_check_ingest_run")
def quality_check_ingest_run(ingest_run_id: int) -> int:
    """Run the data-quality rules over one ingest run's records.  Safe to run twice."""
    from mdm.models import IngestRun

    domain = IngestRun.objects.filter(pk=ingest_run_id).values_list("domain", flat=True).first()
    if domain is None:
        return 0
    run = quality_services.quality_check_run(
        domain=domain, trigger="ingest", ingest_run_id=ingest_run_id
    )
    return run.failures


@shared_task(name="mdm.quality_check_all")
def quality_check_all() -> int:
    """The scheduled whole-domain data-quality run (scores and trend).  Safe to run twice."""
    return len(quality_services.quality_check_all())


@shared_task(name="mdm.alerts_evaluate")
def alerts_evaluate() -> int:
    """Fire or clear the admin's alerts; one notification per incident.  Safe to run twice."""
    from mdm.services.alerts import alerts_evaluate as evaluate

    return len(evaluate())


@shared_task(name="mdm.connectors_schedule")
def connectors_schedule() -> int:
    """Queue the connectors whose scheduled time has come (beat, every 15 s).  Safe to run
    twice: the next run time moves with a compare-and-swap."""
    from mdm.services.connectors import connectors_schedule_due

    return len(connectors_schedule_due())


@shared_task(name="mdm.connector_run")
def connector_run(connector_id: int, trigger: str = "schedule", user_id: int | None = None) -> str:
    """Run one connector.  Safe to run twice: a second copy is refused while the first holds
    the connector, and a repeated window is found unchanged."""
    from django.contrib.auth import get_user_model

    from mdm.services.connectors import ConnectorBusyError, ConnectorPausedError
    from mdm.services.connectors import connector_run as run_connector

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        return run_connector(connector_id=connector_id, trigger=trigger, user=user).status
    except (ConnectorBusyError, ConnectorPausedError) as exc:
        return f"refused: {exc}"
