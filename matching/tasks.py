"""Background matching.  Thin: a domain in, one service call; safe to run twice."""

from __future__ import annotations

from celery import shared_task

from matching.services import match_pending
from mdm.domains import domain_codes


@shared_task(name="matching.match_pending")
def match_pending_task(domain: str) -> int:
    """Match the domain's changed records until none is pending; returns how many."""
    total = 0
    while (run := match_pending(domain=domain)) is not None:
        total += int(run.counts.get("records", 0))
    return total


@shared_task(name="matching.match_pending_all")
def match_pending_all_task() -> int:
    """The safety net behind the after-ingest trigger: a lost message delays, never loses."""
    return sum(match_pending_task(domain) for domain in domain_codes())
