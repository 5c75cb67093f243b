"""Steward commands on golden records (merge, split, correct, undo) and their history reads.

One view per command; the work is in ``mdm.services.lifecycle``.  Commands need a hub user
with the steward role (session or user token); a source system's token gets 403.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time
from typing import Any

from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mdm.api import golden_serializers as gs
from mdm.api.errors import Conflict
from mdm.api.masking import MaskPiiMixin
from mdm.api.views import IdCursorPagination, _golden_queryset, domain_or_404
from mdm.models import GoldenOperation, GoldenRecord
from mdm.roles import CanReadDomain, IsSteward, IsViewer
from mdm.selectors import golden_record_as_of, golden_record_timeline, golden_records_visible
from mdm.services.lifecycle import (
    GoldenConflictError,
    GoldenNotFoundError,
    GoldenOperationError,
    golden_attribute_correct,
    golden_record_merge,
    golden_record_split,
    golden_record_undo,
)

CONFLICT_RESPONSES = {
    400: gs.ErrorSerializer,
    403: gs.ErrorSerializer,
    404: gs.ErrorSerializer,
    409: gs.ErrorSerializer,
}
_domain = domain_or_404


def _run(command: Callable[[], GoldenOperation]) -> Response:
    try:
        op = command()
    except GoldenNotFoundError as exc:
        raise Http404(str(exc)) from exc
    except GoldenOperationError as exc:
        raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from exc
    except GoldenConflictError as exc:
        raise Conflict(str(exc)) from exc
    touched = _golden_queryset(op.domain).filter(pk__in=op.golden_ids)
    order = {gid: i for i, gid in enumerate(op.golden_ids)}
    goldens = sorted(touched, key=lambda g: order.get(g.pk, 0))
    body = {"operation": op, "golden_records": goldens}
    return Response(gs.GoldenOperationResultSerializer(body).data)


class GoldenMergeView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="golden_merge",
        summary="Merge two or more golden records (steward)",
        request=gs.GoldenMergeInputSerializer,
        responses={200: gs.GoldenOperationResultSerializer, **CONFLICT_RESPONSES},
    )
    def post(self, request: Request, domain: str) -> Response:
        domain = _domain(domain)
        data = gs.GoldenMergeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        return _run(
            lambda: golden_record_merge(
                domain=domain,
                golden_ids=v["golden_ids"],
                actor=request.user,
                reason=v["reason"],
                expected_versions=v["expected_versions"],
                target_id=v["target_id"],
            )
        )


class GoldenSplitView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="golden_split",
        summary="Split source records out of a golden record (steward)",
        request=gs.GoldenSplitInputSerializer,
        responses={200: gs.GoldenOperationResultSerializer, **CONFLICT_RESPONSES},
    )
    def post(self, request: Request, domain: str, pk: int) -> Response:
        domain = _domain(domain)
        data = gs.GoldenSplitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        return _run(
            lambda: golden_record_split(
                domain=domain,
                golden_id=pk,
                record_ids=v["record_ids"],
                actor=request.user,
                reason=v["reason"],
                into_golden_id=v["into_golden_id"],
                expected_version=v["expected_version"],
            )
        )


class GoldenCorrectView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="golden_correct",
        summary="Correct a golden attribute (steward); kept as the hub's steward value",
        request=gs.GoldenCorrectInputSerializer,
        responses={200: gs.GoldenOperationResultSerializer, **CONFLICT_RESPONSES},
    )
    def post(self, request: Request, domain: str, pk: int) -> Response:
        domain = _domain(domain)
        data = gs.GoldenCorrectInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        return _run(
            lambda: golden_attribute_correct(
                domain=domain,
                golden_id=pk,
                attribute=v["attribute"],
                value=v["value"],
                actor=request.user,
                reason=v["reason"],
                expected_version=v["expected_version"],
            )
        )


class GoldenUndoView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="golden_undo",
        summary="Undo a merge, split, correction or undo (steward)",
        request=gs.GoldenUndoInputSerializer,
        responses={200: gs.GoldenOperationResultSerializer, **CONFLICT_RESPONSES},
    )
    def post(self, request: Request, domain: str, pk: int) -> Response:
        domain = _domain(domain)
        if not GoldenOperation.objects.filter(pk=pk, domain=domain).exists():
            raise Http404(f"No {domain} golden operation {pk}.")
        data = gs.GoldenUndoInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _run(
            lambda: golden_record_undo(
                operation_id=pk, actor=request.user, reason=data.validated_data["reason"]
            )
        )


class GoldenOperationListView(MaskPiiMixin, generics.ListAPIView):
    """Steward operations of a domain, newest first; ``?golden=ID`` for one golden record's."""

    serializer_class = gs.GoldenOperationSerializer
    permission_classes = [IsViewer]
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="golden_operations",
        summary="List steward operations (merge, split, correct, undo)",
        parameters=[OpenApiParameter("golden", int, description="Only those touching it.")],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        domain = _domain(self.kwargs["domain"])
        qs = GoldenOperation.objects.filter(domain=domain).select_related("actor", "undone_by")
        golden = self.request.query_params.get("golden")
        if golden:
            if not golden.isdigit():
                raise exceptions.ValidationError({"golden": ["Must be a golden record id."]})
            wanted = int(golden)
            scan = GoldenOperation.objects.filter(domain=domain).values_list("pk", "golden_ids")
            ids = [pk for pk, touched in scan if wanted in touched]
            qs = qs.filter(pk__in=ids)
        return qs


class GoldenOperationDetailView(MaskPiiMixin, generics.RetrieveAPIView):
    serializer_class = gs.GoldenOperationSerializer
    permission_classes = [IsViewer]

    def get_queryset(self) -> Any:
        return GoldenOperation.objects.filter(domain=_domain(self.kwargs["domain"]))


def parse_as_of(value: str) -> datetime:
    """An ISO 8601 time (a date means the end of that day), in the server's zone if naive."""
    when = parse_datetime(value)
    if when is None:
        day = parse_date(value)
        if day is None:
            raise exceptions.ValidationError(
                {"as_of": ["Give an ISO 8601 time, e.g. 2026-01-31T12:00:00Z, or a date."]}
            )
        when = datetime.combine(day, time.max)
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    return when


def golden_as_of_response(domain: str, pk: int, as_of: str) -> Response:
    when = parse_as_of(as_of)
    if not golden_records_visible(domain=domain).filter(pk=pk).exists():
        raise Http404(f"No {domain} golden record {pk}.")
    snapshot = golden_record_as_of(golden_id=pk, when=when)
    if snapshot is None:
        raise Http404(f"{domain} golden record {pk} did not exist yet at {when.isoformat()}.")
    return Response(gs.GoldenRecordAsOfSerializer(snapshot).data)


class GoldenTimelineView(MaskPiiMixin, APIView):
    permission_classes = [CanReadDomain]

    @extend_schema(
        operation_id="golden_timeline",
        summary="Every version of a golden record: what changed, why and who (newest first)",
        responses=gs.TimelineEntrySerializer(many=True),
    )
    def get(self, request: Request, domain: str, pk: int) -> Response:
        domain = _domain(domain)
        if not GoldenRecord.objects.filter(pk=pk, domain=domain).exists():
            raise Http404(f"No {domain} golden record {pk}.")
        entries = golden_record_timeline(golden_id=pk)
        return Response(gs.TimelineEntrySerializer(entries, many=True).data)
