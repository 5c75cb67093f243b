"""The canonical form of an audit entry and its hash (shared by writing and verifying)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = "0" * 64


def canonical(
    *,
    seq: int,
    occurred_at: datetime,
    actor: str,
    actor_kind: str,
    action: str,
    target_type: str,
    target_id: str,
    domain: str,
    detail: Any,
) -> bytes:
    """The bytes hashed for one entry: sorted-key JSON, times in UTC to the microsecond."""
    return orjson.dumps(
        {
            "seq": seq,
            "occurred_at": occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "actor_kind": actor_kind,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "domain": domain,
            "detail": detail,
        },
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )


def entry_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


def hash_of_row(row: Any) -> str:
    """The hash an entry (an ``AuditEntry`` or anything with its fields) should carry."""
    return entry_hash(
        row.prev_hash,
        canonical(
            seq=row.seq,
            occurred_at=row.occurred_at,
            actor=row.actor,
            actor_kind=row.actor_kind,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            domain=row.domain,
            detail=row.detail,
        ),
    )
