"""The mdm API: one view per command, thin; the work is in mdm.services."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import ISO_8601, exceptions, generics, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from mdm.api import serializers as s
from mdm.api.authentication import SourcePrincipal, source_system_of
from mdm.api.errors import Conflict, PayloadTooLarge
from mdm.api.golden_serializers import GoldenRecordAsOfSerializer
from mdm.api.masking import MaskPiiMixin
from mdm.domains import UnknownDomainError, all_domains, get_domain
from mdm.models import (
    Channel,
    CrossReference,
    GoldenRecord,
    IdempotencyKey,
    SourceRecord,
    SourceSystem,
)
from mdm.ratelimit import ingest_limit
from mdm.readers import SourceRow
from mdm.roles import CanReadDomain, IsSteward, IsViewerOrSource, Role, principal_domains
from mdm.selectors import (
    MappingNotFoundError,
    golden_record_for_source_key,
    golden_record_read,
    golden_records_visible,
    ingest_runs_visible,
    mapping_for,
    quarantine_visible,
    source_records_visible,
)
from mdm.services.ingest import (
    CREATED,
    REJECTED,
    Counts,
    ingest_run_finish,
    ingest_run_start,
    source_record_tombstone,
    source_records_ingest_rows,
)
from mdm.services.quarantine import (
    QuarantineStateError,
    quarantined_payload_discard,
    quarantined_payload_replay,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"


def domain_or_404(code: str) -> str:
    try:
        return get_domain(code).code
    except UnknownDomainError as exc:
        raise Http404(str(exc)) from exc


class IsSourceSystem(IsAuthenticated):
    message = "Only a source system's token can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, SourcePrincipal)


class CanResolveQuarantine(IsSteward):
    message = "You need the permission to resolve quarantined payloads (a steward or admin)."


def _check_size(request: Request) -> None:
    length = request.META.get("CONTENT_LENGTH") or "0"
    try:
        size = int(length)
    except ValueError:
        size = 0
    limit = settings.AURUM_MAX_REQUEST_BYTES
    if size > limit:
        raise PayloadTooLarge(
            f"The request body has {size} bytes; the limit is {limit}. "
            "Send the records in smaller batches."
        )


class IdCursorPagination(CursorPagination):
    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 1000


class RecordCollectionView(MaskPiiMixin, generics.ListAPIView):
    """List source records (GET) or push one or a batch of the caller's records (POST)."""

    serializer_class = s.SourceRecordSerializer
    pagination_class = IdCursorPagination

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsSourceSystem()]
        return [CanReadDomain()]

    @extend_schema(
        operation_id="records_list",
        summary="List source records (a source system sees only its own)",
        parameters=[
            OpenApiParameter("source", OpenApiTypes.STR),
            OpenApiParameter("deleted", OpenApiTypes.BOOL),
        ],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        domain = domain_or_404(self.kwargs["domain"])
        qs = source_records_visible(source_system=source_system_of(self.request), domain=domain)
        params = self.request.query_params
        if params.get("source"):
            qs = qs.filter(source_system__code=params["source"])
        if params.get("deleted") in ("true", "false"):
            qs = qs.filter(is_deleted=params["deleted"] == "true")
        return qs

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method == "POST":
            _check_size(request)
            assert isinstance(request.user, SourcePrincipal)
            ingest_limit(request.user.source_system.code)

    @extend_schema(
        operation_id="records_push",
        summary="Push source records (one or a batch)",
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Makes the push safe to retry: a replay returns the stored response; "
                "the same key with another body is refused with 409.",
            ),
            OpenApiParameter("mapping", OpenApiTypes.STR, description="Mapping name to use."),
        ],
        request=s.RecordBatchInputSerializer,
        responses={
            200: s.IngestResponseSerializer,
            201: s.IngestResponseSerializer,
            422: s.IngestResponseSerializer,
        },
    )
    def post(self, request: Request, domain: str) -> Response:
        domain = domain_or_404(domain)
        principal = request.user
        assert isinstance(principal, SourcePrincipal)
        source_system = principal.source_system
        body = request.data
        single = isinstance(body, dict) and "records" not in body
        if single:
            records = [body]
        elif isinstance(body, dict):
            extra = sorted(str(k) for k in body if k != "records")
            if extra:
                raise exceptions.ValidationError(
                    {
                        name: ['A batch body has only "records"; the hub sets the rest.']
                        for name in extra
                    }
                )
            records = body.get("records")
            if not isinstance(records, list) or not records:
                raise exceptions.ValidationError(
                    {"records": ["Send a non-empty list of record objects."]}
                )
        else:
            raise exceptions.ValidationError(
                'The body must be a JSON object: one record, or {"records": [...]}.'
            )
        limit = settings.AURUM_MAX_BATCH_RECORDS
        if len(records) > limit:
            raise PayloadTooLarge(
                f"The batch has {len(records)} records; the limit is {limit} per request."
            )
        bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
        if bad:
            raise exceptions.ValidationError(
                {"records": [f"Item {i} is not a JSON object." for i in bad[:10]]}
            )
        try:
            mapping_obj, mapping = mapping_for(
                source_system=source_system, domain=domain, name=request.query_params.get("mapping")
            )
        except MappingNotFoundError as exc:
            raise exceptions.ValidationError({"mapping": [str(exc)]}) from exc

        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is not None and not (0 < len(key) <= 255):
            raise exceptions.ValidationError({IDEMPOTENCY_HEADER: ["Must be 1 to 255 characters."]})
        try:
            # Without a key only the check is needed (sorting the keys and hashing cost about
            # a millisecond per 1,000 records).
            canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS if key else None)
        except TypeError as exc:  # an integer beyond 64 bits, a lone surrogate in a string
            raise exceptions.ValidationError(
                {"records": [f"The body cannot be stored as JSON: {exc}."]}
            ) from exc
        request_hash = ""
        if key:
            request_hash = hashlib.sha256(
                request.get_full_path().encode() + b"\n" + canonical
            ).hexdigest()
            replay = _idempotent_replay(source_system, key, request_hash)
            if replay is not None:
                return replay
        try:
            with transaction.atomic():
                if key:
                    replay = _idempotent_replay(source_system, key, request_hash, lock=True)
                    if replay is not None:
                        return replay
                started = time.perf_counter()
                run = ingest_run_start(
                    source_system=source_system,
                    domain=domain,
                    channel=Channel.API,
                    mapping=mapping_obj,
                )
                rows = [SourceRow(i, r) for i, r in enumerate(records)]
                results = source_records_ingest_rows(run=run, mapping=mapping, rows=rows)
                counts = Counts()
                counts.add(results, "index")
                ingest_run_finish(run=run, counts=counts, started=started)
                payload = {
                    "run_id": run.pk,
                    "counts": counts.as_dict(),
                    "results": [r.as_dict() for r in results],
                }
                code = status.HTTP_200_OK
                if single:
                    only = results[0].status
                    code = {
                        CREATED: status.HTTP_201_CREATED,
                        REJECTED: status.HTTP_422_UNPROCESSABLE_ENTITY,
                    }.get(only, status.HTTP_200_OK)
                if key:
                    IdempotencyKey.objects.create(
                        source_system=source_system,
                        key=key,
                        request_hash=request_hash,
                        status_code=code,
                        response=payload,
                    )
        except IntegrityError:
            # Another request with the same Idempotency-Key committed first.
            if key:
                replay = _idempotent_replay(source_system, key, request_hash)
                if replay is not None:
                    return replay
            raise
        return Response(payload, status=code)


