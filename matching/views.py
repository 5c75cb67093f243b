"""The match model page: parameters, score distribution and the threshold explorer.

Thin: the figures come from ``matching.selectors``; any hub role may read the page.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from matching.selectors import match_model_for_page, probability_histogram, threshold_explore
from mdm.charts import histogram
from mdm.domains import UnknownDomainError, all_domains, get_domain
from mdm.roles import Role, user_has_role


def _threshold(raw: str | None, default: float) -> float:
    try:
        value = float(raw) if raw not in (None, "") else default
    except ValueError:
        return default
    return min(max(value, 0.0), 1.0)


@login_required
@require_GET
def match_model_page(request: HttpRequest, domain: str) -> HttpResponse:
    """m, u and match weight per comparison level of the active model (``?version=`` another),
    the distribution of the scored pairs' probabilities, and what thresholds ``?lower=`` and
    ``?upper=`` would do (htmx swaps the explorer as they move)."""
    if not user_has_role(request.user, Role.VIEWER, domain):
        raise PermissionDenied("The match model page needs a hub role in this domain.")
    try:
        dom = get_domain(domain)
    except UnknownDomainError as exc:
        raise Http404(str(exc)) from exc
    version = request.GET.get("version", "")
    model = match_model_for_page(
        domain=dom.code, version=int(version) if version.isdigit() else None
    )
    lower = _threshold(request.GET.get("lower"), model.lower_threshold if model else 0.6)
    upper = _threshold(request.GET.get("upper"), model.upper_threshold if model else 0.95)
    lower = min(lower, upper)
    counts, edges = probability_histogram(domain=dom.code)
    report = model.report if model else {}
    return render(
        request,
        "matching/model.html",
        {
            "domain": dom,
            "domains": all_domains(),
            "model": model,
            "prior": report.get("prior"),
            "levels": [
                {**level, "bar_px": min(abs(level.get("match_weight") or 0.0) * 8, 160)}
                for level in report.get("levels", [])
            ],
            "warnings": report.get("warnings", []),
            "figures": threshold_explore(domain=dom.code, lower=lower, upper=upper),
            "chart": histogram(
                counts,
                edges=edges,
                marks={"lower": lower, "upper": upper},
                label="Scored pairs by match probability",
            ),
            "pairs": sum(counts),
        },
    )
