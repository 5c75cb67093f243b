"""``GET /api/v1/audit``: the audit trail, for admins."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination

from mdm.audit.models import AuditEntry
from mdm.audit.selectors import audit_entries
from mdm.roles import IsAdmin


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = [
            "seq",
            "occurred_at",
            "actor",
            "actor_kind",
            "action",
            "target_type",
            "target_id",
            "domain",
            "detail",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class _BySeq(CursorPagination):
    ordering = "-seq"
    page_size = 100


class AuditEntryListView(ListAPIView):
    permission_classes = [IsAdmin]
    serializer_class = AuditEntrySerializer
    pagination_class = _BySeq

    @extend_schema(
        operation_id="audit_list",
        summary="The audit trail, newest first (admin role)",
        parameters=[
            OpenApiParameter(
                "action", OpenApiTypes.STR, description="e.g. golden.merge, or golden. for all"
            ),
            OpenApiParameter("target_type", OpenApiTypes.STR),
            OpenApiParameter("target_id", OpenApiTypes.STR),
            OpenApiParameter("domain", OpenApiTypes.STR),
            OpenApiParameter("actor", OpenApiTypes.STR),
        ],
    )
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        p = self.request.query_params
        return audit_entries(
            action=p.get("action"),
            target_type=p.get("target_type"),
            target_id=p.get("target_id"),
            domain=p.get("domain"),
            actor=p.get("actor"),
        )
