from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from mdm.domains import domain_codes
from mdm.mapping import MappingError, compile_mapping
from mdm.models import (
    AlertEvent,
    AlertRule,
    CrossReference,
    GoldenOperation,
    GoldenRecord,
    IngestRun,
    QualityRule,
    QualityRun,
    QuarantinedPayload,
    SourceMapping,
    SourceRecord,
    SourceSystem,
    SourceToken,
    UserToken,
)
from mdm.quality import rule_spec_errors
from mdm.services.alerts import alert_signals
from mdm.services.quarantine import QuarantineStateError, quarantined_payload_replay
from mdm.services.sources import source_token_issue, source_token_revoke
from mdm.services.user_tokens import user_token_revoke


@admin.register(SourceSystem)
class SourceSystemAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "priority", "is_active", "created_at"]
    search_fields = ["code", "name"]
    actions = ["issue_token"]

    @admin.action(description="Issue a new API token (shown once)")
    def issue_token(self, request: HttpRequest, queryset: QuerySet[SourceSystem]) -> None:
        for system in queryset:
            issued = source_token_issue(source_system=system, name="admin")
            self.message_user(
                request,
                f"Token for {system.code} (copy it now, it is not shown again): {issued.secret}",
                messages.WARNING,
            )


@admin.register(SourceToken)
class SourceTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "source_system", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["source_system"]
    readonly_fields = ["prefix", "secret_hash", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued from the source system page (action) or `issue_token`

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[SourceToken]) -> None:
        for token in queryset:
            source_token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


