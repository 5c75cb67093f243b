"""The steward workspace: server-rendered pages with htmx partials.  Views are thin: they read
through ``stewardship.selectors`` and write through the services."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from mdm.domains import UnknownDomainError, all_domains, get_domain
from mdm.domains.base import Attribute
from mdm.models import (
    GoldenOperation,
    GoldenRecord,
    QuarantinedPayload,
    SourceRecord,
    SourceSystem,
)
from mdm.roles import Role, user_domains, user_has_role, user_role
from mdm.selectors import golden_record_timeline, quarantine_visible
from mdm.services.quarantine import (
    QuarantineStateError,
    quarantined_payload_discard,
    quarantined_payload_replay,
)
from stewardship import selectors as sel
from stewardship import services
from stewardship.models import ReviewTask
from sync.selectors import subscriber_health

KINDS = {"matches": ReviewTask.Kind.POTENTIAL_MATCH, "quality": ReviewTask.Kind.DATA_QUALITY}
KIND_SLUG: dict[str, str] = {str(kind): slug for slug, kind in KINDS.items()}
QUEUE_TITLES: dict[str, str] = {
    ReviewTask.Kind.POTENTIAL_MATCH: "Potential matches",
    ReviewTask.Kind.DATA_QUALITY: "Data-quality exceptions",
}
DECISION_LABELS = {
    "merge": "Merge",
    "not_a_match": "Not a match",
    "skip": "Skip",
    "resolved": "Resolved",
}


def role_required(
    role: Role,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Anonymous users go to the login page; users without ``role`` get 403."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_has_role(request.user, role):
                raise PermissionDenied(f"This needs the {role.group_name} role.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def _stewards() -> Any:
    """Users a task can be assigned to (for the assignee filter and the assign form)."""
    return (
        get_user_model()
        .objects.filter(
            Q(is_superuser=True) | Q(groups__name__in=["steward", "admin"]), is_active=True
        )
        .distinct()
        .order_by("username")
    )


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    role = user_role(request.user)
    return {
        "role": role.group_name if role else "",
        "can_decide": user_has_role(request.user, Role.STEWARD),
        "domains": [d.code for d in all_domains()],
        **extra,
    }


def _safe_next(request: HttpRequest, default: str) -> str:
    """The posted ``next`` URL if it stays on this site, else ``default``."""
    url = request.POST.get("next", "")
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return default


def _hx_redirect(request: HttpRequest, url: str) -> HttpResponse:
    if getattr(request, "htmx", False):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


@role_required(Role.VIEWER)
def dashboard(request: HttpRequest) -> HttpResponse:
    board = sel.dashboard(user=request.user)
    peak = max([n for _, n in board.backlog] + [1])
    bars = [
        {"day": day, "n": n, "height": h, "y": round(90 - h, 1), "x": i * 22}
        for i, (day, n) in enumerate(board.backlog)
        for h in [round(80 * n / peak, 1)]
    ]
    for row in board.per_queue:
        row["slug"] = KIND_SLUG.get(row["kind"], "matches")
        row["label"] = ReviewTask.Kind(row["kind"]).label
    return render(
        request,
        "stewardship/dashboard.html",
        _context(
            request,
            board=board,
            bars=bars,
            chart_width=len(bars) * 22,
            backlog_today=board.backlog[-1][1] if board.backlog else 0,
            subscribers=subscriber_health(),
        ),
    )


def _queue_context(request: HttpRequest, kind: str) -> dict[str, Any]:
    filters = sel.QueueFilters.from_query(request.GET, kind)
    page = sel.queue_page(
        queryset=sel.review_tasks_queue(user=request.user, filters=filters),
        number=request.GET.get("page", 1),
    )
    tasks = list(page.object_list)
    ids = {t.left_record_id for t in tasks} | {
        t.right_record_id for t in tasks if t.right_record_id
    }
    records = sel.record_summaries(record_ids=ids, user=request.user)
    now = timezone.now()
    rows = [
        {
            "task": t,
            "left": records.get(t.left_record_id),
            "right": records.get(t.right_record_id or 0),
            "overdue": t.due_at is not None and t.due_at < now,
        }
        for t in tasks
    ]
    query = request.GET.copy()
    query.pop("page", None)
    stewards = _stewards()
    return _context(
        request,
        kind=kind,
        kind_slug=KIND_SLUG[kind],
        kind_label=QUEUE_TITLES[kind],
        filters=filters,
        page=page,
        rows=rows,
        query=query.urlencode(),
        sources=SourceSystem.objects.order_by("code").values_list("code", flat=True),
        stewards=stewards,
        sorts=[
            ("priority", "Priority"),
            ("due", "Due soonest"),
            ("probability", "Highest probability"),
            ("-probability", "Lowest probability"),
            ("oldest", "Oldest"),
            ("newest", "Newest"),
        ],
    )


@role_required(Role.VIEWER)
def queue(request: HttpRequest, kind_slug: str) -> HttpResponse:
    if kind_slug not in KINDS:
        raise Http404("No such queue.")
    context = _queue_context(request, KINDS[kind_slug])
    if getattr(request, "htmx", False) and request.headers.get("HX-Target") == "queue-table":
        return render(request, "stewardship/_queue_table.html", context)
    return render(request, "stewardship/queue.html", context)


def _task_or_404(task_id: int, user: Any) -> ReviewTask:
    task = (
        sel.review_tasks_visible(user=user)
        .select_related("assignee", "decided_by")
        .filter(pk=task_id)
        .first()
    )
    if task is None:
        raise Http404("No such review task.")
    return task


def _attribute_rows(
    domain: str, left: dict[str, Any], right: dict[str, Any], user: Any
) -> list[dict[str, Any]]:
    try:
        names = list(get_domain(domain).attribute_names)
    except UnknownDomainError:
        names = []
    names += sorted((set(left) | set(right)) - set(names))
    shown_left = sel.attributes_for(user=user, domain=domain, attributes=left)
    shown_right = sel.attributes_for(user=user, domain=domain, attributes=right)
    rows = []
    for name in names:
        lv, rv = left.get(name), right.get(name)
        if lv in (None, "") and rv in (None, ""):
            continue
        rows.append(
            {
                "name": name,
                "left": shown_left.get(name),
                "right": shown_right.get(name),
                "differs": lv != rv,
            }
        )
    return rows


def _contribution_bars(explanation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    weights = [float(c.get("match_weight") or 0.0) for c in explanation]
    scale = max([abs(w) for w in weights] + [1.0])
    return [
        {
            "attribute": c.get("attribute", ""),
            "level": c.get("level", ""),
            "weight": w,
            "width": round(50 * abs(w) / scale, 1),
            "positive": w >= 0,
        }
        for c, w in zip(explanation, weights, strict=True)
    ]


@role_required(Role.VIEWER)
def task_detail(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _task_or_404(task_id, request.user)
    ids = [task.left_record_id] + ([task.right_record_id] if task.right_record_id else [])
    records = {
        r.pk: r for r in SourceRecord.objects.filter(pk__in=ids).select_related("source_system")
    }
    left = records.get(task.left_record_id)
    right = records.get(task.right_record_id) if task.right_record_id else None
    summaries = sel.record_summaries(record_ids=set(ids))
    golden_ids = {s.golden_id for s in summaries.values() if s.golden_id}
    goldens = {g.pk: g for g in GoldenRecord.objects.filter(pk__in=golden_ids)}
    explanation = task.explanation or (task.pair.contributions if task.pair else [])
    filters = sel.QueueFilters.from_query(QueryDict(request.GET.get("q", "")), task.kind)
    next_task = sel.review_task_next(user=request.user, after=task, filters=filters)
    context = _context(
        request,
        task=task,
        left=left,
        right=right,
        left_golden=goldens.get(summaries[left.pk].golden_id or 0) if left else None,
        right_golden=goldens.get(summaries[right.pk].golden_id or 0) if right else None,
        rows=_attribute_rows(
            task.domain,
            left.attributes if left else {},
            right.attributes if right else {},
            request.user,
        ),
        bars=_contribution_bars(explanation or []),
        left_history=sel.record_history(record_id=task.left_record_id),
        right_history=sel.record_history(record_id=right.pk) if right else [],
        events=sel.review_task_events(task=task)[:20],
        next_task=next_task,
        q=request.GET.get("q", ""),
        kind_slug=KIND_SLUG[task.kind],
        decisions=services.DECISIONS
        if task.kind == ReviewTask.Kind.POTENTIAL_MATCH
        else services.DQ_DECISIONS,
        labels=DECISION_LABELS,
        stewards=_stewards() if user_has_role(request.user, Role.STEWARD) else [],
    )
    return render(request, "stewardship/task.html", context)


def _after_decision_url(request: HttpRequest, task: ReviewTask) -> str:
    q = request.POST.get("q", "")
    filters = sel.QueueFilters.from_query(QueryDict(q), task.kind)
    nxt = sel.review_task_next(user=request.user, after=task, filters=filters)
    if nxt is not None:
        return reverse("steward:task", args=[nxt.pk]) + ("?" + urlencode({"q": q}) if q else "")
    return reverse("steward:queue", args=[KIND_SLUG[task.kind]]) + (f"?{q}" if q else "")


@require_POST
@role_required(Role.STEWARD)
def task_decide(request: HttpRequest, task_id: int) -> HttpResponse:
    task = _task_or_404(task_id, request.user)
    decision = request.POST.get("decision", "")
    try:
        services.review_task_decide(
            task_id=task.pk,
            decision=decision,
            actor=request.user,
            comment=request.POST.get("comment", ""),
        )
    except services.TaskError as exc:
        messages.error(request, str(exc))
        return _hx_redirect(request, reverse("steward:task", args=[task.pk]))
    messages.success(request, f"Task {task.pk}: {DECISION_LABELS.get(decision, decision)}.")
    return _hx_redirect(request, _after_decision_url(request, task))


def _task_command(
    request: HttpRequest, task_id: int, command: Callable[..., Any], **kw: Any
) -> HttpResponse:
    task = _task_or_404(task_id, request.user)
    try:
        command(task_id=task.pk, actor=request.user, **kw)
    except services.TaskError as exc:
        messages.error(request, str(exc))
    back = _safe_next(request, reverse("steward:task", args=[task.pk]))
    if getattr(request, "htmx", False) and request.POST.get("row"):
        task = _task_or_404(task_id, request.user)
        summaries = sel.record_summaries(
            record_ids={task.left_record_id, task.right_record_id or task.left_record_id},
            user=request.user,
        )
        return render(
            request,
            "stewardship/_queue_row.html",
            _context(
                request,
                row={
                    "task": task,
                    "left": summaries.get(task.left_record_id),
                    "right": summaries.get(task.right_record_id or 0),
                    "overdue": task.is_overdue,
                },
                kind=task.kind,
            ),
        )
    return _hx_redirect(request, back)


@require_POST
@role_required(Role.STEWARD)
def task_claim(request: HttpRequest, task_id: int) -> HttpResponse:
    return _task_command(request, task_id, services.review_task_claim)


@require_POST
@role_required(Role.STEWARD)
def task_release(request: HttpRequest, task_id: int) -> HttpResponse:
    return _task_command(request, task_id, services.review_task_release)


@require_POST
@role_required(Role.STEWARD)
def task_assign(request: HttpRequest, task_id: int) -> HttpResponse:
    raw = request.POST.get("assignee", "")
    return _task_command(
        request,
        task_id,
        services.review_task_assign,
        assignee_id=int(raw) if raw.isdigit() else None,
    )


@require_POST
@role_required(Role.STEWARD)
def tasks_bulk(request: HttpRequest) -> HttpResponse:
    ids = [int(i) for i in request.POST.getlist("task") if i.isdigit()]
    decision = request.POST.get("decision", "")
    back = _safe_next(request, reverse("steward:queue", args=["matches"]))
    if not ids:
        messages.error(request, "Select at least one task.")
        return _hx_redirect(request, back)
    try:
        result = services.review_tasks_decide_bulk(
            task_ids=ids,
            decision=decision,
            actor=request.user,
            comment=request.POST.get("comment", ""),
        )
    except services.TaskError as exc:
        messages.error(request, str(exc))
        return _hx_redirect(request, back)
    label = DECISION_LABELS.get(decision, decision)
    messages.success(request, f"{label}: {len(result.decided)} task(s) decided.")
    for task_id, why in sorted(result.refused.items()):
        messages.warning(request, f"Task {task_id} not decided: {why}")
    return _hx_redirect(request, back)


# --- golden records -------------------------------------------------------------------------


@role_required(Role.VIEWER)
def golden_detail(request: HttpRequest, golden_id: int) -> HttpResponse:
    try:
        golden, members = sel.golden_record_detail(golden_id=golden_id)
    except GoldenRecord.DoesNotExist:
        raise Http404("No such golden record.") from None
    if not user_has_role(request.user, Role.VIEWER, golden.domain):
        raise Http404("No such golden record.")
    pii = {} if sel.sees_pii(request.user) else sel.pii_attributes(golden.domain)
    attributes = []
    for name, value in golden.attributes.items():
        provenance = dict(golden.provenance.get(name, {}))
        if name in pii:
            value = sel.mask_value(value, pii[name])
            if isinstance(provenance.get("competitors"), list):
                provenance["competitors"] = [
                    {**c, "value": sel.mask_value(c.get("value"), pii[name])}
                    for c in provenance["competitors"]
                    if isinstance(c, dict)
                ]
        attributes.append({"name": name, "value": value, "provenance": provenance})
    for member in members:
        member.attributes = sel.attributes_for(
            user=request.user, domain=golden.domain, attributes=member.attributes
        )
    return render(
        request,
        "stewardship/golden.html",
        _context(
            request,
            golden=golden,
            attributes=attributes,
            members=members,
            timeline=_timeline(golden, pii),
            operations=sel.golden_operations(golden_id=golden.pk),
            **_relationships_context(request, golden),
        ),
    )


# Levels of a hierarchy the golden record page draws (the API reads deeper ones).
TREE_UP, TREE_DOWN, TREE_NODES = 10, 4, 300


def _tree(nodes: list[Any], parent: int) -> list[dict[str, Any]]:
    children: dict[int, list[Any]] = {}
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)

    def build(at: int) -> list[dict[str, Any]]:
        return [{"node": n, "children": build(n.id)} for n in children.get(at, [])]

    return build(parent)


def _relationships_context(request: HttpRequest, golden: GoldenRecord) -> dict[str, Any]:
    """The relationships section: each hierarchy as a tree, the links, the add form."""
    from mdm.relationship_selectors import (
        golden_hierarchy,
        golden_relationships,
        golden_unresolved_references,
    )

    def name_of(domain: str, attributes: dict[str, Any]) -> str:
        shown = sel.attributes_for(user=request.user, domain=domain, attributes=attributes)
        return get_domain(domain).display_name(shown)

    dom = get_domain(golden.domain)
    trees = []
    for rel in (t for t in dom.relationships if t.hierarchy):
        h = golden_hierarchy(
            golden=golden,
            rel_type=rel.code,
            up=TREE_UP,
            down=TREE_DOWN,
            max_nodes=TREE_NODES,
            name_of=name_of,
        )
        if not h.ancestors and not h.descendants:
            continue
        trees.append(
            {
                "type": rel,
                "hierarchy": h,
                "chain": list(reversed(h.ancestors)),
                "children": _tree(h.descendants, golden.pk),
            }
        )
    links = golden_relationships(golden_id=golden.pk, status=None)
    label = {r.code: r for r in dom.relationships}
    rows: list[dict[str, Any]] = []
    for direction, items in (("outgoing", links["outgoing"]), ("incoming", links["incoming"])):
        for r in items:
            other = r.to_golden if direction == "outgoing" else r.from_golden
            declared = label.get(r.rel_type)
            if declared is not None:
                text = declared.label if direction == "outgoing" else declared.inverse_label
            else:
                text = r.rel_type
            rows.append(
                {
                    "rel": r,
                    "direction": direction,
                    "label": text,
                    "other": other,
                    "other_name": name_of(other.domain, other.attributes),
                }
            )
    rows.sort(key=lambda row: (row["rel"].status != "active", row["direction"], row["rel"].pk))

    return {
        "relationship_trees": trees,
        "relationship_rows": rows,
        "relationship_types": dom.relationships,
        "unresolved": golden_unresolved_references(golden_id=golden.pk),
    }


def _relationships_response(request: HttpRequest, golden: GoldenRecord) -> HttpResponse:
    """htmx: the relationships section again (with messages); otherwise back to the page."""
    if request.headers.get("HX-Request"):
        return render(
            request,
            "stewardship/_relationships.html",
            _context(request, golden=golden, hx=True, **_relationships_context(request, golden)),
        )
    return redirect("steward:golden", golden_id=golden.pk)


def _posted_id(request: HttpRequest, name: str) -> int | None:
    raw = request.POST.get(name, "").strip().lstrip("#")
    return int(raw) if raw.isdigit() else None


@require_POST
@role_required(Role.STEWARD)
def relationship_add(request: HttpRequest, golden_id: int) -> HttpResponse:
    from mdm.services import relationships as rs

    golden = GoldenRecord.objects.filter(pk=golden_id).first()
    if golden is None or not user_has_role(request.user, Role.STEWARD, golden.domain):
        raise Http404("No such golden record.")
    target = _posted_id(request, "to_golden_id")
    if target is None:
        messages.error(request, "Give the id of the golden record to link to, e.g. 42.")
        return _relationships_response(request, golden)
    try:
        row = rs.golden_relationship_add(
            domain=golden.domain,
            from_golden_id=golden.pk,
            rel_type=request.POST.get("type", ""),
            to_golden_id=target,
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
    except (
        rs.RelationshipError,
        rs.RelationshipConflictError,
        rs.RelationshipNotFoundError,
    ) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Linked: {golden.pk} {row.rel_type} {row.to_golden_id}.")
    return _relationships_response(request, golden)


@require_POST
@role_required(Role.STEWARD)
def relationship_change(request: HttpRequest, golden_id: int, relationship_id: int) -> HttpResponse:
    """End a relationship, or re-parent it (``to_golden_id`` given)."""
    from mdm.services import relationships as rs

    golden = GoldenRecord.objects.filter(pk=golden_id).first()
    if golden is None or not user_has_role(request.user, Role.STEWARD, golden.domain):
        raise Http404("No such golden record.")
    action = request.POST.get("action", "end")
    try:
        if action == "reparent":
            target = _posted_id(request, "to_golden_id")
            if target is None:
                raise rs.RelationshipError("Give the id of the new golden record, e.g. 42.")
            row = rs.golden_relationship_reparent(
                domain=golden.domain,
                relationship_id=relationship_id,
                to_golden_id=target,
                actor=request.user,
                reason=request.POST.get("reason", ""),
            )
            done = f"Re-parented: {row.from_golden_id} {row.rel_type} {row.to_golden_id}."
        else:
            row = rs.golden_relationship_end(
                domain=golden.domain,
                relationship_id=relationship_id,
                actor=request.user,
                reason=request.POST.get("reason", ""),
            )
            done = f"Ended relationship {row.pk}."
    except (
        rs.RelationshipError,
        rs.RelationshipConflictError,
        rs.RelationshipNotFoundError,
    ) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return _relationships_response(request, golden)


def _timeline(golden: GoldenRecord, pii: Mapping[str, Attribute]) -> list[Any]:
    """The golden record's timeline, with the changed values of PII attributes masked."""
    entries = golden_record_timeline(golden_id=golden.pk)
    if not pii:
        return entries
    return [
        dataclasses.replace(
            e,
            changes={
                name: {k: sel.mask_value(v, pii[name]) for k, v in change.items()}
                if name in pii
                else change
                for name, change in e.changes.items()
            },
        )
        for e in entries
    ]


