"""Input and output shapes of the stewardship API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from mdm.api.serializers import StrictInputSerializer
from stewardship.models import ReviewTask
from stewardship.selectors import sees_pii


class ReviewTaskSerializer(serializers.ModelSerializer):
    assignee = serializers.CharField(source="assignee.username", allow_null=True, default=None)
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True, default=None)
    is_overdue = serializers.BooleanField(read_only=True)

    class Meta:
        model = ReviewTask
        fields = [
            "id",
            "domain",
            "kind",
            "status",
            "left_record_id",
            "right_record_id",
            "match_probability",
            "explanation",
            "rule",
            "details",
            "priority",
            "due_at",
            "escalated_at",
            "is_overdue",
            "assignee",
            "assigned_at",
            "decision",
            "comment",
            "decided_by",
            "decided_at",
            "created_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: ReviewTask) -> dict[str, Any]:
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is not None and not sees_pii(request.user):
            # The compared values in an explanation are personal data: viewers get weights only.
            data["explanation"] = [
                {k: v for k, v in c.items() if k not in ("left", "right")}
                for c in data["explanation"] or []
                if isinstance(c, dict)
            ]
            data["details"] = {}
        return data


class DecideInputSerializer(StrictInputSerializer):
    decision = serializers.ChoiceField(choices=["merge", "not_a_match", "skip", "resolved"])
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class BulkDecideInputSerializer(StrictInputSerializer):
    task_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=1000
    )
    decision = serializers.ChoiceField(choices=["merge", "not_a_match", "resolved"])
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class BulkDecideOutputSerializer(serializers.Serializer):
    decided = serializers.ListField(child=serializers.IntegerField())
    refused = serializers.DictField(child=serializers.CharField())


class AssignInputSerializer(StrictInputSerializer):
    assignee_id = serializers.IntegerField(allow_null=True)
