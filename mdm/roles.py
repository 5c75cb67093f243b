"""Roles of hub users: viewer (reads), steward (decides), admin (also rules, users, sources).

A role is a Django group of the same name; a superuser is an admin.  Roles nest: an admin
may do everything a steward may, and a steward everything a viewer may.  The groups are
created by a data migration (``mdm.0003_roles``); ``python manage.py createsuperuser`` or the
admin's user page assigns them.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from rest_framework.permissions import BasePermission


class Role(IntEnum):
    VIEWER = 1
    STEWARD = 2
    ADMIN = 3

    @property
    def group_name(self) -> str:
        return self.name.lower()


ROLE_GROUPS = {role.group_name: role for role in Role}


def user_role(user: Any) -> Role | None:
    """The highest role of ``user``, or None (anonymous, source systems, users without one)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    groups = getattr(user, "groups", None)
    if groups is None:  # a source system principal, not a Django user
        return None
    if hasattr(user, "_aurum_role"):
        cached: Role | None = user._aurum_role
        return cached
    names = set(groups.values_list("name", flat=True))
    roles = [role for name, role in ROLE_GROUPS.items() if name in names]
    role = max(roles) if roles else None
    user._aurum_role = role
    return role


def user_has_role(user: Any, role: Role) -> bool:
    current = user_role(user)
    return current is not None and current >= role


class _HasRole(BasePermission):
    role: Role = Role.ADMIN
    message = "This needs the admin role."

    def has_permission(self, request: Any, view: Any) -> bool:
        return user_has_role(request.user, self.role)


class IsViewer(_HasRole):
    role = Role.VIEWER
    message = "This needs a hub user with the viewer, steward or admin role."


class IsSteward(_HasRole):
    role = Role.STEWARD
    message = "This needs the steward or admin role."


class IsAdmin(_HasRole):
    role = Role.ADMIN
    message = "This needs the admin role."
