"""The audit trail: hash chain, append-only on PostgreSQL, verification, and what writes it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from rest_framework.test import APIClient

from mdm.audit.chain import GENESIS, hash_of_row
from mdm.audit.models import AuditChainHead, AuditEntry
from mdm.audit.selectors import audit_chain_verify
from mdm.audit.services import audit_record, audit_record_once
from mdm.services.lifecycle import golden_record_merge, golden_record_undo
from mdm.services.survivorship import survivorship_rules_update
from stewardship.models import ReviewTask
from stewardship.services import review_task_decide
from tests.stewardship.factories import pair_task, two_people, user_with_role


@pytest.fixture
def admin_user(db):
    return user_with_role("ada", "admin")


@pytest.fixture
def steward(db):
    return user_with_role("stella", "steward")


def entries(action=None):
    qs = AuditEntry.objects.order_by("seq")
    return list(qs.filter(action=action) if action else qs)


def test_entries_are_chained_by_hash(db, steward):
    first = audit_record(action="test.one", actor=steward, target_type="thing", target_id=1)
    second = audit_record(action="test.two", detail={"n": 2, "ids": [3, 1]})

    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    assert (first.actor, first.actor_kind) == ("stella", "user")
    assert (second.actor, second.actor_kind) == ("system", "system")
    stored = AuditEntry.objects.get(seq=2)
    assert hash_of_row(stored) == stored.hash  # survives the database round trip
    head = AuditChainHead.objects.get()
    assert (head.seq, head.hash) == (2, second.hash)
    assert audit_chain_verify().ok


def test_an_entry_rolls_back_with_its_change(db):
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(action="test.rolled_back")
        raise RuntimeError("the change failed")

    assert AuditEntry.objects.count() == 0
    assert not AuditChainHead.objects.filter(seq__gt=0).exists()
    audit_record(action="test.kept")
    assert [e.seq for e in entries()] == [1]
    assert audit_chain_verify().ok


def test_verify_audit_command_passes_on_an_intact_chain(db, capsys):
    for i in range(3):
        audit_record(action="test.n", target_id=i)
    call_command("verify_audit")
    assert capsys.readouterr().out.strip() == "audit trail intact: 3 entries"


def _tamper(sql, params):
    """Change the trail behind the application's back (on PostgreSQL, as the superuser
    who can switch the append-only trigger off)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER aurum_audit_append_only")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER aurum_audit_append_only")


def test_verify_audit_finds_an_edited_row(db):
    for i in range(4):
        audit_record(action="test.n", target_id=i, detail={"golden": i})
    _tamper("UPDATE audit_auditentry SET target_id = %s WHERE seq = %s", ["99", 3])

    with pytest.raises(CommandError) as error:
        call_command("verify_audit")
    assert str(error.value) == (
        "audit trail broken at entry 3 (edited): entry 3 was changed after it was written "
        "(its content does not give its hash); 2 entries before it are intact"
    )


def test_verify_audit_finds_a_deleted_row(db):
    for i in range(4):
        audit_record(action="test.n", target_id=i)
    _tamper("DELETE FROM audit_auditentry WHERE seq = %s", [2])

    report = audit_chain_verify()
    problem = report.problem
    assert problem is not None
    assert (problem.seq, problem.kind, report.checked) == (2, "gap", 1)
    with pytest.raises(CommandError, match="entry 2 is missing"):
        call_command("verify_audit")


def test_verify_audit_finds_a_rewritten_and_rehashed_row(db):
    for i in range(3):
        audit_record(action="test.n", target_id=i)
    row = AuditEntry.objects.get(seq=2)
    row.target_id = "forged"
    forged = hash_of_row(row)  # a forger re-hashes the row, but the next one links to the old
    _tamper(
        "UPDATE audit_auditentry SET target_id = %s, hash = %s WHERE seq = 2", ["forged", forged]
    )

    report = audit_chain_verify()
    problem = report.problem
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, "relinked")


