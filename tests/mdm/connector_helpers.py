"""Source databases for the connector tests: a MariaDB ERP and a PostgreSQL source, each a
fresh database of its own, with a ``customers`` table the tests change between runs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ERP_MAPPING: dict[str, Any] = {
    "source": "erp",
    "domain": "customer",
    "name": "customers",
    "key": {"field": "id"},
    "updated_at": {"field": "updated_at"},
    "deleted": {"field": "is_deleted", "values": ["1", "true"]},
    "attributes": {
        "party_type": {"const": "person"},
        "given_name": "first_name",
        "family_name": "last_name",
        "email": "email",
        "country": "country",
    },
}

BASE = dt.datetime(2026, 11, 1, 9, 0, 0)


def at(minutes: int) -> dt.datetime:
    return BASE + dt.timedelta(minutes=minutes)


@dataclass
class SourceDb:
    """One throw-away source database; ``url`` is what a connector is configured with."""

    kind: str  # "mariadb" | "postgres"
    url: str
    server_url: str
    name: str

    @contextmanager
    def connect(self, database: str | None = None) -> Iterator[Any]:
        u = urlsplit(self.server_url)
        if self.kind == "mariadb":
            import pymysql

            conn = pymysql.connect(
                host=u.hostname or "127.0.0.1",
                port=u.port or 3306,
                user=u.username or "root",
                password=u.password or "",
                database=database,
                autocommit=True,
            )
        else:
            import psycopg

            conn = psycopg.connect(
                host=u.hostname or "127.0.0.1",
                port=u.port or 5432,
                user=u.username or "postgres",
                dbname=database or "postgres",
                autocommit=True,
            )
        try:
            yield conn
        finally:
            conn.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.connect(self.name) as conn:
            cur = conn.cursor()
            cur.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.connect(self.name) as conn:
            cur = conn.cursor()
            cur.executemany(sql, rows)
            if self.kind == "mariadb":
                conn.commit()

    def insert(self, rows: Sequence[tuple[int, str, str, str, str, dt.datetime, int]]) -> None:
        self.executemany(
            "INSERT INTO customers (id, first_name, last_name, email, country, updated_at, "
            "is_deleted) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def create_source_db(kind: str, server_url: str) -> SourceDb:
    name = f"aurum_conn_src_{uuid.uuid4().hex[:10]}"
    db = SourceDb(kind, f"{server_url.rstrip('/')}/{name}", server_url, name)
    with db.connect() as conn:
        conn.cursor().execute(f"CREATE DATABASE {name}")
    timestamp = "DATETIME(6)" if kind == "mariadb" else "TIMESTAMP"
    db.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, first_name VARCHAR(100), "
        f"last_name VARCHAR(100), email VARCHAR(200), country VARCHAR(2), "
        f"updated_at {timestamp} NOT NULL, is_deleted SMALLINT NOT NULL DEFAULT 0)"
    )
    db.execute("CREATE INDEX customers_updated ON customers (updated_at)")
    return db


def drop_source_db(db: SourceDb) -> None:
    with db.connect() as conn:
        if db.kind == "postgres":
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")
        else:
            cur = conn.cursor()
            cur.execute("SET SESSION lock_wait_timeout = 30")  # a leaked reader fails, not hangs
            cur.execute(f"DROP DATABASE IF EXISTS {db.name}")


def person(n: int, minute: int, *, email: str | None = None, deleted: int = 0) -> tuple[Any, ...]:
    return (
        n,
        f"Given{n}",
        f"Family{n}",
        email or f"person{n}@example.com",
        "DE",
        at(minute),
        deleted,
    )
