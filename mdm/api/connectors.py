"""Connectors API for admins: list and read connectors and their runs, run now, pause,
resume.  The secret is write-only: no answer carries it, only whether one is stored.

One view per command, thin: the work is in ``mdm.services.connectors``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mdm.api.errors import Conflict
from mdm.models import Connector, ConnectorRun
from mdm.roles import IsAdmin
from mdm.services.connectors import (
    ConnectorError,
    connector_pause,
    connector_resume,
    connector_run_request,
)


class ConnectorRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConnectorRun
        fields = [
            "id",
            "status",
            "trigger",
            "started_at",
            "finished_at",
            "duration_seconds",
            "read_count",
            "created_count",
            "updated_count",
            "unchanged_count",
            "quarantined_count",
            "deleted_count",
            "stale_count",
            "files_count",
            "full_compare",
            "watermark_before",
            "watermark_after",
            "error",
            "ingest_run",
        ]


class ConnectorSerializer(serializers.ModelSerializer):
    source_system = serializers.CharField(source="source_system.code")
    mapping_name = serializers.CharField(source="mapping.name", allow_null=True, default=None)
    has_secret = serializers.BooleanField()
    running_run = serializers.IntegerField(source="current_run_id", allow_null=True)
    last_run = serializers.SerializerMethodField()

    class Meta:
        model = Connector
        fields = [
            "name",
            "kind",
            "source_system",
            "domain",
            "mapping_name",
            "config",
            "has_secret",
            "interval_seconds",
            "cron",
            "batch_size",
            "is_paused",
            "next_run_at",
            "watermark",
            "last_full_compare_at",
            "running_run",
            "last_run",
        ]

    def get_last_run(self, obj: Connector) -> dict[str, Any] | None:
        run = obj.runs.first()
        return ConnectorRunSerializer(run).data if run else None


def _connector(name: str) -> Connector:
    connector = Connector.objects.select_related("source_system", "mapping").filter(name=name)
    found = connector.first()
    if found is None:
        raise exceptions.NotFound(f"No connector {name!r}.")
    return found


class ConnectorListView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(operation_id="connectors_list", responses=ConnectorSerializer(many=True))
    def get(self, request: Request) -> Response:
        connectors = Connector.objects.select_related("source_system", "mapping")
        return Response(ConnectorSerializer(connectors, many=True).data)


class ConnectorDetailView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(operation_id="connector_read", responses=ConnectorSerializer)
    def get(self, request: Request, name: str) -> Response:
        return Response(ConnectorSerializer(_connector(name)).data)


class ConnectorRunListView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="connector_runs_list",
        summary="The connector's runs, newest first (at most 100; ?status= filters)",
        responses=ConnectorRunSerializer(many=True),
    )
    def get(self, request: Request, name: str) -> Response:
        runs = _connector(name).runs.all()
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in ConnectorRun.Status.values:
                raise exceptions.ValidationError(
                    {"status": f"one of {', '.join(ConnectorRun.Status.values)}"}
                )
            runs = runs.filter(status=wanted)
        return Response(ConnectorRunSerializer(runs[:100], many=True).data)


class ConnectorRunNowView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="connector_run_now",
        summary="Queue a run now; 409 while a run of it is still going",
        request=None,
        responses={202: None},
    )
    def post(self, request: Request, name: str) -> Response:
        connector = _connector(name)
        try:
            connector_run_request(connector=connector, user=request.user)
        except ConnectorError as exc:
            raise Conflict(str(exc)) from None
        return Response({"queued": True, "connector": connector.name}, status.HTTP_202_ACCEPTED)


class ConnectorPauseView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(operation_id="connector_pause", request=None, responses=ConnectorSerializer)
    def post(self, request: Request, name: str) -> Response:
        connector = connector_pause(connector=_connector(name), user=request.user)
        return Response(ConnectorSerializer(_connector(connector.name)).data)


class ConnectorResumeView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(operation_id="connector_resume", request=None, responses=ConnectorSerializer)
    def post(self, request: Request, name: str) -> Response:
        connector = connector_resume(connector=_connector(name), user=request.user)
        return Response(ConnectorSerializer(_connector(connector.name)).data)
