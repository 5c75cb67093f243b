"""Quarantine: payloads the hub could not accept, fixed and replayed or discarded by a steward."""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from mdm.mapping import compile_mapping, identity_mapping
from mdm.models import Channel, QuarantinedPayload
from mdm.readers import SourceRow
from mdm.services.ingest import (
    REJECTED,
    Counts,
    RowResult,
    content_hash,
    ingest_run_finish,
    ingest_run_start,
    source_records_ingest_rows,
)


class QuarantineStateError(ValueError):
    """The payload is no longer open (already replayed or discarded)."""


def quarantined_payload_replay(
    *, payload_id: int, data: dict[str, Any] | None = None, user: Any = None
) -> tuple[QuarantinedPayload, RowResult]:
    """Run a quarantined payload (optionally fixed: ``data`` replaces it) through ingestion.

    Accepted: the payload becomes ``replayed`` and points at its record.  Rejected again: it
    stays open with the new reasons and the fixed data, and no second quarantine row is made.
    Lock, then check: replaying a payload that is no longer open raises QuarantineStateError,
    so a double click cannot apply it twice.
    """
    with transaction.atomic():
        payload = (
            QuarantinedPayload.objects.select_for_update(of=("self",))
            .select_related("source_system", "mapping")
            .get(pk=payload_id)
        )
        if payload.status != QuarantinedPayload.Status.OPEN:
            raise QuarantineStateError(f"quarantined payload {payload.pk} is {payload.status}")
        if data is not None:
            payload.payload = data
        if not isinstance(payload.payload, dict) or "_unparsed" in payload.payload:
            raise QuarantineStateError(
                "this payload could not be parsed; send the corrected record as a JSON object"
            )
        mapping = (
            compile_mapping(payload.mapping.spec, domain=payload.domain)
            if payload.mapping
            else identity_mapping(payload.domain)
        )
        started = time.perf_counter()
        run = ingest_run_start(
            source_system=payload.source_system,
            domain=payload.domain,
            channel=Channel.REPLAY,
            mapping=payload.mapping,
            user=user,
        )
        (result,) = source_records_ingest_rows(
            run=run,
            mapping=mapping,
            rows=[SourceRow(payload.line_number or 1, payload.payload)],
            user=user,
            quarantine_rejects=False,
        )
        counts = Counts()
        counts.add([result])
        if result.status == REJECTED:
            counts.quarantined = 0  # it is still the same quarantined payload
            payload.errors = [e.as_dict() for e in result.errors]
            payload.content_hash = content_hash(mapping.fingerprint, payload.payload)
        else:
            payload.status = QuarantinedPayload.Status.REPLAYED
            payload.resolved_at = timezone.now()
            payload.resolved_by = user if getattr(user, "pk", None) else None
            payload.record_id = result.record_id
        if result.source_key:
            payload.source_key = result.source_key
        payload._change_reason = f"replay in run {run.pk}"  # type: ignore[attr-defined]
        payload.save()
        ingest_run_finish(run=run, counts=counts, started=started)
    return payload, result


def quarantined_payload_discard(
    *, payload_id: int, reason: str, user: Any = None
) -> QuarantinedPayload:
    """Close a payload without applying it; a reason is required.  Refused once closed."""
    if not reason.strip():
        raise ValueError("a reason is required to discard a quarantined payload")
    with transaction.atomic():
        payload = QuarantinedPayload.objects.select_for_update().get(pk=payload_id)
        if payload.status != QuarantinedPayload.Status.OPEN:
            raise QuarantineStateError(f"quarantined payload {payload.pk} is {payload.status}")
        payload.status = QuarantinedPayload.Status.DISCARDED
        payload.resolution_note = reason.strip()
        payload.resolved_at = timezone.now()
        payload.resolved_by = user if getattr(user, "pk", None) else None
        payload._change_reason = "discarded"  # type: ignore[attr-defined]
        payload.save()
    return payload
