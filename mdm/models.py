"""Source systems, their mappings and records, ingest runs and quarantine.

Fields, constraints and trivial properties only; every write goes through ``mdm.services``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from mdm.history import history_user
from mdm.provenance import ProvenanceField


class Channel(models.TextChoices):
    API = "api", "API"
    FILE = "file", "File"
    REPLAY = "replay", "Quarantine replay"
    CONNECTOR = "connector", "Connector"


# The hub's own source: a steward's correction of a golden attribute is a record of it.
STEWARD_SOURCE = "aurum-steward"


class SourceSystem(models.Model):
    """A system that sends records to the hub (CRM, ERP, billing, web shop, ...)."""

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Lower is more trusted; survivorship's source-priority rule reads it.
    priority = models.PositiveIntegerField(default=100)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class TokenAccess(models.TextChoices):
    """What a source system's token may do: read (GET, search, feed) and/or write (push,
    delete)."""

    READ = "read", "Read only"
    WRITE = "write", "Write only"
    READ_WRITE = "read-write", "Read and write"


class SourceToken(models.Model):
    """An API token of a source system.  Only a SHA-256 of the secret is stored.

    Scopes: ``domains`` lists the domains the token may touch; empty means the source
    system's domains (those it has a registered mapping for; every domain when it has no
    mapping).  ``access`` says read and/or write.  A token stops working when revoked or
    once ``expires_at`` has passed (rotation sets it on the old token).
    """

    source_system = models.ForeignKey(SourceSystem, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    domains = models.JSONField(default=list, blank=True)
    access = models.CharField(
        max_length=10, choices=TokenAccess.choices, default=TokenAccess.READ_WRITE
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The token this one replaced by rotation (the old one stays valid until its expiry).
    rotated_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_to"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.source_system.code}:{self.prefix}"

    @property
    def is_active(self) -> bool:
        from django.utils import timezone

        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )

    @property
    def can_read(self) -> bool:
        return self.access in (TokenAccess.READ, TokenAccess.READ_WRITE)

    @property
    def can_write(self) -> bool:
        return self.access in (TokenAccess.WRITE, TokenAccess.READ_WRITE)


class SourceMapping(models.Model):
    """How one source system's export becomes a domain's attributes (see docs/mapping-format.md)."""

    source_system = models.ForeignKey(
        SourceSystem, on_delete=models.CASCADE, related_name="mappings"
    )
    domain = models.CharField(max_length=50)
    name = models.SlugField(max_length=100, default="default")
    is_default = models.BooleanField(default=True)
    spec = models.JSONField()
    # Hash of the spec: part of every record's content hash, so a changed mapping re-maps.
    fingerprint = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["source_system__code", "domain", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_system", "domain", "name"], name="uniq_mapping_name"
            ),
            models.UniqueConstraint(
                fields=["source_system", "domain"],
                condition=models.Q(is_default=True),
                name="uniq_default_mapping",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_system.code}/{self.domain}/{self.name}"


class IngestRun(models.Model):
    """One load: an API request, a file, or a quarantine replay, with its counts and timings."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial", "Succeeded with rejects"
        FAILED = "failed"

    source_system = models.ForeignKey(
        SourceSystem, on_delete=models.PROTECT, related_name="ingest_runs"
    )
    domain = models.CharField(max_length=50)
    mapping = models.ForeignKey(SourceMapping, null=True, blank=True, on_delete=models.SET_NULL)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    file_name = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    read_count = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    deleted_count = models.PositiveIntegerField(default=0)
    stale_count = models.PositiveIntegerField(default=0)
    quarantined_count = models.PositiveIntegerField(default=0)
    # The first errors, for display; every rejected row is in QuarantinedPayload.
    errors = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["source_system", "domain", "-started_at"])]

    def __str__(self) -> str:
        return f"run {self.pk} {self.source_system_id}/{self.domain} {self.status}"

    @property
    def rows_per_second(self) -> float | None:
        if not self.duration_seconds:
            return None
        return self.read_count / self.duration_seconds


