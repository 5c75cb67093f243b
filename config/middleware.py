"""Answer 503 (with Retry-After) instead of 500 while the database is unreachable."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
