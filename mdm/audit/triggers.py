"""The PostgreSQL trigger that makes the audit trail append-only (migration ``audit.0002``).

UPDATE and DELETE on ``audit_auditentry`` raise, whoever runs them; only a superuser who
drops or disables the trigger first can change a row, and ``verify_audit`` then finds the
edit through the hash chain.  SQLite, the embedded default, has only the hash chain.
"""

from __future__ import annotations

from typing import Any

from mdm.triggers import run_on_postgresql

TABLE = "audit_auditentry"

POSTGRES_INSTALL = [
    """CREATE OR REPLACE FUNCTION aurum_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on audit_auditentry refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$""",
    f"""CREATE TRIGGER aurum_audit_append_only BEFORE UPDATE OR DELETE ON {TABLE}
FOR EACH ROW EXECUTE FUNCTION aurum_audit_append_only()""",
]
POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS aurum_audit_append_only ON {TABLE}",
    "DROP FUNCTION IF EXISTS aurum_audit_append_only()",
]


def install(apps: Any, schema_editor: Any) -> None:
    run_on_postgresql(schema_editor, POSTGRES_INSTALL)


def remove(apps: Any, schema_editor: Any) -> None:
    run_on_postgresql(schema_editor, POSTGRES_REMOVE)


def create_head(apps: Any, schema_editor: Any) -> None:
    apps.get_model("audit", "AuditChainHead").objects.get_or_create(pk=1)
