"""API tokens of hub users (stewards, admins, viewers), next to their session login.

A user token acts as its user with the user's role; a source system's token never does.
The secret is shown once and only its SHA-256 is stored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from mdm.models import UserToken
from mdm.services.sources import hash_secret

USER_TOKEN_PREFIX = "auru_"  # noqa: S105 - a public prefix, not a secret


@dataclass(frozen=True)
class IssuedUserToken:
    token: UserToken
    secret: str  # shown once; only its hash is stored


def user_token_issue(*, user: Any, name: str = "default") -> IssuedUserToken:
    """Issue a new API token for ``user``.  Not idempotent: each call makes a new token."""
    prefix = secrets.token_hex(4)
    secret = f"{USER_TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = UserToken.objects.create(
        user=user, name=name, prefix=prefix, secret_hash=hash_secret(secret)
    )
    return IssuedUserToken(token, secret)


def user_token_revoke(*, token: UserToken) -> UserToken:
    """Revoke a token; later requests with it get 401.  Safe to repeat."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def user_token_authenticate(secret: str) -> UserToken | None:
    """The active token of an active user for ``secret``, or None (constant-time check)."""
    if not secret.startswith(USER_TOKEN_PREFIX):
        return None
    prefix = secret[len(USER_TOKEN_PREFIX) :].split("_", 1)[0]
    token = (
        UserToken.objects.select_related("user")
        .filter(prefix=prefix, revoked_at__isnull=True)
        .first()
    )
    if token is None or not secrets.compare_digest(token.secret_hash, hash_secret(secret)):
        return None
    if not token.user.is_active:
        return None
    return token