def _idempotent_replay(
    source_system: SourceSystem, key: str, request_hash: str, lock: bool = False
) -> Response | None:
    qs = IdempotencyKey.objects.filter(source_system=source_system, key=key)
    if lock:
        qs = qs.select_for_update()
    stored = qs.first()
    if stored is None:
        return None
    if stored.request_hash != request_hash:
        raise Conflict(
            f"{IDEMPOTENCY_HEADER} {key!r} was already used with a different request body; "
            "use a new key for a new request."
        )
    response = Response(stored.response, status=stored.status_code)
    response["Idempotent-Replayed"] = "true"
    return response


def _record_for(request: Request, domain: str, source_key: str) -> SourceRecord:
    source_system = source_system_of(request)
    qs = source_records_visible(source_system=source_system, domain=domain)
    if source_system is None:
        code = request.query_params.get("source")
        if not code:
            raise exceptions.ValidationError(
                {"source": ["Give ?source=<source system code> to read a record by its key."]}
            )
        qs = qs.filter(source_system__code=code)
    record = qs.filter(source_key=source_key).first()
    if record is None:
        raise Http404(f"No {domain} record with source key {source_key!r}.")
    return record


class RecordDetailView(MaskPiiMixin, APIView):
    """Read or delete (tombstone) one record by its source key."""

    permission_classes = [CanReadDomain]

    def get_permissions(self) -> list[Any]:
        if self.request.method == "DELETE":
            return [IsSourceSystem()]
        return [CanReadDomain()]

    @extend_schema(
        operation_id="records_read",
        summary="Read a source record by its key",
        parameters=[
            OpenApiParameter(
                "source", OpenApiTypes.STR, description="Source system code (staff users only)."
            )
        ],
        responses=s.SourceRecordSerializer,
    )
    def get(self, request: Request, domain: str, source_key: str) -> Response:
        domain = domain_or_404(domain)
        return Response(s.SourceRecordSerializer(_record_for(request, domain, source_key)).data)

    @extend_schema(
        operation_id="records_delete",
        summary="Delete (tombstone) a record of the caller's source system",
        responses=s.SourceRecordSerializer,
    )
    def delete(self, request: Request, domain: str, source_key: str) -> Response:
        domain = domain_or_404(domain)
        if not isinstance(request.user, SourcePrincipal):
            raise exceptions.PermissionDenied("Only the record's source system can delete it.")
        record = source_record_tombstone(
            source_system=request.user.source_system, domain=domain, source_key=source_key
        )
        if record is None:
            raise Http404(f"No {domain} record with source key {source_key!r}.")
        return Response(s.SourceRecordSerializer(record).data)


