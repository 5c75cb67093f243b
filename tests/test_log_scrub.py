"""Logs never contain PII, tokens or secrets: the ScrubFilter on the configured handler."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from config.logs import ScrubFilter, scrub
from mdm.services.sources import source_token_issue

SECRETS = [
    "jane.roe@example.com",
    "+1 202 555 4567",
    "536-22-1234",
    "hunter2",
    "GB82 WEST 1234 5698 7654 32",
]


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the configured console handler (filter and JSON formatter) writes."""
    (handler,) = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler)
        and any(isinstance(f, ScrubFilter) for f in h.filters)
    ]
    out = io.StringIO()
    old = handler.setStream(out)
    try:
        yield out
    finally:
        handler.setStream(old)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer aur_abc123XYZ.secretpart", "Authorization: [scrubbed]"),
        ("token aur_k3j4h5k6j7 used", "token [scrubbed] used"),
        ("password=hunter2, 'secret': 'xyz'", "password=[scrubbed], 'secret': [scrubbed]"),
        ("mail jane.roe@example.com", "mail [email]"),
        ("call +1 202 555 4567 now", "call [phone] now"),
        ("ssn 536-22-1234", "ssn [national-id]"),
        ("iban GB82 WEST 1234 5698 7654 32", "iban [iban]"),
        ("run 12345 took 0.5 s at 2026-11-22T10:00:00+00:00", None),
    ],
)
def test_scrub(text, expected):
    assert scrub(text) == (text if expected is None else expected)


def test_messages_arguments_extras_and_tracebacks_are_scrubbed(log_output):
    log = logging.getLogger("aurum.test")
    log.warning("customer %s changed", "jane.roe@example.com", extra={"phone": "+1 202 555 4567"})
    log.warning(
        "login",
        extra={"payload": {"password": "hunter2", "ssn": "536-22-1234"}, "counts": {"read": 2}},
    )
    try:
        raise ValueError(
            "duplicate key (email)=(jane.roe@example.com) iban GB82 WEST 1234 5698 7654 32"
        )
    except ValueError:
        log.exception("insert failed")

    text = log_output.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [e["message"] for e in lines] == ["customer [email] changed", "login", "insert failed"]
    assert lines[0]["phone"] == "[phone]"
    # Structured extras stay structured.
    assert lines[1]["payload"] == {"password": "[scrubbed]", "ssn": "[national-id]"}
    assert lines[1]["counts"] == {"read": 2}
    assert "ValueError: duplicate key (email)=([email]) iban [iban]" in lines[2]["exception"]
    for secret in SECRETS:
        assert secret not in text


def test_a_request_with_a_token_logs_no_token(db, source, client, log_output):
    issued = source_token_issue(source_system=source)
    response = client.get(
        "/api/v1/customer/records/jane.roe@example.com",
        HTTP_AUTHORIZATION=f"Bearer {issued.secret}",
    )
    assert response.status_code == 404

    text = log_output.getvalue()
    assert "Not Found" in text  # django.request logged the 404 ...
    assert issued.secret not in text and "jane.roe@example.com" not in text  # ... scrubbed


def test_a_celery_workers_own_log_handlers_scrub_too():
    from celery.signals import after_setup_logger

    import config.celery  # noqa: F401  (connects the signal)

    out = io.StringIO()
    logger = logging.getLogger("aurum.test.worker")
    handler = logging.StreamHandler(out)
    logger.addHandler(handler)
    try:
        after_setup_logger.send(
            sender=None,
            logger=logger,
            loglevel=logging.INFO,
            logfile=None,
            format="%(message)s",
            colorize=False,
        )
        logger.warning("sent to jane.roe@example.com with token aur_abcdef123456")
    finally:
        logger.removeHandler(handler)

    assert out.getvalue().strip() == "sent to [email] with token [scrubbed]"
