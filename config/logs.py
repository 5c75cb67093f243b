"""Structured logs with a correlation id.

Every log record carries ``correlation_id``: the ``X-Request-ID`` of the request being served
(one is made when the client sends none, and echoed in the response), or of the request that
queued the Celery task being run.  A task queued while an id is set carries it in a message
header, so a record's ingest request, the matching it queued and whatever that queues log
under one id.  ``JsonFormatter`` writes one JSON object a line.

``ScrubFilter`` (on the console handler) keeps personal data, tokens and secrets out of every
record: API tokens (``aur_``/``auru_`` and any ``Bearer``/``Authorization`` value), values of
keys named like a password, secret, token or key, e-mail addresses, phone numbers and
national-id-like numbers, in the message, its arguments, ``extra=`` fields and tracebacks.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
TASK_HEADER = "correlation_id"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")

_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.correlation_id = correlation_id.get()
    return record


logging.setLogRecordFactory(_record_factory)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


class CorrelationIdMiddleware:
    """Sets the request's correlation id (its ``X-Request-ID`` when well-formed, else a new
    one) for the logs of the request and of the tasks it queues; echoes it in the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        sent = request.headers.get(HEADER, "")
        value = sent if _VALID.match(sent) else new_correlation_id()
        token = correlation_id.set(value)
        try:
            response = self.get_response(request)
        finally:
            correlation_id.reset(token)
        response[HEADER] = value
        return response


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "correlation_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, correlation_id, the exception,
    and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", "") or None,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_text:  # already scrubbed by ScrubFilter
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


# --- Keeping PII, tokens and secrets out of the logs ---------------------------------------

SCRUBBED = "[scrubbed]"
_SCRUB_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization headers and bearer tokens, whatever the token looks like.
    (
        re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)[^\s,;\"'}]+(\s+[^\s,;\"'}]+)?"),
        rf"\1{SCRUBBED}",
    ),
    (re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {SCRUBBED}"),
    # The hub's own token formats (source systems aur_, users auru_).
    (re.compile(r"\baur(?:u)?_[A-Za-z0-9_-]{6,}"), SCRUBBED),
    # key=value / "key": "value" pairs whose key names a secret.
    (
        re.compile(
            r"(?i)([\"']?\b[\w-]*(?:password|passwd|secret|api[_-]?key|token|signing[_-]?key|"
            r"credential)[\w-]*[\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&}]+)"
        ),
        rf"\1{SCRUBBED}",
    ),
    # Personal data that looks like it: e-mail addresses, phone numbers, SSN/national ids, IBANs.
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    (re.compile(r"(?<![\w.])\+\d[\d\s().-]{6,}\d"), "[phone]"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[national-id]"),
    (re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b"), "[iban]"),
]


def scrub(text: str) -> str:
    """``text`` with tokens, secrets and PII-looking values replaced."""
    for pattern, replacement in _SCRUB_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_PRIMITIVE = (int, float, bool, type(None))
_SECRET_KEY = re.compile(r"(?i)password|passwd|secret|api[_-]?key|token|authorization|credential")


def _scrub_value(value: Any) -> Any:
    """An ``extra=`` value scrubbed, keeping its shape (a dict stays a JSON object)."""
    if isinstance(value, _PRIMITIVE):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {
            k: SCRUBBED if _SECRET_KEY.search(str(k)) else _scrub_value(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_scrub_value(v) for v in value]
    return scrub(str(value))


class ScrubFilter(logging.Filter):
    """Scrubs every record passing the handler (see ``scrub``); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw message, scrubbed
            message = str(record.msg)
        record.msg, record.args = scrub(message), ()
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD or key.startswith("_") or isinstance(value, _PRIMITIVE):
                continue
            record.__dict__[key] = _scrub_value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


# --- Celery: carry the id in a message header -------------------------------------------


def task_headers_add(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish``: put the current correlation id on the outgoing message."""
    value = correlation_id.get()
    if value and headers is not None and TASK_HEADER not in headers:
        headers[TASK_HEADER] = value


_task_tokens: dict[str, contextvars.Token[str]] = {}


def task_correlation_set(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """``task_prerun``: log the task under the id of the request that queued it (or a new
    one for a task nobody's request queued, such as a beat task)."""
    request = getattr(task, "request", None)
    # A worker makes each message header an attribute of the request; apply() keeps them
    # under ``headers``.  An eager task run inside a request keeps the request's id.
    value = (
        getattr(request, TASK_HEADER, None)
        or (getattr(request, "headers", None) or {}).get(TASK_HEADER)
        or correlation_id.get()
        or new_correlation_id()
    )
    if task_id:
        _task_tokens[task_id] = correlation_id.set(str(value))


def task_correlation_reset(task_id: str | None = None, **_: Any) -> None:
    """``task_postrun``: forget the task's id."""
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        correlation_id.reset(token)
