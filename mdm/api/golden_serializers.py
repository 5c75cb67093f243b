"""Input and output shapes of the steward commands on golden records and their history."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from mdm.api.serializers import GoldenRecordSerializer, StrictInputSerializer
from mdm.models import GoldenOperation


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A code: invalid, conflict, not_found, ...")
    detail = serializers.CharField(help_text="What went wrong and what to do.")


class _ReasonMixin(StrictInputSerializer):
    reason = serializers.CharField(
        max_length=2000, required=False, default="", allow_blank=True, help_text="Why (audit)."
    )


class GoldenMergeInputSerializer(_ReasonMixin):
    golden_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        min_length=2,
        max_length=100,
        help_text="The golden records to merge (two or more).",
    )
    target_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="The one that survives (one of golden_ids); default: the one with most members.",
    )
    expected_versions = serializers.DictField(
        child=serializers.IntegerField(min_value=0),
        required=False,
        allow_null=True,
        default=None,
        help_text='Golden id -> the version you read, e.g. {"12": 3}: 409 if one moved on.',
    )

    def validate_expected_versions(self, value: Any) -> dict[int, int] | None:
        if value is None:
            return None
        try:
            return {int(k): int(v) for k, v in value.items()}
        except ValueError as exc:
            raise serializers.ValidationError("Keys must be golden record ids.") from exc


class GoldenSplitInputSerializer(_ReasonMixin):
    record_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        min_length=1,
        max_length=1000,
        help_text="The source records (ids, as in the golden record's members) to split out.",
    )
    into_golden_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Move them into this existing golden record; default: a new one.",
    )
    expected_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="409 if the version moved on."
    )


class GoldenCorrectInputSerializer(_ReasonMixin):
    attribute = serializers.CharField(max_length=100)
    value = serializers.JSONField(
        allow_null=True, help_text="The corrected value; null withdraws the correction."
    )
    expected_version = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="409 if the version moved on."
    )


class GoldenUndoInputSerializer(_ReasonMixin):
    pass


class GoldenOperationSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    undone_by = serializers.SerializerMethodField()

    class Meta:
        model = GoldenOperation
        fields = [
            "id",
            "domain",
            "kind",
            "actor",
            "reason",
            "created_at",
            "golden_ids",
            "target",
            "undoes",
            "undone_by",
        ]

    def get_actor(self, op: GoldenOperation) -> str | None:
        return op.actor.get_username() if op.actor else None

    def get_undone_by(self, op: GoldenOperation) -> int | None:
        undo = getattr(op, "undone_by", None)
        return undo.pk if undo is not None else None


class GoldenOperationResultSerializer(serializers.Serializer):
    operation = GoldenOperationSerializer()
    golden_records = GoldenRecordSerializer(
        many=True, help_text="Every golden record the command touched, as it is now."
    )


class GoldenMemberAsOfSerializer(serializers.Serializer):
    record_id = serializers.IntegerField()
    source = serializers.CharField()  # type: ignore[assignment]
    source_key = serializers.CharField()
    is_deleted = serializers.BooleanField()
    linked_by = serializers.CharField()
    linked_at = serializers.DateTimeField()


class GoldenRecordAsOfSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    domain = serializers.CharField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    attributes = serializers.JSONField()
    provenance = serializers.JSONField()
    survivor_id = serializers.IntegerField(allow_null=True)
    members = GoldenMemberAsOfSerializer(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    as_of = serializers.DateTimeField(help_text="The time asked for.")
    history_date = serializers.DateTimeField(help_text="When this version was written.")


class TimelineEntrySerializer(serializers.Serializer):
    version = serializers.IntegerField()
    at = serializers.DateTimeField()
    kind = serializers.CharField(
        help_text="created, ingest, match, merge, split, undo, correction, rule change, ..."
    )
    reason = serializers.CharField()
    user = serializers.CharField(allow_null=True, help_text="Who; null for the hub itself.")
    status = serializers.CharField()
    survivor_id = serializers.IntegerField(allow_null=True)
    changes = serializers.DictField(help_text='Attribute -> {"from": ..., "to": ...}.')
    members_added = serializers.ListField(child=serializers.IntegerField())
    members_removed = serializers.ListField(child=serializers.IntegerField())
    operation_id = serializers.IntegerField(
        allow_null=True, help_text="The steward operation (undo it by this id)."
    )
