"""Reading and verifying the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from mdm.audit.chain import GENESIS, hash_of_row
from mdm.audit.models import AuditChainHead, AuditEntry


def audit_entries(
    *,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    domain: str | None = None,
    actor: str | None = None,
) -> QuerySet[AuditEntry]:
    """Entries, newest first, filtered by any of the given fields (exact match; an action
    ending in ``.`` matches every action with that prefix)."""
    qs = AuditEntry.objects.all()
    if action:
        qs = (
            qs.filter(action__startswith=action)
            if action.endswith(".")
            else qs.filter(action=action)
        )
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_id:
        qs = qs.filter(target_id=target_id)
    if domain:
        qs = qs.filter(domain=domain)
    if actor:
        qs = qs.filter(actor=actor)
    return qs.order_by("-seq")


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    kind: str  # "gap", "edited", "relinked", "truncated"
    message: str


@dataclass(frozen=True)
class ChainReport:
    checked: int
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _walk(chunk: int) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = list(AuditEntry.objects.filter(seq__gt=last).order_by("seq")[:chunk])
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def audit_chain_verify(*, chunk: int = 5000) -> ChainReport:
    """Walk the chain from the first entry and report the first problem: a missing seq (a
    deleted row), a row whose content no longer gives its hash (an edited row), a row not
    linked to its predecessor's hash, or entries missing at the end (the head is ahead)."""
    expected_seq, prev = 1, GENESIS
    checked = 0
    for row in _walk(chunk):
        if row.seq != expected_seq:
            return ChainReport(
                checked,
                ChainProblem(
                    expected_seq,
                    "gap",
                    f"entry {expected_seq} is missing (the next entry is {row.seq})",
                ),
            )
        if row.prev_hash != prev:
            return ChainReport(
                checked,
                ChainProblem(
                    row.seq,
                    "relinked",
                    f"entry {row.seq} does not link to entry {row.seq - 1}'s hash",
                ),
            )
        if hash_of_row(row) != row.hash:
            return ChainReport(
                checked,
                ChainProblem(
                    row.seq,
                    "edited",
                    f"entry {row.seq} was changed after it was "
                    "written (its content does not give its hash)",
                ),
            )
        prev, expected_seq = row.hash, row.seq + 1
        checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev):
        return ChainReport(
            checked,
            ChainProblem(
                expected_seq,
                "truncated",
                f"the chain ends at entry {expected_seq - 1} but entry {head.seq} was written",
            ),
        )
    return ChainReport(checked, None)
