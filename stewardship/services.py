"""Every write of the stewardship app: claim, release, assign, decide, escalate.

Each service is keyword-only, runs in one transaction, locks the task it changes and re-checks
its guard after the lock, and writes its ``TaskEvent`` audit row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from matching.models import PairConstraint
from mdm.audit.services import audit_record
from mdm.models import CrossReference
from mdm.roles import Role, user_domains, user_has_role
from stewardship.models import Priority, ReviewTask, ServiceLevel, TaskEvent

DECISIONS = ("merge", "not_a_match", "skip")
DQ_DECISIONS = ("resolved", "skip")


class TaskError(Exception):
    """Base of the stewardship errors; ``status`` is the HTTP status a view answers with."""

    status = 400


class TaskInputError(TaskError):
    """Bad input: an unknown decision, a task of the wrong kind, a bad assignee."""


class TaskStateError(TaskError):
    """The task is no longer open, or another steward holds it."""

    status = 409


class TaskPermissionError(TaskError):
    """The actor's role does not allow this."""

    status = 403


@dataclass(frozen=True)
class ServiceLevelTerms:
    due_hours: int
    priority: int
    escalated_priority: int


def service_level_for(*, domain: str) -> ServiceLevelTerms:
    """The domain's service level, else the hub default (``AURUM_REVIEW_DUE_HOURS``)."""
    level = ServiceLevel.objects.filter(domain=domain).first()
    if level is not None:
        return ServiceLevelTerms(level.due_hours, level.priority, level.escalated_priority)
    return ServiceLevelTerms(
        int(getattr(settings, "AURUM_REVIEW_DUE_HOURS", 48)), Priority.NORMAL, Priority.URGENT
    )


def _require(actor: Any, role: Role) -> None:
    if not user_has_role(actor, role):
        raise TaskPermissionError(f"this needs the {role.group_name} role")


def _event(
    task: ReviewTask,
    action: str,
    actor: Any,
    *,
    now: datetime,
    decision: str = "",
    comment: str = "",
    detail: dict[str, Any] | None = None,
) -> TaskEvent:
    return TaskEvent.objects.create(
        task=task,
        action=action,
        actor=actor if getattr(actor, "pk", None) else None,
        decision=decision,
        comment=comment,
        detail=detail or {},
        at=now,
    )


def _require_in_domain(actor: Any, task: ReviewTask) -> None:
    """Object-level check: the actor must be a steward in the task's domain.  A task of a
    domain the actor may not even read is reported as missing (no existence leak)."""
    if not user_has_role(actor, Role.VIEWER, task.domain):
        raise TaskInputError(f"there is no review task {task.pk}")
    if not user_has_role(actor, Role.STEWARD, task.domain):
        raise TaskPermissionError(f"this needs the steward role in domain {task.domain}")


def _locked_open(task_id: int, actor: Any) -> ReviewTask:
    try:
        task = ReviewTask.objects.select_for_update().get(pk=task_id)
    except ReviewTask.DoesNotExist:
        raise TaskInputError(f"there is no review task {task_id}") from None
    _require_in_domain(actor, task)
    if task.status != ReviewTask.Status.OPEN:
        raise TaskStateError(f"review task {task.pk} is already {task.status}")
    return task


def review_task_claim(*, task_id: int, actor: Any) -> ReviewTask:
    """Make ``actor`` (a steward) the assignee of an open, unassigned task.

    Compare-and-swap: of two stewards claiming at once exactly one wins, the other gets
    TaskStateError.  Claiming a task one already holds is a no-op (safe to repeat).
    """
    _require(actor, Role.STEWARD)
    now = timezone.now()
    with transaction.atomic():
        candidates = ReviewTask.objects.filter(
            pk=task_id, status=ReviewTask.Status.OPEN, assignee__isnull=True
        )
        domains = user_domains(actor, Role.STEWARD)
        if domains is not None:  # the swap itself never touches a task outside them
            candidates = candidates.filter(domain__in=sorted(domains))
        won = candidates.update(assignee=actor, assigned_at=now)
        task = ReviewTask.objects.select_for_update().filter(pk=task_id).first()
        if task is None:
            raise TaskInputError(f"there is no review task {task_id}")
        _require_in_domain(actor, task)
        if won:
            _event(task, TaskEvent.Action.CLAIM, actor, now=now)
            return task
        if task.status == ReviewTask.Status.OPEN and task.assignee_id == actor.pk:
            return task
        if task.status != ReviewTask.Status.OPEN:
            raise TaskStateError(f"review task {task.pk} is already {task.status}")
        raise TaskStateError(f"review task {task.pk} is claimed by {task.assignee}")


