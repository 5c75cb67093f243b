"""Token management for admins: issue, list, rotate and revoke source-system tokens, and list
and revoke hub users' tokens.  Needs a global admin (tokens cross domains)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mdm.api.serializers import StrictInputSerializer
from mdm.api.views import IdCursorPagination
from mdm.models import SourceSystem, SourceToken, TokenAccess, UserToken
from mdm.roles import Role, user_role
from mdm.services.sources import (
    TokenScopeError,
    source_token_issue,
    source_token_revoke,
    source_token_rotate,
)
from mdm.services.user_tokens import user_token_issue, user_token_revoke


class IsGlobalAdmin(BasePermission):
    message = "Token management needs the admin role in every domain (the admin group)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return user_role(request.user) == Role.ADMIN


class SourceTokenSerializer(serializers.ModelSerializer):
    source = serializers.CharField(source="source_system.code", read_only=True)  # type: ignore[assignment]
    rotated_from = serializers.CharField(
        source="rotated_from.prefix", read_only=True, allow_null=True, default=None
    )
    is_active = serializers.BooleanField(read_only=True)
    domains = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = SourceToken
        fields = [
            "prefix",
            "source",
            "name",
            "domains",
            "access",
            "expires_at",
            "created_at",
            "last_used_at",
            "revoked_at",
            "rotated_from",
            "is_active",
        ]
        read_only_fields = fields


class IssuedSourceTokenSerializer(SourceTokenSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(SourceTokenSerializer.Meta):
        fields = [*SourceTokenSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class SourceTokenIssueInputSerializer(StrictInputSerializer):
    source = serializers.SlugField(help_text="The source system's code.")  # type: ignore[assignment]
    name = serializers.CharField(max_length=100, default="default")
    domains = serializers.ListField(
        child=serializers.CharField(max_length=50),
        default=list,
        max_length=50,
        help_text="Domains the token may touch; empty: the system's mapped domains (every "
        "domain for a system without a mapping).",
    )
    access = serializers.ChoiceField(choices=TokenAccess.choices, default=TokenAccess.READ_WRITE)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class SourceTokenRotateInputSerializer(StrictInputSerializer):
    old_valid_hours = serializers.FloatField(
        min_value=0,
        max_value=24 * 90,
        default=24.0,
        help_text="How long the old token keeps working (0: stop it now).",
    )
    old_valid_until = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Or the time until which the old token keeps working (instead of hours).",
    )


class UserTokenSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.get_username", read_only=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = UserToken
        fields = [
            "prefix",
            "username",
            "name",
            "expires_at",
            "created_at",
            "last_used_at",
            "revoked_at",
            "is_active",
        ]
        read_only_fields = fields


class IssuedUserTokenSerializer(UserTokenSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(UserTokenSerializer.Meta):
        fields = [*UserTokenSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class UserTokenIssueInputSerializer(StrictInputSerializer):
    username = serializers.CharField(max_length=150)
    name = serializers.CharField(max_length=100, default="default")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


def _issued(token: Any, secret: str, serializer: type[serializers.Serializer]) -> Response:
    data = dict(serializer(token).data)
    data["secret"] = secret
    return Response(data, status=status.HTTP_201_CREATED)


class SourceTokenListView(generics.ListAPIView):
    """Source-system tokens (never their secrets); ``?source=CODE`` for one system's."""

    permission_classes = [IsGlobalAdmin]
    serializer_class = SourceTokenSerializer
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="source_tokens_list",
        parameters=[OpenApiParameter("source", OpenApiTypes.STR)],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        qs = SourceToken.objects.select_related("source_system", "rotated_from")
        if self.request.query_params.get("source"):
            qs = qs.filter(source_system__code=self.request.query_params["source"])
        return qs

    @extend_schema(
        operation_id="source_tokens_issue",
        summary="Issue a token for a source system with its scopes (the secret is shown once)",
        request=SourceTokenIssueInputSerializer,
        responses={201: IssuedSourceTokenSerializer},
    )
    def post(self, request: Request) -> Response:
        data = SourceTokenIssueInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        system = SourceSystem.objects.filter(code=v["source"]).first()
        if system is None:
            raise exceptions.ValidationError({"source": [f"No source system {v['source']!r}."]})
        try:
            issued = source_token_issue(
                source_system=system,
                name=v["name"],
                domains=v["domains"],
                access=v["access"],
                expires_at=v["expires_at"],
                actor=request.user,
            )
        except TokenScopeError as exc:
            raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from exc
        return _issued(issued.token, issued.secret, SourceTokenSerializer)


