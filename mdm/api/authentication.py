"""API authentication of source systems by token (``Authorization: Bearer aur_...``)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from mdm import tokens
from mdm.audit.services import audit_record_once
from mdm.domains import all_domains
from mdm.models import SourceMapping, SourceSystem, SourceToken, UserToken
from mdm.ratelimit import auth_failure_limit, auth_failures_check
from mdm.services.sources import hash_secret, source_token_authenticate
from mdm.services.user_tokens import USER_TOKEN_PREFIX, user_token_authenticate

TOKEN_AUDIT_WINDOW = timedelta(hours=1)
_audited: dict[tuple[str, int], float] = {}
_audited_lock = threading.Lock()


def _audit_token_use(kind: str, token: Any, actor: Any) -> None:
    """At most one audit entry per token per hour: this process remembers when it last
    wrote one (a dictionary look-up per request), and the chain lock settles the race
    between processes."""
    key, now = (kind, token.pk), time.monotonic()
    with _audited_lock:
        last = _audited.get(key)
        if last is not None and now - last < TOKEN_AUDIT_WINDOW.total_seconds():
            return
        _audited[key] = now
    audit_record_once(
        action="token.used",
        actor=actor,
        target_type=kind,
        target_id=token.prefix,
        within=TOKEN_AUDIT_WINDOW,
    )


class SourcePrincipal:
    """The caller when a source system authenticates: not a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, token: SourceToken) -> None:
        self.token = token
        self.source_system: SourceSystem = token.source_system
        # The token object may come from the token cache: its domains are cached with it.
        domains = getattr(token, "_aurum_domains", None)
        if domains is None:
            domains = source_token_domains(token)
            token._aurum_domains = domains  # type: ignore[attr-defined]
        self.domains: frozenset[str] = domains

    def __str__(self) -> str:
        return f"source:{self.source_system.code}"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


def _touch(token: SourceToken | UserToken) -> None:
    """Record the token's use, at most once a minute (a write per request costs more than
    the read it accompanies)."""
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        type(token).objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now  # the cached token too


def source_token_domains(token: SourceToken) -> frozenset[str]:
    """The domains a token may touch: its own list, else the domains its source system has a
    mapping for, else (a system without any mapping) every domain."""
    if token.domains:
        return frozenset(token.domains)
    mapped = frozenset(
        SourceMapping.objects.filter(source_system_id=token.source_system_id).values_list(
            "domain", flat=True
        )
    )
    return mapped or frozenset(d.code for d in all_domains())


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def check_token_scope(request: Request, principal: SourcePrincipal) -> None:
    """Refuse (403) a request outside the token's scopes: a write with a read-only token, a
    read with a write-only one, or a domain the token is not scoped to.  A view may declare
    ``required_access = "read"`` for a POST that only reads (search, feed acknowledgement)."""
    context = getattr(request, "parser_context", None) or {}
    view = context.get("view")
    kwargs = context.get("kwargs") or {}
    access = getattr(view, "required_access", None) or (
        "read" if request.method in SAFE_METHODS else "write"
    )
    token = principal.token
    if access == "write" and not token.can_write:
        raise exceptions.PermissionDenied(
            f"Token {token.prefix} is read-only; issue a token with write access to do this."
        )
    if access == "read" and not token.can_read:
        raise exceptions.PermissionDenied(
            f"Token {token.prefix} is write-only; issue a token with read access to do this."
        )
    domain = kwargs.get("domain")
    # An unknown domain is left to the view (404); the set is built only for a refusal.
    if domain and domain not in principal.domains and domain in {d.code for d in all_domains()}:
        raise exceptions.PermissionDenied(
            f"Token {token.prefix} is not scoped to domain {domain!r} "
            f"(it may use: {', '.join(sorted(principal.domains)) or 'none'})."
        )


class SourceTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("bearer", "token")

    def authenticate(self, request: Request) -> tuple[SourcePrincipal, SourceToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() not in self.keywords:
            return None
        auth_failures_check(request)
        if len(header) != 2:
            auth_failure_limit(request)
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Bearer <token>'."
            )
        secret = header[1].decode(errors="replace")
        token = tokens.cached(
            "source", hash_secret(secret), lambda: source_token_authenticate(secret)
        )
        if token is None or not token.is_active:  # a cached token may have expired since
            auth_failure_limit(request)
            raise exceptions.AuthenticationFailed("Invalid, expired, revoked or unknown token.")
        _touch(token)
        principal = SourcePrincipal(token)
        check_token_scope(request, principal)
        _audit_token_use("source_token", token, principal)
        return principal, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class UserTokenAuthentication(authentication.BaseAuthentication):
    """A hub user's API token (``Authorization: Bearer auru_...``): acts as that user, with
    the user's role.  Any other token is left to the source-system authentication."""

    keywords = ("bearer", "token")

    def authenticate(self, request: Request) -> tuple[Any, UserToken] | None:
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].decode(errors="replace").lower() not in self.keywords:
            return None
        secret = header[1].decode(errors="replace")
        if not secret.startswith(USER_TOKEN_PREFIX):
            return None
        auth_failures_check(request)
        token = tokens.cached("user", hash_secret(secret), lambda: user_token_authenticate(secret))
        if token is None or not token.is_active:  # a cached token may have expired since
            auth_failure_limit(request)
            raise exceptions.AuthenticationFailed("Invalid, expired, revoked or unknown token.")
        _touch(token)
        _audit_token_use("user_token", token, token.user)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class UserTokenScheme(OpenApiAuthenticationExtension):
    target_class = "mdm.api.authentication.UserTokenAuthentication"
    name = "userToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A hub user's API token (auru_...; `manage.py issue_user_token`): "
            "acts with the user's role (viewer, steward, admin).",
        }


class SourceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "mdm.api.authentication.SourceTokenAuthentication"
    name = "sourceToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A source system's API token."}


def source_system_of(request: Request) -> SourceSystem | None:
    user = request.user
    return user.source_system if isinstance(user, SourcePrincipal) else None
