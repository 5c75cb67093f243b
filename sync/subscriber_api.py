"""The subscriber API for admins (``/api/v1/subscribers``): register, change, pause, rotate
the secret, read and replay dead letters, reset the circuit.

Secrets are write-only: a secret is returned once, in the answer to the registration or the
rotation that made it, and never again.  Every command is one view calling one service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mdm.models import SourceSystem
from mdm.roles import IsAdmin
from sync.models import ChangeEvent, Delivery, Subscriber
from sync.selectors import dead_letters, subscriber_health
from sync.services import (
    UPDATABLE,
    deliveries_replay_all,
    delivery_replay,
    subscriber_circuit_reset,
    subscriber_delete,
    subscriber_enable,
    subscriber_finish_rotation,
    subscriber_pause,
    subscriber_register,
    subscriber_rotate_secret,
    subscriber_update,
)


class SourceSystemCodeField(serializers.SlugRelatedField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="code", queryset=SourceSystem.objects.all(), **kwargs)


class SubscriberInputSerializer(serializers.Serializer):
    code = serializers.SlugField(max_length=50)
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    kind = serializers.ChoiceField(choices=Subscriber.Kind.values)
    url = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    exchange = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    secret = serializers.CharField(
        max_length=200,
        required=False,
        write_only=True,
        help_text="whsec_<base64>; generated when left out.  Returned once, in this answer.",
    )
    domains = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    event_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=ChangeEvent.Kind.values), required=False, default=list
    )
    filters = serializers.DictField(
        child=serializers.ListField(), required=False, default=dict, help_text='{"country": ["DE"]}'
    )
    include_source_keys = serializers.BooleanField(required=False, default=True)
    source_system = SourceSystemCodeField(required=False, allow_null=True, default=None)
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, required=False, default=8)
    from_seq = serializers.IntegerField(
        min_value=0, required=False, allow_null=True, default=None, help_text="Default: now."
    )


class SubscriberUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    exchange = serializers.CharField(max_length=200, required=False, allow_blank=True)
    domains = serializers.ListField(child=serializers.CharField(), required=False)
    event_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=ChangeEvent.Kind.values), required=False
    )
    filters = serializers.DictField(child=serializers.ListField(), required=False)
    include_source_keys = serializers.BooleanField(required=False)
    source_system = SourceSystemCodeField(required=False, allow_null=True)
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, required=False)


class SubscriberSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    url = serializers.CharField()
    exchange = serializers.CharField()
    domains = serializers.ListField(child=serializers.CharField())
    event_kinds = serializers.ListField(child=serializers.CharField())
    filters = serializers.DictField()
    include_source_keys = serializers.BooleanField()
    source_system = serializers.SerializerMethodField(
        help_text="The source system whose keys only are sent, or null."
    )
    max_attempts = serializers.IntegerField()
    is_active = serializers.BooleanField()
    disabled_reason = serializers.CharField()
    rotating = serializers.SerializerMethodField(
        help_text="True while a rotation is under way (messages carry two signatures)."
    )
    planned_seq = serializers.IntegerField()
    acked_seq = serializers.IntegerField()
    consecutive_failures = serializers.IntegerField()
    circuit_open_until = serializers.DateTimeField(allow_null=True)
    health = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_source_system(self, sub: Subscriber) -> str | None:
        return sub.source_system.code if sub.source_system else None

    def get_rotating(self, sub: Subscriber) -> bool:
        return bool(sub.previous_secret)

    def get_health(self, sub: Subscriber) -> dict[str, Any]:
        health = self.context.get("health", {}).get(sub.code)
        if health is None:
            return {}
        return {
            "lag": health.lag,
            "pending": health.pending,
            "dead_letters": health.dead_letters,
            "failure_rate": round(health.failure_rate, 4),
            "circuit_open": health.circuit_open,
        }


class DeadLetterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    seq = serializers.IntegerField()
    golden_id = serializers.IntegerField()
    event_kind = serializers.CharField(source="event.kind")
    attempts = serializers.IntegerField()
    response_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_attempt_at = serializers.DateTimeField(source="claimed_at", allow_null=True)


def _subscriber(code: str) -> Subscriber:
    sub = Subscriber.objects.select_related("source_system").filter(code=code).first()
    if sub is None:
        raise Http404(f"No subscriber {code!r}.")
    return sub


def _out(sub: Subscriber, **extra: Any) -> dict[str, Any]:
    sub.refresh_from_db()
    health = {h.code: h for h in subscriber_health() if h.code == sub.code}
    return {**SubscriberSerializer(sub, context={"health": health}).data, **extra}


def _run(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except DjangoValidationError as exc:
        raise exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        ) from exc


SECRET_OUT = inline_serializer(
    "SubscriberWithSecret",
    {"subscriber": SubscriberSerializer(), "secret": serializers.CharField()},
)


class SubscriberListView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="subscribers_list",
        summary="Every subscriber with its lag, dead letters and failure rate (admin)",
        responses=SubscriberSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        health = {h.code: h for h in subscriber_health()}
        subs = Subscriber.objects.select_related("source_system").order_by("code")
        return Response(SubscriberSerializer(subs, many=True, context={"health": health}).data)

    @extend_schema(
        operation_id="subscribers_create",
        summary="Register a subscriber (admin); the answer shows its secret, once",
        request=SubscriberInputSerializer,
        responses={201: SECRET_OUT},
    )
    def post(self, request: Request) -> Response:
        data = SubscriberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        sub = _run(lambda: subscriber_register(**v))
        return Response(
            {"subscriber": _out(sub), "secret": sub.secret}, status=status.HTTP_201_CREATED
        )


class SubscriberDetailView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(operation_id="subscribers_read", responses=SubscriberSerializer)
    def get(self, request: Request, code: str) -> Response:
        return Response(_out(_subscriber(code)))

    @extend_schema(
        operation_id="subscribers_update",
        summary=f"Change a subscriber's settings (admin): {', '.join(UPDATABLE)}",
        request=SubscriberUpdateSerializer,
        responses=SubscriberSerializer,
    )
    def patch(self, request: Request, code: str) -> Response:
        sub = _subscriber(code)
        refused = (
            sorted(set(request.data) - set(UPDATABLE)) if isinstance(request.data, dict) else []
        )
        if refused:
            raise exceptions.ValidationError(
                {refused[0]: ["Cannot be changed here (the secret changes by rotation)."]}
            )
        data = SubscriberUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        _run(lambda: subscriber_update(subscriber=sub, changes=changes))
        return Response(_out(sub))

    @extend_schema(operation_id="subscribers_delete", responses={204: None})
    def delete(self, request: Request, code: str) -> Response:
        subscriber_delete(subscriber=_subscriber(code))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SubscriberRotateSecretView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="subscribers_rotate_secret",
        summary="Start a secret rotation (admin): the new secret is shown once; messages "
        "carry both signatures until the rotation is finished",
        request=inline_serializer(
            "RotateSecret", {"secret": serializers.CharField(required=False)}
        ),
        responses=SECRET_OUT,
    )
    def post(self, request: Request, code: str) -> Response:
        sub = _subscriber(code)
        given = request.data.get("secret") if isinstance(request.data, dict) else None
        if given is not None and not isinstance(given, str):
            raise exceptions.ValidationError({"secret": ["A string (whsec_<base64>)."]})
        secret = _run(lambda: subscriber_rotate_secret(subscriber=sub, new_secret=given))
        return Response({"subscriber": _out(sub), "secret": secret})


class SubscriberFinishRotationView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="subscribers_finish_rotation",
        summary="Finish a rotation (admin): only the new secret signs from now",
        request=None,
        responses=SubscriberSerializer,
    )
    def post(self, request: Request, code: str) -> Response:
        sub = _subscriber(code)
        subscriber_finish_rotation(subscriber=sub)
        return Response(_out(sub))


class SubscriberPauseView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="subscribers_pause",
        summary="Pause deliveries (admin); they wait and resume from where they stopped",
        request=inline_serializer("Pause", {"reason": serializers.CharField(required=False)}),
        responses=SubscriberSerializer,
    )
    def post(self, request: Request, code: str) -> Response:
        sub = _subscriber(code)
        reason = request.data.get("reason") if isinstance(request.data, dict) else None
        subscriber_pause(subscriber=sub, reason=str(reason or "paused by an admin")[:500])
        return Response(_out(sub))


class SubscriberResumeView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="subscribers_resume",
        summary="Resume a paused or disabled (410) subscriber and close its circuit (admin)",
        request=None,
        responses=SubscriberSerializer,
    )
    def post(self, request: Request, code: str) -> Response:
        sub = _subscriber(code)
        subscriber_enable(subscriber=sub)
        return Response(_out(sub))


class SubscriberCircuitResetView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="subscribers_reset_circuit",
        summary="Close the subscriber's circuit now (admin)",
        request=None,
        responses=SubscriberSerializer,
    )
    def post(self, request: Request, code: str) -> Response:
        sub = _subscriber(code)
        subscriber_circuit_reset(subscriber=sub)
        return Response(_out(sub))


class DeadLetterListView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="subscribers_dead_letters",
        summary="The subscriber's dead letters, oldest first (admin; at most 1000)",
        responses=DeadLetterSerializer(many=True),
    )
    def get(self, request: Request, code: str) -> Response:
        rows = dead_letters(subscriber=_subscriber(code)).select_related("event").order_by("seq")
        return Response(DeadLetterSerializer(rows[:1000], many=True).data)


class DeadLetterReplayView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="subscribers_dead_letter_replay",
        summary="Send one dead letter again, attempts reset (admin)",
        request=None,
        responses=inline_serializer("Replayed", {"replayed": serializers.IntegerField()}),
    )
    def post(self, request: Request, code: str, pk: int) -> Response:
        sub = _subscriber(code)
        delivery = Delivery.objects.filter(subscriber=sub, pk=pk).first()
        if delivery is None:
            raise Http404(f"No delivery {pk} of {code}.")
        if not delivery_replay(delivery=delivery):
            raise exceptions.ValidationError(
                {"delivery": [f"Delivery {pk} is {delivery.status}, not a dead letter."]}
            )
        return Response({"replayed": 1})


class DeadLetterReplayAllView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="subscribers_dead_letters_replay",
        summary="Send every dead letter of the subscriber again (admin)",
        request=None,
        responses=inline_serializer("ReplayedAll", {"replayed": serializers.IntegerField()}),
    )
    def post(self, request: Request, code: str) -> Response:
        return Response({"replayed": deliveries_replay_all(subscriber=_subscriber(code))})
