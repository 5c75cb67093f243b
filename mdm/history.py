"""django-simple-history hooks shared by the apps."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser


def history_user(request: Any = None, **kwargs: Any) -> AbstractBaseUser | None:
    """The Django user behind a change, or None (a source system's token is not a user;
    its identity goes into the history change reason instead)."""
    user = getattr(request, "user", None)
    return user if isinstance(user, AbstractBaseUser) else None
