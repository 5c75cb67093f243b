"""API authentication of source systems by token (``Authorization: Bearer aur_...``)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from mdm.models import SourceSystem, SourceToken, UserToken
from mdm.services.sources import source_token_authenticate
from mdm.services.user_tokens import USER_TOKEN_PREFIX, user_token_authenticate


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

    def __str__(self) -> str:
        return f"source:{self.source_system.code}"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


class SourceTokenAuthentication(authentication.BaseAuthentication):
    keywords = ("bearer", "token")

    def authenticate(self, request: Request) -> tuple[SourcePrincipal, SourceToken] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Bearer <token>'."
            )
        token = source_token_authenticate(header[1].decode(errors="replace"))
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or unknown token.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            SourceToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return SourcePrincipal(token), token

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
        token = user_token_authenticate(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or unknown token.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            UserToken.objects.filter(pk=token.pk).update(last_used_at=now)
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