class SourceRecord(models.Model):
    """One record as a source system holds it: raw payload, normalised attributes, hash."""

    # Indexed by the unique constraint (source_system, domain, source_key) already.
    source_system = models.ForeignKey(
        SourceSystem, on_delete=models.PROTECT, related_name="records", db_index=False
    )
    domain = models.CharField(max_length=50)
    source_key = models.CharField(max_length=255)
    attributes = models.JSONField(default=dict)
    raw = models.JSONField(default=dict)
    content_hash = models.CharField(max_length=32)
    version = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField()
    source_updated_at = models.DateTimeField(null=True, blank=True)
    is_deleted = models.BooleanField(default=False)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Provenance only, and the same run for every row of a batch: no database constraint,
    # whose check at commit cost PostgreSQL a lookup per record written (the ORM still
    # nulls the link when a run is deleted).
    ingest_run = models.ForeignKey(
        IngestRun,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_index=False,
        db_constraint=False,
    )
    # Every index costs on the bulk load path; history is read by record id and date.  The
    # history user is not checked by the database either (see ``CrossReference``).
    history = HistoricalRecords(
        get_user=history_user,
        no_db_index=["source_system", "ingest_run"],
        user_db_constraint=False,
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_system", "domain", "source_key"], name="uniq_source_record"
            )
        ]
        indexes = [models.Index(fields=["domain", "source_system"])]

    def __str__(self) -> str:
        return f"{self.source_system_id}/{self.domain}/{self.source_key}"


class RecordChange(models.Model):
    """A marker, written with the record in one transaction, that matching must look at it.

    Matching consumes markers in id order and deletes the ones it has processed, so a record
    accepted by ingestion can never be missed by matching.
    """

    class Kind(models.TextChoices):
        UPSERT = "upsert"
        DELETE = "delete"

    # No database constraint: a marker lives from the ingest that writes it to the match
    # run that consumes it, and its check at commit was a lookup per record ingested (a
    # third of PostgreSQL's commit work per batch).  The ORM still deletes the markers of a
    # deleted record, erasure deletes them explicitly, and a match run skips a marker whose
    # record is gone.
    record = models.ForeignKey(
        SourceRecord, on_delete=models.CASCADE, related_name="changes", db_constraint=False
    )
    domain = models.CharField(max_length=50)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["domain", "id"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.domain} record {self.record_id}"


class QuarantinedPayload(models.Model):
    """A payload the hub could not accept, kept with its reasons for a steward to fix or discard."""

    class Status(models.TextChoices):
        OPEN = "open"
        REPLAYED = "replayed"
        DISCARDED = "discarded"

    source_system = models.ForeignKey(
        SourceSystem, on_delete=models.PROTECT, related_name="quarantine"
    )
    domain = models.CharField(max_length=50)
    ingest_run = models.ForeignKey(IngestRun, null=True, blank=True, on_delete=models.SET_NULL)
    mapping = models.ForeignKey(SourceMapping, null=True, blank=True, on_delete=models.SET_NULL)
    source_key = models.CharField(max_length=255, blank=True)
    line_number = models.PositiveIntegerField(null=True, blank=True)
    payload = models.JSONField()
    # Same hash as a record's: a re-sent bad row finds its open payload instead of a new one.
    content_hash = models.CharField(max_length=32, blank=True)
    errors = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    resolution_note = models.TextField(blank=True)
    record = models.ForeignKey(SourceRecord, null=True, blank=True, on_delete=models.SET_NULL)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "domain", "source_system"]),
            models.Index(fields=["source_system", "domain", "content_hash"]),
        ]

    def __str__(self) -> str:
        return f"quarantine {self.pk} ({self.status})"


class IdempotencyKey(models.Model):
    """The stored response of an API write, replayed when the same key comes again."""

    source_system = models.ForeignKey(SourceSystem, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_system", "key"], name="uniq_idempotency_key")
        ]

    def __str__(self) -> str:
        return f"{self.source_system_id}:{self.key}"