def test_verify_audit_finds_entries_cut_off_the_end(db):
    for i in range(3):
        audit_record(action="test.n", target_id=i)
    _tamper("DELETE FROM audit_auditentry WHERE seq = %s", [3])

    report = audit_chain_verify()
    problem = report.problem
    assert problem is not None
    assert (problem.kind, report.checked) == ("truncated", 2)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditentry SET action = 'forged' WHERE seq = 1",
        "DELETE FROM audit_auditentry WHERE seq = 1",
    ],
)
def test_postgresql_refuses_update_and_delete(require_postgres, db, sql):
    audit_record(action="test.kept")

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)

    assert AuditEntry.objects.get().action == "test.kept"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_unbroken_chain(require_postgres):
    errors = []

    def write(n):
        try:
            for i in range(10):
                with transaction.atomic():
                    audit_record(action="test.concurrent", target_id=f"{n}-{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert [e.seq for e in entries()] == list(range(1, 41))
    report = audit_chain_verify()
    assert (report.ok, report.checked) == (True, 40)


def test_audit_record_once_writes_one_entry_per_window(db):
    first = audit_record_once(
        action="token.used", actor="x", target_type="t", target_id="p", within=timedelta(hours=1)
    )
    again = audit_record_once(
        action="token.used", actor="x", target_type="t", target_id="p", within=timedelta(hours=1)
    )
    other = audit_record_once(
        action="token.used", actor="x", target_type="t", target_id="q", within=timedelta(hours=1)
    )
    assert first is not None and again is None and other is not None
    assert AuditEntry.objects.count() == 2


# --- what writes it -------------------------------------------------------------------------


def test_merge_and_undo_are_audited_in_their_transaction(db, steward):
    left, right = two_people()
    goldens = sorted({left.xref.golden_id, right.xref.golden_id})

    op = golden_record_merge(domain="customer", golden_ids=goldens, actor=steward, reason="dup")
    undo = golden_record_undo(operation_id=op.pk, actor=steward)

    merge, undone = entries("golden.merge"), entries("golden.undo")
    assert [(e.actor, e.target_type, e.domain, e.detail["operation"]) for e in merge] == [
        ("stella", "golden_record", "customer", op.pk)
    ]
    assert undone[0].detail["undoes"] == op.pk
    assert undone[0].detail["operation"] == undo.pk
    assert audit_chain_verify().ok


def test_a_refused_merge_writes_no_entry(db, steward):
    left, _ = two_people()
    with pytest.raises(Exception, match="at least two"):
        golden_record_merge(domain="customer", golden_ids=[left.xref.golden_id], actor=steward)
    assert AuditEntry.objects.count() == 0


def test_rule_change_and_task_decision_are_audited(db, steward, admin_user):
    survivorship_rules_update(
        domain="customer",
        spec={"rules": {"email": {"strategy": "most_recent"}}},
        expected_version=0,
        actor=admin_user,
    )
    left, right = two_people()
    task = pair_task(left, right)
    review_task_decide(task_id=task.pk, decision="not_a_match", actor=steward)

    (rule,) = entries("survivorship.rules_update")
    assert (rule.actor, rule.target_id, rule.detail["version"]) == ("ada", "customer", 1)
    (decided,) = entries("task.decide")
    assert (decided.actor, decided.target_id, decided.detail["decision"]) == (
        "stella",
        str(task.pk),
        "not_a_match",
    )
    assert ReviewTask.objects.get().status == "decided"


def test_logins_and_failed_logins_are_audited(db, client, steward):
    client.post("/accounts/login/", {"username": "stella", "password": "wrong"})
    client.post("/accounts/login/", {"username": "stella", "password": "aurum-test-pw"})

    failed, ok = entries("auth.login_failed"), entries("auth.login")
    assert [(e.actor_kind, e.detail) for e in failed] == [("system", {"username": "stella"})]
    assert [(e.actor, e.target_id) for e in ok] == [("stella", str(steward.pk))]
    assert "wrong" not in str([e.detail for e in failed])


def test_token_use_is_audited_once_per_hour_not_per_request(db, api, token, make_client):
    from mdm.api import authentication

    authentication._audited.clear()
    for _ in range(3):
        assert api.get("/api/v1/customer/records/nope").status_code == 404

    used = entries("token.used")
    assert [(e.actor, e.actor_kind, e.target_type, e.target_id) for e in used] == [
        ("crm", "source", "source_token", token.token.prefix)
    ]
    # Another process (its memo empty) still writes none within the hour.
    authentication._audited.clear()
    api.get("/api/v1/customer/records/nope")
    assert len(entries("token.used")) == 1


@pytest.mark.parametrize(
    ("role", "status"), [(None, 403), ("viewer", 403), ("steward", 403), ("admin", 200)]
)
def test_audit_api_is_for_admins_only(db, role, status):
    audit_record(action="test.visible", target_type="thing", target_id=7)
    user = User.objects.create_user("u", password="pw")
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = APIClient()
    client.force_authenticate(user)

    response = client.get("/api/v1/audit", {"action": "test."})

    assert response.status_code == status
    if status == 200:
        (row,) = response.json()["results"]
        assert (row["seq"], row["action"], row["target_id"]) == (1, "test.visible", "7")


def test_audit_api_refuses_anonymous_and_source_tokens(db, api):
    assert APIClient().get("/api/v1/audit").status_code in (401, 403)
    assert api.get("/api/v1/audit").status_code == 403


def test_the_admin_lists_entries_read_only(db, client):
    entry = audit_record(action="test.admin", target_type="thing", target_id=5)
    admin = User.objects.create_superuser("root", password="pw")
    client.force_login(admin)

    listing = client.get("/admin/audit/auditentry/")
    delete = client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"})
    erasures = client.get("/admin/mdm/erasurerequest/")

    assert listing.status_code == 200 and "test.admin" in listing.content.decode()
    assert delete.status_code == 403
    assert erasures.status_code == 200
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
