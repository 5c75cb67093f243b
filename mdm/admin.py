from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from mdm.domains import domain_codes
from mdm.mapping import MappingError, compile_mapping
from mdm.models import (
    AlertEvent,
    AlertRule,
    Connector,
    ConnectorFile,
    ConnectorRun,
    CrossReference,
    DomainRole,
    ErasureRequest,
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
from mdm.roles import Role, user_has_role
from mdm.services.access import domain_role_grant, domain_role_revoke
from mdm.services.alerts import alert_signals
from mdm.services.connectors import (
    ConnectorError,
    connector_config_check,
    connector_pause,
    connector_resume,
    connector_run_request,
    connector_upsert,
)
from mdm.services.quarantine import QuarantineStateError, quarantined_payload_replay
from mdm.services.sources import (
    TokenScopeError,
    source_token_issue,
    source_token_revoke,
    source_token_rotate,
)
from mdm.services.user_tokens import user_token_revoke


@admin.register(SourceSystem)
class SourceSystemAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "priority", "is_active", "created_at"]
    search_fields = ["code", "name"]
    actions = ["issue_token"]

    @admin.action(description="Issue a new API token (shown once)")
    def issue_token(self, request: HttpRequest, queryset: QuerySet[SourceSystem]) -> None:
        for system in queryset:
            issued = source_token_issue(source_system=system, name="admin", actor=request.user)
            self.message_user(
                request,
                f"Token for {system.code} (copy it now, it is not shown again): {issued.secret}",
                messages.WARNING,
            )


