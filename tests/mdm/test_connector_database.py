"""Database connectors against real servers: a MariaDB ERP and a PostgreSQL source.

Each test gets a fresh source database with a ``customers`` table; between runs it inserts,
updates and soft-deletes rows there, and checks the hub took exactly those changes.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from mdm.models import Connector, ConnectorRun, IngestRun, SourceRecord
from mdm.services.connectors import (
    ConnectorBusyError,
    ConnectorConfigError,
    connector_run,
    connector_upsert,
)
from mdm.services.sources import source_mapping_register
from tests.mdm.connector_helpers import (
    ERP_MAPPING,
    SourceDb,
    at,
    create_source_db,
    drop_source_db,
    person,
)

POSTGRES_SERVER = os.environ.get("AURUM_CONNECTOR_PG_URL", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture(params=["mariadb", "postgres"])
def source_db(request: pytest.FixtureRequest) -> Iterator[SourceDb]:
    if request.param == "mariadb":
        server = request.getfixturevalue("mariadb_url")
    else:
        server = POSTGRES_SERVER
        from tests.conftest import _reachable, missing_service

        if not _reachable(server, 5432):
            missing_service(f"needs a PostgreSQL server for the source database at {server}")
    db = create_source_db(request.param, server)
    try:
        yield db
    finally:
        drop_source_db(db)


def make_connector(db: SourceDb, **config: Any) -> Connector:
    mapping, _, _ = source_mapping_register(spec=dict(ERP_MAPPING))
    options: dict[str, Any] = {
        "url": db.url,
        "table": "customers",
        "key_column": "id",
        "watermark_column": "updated_at",
        "delete_detection": "soft_delete",
    }
    options.update(config)
    batch = options.pop("batch_size", 5000)
    connector, _ = connector_upsert(
        name=f"erp-{db.kind}",
        kind="database",
        source_system=mapping.source_system,
        domain="customer",
        mapping=mapping,
        config=options,
        interval_seconds=300,
        batch_size=batch,
    )
    return connector


def counts(run: ConnectorRun) -> dict[str, int]:
    return {
        "read": run.read_count,
        "created": run.created_count,
        "updated": run.updated_count,
        "unchanged": run.unchanged_count,
        "deleted": run.deleted_count,
        "quarantined": run.quarantined_count,
    }


def live_emails() -> dict[str, str]:
    return {
        r.source_key: r.attributes.get("email")
        for r in SourceRecord.objects.filter(is_deleted=False)
    }


@pytest.mark.django_db
def test_first_full_load_then_deltas_pick_up_exactly_the_changes(source_db: SourceDb) -> None:
    source_db.insert([person(1, 1), person(2, 2), person(3, 3, deleted=1)])
    connector = make_connector(source_db)

    first = connector_run(connector_id=connector.pk)

    assert first.status == "succeeded", first.error
    assert counts(first) == {
        "read": 3, "created": 2, "updated": 0, "unchanged": 1, "deleted": 0, "quarantined": 0,
    }  # fmt: skip
    assert first.watermark_before is None
    assert first.watermark_after == {"type": "datetime", "value": at(3).isoformat()}
    assert set(live_emails()) == {"1", "2"}  # the soft-deleted row 3 was never live here

    # Between runs: one update, one insert, one soft delete, and a row left alone.
    source_db.execute(
        "UPDATE customers SET email = %s, updated_at = %s WHERE id = 1",
        ["ann.new@example.com", at(10)],
    )
    source_db.insert([person(4, 11)])
    source_db.execute("UPDATE customers SET is_deleted = 1, updated_at = %s WHERE id = 2", [at(12)])

    second = connector_run(connector_id=connector.pk)

    # Row 3 sits exactly at the old watermark: read again, found unchanged.
    assert counts(second) == {
        "read": 4, "created": 1, "updated": 1, "unchanged": 1, "deleted": 1, "quarantined": 0,
    }  # fmt: skip
    assert second.watermark_before == first.watermark_after
    assert second.watermark_after == {"type": "datetime", "value": at(12).isoformat()}
    assert live_emails() == {"1": "ann.new@example.com", "4": "person4@example.com"}
    assert SourceRecord.objects.get(source_key="2").is_deleted is True

    third = connector_run(connector_id=connector.pk)  # nothing changed since

    assert counts(third) == {
        "read": 1, "created": 0, "updated": 0, "unchanged": 1, "deleted": 0, "quarantined": 0,
    }  # fmt: skip
    connector.refresh_from_db()
    assert connector.watermark == {"type": "datetime", "value": at(12).isoformat()}
    assert connector.current_run_id is None
    ingest = IngestRun.objects.get(pk=second.ingest_run_id or 0)
    assert (ingest.channel, ingest.created_count, ingest.deleted_count) == ("connector", 1, 1)


@pytest.mark.django_db
def test_a_run_failing_between_batches_is_retried_without_loss_or_duplication(
    source_db: SourceDb,
) -> None:
    source_db.insert([person(n, n) for n in range(1, 11)])
    connector = make_connector(source_db, batch_size=3)

    def fail_after_second(batch: int) -> None:
        if batch == 2:
            raise RuntimeError("the hub's process died here")

    failed = connector_run(connector_id=connector.pk, on_batch=fail_after_second)

    assert failed.status == "failed"
    assert "the hub's process died here" in failed.error
    assert failed.created_count == 6  # two batches had committed
    connector.refresh_from_db()
    assert connector.watermark is None  # left where it was
    assert connector.current_run_id is None
    assert SourceRecord.objects.count() == 6

    retried = connector_run(connector_id=connector.pk)

    assert retried.status == "succeeded"
    assert counts(retried) == {
        "read": 10, "created": 4, "updated": 0, "unchanged": 6, "deleted": 0, "quarantined": 0,
    }  # fmt: skip
    assert sorted(int(k) for k in live_emails()) == list(range(1, 11))
    # Every record was written once: one version, one history row.
    assert set(SourceRecord.objects.values_list("version", flat=True)) == {1}
    assert SourceRecord.history.count() == 10
    connector.refresh_from_db()
    assert connector.watermark == {"type": "datetime", "value": at(10).isoformat()}


@pytest.mark.django_db
def test_an_overlapping_run_is_refused_and_a_dead_run_is_taken_over(source_db: SourceDb) -> None:
    source_db.insert([person(n, n) for n in range(1, 5)])
    connector = make_connector(source_db, batch_size=2)
    refused: list[str] = []

    def start_another(batch: int) -> None:
        if batch == 1:
            with pytest.raises(ConnectorBusyError) as exc:
                connector_run(connector_id=connector.pk)
            refused.append(str(exc.value))

    run = connector_run(connector_id=connector.pk, on_batch=start_another)

    assert run.status == "succeeded"
    assert refused == [f"run {run.pk} of {connector.name} is still going"]
    assert ConnectorRun.objects.filter(connector=connector).count() == 1  # no second run row

    # A run whose process died holds the connector until its lease expires.
    source_db.execute("UPDATE customers SET email = 'x@example.com', updated_at = %s", [at(20)])
    dead = ConnectorRun.objects.create(connector=connector, watermark_before=connector.watermark)
    Connector.objects.filter(pk=connector.pk).update(
        current_run=dead, lease_until=timezone.now() + timedelta(minutes=5)
    )
    with pytest.raises(ConnectorBusyError):
        connector_run(connector_id=connector.pk)
    Connector.objects.filter(pk=connector.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )

    taken_over = connector_run(connector_id=connector.pk)

    assert taken_over.status == "succeeded"
    assert taken_over.updated_count == 4
    dead.refresh_from_db()
    assert dead.status == "failed"
    assert dead.error.startswith("abandoned")


@pytest.mark.django_db
def test_rows_removed_from_the_source_are_deleted_by_a_full_key_comparison(
    source_db: SourceDb,
) -> None:
    source_db.insert([person(n, n) for n in range(1, 6)])
    connector = make_connector(source_db, delete_detection="full_compare")
    first = connector_run(connector_id=connector.pk)
    assert first.full_compare is True  # the first run compares too (none before)
    assert first.deleted_count == 0

    source_db.execute("DELETE FROM customers WHERE id IN (2, 4)")
    skipped = connector_run(connector_id=connector.pk)  # compared less than 24 h ago
    assert (skipped.full_compare, skipped.deleted_count) == (False, 0)

    compared = connector_run(connector_id=connector.pk, full_compare=True)

    assert compared.full_compare is True
    assert compared.deleted_count == 2
    assert sorted(live_emails()) == ["1", "3", "5"]
    assert SourceRecord.objects.get(source_key="2").is_deleted is True
    again = connector_run(connector_id=connector.pk, full_compare=True)
    assert again.deleted_count == 0  # safe to repeat

    source_db.execute("DELETE FROM customers")
    emptied = connector_run(connector_id=connector.pk, full_compare=True)
    assert emptied.status == "failed"
    assert "refusing to delete every record" in emptied.error
    assert sorted(live_emails()) == ["1", "3", "5"]


@pytest.mark.django_db
def test_a_query_connector_reads_through_the_query(source_db: SourceDb) -> None:
    source_db.insert([person(1, 1), person(2, 2), person(3, 3)])
    connector = make_connector(
        source_db, table=None, query="SELECT * FROM customers WHERE country = 'DE' AND id <> 2"
    )
    run = connector_run(connector_id=connector.pk)
    assert (run.status, run.created_count) == ("succeeded", 2)
    assert sorted(live_emails()) == ["1", "3"]


@pytest.mark.django_db
def test_a_bad_configuration_is_refused_and_nothing_is_stored(source: Any) -> None:
    with pytest.raises(ConnectorConfigError) as exc:
        connector_upsert(
            name="bad",
            kind="database",
            source_system=source,
            domain="customer",
            config={
                "url": "mysql://root@127.0.0.1/erp",
                "table": "customers; drop",
                "key_column": "id",
            },
        )
    assert str(exc.value) == "config.table: 'customers; drop' is not a plain column or table name"
    with pytest.raises(ConnectorConfigError) as exc:
        connector_upsert(
            name="bad", kind="http", source_system=source, domain="customer",
            config={"url": "http://x"}, cron="61 * * * *",
        )  # fmt: skip
    assert str(exc.value).startswith("cron: '61 * * * *' is not valid")
    assert Connector.objects.count() == 0


@pytest.mark.django_db
def test_the_password_is_stored_encrypted_and_never_shown_or_logged(
    mariadb_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = create_source_db("mariadb", mariadb_url)
    user, password = f"aurum_r{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    try:
        with db.connect() as conn:
            cur = conn.cursor()
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT SELECT ON {db.name}.* TO '{user}'@'%'")
        db.insert([person(1, 1)])
        host = mariadb_url.split("@", 1)[1].rstrip("/")
        db.url = f"mysql://{user}:{password}@{host}/{db.name}"
        caplog.set_level(logging.DEBUG)

        connector = make_connector(db)

        stored = Connector.objects.get(pk=connector.pk)
        assert password not in stored.secret_encrypted
        assert password not in str(stored.config)
        assert stored.config["url"] == f"mysql://{user}@{host}/{db.name}"
        assert password not in str(list(Connector.history.values()))
        run = connector_run(connector_id=connector.pk)
        assert (run.status, run.created_count) == ("succeeded", 1)

        # A wrong password: the run fails with the server's answer, and never the secret.
        wrong = f"wrong-{uuid.uuid4().hex}"
        connector_upsert(
            name=connector.name, kind="database", source_system=connector.source_system,
            domain="customer", mapping=connector.mapping, config=stored.config, secret=wrong,
        )  # fmt: skip
        failed = connector_run(connector_id=connector.pk)
        assert failed.status == "failed"
        assert "Access denied" in failed.error
        for text in (failed.error, caplog.text):
            assert password not in text
            assert wrong not in text
    finally:
        with db.connect() as conn:
            conn.cursor().execute(f"DROP USER IF EXISTS '{user}'@'%'")
        drop_source_db(db)
