"""The outbox, its subscribers and their deliveries.

Fields, constraints and trivial properties only; every write goes through ``sync.services``.
"""

from __future__ import annotations

from django.db import models


class ChangeEvent(models.Model):
    """One golden change, written by a database trigger on the golden-record history table.

    The trigger runs inside the transaction that changed the golden record, so an event exists
    exactly when its change committed.  ``seq`` is not the row id: ids are taken when a row is
    inserted, and transactions commit in another order, so a reader of ``id > N`` could pass
    an id whose transaction commits later.  The sequencer (``change_events_sequence``) gives
    ``seq`` to committed events, in one locked transaction at a time, so a reader of
    ``seq > N`` never sees a gap that is filled later.
    """

    class Kind(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        MERGED = "merged"
        SPLIT = "split"
        RETIRED = "retired"
        ERASED = "erased"
        # A golden relationship added, re-pointed, held or ended (golden_id: its "from").
        RELATIONSHIP = "relationship"

    seq = models.BigIntegerField(null=True, blank=True, unique=True)
    domain = models.CharField(max_length=50)
    golden_id = models.BigIntegerField()
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The golden record's history row of this version (no foreign key: erasure purges it).
    history_id = models.BigIntegerField(null=True, blank=True)
    # A relationship event: the relationship's history row (``version`` is its version).
    relationship_history_id = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    occurred_at = models.DateTimeField()
    sequenced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["seq", "id"]
        indexes = [
            models.Index(fields=["domain", "seq"]),
            models.Index(fields=["golden_id", "seq"]),
            models.Index(
                fields=["id"], condition=models.Q(seq__isnull=True), name="sync_event_unsequenced"
            ),
        ]

    def __str__(self) -> str:
        return f"event {self.seq or '-'} {self.kind} {self.domain} golden {self.golden_id}"

    @property
    def message_id(self) -> str:
        return f"evt_{self.seq}"


class EventSequence(models.Model):
    """The one row the sequencer locks: the last ``seq`` it gave."""

    last_seq = models.BigIntegerField(default=0)
    # Retention purged every event up to this seq: a feed reader behind it needs a snapshot.
    purged_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"sequence at {self.last_seq}"


class Subscriber(models.Model):
    """A system that receives golden changes: a webhook, an AMQP exchange, or a pull consumer."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook"
        AMQP = "amqp", "AMQP exchange"
        PULL = "pull", "Pull consumer (change feed)"

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Webhook: the https URL; AMQP: the broker URL (amqp://user:pass@host:5672/vhost).
    url = models.CharField(max_length=500, blank=True)
    exchange = models.CharField(max_length=200, blank=True)
    # Secrets in Standard Webhooks form (whsec_<base64>); the previous one stays valid while a
    # rotation is under way: messages are signed with both.
    secret = models.CharField(max_length=200, blank=True)
    previous_secret = models.CharField(max_length=200, blank=True)
    domains = models.JSONField(default=list, blank=True, help_text="Empty: every domain.")
    event_kinds = models.JSONField(default=list, blank=True, help_text="Empty: every kind.")
    # attribute -> allowed values, e.g. {"country": ["DE", "FR"]}: data-residency routing.
    filters = models.JSONField(default=dict, blank=True)
    include_source_keys = models.BooleanField(default=True)
    # When set with include_source_keys, only this system's keys are sent.
    source_system = models.ForeignKey(
        "mdm.SourceSystem", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    max_attempts = models.PositiveIntegerField(default=8)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    # Events up to this seq have their Delivery rows (push subscribers).
    planned_seq = models.BigIntegerField(default=0)
    # A pull consumer's acknowledged position.
    acked_seq = models.BigIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    circuit_open_until = models.DateTimeField(null=True, blank=True)
    attempts_total = models.PositiveBigIntegerField(default=0)
    failures_total = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} ({self.kind})"


class Delivery(models.Model):
    """One event on its way to one push subscriber, with its attempts."""

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for next_attempt_at
        QUEUED = "queued"  # a delivery task was sent
        SENDING = "sending"  # a worker is sending it
        DELIVERED = "delivered"
        DEAD = "dead", "Dead letter"

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(ChangeEvent, on_delete=models.CASCADE, related_name="deliveries")
    seq = models.BigIntegerField()
    golden_id = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["seq", "subscriber_id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "event"], name="uniq_delivery")
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["subscriber", "golden_id", "seq"]),
            models.Index(fields=["subscriber", "status"]),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} seq {self.seq} to {self.subscriber_id} ({self.status})"
