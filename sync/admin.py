"""Admin pages: subscribers with their lag, failure rate and dead letters; deliveries; events."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from sync.models import ChangeEvent, Delivery, Subscriber
from sync.selectors import SubscriberHealth, high_water_seq, subscriber_health
from sync.services import (
    deliveries_replay_all,
    delivery_replay,
    subscriber_circuit_reset,
    subscriber_enable,
    subscriber_pause,
    subscriber_rotate_secret,
)
from sync.signing import secret_generate
from sync.transports import address_refusal


class SubscriberForm(forms.ModelForm):
    class Meta:
        model = Subscriber
        fields = [
            "code",
            "name",
            "kind",
            "url",
            "exchange",
            "secret",
            "previous_secret",
            "domains",
            "event_kinds",
            "filters",
            "include_source_keys",
            "source_system",
            "max_attempts",
            "is_active",
            "planned_seq",
            "acked_seq",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == Subscriber.Kind.WEBHOOK:
            refusal = address_refusal(data.get("url") or "")
            if refusal:
                self.add_error("url", refusal)
        if data.get("kind") != Subscriber.Kind.PULL and not data.get("secret"):
            data["secret"] = secret_generate()
        if not self.instance.pk and not data.get("planned_seq"):
            # A new subscriber starts from now, not from the first event ever.
            data["planned_seq"] = data["acked_seq"] = high_water_seq()
        return data


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    form = SubscriberForm
    list_display = [
        "code",
        "kind",
        "is_active",
        "lag",
        "failure_rate",
        "dead_letters",
        "circuit",
    ]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name", "url"]
    readonly_fields = [
        "consecutive_failures",
        "circuit_open_until",
        "attempts_total",
        "failures_total",
        "disabled_reason",
        "created_at",
    ]
    actions = ["replay_dead_letters", "enable", "pause", "reset_circuit", "rotate_secret"]
    _health_cache: dict[str, SubscriberHealth] | None = None

    def _health(self, obj: Subscriber) -> SubscriberHealth | None:
        cache = getattr(self, "_health_cache", None)
        if cache is None or obj.code not in cache:
            cache = {h.code: h for h in subscriber_health()}
            self._health_cache = cache
        return cache.get(obj.code)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        self._health_cache = None
        return super().changelist_view(request, extra_context)

    @admin.display(description="lag (events behind)")
    def lag(self, obj: Subscriber) -> int | None:
        health = self._health(obj)
        return health.lag if health else None

    @admin.display(description="failure rate")
    def failure_rate(self, obj: Subscriber) -> str:
        health = self._health(obj)
        return f"{health.failure_rate:.1%}" if health else "-"

    @admin.display(description="dead letters")
    def dead_letters(self, obj: Subscriber) -> int | None:
        health = self._health(obj)
        return health.dead_letters if health else None

    @admin.display(description="circuit", boolean=False)
    def circuit(self, obj: Subscriber) -> str:
        health = self._health(obj)
        return "open" if health and health.circuit_open else "closed"

    @admin.action(description="Replay every dead letter of the selected subscribers")
    def replay_dead_letters(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        count = sum(deliveries_replay_all(subscriber=sub) for sub in queryset)
        messages.success(request, f"{count} dead letters queued again.")

    @admin.action(description="Enable (after a 410) and close the circuit")
    def enable(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        for sub in queryset:
            subscriber_enable(subscriber=sub)
        messages.success(request, f"{queryset.count()} subscribers enabled.")

    @admin.action(description="Pause deliveries (they wait; Enable resumes them)")
    def pause(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        for sub in queryset:
            subscriber_pause(subscriber=sub)
        messages.success(request, f"{queryset.count()} subscribers paused.")

    @admin.action(description="Close the circuit now")
    def reset_circuit(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        for sub in queryset:
            subscriber_circuit_reset(subscriber=sub)
        messages.success(request, f"{queryset.count()} circuits closed.")

    @admin.action(description="Rotate the secret (the current one stays valid)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Subscriber]) -> None:
        for sub in queryset:
            secret = subscriber_rotate_secret(subscriber=sub)
            messages.info(request, f"{sub.code}: new secret {secret}")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "subscriber",
        "seq",
        "golden_id",
        "status",
        "attempts",
        "response_code",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "subscriber"]
    search_fields = ["=golden_id", "=seq"]
    list_select_related = ["subscriber"]
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Replay the selected dead letters")
    def replay(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = sum(delivery_replay(delivery=d) for d in queryset)
        messages.success(request, f"{count} dead letters queued again.")


@admin.register(ChangeEvent)
class ChangeEventAdmin(admin.ModelAdmin):
    list_display = ["seq", "domain", "golden_id", "version", "kind", "occurred_at", "reason"]
    list_filter = ["domain", "kind"]
    search_fields = ["=golden_id", "=seq"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