class RecordHistoryView(MaskPiiMixin, APIView):
    permission_classes = [CanReadDomain]

    @extend_schema(
        operation_id="records_history",
        summary="Every version of a source record, newest first",
        parameters=[OpenApiParameter("source", OpenApiTypes.STR)],
        responses=s.SourceRecordHistorySerializer(many=True),
    )
    def get(self, request: Request, domain: str, source_key: str) -> Response:
        domain = domain_or_404(domain)
        record = _record_for(request, domain, source_key)
        versions = record.history.select_related("history_user").order_by(
            "-history_date", "-history_id"
        )
        return Response(s.SourceRecordHistorySerializer(versions, many=True).data)


class IngestRunListView(generics.ListAPIView):
    serializer_class = s.IngestRunSerializer
    pagination_class = IdCursorPagination
    permission_classes = [IsViewerOrSource]

    def get_queryset(self) -> Any:
        qs = ingest_runs_visible(
            source_system=source_system_of(self.request),
            domains=principal_domains(self.request.user),
        )
        if self.request.query_params.get("domain"):
            qs = qs.filter(domain=self.request.query_params["domain"])
        return qs


class IngestRunDetailView(generics.RetrieveAPIView):
    serializer_class = s.IngestRunSerializer
    permission_classes = [IsViewerOrSource]

    def get_queryset(self) -> Any:
        return ingest_runs_visible(
            source_system=source_system_of(self.request),
            domains=principal_domains(self.request.user),
        )


