"""The golden read answered before Django (config/hot_read.py) answers what Django answers.

Every request goes twice through real WSGI applications: ``HotGoldenRead`` around Django's
``WSGIHandler``, and the ``WSGIHandler`` alone (the DRF view behind the whole middleware
stack).  Status, headers (their order too) and body must be equal, byte for byte, for every
persona (source system tokens of every scope, users' tokens of every role, a session,
anonymous, bad tokens) and case (active, retired and unknown ids, another domain, an unknown
domain, ``as_of``, other ``Accept``s, ``HEAD``, HTTPS behind a proxy, a host not allowed);
and the cases the hot path may answer must be answered by it (Django not called).
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.test import Client, RequestFactory
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from config.hot_read import EXPECTED_MIDDLEWARE, HotGoldenRead
from mdm import ratelimit
from mdm.api import authentication
from mdm.api.views import GoldenRecordDetailView
from mdm.audit.models import AuditEntry
from mdm.models import GoldenRecord, SourceRecord, SourceToken
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.sources import source_system_upsert, source_token_issue, source_token_revoke
from mdm.services.user_tokens import user_token_issue

pytestmark = pytest.mark.django_db

REQUEST_ID = "req-hot-1"


class Counting:
    """Django's WSGI application, counting the requests it was given."""

    def __init__(self) -> None:
        self.django = WSGIHandler()
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.calls += 1
        return self.django(environ, start_response)


def call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        answer["status"], answer["headers"] = status, headers

    # As Django's test client does: the test's transaction must outlive the request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return answer["status"], answer["headers"], body


_SECRET = re.compile(rb"[A-Za-z0-9]{32,64}|expires=[^;]+")


def comparable(answer: tuple[str, list[tuple[str, str]], bytes]) -> Any:
    """The browsable API's HTML (a 401 or 404 for a browser) carries a fresh CSRF token each
    time, in its cookie and its page: those are blanked; nothing else is."""
    status, headers, body = answer
    if not any(k == "Content-Type" and v.startswith("text/html") for k, v in headers):
        return answer
    headers = [
        (k, _SECRET.sub(b"<csrf>", v.encode()).decode() if k == "Set-Cookie" else v)
        for k, v in headers
    ]
    return status, headers, _SECRET.sub(b"<csrf>", body)


def make_apps() -> tuple[HotGoldenRead, Counting]:
    """Both applications, made as gunicorn makes them (their middleware read the settings
    now, as in production)."""
    inner = Counting()
    return HotGoldenRead(inner), inner


@pytest.fixture
def apps() -> tuple[HotGoldenRead, Counting]:
    return make_apps()


def _user(name: str, group: str) -> User:
    user = User.objects.create_user(name, password="pw")
    user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


