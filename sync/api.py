"""The change feed, its acknowledgement and the snapshot export (``/api/v1/events``, ...)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mdm.api.authentication import source_system_of
from mdm.api.masking import MaskPiiMixin
from mdm.domains import UnknownDomainError, get_domain
from mdm.masking import mask_document, sees_pii
from mdm.roles import CanReadDomain, IsViewerOrSource, principal_domains
from sync.models import Subscriber
from sync.selectors import (
    change_feed,
    event_payloads,
    high_water_seq,
    purged_seq,
)
from sync.services import change_events_sequence, consumer_ack
from sync.snapshot import snapshot_stream

MAX_LIMIT = 1000


class Gone(exceptions.APIException):
    status_code = 410
    default_detail = "These events were purged; take a snapshot."
    default_code = "purged"


class CanReadFeed(IsViewerOrSource):
    message = "The change feed needs a source system's token or a hub user with a role."


def _domain(code: str | None) -> str | None:
    if not code:
        return None
    try:
        return get_domain(code).code
    except UnknownDomainError as exc:
        raise exceptions.ValidationError({"domain": [str(exc)]}) from exc


def _int(params: Any, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise exceptions.ValidationError({name: [f"{raw!r} is not an integer."]}) from exc
    if not low <= value <= high:
        raise exceptions.ValidationError({name: [f"Must be between {low} and {high}."]})
    return value


class EventFeedView(MaskPiiMixin, APIView):
    permission_classes = [CanReadFeed]

    @extend_schema(
        operation_id="events_list",
        summary="Golden changes after a sequence number, in order",
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="Last seq you processed."),
            OpenApiParameter("domain", OpenApiTypes.STR),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"1..{MAX_LIMIT}, def. 100"),
        ],
        responses={
            200: inline_serializer(
                "EventPage",
                {
                    "events": serializers.ListField(child=serializers.DictField()),
                    "next_after": serializers.IntegerField(),
                    "high_water": serializers.IntegerField(),
                },
            ),
            410: OpenApiTypes.OBJECT,
        },
        description="410 when `after` is below the retained horizon (events purged by "
        "retention): take a snapshot and follow the feed from its sequence number.",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        after = _int(params, "after", 0, 0, 2**62)
        limit = _int(params, "limit", 100, 1, MAX_LIMIT)
        domain = _domain(params.get("domain"))
        allowed = principal_domains(request.user)
        if domain is not None and allowed is not None and domain not in allowed:
            raise exceptions.PermissionDenied(f"You may not read the {domain} domain's events.")
        purged = purged_seq()
        if after < purged:
            raise Gone(
                f"Events up to seq {purged} were purged by retention, so the feed cannot "
                f"continue after {after}. Take a snapshot (GET /api/v1/<domain>/snapshot) and "
                "follow the feed with after= its Aurum-Snapshot-Seq."
            )
        change_events_sequence()
        # The mark is read first and bounds the page: an event sequenced meanwhile is above
        # it, so moving next_after up to the mark never steps over an unread event.
        high = high_water_seq()
        events = change_feed(
            after=after,
            domain=domain,
            domains=None if domain else allowed,
            limit=limit,
            upto=high,
        )
        payloads = event_payloads(events)
        next_after = events[-1].seq or after if len(events) == limit else max(after, high)
        return Response(
            {
                "events": [payloads[e.pk] for e in events],
                "next_after": next_after,
                "high_water": high,
            }
        )


class EventAckView(APIView):
    permission_classes = [CanReadFeed]
    required_access = "read"  # a pull consumer's bookmark: a read-only token may move it

    @extend_schema(
        operation_id="events_ack",
        summary="Acknowledge a pull consumer's position in the feed",
        request=inline_serializer(
            "EventAck", {"consumer": serializers.CharField(), "seq": serializers.IntegerField()}
        ),
        responses=inline_serializer(
            "EventAckResult",
            {"consumer": serializers.CharField(), "acked_seq": serializers.IntegerField()},
        ),
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        extra = sorted(str(k) for k in data if k not in ("consumer", "seq"))
        if extra:
            raise exceptions.ValidationError(
                {name: ["Unknown field: send only consumer and seq."] for name in extra}
            )
        code = data.get("consumer")
        sub = Subscriber.objects.filter(code=code, kind=Subscriber.Kind.PULL).first()
        if sub is None:
            raise exceptions.ValidationError({"consumer": [f"No pull consumer {code!r}."]})
        system = source_system_of(request)
        if system is not None and sub.source_system_id != system.pk:
            raise exceptions.PermissionDenied(f"{code} is not a consumer of {system.code}.")
        seq = _int(data, "seq", -1, 0, 2**62)
        try:
            acked = consumer_ack(subscriber=sub, seq=seq)
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from exc
        return Response({"consumer": sub.code, "acked_seq": acked})


class SnapshotView(APIView):
    permission_classes = [CanReadDomain]

    @extend_schema(
        operation_id="golden_snapshot",
        summary="Every active golden record of a domain, with the seq it is consistent with",
        description="JSON Lines (default) or Parquet.  The `Aurum-Snapshot-Seq` header (and "
        "the Parquet schema metadata `aurum.seq`) gives the sequence number: follow the feed "
        "with `after=` it.  Events up to it are in the snapshot; a few later ones may be too, "
        "so apply feed events by golden version.",
        parameters=[
            OpenApiParameter("output", OpenApiTypes.STR, description="jsonl (default) or parquet")
        ],
        responses={(200, "application/x-ndjson"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, domain: str) -> StreamingHttpResponse:
        try:
            code = get_domain(domain).code
        except UnknownDomainError as exc:
            raise Http404(str(exc)) from exc
        fmt = request.query_params.get("output", "jsonl")
        if fmt not in ("jsonl", "parquet"):
            raise exceptions.ValidationError({"output": ["jsonl or parquet."]})
        # Sequence first, then read the high-water mark and the records in one snapshot: a
        # change committed before the sequencer ran has a seq at most the mark and is in the
        # records; a later one may be in the records too, and comes again in the feed.
        change_events_sequence()
        mask = None if sees_pii(request.user) else (lambda row: mask_document(row, code))
        stream = snapshot_stream(domain=code, fmt=fmt, mask=mask)
        seq = next(stream)  # the transaction is open: the body follows from it
        assert isinstance(seq, int)
        body = (chunk for chunk in stream if isinstance(chunk, bytes))
        content_type = (
            "application/vnd.apache.parquet" if fmt == "parquet" else "application/x-ndjson"
        )
        response = StreamingHttpResponse(body, content_type=content_type)
        response["Aurum-Snapshot-Seq"] = str(seq)
        response["Content-Disposition"] = f'attachment; filename="{code}-{seq}.{fmt}"'
        return response
