from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from stewardship.models import ReviewTask, ServiceLevel, TaskEvent


@admin.register(ReviewTask)
class ReviewTaskAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "domain",
        "kind",
        "left_record_id",
        "right_record_id",
        "match_probability",
        "status",
        "priority",
        "due_at",
        "assignee",
        "created_at",
    ]
    list_filter = ["domain", "kind", "status", "priority"]
    readonly_fields = [f.name for f in ReviewTask._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tasks come from match runs and data-quality rules


@admin.register(TaskEvent)
class TaskEventAdmin(admin.ModelAdmin):
    list_display = ["at", "task", "action", "decision", "actor"]
    list_filter = ["action", "decision"]
    readonly_fields = [f.name for f in TaskEvent._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the audit trail is written by the services only

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ServiceLevel)
class ServiceLevelAdmin(admin.ModelAdmin):
    list_display = ["domain", "due_hours", "priority", "escalated_priority"]
