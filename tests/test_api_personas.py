"""Every API endpoint with every persona: the right 401/403/404, or through.

The list of endpoints comes from the URL resolver (every route under ``api/v1/`` and every
HTTP method its view implements), so a new endpoint fails ``test_every_endpoint_is_classified``
until it is added to ``ENDPOINTS`` below with what each persona should get.

Personas: anonymous, viewer, steward, admin (global groups, by user token), a steward of the
supplier domain only (``steward_supplier``), the source system that owns the records (crm),
another source system of the same domain (erp), a source system scoped to another domain
(plm, supplier only), and crm's revoked, expired and read-only tokens.  The world is one
customer golden record of crm's Ann and erp's Anne, one of crm's Bob, an open review task
between them, a quarantined crm payload, a steward correction, a survivorship job and a pull
consumer of crm.

Expectations: a status code, ``OK`` (not 401/403/404 and no server error: the caller got
through to the command, which may still answer 400/409 for its own reasons), ``EMPTY``
(200 and no rows: nothing of the customer domain), ``NOT_CRM`` (200 and no row of crm, the
other source system), or ``"refused"`` (a bulk decision that decides nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from mdm.models import (
    GoldenOperation,
    GoldenRecord,
    IngestRun,
    QuarantinedPayload,
    SourceRecord,
    SourceToken,
    SurvivorshipJob,
    UserToken,
)
from mdm.services.access import domain_role_grant
from mdm.services.connectors import connector_upsert
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.lifecycle import golden_attribute_correct
from mdm.services.relationships import golden_relationship_add
from mdm.services.sources import source_system_upsert, source_token_issue, source_token_revoke
from mdm.services.user_tokens import user_token_issue
from stewardship.models import ReviewTask
from sync.models import Subscriber
from sync.services import subscriber_register

pytestmark = pytest.mark.django_db

OK = "ok"
EMPTY = "empty"
NOT_CRM = "not-crm"

USERS = ("viewer", "steward", "admin", "steward_supplier")
SOURCES = ("source", "other_source", "source_other_domain", "readonly")
BAD_TOKENS = ("revoked", "expired")
PERSONAS = ("anonymous", *USERS, *SOURCES, *BAD_TOKENS)


@dataclass
class World:
    clients: dict[str, APIClient]
    ids: dict[str, Any] = field(default_factory=dict)


def _user(name: str, group: str | None) -> User:
    user = User.objects.create_user(name, password="pw")
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def _client(secret: str | None) -> APIClient:
    client = APIClient()
    if secret:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def world() -> World:
    crm, _ = source_system_upsert(code="crm", name="CRM")
    erp, _ = source_system_upsert(code="erp", name="ERP")
    plm, _ = source_system_upsert(code="plm", name="PLM")
    crm_token = source_token_issue(source_system=crm).secret
    erp_token = source_token_issue(source_system=erp).secret
    clients = {
        "anonymous": _client(None),
        "source": _client(crm_token),
        "other_source": _client(erp_token),
        "source_other_domain": _client(
            source_token_issue(source_system=plm, domains=["supplier"]).secret
        ),
        "readonly": _client(source_token_issue(source_system=crm, access="read").secret),
    }
    revoked = source_token_issue(source_system=crm)
    source_token_revoke(token=revoked.token)
    clients["revoked"] = _client(revoked.secret)
    expired = source_token_issue(source_system=crm)
    SourceToken.objects.filter(pk=expired.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    clients["expired"] = _client(expired.secret)
    for name in ("viewer", "steward", "admin"):
        clients[name] = _client(user_token_issue(user=_user(name, name)).secret)
    supplier_steward = _user("steward_supplier", None)
    domain_role_grant(user=supplier_steward, domain="supplier", role="steward")
    clients["steward_supplier"] = _client(user_token_issue(user=supplier_steward).secret)

    push = clients["source"].post
    for key, name in (("A", "Ann"), ("B", "Bob")):
        body = {"source_key": key, "given_name": name}
        assert push("/api/v1/customer/records", body, format="json").status_code == 201
    bad = {"source_key": "Q", "email": "not an e-mail"}
    assert push("/api/v1/customer/records", bad, format="json").status_code == 422
    clients["other_source"].post(
        "/api/v1/customer/records", {"source_key": "X", "given_name": "Anne"}, format="json"
    )
    a, b, x = (SourceRecord.objects.get(source_key=k) for k in "ABX")
    golden_records_apply_clusters(domain="customer", clusters={a.pk: 1, x.pk: 1, b.pk: 2})
    ann = GoldenRecord.objects.get(members__record=a)
    bob = GoldenRecord.objects.get(members__record=b)
    task = ReviewTask.objects.create(
        domain="customer", left_record_id=a.pk, right_record_id=b.pk, match_probability=0.8
    )
    admin = User.objects.get(username="admin")
    correction = golden_attribute_correct(
        domain="customer", golden_id=bob.pk, attribute="city", value="Leeds", actor=admin
    )
    job = SurvivorshipJob.objects.create(domain="customer", rule_version=1)
    subscriber_register(code="crm-pull", kind="pull", source_system=crm)
    link = golden_relationship_add(
        domain="customer",
        from_golden_id=ann.pk,
        rel_type="member_of_household",
        to_golden_id=bob.pk,
        actor=admin,
    )
    connector_upsert(
        name="crm-http",
        kind="http",
        source_system=crm,
        domain="customer",
        config={"url": "http://127.0.0.1:9/people"},
    )
    ids = {
        "ann": ann.pk,
        "bob": bob.pk,
        "a": a.pk,
        "x": x.pk,
        "task": task.pk,
        "op": correction.pk,
        "job": job.pk,
        "run": IngestRun.objects.filter(source_system=crm).order_by("pk").first().pk,  # type: ignore[union-attr]
        "quarantine": QuarantinedPayload.objects.get().pk,
        "crm_token": SourceToken.objects.filter(source_system=crm).order_by("pk").first().prefix,  # type: ignore[union-attr]
        "user_token": UserToken.objects.get(user__username="viewer").prefix,
        "link": link.pk,
    }
    return World(clients, ids)


# --- the endpoints ---------------------------------------------------------------------------

Request = Callable[[dict[str, Any]], tuple[str, dict[str, Any] | None]]


def _expect(
    *,
    users: Any = OK,
    viewer: Any = None,
    steward: Any = None,
    admin: Any = None,
    steward_supplier: Any = 403,
    source: Any = 403,
    other_source: Any = None,
    source_other_domain: Any = None,
    readonly: Any = None,
    anonymous: Any = 401,
) -> dict[str, Any]:
    """Each persona's expectation; unset ones follow their group (users, sources)."""
    out = {
        "anonymous": anonymous,
        "viewer": users if viewer is None else viewer,
        "steward": users if steward is None else steward,
        "admin": users if admin is None else admin,
        "steward_supplier": steward_supplier,
        "source": source,
        "other_source": source if other_source is None else other_source,
        "source_other_domain": source if source_other_domain is None else source_other_domain,
        "readonly": source if readonly is None else readonly,
        "revoked": 401 if anonymous == 401 else anonymous,
        "expired": 401 if anonymous == 401 else anonymous,
    }
    return out


