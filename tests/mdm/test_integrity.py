"""Cross-references without database foreign keys: the ORM's rules, PostgreSQL's set-based
triggers (under the domain's membership lock), ``check_integrity``, and history rows whose
user is gone."""

from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import ProtectedError

from mdm.models import CrossReference, GoldenRecord, SourceRecord
from mdm.selectors import golden_record_timeline
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.lifecycle import golden_record_merge
from mdm.services.locks import golden_domain_lock

URL = "/api/v1/customer/records"
XREF, RECORD, GOLDEN = (
    CrossReference._meta.db_table,
    SourceRecord._meta.db_table,
    GoldenRecord._meta.db_table,
)


def push(api, *keys):
    people = [{"source_key": k, "given_name": f"P{k}", "family_name": "Lee"} for k in keys]
    assert api.post(URL, {"records": people}, format="json").status_code == 200
    return dict(SourceRecord.objects.filter(source_key__in=keys).values_list("source_key", "id"))


@pytest.fixture
def linked(api):
    """Records A, B in one golden record and C in another."""
    ids = push(api, "A", "B", "C")
    golden_records_apply_clusters(
        domain="customer", clusters={ids["A"]: 1, ids["B"]: 1, ids["C"]: 2}
    )
    return ids


def golden_of(record_id):
    return CrossReference.objects.get(record_id=record_id).golden_id


def check():
    """``check_integrity``: (exit code, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("check_integrity", stdout=out, stderr=err)
    except CommandError as exc:
        return 1, out.getvalue(), f"{err.getvalue()}{exc}"
    return 0, out.getvalue(), err.getvalue()


def without_triggers(sql, params):
    """Run ``sql`` as a superuser could, with the integrity triggers off (PostgreSQL), or
    plainly (SQLite has no trigger and, with ``db_constraint=False``, no constraint)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = origin")


@pytest.mark.django_db
def test_check_integrity_passes_when_every_link_has_its_record_and_golden_record(linked):
    code, out, err = check()

    assert (code, out, err) == (0, "cross-references intact: 3 links\n", "")


@pytest.mark.django_db
def test_check_integrity_reports_links_to_a_missing_record_or_golden_record(linked):
    lone = golden_of(linked["C"])
    with transaction.atomic():
        without_triggers(f"DELETE FROM {RECORD} WHERE id = %s", [linked["A"]])  # noqa: S608
        without_triggers(f"DELETE FROM {GOLDEN} WHERE id = %s", [lone])  # noqa: S608

    code, out, err = check()

    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"cross-reference {linked['A']} -> {golden_of(linked['A'])}: "
        f"source record {linked['A']} missing",
        f"cross-reference {linked['C']} -> {lone}: golden record {lone} missing",
        "cross-references broken: 1 of 3 name a missing source record, 1 a missing golden record",
    ]


@pytest.mark.django_db
def test_the_orm_keeps_cascade_for_records_and_protect_for_golden_records(linked):
    golden = golden_of(linked["A"])

    with pytest.raises(ProtectedError):
        GoldenRecord.objects.filter(pk=golden).delete()
    SourceRecord.objects.filter(pk=linked["A"]).delete()

    assert not CrossReference.objects.filter(record_id=linked["A"]).exists()
    assert golden_of(linked["B"]) == golden
    assert check()[0] == 0


@pytest.mark.django_db
def test_links_have_no_database_foreign_key_and_keep_their_indexes(require_postgres):
    history = [m.history.model._meta.db_table for m in (CrossReference, GoldenRecord, SourceRecord)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s)",
            [[XREF, *history]],
        )
        foreign_keys = sorted(cursor.fetchall())
        indexed = {
            tuple(c["columns"])
            for c in connection.introspection.get_constraints(cursor, XREF).values()
            if c["index"] or c["primary_key"]
        }
        user_indexed = {
            table: any(
                c["columns"] == ["history_user_id"]
                for c in connection.introspection.get_constraints(cursor, table).values()
                if c["index"]
            )
            for table in history
        }

    # (django-simple-history never constrains a history row's copies of foreign keys.)
    assert foreign_keys == []
    assert {("record_id",), ("golden_id",)} <= indexed
    # Deleting a user through Django finds its history rows by this index to empty them.
    assert user_indexed == dict.fromkeys(history, True)


@pytest.mark.django_db
def test_postgresql_refuses_a_link_to_nothing_and_deleting_what_a_link_names(
    require_postgres, linked
):
    golden = golden_of(linked["A"])
    statements = [
        # A link to a golden record that does not exist, or from a record that does not.
        (f"INSERT INTO {XREF} (record_id, golden_id, linked_by, linked_at) "  # noqa: S608
         "VALUES (%s, %s, 'match', now())", [linked["A"] + 1000, golden]),
        (f"UPDATE {XREF} SET golden_id = %s WHERE record_id = %s", [golden + 1000, linked["B"]]),  # noqa: S608
        # Deleting a linked record or a golden record with members.
        (f"DELETE FROM {RECORD} WHERE id = %s", [linked["A"]]),  # noqa: S608
        (f"DELETE FROM {GOLDEN} WHERE id = %s", [golden]),  # noqa: S608
    ]  # fmt: skip
    for sql, params in statements:
        with (
            pytest.raises(IntegrityError, match="record"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)

    assert golden_of(linked["A"]) == golden_of(linked["B"]) == golden
    assert SourceRecord.objects.filter(pk=linked["A"]).exists()
    # A record without a link and a golden record without members can go.
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {XREF} WHERE record_id = %s", [linked["C"]])  # noqa: S608
        cursor.execute(f"DELETE FROM {RECORD} WHERE id = %s", [linked["C"]])  # noqa: S608
    assert check()[0] == 0


def _waiting_on_advisory_lock(pid):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' "
            "AND NOT granted",
            [pid],
        )
        return cursor.fetchone()[0] == 1


