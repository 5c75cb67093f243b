"""Erasure in stewardship: the person's values in review tasks and their events."""

from __future__ import annotations

from django.db.models import Q

from mdm.erasure import ErasureSubject
from stewardship.models import ReviewTask, TaskEvent


def erase(subject: ErasureSubject) -> dict[str, int]:
    """Tasks about the person's records keep their weights but lose the compared values
    (``left``/``right`` of each explanation line) and their details; any task, comment or
    event elsewhere that mentions them is scrubbed."""
    records = subject.record_ids
    own = ReviewTask.objects.filter(Q(left_record_id__in=records) | Q(right_record_id__in=records))
    changed = 0
    for pk, explanation in own.values_list("pk", "explanation"):
        lines = [
            {k: v for k, v in line.items() if k not in ("left", "right")}
            if isinstance(line, dict)
            else line
            for line in explanation or []
        ]
        ReviewTask.objects.filter(pk=pk).update(explanation=lines, details={})
        changed += 1
    in_domain = ReviewTask.objects.filter(domain=subject.domain)
    changed += subject.scrub_rows(in_domain, ["explanation", "details", "comment"])
    events = subject.scrub_rows(
        TaskEvent.objects.filter(task__domain=subject.domain), ["comment", "detail"]
    )
    return {"review_tasks": changed, "task_events": events}