@admin.register(SourceToken)
class SourceTokenAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "source_system",
        "name",
        "access",
        "domains",
        "expires_at",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["source_system", "access"]
    # Scopes are fixed at issue (a new scope is a new token); only the name may change here.
    readonly_fields = [
        "source_system",
        "prefix",
        "secret_hash",
        "domains",
        "access",
        "expires_at",
        "rotated_from",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke", "rotate"]

    @admin.action(description="Rotate: issue a successor; the old token stays valid 24 hours")
    def rotate(self, request: HttpRequest, queryset: QuerySet[SourceToken]) -> None:
        until = timezone.now() + timedelta(hours=24)
        for token in queryset:
            try:
                issued = source_token_rotate(token=token, old_valid_until=until, actor=request.user)
            except TokenScopeError as exc:
                self.message_user(request, f"{token.prefix}: {exc}", messages.ERROR)
                continue
            self.message_user(
                request,
                f"New token for {token.source_system.code} (copy it now, it is not shown "
                f"again; {token.prefix} works until {until:%Y-%m-%d %H:%M %Z}): {issued.secret}",
                messages.WARNING,
            )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued from the source system page (action) or `issue_token`

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[SourceToken]) -> None:
        for token in queryset:
            source_token_revoke(token=token, actor=request.user)
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
    list_display = [
        "prefix",
        "user",
        "name",
        "expires_at",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    readonly_fields = [
        "user",
        "prefix",
        "secret_hash",
        "expires_at",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued with `manage.py issue_user_token`

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[UserToken]) -> None:
        for token in queryset:
            user_token_revoke(token=token, actor=request.user)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


class DomainRoleForm(forms.ModelForm):
    domain = forms.ChoiceField(choices=[])

    class Meta:
        model = DomainRole
        fields = ["user", "domain", "role"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [(c, c) for c in domain_codes()]  # type: ignore[attr-defined]


@admin.register(DomainRole)
class DomainRoleAdmin(SimpleHistoryAdmin):
    """Per-domain roles (steward of supplier only); global roles are the user's groups."""

    form = DomainRoleForm
    list_display = ["user", "domain", "role", "created_at"]
    list_filter = ["domain", "role"]
    search_fields = ["user__username"]

    def save_model(self, request: HttpRequest, obj: DomainRole, form: Any, change: bool) -> None:
        if change and ("user" in form.changed_data or "domain" in form.changed_data):
            original = DomainRole.objects.get(pk=obj.pk) if obj.pk else None
            if original is not None:
                domain_role_revoke(user=original.user, domain=original.domain, actor=request.user)
        grant, _ = domain_role_grant(
            user=obj.user,
            domain=obj.domain,
            role=DomainRole.Role(obj.role).label,
            actor=request.user,
        )
        obj.pk = grant.pk

    def delete_model(self, request: HttpRequest, obj: DomainRole) -> None:
        domain_role_revoke(user=obj.user, domain=obj.domain, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[DomainRole]) -> None:
        for grant in queryset:
            domain_role_revoke(user=grant.user, domain=grant.domain, actor=request.user)


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


@admin.register(ErasureRequest)
class ErasureRequestAdmin(admin.ModelAdmin):
    """Read-only tombstones: an erasure is filed from the golden page, the API or
    ``manage.py erase_person``, never edited."""

    list_display = ["id", "domain", "golden_id", "reference", "requested_by", "erased_at"]
    list_filter = ["domain"]
    search_fields = ["golden_id", "reference"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ErasureRequest._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _AdminRoleOnly:
    """Connector pages are for the admin role (they hold credentials and reach sources)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return user_has_role(request.user, Role.ADMIN)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return user_has_role(request.user, Role.ADMIN)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return user_has_role(request.user, Role.ADMIN)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return user_has_role(request.user, Role.ADMIN)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return user_has_role(request.user, Role.ADMIN)


class ConnectorForm(forms.ModelForm):
    domain = forms.ChoiceField(choices=[])
    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The database password or the HTTP token. Write-only: it is stored "
        "encrypted and never shown; leave empty to keep the stored one.",
    )
    clear_secret = forms.BooleanField(required=False, help_text="Remove the stored secret.")

    class Meta:
        model = Connector
        fields = [
            "name",
            "kind",
            "source_system",
            "domain",
            "mapping",
            "config",
            "interval_seconds",
            "cron",
            "batch_size",
            "is_paused",
        ]
        help_texts = {
            "config": "The kind's settings as JSON (see docs/connectors.md), e.g. "
            '{"url": "mysql://reader@erp-db:3306/erp", "table": "customers", '
            '"key_column": "id", "watermark_column": "updated_at", '
            '"delete_detection": "soft_delete"}',
            "cron": "Five fields: minute hour day-of-month month day-of-week, e.g. */15 * * * *",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["domain"].choices = [(c, c) for c in domain_codes()]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        secret = "" if data.get("clear_secret") else (data.get("secret") or None)
        try:
            config, secret = connector_config_check(
                kind=data["kind"],
                source_system=data["source_system"],
                domain=data["domain"],
                mapping=data.get("mapping"),
                config=data.get("config") or {},
                secret=secret,
                interval_seconds=data.get("interval_seconds"),
                cron=data.get("cron") or "",
                batch_size=data.get("batch_size") or 5000,
            )
        except ConnectorError as exc:
            raise forms.ValidationError(str(exc)) from None
        data["config"], data["secret"] = config, secret
        return data


@admin.register(Connector)
class ConnectorAdmin(_AdminRoleOnly, SimpleHistoryAdmin):
    form = ConnectorForm
    list_display = [
        "name",
        "kind",
        "source_system",
        "domain",
        "is_paused",
        "schedule",
        "next_run_at",
        "last_run",
        "running",
    ]
    list_filter = ["kind", "is_paused", "source_system", "domain"]
    search_fields = ["name"]
    readonly_fields = [
        "secret_stored",
        "watermark",
        "last_full_compare_at",
        "next_run_at",
        "current_run",
        "lease_until",
    ]
    actions = ["run_now", "pause", "resume"]

    @admin.display(description="secret")
    def secret_stored(self, obj: Connector) -> str:
        return "stored (encrypted)" if obj.has_secret else "none"

    @admin.display(description="schedule")
    def schedule(self, obj: Connector) -> str:
        if obj.interval_seconds:
            return f"every {obj.interval_seconds} s"
        return obj.cron or "on demand"

    @admin.display(description="last run")
    def last_run(self, obj: Connector) -> str:
        run = obj.runs.first()
        return f"{run.status} at {run.started_at:%Y-%m-%d %H:%M}" if run else "-"

    @admin.display(boolean=True)
    def running(self, obj: Connector) -> bool:
        return obj.current_run_id is not None

    def save_model(self, request: HttpRequest, obj: Connector, form: Any, change: bool) -> None:
        data = form.cleaned_data
        saved, _ = connector_upsert(
            name=data["name"],
            kind=data["kind"],
            source_system=data["source_system"],
            domain=data["domain"],
            mapping=data.get("mapping"),
            config=data["config"],
            secret=data["secret"],
            interval_seconds=data.get("interval_seconds"),
            cron=data.get("cron") or "",
            batch_size=data.get("batch_size") or 5000,
            is_paused=data.get("is_paused", False),
            user=request.user,
        )
        obj.pk = saved.pk

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # no related objects; the service saved everything

    @admin.action(description="Run now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        for connector in queryset:
            try:
                connector_run_request(connector=connector, user=request.user)
            except ConnectorError as exc:
                self.message_user(request, f"{connector.name}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{connector.name}: run queued")

    @admin.action(description="Pause the schedule")
    def pause(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        for connector in queryset:
            connector_pause(connector=connector, user=request.user)
        self.message_user(request, f"paused {queryset.count()} connector(s)")

    @admin.action(description="Resume the schedule")
    def resume(self, request: HttpRequest, queryset: QuerySet[Connector]) -> None:
        for connector in queryset:
            connector_resume(connector=connector, user=request.user)
        self.message_user(request, f"resumed {queryset.count()} connector(s)")


@admin.register(ConnectorRun)
class ConnectorRunAdmin(_AdminRoleOnly, admin.ModelAdmin):
    list_display = [
        "id",
        "connector",
        "trigger",
        "status",
        "started_at",
        "finished_at",
        "read_count",
        "created_count",
        "updated_count",
        "unchanged_count",
        "quarantined_count",
        "deleted_count",
        "watermark_before",
        "watermark_after",
    ]
    list_filter = ["status", "trigger", "connector"]
    readonly_fields = [f.name for f in ConnectorRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ConnectorFile)
class ConnectorFileAdmin(_AdminRoleOnly, admin.ModelAdmin):
    list_display = ["name", "connector", "status", "read_count", "processed_at", "run", "error"]
    list_filter = ["status", "connector"]
    search_fields = ["name", "content_hash"]
    readonly_fields = [f.name for f in ConnectorFile._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
