"""Survivorship rules API for admins: read, replace (a new version), preview, follow the job.

One view per command, thin: the work is in ``mdm.services.survivorship``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mdm.api.errors import Conflict
from mdm.api.serializers import StrictInputSerializer
from mdm.api.views import domain_or_404
from mdm.models import SourceSystem, SurvivorshipJob, SurvivorshipRuleSet
from mdm.roles import IsAdmin
from mdm.services.survivorship import (
    GoldenChange,
    SurvivorshipRulesConflictError,
    survivorship_rules_preview,
    survivorship_rules_update,
)
from mdm.survivorship import (
    STEWARD_SOURCE,
    STRATEGY_NAMES,
    TIE_BREAKER_NAMES,
    RulesError,
    survivorship_rules_active,
)

# --- shapes --------------------------------------------------------------------------------


class RuleSpecSerializer(serializers.Serializer):
    groups = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Group name -> attributes that survive together from one record. "
        "Without it, the domain's groups apply.",
    )
    rules = serializers.DictField(
        child=serializers.DictField(),
        help_text="Attribute or group name -> {strategy, sources, decay_half_life_days, "
        "tie_breakers}. Attributes left out get the domain's default rule.",
    )


class RuleSetUpdateSerializer(StrictInputSerializer, RuleSpecSerializer):
    version = serializers.IntegerField(
        min_value=0, help_text="The version you read (0 for the defaults); else 409."
    )
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class JobSerializer(serializers.ModelSerializer):
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = SurvivorshipJob
        fields = [
            "id",
            "domain",
            "rule_version",
            "status",
            "total",
            "done",
            "changed",
            "percent",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]


class RuleSetSerializer(serializers.Serializer):
    domain = serializers.CharField()
    version = serializers.IntegerField()
    groups = serializers.DictField()
    rules = serializers.DictField()
    comment = serializers.CharField()
    updated_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)
    strategies = serializers.ListField(child=serializers.CharField())
    tie_breakers = serializers.ListField(child=serializers.CharField())
    sources = serializers.ListField(child=serializers.CharField())
    job = JobSerializer(required=False)


class ChangeSerializer(serializers.Serializer):
    golden_id = serializers.IntegerField()
    changed_attributes = serializers.ListField(child=serializers.CharField())
    before = serializers.DictField()
    after = serializers.DictField()
    provenance = serializers.DictField(help_text="Provenance after, of the changed attributes.")


class PreviewSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    changed = serializers.IntegerField()
    provenance_only = serializers.IntegerField()
    attributes = serializers.DictField(child=serializers.IntegerField())
    sample = ChangeSerializer(many=True)


def _ruleset_body(domain: str, job: SurvivorshipJob | None = None) -> dict[str, Any]:
    ruleset = survivorship_rules_active(domain=domain)
    row = SurvivorshipRuleSet.objects.filter(domain=domain).select_related("updated_by").first()
    body: dict[str, Any] = {
        "domain": domain,
        "version": ruleset.version,
        **ruleset.as_spec(),
        "comment": row.comment if row else "",
        "updated_by": row.updated_by.get_username() if row and row.updated_by else None,
        "updated_at": row.updated_at if row else None,
        "strategies": list(STRATEGY_NAMES),
        "tie_breakers": list(TIE_BREAKER_NAMES),
        "sources": [*SourceSystem.objects.values_list("code", flat=True), STEWARD_SOURCE],
    }
    if job is not None:
        body["job"] = JobSerializer(job).data
    return body


def change_body(change: GoldenChange) -> dict[str, Any]:
    names = change.changed_attributes
    return {
        "golden_id": change.golden_id,
        "changed_attributes": names,
        "before": change.before,
        "after": change.after,
        "provenance": {
            n: change.provenance_after[n] for n in names if n in change.provenance_after
        },
    }


def _spec(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in ("groups", "rules") if key in data}


# --- views ---------------------------------------------------------------------------------


class SurvivorshipRulesView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="survivorship_rules_read",
        summary="Read a domain's survivorship rules (every attribute and group, explicit)",
        responses=RuleSetSerializer,
    )
    def get(self, request: Request, domain: str) -> Response:
        return Response(_ruleset_body(domain_or_404(domain)))

    @extend_schema(
        operation_id="survivorship_rules_replace",
        summary="Save a new rule version and recompute the domain's golden records",
        request=RuleSetUpdateSerializer,
        responses={200: RuleSetSerializer},
    )
    def put(self, request: Request, domain: str) -> Response:
        domain = domain_or_404(domain)
        body = RuleSetUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            _, job = survivorship_rules_update(
                domain=domain,
                spec=_spec(data),
                expected_version=data["version"],
                actor=request.user,
                comment=data.get("comment", ""),
            )
        except RulesError as exc:
            raise exceptions.ValidationError(exc.errors) from exc
        except SurvivorshipRulesConflictError as exc:
            raise Conflict(str(exc)) from exc
        return Response(_ruleset_body(domain, job))


class SurvivorshipPreviewView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="survivorship_rules_preview",
        summary="What a rule set would change, before saving it (writes nothing)",
        request=RuleSpecSerializer,
        responses=PreviewSerializer,
    )
    def post(self, request: Request, domain: str) -> Response:
        domain = domain_or_404(domain)
        body = RuleSpecSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            preview = survivorship_rules_preview(domain=domain, spec=_spec(body.validated_data))
        except RulesError as exc:
            raise exceptions.ValidationError(exc.errors) from exc
        return Response(
            {
                "total": preview.total,
                "domain_total": preview.domain_total,
                "estimated": preview.estimated,
                "changed": preview.changed,
                "provenance_only": preview.provenance_only,
                "attributes": preview.attributes,
                "sample": [change_body(c) for c in preview.sample],
            }
        )


class SurvivorshipJobView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="survivorship_job_read",
        summary="Progress of a recompute job",
        responses=JobSerializer,
    )
    def get(self, request: Request, domain: str, pk: int) -> Response:
        domain = domain_or_404(domain)
        job = SurvivorshipJob.objects.filter(domain=domain, pk=pk).first()
        if job is None:
            raise exceptions.NotFound(f"No survivorship job {pk} for {domain}.")
        return Response(JobSerializer(job).data)
