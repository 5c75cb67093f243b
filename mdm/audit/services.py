"""Writing the audit trail.  Every governed change calls ``audit_record`` inside its own
transaction, so the entry commits or rolls back with the change it describes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from mdm.audit.chain import GENESIS, hash_of_row
from mdm.audit.models import ActorKind, AuditChainHead, AuditEntry

SYSTEM = "system"


def actor_identity(actor: Any) -> tuple[str, str]:
    """(name, kind) of whoever acts: a hub user, a source system (its principal, token or
    row), a plain string naming a system process, or None for the hub itself."""
    if actor is None:
        return SYSTEM, ActorKind.SYSTEM
    if isinstance(actor, str):
        return actor[:150], ActorKind.SYSTEM
    source = getattr(actor, "source_system", None)
    if source is not None and not hasattr(actor, "get_username"):
        return str(getattr(source, "code", source))[:150], ActorKind.SOURCE
    if hasattr(actor, "get_username"):
        if not getattr(actor, "is_authenticated", False) or not actor.pk:
            return "", ActorKind.ANONYMOUS
        return str(actor.get_username())[:150], ActorKind.USER
    code = getattr(actor, "code", None)  # a SourceSystem row
    if code is not None:
        return str(code)[:150], ActorKind.SOURCE
    return str(actor)[:150], ActorKind.SYSTEM


def _locked_head() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:  # a flushed test database; migration 0001 creates it otherwise
        AuditChainHead.objects.get_or_create(pk=1)
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    return head


def _append(
    head: AuditChainHead,
    *,
    action: str,
    actor: Any,
    target_type: str,
    target_id: Any,
    domain: str,
    detail: dict[str, Any] | None,
    when: datetime | None,
) -> AuditEntry:
    name, kind = actor_identity(actor)
    entry = AuditEntry(
        seq=head.seq + 1,
        occurred_at=when or timezone.now(),
        actor=name,
        actor_kind=kind,
        action=action,
        target_type=target_type,
        target_id="" if target_id is None else str(target_id),
        domain=domain or "",
        detail=detail or {},
        prev_hash=head.hash or GENESIS,
    )
    # Hash what the database will give back: JSON goes through one round trip first.
    entry.hash = hash_of_row(entry)
    entry.save(force_insert=True)
    head.seq, head.hash = entry.seq, entry.hash
    head.save(update_fields=["seq", "hash"])
    return entry


def audit_record(
    *,
    action: str,
    actor: Any = None,
    target_type: str = "",
    target_id: Any = None,
    domain: str = "",
    detail: dict[str, Any] | None = None,
    when: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the audit chain, in the caller's transaction.

    ``action`` is a dotted name (``golden.merge``, ``erasure.completed``); ``detail`` holds
    ids, counts and rule names, never personal data.  The chain head row is locked until the
    caller's transaction ends, so concurrent writers link in commit order and a rolled-back
    change leaves no entry.  Not idempotent: each call appends.
    """
    with transaction.atomic():
        return _append(
            _locked_head(),
            action=action,
            actor=actor,
            target_type=target_type,
            target_id=target_id,
            domain=domain,
            detail=detail,
            when=when,
        )


def audit_record_once(
    *,
    action: str,
    actor: Any,
    target_type: str,
    target_id: Any,
    within: timedelta,
    domain: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEntry | None:
    """Like ``audit_record``, unless an entry of the same action and target was written in
    the last ``within``: then nothing is written and None comes back.  The check runs under
    the chain lock, so two processes cannot both write one.  Safe to repeat."""
    now = timezone.now()
    with transaction.atomic():
        head = _locked_head()
        recent = AuditEntry.objects.filter(
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            occurred_at__gt=now - within,
        ).exists()
        if recent:
            return None
        return _append(
            head,
            action=action,
            actor=actor,
            target_type=target_type,
            target_id=target_id,
            domain=domain,
            detail=detail,
            when=now,
        )
