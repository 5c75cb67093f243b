"""Verify Aurum's webhooks on the subscriber's side.

Copy this module (it needs only the standard library and ``sync/signing.py``) or import it::

    from sync.receiver import Verifier, VerificationError

    verifier = Verifier(secrets=["whsec_..."])          # the current and, while rotating, the next
    try:
        event = verifier.verify(request.headers, request.body)
    except VerificationError as exc:
        return 400, str(exc)

``verify`` refuses a body or header that was tampered with, a timestamp more than
``tolerance`` seconds from now (an old message replayed), and an id it has already accepted
(a message replayed within the tolerance).  The seen-id store defaults to memory; pass
``seen`` (any object with ``__contains__`` and ``add``, e.g. backed by your database) to share
it between processes.  Aurum retries with the same ``webhook-id``: a 2xx answer to a duplicate
is the right response, so check ``Verifier.is_duplicate`` first if you want to acknowledge
retries of messages you already processed.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

from sync.signing import sign


class VerificationError(Exception):
    """The message is not an authentic, fresh, first-seen Aurum webhook."""


class SeenStore(Protocol):
    def __contains__(self, item: object) -> bool: ...

    def add(self, item: str) -> None: ...


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise VerificationError(f"missing header {name}")


class Verifier:
    def __init__(
        self, *, secrets: list[str], tolerance: int = 300, seen: SeenStore | None = None
    ) -> None:
        if not secrets:
            raise ValueError("at least one secret is needed")
        self.secrets = list(secrets)
        self.tolerance = tolerance
        self.seen: SeenStore = seen if seen is not None else set()

    def is_duplicate(self, headers: Mapping[str, str]) -> bool:
        try:
            return _header(headers, "webhook-id") in self.seen
        except VerificationError:
            return False

    def verify(
        self, headers: Mapping[str, str], body: bytes | str, *, now: float | None = None
    ) -> dict[str, Any]:
        """The decoded event, or VerificationError saying why it was refused.

        ``body`` is the raw request body; an AMQP client that decoded it (kombu does, for
        UTF-8) may pass the text.
        """
        if isinstance(body, str):
            body = body.encode()
        msg_id = _header(headers, "webhook-id")
        raw_ts = _header(headers, "webhook-timestamp")
        given = _header(headers, "webhook-signature").split()
        try:
            timestamp = int(raw_ts)
        except ValueError as exc:
            raise VerificationError("webhook-timestamp is not an integer") from exc
        current = time.time() if now is None else now
        if abs(current - timestamp) > self.tolerance:
            raise VerificationError(
                f"webhook-timestamp is {int(current - timestamp)} s from now "
                f"(tolerance {self.tolerance} s)"
            )
        expected = [
            sign(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in self.secrets
        ]
        if not any(hmac.compare_digest(g, e) for g in given for e in expected):
            raise VerificationError("no valid signature")
        if msg_id in self.seen:
            raise VerificationError(f"message {msg_id} was already received")
        self.seen.add(msg_id)
        event: dict[str, Any] = json.loads(body)
        return event