@pytest.fixture
def world() -> dict[str, Any]:
    """Customer golden records: Ann (crm's A and erp's X), Bob (crm's B), and a retired one
    whose survivor is Ann; tokens and sessions of every persona."""
    crm, _ = source_system_upsert(code="crm", name="CRM")
    erp, _ = source_system_upsert(code="erp", name="ERP")
    plm, _ = source_system_upsert(code="plm", name="PLM")
    crm_secret = source_token_issue(source_system=crm).secret
    erp_secret = source_token_issue(source_system=erp).secret
    push = Client(headers={"authorization": f"Bearer {crm_secret}"}).post
    for key, name, email in (("A", "Ann", "ann@example.com"), ("B", "Bob", "")):
        body = {"source_key": key, "given_name": name, "family_name": "Lee", "email": email}
        assert push("/api/v1/customer/records", body, "application/json").status_code == 201
    response = Client(headers={"authorization": f"Bearer {erp_secret}"}).post(
        "/api/v1/customer/records",
        {"source_key": "X", "given_name": "Anne", "phone": "+442079460958"},
        "application/json",
    )
    assert response.status_code == 201
    a, b, x = (SourceRecord.objects.get(source_key=k).pk for k in "ABX")
    golden_records_apply_clusters(domain="customer", clusters={a: 1, b: 2, x: 3})
    retired = GoldenRecord.objects.get(members__record_id=x).pk
    golden_records_apply_clusters(domain="customer", clusters={a: 1, x: 1, b: 2})
    ann = GoldenRecord.objects.get(members__record_id=a).pk
    assert GoldenRecord.objects.get(pk=retired).survivor_id == ann
    bob = GoldenRecord.objects.get(members__record_id=b).pk

    revoked = source_token_issue(source_system=crm)
    source_token_revoke(token=revoked.token)
    expired = source_token_issue(source_system=crm)
    SourceToken.objects.filter(pk=expired.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    session = Client()
    session.force_login(_user("session_steward", "steward"))
    auth = {
        "anonymous": None,
        "source": f"Bearer {crm_secret}",
        "source_lowercase_keyword": f"bearer {crm_secret}",
        "source_token_keyword": f"Token {crm_secret}",
        "other_source": f"Bearer {erp_secret}",
        "readonly": f"Bearer {source_token_issue(source_system=crm, access='read').secret}",
        "writeonly": f"Bearer {source_token_issue(source_system=crm, access='write').secret}",
        "source_other_domain": "Bearer "
        + source_token_issue(source_system=plm, domains=["supplier"]).secret,
        "revoked": f"Bearer {revoked.secret}",
        "expired": f"Bearer {expired.secret}",
        "unknown_token": "Bearer aur_nosuch_0123456789abcdef",
        "malformed": "Bearer",
        "three_parts": f"Bearer {crm_secret} extra",
        "basic": "Basic dXNlcjpwdw==",
    }
    for role in ("viewer", "steward", "admin"):
        auth[role] = f"Bearer {user_token_issue(user=_user(role, role)).secret}"
    return {
        "auth": auth,
        "session": session.cookies["sessionid"].value,
        "ids": {"ann": ann, "bob": bob, "retired": retired},
    }


PERSONAS = (
    "anonymous",
    "source",
    "source_lowercase_keyword",
    "source_token_keyword",
    "other_source",
    "readonly",
    "writeonly",
    "source_other_domain",
    "revoked",
    "expired",
    "unknown_token",
    "malformed",
    "three_parts",
    "basic",
    "viewer",
    "steward",
    "admin",
    "session",
)
# The personas whose plain reads the hot path answers itself.
HOT = {"source", "source_lowercase_keyword", "source_token_keyword", "other_source", "readonly"}

CASES = {
    "ann": ("customer", "ann", {}),
    "bob": ("customer", "bob", {}),
    "retired": ("customer", "retired", {}),
    "unknown_id": ("customer", 999_999, {}),
    "other_domain": ("supplier", "ann", {}),
    "unknown_domain": ("nosuch", "ann", {}),
    "as_of": ("customer", "ann", {"QUERY_STRING": "as_of=2100-01-01"}),
    "accept_json": ("customer", "ann", {"HTTP_ACCEPT": "application/json"}),
    "accept_any": ("customer", "ann", {"HTTP_ACCEPT": "*/*"}),
    "accept_html": ("customer", "ann", {"HTTP_ACCEPT": "text/html"}),
    "accept_indent": ("customer", "ann", {"HTTP_ACCEPT": "application/json; indent=2"}),
    "head": ("customer", "ann", {"REQUEST_METHOD": "HEAD"}),
    "host_not_allowed": ("customer", "ann", {"HTTP_HOST": "evil.example"}),
}
HOT_CASES = {"ann", "bob", "retired", "accept_json", "accept_any"}


def environ(world: dict[str, Any], persona: str, case: str) -> dict[str, Any]:
    domain, which, extra = CASES[case]
    pk = world["ids"].get(which, which)
    headers: dict[str, Any] = {"HTTP_X_REQUEST_ID": REQUEST_ID}
    if persona == "session":
        headers["HTTP_COOKIE"] = f"sessionid={world['session']}"
    elif world["auth"][persona] is not None:
        headers["HTTP_AUTHORIZATION"] = world["auth"][persona]
    built = RequestFactory().get(f"/api/v1/{domain}/golden/{pk}", **headers).environ
    return {**built, **extra}


@pytest.fixture(params=["json_and_browsable", "json_only"])
def renderers(request: Any, monkeypatch: Any) -> str:
    if request.param == "json_only":  # production's renderers: no Vary: Accept
        # DRF binds a view's renderers when its class is made, from the settings then.
        monkeypatch.setattr(GoldenRecordDetailView, "renderer_classes", [JSONRenderer])
    return str(request.param)


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_persona_and_case_gets_what_django_answers(apps, world, persona, renderers):
    hot, django = apps
    for case in CASES:
        django.calls = 0
        through_hot = call(hot, environ(world, persona, case))
        answered_by_hot = django.calls == 0
        through_django = call(django, environ(world, persona, case))

        assert comparable(through_hot) == comparable(through_django), (persona, case)
        assert answered_by_hot == (persona in HOT and case in HOT_CASES), (persona, case)


def test_the_hot_answer_is_the_read_with_its_headers(apps, world):
    hot, django = apps

    status, headers, body = call(hot, environ(world, "source", "retired"))

    assert django.calls == 0
    assert status == "200 OK"
    assert dict(headers) == {
        "Content-Type": "application/json",
        "Vary": "Accept",
        "Allow": "GET, HEAD, OPTIONS",
        "X-Frame-Options": "DENY",
        "Content-Length": str(len(body)),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "X-Request-ID": REQUEST_ID,
    }
    assert body.startswith(b'{"id":%d,"domain":"customer","status":"active"' % world["ids"]["ann"])
    assert body.endswith(b',"retired_id":%d}' % world["ids"]["retired"])
    assert b"ann@example.com" in body  # a source system sees personal data in clear


def test_a_request_id_is_made_when_none_or_a_bad_one_is_sent(apps, world):
    hot, _ = apps
    request = environ(world, "source", "ann")
    request["HTTP_X_REQUEST_ID"] = "bad id with spaces"

    ids = [dict(call(hot, request)[1])["X-Request-ID"] for _ in range(2)]

    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[0] != ids[1]


def test_https_behind_a_proxy_gets_hsts_and_plain_http_is_redirected(apps, world, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_SSL_REDIRECT = True
    hot, django = make_apps()
    secure = {**environ(world, "source", "ann"), "HTTP_X_FORWARDED_PROTO": "https"}

    hot_answer = call(hot, dict(secure))
    assert django.calls == 0
    assert hot_answer == call(django, dict(secure))
    assert dict(hot_answer[1])["Strict-Transport-Security"] == "max-age=3600"

    plain = call(hot, environ(world, "source", "ann"))
    assert django.calls == 2
    assert plain[0].startswith("301")


def test_the_token_use_is_recorded_as_through_django(apps, world):
    hot, django = apps
    token = SourceToken.objects.get(source_system__code="erp")
    authentication._audited.clear()

    call(hot, environ(world, "other_source", "ann"))
    call(hot, environ(world, "other_source", "bob"))

    assert django.calls == 0
    token.refresh_from_db()
    assert token.last_used_at is not None
    entries = AuditEntry.objects.filter(action="token.used", target_id=token.prefix)
    assert entries.count() == 1


def test_a_failed_authentication_is_counted_once_and_then_limited(apps, world, settings):
    hot, django = apps
    settings.REDIS_URL = ""  # this process's counter
    settings.AURUM_AUTH_FAILURES_PER_MINUTE = 2
    address = f"10.9.{uuid.uuid4().int % 250}.7"

    def bad(persona: str) -> tuple[str, list[tuple[str, str]], bytes]:
        return call(hot, {**environ(world, persona, "ann"), "REMOTE_ADDR": address})

    assert bad("unknown_token")[0].startswith("401")
    assert ratelimit.hit("authfail", address, count=False).count == 1
    assert bad("unknown_token")[0].startswith("401")
    assert bad("unknown_token")[0].startswith("429")
    # the address is now refused even with a good token, as through Django
    assert bad("source")[0].startswith("429")
    assert django.calls == 4


def test_a_revoked_token_is_refused_at_once_despite_the_cache(apps, world):
    hot, django = apps
    assert call(hot, environ(world, "other_source", "ann"))[0] == "200 OK"
    token = SourceToken.objects.get(source_system__code="erp")

    source_token_revoke(token=token)

    assert call(hot, environ(world, "other_source", "ann"))[0].startswith("401")
    assert django.calls == 1


def test_a_database_error_is_answered_by_django(apps, world, monkeypatch):
    hot, django = apps

    def broken(**kwargs: Any) -> None:
        from django.db import OperationalError

        raise OperationalError("connection lost")

    monkeypatch.setattr("config.hot_read.golden_record_read", broken)
    monkeypatch.setattr("mdm.api.views.golden_record_read", broken)

    status, _, body = call(hot, environ(world, "source", "ann"))

    assert django.calls == 1
    assert status.startswith("503")
    assert b"unavailable" in body


@pytest.mark.parametrize(
    "change",
    [
        {"AURUM_HOT_GOLDEN_READ": False},
        {"MIDDLEWARE": [m for m in EXPECTED_MIDDLEWARE if "htmx" not in m]},
        {"MIDDLEWARE": [*EXPECTED_MIDDLEWARE, "django.middleware.gzip.GZipMiddleware"]},
    ],
)
def test_off_or_with_other_middleware_every_read_goes_to_django(apps, world, settings, change):
    hot, django = apps
    for name, value in change.items():
        setattr(settings, name, value)

    status, _, _ = call(hot, environ(world, "source", "ann"))

    assert status == "200 OK"
    assert django.calls == 1


def test_the_settings_are_the_ones_the_hot_path_was_written_for():
    # A middleware added, removed or moved turns the hot path off: review config/hot_read.py
    # (what the new middleware does to this read) and update EXPECTED_MIDDLEWARE.
    from django.conf import settings

    assert tuple(settings.MIDDLEWARE) == EXPECTED_MIDDLEWARE
    assert HotGoldenRead(WSGIHandler()).enabled()


def test_the_project_wsgi_application_is_wrapped():
    from config import wsgi

    assert isinstance(wsgi.application, HotGoldenRead)
    assert isinstance(wsgi.application.application, WSGIHandler)