class GoldenRecord(models.Model):
    """The one trusted record of a real customer, supplier or product.

    Its id is stable: a merged-away golden record is retired with a pointer to its survivor,
    and reading a retired id answers with the survivor.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        RETIRED = "retired"

    domain = models.CharField(max_length=50)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    attributes = models.JSONField(default=dict)
    # attribute -> {"record", "source", "source_key", "rule", "strategy",
    # "competitors": [{"value", "source", "source_key"}, ...]} (see mdm.survivorship);
    # stored with each distinct entry once (mdm.provenance)
    provenance = ProvenanceField(default=dict)
    version = models.PositiveIntegerField(default=1)
    survivor = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="retired_into"
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Written in bulk by a full run: the history user is not checked by the database (see
    # ``CrossReference``).
    history = HistoricalRecords(get_user=history_user, user_db_constraint=False)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["domain", "status"])]

    def __str__(self) -> str:
        return f"golden {self.domain} {self.pk} ({self.status})"


class CrossReference(models.Model):
    """Which golden record a source record belongs to (exactly one), with history.

    Its two foreign keys are not checked row by row by the database
    (``db_constraint=False``): at 1M records a full run writes a million links, and each
    one's deferred check was a ``SELECT ... FOR KEY SHARE`` of its record and of its golden
    record at commit (11 of a 21 s commit at 200k records).  The ORM keeps its rules
    (deleting a record deletes its link, a golden record with members cannot be deleted)
    and, on PostgreSQL, the triggers of ``mdm.triggers`` keep the database's: a statement
    that writes links fails if one names a missing record or golden record (one set-based
    check per statement), and a statement that deletes a record or a golden record still
    linked fails; both sides take the domain's membership lock first, so neither can
    slip between the other's check and commit.  ``manage.py check_integrity`` finds a link
    that points at nothing whatever made it (a ``TRUNCATE``, SQLite, a disabled trigger).
    History rows do not check their user either: deleting a user through Django still
    empties it (``SET_NULL``), and reads join it as an outer join.
    """

    class LinkedBy(models.TextChoices):
        MATCH = "match", "Automatic match"
        STEWARD = "steward", "Steward decision"
        NEW = "new", "No match: new golden record"

    # The primary key's index serves reads by record; the golden id keeps its own index.
    record = models.OneToOneField(
        SourceRecord,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="xref",
        db_constraint=False,
    )
    golden = models.ForeignKey(
        GoldenRecord, on_delete=models.PROTECT, related_name="members", db_constraint=False
    )
    linked_by = models.CharField(max_length=10, choices=LinkedBy.choices, default=LinkedBy.MATCH)
    linked_at = models.DateTimeField()
    history = HistoricalRecords(get_user=history_user, user_db_constraint=False)

    class Meta:
        ordering = ["record_id"]

    def __str__(self) -> str:
        return f"record {self.record_id} -> golden {self.golden_id}"


class SurvivorshipRuleSet(models.Model):
    """The survivorship rules of one domain, as an admin saved them: one row, versioned.

    ``spec`` is ``{"groups": {...}, "rules": {attribute or group: rule}}`` (see
    ``mdm.survivorship``); a domain without a row uses the defaults declared in its module.
    Every save bumps ``version`` and writes a history row (who, when, what).
    """

    domain = models.CharField(max_length=50, unique=True)
    version = models.PositiveIntegerField(default=0)
    spec = models.JSONField(default=dict)
    comment = models.TextField(blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return f"survivorship rules {self.domain} v{self.version}"


class SurvivorshipJob(models.Model):
    """One recompute of a domain's golden records after a rule change, with its progress."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SUPERSEDED = "superseded", "Superseded by a newer rule version"

    domain = models.CharField(max_length=50)
    rule_version = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Touched with every progress step: a running job silent for long lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["domain", "-id"])]

    def __str__(self) -> str:
        return f"survivorship job {self.pk} {self.domain} v{self.rule_version} {self.status}"

    @property
    def percent(self) -> int:
        if self.total == 0:
            return 100 if self.status == self.Status.SUCCEEDED else 0
        return min(100, self.done * 100 // self.total)

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.SUPERSEDED)