@require_POST
@role_required(Role.STEWARD)
def golden_split(request: HttpRequest, golden_id: int) -> HttpResponse:
    from mdm.services import lifecycle

    ids = [int(i) for i in request.POST.getlist("record") if i.isdigit()]
    golden = GoldenRecord.objects.filter(pk=golden_id).first()
    if golden is None or not user_has_role(request.user, Role.VIEWER, golden.domain):
        raise Http404("No such golden record.")
    if not user_has_role(request.user, Role.STEWARD, golden.domain):
        raise PermissionDenied(f"This needs the steward role in domain {golden.domain}.")
    try:
        lifecycle.golden_record_split(
            domain=golden.domain,
            golden_id=golden.pk,
            record_ids=ids,
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
    except (lifecycle.GoldenConflictError, lifecycle.GoldenOperationError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Split {len(ids)} record(s) out of golden record {golden.pk}.")
    return redirect("steward:golden", golden_id=golden.pk)


@require_POST
@role_required(Role.ADMIN)
def golden_erase(request: HttpRequest, golden_id: int) -> HttpResponse:
    from mdm.services import erasure

    golden = GoldenRecord.objects.filter(pk=golden_id).first()
    if golden is None or not user_has_role(request.user, Role.STEWARD, golden.domain):
        raise Http404("No such golden record.")
    try:
        done = erasure.erasure_request_file(
            domain=golden.domain,
            golden_id=golden.pk,
            actor=request.user,
            reference=request.POST.get("reference", "").strip(),
        )
    except erasure.ErasureError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"Erased golden record {done.golden_id} (erasure request {done.pk})."
        )
    return redirect("steward:golden", golden_id=golden.pk)


@require_POST
@role_required(Role.STEWARD)
def operation_undo(request: HttpRequest, operation_id: int) -> HttpResponse:
    from mdm.services import lifecycle

    back = _safe_next(request, reverse("steward:dashboard"))
    operation = GoldenOperation.objects.filter(pk=operation_id).only("domain").first()
    if operation is None or not user_has_role(request.user, Role.VIEWER, operation.domain):
        raise Http404("No such operation.")
    if not user_has_role(request.user, Role.STEWARD, operation.domain):
        raise PermissionDenied(f"This needs the steward role in domain {operation.domain}.")
    try:
        lifecycle.golden_record_undo(
            operation_id=operation_id, actor=request.user, reason=request.POST.get("reason", "")
        )
    except (lifecycle.GoldenConflictError, lifecycle.GoldenOperationError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Operation {operation_id} undone.")
    return redirect(back)


# --- quarantine -----------------------------------------------------------------------------


@role_required(Role.VIEWER)
def quarantine_list(request: HttpRequest) -> HttpResponse:
    qs = quarantine_visible(
        source_system=None, domains=user_domains(request.user, Role.VIEWER)
    ).filter(status=request.GET.get("status") or QuarantinedPayload.Status.OPEN)
    if request.GET.get("domain"):
        qs = qs.filter(domain=request.GET["domain"])
    if request.GET.get("source"):
        qs = qs.filter(source_system__code=request.GET["source"])
    page = sel.queue_page(queryset=qs.order_by("-id"), number=request.GET.get("page", 1))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "stewardship/quarantine_list.html",
        _context(
            request,
            page=page,
            query=query.urlencode(),
            sources=SourceSystem.objects.order_by("code").values_list("code", flat=True),
            statuses=QuarantinedPayload.Status.choices,
            current={k: request.GET.get(k, "") for k in ("domain", "source", "status")},
        ),
    )


def _source_fields(payload: QuarantinedPayload) -> dict[str, str]:
    """Attribute (or ``source_key``) -> the payload field it is read from, by the mapping."""
    if payload.mapping is None:
        return {}
    spec = payload.mapping.spec
    fields: dict[str, str] = {}
    key = spec.get("key", {})
    if isinstance(key, dict) and isinstance(key.get("field"), str):
        fields["source_key"] = key["field"]
    for attribute, rule in (spec.get("attributes") or {}).items():
        if isinstance(rule, str):
            fields[attribute] = rule
        elif isinstance(rule, dict) and isinstance(rule.get("field"), str):
            fields[attribute] = rule["field"]
    return fields


_QUOTED = re.compile(r"'[^']*'")


def _form_fields(payload: QuarantinedPayload) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The payload's fields with their errors beside them, and errors that fit no field."""
    data = payload.payload if isinstance(payload.payload, dict) else {}
    to_field = _source_fields(payload)
    by_field: dict[str, list[str]] = {}
    general: list[dict[str, Any]] = []
    for error in payload.errors or []:
        name = error.get("field", "")
        target = to_field.get(name, name)
        if target in data:
            by_field.setdefault(target, []).append(error.get("message", ""))
        else:
            general.append(error)
    fields = []
    for name, value in data.items():
        text = value if isinstance(value, str) else json.dumps(value)
        fields.append(
            {
                "name": name,
                "value": text,
                "errors": by_field.get(name, []),
                "json": not isinstance(value, str),
            }
        )
    return fields, general


@role_required(Role.VIEWER)
def quarantine_detail(request: HttpRequest, payload_id: int) -> HttpResponse:
    payload = (
        quarantine_visible(source_system=None, domains=user_domains(request.user, Role.VIEWER))
        .select_related("mapping")
        .filter(pk=payload_id)
        .first()
    )
    if payload is None:
        raise Http404("No such quarantined payload.")
    fields, general = _form_fields(payload)
    if not sel.sees_pii(request.user):
        # A raw payload may hold anything personal: a viewer sees its shape and errors only.
        for f in fields:
            f["value"] = sel.mask_value(f["value"])
            f["errors"] = [_QUOTED.sub(sel.MASK, e) for e in f["errors"]]
        general = [{**e, "message": _QUOTED.sub(sel.MASK, e.get("message", ""))} for e in general]
    return render(
        request,
        "stewardship/quarantine_detail.html",
        _context(request, payload=payload, fields=fields, general=general),
    )


def _quarantine_for_steward(request: HttpRequest, payload_id: int) -> QuarantinedPayload:
    """The payload, when the user is a steward of its domain (404 if it may not see it)."""
    payload = QuarantinedPayload.objects.filter(pk=payload_id).first()
    if payload is None or not user_has_role(request.user, Role.VIEWER, payload.domain):
        raise Http404("No such quarantined payload.")
    if not user_has_role(request.user, Role.STEWARD, payload.domain):
        raise PermissionDenied(f"This needs the steward role in domain {payload.domain}.")
    return payload


@require_POST
@role_required(Role.STEWARD)
def quarantine_replay(request: HttpRequest, payload_id: int) -> HttpResponse:
    payload = _quarantine_for_steward(request, payload_id)
    original = payload.payload if isinstance(payload.payload, dict) else {}
    data: dict[str, Any] = {}
    for name, value in original.items():
        raw = request.POST.get(f"field:{name}", "")
        if isinstance(value, str):
            data[name] = raw
        else:
            try:
                data[name] = json.loads(raw) if raw.strip() else None
            except ValueError:
                data[name] = raw
    try:
        payload, result = quarantined_payload_replay(
            payload_id=payload.pk, data=data, user=request.user
        )
    except QuarantineStateError as exc:
        messages.error(request, str(exc))
        return redirect("steward:quarantine-detail", payload_id=payload_id)
    if payload.status == QuarantinedPayload.Status.REPLAYED:
        messages.success(request, f"Payload {payload.pk} replayed: record {result.status}.")
        return redirect("steward:quarantine")
    messages.error(request, "Still rejected: fix the fields marked below.")
    return redirect("steward:quarantine-detail", payload_id=payload.pk)


@require_POST
@role_required(Role.STEWARD)
def quarantine_discard(request: HttpRequest, payload_id: int) -> HttpResponse:
    _quarantine_for_steward(request, payload_id)
    try:
        quarantined_payload_discard(
            payload_id=payload_id, reason=request.POST.get("reason", ""), user=request.user
        )
    except (QuarantineStateError, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect("steward:quarantine-detail", payload_id=payload_id)
    messages.success(request, f"Payload {payload_id} discarded.")
    return redirect("steward:quarantine")
