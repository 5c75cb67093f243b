"""config.postgresql: the health check without a round trip and the prepared golden read,
on a real PostgreSQL (a server that drops the connection, statements it has prepared)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from django.db import connection, connections

from mdm.selectors import golden_record_read

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _postgres(require_postgres: None) -> None:
    assert connection.settings_dict["ENGINE"] == "config.postgresql"


def _new_request() -> None:
    """What Django does at the start of a request (request_started)."""
    connection.close_if_unusable_or_obsolete()


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchall()[0][0])


def _checks(monkeypatch: Any) -> list[int]:
    calls: list[int] = []
    wrapper = connections["default"]
    real = wrapper.is_usable

    def counted() -> bool:
        calls.append(1)
        return bool(real())

    monkeypatch.setattr(wrapper, "is_usable", counted)
    return calls


def test_a_healthy_idle_connection_is_not_asked(monkeypatch: Any) -> None:
    # given a persistent connection with health checks, idle after a request
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    connection.close()
    pid = _backend_pid()
    calls = _checks(monkeypatch)

    # when the next request queries
    _new_request()
    again = _backend_pid()

    # then it used the same connection without a SELECT 1
    assert again == pid
    assert calls == []


def test_a_connection_the_server_dropped_is_replaced_before_the_query(monkeypatch: Any) -> None:
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    connection.close()
    pid = _backend_pid()
    calls = _checks(monkeypatch)
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    quiet = connections["default"]._idle_and_quiet  # type: ignore[attr-defined]
    while quiet() and time.monotonic() < deadline:
        time.sleep(0.01)  # the server's goodbye reaches the socket

    _new_request()
    again = _backend_pid()  # no error: the health check saw the drop and reconnected

    assert again != pid
    assert calls == [1]  # the quiet check found something to read: SELECT 1 decided


def test_the_golden_read_is_prepared_once_per_connection(settings: Any) -> None:
    settings.AURUM_PREPARED_READS = True
    connection.close()

    for _ in range(3):
        assert golden_record_read(domain="customer", pk=1) is None

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    assert len(statements) == 1 and "FROM mdm_goldenrecord g" in statements[0]


def test_prepared_reads_can_be_turned_off(settings: Any) -> None:
    settings.AURUM_PREPARED_READS = False
    connection.close()

    assert golden_record_read(domain="customer", pk=1) is None

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchall()[0][0] == 0
