"""Running the data-quality rules: after an ingest run (its records) and on a schedule (the
whole domain), recording issues, scores and opening data-quality tasks.

mdm imports no other app: the steward queue registers itself at start-up with
``quality_task_opener_register`` (``stewardship.apps``), and each newly failing record of a
rule with ``opens_tasks`` is handed to it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from mdm.domains import domain_codes
from mdm.models import QualityIssue, QualityRule, QualityRun, QualityScore, SourceRecord
from mdm.quality import CheckedRecord, RuleSpec, check_rule, value_key

logger = logging.getLogger(__name__)

QUALITY_INGEST_TASK = "mdm.quality_check_ingest_run"
CHUNK = 5000

# (domain, record id, rule name, details) -> None
TaskOpener = Callable[[str, int, str, dict[str, Any]], None]
# (rule name, record ids) -> None
TaskCloser = Callable[[str, list[int]], None]
_task_openers: list[TaskOpener] = []
_task_closers: list[TaskCloser] = []


def quality_task_opener_register(opener: TaskOpener) -> None:
    """Register the function that opens a data-quality task for a failing record (once)."""
    if opener not in _task_openers:
        _task_openers.append(opener)


def quality_task_closer_register(closer: TaskCloser) -> None:
    """Register the function that closes the open tasks of records that pass again (once)."""
    if closer not in _task_closers:
        _task_closers.append(closer)


def quality_task_open(*, domain: str, record_id: int, rule: str, details: dict[str, Any]) -> None:
    """Hand one record to the registered task openers (the steward queue opens a data-quality
    exception, one open task per record and rule).  Without a registered opener, nothing."""
    for opener in _task_openers:
        opener(domain, record_id, rule, details)


def quality_check_notify(*, ingest_run_id: int) -> None:
    """After commit, queue the rules over an ingest run's records (by task name).  A lost
    message only delays the check: the scheduled whole-domain run finds the same failures."""

    def send() -> None:
        from mdm.tasks import quality_check_ingest_run  # the task module imports this one

        try:
            quality_check_ingest_run.delay(ingest_run_id)
        except Exception:
            logger.warning("could not queue %s for run %s", QUALITY_INGEST_TASK, ingest_run_id)

    if settings.AURUM_QUALITY_AFTER_INGEST:
        transaction.on_commit(send)


def _spec(rule: QualityRule) -> RuleSpec:
    return RuleSpec(
        id=rule.pk,
        name=rule.name,
        domain=rule.domain,
        kind=rule.kind,
        attribute=rule.attribute,
        params=rule.params or {},
        source_system_id=rule.source_system_id,
    )


def _uniqueness_counts(domain: str, rule: QualityRule) -> Counter[tuple[int | None, str]]:
    """How many live records hold each value of the rule's attribute, by source and overall."""
    counts: Counter[tuple[int | None, str]] = Counter()
    rows = SourceRecord.objects.filter(domain=domain, is_deleted=False)
    if rule.source_system_id is not None:
        rows = rows.filter(source_system_id=rule.source_system_id)
    for source_id, value in rows.values_list("source_system_id", f"attributes__{rule.attribute}"):
        key = value_key(value)
        if key is not None:
            counts[(source_id, key)] += 1
            counts[(None, key)] += 1
    return counts


def _records(qs: QuerySet[SourceRecord]) -> Iterator[list[CheckedRecord]]:
    rows = qs.order_by("id").values_list(
        "id", "source_system_id", "attributes", "received_at", "source_updated_at"
    )
    iterator = (
        CheckedRecord(id=i, source_system_id=s, attributes=a or {}, updated_at=u or r)
        for i, s, a, r, u in rows.iterator(chunk_size=CHUNK)
    )
    while chunk := list(islice(iterator, CHUNK)):
        yield chunk


