"""One writer at a time per domain for golden-record membership.

A match run decides from a snapshot (scores, cross-reference, steward constraints) and then
applies it; a steward's merge, split, correction or undo changes membership and constraints
in between.  Both take the domain's lock inside their transaction before reading what they
change, so a match run never writes a result computed without a steward's latest decision,
and a steward command never interleaves with an apply.  On PostgreSQL it is a
transaction-level advisory lock (released at commit or rollback); SQLite allows one writing
transaction at a time anyway.

The database's own triggers take the same lock (``mdm.triggers``: a statement that writes
cross-references, or deletes a source or golden record), so its key is computed by
PostgreSQL from ``LOCK_KEY_SQL``, the one expression both use.
"""

from __future__ import annotations

from django.db import connection

NAMESPACE = "aurum:golden-membership:"
# The advisory lock key of a domain, as SQL over a text expression (``%s`` or a column).
LOCK_KEY_SQL = "hashtextextended('" + NAMESPACE + "' || {domain}, 0)"


def golden_domain_lock(domain: str) -> None:
    """Take the membership lock of ``domain`` until the current transaction ends."""
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        raise RuntimeError("golden_domain_lock needs a transaction (transaction.atomic)")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(" + LOCK_KEY_SQL.format(domain="%s") + ")", [domain]
        )
