"""The database trigger that writes a ChangeEvent for every golden-record history row.

Every write path of golden records (match apply, its COPY variant, merge, split, correct,
undo, survivorship recompute) writes a history row; a trigger on that table writes the event
in the same transaction, so no path can forget it and a rolled-back change leaves none.
PostgreSQL runs one INSERT ... SELECT per statement (a transition table), SQLite one INSERT
per row.  On PostgreSQL the trigger also notifies ``aurum_change_events``, which the relay
command listens on, so delivery starts at commit rather than at the next poll.  Installed
by migration ``sync.0002``.
"""

from __future__ import annotations

from typing import Any

HISTORY_TABLE = "mdm_historicalgoldenrecord"

_KIND = """CASE
    WHEN {n}.history_type = '+' THEN 'created'
    WHEN {n}.history_type = '-' THEN 'erased'
    WHEN {n}.status = 'retired' AND {n}.survivor_id IS NOT NULL THEN 'merged'
    WHEN {n}.status = 'retired' THEN 'retired'
    WHEN COALESCE({n}.history_change_reason, '') LIKE 'split%' THEN 'split'
    ELSE 'updated' END"""

_COLUMNS = "domain, golden_id, version, kind, history_id, reason, occurred_at"

POSTGRES_INSTALL = [
    # Constants only: no value from outside reaches these statements (safe to build).
    "CREATE OR REPLACE FUNCTION aurum_golden_change_event() RETURNS trigger"  # noqa: S608  # nosec B608
    f"""
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_changeevent ({_COLUMNS})
    SELECT n.domain, n.id, n.version, {_KIND.format(n="n")}, n.history_id,
           COALESCE(n.history_change_reason, ''), n.history_date
    FROM aurum_new_rows n ORDER BY n.history_id;
    -- Wakes a listening relay at commit (notifications of one transaction are merged).
    PERFORM pg_notify('aurum_change_events', '');
    RETURN NULL;
END $$""",
    f"""CREATE TRIGGER aurum_golden_change_event AFTER INSERT ON {HISTORY_TABLE}
REFERENCING NEW TABLE AS aurum_new_rows FOR EACH STATEMENT
EXECUTE FUNCTION aurum_golden_change_event()""",
]
POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS aurum_golden_change_event ON {HISTORY_TABLE}",
    "DROP FUNCTION IF EXISTS aurum_golden_change_event()",
]

SQLITE_INSTALL = [
    f"CREATE TRIGGER aurum_golden_change_event AFTER INSERT ON {HISTORY_TABLE}"  # noqa: S608  # nosec B608
    f"""
FOR EACH ROW BEGIN
    INSERT INTO sync_changeevent ({_COLUMNS})
    VALUES (NEW.domain, NEW.id, NEW.version, {_KIND.format(n="NEW")}, NEW.history_id,
            COALESCE(NEW.history_change_reason, ''), NEW.history_date);
END""",
]
SQLITE_REMOVE = ["DROP TRIGGER IF EXISTS aurum_golden_change_event"]


# Relationship changes: one ``relationship`` event per history row of a golden relationship,
# on the golden record it goes from (see ``sync.selectors.event_payloads``).  Installed by
# migration ``sync.0003``.
RELATIONSHIP_TABLE = "mdm_historicalgoldenrelationship"
_REL_COLUMNS = "domain, golden_id, version, kind, relationship_history_id, reason, occurred_at"

RELATIONSHIP_POSTGRES_INSTALL = [
    f"""CREATE OR REPLACE FUNCTION aurum_relationship_change_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_changeevent ({_REL_COLUMNS})
    SELECT n.domain, n.from_golden_id, n.version, 'relationship', n.history_id,
           COALESCE(n.history_change_reason, ''), n.history_date
    FROM aurum_new_rows n ORDER BY n.history_id;
    PERFORM pg_notify('aurum_change_events', '');
    RETURN NULL;
END $$""",  # noqa: S608  # nosec B608
    f"""CREATE TRIGGER aurum_relationship_change_event AFTER INSERT ON {RELATIONSHIP_TABLE}
REFERENCING NEW TABLE AS aurum_new_rows FOR EACH STATEMENT
EXECUTE FUNCTION aurum_relationship_change_event()""",
]
RELATIONSHIP_POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS aurum_relationship_change_event ON {RELATIONSHIP_TABLE}",
    "DROP FUNCTION IF EXISTS aurum_relationship_change_event()",
]
RELATIONSHIP_SQLITE_INSTALL = [
    f"""CREATE TRIGGER aurum_relationship_change_event AFTER INSERT ON {RELATIONSHIP_TABLE}
FOR EACH ROW BEGIN
    INSERT INTO sync_changeevent ({_REL_COLUMNS})
    VALUES (NEW.domain, NEW.from_golden_id, NEW.version, 'relationship', NEW.history_id,
            COALESCE(NEW.history_change_reason, ''), NEW.history_date);
END""",  # noqa: S608  # nosec B608
]
RELATIONSHIP_SQLITE_REMOVE = ["DROP TRIGGER IF EXISTS aurum_relationship_change_event"]


def _run(schema_editor: Any, statements: dict[str, list[str]]) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in statements:
        raise RuntimeError(f"no change-event trigger for the {vendor} database")
    for sql in statements[vendor]:
        schema_editor.execute(sql, params=None)


def install(apps: Any, schema_editor: Any) -> None:
    _run(schema_editor, {"postgresql": POSTGRES_INSTALL, "sqlite": SQLITE_INSTALL})


def remove(apps: Any, schema_editor: Any) -> None:
    _run(schema_editor, {"postgresql": POSTGRES_REMOVE, "sqlite": SQLITE_REMOVE})


def install_relationships(apps: Any, schema_editor: Any) -> None:
    _run(
        schema_editor,
        {"postgresql": RELATIONSHIP_POSTGRES_INSTALL, "sqlite": RELATIONSHIP_SQLITE_INSTALL},
    )


def remove_relationships(apps: Any, schema_editor: Any) -> None:
    _run(
        schema_editor,
        {"postgresql": RELATIONSHIP_POSTGRES_REMOVE, "sqlite": RELATIONSHIP_SQLITE_REMOVE},
    )
