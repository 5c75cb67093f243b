"""Roles of hub users: viewer (reads), steward (decides), admin (also rules, users, sources).

A global role is a Django group of the same name and holds in every domain; a superuser is an
admin.  A ``DomainRole`` grant gives a user a role in one domain only (steward of
``supplier``), on top of any global group.  Roles nest: an admin may do everything a steward
may, and a steward everything a viewer may.  The groups are created by a data migration
(``mdm.0003_roles``); ``python manage.py grant_role`` or the admin assigns roles.

``user_has_role(user, role)`` without a domain asks "in at least one domain" (the gate of a
page or endpoint); with ``domain=`` it asks about that domain (the object-level check).
``user_domains(user, role)`` is the set of domains where the user holds ``role`` (``None``:
every domain) for filtering lists.
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


def _is_user(user: Any) -> bool:
    return (
        user is not None
        and getattr(user, "is_authenticated", False)
        and getattr(user, "groups", None) is not None  # a source system principal is not
    )


def user_role(user: Any) -> Role | None:
    """The highest global role of ``user`` (from its groups), or None (anonymous, source
    systems, users with per-domain grants only)."""
    if not _is_user(user):
        return None
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    if hasattr(user, "_aurum_role"):
        cached: Role | None = user._aurum_role
        return cached
    names = set(user.groups.values_list("name", flat=True))
    roles = [role for name, role in ROLE_GROUPS.items() if name in names]
    role = max(roles) if roles else None
    user._aurum_role = role
    return role


def user_domain_roles(user: Any) -> dict[str, Role]:
    """The user's per-domain grants: domain code -> role (cached on the user object)."""
    if not _is_user(user):
        return {}
    if hasattr(user, "_aurum_domain_roles"):
        cached: dict[str, Role] = user._aurum_domain_roles
        return cached
    from mdm.models import DomainRole

    grants = {
        domain: Role(role)
        for domain, role in DomainRole.objects.filter(user_id=user.pk).values_list("domain", "role")
    }
    user._aurum_domain_roles = grants
    return grants


def user_role_in(user: Any, domain: str) -> Role | None:
    """The user's role in ``domain``: the higher of its global role and its grant there."""
    roles = [r for r in (user_role(user), user_domain_roles(user).get(domain)) if r is not None]
    return max(roles) if roles else None


def user_has_role(user: Any, role: Role, domain: str | None = None) -> bool:
    """Whether ``user`` holds ``role`` in ``domain`` (or, without one, in any domain)."""
    if domain is not None:
        current = user_role_in(user, domain)
        return current is not None and current >= role
    best = user_role(user)
    if best is not None and best >= role:
        return True
    return any(r >= role for r in user_domain_roles(user).values())


def user_domains(user: Any, role: Role) -> frozenset[str] | None:
    """Domains where ``user`` holds ``role``: ``None`` means every domain (a global role)."""
    best = user_role(user)
    if best is not None and best >= role:
        return None
    return frozenset(d for d, r in user_domain_roles(user).items() if r >= role)


def principal_domains(user: Any, role: Role = Role.VIEWER) -> frozenset[str] | None:
    """Domains a caller may read (``None``: all): a source system's token scope, else the
    user's domains with ``role``."""
    scoped = getattr(user, "domains", None)
    if scoped is not None and not _is_user(user):
        return frozenset(scoped)
    return user_domains(user, role)


def _view_domain(view: Any) -> str | None:
    kwargs = getattr(view, "kwargs", None) or {}
    domain = kwargs.get("domain")
    return str(domain) if domain else None


class _HasRole(BasePermission):
    """The role in the URL's ``domain`` when it has one, else in at least one domain (the
    view then narrows objects to the caller's domains)."""

    role: Role = Role.ADMIN
    message = "This needs the admin role."

    def has_permission(self, request: Any, view: Any) -> bool:
        domain = _view_domain(view)
        if domain is not None and not _known_domain(domain):
            domain = None  # the view answers 404 for an unknown domain
        if domain is not None and not user_has_role(request.user, self.role):
            # Only a user with the role somewhere gets the domain-specific refusal.
            return False
        if domain is not None and not user_has_role(request.user, self.role, domain):
            self.message = f"This needs the {self.role.group_name} role in domain {domain}."
            return False
        return user_has_role(request.user, self.role, domain)


class IsViewer(_HasRole):
    role = Role.VIEWER
    message = "This needs a hub user with the viewer, steward or admin role."


class IsSteward(_HasRole):
    role = Role.STEWARD
    message = "This needs the steward or admin role."


class IsAdmin(_HasRole):
    role = Role.ADMIN
    message = "This needs the admin role."


class CanReadDomain(BasePermission):
    """Golden records, the feed and searches of the URL's domain: a hub user with a role in
    it, or a source system whose token is scoped to it."""

    message = "This needs a hub role or a source system token scoped to this domain."

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        domain = _view_domain(view)
        if domain is not None and not _known_domain(domain):
            domain = None  # the view answers 404 for an unknown domain
        if not _is_user(user) and getattr(user, "domains", None) is not None:
            return domain is None or domain in user.domains
        return user_has_role(user, Role.VIEWER, domain)


def _known_domain(code: str) -> bool:
    from mdm.domains import UnknownDomainError, get_domain

    try:
        get_domain(code)
    except UnknownDomainError:
        return False
    return True


class IsViewerOrSource(BasePermission):
    """Lists narrowed per caller (ingest runs, quarantine, the feed): a source system's token
    (it sees its own) or a hub user with a role in at least one domain (it sees those)."""

    message = "This needs a source system's token or a hub user with a role."

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not _is_user(user) and getattr(user, "domains", None) is not None:
            return True
        return user_has_role(user, Role.VIEWER)