class SourceMappingForm(forms.ModelForm):
    domain = forms.ChoiceField(choices=[])

    class Meta:
        model = SourceMapping
        fields = ["source_system", "domain", "name", "is_default", "spec"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [(c, c) for c in domain_codes()]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        spec = data.get("spec")
        if isinstance(spec, dict) and data.get("domain"):
            spec = {**spec, "domain": data["domain"], "name": data.get("name") or "default"}
            try:
                compiled = compile_mapping(spec)
            except MappingError as exc:
                raise forms.ValidationError({"spec": str(exc)}) from exc
            data["spec"] = compiled.spec
            self.instance.fingerprint = compiled.fingerprint
        return data


@admin.register(SourceMapping)
class SourceMappingAdmin(SimpleHistoryAdmin):
    form = SourceMappingForm
    list_display = ["source_system", "domain", "name", "is_default", "updated_at"]
    list_filter = ["domain", "source_system"]


@admin.register(SourceRecord)
class SourceRecordAdmin(SimpleHistoryAdmin):
    list_display = ["source_key", "source_system", "domain", "version", "is_deleted", "received_at"]
    list_filter = ["domain", "source_system", "is_deleted"]
    search_fields = ["source_key"]
    readonly_fields = [f.name for f in SourceRecord._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # records come in through ingestion only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IngestRun)
class IngestRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "source_system",
        "domain",
        "channel",
        "file_name",
        "status",
        "read_count",
        "created_count",
        "updated_count",
        "unchanged_count",
        "quarantined_count",
        "duration_seconds",
        "started_at",
    ]
    list_filter = ["status", "channel", "domain", "source_system"]
    readonly_fields = [f.name for f in IngestRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(QuarantinedPayload)
class QuarantinedPayloadAdmin(SimpleHistoryAdmin):
    list_display = ["id", "source_system", "domain", "source_key", "line_number", "status"]
    list_filter = ["status", "domain", "source_system"]
    search_fields = ["source_key"]
    readonly_fields = [
        "source_system",
        "domain",
        "ingest_run",
        "mapping",
        "line_number",
        "errors",
        "status",
        "created_at",
        "resolved_at",
        "resolved_by",
        "record",
    ]
    actions = ["replay"]

    @admin.action(description="Replay selected payloads as they are now")
    def replay(self, request: HttpRequest, queryset: QuerySet[QuarantinedPayload]) -> None:
        accepted = rejected = skipped = 0
        for payload in queryset.filter(status=QuarantinedPayload.Status.OPEN):
            try:
                _, result = quarantined_payload_replay(payload_id=payload.pk, user=request.user)
            except QuarantineStateError:
                skipped += 1
                continue
            if result.status == "rejected":
                rejected += 1
            else:
                accepted += 1
        self.message_user(
            request, f"Replayed: {accepted} accepted, {rejected} still rejected, {skipped} skipped."
        )


class CrossReferenceInline(admin.TabularInline):
    model = CrossReference
    fields = ["record", "linked_by", "linked_at"]
    readonly_fields = ["record", "linked_by", "linked_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(GoldenRecord)
class GoldenRecordAdmin(SimpleHistoryAdmin):
    list_display = ["id", "domain", "status", "version", "survivor", "updated_at"]
    list_filter = ["domain", "status"]
    readonly_fields = [f.name for f in GoldenRecord._meta.fields]
    inlines = [CrossReferenceInline]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # golden records come from matching only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CrossReference)
class CrossReferenceAdmin(SimpleHistoryAdmin):
    list_display = ["record", "golden", "linked_by", "linked_at"]
    list_filter = ["linked_by"]
    readonly_fields = ["record", "golden", "linked_by", "linked_at"]
    list_select_related = ["record__source_system", "golden"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(GoldenOperation)
class GoldenOperationAdmin(admin.ModelAdmin):
    """The audit trail of steward merges, splits, corrections and undos (read only)."""

    list_display = ["id", "kind", "domain", "actor", "target", "created_at", "reason"]
    list_filter = ["domain", "kind"]
    list_select_related = ["actor"]
    readonly_fields = [f.name for f in GoldenOperation._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # operations come from the steward commands only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UserToken)
class UserTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "secret_hash", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued with `manage.py issue_user_token`

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[UserToken]) -> None:
        for token in queryset:
            user_token_revoke(token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


class QualityRuleForm(forms.ModelForm):
    domain = forms.ChoiceField(choices=[])

    class Meta:
        model = QualityRule
        fields = [
            "domain",
            "name",
            "kind",
            "attribute",
            "params",
            "source_system",
            "description",
            "is_active",
            "opens_tasks",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [(code, code) for code in domain_codes()]  # type: ignore[attr-defined]
        self.fields["params"].required = False

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        errors = rule_spec_errors(
            domain=data.get("domain", ""),
            kind=data.get("kind", ""),
            attribute=data.get("attribute", ""),
            params=data.get("params") or {},
        )
        for field, message in errors.items():
            self.add_error(field if field in self.fields else None, message)
        return data


@admin.register(QualityRule)
class QualityRuleAdmin(SimpleHistoryAdmin):
    form = QualityRuleForm
    list_display = [
        "name",
        "domain",
        "kind",
        "attribute",
        "source_system",
        "is_active",
        "opens_tasks",
    ]
    list_filter = ["domain", "kind", "is_active"]
    search_fields = ["name", "attribute", "description"]


@admin.register(QualityRun)
class QualityRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "domain",
        "trigger",
        "started_at",
        "records_checked",
        "failures",
        "issues_opened",
        "issues_resolved",
        "duration_seconds",
    ]
    list_filter = ["domain", "trigger"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AlertRuleForm(forms.ModelForm):
    signal = forms.ChoiceField(choices=[])
    domain = forms.ChoiceField(choices=[], required=False)

    class Meta:
        model = AlertRule
        fields = ["name", "signal", "domain", "threshold", "channel", "target", "is_active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["signal"].choices = [  # type: ignore[attr-defined]
            (name, f"{name}: {signal.description}")
            for name, signal in sorted(alert_signals().items())
        ]
        self.fields["domain"].choices = [("", "every domain")] + [  # type: ignore[attr-defined]
            (code, code) for code in domain_codes()
        ]

    def clean_target(self) -> str:
        target = str(self.cleaned_data.get("target", "")).strip()
        if self.data.get("channel") == AlertRule.Channel.WEBHOOK:
            forms.URLField(assume_scheme="https").clean(target)
            if not target.startswith(("http://", "https://")):
                raise forms.ValidationError("A webhook is an http(s) URL.")
        else:
            for address in [a.strip() for a in target.split(",")]:
                forms.EmailField().clean(address)
        return target


@admin.register(AlertRule)
class AlertRuleAdmin(SimpleHistoryAdmin):
    form = AlertRuleForm
    list_display = [
        "name",
        "signal",
        "domain",
        "threshold",
        "channel",
        "is_active",
        "firing",
        "last_value",
        "last_checked_at",
    ]
    list_filter = ["signal", "firing", "is_active"]
    readonly_fields = ["firing", "fired_at", "cleared_at", "last_value", "last_checked_at"]


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "alert", "kind", "value", "threshold", "delivered", "error"]
    list_filter = ["kind", "delivered"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
