"""Logins and failed logins go to the audit trail (recording only, no business logic)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from mdm.audit.services import audit_record


@receiver(user_logged_in, dispatch_uid="audit_login")
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    audit_record(action="auth.login", actor=user, target_type="user", target_id=user.pk)


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kw: Any) -> None:
    # Django has already replaced the password by stars; only the name tried is kept.
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        action="auth.login_failed", actor=None, target_type="user", detail={"username": username}
    )
