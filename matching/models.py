"""The match model, scored pairs, steward constraints and match runs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from mdm.history import history_user
from mdm.models import SourceRecord


class JSONTextField(models.JSONField):
    """A JSONField kept as the JSON text written: PostgreSQL ``json``, not ``jsonb``.

    For documents written in bulk and read whole, never queried into: ``jsonb`` parses
    each one into its binary form on the way in, a third of the database's work of writing
    the match pairs (PostgreSQL's CPU time for their COPY at 200k records); ``json`` checks
    the text and stores it as it is.  Reads give the same values (keys in the order
    written, where ``jsonb`` sorted them); ``jsonb`` operators and key lookups do not
    apply.  Elsewhere a plain JSONField.
    """

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        # psycopg parses ``json`` itself (Django has it leave only ``jsonb`` as text).
        if value is not None and not isinstance(value, str):
            return value
        return super().from_db_value(value, expression, connection)


class MatchModel(models.Model):
    """A trained model of a domain, versioned; one active per domain."""

    domain = models.CharField(max_length=50)
    version = models.PositiveIntegerField()
    parameters = models.JSONField(help_text="The trained engine settings.")
    report = models.JSONField(default=dict, help_text="Prior, m/u per level, warnings.")
    upper_threshold = models.FloatField(
        default=0.95, help_text="At or above: the records are merged automatically."
    )
    lower_threshold = models.FloatField(
        default=0.6, help_text="At or above (and below the upper): a steward reviews the pair."
    )
    is_active = models.BooleanField(default=False)
    records_trained = models.PositiveIntegerField(default=0)
    training_seconds = models.FloatField(default=0.0)
    trained_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["domain", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "version"], name="uniq_model_version"),
            models.UniqueConstraint(
                fields=["domain"], condition=models.Q(is_active=True), name="one_active_model"
            ),
            models.CheckConstraint(
                condition=models.Q(lower_threshold__lte=models.F("upper_threshold")),
                name="thresholds_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.domain} model v{self.version}{' (active)' if self.is_active else ''}"


class MatchPair(models.Model):
    """A scored pair kept for explanation and review (left id < right id).

    Derived data: every full run rewrites the domain's pairs, erasure deletes a person's
    explicitly, and deleting a record or a model deletes theirs through the ORM's cascade.
    The database does not check the three foreign keys (``db_constraint=False``): at 1M
    records that check was a ``SELECT ... FOR KEY SHARE`` per pair and key at commit (and
    a lock written into each source record) that guarded nothing the writers don't.
    """

    domain = models.CharField(max_length=50)
    model = models.ForeignKey(
        MatchModel, on_delete=models.CASCADE, related_name="pairs", db_constraint=False
    )
    # No index of its own: the unique (left, right) index serves lookups by left.
    left = models.ForeignKey(
        SourceRecord,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    right = models.ForeignKey(
        SourceRecord, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    match_probability = models.FloatField()
    match_weight = models.FloatField()
    contributions = JSONTextField(default=list)
    scored_at = models.DateTimeField()

    class Meta:
        ordering = ["-match_probability"]
        constraints = [
            models.UniqueConstraint(fields=["left", "right"], name="uniq_pair"),
            models.CheckConstraint(
                condition=models.Q(left__lt=models.F("right")), name="pair_ordered"
            ),
        ]
        indexes = [models.Index(fields=["domain", "-match_probability"])]

    def __str__(self) -> str:
        return f"{self.left_id}~{self.right_id} {self.match_probability:.3f}"


class PairConstraint(models.Model):
    """A steward's decision that two records are (must-link) or are not (cannot-link) one
    entity.  Every later match run honours it."""

    class Kind(models.TextChoices):
        MUST_LINK = "must_link", "Same entity"
        CANNOT_LINK = "cannot_link", "Different entities"

    domain = models.CharField(max_length=50)
    left = models.ForeignKey(SourceRecord, on_delete=models.CASCADE, related_name="+")
    right = models.ForeignKey(SourceRecord, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["left", "right"], name="uniq_constraint_pair"),
            models.CheckConstraint(
                condition=models.Q(left__lt=models.F("right")), name="constraint_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.left_id}/{self.right_id}"


class MatchRun(models.Model):
    """One training, full match or incremental match, with its counts and timings."""

    class Kind(models.TextChoices):
        TRAIN = "train"
        FULL = "full"
        INCREMENTAL = "incremental"

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    domain = models.CharField(max_length=50)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    model = models.ForeignKey(MatchModel, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict)
    timings = models.JSONField(default=dict)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} match run {self.pk} {self.domain} {self.status}"
