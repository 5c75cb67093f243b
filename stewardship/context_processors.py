"""Template context for every page that extends ``aurum/base.html``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from mdm.roles import user_role


def aurum(request: HttpRequest) -> dict[str, Any]:
    """The user's role (``viewer``, ``steward``, ``admin`` or ""), for the navigation."""
    role = user_role(getattr(request, "user", None))
    return {"role": role.group_name if role else ""}
