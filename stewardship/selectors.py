"""Reads of the stewardship app, already narrowed to what the caller may see."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Count, F, Q, QuerySet
from django.db.models.expressions import OrderBy
from django.utils import timezone

from mdm import masking
from mdm.domains import UnknownDomainError, get_domain
from mdm.domains.base import Attribute
from mdm.masking import HIDDEN
from mdm.models import (
    CrossReference,
    GoldenOperation,
    GoldenRecord,
    QuarantinedPayload,
    SourceRecord,
)
from mdm.roles import Role, user_domains, user_has_role
from stewardship.models import ReviewTask, TaskEvent

# Sort keys: (field, descending).  Nulls (a due time not stamped yet) always sort last.
SORTS: dict[str, list[tuple[str, bool]]] = {
    "priority": [("priority", True), ("due_at", False), ("id", False)],
    "due": [("due_at", False), ("id", False)],
    "probability": [("match_probability", True), ("id", False)],
    "-probability": [("match_probability", False), ("id", False)],
    "oldest": [("created_at", False), ("id", False)],
    "newest": [("created_at", True), ("id", True)],
}


NULLABLE = {"due_at"}


def _ordering(sort: str) -> list[OrderBy]:
    # Only the nullable field says NULLS LAST: on the others it would stop PostgreSQL from
    # reading the order off the index (whose DESC columns sort nulls first).
    return [
        (F(name).desc if desc else F(name).asc)(nulls_last=True if name in NULLABLE else None)
        for name, desc in SORTS[sort]
    ]


def _after(task: ReviewTask, sort: str) -> Q:
    """Keyset condition: tasks that come after ``task`` in the ``sort`` order."""
    condition = Q(pk__in=[])
    equal = Q()
    for name, desc in SORTS[sort]:
        value = getattr(task, name)
        if value is not None:
            beyond = Q(**{f"{name}__{'lt' if desc else 'gt'}": value}) | Q(
                **{f"{name}__isnull": True}
            )
            condition |= equal & beyond
            equal &= Q(**{name: value})
        else:
            equal &= Q(**{f"{name}__isnull": True})
    return condition


PAGE_SIZE = 50


@dataclass(frozen=True)
class QueueFilters:
    kind: str = ReviewTask.Kind.POTENTIAL_MATCH
    domain: str = ""
    source: str = ""
    min_probability: float | None = None
    max_probability: float | None = None
    min_age_days: int | None = None
    assignee: str = ""  # "", "me", "none" or a user id
    overdue: bool = False
    sort: str = "priority"

    @classmethod
    def from_query(cls, query: Any, kind: str) -> QueueFilters:
        def number(name: str, cast: Any) -> Any:
            try:
                return cast(query.get(name)) if query.get(name) not in (None, "") else None
            except (TypeError, ValueError):
                return None

        sort = query.get("sort", "priority")
        return cls(
            kind=kind,
            domain=query.get("domain", "").strip(),
            source=query.get("source", "").strip(),
            min_probability=number("min_p", float),
            max_probability=number("max_p", float),
            min_age_days=number("age", int),
            assignee=query.get("assignee", "").strip(),
            overdue=query.get("overdue") in ("1", "on", "true"),
            sort=sort if sort in SORTS else "priority",
        )


def review_tasks_visible(*, user: Any) -> QuerySet[ReviewTask]:
    """Tasks a hub user may see: those of the domains where it has a role (viewer and up;
    a global role reads every queue)."""
    if not user_has_role(user, Role.VIEWER):
        return ReviewTask.objects.none()
    domains = user_domains(user, Role.VIEWER)
    if domains is None:
        return ReviewTask.objects.all()
    return ReviewTask.objects.filter(domain__in=sorted(domains))


def review_tasks_queue(*, user: Any, filters: QueueFilters) -> QuerySet[ReviewTask]:
    """The open tasks of one queue, filtered and sorted (indexed for 50k+ open tasks)."""
    qs = review_tasks_visible(user=user).filter(status=ReviewTask.Status.OPEN, kind=filters.kind)
    if filters.domain:
        qs = qs.filter(domain=filters.domain)
    if filters.source:
        records = SourceRecord.objects.filter(source_system__code=filters.source).values("id")
        qs = qs.filter(Q(left_record_id__in=records) | Q(right_record_id__in=records))
    if filters.min_probability is not None:
        qs = qs.filter(match_probability__gte=filters.min_probability)
    if filters.max_probability is not None:
        qs = qs.filter(match_probability__lte=filters.max_probability)
    if filters.min_age_days is not None:
        qs = qs.filter(created_at__lte=timezone.now() - timedelta(days=filters.min_age_days))
    if filters.assignee == "me":
        qs = qs.filter(assignee_id=getattr(user, "pk", None))
    elif filters.assignee == "none":
        qs = qs.filter(assignee__isnull=True)
    elif filters.assignee.isdigit():
        qs = qs.filter(assignee_id=int(filters.assignee))
    if filters.overdue:
        qs = qs.filter(due_at__lt=timezone.now())
    return qs.select_related("assignee").order_by(*_ordering(filters.sort))


@dataclass(frozen=True)
class RecordSummary:
    id: int
    source: str
    source_key: str
    label: str
    golden_id: int | None


MASK = HIDDEN


def sees_pii(user: Any) -> bool:
    """Stewards and admins see personal data; viewers see it masked (least privilege)."""
    return masking.sees_pii(user)


def mask_value(value: Any, attribute: Attribute | None = None) -> Any:
    """``value`` masked as ``attribute``'s type asks (``mdm.masking.mask_value``)."""
    return masking.mask_value(value, attribute)