def review_task_release(*, task_id: int, actor: Any) -> ReviewTask:
    """Give a claimed task back to the queue.  Its assignee or an admin may; idempotent."""
    _require(actor, Role.STEWARD)
    now = timezone.now()
    with transaction.atomic():
        task = _locked_open(task_id, actor)
        if task.assignee_id is None:
            return task
        if task.assignee_id != actor.pk and not user_has_role(actor, Role.ADMIN, task.domain):
            raise TaskStateError(f"review task {task.pk} is held by {task.assignee}")
        previous = task.assignee_id
        task.assignee = None
        task.assigned_at = None
        task.save(update_fields=["assignee", "assigned_at"])
        _event(task, TaskEvent.Action.RELEASE, actor, now=now, detail={"from": previous})
    return task


def review_task_assign(*, task_id: int, assignee_id: int | None, actor: Any) -> ReviewTask:
    """Hand an open task to a steward (or to nobody).  Stewards and admins may assign; the
    assignee must be a steward or admin.  Assigning to the current assignee is a no-op."""
    _require(actor, Role.STEWARD)
    user_model = get_user_model()
    assignee = None
    if assignee_id is not None:
        assignee = user_model.objects.filter(pk=assignee_id, is_active=True).first()
        if assignee is None or not user_has_role(assignee, Role.STEWARD):
            raise TaskInputError("tasks can be assigned only to an active steward or admin")
    now = timezone.now()
    with transaction.atomic():
        task = _locked_open(task_id, actor)
        if assignee is not None and not user_has_role(assignee, Role.STEWARD, task.domain):
            raise TaskInputError(
                f"tasks can be assigned only to a steward or admin of domain {task.domain}"
            )
        if task.assignee_id == assignee_id:
            return task
        previous = task.assignee_id
        task.assignee = assignee
        task.assigned_at = now if assignee else None
        task.save(update_fields=["assignee", "assigned_at"])
        _event(
            task,
            TaskEvent.Action.ASSIGN,
            actor,
            now=now,
            detail={"from": previous, "to": assignee_id},
        )
    return task


def _pair_constraint_upsert(
    *, domain: str, left_id: int, right_id: int, kind: str, actor: Any, reason: str
) -> None:
    left, right = min(left_id, right_id), max(left_id, right_id)
    PairConstraint.objects.update_or_create(
        left_id=left,
        right_id=right,
        defaults={
            "domain": domain,
            "kind": kind,
            "reason": reason,
            "created_by": actor if getattr(actor, "pk", None) else None,
        },
    )


def _golden_of(record_ids: Iterable[int]) -> dict[int, int]:
    return dict(
        CrossReference.objects.filter(record_id__in=list(record_ids)).values_list(
            "record_id", "golden_id"
        )
    )


