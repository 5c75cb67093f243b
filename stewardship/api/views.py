"""The stewardship API: the workspace's decisions for teams that build their own tools.
One view per command; the work is in ``stewardship.services``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mdm.api.errors import Conflict
from mdm.api.masking import MaskPiiMixin
from mdm.roles import IsSteward, IsViewer
from stewardship import selectors as sel
from stewardship import services
from stewardship.api import serializers as s
from stewardship.models import ReviewTask


class TaskPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def _raise(exc: services.TaskError) -> None:
    if isinstance(exc, services.TaskPermissionError):
        raise exceptions.PermissionDenied(str(exc)) from exc
    if isinstance(exc, services.TaskStateError):
        raise Conflict(str(exc)) from exc
    raise exceptions.ValidationError({"detail": [str(exc)]}) from exc


class ReviewTaskListView(MaskPiiMixin, generics.ListAPIView):
    """Open review tasks of a queue (`kind`), with the workspace's filters and sorts."""

    permission_classes = [IsViewer]
    serializer_class = s.ReviewTaskSerializer
    pagination_class = TaskPagination

    def get_queryset(self) -> Any:
        kind = self.request.query_params.get("kind", ReviewTask.Kind.POTENTIAL_MATCH)
        if kind not in ReviewTask.Kind.values:
            raise exceptions.ValidationError(
                {"kind": [f"Must be one of {ReviewTask.Kind.values}."]}
            )
        filters = sel.QueueFilters.from_query(self.request.query_params, kind)
        return sel.review_tasks_queue(user=self.request.user, filters=filters).select_related(
            "decided_by"
        )


class ReviewTaskDetailView(MaskPiiMixin, generics.RetrieveAPIView):
    permission_classes = [IsViewer]
    serializer_class = s.ReviewTaskSerializer

    def get_queryset(self) -> Any:
        return sel.review_tasks_visible(user=self.request.user).select_related(
            "assignee", "decided_by"
        )


def _command(request: Request, pk: int, run: Callable[[], ReviewTask]) -> Response:
    if not sel.review_tasks_visible(user=request.user).filter(pk=pk).exists():
        raise exceptions.NotFound("No such review task.")
    try:
        task = run()
    except services.TaskError as exc:
        _raise(exc)
        raise
    task.refresh_from_db()
    return Response(s.ReviewTaskSerializer(task, context={"request": request}).data)


class ReviewTaskDecideView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="review_task_decide",
        summary="Decide a review task: merge, not_a_match, skip (or resolved for data quality)",
        request=s.DecideInputSerializer,
        responses=s.ReviewTaskSerializer,
    )
    def post(self, request: Request, pk: int) -> Response:
        data = s.DecideInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _command(
            request,
            pk,
            lambda: services.review_task_decide(
                task_id=pk,
                decision=data.validated_data["decision"],
                actor=request.user,
                comment=data.validated_data["comment"],
            ),
        )


class ReviewTaskClaimView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(operation_id="review_task_claim", request=None, responses=s.ReviewTaskSerializer)
    def post(self, request: Request, pk: int) -> Response:
        return _command(
            request, pk, lambda: services.review_task_claim(task_id=pk, actor=request.user)
        )


class ReviewTaskReleaseView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="review_task_release", request=None, responses=s.ReviewTaskSerializer
    )
    def post(self, request: Request, pk: int) -> Response:
        return _command(
            request, pk, lambda: services.review_task_release(task_id=pk, actor=request.user)
        )


class ReviewTaskAssignView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="review_task_assign",
        request=s.AssignInputSerializer,
        responses=s.ReviewTaskSerializer,
    )
    def post(self, request: Request, pk: int) -> Response:
        data = s.AssignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _command(
            request,
            pk,
            lambda: services.review_task_assign(
                task_id=pk, assignee_id=data.validated_data["assignee_id"], actor=request.user
            ),
        )


class ReviewTaskBulkDecideView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="review_tasks_decide_bulk",
        summary="Apply one decision to many tasks; refused ones come back with the reason",
        request=s.BulkDecideInputSerializer,
        responses=s.BulkDecideOutputSerializer,
    )
    def post(self, request: Request) -> Response:
        data = s.BulkDecideInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            result = services.review_tasks_decide_bulk(
                task_ids=data.validated_data["task_ids"],
                decision=data.validated_data["decision"],
                actor=request.user,
                comment=data.validated_data["comment"],
            )
        except services.TaskError as exc:
            _raise(exc)
            raise
        return Response(
            {"decided": result.decided, "refused": {str(k): v for k, v in result.refused.items()}}
        )
