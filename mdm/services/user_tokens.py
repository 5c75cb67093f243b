"""API tokens of hub users (stewards, admins, viewers), next to their session login.

A user token acts as its user with the user's role; a source system's token never does.
The secret is shown once and only its SHA-256 is stored.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from mdm import tokens
from mdm.audit.services import audit_record
from mdm.models import UserToken
from mdm.services.sources import hash_secret

USER_TOKEN_PREFIX = "auru_"  # noqa: S105 - a public prefix, not a secret


@dataclass(frozen=True)
class IssuedUserToken:
    token: UserToken
    secret: str  # shown once; only its hash is stored


def user_token_issue(
    *, user: Any, name: str = "default", expires_at: datetime | None = None, actor: Any = None
) -> IssuedUserToken:
    """Issue a new API token for ``user`` (optionally expiring).  Not idempotent: each call
    makes a new token."""
    prefix = secrets.token_hex(4)
    secret = f"{USER_TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        token = UserToken.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            secret_hash=hash_secret(secret),
            expires_at=expires_at,
        )
        audit_record(
            action="user_token.issued",
            actor=actor,
            target_type="user_token",
            target_id=prefix,
            detail={"user": user.get_username()},
        )
    return IssuedUserToken(token, secret)


def user_token_revoke(*, token: UserToken, actor: Any = None) -> UserToken:
    """Revoke a token; later requests with it get 401.  Safe to repeat."""
    with transaction.atomic():
        locked = UserToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            audit_record(
                action="user_token.revoked",
                actor=actor,
                target_type="user_token",
                target_id=locked.prefix,
            )
    tokens.forget("user", locked.secret_hash)
    return locked


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
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return None
    if not token.user.is_active:
        return None
    return token
