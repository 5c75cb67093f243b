"""The append-only audit trail: one hash-chained row per governed change.

Fields only; entries are written by ``audit.services.audit_record`` and never changed.  On
PostgreSQL a trigger (migration ``audit.0002``) refuses UPDATE and DELETE on the entries.
"""

from __future__ import annotations

from django.db import models


class ActorKind(models.TextChoices):
    USER = "user"
    SOURCE = "source", "Source system"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


class AuditEntry(models.Model):
    """Who did what to which object, when.  ``detail`` never holds personal data.

    ``hash`` is the SHA-256 of ``prev_hash`` and the canonical entry (see
    ``audit.chain``); ``seq`` is the entry's place in the chain, from 1 without gaps.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    occurred_at = models.DateTimeField()
    actor = models.CharField(max_length=150, blank=True)
    actor_kind = models.CharField(max_length=10, choices=ActorKind.choices)
    action = models.CharField(max_length=50)
    target_type = models.CharField(max_length=50, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    domain = models.CharField(max_length=50, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["action", "target_type", "target_id", "-occurred_at"]),
            models.Index(fields=["domain", "-occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.target_type}:{self.target_id}"


class AuditChainHead(models.Model):
    """The one row every audit write locks: the last entry's seq and hash.

    Locking it serialises the chain (two transactions can never both link to the same
    previous entry), and it lets ``verify_audit`` see entries cut off the end.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"
