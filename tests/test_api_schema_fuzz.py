"""schemathesis against the OpenAPI schema, in-process (WSGI), with auth.

Every operation of ``/api/v1/schema`` gets generated requests (a few examples each, to keep
the run short); every response must be no server error and match the schema: its status code
documented, its body and content type as documented.  Hub users' operations run as a global
admin (user token); pushing and deleting records as a source system's token.  Eight
examples per operation by default (under a minute); ``AURUM_FUZZ_EXAMPLES=50`` for a longer
hunt.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from mdm.services.sources import source_system_upsert, source_token_issue
from mdm.services.user_tokens import user_token_issue

schema = schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", application)
# Requests that fit the schema: the API must answer them without a server error and as
# documented.  (Negative data and "a valid request must be accepted" are not checked: the API
# validates more than a schema can say, e.g. a source system's mapping.)
schema.config.generation.update(modes=[GenerationMode.POSITIVE])
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """Calls go through the real WSGI handler, whose request signals would close the database
    connection that holds the test's transaction; Django's own test client detaches them the
    same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def secrets(db: Any) -> dict[str, str]:
    admin = User.objects.create_user("fuzz-admin", password="pw")
    admin.groups.add(Group.objects.get(name="admin"))
    system, _ = source_system_upsert(code="crm", name="CRM")
    return {
        "user": user_token_issue(user=admin).secret,
        "source": source_token_issue(source_system=system).secret,
    }


SOURCE_ONLY = {
    ("POST", "/api/v1/{domain}/records"),
    ("DELETE", "/api/v1/{domain}/records/{source_key}"),
}


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("AURUM_FUZZ_EXAMPLES", "8")),
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any, secrets: dict[str, str]) -> None:
    who = "source" if (case.method, case.path) in SOURCE_ONLY else "user"
    case.call_and_validate(headers={"Authorization": f"Bearer {secrets[who]}"}, checks=CHECKS)
