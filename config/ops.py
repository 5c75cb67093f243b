"""Operations endpoints: liveness, readiness and Prometheus metrics.

``/healthz`` answers while the process runs.  ``/readyz`` checks what a request needs: the
database, the Celery broker and the match store (the DuckDB engine the matcher scores in);
it answers 503 naming what is down.  ``/metrics`` reads its figures from the database and the
broker at scrape time, so every process reports the same numbers and nothing is lost on
restart.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from kombu import Connection
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2.0


def _check_database() -> None:
    for alias in settings.DATABASES:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchall()


def _broker() -> Connection:
    return Connection(
        settings.CELERY_BROKER_URL,
        transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
        connect_timeout=BROKER_TIMEOUT_SECONDS,
    )


def _check_broker() -> None:
    url = str(settings.CELERY_BROKER_URL)
    if url.startswith("filesystem://"):
        options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
        folder = str(options.get("data_folder_in", ""))
        if not folder or not os.access(folder, os.W_OK):
            raise OSError(f"the broker folder {folder or '(unset)'} is not writable")
        return
    with _broker() as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        _ = conn.default_channel  # a Redis channel pings the server when it opens


def _check_match_store() -> None:
    from matching.engine import ping

    ping()


CHECKS: dict[str, Callable[[], None]] = {
    "database": _check_database,
    "broker": _check_broker,
    "match_store": _check_match_store,
}


def readiness() -> dict[str, str]:
    """Each check's outcome: "ok", or the error that made it fail."""
    outcome: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # any failure means "not ready"; say which and why
            logger.warning("readiness check %s failed: %s", name, exc)
            outcome[name] = f"{type(exc).__name__}: {exc}"[:300]
        else:
            outcome[name] = "ok"
    return outcome


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, broker and match store answer, else 503 with those
    that do not."""
    checks = readiness()
    down = sorted(name for name, result in checks.items() if result != "ok")
    status = "ok" if not down else "unavailable"
    return JsonResponse(
        {"status": status, "down": down, "checks": checks}, status=503 if down else 200
    )


class HubCollector(Collector):
    """Reads the hub's figures at scrape time (see the README's metrics table)."""

    def collect(self) -> Iterator[Any]:
        started = time.perf_counter()
        yield from self._ingest()
        yield from self._matching()
        yield from self._review()
        yield from self._quality()
        yield from self._queues()
        yield from self._publishing()
        took = GaugeMetricFamily(
            "aurum_metrics_scrape_seconds", "Time taken to read the hub's metrics."
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _ingest(self) -> Iterator[Any]:
        from mdm.models import IngestRun

        records = CounterMetricFamily(
            "aurum_ingest_records",
            "Records read by ingest runs, per source system and domain.",
            labels=["source", "domain"],
        )
        rejects = CounterMetricFamily(
            "aurum_ingest_rejects",
            "Records rejected into quarantine by ingest runs, per source system and domain.",
            labels=["source", "domain"],
        )
        rows = (
            IngestRun.objects.values("source_system__code", "domain")
            .annotate(read=Sum("read_count"), rejected=Sum("quarantined_count"))
            .order_by("source_system__code", "domain")
        )
        for row in rows:
            labels = [row["source_system__code"], row["domain"]]
            records.add_metric(labels, row["read"] or 0)
            rejects.add_metric(labels, row["rejected"] or 0)
        yield records
        yield rejects

    def _matching(self) -> Iterator[Any]:
        from matching.models import MatchRun

        durations = SummaryMetricFamily(
            "aurum_match_run_duration_seconds",
            "Duration of finished match runs (training, full, incremental), per domain.",
            labels=["domain", "kind"],
        )
        last = GaugeMetricFamily(
            "aurum_match_run_last_duration_seconds",
            "Duration of the latest finished match run, per domain and kind.",
            labels=["domain", "kind"],
        )
        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        finished = MatchRun.objects.filter(finished_at__isnull=False)
        rows = (
            finished.values("domain", "kind")
            .annotate(n=Count("id"), total=Sum(took), latest=Max("id"))
            .order_by("domain", "kind")
        )
        latest_ids = [row["latest"] for row in rows]
        latest = {(r.domain, r.kind): r for r in MatchRun.objects.filter(pk__in=latest_ids)}
        for row in rows:
            labels = [row["domain"], row["kind"]]
            total: timedelta | None = row["total"]
            durations.add_metric(labels, row["n"], total.total_seconds() if total else 0.0)
            run = latest.get((row["domain"], row["kind"]))
            if run is not None and run.finished_at is not None:
                last.add_metric(labels, (run.finished_at - run.started_at).total_seconds())
        yield durations
        yield last

    def _review(self) -> Iterator[Any]:
        from stewardship.models import ReviewTask

        backlog = GaugeMetricFamily(
            "aurum_review_backlog",
            "Open review tasks, per queue and domain.",
            labels=["queue", "domain"],
        )
        overdue = GaugeMetricFamily(
            "aurum_review_overdue",
            "Open review tasks past their due time, per queue and domain.",
            labels=["queue", "domain"],
        )
        open_tasks = ReviewTask.objects.filter(status=ReviewTask.Status.OPEN).order_by()
        now = timezone.now()
        late = {
            (row["kind"], row["domain"]): row["n"]
            for row in open_tasks.filter(due_at__lt=now)
            .values("kind", "domain")
            .annotate(n=Count("id"))
        }
        for row in (
            open_tasks.values("kind", "domain").annotate(n=Count("id")).order_by("kind", "domain")
        ):
            labels = [row["kind"], row["domain"]]
            backlog.add_metric(labels, row["n"])
            overdue.add_metric(labels, late.get((row["kind"], row["domain"]), 0))
        yield backlog
        yield overdue

    def _publishing(self) -> Iterator[Any]:
        from sync.selectors import subscriber_health

        lag = GaugeMetricFamily(
            "aurum_outbox_lag_events",
            "Golden change events not yet delivered (push) or acknowledged (pull), per subscriber.",
            labels=["subscriber", "kind"],
        )
        dead = GaugeMetricFamily(
            "aurum_delivery_dead_letters",
            "Deliveries in the dead-letter list.",
            labels=["subscriber"],
        )
        failures = GaugeMetricFamily(
            "aurum_delivery_failure_ratio",
            "Failed delivery attempts / attempts, per subscriber.",
            labels=["subscriber"],
        )
        circuit = GaugeMetricFamily(
            "aurum_subscriber_circuit_open",
            "1 while a subscriber's circuit breaker is open or it is disabled.",
            labels=["subscriber"],
        )
        for sub in subscriber_health():
            lag.add_metric([sub.code, sub.kind], sub.lag)
            dead.add_metric([sub.code], sub.dead_letters)
            failures.add_metric([sub.code], sub.failure_rate)
            circuit.add_metric([sub.code], 1 if sub.circuit_open or not sub.is_active else 0)
        yield lag
        yield dead
        yield failures
        yield circuit

    def _quality(self) -> Iterator[Any]:
        from mdm.selectors import quality_dimension_scores

        scores = GaugeMetricFamily(
            "aurum_quality_score",
            "Share of checked records passing the data-quality rules of a dimension (0-1), "
            "from the latest whole-domain run.",
            labels=["domain", "dimension"],
        )
        for domain, dimensions in quality_dimension_scores().items():
            for dimension, score in dimensions.items():
                scores.add_metric([domain, dimension], score)
        yield scores

    def _queues(self) -> Iterator[Any]:
        depth = GaugeMetricFamily(
            "aurum_celery_queue_depth",
            "Messages waiting in the Celery broker queue.",
            labels=["queue"],
        )
        up = GaugeMetricFamily("aurum_broker_up", "1 when the Celery broker answered the scrape.")
        queues = getattr(settings, "AURUM_QUEUES", ("celery",))
        try:
            with _broker() as conn:
                conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
                for queue in queues:
                    declared = conn.default_channel.queue_declare(queue=queue, passive=False)
                    depth.add_metric([queue], declared.message_count)
            up.add_metric([], 1)
        except Exception as exc:  # a down broker is a figure, not a failed scrape
            logger.warning("metrics: broker unreachable: %s", exc)
            up.add_metric([], 0)
        yield depth
        yield up


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector())
    return registry


_REGISTRY = _registry()


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition.  With ``AURUM_METRICS_TOKEN`` set, a scrape must send it
    as a bearer token."""
    token = getattr(settings, "AURUM_METRICS_TOKEN", "")
    if token and request.headers.get("Authorization", "") != f"Bearer {token}":
        return HttpResponse("metrics need the bearer token\n", status=401)
    return HttpResponse(generate_latest(_REGISTRY), content_type=CONTENT_TYPE_LATEST)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for a URL no route matches: the API's JSON error shape under ``/api/``, Django's
    page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": "not_found", "detail": f"No API endpoint at {request.path}."}, status=404
        )
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Exception("not found"))
