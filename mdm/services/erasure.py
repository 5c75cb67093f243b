"""The right to erasure: remove a person's data from every table, keep a tombstone.

See ``erasure_request_file``.  mdm's own tables are handled here; matching, stewardship and
sync erase theirs in hooks registered with ``mdm.erasure`` (called in the same transaction).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import registered_models

from mdm.audit.services import audit_record
from mdm.domains import UnknownDomainError, get_domain
from mdm.erasure import ErasureSubject, erasure_hooks
from mdm.models import (
    CrossReference,
    ErasureRequest,
    GoldenOperation,
    GoldenRecord,
    GoldenRelationship,
    IdempotencyKey,
    IngestRun,
    QualityIssue,
    QuarantinedPayload,
    RecordChange,
    SourceRecord,
    SourceReference,
)
from mdm.selectors import golden_record_for_source_key, golden_record_resolve
from mdm.services.locks import golden_domain_lock

# Values shorter than this are not searched for elsewhere: too many strangers share them.
MIN_NEEDLE = 4
# Types whose values say little about who someone is and are shared by many.
_NOT_NEEDLES = frozenset({"enum", "boolean", "country", "currency", "integer", "decimal"})


class ErasureError(ValueError):
    """Bad input: no such domain, golden record or source key (HTTP 400/404)."""


class ErasureNotFoundError(ErasureError):
    pass


class ErasureConflictError(ErasureError):
    """The golden record was erased already (HTTP 409)."""


def _history(model: Any) -> Any:
    return model.history.model


def _subject_goldens(golden: GoldenRecord) -> set[int]:
    """The golden record and every golden record retired into it, however deep."""
    found = {golden.pk}
    frontier = {golden.pk}
    while frontier:
        frontier = set(
            GoldenRecord.objects.filter(survivor_id__in=frontier)
            .exclude(pk__in=found)
            .values_list("pk", flat=True)
        )
        found |= frontier
    return found


def _needles(domain: str, records: Iterable[int], goldens: Iterable[int]) -> tuple[str, ...]:
    """The person's personal values, lower-cased: every PII attribute value their records
    and golden records hold now or ever held, and their source keys (quoted, so that key
    P-1 does not match P-10)."""
    dom = get_domain(domain)
    types = {a.name: a.type for a in dom.attributes if a.pii and a.type not in _NOT_NEEDLES}
    wanted = set(types)
    values: set[str] = set()

    def add(attributes: Any) -> None:
        if not isinstance(attributes, dict):
            return
        for name, value in attributes.items():
            if name in wanted and value not in (None, "") and not isinstance(value, bool):
                text = str(value).strip().lower()
                if len(text) >= MIN_NEEDLE:
                    values.add(text)
                digits = "".join(c for c in text if c.isdigit())
                if types[name] == "phone" and len(digits) >= 7:
                    # Written differently elsewhere (+44 20 7946 0773): the bare digits too.
                    values.add(digits)

    records, goldens = list(records), list(goldens)
    for attributes in SourceRecord.objects.filter(pk__in=records).values_list(
        "attributes", flat=True
    ):
        add(attributes)
    for attributes in (
        _history(SourceRecord).objects.filter(id__in=records).values_list("attributes", flat=True)
    ):
        add(attributes)
    for attributes in (
        _history(GoldenRecord).objects.filter(id__in=goldens).values_list("attributes", flat=True)
    ):
        add(attributes)
    keys = {
        f'"{key.lower()}"'
        for key in SourceRecord.objects.filter(pk__in=records).values_list("source_key", flat=True)
    }
    keys |= {
        f'"{key.lower()}"'
        for key in _history(SourceRecord)
        .objects.filter(id__in=records)
        .values_list("source_key", flat=True)
    }
    return tuple(sorted(values | keys))


def _resolve(
    domain: str, golden_id: int | None, source: str | None, source_key: str | None
) -> GoldenRecord:
    if (golden_id is None) == (source is None or source_key is None):
        raise ErasureError("give either a golden id, or a source system and a source key")
    if golden_id is not None:
        golden = GoldenRecord.objects.filter(domain=domain, pk=golden_id).first()
        if golden is None:
            raise ErasureNotFoundError(f"there is no {domain} golden record {golden_id}")
        return golden_record_resolve(golden)
    assert source is not None and source_key is not None
    golden = golden_record_for_source_key(domain=domain, source_code=source, source_key=source_key)
    if golden is None:
        raise ErasureNotFoundError(
            f"there is no matched {domain} record with that key in source system {source}"
        )
    return golden


def erasure_request_file(
    *,
    domain: str,
    actor: Any,
    golden_id: int | None = None,
    source: str | None = None,
    source_key: str | None = None,
    reference: str = "",
) -> ErasureRequest:
    """Erase the person of a golden record (given by id, or by a source system and one of
    its source keys) from the hub, in one transaction.

    Removed: the values and raw payloads of their source records (the rows stay as deleted
    tombstones with a redacted key) and every history row of them; their golden record and
    the ones retired into it (emptied and retired) with all their history; their values in
    the history of any other golden record they once belonged to; quarantined payloads,
    stored idempotent responses, ingest-run errors, steward operations, quality issues and
    change markers that hold them; and, through the registered hooks, match pairs and the
    match store, review tasks and their events, change-event reasons and delivery errors.
    Kept: the ``ErasureRequest`` (golden id, time, who) and an audit entry.  The golden
    record's ``erased`` change event is written by the outbox trigger, so subscribers erase
    too.  Raises ``ErasureNotFoundError``, ``ErasureConflictError`` (erased already) or
    ``ErasureError``; nothing is written then.  Not repeatable: a second request for the
    same golden record is refused.
    """
    try:
        domain = get_domain(domain).code
    except UnknownDomainError as exc:
        raise ErasureNotFoundError(str(exc)) from exc
    if len(reference) > 100:
        raise ErasureError("the reference is at most 100 characters (a case or ticket number)")
    now = timezone.now()
    with transaction.atomic():
        golden_domain_lock(domain)  # no match run applies while the person is erased
        golden = _resolve(domain, golden_id, source, source_key)
        golden = GoldenRecord.objects.select_for_update().get(pk=golden.pk)
        if ErasureRequest.objects.filter(golden_id=golden.pk).exists():
            raise ErasureConflictError(f"golden record {golden.pk} was erased already")
        goldens = _subject_goldens(golden)
        erased_before = _history(GoldenRecord).objects.filter(
            id__in=goldens, history_type="-", history_change_reason__startswith="erased: "
        )
        if ErasureRequest.objects.filter(golden_id__in=goldens).exists() or erased_before.exists():
            raise ErasureConflictError(f"golden record {golden.pk} was erased already")
        records = set(
            CrossReference.objects.filter(golden_id__in=goldens).values_list("record_id", flat=True)
        )
        request = ErasureRequest.objects.create(
            domain=domain,
            golden_id=golden.pk,
            reference=reference,
            requested_by=actor if getattr(actor, "pk", None) else None,
            erased_at=now,
        )
        subject = ErasureSubject(
            request_id=request.pk,
            domain=domain,
            record_ids=frozenset(records),
            golden_ids=frozenset(goldens),
            needles=_needles(domain, records, goldens),
        )
        counts = _erase_mdm(subject, now)
        for name, hook in sorted(erasure_hooks().items()):
            for table, n in hook(subject).items():
                counts[f"{name}.{table}"] = n
        request.counts = counts
        request.save(update_fields=["counts"])
        audit_record(
            action="erasure.completed",
            actor=actor,
            target_type="golden_record",
            target_id=golden.pk,
            domain=domain,
            detail={
                "request": request.pk,
                "golden_ids": sorted(goldens),
                "records": len(records),
                "rows": counts,
            },
            when=now,
        )
    return request


def _erase_mdm(subject: ErasureSubject, now: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    records, goldens = sorted(subject.record_ids), sorted(subject.golden_ids)
    reason = f"erased: request {subject.request_id}"
    record_history = _history(SourceRecord)
    golden_history = _history(GoldenRecord)
    xref_history = _history(CrossReference)

    # Other people's golden records these records once belonged to keep none of their values.
    related = set(
        xref_history.objects.filter(record_id__in=records).values_list("golden_id", flat=True)
    ) - set(goldens)
    counts["golden_history_scrubbed"] = subject.scrub_rows(
        golden_history.objects.filter(id__in=related),
        ["attributes", "provenance", "history_change_reason"],
    )
    counts["golden_scrubbed"] = subject.scrub_rows(
        GoldenRecord.objects.filter(pk__in=related), ["attributes", "provenance"]
    )

    # Source records: tombstones with no values and a redacted key; one history row left,
    # which also tells every process's match store to drop them.
    keys = list(
        SourceRecord.objects.filter(pk__in=records).values_list(
            "source_system_id", "domain", "source_key"
        )
    )
    counts["source_record_history"] = record_history.objects.filter(id__in=records).delete()[0]
    counts["source_records"] = 0
    for record in SourceRecord.objects.filter(pk__in=records).order_by("pk"):
        record.attributes, record.raw = {}, {}
        record.source_key = f"erased-{subject.request_id}-{record.pk}"
        record.content_hash = "erased"
        record.is_deleted, record.deleted_at = True, now
        record.source_updated_at = None
        record._change_reason = reason  # type: ignore[attr-defined]
        record.save()
        counts["source_records"] += 1
    counts["record_changes"] = RecordChange.objects.filter(record_id__in=records).delete()[0]
    counts["quality_issues"] = QualityIssue.objects.filter(record_id__in=records).delete()[0]

    # Golden records: emptied, retired, without history; the one history row written last is
    # a deletion ('-'), from which the outbox trigger writes the ``erased`` event.
    counts["golden_history"] = golden_history.objects.filter(id__in=goldens).delete()[0]
    GoldenRecord.objects.filter(pk__in=goldens).update(
        attributes={},
        provenance={},
        status=GoldenRecord.Status.RETIRED,
        survivor=None,
        retired_at=now,
        updated_at=now,
    )
    for golden in GoldenRecord.objects.filter(pk__in=goldens).order_by("pk"):
        golden_history.objects.create(
            id=golden.pk,
            domain=golden.domain,
            status=golden.status,
            attributes={},
            provenance={},
            version=golden.version + 1,
            survivor_id=None,
            retired_at=now,
            created_at=golden.created_at,
            updated_at=now,
            history_date=now,
            history_type="-",
            history_change_reason=reason,
        )
    GoldenRecord.objects.filter(pk__in=goldens).update(version=F("version") + 1)
    counts["golden_records"] = len(goldens)

    # Their links (whom they work for, whose household they share) and the references their
    # records carried: deleted with every history row.  The deletion's history rows write
    # ``relationship`` events (subscribers drop the link), then go too.
    links = GoldenRelationship.objects.filter(
        Q(from_golden_id__in=goldens) | Q(to_golden_id__in=goldens)
    )
    link_ids = list(links.values_list("pk", flat=True))
    counts["relationships"] = links.delete()[0]
    counts["relationship_history"] = (
        _history(GoldenRelationship).objects.filter(id__in=link_ids).delete()[0]
    )
    counts["source_references"] = SourceReference.objects.filter(record_id__in=records).delete()[0]

    # Quarantined payloads of these records or keys, and any other that mentions them.
    by_key = Q(record_id__in=records)
    for system, domain, key in keys:
        by_key |= Q(source_system_id=system, domain=domain, source_key=key)
    # A quarantined payload is one record: one that mentions the person is about them.
    in_domain = QuarantinedPayload.objects.filter(domain=subject.domain)
    own = set(in_domain.filter(by_key).values_list("pk", flat=True))
    for field in ("payload", "errors", "resolution_note"):
        own |= set(subject.mentioning(in_domain, field).values_list("pk", flat=True))
    QuarantinedPayload.objects.filter(pk__in=own).update(
        payload={}, errors=[], source_key="", content_hash="", resolution_note=""
    )
    counts["quarantine"] = len(own)
    counts["quarantine_history"] = (
        _history(QuarantinedPayload).objects.filter(id__in=own).delete()[0]
    )
    counts["quarantine_history"] += subject.scrub_rows(
        _history(QuarantinedPayload).objects.filter(domain=subject.domain),
        ["payload", "errors", "resolution_note"],
    )

    systems = {system for system, _, _ in keys}
    counts["idempotency_keys"] = (
        subject.mentioning(IdempotencyKey.objects.filter(source_system_id__in=systems), "response")
        .only("pk")
        .delete()[0]
    )
    counts["ingest_runs"] = subject.scrub_rows(
        IngestRun.objects.filter(source_system_id__in=systems, domain=subject.domain), ["errors"]
    )

    # Steward operations on these golden records cannot be undone any more: their state
    # (the memberships and corrected values before and after) goes.
    ops = GoldenOperation.objects.filter(domain=subject.domain)
    touched = [
        pk for pk, ids in ops.values_list("pk", "golden_ids") if set(ids or []) & subject.golden_ids
    ]
    GoldenOperation.objects.filter(pk__in=touched).update(
        state={"erased": subject.request_id}, reason=""
    )
    counts["golden_operations"] = len(touched) + subject.scrub_rows(
        ops.exclude(pk__in=touched), ["state", "reason"]
    )
    # A steward's reason is copied into the history rows of everything the change touched
    # (constraints, cross-references, ...): every history table of every app is searched.
    for model in sorted(registered_models.values(), key=lambda m: m._meta.label):
        history = _history(model)
        counts[f"{model._meta.label_lower}_history_reasons"] = subject.scrub_rows(
            history.objects.exclude(history_change_reason=None).exclude(history_change_reason=""),
            ["history_change_reason"],
        )
    return {k: v for k, v in counts.items() if v}