class GoldenOperation(models.Model):
    """A steward's merge, split, correction or undo of golden records: the audit entry.

    ``state`` holds what an undo needs: the membership and status of every golden record
    touched before and after, the pair constraints written and removed, and the steward
    record's attributes before and after a correction.
    """

    class Kind(models.TextChoices):
        MERGE = "merge"
        SPLIT = "split"
        UNDO = "undo"
        CORRECT = "correct", "Correction"

    domain = models.CharField(max_length=50)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField()
    # Every golden record touched; the first is the one the operation is about.
    golden_ids = models.JSONField(default=list)
    target = models.ForeignKey(
        GoldenRecord, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    state = models.JSONField(default=dict)
    # One undo per operation at most: the unique key settles two concurrent undos.
    undoes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by"
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["domain", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} ({self.domain})"


class UserToken(models.Model):
    """An API token of a hub user (steward, admin, viewer).  Only a SHA-256 is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="aurum_tokens"
    )
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"user {self.user_id}:{self.prefix}"

    @property
    def is_active(self) -> bool:
        from django.utils import timezone

        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )


class DomainRole(models.Model):
    """A hub user's role in one domain (steward of ``supplier`` only).

    The global groups (viewer, steward, admin) still mean "in every domain"; a grant adds a
    role in its domain on top of them (see ``mdm.roles``).
    """

    class Role(models.IntegerChoices):
        VIEWER = 1, "viewer"
        STEWARD = 2, "steward"
        ADMIN = 3, "admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="aurum_domain_roles"
    )
    domain = models.CharField(max_length=50)
    role = models.PositiveSmallIntegerField(choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["user_id", "domain"]
        constraints = [
            models.UniqueConstraint(fields=["user", "domain"], name="uniq_domain_role"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.get_role_display()}@{self.domain}"


class QualityRule(models.Model):
    """A data-quality rule an admin set on a domain (see ``mdm.quality`` for what each checks).

    ``params`` by kind: validity and completeness take none; uniqueness ``{"scope": "source" |
    "domain"}``; consistency ``{"when": attr, "equals": value}`` (``attribute`` must then have a
    value) or ``{"not_after": attr}`` (``attribute``'s value is not later than the other's);
    freshness ``{"max_age_days": n}``.
    """

    class Kind(models.TextChoices):
        COMPLETENESS = "completeness"
        VALIDITY = "validity"
        UNIQUENESS = "uniqueness"
        CONSISTENCY = "consistency"
        FRESHNESS = "freshness"

    domain = models.CharField(max_length=50)
    name = models.SlugField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    attribute = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True)
    # Only this source system's records; none means every source of the domain.
    source_system = models.ForeignKey(
        SourceSystem, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    # A newly failing record opens a data-quality task in the steward queue.
    opens_tasks = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["domain", "name"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "name"], name="uniq_quality_rule_name")
        ]

    def __str__(self) -> str:
        return f"{self.domain}/{self.name}"


class QualityRun(models.Model):
    """One evaluation of a domain's quality rules: after an ingest run, or the whole domain."""

    class Trigger(models.TextChoices):
        INGEST = "ingest"
        SCHEDULE = "schedule"
        MANUAL = "manual"

    domain = models.CharField(max_length=50)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    ingest_run = models.ForeignKey(IngestRun, null=True, blank=True, on_delete=models.SET_NULL)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    records_checked = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    issues_opened = models.PositiveIntegerField(default=0)
    issues_resolved = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["domain", "-id"])]

    def __str__(self) -> str:
        return f"quality run {self.pk} {self.domain} ({self.trigger})"


class QualityScore(models.Model):
    """Of a whole-domain run: how many records one rule checked and how many failed, per source."""

    run = models.ForeignKey(QualityRun, on_delete=models.CASCADE, related_name="scores")
    rule = models.ForeignKey(QualityRule, on_delete=models.CASCADE, related_name="scores")
    domain = models.CharField(max_length=50)
    source_system = models.ForeignKey(SourceSystem, on_delete=models.CASCADE, related_name="+")
    dimension = models.CharField(max_length=20, choices=QualityRule.Kind.choices)
    attribute = models.CharField(max_length=100, blank=True)
    checked = models.PositiveIntegerField()
    failed = models.PositiveIntegerField()
    measured_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["domain", "measured_at"])]

    def __str__(self) -> str:
        return f"{self.rule_id}@{self.run_id}: {self.failed}/{self.checked}"


