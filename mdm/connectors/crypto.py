"""Connector credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256).

The key is ``AURUM_CONNECTOR_KEY`` (a Fernet key, ``Fernet.generate_key()``) when set, else
derived from ``SECRET_KEY``, so a stolen database dump alone does not reveal the secrets.
Several comma-separated keys rotate: the first encrypts, all decrypt.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretError(Exception):
    """A stored secret cannot be decrypted (the key changed)."""


def _fernet() -> MultiFernet:
    configured = [k.strip() for k in settings.AURUM_CONNECTOR_KEY.split(",") if k.strip()]
    if not configured:
        digest = hashlib.sha256(b"aurum-connector-secrets:" + settings.SECRET_KEY.encode()).digest()
        configured = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(k.encode()) for k in configured])


def secret_encrypt(secret: str) -> str:
    """The ciphertext of ``secret`` (empty stays empty)."""
    if not secret:
        return ""
    return _fernet().encrypt(secret.encode()).decode()


def secret_decrypt(token: str) -> str:
    """The secret behind a ciphertext.  Raises ``SecretError`` without revealing anything."""
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretError(
            "the stored connector secret cannot be decrypted (AURUM_CONNECTOR_KEY or "
            "SECRET_KEY changed); set the secret again"
        ) from None
