"""Per-domain role grants of hub users (``DomainRole``)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from mdm.audit.services import audit_record
from mdm.domains import UnknownDomainError, get_domain
from mdm.models import DomainRole
from mdm.roles import ROLE_GROUPS


class GrantError(ValueError):
    """A grant names an unknown domain or role; nothing was stored."""


def domain_role_grant(
    *, user: Any, domain: str, role: str, actor: Any = None
) -> tuple[DomainRole, bool]:
    """Give ``user`` the role ``role`` (viewer, steward, admin) in ``domain``, replacing the
    grant it had there.  Returns the grant and whether it changed.  Safe to repeat."""
    try:
        code = get_domain(domain).code
    except UnknownDomainError as exc:
        raise GrantError(str(exc)) from exc
    if role not in ROLE_GROUPS:
        raise GrantError(f"role must be one of {', '.join(ROLE_GROUPS)}, not {role!r}")
    value = int(ROLE_GROUPS[role])
    with transaction.atomic():
        grant = DomainRole.objects.select_for_update().filter(user=user, domain=code).first()
        if grant is None:
            grant = DomainRole.objects.create(user=user, domain=code, role=value)
            audit_record(
                action="role.granted",
                actor=actor,
                target_type="user",
                target_id=user.pk,
                domain=code,
                detail={"role": role},
            )
            return grant, True
        if grant.role == value:
            return grant, False
        grant.role = value
        grant.save()
        audit_record(
            action="role.changed",
            actor=actor,
            target_type="user",
            target_id=user.pk,
            domain=code,
            detail={"role": role},
        )
        return grant, True


def domain_role_revoke(*, user: Any, domain: str, actor: Any = None) -> bool:
    """Take away ``user``'s grant in ``domain`` (its global groups are untouched).  Returns
    whether there was one.  Safe to repeat."""
    with transaction.atomic():
        grant = DomainRole.objects.select_for_update().filter(user=user, domain=domain).first()
        if grant is None:
            return False
        grant.delete()  # the history row keeps who had it and until when
        audit_record(
            action="role.revoked", actor=actor, target_type="user", target_id=user.pk, domain=domain
        )
        return True
