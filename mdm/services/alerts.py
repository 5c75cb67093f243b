"""Alerts: thresholds an admin sets on the hub's signals, notified once per incident.

A signal is a function of a domain (or None for all) returning a number, or None when there
is nothing to judge yet.  mdm registers ``quality_score_drop``; other apps register theirs at
start-up (``stewardship`` registers ``overdue_tasks``), as mdm imports none of them.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import models
from django.utils import timezone

from mdm.domains import domain_codes
from mdm.models import AlertEvent, AlertRule, QualityRun, QualityScore

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5.0

SignalFunction = Callable[[str | None], float | None]


@dataclass(frozen=True)
class AlertSignal:
    name: str
    description: str
    measure: SignalFunction


_signals: dict[str, AlertSignal] = {}


def alert_signal_register(*, name: str, description: str, measure: SignalFunction) -> None:
    """Make a signal available to alert rules (idempotent: the last registration wins)."""
    _signals[name] = AlertSignal(name=name, description=description, measure=measure)


def alert_signals() -> dict[str, AlertSignal]:
    return dict(_signals)


def quality_score_drop(domain: str | None) -> float | None:
    """The largest fall, in percentage points, of a dimension's score in the latest
    whole-domain check below its best in the checks of the previous
    ``AURUM_ALERT_QUALITY_BASELINE_DAYS`` days."""
    since = timezone.now() - timedelta(days=settings.AURUM_ALERT_QUALITY_BASELINE_DAYS)
    worst: float | None = None
    for code in [domain] if domain else domain_codes():
        runs = list(
            QualityRun.objects.filter(domain=code, finished_at__isnull=False)
            .exclude(trigger=QualityRun.Trigger.INGEST)
            .filter(started_at__gte=since)
            .order_by("-id")
            .values_list("id", flat=True)
        )
        if len(runs) < 2:
            continue
        rows = (
            QualityScore.objects.filter(run_id__in=runs)
            .values("run_id", "dimension")
            .annotate(checked=models.Sum("checked"), failed=models.Sum("failed"))
            .order_by()
        )
        scores: dict[str, dict[int, float]] = {}
        for row in rows:
            if row["checked"]:
                scores.setdefault(row["dimension"], {})[row["run_id"]] = (
                    1 - row["failed"] / row["checked"]
                )
        for by_run in scores.values():
            if runs[0] not in by_run:
                continue
            earlier = [score for run, score in by_run.items() if run != runs[0]]
            if earlier:
                drop = (max(earlier) - by_run[runs[0]]) * 100
                worst = drop if worst is None else max(worst, drop)
    return worst


alert_signal_register(
    name="quality_score_drop",
    description="Largest drop of a data-quality dimension score below its recent best "
    "(percentage points)",
    measure=quality_score_drop,
)


def _notify(alert: AlertRule, event: AlertEvent) -> None:
    """Send one notification for ``event``; record whether it went out."""
    what = "FIRING" if event.kind == AlertEvent.Kind.FIRED else "resolved"
    scope = alert.domain or "all domains"
    subject = f"[Aurum] {what}: {alert.name} ({alert.signal} = {event.value:g}, {scope})"
    payload = {
        "alert": alert.name,
        "state": "firing" if event.kind == AlertEvent.Kind.FIRED else "resolved",
        "signal": alert.signal,
        "domain": alert.domain or None,
        "value": event.value,
        "threshold": event.threshold,
        "at": event.created_at.isoformat(),
        "event_id": event.pk,
    }
    try:
        if alert.channel == AlertRule.Channel.EMAIL:
            recipients = [a.strip() for a in alert.target.split(",") if a.strip()]
            body = "\n".join(f"{key}: {value}" for key, value in payload.items())
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        else:
            if not alert.target.lower().startswith(("http://", "https://")):
                # The admin form allows only these; a row written another way is refused.
                raise urllib.error.URLError(f"not an http(s) URL: {alert.target[:100]!r}")
            request = urllib.request.Request(  # noqa: S310 - an admin-set http(s) URL
                alert.target,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json", "User-Agent": "aurum-alerts"},
                method="POST",
            )
            # The scheme was checked just above (http or https only).
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS):  # noqa: S310  # nosec B310
                pass
    except (OSError, urllib.error.URLError) as exc:
        logger.warning("alert %s: notification failed: %s", alert.name, exc)
        AlertEvent.objects.filter(pk=event.pk).update(error=str(exc)[:1000])
    else:
        AlertEvent.objects.filter(pk=event.pk).update(delivered=True)


def alerts_evaluate(*, now: datetime | None = None) -> list[AlertEvent]:
    """Measure every active alert's signal; fire the ones that crossed their threshold and
    clear the ones that recovered, each with one notification.  Safe to run twice and
    concurrently: the state change is a compare-and-swap, so one incident notifies once."""
    now = now or timezone.now()
    events: list[AlertEvent] = []
    for alert in AlertRule.objects.filter(is_active=True).order_by("id"):
        signal = _signals.get(alert.signal)
        if signal is None:
            logger.warning("alert %s: unknown signal %r", alert.name, alert.signal)
            continue
        value = signal.measure(alert.domain or None)
        AlertRule.objects.filter(pk=alert.pk).update(last_value=value, last_checked_at=now)
        if value is None:
            continue
        breached = value > alert.threshold
        if breached and not alert.firing:
            changed = AlertRule.objects.filter(pk=alert.pk, firing=False).update(
                firing=True, fired_at=now
            )
            kind = AlertEvent.Kind.FIRED
        elif not breached and alert.firing:
            changed = AlertRule.objects.filter(pk=alert.pk, firing=True).update(
                firing=False, cleared_at=now
            )
            kind = AlertEvent.Kind.CLEARED
        else:
            continue
        if not changed:  # another evaluation got there first and notifies
            continue
        event = AlertEvent.objects.create(
            alert=alert, kind=kind, value=value, threshold=alert.threshold
        )
        logger.info(
            "alert %s %s: %s = %s (threshold %s)",
            alert.name,
            kind,
            alert.signal,
            value,
            alert.threshold,
            extra={"alert": alert.name, "alert_state": kind},
        )
        _notify(alert, event)
        event.refresh_from_db()
        events.append(event)
    return events