DOMAIN_READ = _expect(source=OK, source_other_domain=403)
RECORD_READ = _expect(source=OK, other_source=404, source_other_domain=403)
USER_VIEW = _expect()
STEWARD_CMD = _expect(viewer=403)
ADMIN_ONLY = _expect(viewer=403, steward=403)
NARROWED_LIST = _expect(
    steward_supplier=EMPTY, source=OK, other_source=NOT_CRM, source_other_domain=EMPTY
)
NARROWED_OBJECT = _expect(
    steward_supplier=404, source=OK, other_source=404, source_other_domain=404
)
TASK_READ = _expect(steward_supplier=404)
TASK_CMD = _expect(viewer=403, steward_supplier=404)
QUARANTINE_CMD = _expect(viewer=403, steward_supplier=404)
INGEST = _expect(users=403, steward_supplier=403, source=OK, source_other_domain=403, readonly=403)
PUBLIC = {
    **_expect(users=OK, steward_supplier=OK, source=OK, anonymous=OK),
    # a bad credential is refused even where none is needed
    "revoked": 401,
    "expired": 401,
}

ENDPOINTS: dict[tuple[str, str], tuple[Request, dict[str, Any]]] = {
    # documentation: public
    ("api/v1/schema", "get"): (lambda i: ("/api/v1/schema", None), PUBLIC),
    ("api/v1/docs", "get"): (lambda i: ("/api/v1/docs", None), PUBLIC),
    ("api/v1/redoc", "get"): (lambda i: ("/api/v1/redoc", None), PUBLIC),
    # the change feed: narrowed to the caller's domains / own consumer
    ("api/v1/events", "get"): (
        lambda i: ("/api/v1/events", None),
        _expect(steward_supplier=EMPTY, source=OK, source_other_domain=EMPTY),
    ),
    ("api/v1/events/ack", "post"): (
        lambda i: ("/api/v1/events/ack", {"consumer": "crm-pull", "seq": 1}),
        _expect(steward_supplier=OK, source=OK, other_source=403, source_other_domain=403),
    ),
    ("api/v1/<slug:domain>/snapshot", "get"): (
        lambda i: ("/api/v1/customer/snapshot", None),
        DOMAIN_READ,
    ),
    # relationships: read like golden records, changed by stewards of the domain
    ("api/v1/<slug:domain>/golden/<int:pk>/relationships", "get"): (
        lambda i: (f"/api/v1/customer/golden/{i['ann']}/relationships", None),
        DOMAIN_READ,
    ),
    ("api/v1/<slug:domain>/golden/<int:pk>/relationships", "post"): (
        lambda i: (
            f"/api/v1/customer/golden/{i['bob']}/relationships",
            {"type": "works_for", "to_golden_id": i["ann"]},
        ),
        STEWARD_CMD,
    ),
    ("api/v1/<slug:domain>/golden/<int:pk>/hierarchy", "get"): (
        lambda i: (f"/api/v1/customer/golden/{i['ann']}/hierarchy?type=child_of", None),
        DOMAIN_READ,
    ),
    ("api/v1/<slug:domain>/relationships/<int:pk>", "get"): (
        lambda i: (f"/api/v1/customer/relationships/{i['link']}", None),
        DOMAIN_READ,
    ),
    ("api/v1/<slug:domain>/relationships/<int:pk>/end", "post"): (
        lambda i: (f"/api/v1/customer/relationships/{i['link']}/end", {}),
        STEWARD_CMD,
    ),
    ("api/v1/<slug:domain>/relationships/<int:pk>/reparent", "post"): (
        lambda i: (
            f"/api/v1/customer/relationships/{i['link']}/reparent",
            {"to_golden_id": i["ann"]},
        ),
        STEWARD_CMD,
    ),
    # erasure and the audit trail: admins
    ("api/v1/<slug:domain>/erasures", "get"): (
        lambda i: ("/api/v1/customer/erasures", None),
        ADMIN_ONLY,
    ),
    ("api/v1/<slug:domain>/erasures", "post"): (
        lambda i: ("/api/v1/customer/erasures", {"golden_id": i["bob"]}),
        ADMIN_ONLY,
    ),
    ("api/v1/audit", "get"): (lambda i: ("/api/v1/audit", None), ADMIN_ONLY),
    # connectors and subscribers: admins
    ("api/v1/connectors", "get"): (lambda i: ("/api/v1/connectors", None), ADMIN_ONLY),
    ("api/v1/connectors/<slug:name>", "get"): (
        lambda i: ("/api/v1/connectors/crm-http", None),
        ADMIN_ONLY,
    ),
    ("api/v1/connectors/<slug:name>/runs", "get"): (
        lambda i: ("/api/v1/connectors/crm-http/runs", None),
        ADMIN_ONLY,
    ),
    ("api/v1/connectors/<slug:name>/pause", "post"): (
        lambda i: ("/api/v1/connectors/crm-http/pause", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/connectors/<slug:name>/resume", "post"): (
        lambda i: ("/api/v1/connectors/crm-http/resume", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/connectors/<slug:name>/run", "post"): (
        lambda i: ("/api/v1/connectors/crm-http/run", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers", "get"): (lambda i: ("/api/v1/subscribers", None), ADMIN_ONLY),
    ("api/v1/subscribers", "post"): (
        lambda i: ("/api/v1/subscribers", {"code": "erp-pull", "kind": "pull"}),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>", "get"): (
        lambda i: ("/api/v1/subscribers/crm-pull", None),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>", "patch"): (
        lambda i: ("/api/v1/subscribers/crm-pull", {"name": "CRM feed"}),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>", "delete"): (
        lambda i: ("/api/v1/subscribers/crm-pull", None),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>/dead-letters", "get"): (
        lambda i: ("/api/v1/subscribers/crm-pull/dead-letters", None),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>/dead-letters/<int:pk>/replay", "post"): (
        lambda i: ("/api/v1/subscribers/crm-pull/dead-letters/999999/replay", {}),
        {**ADMIN_ONLY, "admin": 404},  # through to the command, which finds no such letter
    ),
    ("api/v1/subscribers/<slug:code>/dead-letters/replay", "post"): (
        lambda i: ("/api/v1/subscribers/crm-pull/dead-letters/replay", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>/finish-rotation", "post"): (
        lambda i: ("/api/v1/subscribers/crm-pull/finish-rotation", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>/pause", "post"): (
        lambda i: ("/api/v1/subscribers/crm-pull/pause", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>/reset-circuit", "post"): (
        lambda i: ("/api/v1/subscribers/crm-pull/reset-circuit", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>/resume", "post"): (
        lambda i: ("/api/v1/subscribers/crm-pull/resume", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/subscribers/<slug:code>/rotate-secret", "post"): (
        lambda i: ("/api/v1/subscribers/crm-pull/rotate-secret", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/<slug:domain>/match", "post"): (
        lambda i: ("/api/v1/customer/match", {"attributes": {"given_name": "Ann"}}),
        DOMAIN_READ,
    ),
    ("api/v1/domains", "get"): (
        lambda i: ("/api/v1/domains", None),
        _expect(steward_supplier=OK, source=OK),
    ),
    # token management: global admins only
    ("api/v1/source-tokens", "get"): (lambda i: ("/api/v1/source-tokens", None), ADMIN_ONLY),
    ("api/v1/source-tokens", "post"): (
        lambda i: ("/api/v1/source-tokens", {"source": "crm", "access": "read"}),
        ADMIN_ONLY,
    ),
    ("api/v1/source-tokens/<slug:prefix>/rotate", "post"): (
        lambda i: (f"/api/v1/source-tokens/{i['crm_token']}/rotate", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/source-tokens/<slug:prefix>/revoke", "post"): (
        lambda i: (f"/api/v1/source-tokens/{i['crm_token']}/revoke", {}),
        ADMIN_ONLY,
    ),
    ("api/v1/user-tokens", "get"): (lambda i: ("/api/v1/user-tokens", None), ADMIN_ONLY),
    ("api/v1/user-tokens", "post"): (
        lambda i: ("/api/v1/user-tokens", {"username": "viewer"}),
        ADMIN_ONLY,
    ),
    ("api/v1/user-tokens/<slug:prefix>/revoke", "post"): (
        lambda i: (f"/api/v1/user-tokens/{i['user_token']}/revoke", {}),
        ADMIN_ONLY,
    ),
    # ingest runs and quarantine: narrowed per caller
    ("api/v1/ingest-runs", "get"): (lambda i: ("/api/v1/ingest-runs", None), NARROWED_LIST),
    ("api/v1/ingest-runs/<int:pk>", "get"): (
        lambda i: (f"/api/v1/ingest-runs/{i['run']}", None),
        NARROWED_OBJECT,
    ),
    ("api/v1/quarantine", "get"): (
        lambda i: ("/api/v1/quarantine", None),
        {**NARROWED_LIST, "other_source": EMPTY},  # erp has nothing in quarantine
    ),
    ("api/v1/quarantine/<int:pk>", "get"): (
        lambda i: (f"/api/v1/quarantine/{i['quarantine']}", None),
        NARROWED_OBJECT,
    ),
    ("api/v1/quarantine/<int:pk>/replay", "post"): (
        lambda i: (f"/api/v1/quarantine/{i['quarantine']}/replay", {}),
        QUARANTINE_CMD,
    ),
    ("api/v1/quarantine/<int:pk>/discard", "post"): (
        lambda i: (f"/api/v1/quarantine/{i['quarantine']}/discard", {"reason": "junk"}),
        QUARANTINE_CMD,
    ),
    # survivorship rules: admins of the domain
    ("api/v1/<slug:domain>/survivorship-rules", "get"): (
        lambda i: ("/api/v1/customer/survivorship-rules", None),
        ADMIN_ONLY,
    ),
    ("api/v1/<slug:domain>/survivorship-rules", "put"): (
        lambda i: ("/api/v1/customer/survivorship-rules", {"version": 0, "rules": {}}),
        ADMIN_ONLY,
    ),
    ("api/v1/<slug:domain>/survivorship-rules/preview", "post"): (
        lambda i: ("/api/v1/customer/survivorship-rules/preview", {"rules": {}}),
        ADMIN_ONLY,
    ),
    ("api/v1/<slug:domain>/survivorship-jobs/<int:pk>", "get"): (
        lambda i: (f"/api/v1/customer/survivorship-jobs/{i['job']}", None),
        ADMIN_ONLY,
    ),
    # golden records: reads for hub roles and scoped source systems, commands for stewards
    ("api/v1/<slug:domain>/golden", "get"): (
        lambda i: ("/api/v1/customer/golden", None),
        DOMAIN_READ,
    ),
    ("api/v1/<slug:domain>/golden/<int:pk>", "get"): (
        lambda i: (f"/api/v1/customer/golden/{i['ann']}", None),
        DOMAIN_READ,
    ),
    ("api/v1/<slug:domain>/golden/<int:pk>/timeline", "get"): (
        lambda i: (f"/api/v1/customer/golden/{i['ann']}/timeline", None),
        DOMAIN_READ,
    ),
    ("api/v1/<slug:domain>/golden/merge", "post"): (
        lambda i: ("/api/v1/customer/golden/merge", {"golden_ids": [i["ann"], i["bob"]]}),
        STEWARD_CMD,
    ),
    ("api/v1/<slug:domain>/golden/<int:pk>/split", "post"): (
        lambda i: (f"/api/v1/customer/golden/{i['ann']}/split", {"record_ids": [i["x"]]}),
        STEWARD_CMD,
    ),
    ("api/v1/<slug:domain>/golden/<int:pk>/correct", "post"): (
        lambda i: (
            f"/api/v1/customer/golden/{i['ann']}/correct",
            {"attribute": "city", "value": "York"},
        ),
        STEWARD_CMD,
    ),
    ("api/v1/<slug:domain>/golden/operations", "get"): (
        lambda i: ("/api/v1/customer/golden/operations", None),
        USER_VIEW,
    ),
    ("api/v1/<slug:domain>/golden/operations/<int:pk>", "get"): (
        lambda i: (f"/api/v1/customer/golden/operations/{i['op']}", None),
        USER_VIEW,
    ),
    ("api/v1/<slug:domain>/golden/operations/<int:pk>/undo", "post"): (
        lambda i: (f"/api/v1/customer/golden/operations/{i['op']}/undo", {}),
        STEWARD_CMD,
    ),
    # source records: a source system reads and writes only its own
    ("api/v1/<slug:domain>/records", "get"): (
        lambda i: ("/api/v1/customer/records", None),
        _expect(source=OK, other_source=NOT_CRM, source_other_domain=403),
    ),
    ("api/v1/<slug:domain>/records", "post"): (
        lambda i: ("/api/v1/customer/records", {"source_key": "N", "given_name": "Nia"}),
        INGEST,
    ),
    ("api/v1/<slug:domain>/records/<path:source_key>", "get"): (
        lambda i: ("/api/v1/customer/records/A?source=crm", None),
        RECORD_READ,
    ),
    ("api/v1/<slug:domain>/records/<path:source_key>", "delete"): (
        lambda i: ("/api/v1/customer/records/A", None),
        _expect(
            users=403,
            steward_supplier=403,
            source=OK,
            other_source=404,
            source_other_domain=403,
            readonly=403,
        ),
    ),
    ("api/v1/<slug:domain>/records/<path:source_key>/history", "get"): (
        lambda i: ("/api/v1/customer/records/A/history?source=crm", None),
        RECORD_READ,
    ),
    # the steward API: tasks of the caller's domains
    ("api/v1/steward/tasks", "get"): (
        lambda i: ("/api/v1/steward/tasks", None),
        _expect(steward_supplier=EMPTY),
    ),
    ("api/v1/steward/tasks/<int:pk>", "get"): (
        lambda i: (f"/api/v1/steward/tasks/{i['task']}", None),
        TASK_READ,
    ),
    ("api/v1/steward/tasks/decide", "post"): (
        lambda i: ("/api/v1/steward/tasks/decide", {"task_ids": [i["task"]], "decision": "merge"}),
        _expect(viewer=403, steward_supplier="refused"),
    ),
    ("api/v1/steward/tasks/<int:pk>/decide", "post"): (
        lambda i: (f"/api/v1/steward/tasks/{i['task']}/decide", {"decision": "not_a_match"}),
        TASK_CMD,
    ),
    ("api/v1/steward/tasks/<int:pk>/claim", "post"): (
        lambda i: (f"/api/v1/steward/tasks/{i['task']}/claim", {}),
        TASK_CMD,
    ),
    ("api/v1/steward/tasks/<int:pk>/release", "post"): (
        lambda i: (f"/api/v1/steward/tasks/{i['task']}/release", {}),
        TASK_CMD,
    ),
    ("api/v1/steward/tasks/<int:pk>/assign", "post"): (
        lambda i: (f"/api/v1/steward/tasks/{i['task']}/assign", {"assignee_id": None}),
        TASK_CMD,
    ),
}


def api_routes() -> Iterator[tuple[str, str]]:
    """(route, method) of every API endpoint, from the URL resolver."""

    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, Any]]:
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern), p.callback

    for route, callback in walk(get_resolver().url_patterns, ""):
        if not route.startswith("api/v1/"):
            continue
        view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        for method in ("get", "post", "put", "patch", "delete"):
            if view is not None and hasattr(view, method):
                yield route, method


def test_every_endpoint_is_classified() -> None:
    found = set(api_routes())
    missing = sorted(found - set(ENDPOINTS))
    stale = sorted(set(ENDPOINTS) - found)
    assert not missing, f"classify these endpoints in ENDPOINTS: {missing}"
    assert not stale, f"these classified endpoints no longer exist: {stale}"


def _order(expectations: dict[str, Any]) -> list[str]:
    """Refused personas first (they must change nothing), then the ones that get through."""
    return sorted(PERSONAS, key=lambda p: expectations[p] in (OK, EMPTY, NOT_CRM, "refused"))


def _rows(body: Any) -> list[Any]:
    rows: Any = body.get("results", body.get("events", [])) if isinstance(body, dict) else body
    return list(rows)


def _fingerprint() -> tuple[Any, ...]:
    """The state a refused request must leave as it was."""
    return (
        sorted(GoldenRecord.objects.values_list("pk", "version", "status")),
        sorted(SourceRecord.objects.values_list("pk", "is_deleted", "content_hash")),
        GoldenOperation.objects.count(),
        IngestRun.objects.count(),
        sorted(ReviewTask.objects.values_list("pk", "status", "assignee_id")),
        sorted(QuarantinedPayload.objects.values_list("pk", "status")),
        sorted(SourceToken.objects.values_list("pk", "revoked_at", "expires_at")),
        sorted(UserToken.objects.values_list("pk", "revoked_at")),
        sorted(Subscriber.objects.values_list("pk", "acked_seq")),
    )


@pytest.mark.parametrize(
    ("route", "method"), sorted(ENDPOINTS), ids=[f"{m} {r}" for r, m in sorted(ENDPOINTS)]
)
def test_endpoint_with_every_persona(world: World, route: str, method: str) -> None:
    build, expectations = ENDPOINTS[(route, method)]
    before = _fingerprint()
    for persona in _order(expectations):
        url, body = build(world.ids)
        client = world.clients[persona]
        response = getattr(client, method)(url, body, format="json")
        # A stream is read whole: its read transaction ends with the stream.
        content = b"".join(response.streaming_content) if response.streaming else response.content
        expected = expectations[persona]
        where = f"{persona} {method.upper()} {url}: {response.status_code} {content[:300]!r}"
        assert response.status_code < 500, where
        if expected == OK:
            assert response.status_code not in (401, 403, 404), where
        elif expected == EMPTY:
            assert response.status_code == 200, where
            assert _rows(response.json()) == [], where
        elif expected == NOT_CRM:
            assert response.status_code == 200, where
            rows = _rows(response.json())
            assert rows, where
            assert {row["source"] for row in rows} == {"erp"}, where
        elif expected == "refused":
            assert response.status_code == 200, where
            assert response.json()["decided"] == [], where
            assert str(world.ids["task"]) in response.json()["refused"], where
        else:
            assert response.status_code == expected, where
            assert _fingerprint() == before, f"{where}: a refused request changed something"
            if expected == 401 and response["Content-Type"].startswith("application/json"):
                assert response.json()["error"] in ("not_authenticated", "authentication_failed")


def test_text_with_a_nul_character_is_refused_with_400(world: World) -> None:
    response = world.clients["admin"].post(
        "/api/v1/subscribers", {"code": "x", "kind": "pull", "name": "a\x00b"}, format="json"
    )

    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
    assert not Subscriber.objects.filter(code="x").exists()
