from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from matching.models import MatchModel, MatchPair, MatchRun, PairConstraint


@admin.register(MatchModel)
class MatchModelAdmin(SimpleHistoryAdmin):
    list_display = ["domain", "version", "is_active", "upper_threshold", "lower_threshold"]
    list_filter = ["domain", "is_active"]
    fields = [
        "domain",
        "version",
        "is_active",
        "upper_threshold",
        "lower_threshold",
        "records_trained",
        "training_seconds",
        "trained_at",
        "report",
    ]
    readonly_fields = [
        "domain",
        "version",
        "is_active",
        "records_trained",
        "training_seconds",
        "trained_at",
        "report",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # models come from `manage.py train_model`


@admin.register(MatchRun)
class MatchRunAdmin(admin.ModelAdmin):
    list_display = ["id", "domain", "kind", "status", "started_at", "finished_at"]
    list_filter = ["domain", "kind", "status"]
    readonly_fields = [f.name for f in MatchRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(MatchPair)
class MatchPairAdmin(admin.ModelAdmin):
    list_display = ["left", "right", "domain", "match_probability", "match_weight"]
    list_filter = ["domain"]
    readonly_fields = [f.name for f in MatchPair._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class PairConstraintForm(forms.ModelForm):
    class Meta:
        model = PairConstraint
        fields = ["domain", "left", "right", "kind", "reason"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        left, right = data.get("left"), data.get("right")
        if left and right:
            if left.pk == right.pk:
                raise forms.ValidationError("A record cannot be constrained with itself.")
            if left.domain != right.domain or left.domain != data.get("domain"):
                raise forms.ValidationError("Both records must belong to the chosen domain.")
            if left.pk > right.pk:  # stored in id order
                data["left"], data["right"] = right, left
                self.instance.left, self.instance.right = right, left
        return data


@admin.register(PairConstraint)
class PairConstraintAdmin(SimpleHistoryAdmin):
    form = PairConstraintForm
    list_display = ["left", "right", "domain", "kind", "created_by", "created_at"]
    list_filter = ["domain", "kind"]
    raw_id_fields = ["left", "right"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