def _in_thread(work):
    """Run ``work`` in a thread with its own connection; returns (thread, result dict)."""
    result = {}

    def run():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                result["pid"] = cursor.fetchone()[0]
            result["value"] = work()
        except Exception as exc:  # handed to the test
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _wait_until(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_a_delete_racing_an_apply_waits_for_it_and_then_fails(require_postgres, api):
    ids = push(api, "A", "B")
    applied, release = threading.Event(), threading.Event()

    def apply():
        with transaction.atomic():
            golden_domain_lock("customer")
            golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1, ids["B"]: 1})
            applied.set()
            assert release.wait(10)

    def delete():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {RECORD} WHERE id = %s", [ids["A"]])  # noqa: S608

    applier, _ = _in_thread(apply)
    assert applied.wait(10)
    deleter, deleted = _in_thread(delete)
    # The delete removed the row, then its trigger waits for the apply's lock ...
    _wait_until(lambda: "pid" in deleted and _waiting_on_advisory_lock(deleted["pid"]))
    release.set()
    applier.join(10)
    deleter.join(10)

    # ... and once the apply committed, sees the new link and fails.
    assert isinstance(deleted.get("error"), IntegrityError)
    assert "still linked" in str(deleted["error"])
    assert golden_of(ids["A"]) == golden_of(ids["B"])
    assert check()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_an_apply_after_a_racing_delete_fails_instead_of_linking_nothing(require_postgres, api):
    ids = push(api, "A", "B")
    deleted, release = threading.Event(), threading.Event()

    def delete():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {RECORD} WHERE id = %s", [ids["A"]])  # noqa: S608
            deleted.set()
            assert release.wait(10)

    def apply():
        # Clusters computed before the delete, as a run scores before it takes the lock.
        with transaction.atomic():
            golden_domain_lock("customer")
            golden_records_apply_clusters(domain="customer", clusters={ids["A"]: 1, ids["B"]: 1})

    deleter, _ = _in_thread(delete)
    assert deleted.wait(10)
    applier, applied = _in_thread(apply)
    _wait_until(lambda: "pid" in applied and _waiting_on_advisory_lock(applied["pid"]))
    release.set()
    deleter.join(10)
    applier.join(10)

    assert isinstance(applied.get("error"), IntegrityError)
    assert "does not exist" in str(applied["error"])
    assert not SourceRecord.objects.filter(pk=ids["A"]).exists()
    assert not CrossReference.objects.exists()
    assert not GoldenRecord.objects.exists()
    assert check()[0] == 0


@pytest.mark.django_db
def test_history_stays_readable_when_its_user_is_deleted(api, linked):
    steward = User.objects.create_user("stella", password="pw")
    steward.groups.add(Group.objects.get(name="steward"))
    survivor, other = golden_of(linked["A"]), golden_of(linked["C"])
    golden_record_merge(
        domain="customer", golden_ids=[survivor, other], actor=steward, reason="same person"
    )
    golden_history = GoldenRecord.history.filter(history_user=steward)
    link_history = CrossReference.history.filter(history_user=steward)
    rows = golden_history.count(), link_history.count()
    assert rows[0] >= 1 and rows[1] >= 1

    pk = steward.pk
    steward.delete()

    # Django empties the user of every history row (SET_NULL), the rows stay.
    assert GoldenRecord.history.filter(history_user_id=pk).count() == 0
    assert CrossReference.history.filter(history_user_id=pk).count() == 0
    assert (
        GoldenRecord.history.filter(history_change_reason__contains="same person").count()
        == (rows[0])
    )
    merge = [e for e in golden_record_timeline(golden_id=survivor) if e.kind == "merge"]
    assert merge and {e.user for e in merge} == {None}
    response = api.get(f"{URL}/A/history")
    assert response.status_code == 200


@pytest.mark.django_db
def test_history_stays_readable_when_its_user_is_deleted_by_sql(require_postgres, linked):
    # No constraint: a user removed behind Django's back (here one whose only trace is the
    # history of a golden record and its links) leaves an id that reads as no user.
    sam = User.objects.create_user("sam", password="pw")
    golden = golden_of(linked["A"])
    GoldenRecord.history.filter(id=golden).update(history_user=sam)
    CrossReference.history.filter(golden_id=golden).update(history_user=sam)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM auth_user WHERE id = %s", [sam.pk])

    assert GoldenRecord.history.filter(history_user_id=sam.pk).count() == 1
    entries = golden_record_timeline(golden_id=golden)
    assert [(e.kind, e.user) for e in entries] == [("created", None)]
    assert check()[0] == 0
