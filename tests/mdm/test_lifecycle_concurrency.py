"""Two stewards changing the same golden record at once, on PostgreSQL: one wins, one 409."""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection, connections, transaction
from rest_framework.test import APIClient

from mdm.models import CrossReference, GoldenOperation, GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.sources import source_system_upsert
from mdm.services.user_tokens import user_token_issue

pytestmark = pytest.mark.django_db(transaction=True)
GOLDEN = "/api/v1/customer/golden"


@pytest.fixture
def goldens(require_postgres):
    source, _ = source_system_upsert(code="crm", name="CRM")
    from mdm.services.sources import source_token_issue

    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {source_token_issue(source_system=source).secret}"
    )
    people = [{"source_key": k, "given_name": f"P{k}", "family_name": "Lee"} for k in "ABCD"]
    client.post("/api/v1/customer/records", {"records": people}, format="json")
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    golden_records_apply_clusters(
        domain="customer", clusters={ids["A"]: 1, ids["B"]: 1, ids["C"]: 2, ids["D"]: 3}
    )
    return {k: CrossReference.objects.get(record_id=v).golden_id for k, v in ids.items()}, ids


def steward_client(name):
    user = User.objects.create_user(name, password="pw")
    user.groups.add(Group.objects.get_or_create(name="steward")[0])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token_issue(user=user).secret}")
    return client


def race(requests, lock_golden):
    """Start every request while another connection holds golden ``lock_golden``'s row lock,
    so they all queue on it, then release it; returns each request's response."""
    results = [None] * len(requests)
    held = threading.Event()
    release = threading.Event()

    def holder():
        try:
            with transaction.atomic():
                list(GoldenRecord.objects.select_for_update().filter(pk=lock_golden))
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    def worker(i, send):
        try:
            results[i] = send()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    assert held.wait(10)
    threads += [threading.Thread(target=worker, args=(i, r)) for i, r in enumerate(requests)]
    for t in threads[1:]:
        t.start()
    waiting = 0
    deadline = time.monotonic() + 20
    while waiting < len(requests) and time.monotonic() < deadline:
        # Wait until every request is blocked on the lock (not a timing assertion).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            waiting = cursor.fetchone()[0]
        time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(30)
    return results, waiting


def test_two_concurrent_merges_of_the_same_golden_record_one_wins_one_gets_409(goldens):
    golden, _ = goldens
    a, c, d = golden["A"], golden["C"], golden["D"]
    first, second = steward_client("one"), steward_client("two")
    version = GoldenRecord.objects.get(pk=a).version

    (r1, r2), waiting = race(
        [
            lambda: first.post(
                f"{GOLDEN}/merge",
                {"golden_ids": [a, c], "expected_versions": {str(a): version}},
                format="json",
            ),
            lambda: second.post(
                f"{GOLDEN}/merge",
                {"golden_ids": [a, d], "expected_versions": {str(a): version}},
                format="json",
            ),
        ],
        lock_golden=a,
    )

    assert waiting == 2  # both really waited on the lock at the same time
    assert sorted([r1.status_code, r2.status_code]) == [200, 409]
    loser = r1 if r1.status_code == 409 else r2
    assert "changed since you read it" in loser.json()["detail"]
    assert GoldenOperation.objects.count() == 1
    assert GoldenRecord.objects.get(pk=a).version == version + 1
    retired = GoldenRecord.objects.filter(status="retired").values_list("pk", flat=True)
    assert len(retired) == 1 and retired[0] in {c, d}


def test_two_concurrent_splits_of_the_same_record_one_wins_one_gets_409(goldens):
    golden, ids = goldens
    ab = golden["A"]
    clients = steward_client("one"), steward_client("two")

    (r1, r2), waiting = race(
        [
            lambda c=c: c.post(f"{GOLDEN}/{ab}/split", {"record_ids": [ids["B"]]}, format="json")
            for c in clients
        ],
        lock_golden=ab,
    )

    assert waiting == 2
    assert sorted([r1.status_code, r2.status_code]) == [200, 409]
    loser = r1 if r1.status_code == 409 else r2
    assert "not members" in loser.json()["detail"]
    assert GoldenOperation.objects.count() == 1
    assert GoldenRecord.objects.count() == 4  # three before, one from the split
    history = list(
        GoldenRecord.history.filter(id=ab).order_by("history_id").values_list("version", flat=True)
    )
    assert history == sorted(history)  # versions never go backwards
