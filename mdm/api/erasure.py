"""``POST /api/v1/<domain>/erasures``: the right to erasure (admin role); ``GET`` lists them."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from mdm.api.errors import Conflict
from mdm.api.views import IdCursorPagination, domain_or_404
from mdm.models import ErasureRequest
from mdm.roles import IsAdmin
from mdm.services.erasure import (
    ErasureConflictError,
    ErasureError,
    ErasureNotFoundError,
    erasure_request_file,
)


class ErasureInputSerializer(serializers.Serializer):
    golden_id = serializers.IntegerField(required=False, min_value=1)
    source = serializers.CharField(required=False, max_length=50)  # type: ignore[assignment]
    source_key = serializers.CharField(required=False, max_length=255)
    reference = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        by_key = "source" in attrs or "source_key" in attrs
        if ("golden_id" in attrs) == by_key:
            raise serializers.ValidationError(
                "Give either golden_id, or source and source_key (not both)."
            )
        if by_key and not ("source" in attrs and "source_key" in attrs):
            raise serializers.ValidationError("Give both source and source_key.")
        return attrs


class ErasureRequestSerializer(serializers.ModelSerializer):
    requested_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = ErasureRequest
        fields = ["id", "domain", "golden_id", "reference", "requested_by", "erased_at", "counts"]
        read_only_fields = fields


class ErasureCollectionView(generics.ListAPIView):
    """Erasure requests of a domain (GET), or erase a person (POST)."""

    permission_classes = [IsAdmin]
    serializer_class = ErasureRequestSerializer
    pagination_class = IdCursorPagination

    def get_queryset(self) -> Any:
        return ErasureRequest.objects.filter(domain=domain_or_404(self.kwargs["domain"]))

    @extend_schema(operation_id="erasures_list", summary="Erasures carried out (admin role)")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="erasures_file",
        summary="Erase a person: by golden id, or by source system and source key (admin role)",
        request=ErasureInputSerializer,
        responses={201: ErasureRequestSerializer},
    )
    def post(self, request: Request, domain: str) -> Response:
        domain = domain_or_404(domain)
        data = ErasureInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            erasure = erasure_request_file(domain=domain, actor=request.user, **data.validated_data)
        except ErasureNotFoundError as exc:
            raise Http404(str(exc)) from exc
        except ErasureConflictError as exc:
            raise Conflict(str(exc)) from exc
        except ErasureError as exc:
            raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from exc
        return Response(ErasureRequestSerializer(erasure).data, status=status.HTTP_201_CREATED)
