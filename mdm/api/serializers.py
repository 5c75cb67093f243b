"""Input and output shapes of the mdm API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from mdm.models import IngestRun, QuarantinedPayload, SourceRecord


class StrictInputSerializer(serializers.Serializer):
    """An input shape that refuses fields it does not know (400), so a caller cannot try to
    set what the hub owns (ids, golden id, source system, status, version, actor...) and
    believe it worked."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in data if k not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {
                        name: [
                            "Unknown or read-only field: the hub sets it, or it does not exist "
                            f"here (expected: {', '.join(self.fields) or 'none'})."
                        ]
                        for name in unknown
                    }
                )
        return super().to_internal_value(data)


class RecordBatchInputSerializer(serializers.Serializer):
    records = serializers.ListField(
        child=serializers.DictField(),
        allow_empty=False,
        help_text=(
            "Source records in the source system's own format (its registered mapping turns "
            "them into attributes), or, without a mapping, objects with `source_key` and the "
            "domain's attribute names. A single record may also be sent as the whole body."
        ),
    )


class RowResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    source_key = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(
        choices=["created", "updated", "unchanged", "deleted", "stale", "rejected"]
    )
    id = serializers.IntegerField(required=False)
    version = serializers.IntegerField(required=False)
    errors = serializers.ListField(child=serializers.DictField(), required=False)  # type: ignore[assignment]
    quarantine_id = serializers.IntegerField(required=False)


class CountsSerializer(serializers.Serializer):
    read = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    deleted = serializers.IntegerField()
    stale = serializers.IntegerField()
    quarantined = serializers.IntegerField()


class IngestResponseSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    counts = CountsSerializer()
    results = RowResultSerializer(many=True)


class SourceRecordSerializer(serializers.ModelSerializer):
    source = serializers.CharField(source="source_system.code")  # type: ignore[assignment]

    class Meta:
        model = SourceRecord
        fields = [
            "id",
            "source",
            "domain",
            "source_key",
            "version",
            "attributes",
            "raw",
            "content_hash",
            "received_at",
            "source_updated_at",
            "is_deleted",
            "deleted_at",
            "ingest_run",
        ]
        read_only_fields = fields


class SourceRecordHistorySerializer(serializers.Serializer):
    history_id = serializers.IntegerField()
    history_date = serializers.DateTimeField()
    history_type = serializers.SerializerMethodField()
    change_reason = serializers.CharField(source="history_change_reason", allow_null=True)
    user = serializers.SerializerMethodField()
    version = serializers.IntegerField()
    attributes = serializers.JSONField()
    is_deleted = serializers.BooleanField()

    def get_history_type(self, obj: Any) -> str:
        return {"+": "created", "~": "changed", "-": "removed"}.get(obj.history_type, "changed")

    def get_user(self, obj: Any) -> str | None:
        user = obj.history_user
        return user.get_username() if user is not None else None


class IngestRunSerializer(serializers.ModelSerializer):
    source = serializers.CharField(source="source_system.code")  # type: ignore[assignment]
    mapping = serializers.CharField(source="mapping.name", allow_null=True, default=None)
    rows_per_second = serializers.FloatField(allow_null=True)

    class Meta:
        model = IngestRun
        fields = [
            "id",
            "source",
            "domain",
            "mapping",
            "channel",
            "file_name",
            "status",
            "started_at",
            "finished_at",
            "duration_seconds",
            "rows_per_second",
            "read_count",
            "created_count",
            "updated_count",
            "unchanged_count",
            "deleted_count",
            "stale_count",
            "quarantined_count",
            "errors",
        ]
        read_only_fields = fields


class QuarantinedPayloadSerializer(serializers.ModelSerializer):
    source = serializers.CharField(source="source_system.code")  # type: ignore[assignment]

    class Meta:
        model = QuarantinedPayload
        fields = [
            "id",
            "source",
            "domain",
            "ingest_run",
            "source_key",
            "line_number",
            "payload",
            "errors",
            "status",
            "created_at",
            "resolved_at",
            "resolution_note",
            "record",
        ]
        read_only_fields = fields


class QuarantineReplayInputSerializer(StrictInputSerializer):
    payload = serializers.DictField(
        required=False,
        help_text="The corrected payload; omit it to replay the stored one unchanged.",
    )


class QuarantineDiscardInputSerializer(StrictInputSerializer):
    reason = serializers.CharField(max_length=2000, allow_blank=False, trim_whitespace=True)


class DomainAttributeSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    pii = serializers.BooleanField()
    required = serializers.BooleanField()  # type: ignore[assignment]
    group = serializers.CharField(allow_null=True)
    choices = serializers.ListField(child=serializers.CharField())


class DomainRelationshipSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    inverse_label = serializers.CharField()
    target = serializers.CharField(help_text="The domain of the records it links to.")
    cardinality = serializers.CharField(help_text="one or many targets per record")
    hierarchy = serializers.BooleanField(help_text="Cycles are refused.")
    rule = serializers.CharField(help_text="Which target wins when sources disagree.")


class DomainSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    attributes = DomainAttributeSerializer(many=True)
    relationships = DomainRelationshipSerializer(many=True)


class GoldenMemberSerializer(serializers.Serializer):
    record_id = serializers.IntegerField(source="record.id")
    source = serializers.CharField(source="record.source_system.code")  # type: ignore[assignment]
    source_key = serializers.CharField(source="record.source_key")
    is_deleted = serializers.BooleanField(source="record.is_deleted")
    linked_by = serializers.CharField()
    linked_at = serializers.DateTimeField()


class GoldenRecordSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    domain = serializers.CharField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    attributes = serializers.JSONField()
    provenance = serializers.JSONField(
        help_text="Per attribute: the source record, system and key it came from, the rule "
        "that chose it and how many distinct values competed."
    )
    members = GoldenMemberSerializer(many=True, help_text="The cross-reference.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    retired_id = serializers.IntegerField(
        required=False, help_text="Set when the requested id was retired into this record."
    )


class MatchSearchInputSerializer(StrictInputSerializer):
    attributes = serializers.DictField(
        help_text="The candidate, with the domain's attribute names."
    )
    min_probability = serializers.FloatField(default=0.5, min_value=0.0, max_value=1.0)
    top = serializers.IntegerField(default=10, min_value=1, max_value=100)


class MatchReasonSerializer(serializers.Serializer):
    attribute = serializers.CharField()
    level = serializers.CharField()
    match_weight = serializers.FloatField()


class MatchResultSerializer(serializers.Serializer):
    golden_id = serializers.IntegerField(allow_null=True)
    record_id = serializers.IntegerField()
    source = serializers.CharField()  # type: ignore[assignment]
    source_key = serializers.CharField()
    match_probability = serializers.FloatField()
    match_weight = serializers.FloatField()
    reasons = MatchReasonSerializer(many=True)


class MatchSearchOutputSerializer(serializers.Serializer):
    candidate = serializers.DictField(help_text="The candidate as the hub normalised it.")
    matches = MatchResultSerializer(many=True)