def pii_attributes(domain: str) -> Mapping[str, Attribute]:
    return masking.pii_attributes(domain)


def attributes_for(*, user: Any, domain: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """``attributes`` as ``user`` may see them: PII attributes masked below the steward role."""
    if sees_pii(user):
        return attributes
    return masking.mask_attributes(domain, attributes)


def _label(domain: str, attributes: dict[str, Any]) -> str:
    try:
        name = get_domain(domain).display_name(attributes)
    except UnknownDomainError:
        name = ""
    return name or ", ".join(str(v) for v in list(attributes.values())[:2])


def record_summaries(*, record_ids: set[int], user: Any = None) -> dict[int, RecordSummary]:
    """Source, key, a display label (PII masked unless ``user`` sees it) and the golden id
    of each record: two queries."""
    full = user is None or sees_pii(user)
    ids = [i for i in record_ids if i is not None]
    golden = dict(
        CrossReference.objects.filter(record_id__in=ids).values_list("record_id", "golden_id")
    )
    return {
        pk: RecordSummary(
            pk,
            code,
            key,
            _label(
                domain,
                attrs or {} if full else attributes_for(user=user, domain=domain, attributes=attrs),
            ),
            golden.get(pk),
        )
        for pk, code, key, domain, attrs in SourceRecord.objects.filter(id__in=ids).values_list(
            "id", "source_system__code", "source_key", "domain", "attributes"
        )
    }


def queue_page(*, queryset: QuerySet[Any], number: Any) -> Page:
    """One page of ``queryset``: the ids first (read off an index even deep in a long queue),
    then the page's rows by id."""
    page = Paginator(queryset.values_list("pk", flat=True), PAGE_SIZE).get_page(number)
    ids = list(page.object_list)
    rows = queryset.order_by().in_bulk(ids)
    page.object_list = [rows[pk] for pk in ids if pk in rows]
    return page


def review_task_next(*, user: Any, after: ReviewTask, filters: QueueFilters) -> ReviewTask | None:
    """The next task for ``user`` after ``after`` in the queue order (wrapping round to the
    top): open, and unassigned or theirs."""
    qs = review_tasks_queue(user=user, filters=filters).exclude(pk=after.pk)
    qs = qs.filter(Q(assignee__isnull=True) | Q(assignee_id=getattr(user, "pk", None)))
    return qs.filter(_after(after, filters.sort)).first() or qs.first()


@dataclass(frozen=True)
class Dashboard:
    per_queue: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    overdue: int
    mine: int
    decided_today: int
    backlog: list[tuple[datetime, int]]


def dashboard(*, user: Any, days: int = 14) -> Dashboard:
    """The home page figures, in a handful of aggregate queries."""
    tasks = review_tasks_visible(user=user)
    open_tasks = tasks.filter(status=ReviewTask.Status.OPEN)
    now = timezone.now()
    per_queue = [
        dict(row)
        for row in open_tasks.values("kind", "domain")
        .annotate(n=Count("id"))
        .order_by("kind", "domain")
    ]
    quarantine_qs = QuarantinedPayload.objects.filter(status=QuarantinedPayload.Status.OPEN)
    domains = user_domains(user, Role.VIEWER)
    if domains is not None:
        quarantine_qs = quarantine_qs.filter(domain__in=sorted(domains))
    quarantine = [
        dict(row)
        for row in quarantine_qs.values("domain").annotate(n=Count("id")).order_by("domain")
    ]
    start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    ends = [start - timedelta(days=d) + timedelta(days=1) for d in range(days - 1, -1, -1)]
    # Open at the end of a day: opened by then and not decided by then (obsolete ones have no
    # closing time and are left out).
    counts = tasks.exclude(status=ReviewTask.Status.OBSOLETE).aggregate(
        **{
            f"d{i}": Count(
                "id",
                filter=Q(created_at__lt=end)
                & (Q(decided_at__isnull=True) | Q(decided_at__gte=end)),
            )
            for i, end in enumerate(ends)
        }
    )
    return Dashboard(
        per_queue=per_queue,
        quarantine=quarantine,
        overdue=open_tasks.filter(due_at__lt=now).count(),
        mine=open_tasks.filter(assignee_id=getattr(user, "pk", None)).count(),
        decided_today=tasks.filter(decided_at__gte=start).count(),
        backlog=[(end - timedelta(days=1), counts[f"d{i}"]) for i, end in enumerate(ends)],
    )


def review_task_events(*, task: ReviewTask) -> QuerySet[TaskEvent]:
    return task.events.select_related("actor").order_by("-at", "-id")


def record_history(*, record_id: int, limit: int = 10) -> list[Any]:
    """The latest versions of a source record (django-simple-history rows)."""
    return list(
        SourceRecord.history.filter(id=record_id)
        .select_related("history_user")
        .order_by("-history_date")[:limit]
    )


def golden_record_detail(*, golden_id: int) -> tuple[GoldenRecord, list[SourceRecord]]:
    golden = GoldenRecord.objects.get(pk=golden_id)
    members = list(
        SourceRecord.objects.filter(xref__golden=golden)
        .select_related("source_system", "xref")
        .order_by("source_system__code", "source_key")
    )
    return golden, members


def golden_operations(*, golden_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """Steward operations (merge, split, undo, correct) that touched a golden record, newest
    first, each with whether it can still be undone."""
    qs = GoldenOperation.objects.select_related("actor", "undone_by").order_by("-id")
    if connection.vendor == "postgresql":
        ops = list(qs.filter(golden_ids__contains=[golden_id])[:limit])
    else:  # SQLite has no JSON containment: scan the domain's latest operations
        golden = GoldenRecord.objects.filter(pk=golden_id).only("domain").first()
        scan = qs.filter(domain=golden.domain)[: limit * 20] if golden else []
        ops = [op for op in scan if golden_id in (op.golden_ids or [])][:limit]
    return [
        {
            "op": op,
            "undone": getattr(op, "undone_by", None) is not None,
            "can_undo": op.kind in ("merge", "split", "correct")
            and getattr(op, "undone_by", None) is None,
        }
        for op in ops
    ]


def review_tasks_overdue_count(*, domain: str | None = None) -> int:
    """Open review tasks past their due time (of one domain, or all)."""
    tasks = ReviewTask.objects.filter(status=ReviewTask.Status.OPEN, due_at__lt=timezone.now())
    if domain:
        tasks = tasks.filter(domain=domain)
    return tasks.count()