def _apply_match_decision(
    task: ReviewTask, decision: str, actor: Any, reason: str
) -> dict[str, Any]:
    """Make a potential-match decision take effect on the golden records at once.

    The lifecycle services write the constraints of the golden records they merge or split
    (and their undo removes them again); a constraint is written here only where no golden
    record changes (the two already together for a merge, already apart for not-a-match).
    """
    left, right = task.left_record_id, task.right_record_id
    assert right is not None
    golden = _golden_of([left, right])
    gl, gr = golden.get(left), golden.get(right)
    effect: dict[str, Any] = {"left_golden": gl, "right_golden": gr}
    together = gl is not None and gl == gr
    apart = gl is not None and gr is not None and gl != gr
    if (decision == "merge" and apart) or (decision == "not_a_match" and together):
        from mdm.services import lifecycle  # the golden record lifecycle services

        assert gl is not None and gr is not None
        try:
            if decision == "merge":
                operation = lifecycle.golden_record_merge(
                    domain=task.domain, golden_ids=[gl, gr], actor=actor, reason=reason
                )
            else:
                operation = lifecycle.golden_record_split(
                    domain=task.domain, golden_id=gl, record_ids=[right], actor=actor, reason=reason
                )
        except lifecycle.GoldenConflictError as exc:
            raise TaskStateError(str(exc)) from exc
        except lifecycle.GoldenOperationError as exc:
            raise TaskInputError(str(exc)) from exc
        effect["operation"] = operation.pk
    else:
        _pair_constraint_upsert(
            domain=task.domain,
            left_id=left,
            right_id=right,
            kind=(
                PairConstraint.Kind.MUST_LINK
                if decision == "merge"
                else PairConstraint.Kind.CANNOT_LINK
            ),
            actor=actor,
            reason=reason,
        )
    after = _golden_of([left, right])
    effect["left_golden_after"] = after.get(left)
    effect["right_golden_after"] = after.get(right)
    if decision == "merge" and after.get(left) is not None:
        # Other open pairs now inside the one golden record have nothing left to decide.
        members = list(
            CrossReference.objects.filter(golden_id=after[left]).values_list("record_id", flat=True)
        )
        effect["obsolete_tasks"] = (
            ReviewTask.objects.filter(
                status=ReviewTask.Status.OPEN,
                kind=ReviewTask.Kind.POTENTIAL_MATCH,
                left_record_id__in=members,
                right_record_id__in=members,
            )
            .exclude(pk=task.pk)
            .update(status=ReviewTask.Status.OBSOLETE)
        )
    return effect


def review_task_decide(*, task_id: int, decision: str, actor: Any, comment: str = "") -> ReviewTask:
    """Settle a task and make the decision take effect at once.

    Potential match: ``merge`` merges the two records' golden records and writes a must-link;
    ``not_a_match`` writes a cannot-link and splits the right record out if the two share a
    golden record; ``skip`` leaves the task open (and gives it back if the actor held it).
    Data-quality exception: ``resolved`` or ``skip``.  The decision, its actor, time and
    comment are written on the task and as a ``TaskEvent``, in the same transaction as the
    golden record change.  Refused (TaskStateError) once the task is closed or while another
    steward holds it, so repeating a decision never applies it twice.
    """
    _require(actor, Role.STEWARD)
    comment = comment.strip()
    now = timezone.now()
    with transaction.atomic():
        task = _locked_open(task_id, actor)
        allowed = DECISIONS if task.kind == ReviewTask.Kind.POTENTIAL_MATCH else DQ_DECISIONS
        if decision not in allowed:
            raise TaskInputError(
                f"decision must be one of {', '.join(allowed)} for a {task.get_kind_display()}"
            )
        if task.assignee_id not in (None, actor.pk) and not user_has_role(
            actor, Role.ADMIN, task.domain
        ):
            raise TaskStateError(f"review task {task.pk} is held by {task.assignee}")
        if decision == "skip":
            if task.assignee_id == actor.pk:
                task.assignee = None
                task.assigned_at = None
                task.save(update_fields=["assignee", "assigned_at"])
            _event(task, TaskEvent.Action.SKIP, actor, now=now, comment=comment)
            return task
        reason = comment or f"review task {task.pk}: {decision.replace('_', ' ')}"
        effect: dict[str, Any] = {}
        if task.kind == ReviewTask.Kind.POTENTIAL_MATCH:
            effect = _apply_match_decision(task, decision, actor, reason)
        task.status = ReviewTask.Status.DECIDED
        task.decision = decision
        task.comment = comment
        task.decided_by = actor
        task.decided_at = now
        task.save(update_fields=["status", "decision", "comment", "decided_by", "decided_at"])
        _event(
            task,
            TaskEvent.Action.DECIDE,
            actor,
            now=now,
            decision=decision,
            comment=comment,
            detail=effect,
        )
        audit_record(
            action="task.decide",
            actor=actor,
            target_type="review_task",
            target_id=task.pk,
            domain=task.domain,
            detail={"decision": decision, "kind": task.kind, **effect},
            when=now,
        )
    return task


@dataclass
class BulkResult:
    decided: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # task id -> why


