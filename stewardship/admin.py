from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from stewardship.models import ReviewTask


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
        "created_at",
    ]
    list_filter = ["domain", "kind", "status"]
    readonly_fields = [f.name for f in ReviewTask._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tasks come from match runs
