"""Shared fixtures.

Tests that need a real service (PostgreSQL, Redis) ask for it through ``require_postgres`` or
``redis_url``.  Without the service they are skipped with the reason; with
``AURUM_REQUIRE_SERVICES=1`` (set by .ci/run) a missing service fails the test instead, so CI
can never pass by skipping.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest
from django.db import connection
from rest_framework.test import APIClient

from mdm.models import SourceSystem
from mdm.services.sources import IssuedToken, source_system_upsert, source_token_issue

REQUIRE_SERVICES = os.environ.get("AURUM_REQUIRE_SERVICES") == "1"


def missing_service(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"service required by AURUM_REQUIRE_SERVICES=1 is missing: {reason}")
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 1
        ):
            return True
    except OSError:
        return False


@pytest.fixture
def require_postgres() -> None:
    if connection.vendor != "postgresql":
        missing_service(
            "needs PostgreSQL: set DATABASE_URL=postgres://... (the suite runs on SQLite)"
        )


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        missing_service("needs Redis: set REDIS_URL=redis://127.0.0.1:6379/0")
    if not _reachable(url, 6379):
        missing_service(f"Redis at {url} is not reachable")
    return url


@pytest.fixture
def mariadb_url() -> str:
    """The MariaDB/MySQL server standing in for a legacy ERP (``MARIADB_URL``, by default
    root without a password on 127.0.0.1:3306): the tests create their own databases."""
    url = os.environ.get("MARIADB_URL", "mysql://root@127.0.0.1:3306/")
    if not _reachable(url, 3306):
        missing_service(f"needs MariaDB: nothing answers at {url} (set MARIADB_URL)")
    return url


@pytest.fixture
def source(db: Any) -> SourceSystem:
    system, _ = source_system_upsert(code="crm", name="Test CRM")
    return system


@pytest.fixture
def other_source(db: Any) -> SourceSystem:
    system, _ = source_system_upsert(code="erp", name="Test ERP")
    return system


@pytest.fixture
def token(source: SourceSystem) -> IssuedToken:
    return source_token_issue(source_system=source)


@pytest.fixture
def make_client() -> Callable[..., APIClient]:
    def make(secret: str | None = None, **headers: str) -> APIClient:
        client = APIClient()
        if secret:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}", **headers)
        return client

    return make


@pytest.fixture
def api(token: IssuedToken, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(token.secret)


@pytest.fixture
def other_api(other_source: SourceSystem, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(source_token_issue(source_system=other_source).secret)


@pytest.fixture(autouse=True)
def _token_cache_cleared() -> Any:
    """Each test starts with an empty token cache (tests reuse database ids across tests)."""
    from mdm import tokens

    tokens.clear()
    yield
    tokens.clear()
