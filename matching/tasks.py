"""Background matching.  Thin: a domain in, one service call; safe to run twice."""

from __future__ import annotations

from celery import shared_task

from matching.services import match_pending, match_run_full
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


@shared_task(name="matching.match_full")
def match_full_task(domain: str) -> int:
    """A full batch match of the domain (``match_run_full``); returns the run's id.

    Safe to run twice: a second run on unchanged data changes nothing. Routed to the
    ``match`` queue, so it runs on the workers sized for matching.
    """
    return match_run_full(domain=domain).pk
