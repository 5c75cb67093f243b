"""The golden record read by id, answered before Django's request cycle when it can be.

``GET /api/v1/<domain>/golden/<id>`` with a source system's token is the API's hottest
route (issue 9: 1,500 requests/s on 2 cores, 1.3 ms of CPU per request for the server, the
database and the client together).  Profiled under gunicorn, the read's Python time went
mostly to the machinery around it: building the ``HttpRequest``, twelve middleware, URL
resolution, DRF's ``Request``, authentication classes, content negotiation and response
rendering; the query and the JSON were the smaller part.

``HotGoldenRead`` wraps the WSGI application.  A request it recognises *and* can answer
with 200 is answered here, with the same body (DRF's ``JSONRenderer`` over the same
document, ``mdm.api.views.golden_read_document``), the same headers (the project's
middleware's own ``process_response`` for the security and frame headers, the request id,
``Allow``/``Vary`` as DRF sets them) and the same side effects (the token cache and its
``last_used_at`` write, the hourly audit of token use, the failed-authentication check, the
request signals that manage database connections).  Everything else goes to Django
untouched, which answers it exactly as before: other routes and methods, a query string
(``as_of``, ``format``), an ``Accept`` other than JSON, a user's token or session, no or a
bad token (401, and the failure counted once, by Django), a rate-limited address (429), a
token without read access or without the domain (403), an unknown domain or id (404), a
host not allowed (400), a plain-HTTP request under ``SECURE_SSL_REDIRECT``, any error.

The path is on only while the middleware list and DRF's settings are the ones it was
written for (``EXPECTED_MIDDLEWARE``; ``tests/test_hot_read.py`` compares both paths'
answers for every persona and case, and fails when the list changes), and while
``AURUM_HOT_GOLDEN_READ`` is on (the default).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.db import DatabaseError, InterfaceError
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from rest_framework.renderers import JSONRenderer

from config.logs import _VALID, HEADER, correlation_id, new_correlation_id
from mdm import tokens
from mdm.api.authentication import SourcePrincipal, _audit_token_use, _touch
from mdm.api.views import GoldenRecordDetailView, golden_read_document
from mdm.domains import UnknownDomainError, get_domain
from mdm.masking import mask_document, sees_pii
from mdm.ratelimit import RateLimited, auth_failures_check
from mdm.selectors import golden_record_read
from mdm.services.sources import hash_secret, source_token_authenticate
from mdm.services.user_tokens import USER_TOKEN_PREFIX

logger = logging.getLogger(__name__)

# The middleware this path stands in for, in order.  Another list (a middleware added,
# removed or moved) turns the path off until it is reviewed: tests/test_hot_read.py fails.
EXPECTED_MIDDLEWARE = (
    "config.logs.CorrelationIdMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.LoginRateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
)
# The authentication classes, in order: a user's token (auru_) is tried first.
EXPECTED_AUTHENTICATION = (
    "UserTokenAuthentication",
    "SourceTokenAuthentication",
    "SessionAuthentication",
)
# The route of mdm.api.urls.hot_urlpatterns: Django's slug and int converters.
_PATH = re.compile(r"/api/v1/([-a-zA-Z0-9_]+)/golden/([0-9]+)\Z")
_JSON_ACCEPTS = frozenset(("", "*/*", "application/json"))
_ALLOW = "GET, HEAD, OPTIONS"  # DRF's Allow for GoldenRecordDetailView (tested)

StartResponse = Callable[..., Any]


def _never(request: Any) -> Any:  # the middleware below only process responses here
    raise AssertionError("not called")


class HotGoldenRead:
    """WSGI application: the golden read by a source system's token answered directly, any
    other request passed to ``application`` (Django's)."""

    def __init__(self, application: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]):
        self.application = application
        # process_response in the order Django runs it (the reverse of MIDDLEWARE); the
        # others in EXPECTED_MIDDLEWARE add nothing to this answer.
        # Like Django's handler, they read their settings once, when made.
        self._security = SecurityMiddleware(_never)
        self._response_middleware: tuple[Any, ...] = (
            XFrameOptionsMiddleware(_never),
            CommonMiddleware(_never),
            self._security,
        )
        self._renderer = JSONRenderer()
        self._header_cache: dict[tuple[bool, str, bool], tuple[list[tuple[str, str]], int]] = {}

    def enabled(self) -> bool:
        """Settings are read per request (cheap), so ``override_settings`` is honoured.  The
        view's classes are its own attributes (DRF binds them when the class is made)."""
        view = GoldenRecordDetailView
        renderers = view.renderer_classes
        return bool(
            getattr(settings, "AURUM_HOT_GOLDEN_READ", True)
            and tuple(settings.MIDDLEWARE) == EXPECTED_MIDDLEWARE
            and tuple(c.__name__ for c in view.authentication_classes) == EXPECTED_AUTHENTICATION
            and renderers
            and renderers[0] is JSONRenderer
            and not view.throttle_classes
            and view.versioning_class is None
            and not settings.DISALLOWED_USER_AGENTS
            and not settings.PREPEND_WWW
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        match = None
        if (
            environ.get("REQUEST_METHOD") == "GET"
            and not environ.get("QUERY_STRING")
            and environ.get("HTTP_ACCEPT", "") in _JSON_ACCEPTS
        ):
            match = _PATH.match(environ.get("PATH_INFO", ""))
        if match is None or not self.enabled():
            return self.application(environ, start_response)
        secret = _source_secret(environ.get("HTTP_AUTHORIZATION", ""))
        if secret is None:
            return self.application(environ, start_response)
        request = WSGIRequest(environ)
        try:
            request.get_host()  # CommonMiddleware's check: a host not allowed is a 400
        except DisallowedHost:
            return self.application(environ, start_response)
        if self._security.process_request(request) is not None:  # SECURE_SSL_REDIRECT
            return self.application(environ, start_response)

        signals.request_started.send(sender=WSGIHandler, environ=environ)
        sent = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = sent if _VALID.match(sent) else new_correlation_id()
        token = correlation_id.set(request_id)
        try:
            body = self._read(request, match.group(1), int(match.group(2)), secret)
        except (DatabaseError, InterfaceError):
            body = None  # Django answers it (503 from DatabaseUnavailableMiddleware)
        except Exception:
            logger.exception("the hot golden read failed; answered through Django instead")
            body = None
        finally:
            correlation_id.reset(token)
        if body is None:
            return self.application(environ, start_response)

        template, length_at = self._headers(request)
        headers = [*template, (HEADER, request_id)]
        headers[length_at] = ("Content-Length", str(len(body)))
        # As WSGIHandler does when the response is closed: request_finished, sent here
        # because the answer is complete (a list, written by the server in one piece).
        signals.request_finished.send(sender=WSGIHandler)
        start_response("200 OK", headers)
        return [body]

    def _headers(self, request: WSGIRequest) -> tuple[list[tuple[str, str]], int]:
        """The answer's headers but the request id, and where its Content-Length is (a
        placeholder): what the project's middleware's ``process_response`` give a 200 of
        the view, made once per combination of what they depend on (HTTPS for HSTS, the
        frame option, the view's renderers for ``Vary``; the middleware read the rest of
        their settings when made) and reused, instead of an ``HttpResponse`` and three
        middleware calls per read."""
        vary = len(GoldenRecordDetailView.renderer_classes) > 1
        key = (request.is_secure(), settings.X_FRAME_OPTIONS, vary)
        made = self._header_cache.get(key)
        if made is None:
            response = HttpResponse(b"", content_type="application/json")
            if vary:
                response["Vary"] = "Accept"
            response["Allow"] = _ALLOW
            for middleware in self._response_middleware:
                response = middleware.process_response(request, response)
            headers = [
                *response.items(),
                *(("Set-Cookie", c.OutputString()) for c in response.cookies.values()),
            ]
            made = headers, [name for name, _ in headers].index("Content-Length")
            self._header_cache[key] = made
        return made

    def _read(self, request: WSGIRequest, domain: str, pk: int, secret: str) -> bytes | None:
        """The answer's body, or None where Django must answer (see the module docstring).
        Each step is the one DRF's view takes, in the same order."""
        try:
            get_domain(domain)
        except UnknownDomainError:
            return None
        try:
            auth_failures_check(request)
        except RateLimited:
            return None
        source_token = tokens.cached(
            "source", hash_secret(secret), lambda: source_token_authenticate(secret)
        )
        if source_token is None or not source_token.is_active:
            return None  # Django counts the failure and answers 401
        _touch(source_token)
        principal = SourcePrincipal(source_token)
        if not source_token.can_read or domain not in principal.domains:
            return None  # 403 (check_token_scope)
        _audit_token_use("source_token", source_token, principal)
        golden = golden_record_read(domain=domain, pk=pk)
        if golden is None:
            return None  # 404
        document = golden_read_document(golden)
        if not sees_pii(principal):
            document = mask_document(document, domain)
        return self._renderer.render(document, "application/json", {})


def _source_secret(header: str) -> str | None:
    """The secret of ``Authorization: Bearer <secret>`` when it is a source system's token
    as DRF reads it (``get_authorization_header``, split on whitespace), else None: no
    header, another scheme, a malformed one, or a user's token (``auru_``)."""
    try:
        parts = header.encode("iso-8859-1").split()
    except UnicodeEncodeError:
        return None
    if len(parts) != 2 or parts[0].decode(errors="replace").lower() not in ("bearer", "token"):
        return None
    secret = parts[1].decode(errors="replace")
    return None if secret.startswith(USER_TOKEN_PREFIX) else secret
