"""PostgreSQL triggers that keep every cross-reference pointing at a record and a golden
record, set-based (migration ``mdm.0013``).

The cross-reference's foreign keys are not database constraints (``db_constraint=False``):
their deferred check at commit was a ``SELECT ... FOR KEY SHARE`` per link and key, which
at 1M records was half of a full match's commit.  These triggers check the same thing once
per statement instead:

- a statement that inserts or updates cross-references fails if one names a source record
  or a golden record that does not exist.  Each written row probes the two primary keys
  (``LATERAL ... LIMIT 1``, migration ``mdm.0014``): as ``NOT EXISTS ... OR NOT EXISTS``
  PostgreSQL hashed both whole tables for every statement of more than a few rows, so a
  full run's 20,000-link statements each read every golden record (0.5 s a statement at
  146k golden records, growing with the table; 0.23 s by probes);
- a statement that deletes source records or golden records fails if a cross-reference
  still names one of them (the ORM deletes a record's link first: ``CASCADE``; a golden
  record with members stays: ``PROTECT``).

Both take the domain's membership lock (``mdm.services.locks``) before they look, the one
every writer of memberships already holds: a delete is therefore either committed before
a writer looks (the writer fails) or waits for the writer's commit and then sees its links
(the delete fails); the row lock of the foreign-key check did that before.  Not covered:
``TRUNCATE`` (fires no row-level trigger) and whoever disables the triggers;
``manage.py check_integrity`` finds what they leave.  SQLite, the embedded default, has the
ORM's rules and that command.
"""

from __future__ import annotations

from typing import Any

from mdm.services.locks import LOCK_KEY_SQL


def _function(name: str, domains: str, check: str) -> str:
    """A statement-level trigger function: the membership locks of ``domains`` (a query of
    domain codes), in order, then ``check``, which raises when it finds a broken link."""
    lock = LOCK_KEY_SQL.format(domain="d.domain")
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"  # nosec B608
        "DECLARE\n    bad record;\nBEGIN\n"
        f"    PERFORM pg_advisory_xact_lock({lock}) FROM ({domains} ORDER BY 1) AS d;\n"
        f"{check}\n    RETURN NULL;\nEND $$"
    )


POSTGRES_INSTALL = [
    _function(
        "aurum_xref_targets_exist",
        "SELECT DISTINCT g.domain FROM aurum_written w CROSS JOIN LATERAL "
        "(SELECT g.domain FROM mdm_goldenrecord g WHERE g.id = w.golden_id LIMIT 1) AS g",
        """    SELECT w.record_id, w.golden_id INTO bad FROM aurum_written w
    LEFT JOIN LATERAL (SELECT true AS found FROM mdm_sourcerecord r
                       WHERE r.id = w.record_id LIMIT 1) AS r ON true
    LEFT JOIN LATERAL (SELECT true AS found FROM mdm_goldenrecord g
                       WHERE g.id = w.golden_id LIMIT 1) AS g ON true
    WHERE r.found IS NULL OR g.found IS NULL
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cross-reference of source record % to golden record %: %',
            bad.record_id, bad.golden_id, 'the record or the golden record does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;""",
    ),
    """CREATE TRIGGER aurum_xref_inserted AFTER INSERT ON mdm_crossreference
REFERENCING NEW TABLE AS aurum_written
FOR EACH STATEMENT EXECUTE FUNCTION aurum_xref_targets_exist()""",
    """CREATE TRIGGER aurum_xref_updated AFTER UPDATE ON mdm_crossreference
REFERENCING NEW TABLE AS aurum_written
FOR EACH STATEMENT EXECUTE FUNCTION aurum_xref_targets_exist()""",
    _function(
        "aurum_record_unlinked",
        "SELECT DISTINCT domain FROM aurum_gone",
        """    SELECT x.record_id, x.golden_id INTO bad FROM mdm_crossreference x
    JOIN aurum_gone o ON o.id = x.record_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'source record % is still linked to golden record %',
            bad.record_id, bad.golden_id USING ERRCODE = 'foreign_key_violation';
    END IF;""",
    ),
    """CREATE TRIGGER aurum_record_deleted AFTER DELETE ON mdm_sourcerecord
REFERENCING OLD TABLE AS aurum_gone
FOR EACH STATEMENT EXECUTE FUNCTION aurum_record_unlinked()""",
    _function(
        "aurum_golden_unlinked",
        "SELECT DISTINCT domain FROM aurum_gone",
        """    SELECT x.record_id, x.golden_id INTO bad FROM mdm_crossreference x
    JOIN aurum_gone o ON o.id = x.golden_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'golden record % still has member source record %',
            bad.golden_id, bad.record_id USING ERRCODE = 'foreign_key_violation';
    END IF;""",
    ),
    """CREATE TRIGGER aurum_golden_deleted AFTER DELETE ON mdm_goldenrecord
REFERENCING OLD TABLE AS aurum_gone
FOR EACH STATEMENT EXECUTE FUNCTION aurum_golden_unlinked()""",
]
POSTGRES_REMOVE = [
    "DROP TRIGGER IF EXISTS aurum_golden_deleted ON mdm_goldenrecord",
    "DROP TRIGGER IF EXISTS aurum_record_deleted ON mdm_sourcerecord",
    "DROP TRIGGER IF EXISTS aurum_xref_updated ON mdm_crossreference",
    "DROP TRIGGER IF EXISTS aurum_xref_inserted ON mdm_crossreference",
    "DROP FUNCTION IF EXISTS aurum_golden_unlinked()",
    "DROP FUNCTION IF EXISTS aurum_record_unlinked()",
    "DROP FUNCTION IF EXISTS aurum_xref_targets_exist()",
]


def run_on_postgresql(schema_editor: Any, statements: list[str]) -> None:
    """Run a migration's trigger ``statements`` on PostgreSQL; nothing on other databases."""
    if schema_editor.connection.vendor == "postgresql":
        for sql in statements:
            schema_editor.execute(sql, params=None)


def install(apps: Any, schema_editor: Any) -> None:
    run_on_postgresql(schema_editor, POSTGRES_INSTALL)


def remove(apps: Any, schema_editor: Any) -> None:
    run_on_postgresql(schema_editor, POSTGRES_REMOVE)
