"""Review tasks: the doubtful cases a data steward settles, their audit trail and service levels.

Fields, constraints and trivial properties only; every write goes through
``stewardship.services``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from matching.models import MatchPair


class Priority(models.IntegerChoices):
    LOW = 1, "Low"
    NORMAL = 2, "Normal"
    HIGH = 3, "High"
    URGENT = 4, "Urgent"


class ReviewTask(models.Model):
    class Kind(models.TextChoices):
        POTENTIAL_MATCH = "potential_match", "Potential match"
        DATA_QUALITY = "data_quality", "Data-quality exception"

    class Status(models.TextChoices):
        OPEN = "open"
        DECIDED = "decided"
        OBSOLETE = "obsolete", "No longer relevant"

    class Decision(models.TextChoices):
        MERGE = "merge", "Merge"
        NOT_A_MATCH = "not_a_match", "Not a match"
        RESOLVED = "resolved", "Resolved"  # a data-quality exception settled by the steward

    domain = models.CharField(max_length=50)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.POTENTIAL_MATCH)
    pair = models.ForeignKey(MatchPair, null=True, blank=True, on_delete=models.SET_NULL)
    left_record_id = models.BigIntegerField()
    # A data-quality exception concerns one record: no right record.
    right_record_id = models.BigIntegerField(null=True, blank=True)
    match_probability = models.FloatField(default=0.0)
    explanation = models.JSONField(default=list, help_text="Match weight per comparison.")
    # Data-quality exceptions: the rule that failed and what it found.
    rule = models.CharField(max_length=100, blank=True)
    details = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    decision = models.CharField(max_length=20, blank=True, choices=Decision.choices)
    comment = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="review_tasks",
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    # Stamped from the domain's ServiceLevel when the task is first scheduled.
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    due_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-match_probability", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["left_record_id", "right_record_id"],
                condition=models.Q(status="open", kind="potential_match"),
                name="one_open_task_per_pair",
            )
        ]
        indexes = [
            models.Index(fields=["domain", "status", "-match_probability"]),
            # One per queue sort, ending in id: a page is read off the index alone.
            models.Index(fields=["status", "kind", "-priority", "due_at", "id"]),
            models.Index(fields=["status", "kind", "due_at", "id"]),
            models.Index(fields=["status", "kind", "-match_probability", "id"]),
            models.Index(fields=["status", "kind", "created_at", "id"]),
            models.Index(fields=["status", "kind", "domain"]),  # the dashboard's counts
            models.Index(fields=["assignee", "status"]),
            models.Index(fields=["decided_at"]),
        ]

    def __str__(self) -> str:
        return f"review {self.pk} {self.left_record_id}~{self.right_record_id} ({self.status})"

    @property
    def is_overdue(self) -> bool:
        from django.utils import timezone

        return (
            self.status == self.Status.OPEN
            and self.due_at is not None
            and self.due_at < timezone.now()
        )


class TaskEvent(models.Model):
    """The audit trail of review tasks: who did what to which task, when and why."""

    class Action(models.TextChoices):
        CLAIM = "claim"
        RELEASE = "release"
        ASSIGN = "assign"
        DECIDE = "decide"
        SKIP = "skip"
        ESCALATE = "escalate"

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=10, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decision = models.CharField(max_length=20, blank=True)
    comment = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["task", "-at"]), models.Index(fields=["action", "at"])]

    def __str__(self) -> str:
        return f"{self.action} task {self.task_id} at {self.at:%Y-%m-%d %H:%M}"


class ServiceLevel(models.Model):
    """How fast a domain's review tasks must be settled, and their starting priority."""

    domain = models.CharField(max_length=50, unique=True)
    due_hours = models.PositiveIntegerField(
        default=48, help_text="A new task is due this many hours after it was opened."
    )
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    escalated_priority = models.PositiveSmallIntegerField(
        choices=Priority.choices,
        default=Priority.URGENT,
        help_text="An overdue task is raised to this priority.",
    )

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return f"{self.domain}: due in {self.due_hours} h"