def quality_check_run(
    *, domain: str, trigger: str = QualityRun.Trigger.MANUAL, ingest_run_id: int | None = None
) -> QualityRun:
    """Evaluate the domain's active rules over its live records (or one ingest run's).

    Each failing record has one ``QualityIssue`` per rule (opened, or seen again); an open
    issue whose record now passes is resolved.  A newly failing record of a rule with
    ``opens_tasks`` opens a data-quality task, and a resolved one closes its open task (as
    no longer relevant).  A whole-domain run also writes a ``QualityScore`` per rule and
    source, the points of the trend.  Safe to repeat: a repeat
    finds the same issues open and opens no task twice.
    """
    started = time.perf_counter()
    now = timezone.now()
    run = QualityRun.objects.create(
        domain=domain, trigger=trigger, ingest_run_id=ingest_run_id, started_at=now
    )
    rules = list(QualityRule.objects.filter(domain=domain, is_active=True).order_by("id"))
    specs = {rule.pk: _spec(rule) for rule in rules}
    counts = {
        rule.pk: _uniqueness_counts(domain, rule)
        for rule in rules
        if rule.kind == QualityRule.Kind.UNIQUENESS
    }
    checked: Counter[tuple[int, int]] = Counter()
    failed: Counter[tuple[int, int]] = Counter()
    to_open: list[tuple[QualityRule, int, str]] = []
    to_close: dict[str, list[int]] = {}
    qs = SourceRecord.objects.filter(domain=domain, is_deleted=False)
    if ingest_run_id is not None:
        qs = qs.filter(ingest_run_id=ingest_run_id)
    for chunk in _records(qs):
        run.records_checked += len(chunk)
        with transaction.atomic():
            for rule in rules:
                outcomes = list(
                    check_rule(specs[rule.pk], chunk, now=now, counts=counts.get(rule.pk))
                )
                for record, message in outcomes:
                    checked[(rule.pk, record.source_system_id)] += 1
                    if message is not None:
                        failed[(rule.pk, record.source_system_id)] += 1
                opened, resolved = _record_issues(rule, outcomes, now)
                run.failures += sum(1 for _, message in outcomes if message is not None)
                run.issues_opened += len(opened)
                run.issues_resolved += len(resolved)
                to_close.setdefault(rule.name, []).extend(resolved)
                if rule.opens_tasks:
                    to_open.extend((rule, record_id, message) for record_id, message in opened)
    with transaction.atomic():
        if ingest_run_id is None:
            for name, ids in _resolve_stale(domain, now).items():
                run.issues_resolved += len(ids)
                to_close.setdefault(name, []).extend(ids)
            QualityScore.objects.bulk_create(
                QualityScore(
                    run=run,
                    rule_id=rule_id,
                    domain=domain,
                    source_system_id=source_id,
                    dimension=specs[rule_id].kind,
                    attribute=specs[rule_id].attribute,
                    checked=n,
                    failed=failed[(rule_id, source_id)],
                    measured_at=now,
                )
                for (rule_id, source_id), n in sorted(checked.items())
            )
        run.finished_at = timezone.now()
        run.duration_seconds = time.perf_counter() - started
        run.save()
    for rule, record_id, message in to_open:
        details = {
            "quality_rule": rule.name,
            "kind": rule.kind,
            "attribute": rule.attribute,
            "message": message,
        }
        for opener in _task_openers:
            opener(domain, record_id, rule.name, details)
    for name, ids in to_close.items():
        for closer in _task_closers:
            if ids:
                closer(name, ids)
    logger.info(
        "quality run %s on %s: %s records, %s failures, %s opened, %s resolved",
        run.pk,
        domain,
        run.records_checked,
        run.failures,
        run.issues_opened,
        run.issues_resolved,
    )
    return run


def _record_issues(
    rule: QualityRule, outcomes: list[tuple[CheckedRecord, str | None]], now: Any
) -> tuple[list[tuple[int, str]], list[int]]:
    """Upsert the issues of one chunk; returns the newly failing (record, message) and the
    records whose issue was resolved."""
    ids = [record.id for record, _ in outcomes]
    existing = {
        issue.record_id: issue
        for issue in QualityIssue.objects.filter(rule=rule, record_id__in=ids).only(
            "id", "record_id", "resolved_at", "message"
        )
    }
    opened: list[tuple[int, str]] = []
    new: list[QualityIssue] = []
    reopened: list[QualityIssue] = []
    still: list[int] = []
    passing: list[int] = []
    passing_records: list[int] = []
    for record, message in outcomes:
        issue = existing.get(record.id)
        if message is None:
            if issue is not None and issue.resolved_at is None:
                passing.append(issue.pk)
                passing_records.append(record.id)
            continue
        if issue is None:
            new.append(
                QualityIssue(
                    rule=rule,
                    record_id=record.id,
                    domain=rule.domain,
                    source_system_id=record.source_system_id,
                    message=message,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
            opened.append((record.id, message))
        elif issue.resolved_at is not None:
            issue.resolved_at = None
            issue.first_seen_at = issue.last_seen_at = now
            issue.message = message
            reopened.append(issue)
            opened.append((record.id, message))
        else:
            still.append(issue.pk)
    QualityIssue.objects.bulk_create(new)
    QualityIssue.objects.bulk_update(
        reopened, ["resolved_at", "first_seen_at", "last_seen_at", "message"]
    )
    QualityIssue.objects.filter(pk__in=still).update(last_seen_at=now)
    QualityIssue.objects.filter(pk__in=passing).update(resolved_at=now)
    return opened, passing_records


def _resolve_stale(domain: str, now: Any) -> dict[str, list[int]]:
    """Resolve the issues no rule can see any more (the record was deleted or the rule
    switched off); returns their record ids by rule name."""
    open_issues = QualityIssue.objects.filter(domain=domain, resolved_at__isnull=True)
    gone = open_issues.filter(record__is_deleted=True) | open_issues.filter(rule__is_active=False)
    rows = list(gone.values_list("pk", "rule__name", "record_id"))
    QualityIssue.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(resolved_at=now)
    by_rule: dict[str, list[int]] = {}
    for _, name, record_id in rows:
        by_rule.setdefault(name, []).append(record_id)
    return by_rule


def quality_check_all(*, trigger: str = QualityRun.Trigger.SCHEDULE) -> list[QualityRun]:
    """A whole-domain run for every domain with an active rule.  Safe to repeat."""
    domains = set(
        QualityRule.objects.filter(is_active=True).values_list("domain", flat=True).distinct()
    )
    return [
        quality_check_run(domain=code, trigger=trigger)
        for code in domain_codes()
        if code in domains
    ]
