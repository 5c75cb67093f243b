from __future__ import annotations

from typing import Any

from django.contrib import admin

from mdm.audit.models import AuditEntry
from mdm.roles import Role, user_has_role


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the trail is append-only, and only admins read it."""

    list_display = [
        "seq",
        "occurred_at",
        "actor",
        "actor_kind",
        "action",
        "target_type",
        "target_id",
        "domain",
    ]
    list_filter = ["action", "actor_kind", "domain"]
    search_fields = ["actor", "target_id", "action"]
    ordering = ["-seq"]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> list[str]:
        return [f.name for f in AuditEntry._meta.fields]

    def has_view_permission(self, request: Any, obj: Any = None) -> bool:
        return user_has_role(request.user, Role.ADMIN)

    def has_module_permission(self, request: Any) -> bool:
        return user_has_role(request.user, Role.ADMIN)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
