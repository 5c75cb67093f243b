"""Review tasks: the doubtful cases a data steward settles."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from matching.models import MatchPair


class ReviewTask(models.Model):
    class Kind(models.TextChoices):
        POTENTIAL_MATCH = "potential_match", "Potential match"

    class Status(models.TextChoices):
        OPEN = "open"
        DECIDED = "decided"
        OBSOLETE = "obsolete", "No longer relevant"

    domain = models.CharField(max_length=50)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.POTENTIAL_MATCH)
    pair = models.ForeignKey(MatchPair, null=True, blank=True, on_delete=models.SET_NULL)
    left_record_id = models.BigIntegerField()
    right_record_id = models.BigIntegerField()
    match_probability = models.FloatField()
    explanation = models.JSONField(default=list, help_text="Match weight per comparison.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    decision = models.CharField(max_length=20, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-match_probability", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["left_record_id", "right_record_id"],
                condition=models.Q(status="open"),
                name="one_open_task_per_pair",
            )
        ]
        indexes = [models.Index(fields=["domain", "status", "-match_probability"])]

    def __str__(self) -> str:
        return f"review {self.pk} {self.left_record_id}~{self.right_record_id} ({self.status})"