def review_tasks_decide_bulk(
    *, task_ids: Iterable[int], decision: str, actor: Any, comment: str = ""
) -> BulkResult:
    """Apply one decision to many tasks.  Each task is decided in its own transaction (one
    bad task does not undo the others); the refused ones come back with the reason."""
    _require(actor, Role.STEWARD)
    if decision not in ("merge", "not_a_match", "resolved"):
        raise TaskInputError("a bulk decision is merge, not_a_match or resolved")
    result = BulkResult()
    for task_id in sorted(set(task_ids)):
        try:
            review_task_decide(task_id=task_id, decision=decision, actor=actor, comment=comment)
        except TaskError as exc:
            result.refused[task_id] = str(exc)
        else:
            result.decided.append(task_id)
    return result


def review_tasks_schedule(*, now: datetime | None = None) -> int:
    """Give every open task without a due time its priority and due time from its domain's
    service level (due = opened + due hours).  Set-based; safe to repeat."""
    stamped = 0
    domains = (
        ReviewTask.objects.filter(status=ReviewTask.Status.OPEN, due_at__isnull=True)
        .order_by()  # the default ordering would make DISTINCT one row per task
        .values_list("domain", flat=True)
        .distinct()
    )
    for domain in list(domains):
        terms = service_level_for(domain=domain)
        stamped += ReviewTask.objects.filter(
            domain=domain, status=ReviewTask.Status.OPEN, due_at__isnull=True
        ).update(due_at=F("created_at") + timedelta(hours=terms.due_hours), priority=terms.priority)
    return stamped


def review_tasks_escalate(*, now: datetime | None = None) -> int:
    """Escalate open tasks past their due time: raise their priority to the domain's
    escalated priority, stamp ``escalated_at`` and write an ``escalate`` event each.

    Safe to run twice or at once: an escalated task is never escalated again, and the rows are
    locked (skipping rows another run holds) before they change.  Returns how many escalated.
    """
    now = now or timezone.now()
    review_tasks_schedule(now=now)
    escalated = 0
    with transaction.atomic():
        overdue = list(
            ReviewTask.objects.select_for_update(skip_locked=True)
            .filter(status=ReviewTask.Status.OPEN, due_at__lt=now, escalated_at__isnull=True)
            .values_list("id", "domain", "priority")
        )
        by_domain: dict[str, list[int]] = {}
        for pk, domain, _priority in overdue:
            by_domain.setdefault(domain, []).append(pk)
        for domain, ids in by_domain.items():
            terms = service_level_for(domain=domain)
            for start in range(0, len(ids), 900):
                batch = ids[start : start + 900]
                escalated += ReviewTask.objects.filter(
                    pk__in=batch, escalated_at__isnull=True
                ).update(escalated_at=now, priority=terms.escalated_priority)
                TaskEvent.objects.bulk_create(
                    [
                        TaskEvent(
                            task_id=pk,
                            action=TaskEvent.Action.ESCALATE,
                            detail={"priority": terms.escalated_priority},
                            at=now,
                        )
                        for pk in batch
                    ],
                    batch_size=1000,
                )
    return escalated


def data_quality_task_open(
    *, domain: str, record_id: int, rule: str, details: dict[str, Any] | None = None
) -> ReviewTask:
    """Open a data-quality exception on one record (or return the open one for that record and
    rule: safe to repeat).  The data-quality rules of issue 6 call this."""
    with transaction.atomic():
        task = (
            ReviewTask.objects.select_for_update()
            .filter(
                kind=ReviewTask.Kind.DATA_QUALITY,
                status=ReviewTask.Status.OPEN,
                left_record_id=record_id,
                rule=rule,
            )
            .first()
        )
        if task is not None:
            return task
        terms = service_level_for(domain=domain)
        task = ReviewTask.objects.create(
            domain=domain,
            kind=ReviewTask.Kind.DATA_QUALITY,
            left_record_id=record_id,
            rule=rule,
            details=details or {},
            priority=terms.priority,
        )
        task.due_at = task.created_at + timedelta(hours=terms.due_hours)
        task.save(update_fields=["due_at"])
    return task


def data_quality_tasks_close(*, rule: str, record_ids: list[int]) -> int:
    """Mark the open data-quality tasks of ``rule`` on records that pass it again as no longer
    relevant (set-based; safe to repeat).  Returns how many were closed."""
    return ReviewTask.objects.filter(
        kind=ReviewTask.Kind.DATA_QUALITY,
        status=ReviewTask.Status.OPEN,
        rule=rule,
        left_record_id__in=record_ids,
    ).update(status=ReviewTask.Status.OBSOLETE)