class QualityIssue(models.Model):
    """A record failing a rule: open while it fails, resolved when a later check passes it."""

    rule = models.ForeignKey(QualityRule, on_delete=models.CASCADE, related_name="issues")
    record = models.ForeignKey(SourceRecord, on_delete=models.CASCADE, related_name="+")
    domain = models.CharField(max_length=50)
    source_system = models.ForeignKey(SourceSystem, on_delete=models.CASCADE, related_name="+")
    message = models.TextField()
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "record"], name="uniq_quality_issue")
        ]
        indexes = [models.Index(fields=["domain", "resolved_at", "rule"])]

    def __str__(self) -> str:
        return f"{self.rule_id} on record {self.record_id}"


class AlertRule(models.Model):
    """A threshold an admin set on one of the hub's signals, and where to say it was crossed.

    It fires once when the signal goes above ``threshold`` (an incident) and clears once when
    it is back at or below it; nothing is sent while it stays on either side.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    name = models.CharField(max_length=100, unique=True)
    # A signal registered with mdm.services.alerts (e.g. "overdue_tasks", "quality_score_drop").
    signal = models.CharField(max_length=50)
    domain = models.CharField(max_length=50, blank=True, help_text="Empty: every domain.")
    threshold = models.FloatField(help_text="The alert fires when the signal is above this.")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    # E-mail addresses (comma-separated) or the webhook URL.
    target = models.CharField(max_length=500)
    is_active = models.BooleanField(default=True)
    firing = models.BooleanField(default=False)
    fired_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    history = HistoricalRecords(get_user=history_user, excluded_fields=["last_checked_at"])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertEvent(models.Model):
    """An alert firing or clearing, with the notification's outcome."""

    class Kind(models.TextChoices):
        FIRED = "fired"
        CLEARED = "cleared"

    alert = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.FloatField()
    threshold = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)
    delivered = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.alert_id} {self.kind} at {self.value}"


class ErasureRequest(models.Model):
    """A person's right to erasure, carried out: the minimal tombstone the hub keeps.

    Holds the golden id, when it was erased, who asked and how many rows each table lost;
    never the person's data (a request by source key stores only the golden id it found).
    """

    domain = models.CharField(max_length=50)
    golden_id = models.BigIntegerField(unique=True)
    # The admin's case or ticket number (free text is not kept: it could name the person).
    reference = models.CharField(max_length=100, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    erased_at = models.DateTimeField()
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"erasure {self.pk}: {self.domain} golden {self.golden_id}"


class SourceReference(models.Model):
    """A source record naming another record of its own source system by its source key.

    Written with the record by ingestion (the mapping's ``[references]``), replaced whenever
    the record changes.  It is resolved to golden records through the cross-reference; until
    the target record arrives (and is matched) it is held here, unresolved.
    """

    record = models.ForeignKey(SourceRecord, on_delete=models.CASCADE, related_name="references")
    rel_type = models.CharField(max_length=50)
    # Denormalised from the record: the target is (source_system, target_domain, target_key).
    source_system = models.ForeignKey(
        SourceSystem, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    target_domain = models.CharField(max_length=50)
    target_key = models.CharField(max_length=255)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["record", "rel_type", "target_key"], name="uniq_source_reference"
            )
        ]
        # Resolving a late target finds the references waiting for its key.
        indexes = [models.Index(fields=["source_system", "target_domain", "target_key"])]

    def __str__(self) -> str:
        return f"record {self.record_id} {self.rel_type} {self.target_key!r}"