class QuarantineListView(MaskPiiMixin, generics.ListAPIView):
    serializer_class = s.QuarantinedPayloadSerializer
    pagination_class = IdCursorPagination
    permission_classes = [IsViewerOrSource]

    def get_queryset(self) -> Any:
        qs = quarantine_visible(
            source_system=source_system_of(self.request),
            domains=principal_domains(self.request.user),
        )
        params = self.request.query_params
        for name in ("status", "domain"):
            if params.get(name):
                qs = qs.filter(**{name: params[name]})
        if params.get("run"):
            if not params["run"].isdigit():
                raise exceptions.ValidationError({"run": ["Must be an ingest run id."]})
            qs = qs.filter(ingest_run_id=int(params["run"]))
        return qs


class QuarantineDetailView(MaskPiiMixin, generics.RetrieveAPIView):
    serializer_class = s.QuarantinedPayloadSerializer
    permission_classes = [IsViewerOrSource]

    def get_queryset(self) -> Any:
        return quarantine_visible(
            source_system=source_system_of(self.request),
            domains=principal_domains(self.request.user),
        )


def _quarantine_steward_or_404(request: Request, pk: int) -> None:
    """A payload outside the caller's steward domains answers 404, like a missing one."""
    visible = quarantine_visible(
        source_system=None, domains=principal_domains(request.user, Role.STEWARD)
    )
    if not visible.filter(pk=pk).exists():
        raise Http404("No such quarantined payload.")


class QuarantineReplayView(APIView):
    permission_classes = [CanResolveQuarantine]

    @extend_schema(
        operation_id="quarantine_replay",
        summary="Replay a quarantined payload, optionally corrected",
        request=s.QuarantineReplayInputSerializer,
        responses={200: s.QuarantinedPayloadSerializer, 422: s.QuarantinedPayloadSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        data = s.QuarantineReplayInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        _quarantine_steward_or_404(request, pk)
        try:
            payload, result = quarantined_payload_replay(
                payload_id=pk, data=data.validated_data.get("payload"), user=request.user
            )
        except QuarantineStateError as exc:
            raise Conflict(str(exc)) from exc
        body = s.QuarantinedPayloadSerializer(payload).data
        body["result"] = result.as_dict()
        code = status.HTTP_422_UNPROCESSABLE_ENTITY if result.status == REJECTED else 200
        return Response(body, status=code)


class QuarantineDiscardView(APIView):
    permission_classes = [CanResolveQuarantine]

    @extend_schema(
        operation_id="quarantine_discard",
        summary="Discard a quarantined payload with a reason",
        request=s.QuarantineDiscardInputSerializer,
        responses=s.QuarantinedPayloadSerializer,
    )
    def post(self, request: Request, pk: int) -> Response:
        data = s.QuarantineDiscardInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        _quarantine_steward_or_404(request, pk)
        try:
            payload = quarantined_payload_discard(
                payload_id=pk, reason=data.validated_data["reason"], user=request.user
            )
        except QuarantineStateError as exc:
            raise Conflict(str(exc)) from exc
        return Response(s.QuarantinedPayloadSerializer(payload).data)


class DomainListView(APIView):
    @extend_schema(operation_id="domains_list", responses=s.DomainSerializer(many=True))
    def get(self, request: Request) -> Response:
        data = [
            {
                "code": d.code,
                "label": d.label,
                "attributes": [
                    {
                        "name": a.name,
                        "type": a.type,
                        "label": a.label,
                        "pii": a.pii,
                        "required": a.required,
                        "group": a.group,
                        "choices": list(a.choices),
                    }
                    for a in d.attributes
                ],
                "relationships": [
                    {
                        "code": r.code,
                        "label": r.label,
                        "inverse_label": r.inverse_label,
                        "target": r.target,
                        "cardinality": r.cardinality,
                        "hierarchy": r.hierarchy,
                        "rule": r.rule,
                    }
                    for r in d.relationships
                ],
            }
            for d in all_domains()
        ]
        return Response(s.DomainSerializer(data, many=True).data)


def _golden_queryset(domain: str) -> Any:
    return golden_records_visible(domain=domain).prefetch_related(
        Prefetch(
            "members",
            queryset=CrossReference.objects.select_related("record__source_system"),
        )
    )


class GoldenRecordListView(MaskPiiMixin, generics.ListAPIView):
    """Golden records of a domain; ``?source=&source_key=`` looks one up by a source key."""

    permission_classes = [CanReadDomain]

    serializer_class = s.GoldenRecordSerializer
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="golden_list",
        summary="List golden records, or find the one of a source key",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, description="active (default) or retired"),
            OpenApiParameter("source", OpenApiTypes.STR, description="with source_key: lookup"),
            OpenApiParameter("source_key", OpenApiTypes.STR),
        ],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        domain = domain_or_404(self.kwargs["domain"])
        params = self.request.query_params
        qs = _golden_queryset(domain)
        if params.get("source_key") or params.get("source"):
            if not (params.get("source_key") and params.get("source")):
                raise exceptions.ValidationError(
                    {"source_key": ["Give both source and source_key to look up a record."]}
                )
            golden = golden_record_for_source_key(
                domain=domain, source_code=params["source"], source_key=params["source_key"]
            )
            return qs.filter(pk=golden.pk if golden else None)
        status_filter = params.get("status", GoldenRecord.Status.ACTIVE)
        if status_filter not in GoldenRecord.Status.values:
            raise exceptions.ValidationError({"status": ["Must be active or retired."]})
        return qs.filter(status=status_filter)


