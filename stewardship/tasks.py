"""Background stewardship work.  Thin and safe to run twice."""

from __future__ import annotations

from celery import shared_task

from stewardship.services import review_tasks_escalate


@shared_task(name="stewardship.escalate_review_tasks")
def escalate_review_tasks_task() -> int:
    """Stamp new tasks' due times and escalate the overdue ones; returns how many escalated."""
    return review_tasks_escalate()