class GoldenRelationship(models.Model):
    """A link between two golden records (``from_golden`` ``rel_type`` ``to_golden``).

    ``origin`` "source" links are derived from the members' source references and follow
    every merge, split and undo; a steward's link (added, ended or re-parented by hand) is
    ``steward_locked``: derivation leaves it alone, only re-pointing it when a golden record
    it names is merged away.  ``provenance`` says which source record won and which lost.
    Every change bumps ``version`` and writes a history row, from which a database trigger
    writes a ``relationship`` change event.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        ENDED = "ended"
        # Derived from the sources but not applied: it would close a cycle in a hierarchy.
        HELD = "held", "Held (would close a cycle)"

    class Origin(models.TextChoices):
        SOURCE = "source"
        STEWARD = "steward"

    domain = models.CharField(max_length=50)
    rel_type = models.CharField(max_length=50)
    from_golden = models.ForeignKey(
        GoldenRecord, on_delete=models.PROTECT, related_name="relationships_out"
    )
    to_golden = models.ForeignKey(
        GoldenRecord, on_delete=models.PROTECT, related_name="relationships_in"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.SOURCE)
    steward_locked = models.BooleanField(default=False)
    provenance = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rel_type", "from_golden", "to_golden"],
                condition=models.Q(status="active"),
                name="uniq_active_relationship",
            )
        ]
        indexes = [
            models.Index(fields=["from_golden", "rel_type", "status"]),
            models.Index(fields=["to_golden", "rel_type", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.from_golden_id} {self.rel_type} {self.to_golden_id} ({self.status})"


class Connector(models.Model):
    """A scheduled pull of one source system's changes for one domain (see mdm.connectors).

    ``config`` holds the kind's settings (never a secret); the secret (a database password or
    an HTTP token) is ``secret_encrypted`` (Fernet), written through the services and never
    shown back.  ``watermark`` advances only when a run commits.  ``current_run`` and
    ``lease_until`` are the claim of the running run: a new run is refused while the lease
    holds, and a run whose process died is taken over once its lease has expired.
    """

    class Kind(models.TextChoices):
        DATABASE = "database", "Database table or query"
        FILE_DROP = "file_drop", "File drop folder"
        HTTP = "http", "HTTP JSON endpoint"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    source_system = models.ForeignKey(
        SourceSystem, on_delete=models.PROTECT, related_name="connectors"
    )
    domain = models.CharField(max_length=50)
    mapping = models.ForeignKey(SourceMapping, null=True, blank=True, on_delete=models.PROTECT)
    config = models.JSONField(default=dict, blank=True)
    secret_encrypted = models.TextField(blank=True)
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    cron = models.CharField(max_length=100, blank=True)
    batch_size = models.PositiveIntegerField(default=5000)
    is_paused = models.BooleanField(default=False)
    next_run_at = models.DateTimeField(null=True, blank=True)
    watermark = models.JSONField(null=True, blank=True)
    last_full_compare_at = models.DateTimeField(null=True, blank=True)
    current_run = models.ForeignKey(
        "ConnectorRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(
        get_user=history_user,
        excluded_fields=["secret_encrypted", "next_run_at", "current_run", "lease_until"],
    )

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["is_paused", "next_run_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)


class ConnectorRun(models.Model):
    """One run of a connector: its counts, the watermark before and after, and errors."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial", "Succeeded with rejects"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    ingest_run = models.ForeignKey(IngestRun, null=True, blank=True, on_delete=models.SET_NULL)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    read_count = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    quarantined_count = models.PositiveIntegerField(default=0)
    deleted_count = models.PositiveIntegerField(default=0)
    stale_count = models.PositiveIntegerField(default=0)
    files_count = models.PositiveIntegerField(default=0)
    full_compare = models.BooleanField(default=False)
    watermark_before = models.JSONField(null=True, blank=True)
    watermark_after = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["connector", "-id"])]

    def __str__(self) -> str:
        return f"{self.connector_id} run {self.pk} {self.status}"


class ConnectorFile(models.Model):
    """A file a file-drop connector processed: each (name, content hash) is processed once."""

    class Status(models.TextChoices):
        DONE = "done"
        FAILED = "failed"

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=500)
    content_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices)
    run = models.ForeignKey(ConnectorRun, null=True, blank=True, on_delete=models.SET_NULL)
    read_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    processed_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connector", "name", "content_hash"], name="uniq_connector_file"
            )
        ]

    def __str__(self) -> str:
        return f"{self.connector_id}:{self.name}"