def _source_token(prefix: str) -> SourceToken:
    token = SourceToken.objects.select_related("source_system").filter(prefix=prefix).first()
    if token is None:
        raise Http404(f"No source token {prefix}.")
    return token


class SourceTokenRotateView(APIView):
    permission_classes = [IsGlobalAdmin]

    @extend_schema(
        operation_id="source_token_rotate",
        summary="Rotate a token: a successor with the same scopes; the old one keeps working "
        "for old_valid_hours",
        request=SourceTokenRotateInputSerializer,
        responses={201: IssuedSourceTokenSerializer},
    )
    def post(self, request: Request, prefix: str) -> Response:
        data = SourceTokenRotateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token = _source_token(prefix)
        v = data.validated_data
        until = v["old_valid_until"] or timezone.now() + timedelta(hours=v["old_valid_hours"])
        try:
            issued = source_token_rotate(token=token, old_valid_until=until, actor=request.user)
        except TokenScopeError as exc:
            raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from exc
        return _issued(issued.token, issued.secret, SourceTokenSerializer)


class SourceTokenRevokeView(APIView):
    permission_classes = [IsGlobalAdmin]

    @extend_schema(
        operation_id="source_token_revoke",
        summary="Revoke a token at once (safe to repeat)",
        request=None,
        responses=SourceTokenSerializer,
    )
    def post(self, request: Request, prefix: str) -> Response:
        token = source_token_revoke(token=_source_token(prefix), actor=request.user)
        return Response(SourceTokenSerializer(token).data)


class UserTokenListView(generics.ListAPIView):
    """Hub users' tokens (never their secrets); ``?username=`` for one user's."""

    permission_classes = [IsGlobalAdmin]
    serializer_class = UserTokenSerializer
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="user_tokens_list",
        parameters=[OpenApiParameter("username", OpenApiTypes.STR)],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        qs = UserToken.objects.select_related("user")
        if self.request.query_params.get("username"):
            qs = qs.filter(user__username=self.request.query_params["username"])
        return qs

    @extend_schema(
        operation_id="user_tokens_issue",
        summary="Issue an API token for a hub user (the secret is shown once)",
        request=UserTokenIssueInputSerializer,
        responses={201: IssuedUserTokenSerializer},
    )
    def post(self, request: Request) -> Response:
        data = UserTokenIssueInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        user = get_user_model().objects.filter(username=v["username"], is_active=True).first()
        if user is None:
            raise exceptions.ValidationError({"username": [f"No active user {v['username']!r}."]})
        expires_at = v["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise exceptions.ValidationError({"expires_at": ["Must be in the future."]})
        issued = user_token_issue(
            user=user, name=v["name"], expires_at=expires_at, actor=request.user
        )
        return _issued(issued.token, issued.secret, UserTokenSerializer)


class UserTokenRevokeView(APIView):
    permission_classes = [IsGlobalAdmin]

    @extend_schema(
        operation_id="user_token_revoke",
        summary="Revoke a hub user's token at once (safe to repeat)",
        request=None,
        responses=UserTokenSerializer,
    )
    def post(self, request: Request, prefix: str) -> Response:
        token = UserToken.objects.select_related("user").filter(prefix=prefix).first()
        if token is None:
            raise Http404(f"No user token {prefix}.")
        return Response(
            UserTokenSerializer(user_token_revoke(token=token, actor=request.user)).data
        )