_drf_datetime = serializers.DateTimeField().to_representation


def _datetime(value: Any) -> Any:
    """``DateTimeField().to_representation(value)`` for the default settings (ISO 8601 in
    the current time zone, UTC written as Z) without the field's per-call settings look-ups;
    any other output format goes to the field itself (tests/mdm/test_api_golden_read.py)."""
    if (
        not value
        or value.tzinfo is None
        or not settings.USE_TZ
        or api_settings.DATETIME_FORMAT != ISO_8601
    ):
        return _drf_datetime(value)
    try:
        text = value.astimezone(timezone.get_current_timezone()).isoformat()
    except OverflowError:
        return _drf_datetime(value)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def golden_read_document(golden: dict[str, Any]) -> dict[str, Any]:
    """The hot read's answer: GoldenRecordSerializer's output (the schema of
    ``GoldenRecordDetailView``), built directly from ``golden_record_read``'s dict (changed
    in place); DRF's field machinery cost more than the query
    (tests/mdm/test_api_golden_read.py).  Shared by the view and ``mdm.api.fast_read``."""
    golden["created_at"] = _datetime(golden["created_at"])
    golden["updated_at"] = _datetime(golden["updated_at"])
    for member in golden["members"]:
        member["linked_at"] = _datetime(member["linked_at"])
    return golden


class GoldenRecordDetailView(MaskPiiMixin, APIView):
    permission_classes = [CanReadDomain]

    @extend_schema(
        operation_id="golden_read",
        summary="Read a golden record (a retired id answers with its survivor), now or as of "
        "a past time",
        parameters=[
            OpenApiParameter(
                "as_of",
                OpenApiTypes.DATETIME,
                description="ISO 8601 time (or a date: its end): the record as it was then, "
                "with its members then; no survivor redirect.",
            )
        ],
        responses=PolymorphicProxySerializer(
            component_name="GoldenRecordOrAsOf",
            serializers=[s.GoldenRecordSerializer, GoldenRecordAsOfSerializer],
            resource_type_field_name=None,
        ),
    )
    def get(self, request: Request, domain: str, pk: int) -> Response:
        domain = domain_or_404(domain)
        if request.query_params.get("as_of"):
            from mdm.api.golden_views import golden_as_of_response

            return golden_as_of_response(domain, pk, request.query_params["as_of"])
        golden = golden_record_read(domain=domain, pk=pk)
        if golden is None:
            raise Http404(f"No {domain} golden record {pk}.")
        return Response(golden_read_document(golden))
