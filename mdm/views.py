"""The hub's survivorship rules page (admins): edit, preview, save, watch the recompute.

Thin views: the form turns posted fields into a spec, ``mdm.services.survivorship`` does
the work.  Every response is a whole page, or with htmx the panel it replaces.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from mdm.charts import line_chart
from mdm.domains import UnknownDomainError, all_domains, get_domain
from mdm.domains.base import Domain
from mdm.forms import RulesForm, form_from_post, form_from_spec
from mdm.models import QualityScore, SourceSystem, SurvivorshipJob, SurvivorshipRuleSet
from mdm.roles import Role, user_has_role
from mdm.selectors import quality_issues_open, quality_overview
from mdm.services.survivorship import (
    Preview,
    SurvivorshipRulesConflictError,
    survivorship_rules_preview,
    survivorship_rules_update,
)
from mdm.survivorship import (
    STEWARD_SOURCE,
    RulesError,
    default_rules,
    spec_changes,
    survivorship_rules_active,
)

PAGE = "mdm/survivorship_rules.html"
PANEL = "mdm/_survivorship_panel.html"
JOB = "mdm/_survivorship_job.html"


def _admin_domain(request: HttpRequest, domain: str) -> Domain:
    if not user_has_role(request.user, Role.ADMIN, domain):
        raise PermissionDenied("The survivorship rules page needs the admin role in this domain.")
    try:
        return get_domain(domain)
    except UnknownDomainError as exc:
        raise Http404(str(exc)) from exc


def _context(dom: Domain, form: RulesForm, **extra: Any) -> dict[str, Any]:
    row = SurvivorshipRuleSet.objects.filter(domain=dom.code).select_related("updated_by").first()
    history = (
        list(row.history.select_related("history_user").order_by("-history_id")[:21]) if row else []
    )
    defaults = default_rules(dom.code).as_spec()
    changes = [
        (entry, spec_changes(older.spec if older else defaults, entry.spec))
        for entry, older in zip(history[:20], [*history[1:], None], strict=False)
    ]
    return {
        "domain": dom,
        "domains": all_domains(),
        "form": form,
        "ruleset": row,
        "history": changes,
        "sources": [*SourceSystem.objects.values_list("code", flat=True), STEWARD_SOURCE],
        "attribute_labels": {a.name: a.label for a in dom.attributes},
        **extra,
    }


def _panel(request: HttpRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    """The page, or for htmx the panel.  htmx swaps no 4xx answer by default, so the panel
    with its errors comes back as 200 (the outcome in the ``X-Aurum-Status`` header)."""
    if request.htmx:  # type: ignore[attr-defined]
        response = render(request, PANEL, context)
        response["X-Aurum-Status"] = str(status)
        return response
    return render(request, PAGE, context, status=status)


@login_required
@require_GET
def survivorship_rules_page(request: HttpRequest, domain: str) -> HttpResponse:
    """The rules of ``domain``, one row per attribute or group; ``?job=`` shows a recompute."""
    dom = _admin_domain(request, domain)
    active = survivorship_rules_active(domain=dom.code)
    form = form_from_spec(dom, active.as_spec(), version=active.version)
    job = None
    if request.GET.get("job", "").isdigit():
        job = SurvivorshipJob.objects.filter(domain=dom.code, pk=int(request.GET["job"])).first()
    return render(request, PAGE, _context(dom, form, job=job))


@login_required
@require_POST
def survivorship_rules_preview_page(request: HttpRequest, domain: str) -> HttpResponse:
    """The posted rules with what they would change; writes nothing."""
    dom = _admin_domain(request, domain)
    form = form_from_post(dom, request.POST)
    preview: Preview | None = None
    if not form.has_errors:
        try:
            preview = survivorship_rules_preview(domain=dom.code, spec=form.spec())
        except RulesError as exc:
            form.add_errors(exc.errors)
    status = 400 if form.has_errors else 200
    return _panel(request, _context(dom, form, preview=preview), status)


@login_required
@require_POST
def survivorship_rules_save(request: HttpRequest, domain: str) -> HttpResponse:
    """Save the posted rules as the next version and start the recompute."""
    dom = _admin_domain(request, domain)
    form = form_from_post(dom, request.POST)
    if not form.has_errors:
        try:
            _, job = survivorship_rules_update(
                domain=dom.code,
                spec=form.spec(),
                expected_version=form.version,
                actor=request.user,
                comment=form.comment,
            )
        except RulesError as exc:
            form.add_errors(exc.errors)
        except SurvivorshipRulesConflictError as exc:
            form.errors["version"] = [str(exc)]
            return _panel(request, _context(dom, form), 409)
        else:
            url = f"{reverse('mdm:survivorship-rules', args=[dom.code])}?job={job.pk}"
            if request.htmx:  # type: ignore[attr-defined]
                response = HttpResponse(status=204)
                response["HX-Redirect"] = url
                return response
            return redirect(url)
    return _panel(request, _context(dom, form), 400)


@login_required
@require_GET
def survivorship_job_fragment(request: HttpRequest, domain: str, pk: int) -> HttpResponse:
    """The progress of a recompute job; polls itself until the job is finished."""
    dom = _admin_domain(request, domain)
    job = SurvivorshipJob.objects.filter(domain=dom.code, pk=pk).first()
    if job is None:
        raise Http404(f"No survivorship job {pk} for {dom.code}.")
    return render(request, JOB, {"job": job, "domain": dom})


QUALITY_PAGE = "mdm/quality.html"
ISSUES_PER_PAGE = 50


@login_required
@require_GET
def quality_page(request: HttpRequest, domain: str) -> HttpResponse:
    """The data-quality page of a domain (``?source=`` narrows it to one source system): scores
    per dimension, their trend, the worst attributes, sources and rules, and the records
    failing now (``?rule=``, ``?attribute=``, ``?page=``).  Any hub role may read it; PII in
    the failure messages is masked for viewers."""
    if not user_has_role(request.user, Role.VIEWER, domain):
        raise PermissionDenied("The data-quality page needs a hub role in this domain.")
    try:
        dom = get_domain(domain)
    except UnknownDomainError as exc:
        raise Http404(str(exc)) from exc
    source = request.GET.get("source") or None
    rule = request.GET.get("rule") or None
    attribute = request.GET.get("attribute") or None
    overview = quality_overview(domain=dom.code, source_code=source)
    issues = Paginator(
        quality_issues_open(
            domain=dom.code, source_code=source, rule_name=rule, attribute=attribute
        ),
        ISSUES_PER_PAGE,
    ).get_page(request.GET.get("page"))
    mask = not user_has_role(request.user, Role.STEWARD)
    rows = [
        {
            "issue": issue,
            "message": "(masked)"
            if mask and issue.rule.attribute and dom.attribute(issue.rule.attribute).pii
            else issue.message,
        }
        for issue in issues
    ]
    series = [f.label for f in overview.dimensions if any(f.label in v for _, v in overview.trend)]
    return render(
        request,
        QUALITY_PAGE,
        {
            "domain": dom,
            "domains": all_domains(),
            "sources": SourceSystem.objects.filter(
                pk__in=QualityScore.objects.filter(domain=dom.code).values("source_system")
            ).order_by("code"),
            "source": source,
            "rule": rule,
            "attribute": attribute,
            "overview": overview,
            "trend_chart": line_chart(
                overview.trend, series=series, label="Score per dimension over time"
            ),
            "issues": issues,
            "rows": rows,
        },
    )
