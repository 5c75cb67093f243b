"""The receiver helper subscribers use: authentic, fresh, first-seen messages only."""

from __future__ import annotations

import time

import pytest

from sync.receiver import VerificationError, Verifier
from sync.signing import secret_generate, signature_header

BODY = b'{"type":"golden.updated","seq":7}'


def headers(secrets: list[str], msg_id: str = "evt_7", ts: int | None = None, body: bytes = BODY):
    ts = int(time.time()) if ts is None else ts
    return {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(ts),
        "Webhook-Signature": signature_header(
            secrets_=secrets, msg_id=msg_id, timestamp=ts, body=body
        ),
    }


def test_a_genuine_message_verifies_once():
    secret = secret_generate()
    verifier = Verifier(secrets=[secret])
    assert verifier.verify(headers([secret]), BODY) == {"type": "golden.updated", "seq": 7}
    # the same id again is a replay
    with pytest.raises(VerificationError, match="already received"):
        verifier.verify(headers([secret]), BODY)


def test_a_tampered_body_is_refused():
    secret = secret_generate()
    verifier = Verifier(secrets=[secret])
    with pytest.raises(VerificationError, match="no valid signature"):
        verifier.verify(headers([secret]), BODY.replace(b"7", b"8"))
    assert verifier.seen == set()


def test_a_tampered_id_or_timestamp_is_refused():
    secret = secret_generate()
    verifier = Verifier(secrets=[secret])
    good = headers([secret])
    with pytest.raises(VerificationError, match="no valid signature"):
        verifier.verify({**good, "Webhook-Id": "evt_8"}, BODY)
    with pytest.raises(VerificationError, match="no valid signature"):
        verifier.verify({**good, "Webhook-Timestamp": str(int(time.time()) - 1)}, BODY)


def test_an_old_or_future_timestamp_is_refused():
    secret = secret_generate()
    verifier = Verifier(secrets=[secret], tolerance=300)
    with pytest.raises(VerificationError, match="tolerance 300"):
        verifier.verify(headers([secret], ts=int(time.time()) - 301), BODY)
    with pytest.raises(VerificationError, match="tolerance 300"):
        verifier.verify(headers([secret], ts=int(time.time()) + 400), BODY)


def test_a_wrong_secret_is_refused_and_rotation_accepts_either():
    old, new = secret_generate(), secret_generate()
    with pytest.raises(VerificationError):
        Verifier(secrets=[new]).verify(headers([old]), BODY)
    # during a rotation the hub signs with both: a receiver with either secret accepts
    both = headers([new, old])
    assert len(both["Webhook-Signature"].split()) == 2
    assert Verifier(secrets=[old]).verify(both, BODY)["seq"] == 7
    assert Verifier(secrets=[new]).verify(both, BODY)["seq"] == 7


def test_missing_headers_are_refused():
    with pytest.raises(VerificationError, match="missing header webhook-signature"):
        Verifier(secrets=[secret_generate()]).verify(
            {"webhook-id": "a", "webhook-timestamp": "1"}, BODY
        )
