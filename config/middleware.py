"""Answer 503 (with Retry-After) instead of 500 while the database is unreachable; answer
429 to a client that failed to log in too often."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """A lost or refused database connection is a temporary outage, not a server bug.

    The broken connection is closed, so the next request opens a fresh one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable for %s: %s", request.path, exc)
        for conn in connections.all(initialized_only=True):
            if conn.connection is not None and not conn.in_atomic_block:
                conn.close_if_unusable_or_obsolete()
        response = JsonResponse(
            {"error": "unavailable", "detail": "The database is unavailable; retry shortly."},
            status=503,
        )
        response["Retry-After"] = "5"
        return response


LOGIN_PATHS = ("/accounts/login/", "/admin/login/", "/api-auth/login/")


class LoginRateLimitMiddleware:
    """Failed password logins count against the client address like failed API tokens
    (``mdm.ratelimit``): past the limit a login POST answers 429 with Retry-After before the
    password is checked.  Django's login views answer a failed POST by showing the form again
    (200) and a good one with a redirect, which is what is counted here."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path not in LOGIN_PATHS:
            return self.get_response(request)
        from mdm.ratelimit import RateLimited, auth_failure_limit, auth_failures_check

        try:
            auth_failures_check(request)
        except RateLimited as exc:
            return _too_many(exc)
        response = self.get_response(request)
        if response.status_code == 200:
            try:
                auth_failure_limit(request)
            except RateLimited as exc:
                return _too_many(exc)
        return response


def _too_many(exc: Any) -> HttpResponse:
    response = HttpResponse(
        "Too many failed logins from this address; try again later.\n",
        status=429,
        content_type="text/plain",
    )
    response["Retry-After"] = str(int(exc.wait or 60))
    return response
