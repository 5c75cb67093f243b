"""Source systems, their API tokens and their field mappings."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from mdm import tokens
from mdm.audit.services import audit_record
from mdm.mapping import CompiledMapping, compile_mapping, fingerprint_of
from mdm.models import SourceMapping, SourceSystem, SourceToken, TokenAccess

TOKEN_PREFIX = "aur_"  # noqa: S105 - a public prefix, not a secret


@dataclass(frozen=True)
class IssuedToken:
    token: SourceToken
    secret: str  # shown once; only its hash is stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def source_system_upsert(
    *, code: str, name: str | None = None, priority: int | None = None, description: str = ""
) -> tuple[SourceSystem, bool]:
    """Create the source system ``code`` or update its name/priority.  Safe to repeat."""
    with transaction.atomic():
        system = SourceSystem.objects.select_for_update().filter(code=code).first()
        if system is None:
            system = SourceSystem(code=code, name=name or code, description=description)
            if priority is not None:
                system.priority = priority
            system.full_clean()
            system.save()
            return system, True
        changed = False
        if name and system.name != name:
            system.name, changed = name, True
        if priority is not None and system.priority != priority:
            system.priority, changed = priority, True
        if description and system.description != description:
            system.description, changed = description, True
        if changed:
            system.save()
        return system, False


class TokenScopeError(ValueError):
    """A token's scopes are wrong (unknown domain or access); nothing was stored."""


def _clean_scopes(domains: list[str] | None, access: str) -> list[str]:
    from mdm.domains import all_domains

    known = {d.code for d in all_domains()}
    wanted = sorted({d.strip() for d in (domains or []) if d.strip()})
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise TokenScopeError(
            f"unknown domain(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if access not in TokenAccess.values:
        raise TokenScopeError(f"access must be one of {', '.join(TokenAccess.values)}")
    return wanted


def source_token_issue(
    *,
    source_system: SourceSystem,
    name: str = "default",
    domains: list[str] | None = None,
    access: str = TokenAccess.READ_WRITE,
    expires_at: datetime | None = None,
    rotated_from: SourceToken | None = None,
    actor: Any = None,
) -> IssuedToken:
    """Issue a new API token with its scopes (``domains``: empty = the system's domains;
    ``access``: read, write or read-write) and optional expiry.  The secret is returned once
    and never stored in clear.  Not idempotent: each call makes a new token.  Raises
    ``TokenScopeError`` (nothing stored) on an unknown domain or access."""
    scoped = _clean_scopes(domains, access)
    if expires_at is not None and expires_at <= timezone.now():
        raise TokenScopeError("expires_at must be in the future")
    prefix = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        token = SourceToken.objects.create(
            source_system=source_system,
            name=name,
            prefix=prefix,
            secret_hash=hash_secret(secret),
            domains=scoped,
            access=access,
            expires_at=expires_at,
            rotated_from=rotated_from,
        )
        audit_record(
            action="token.issued",
            actor=actor,
            target_type="source_token",
            target_id=prefix,
            detail={"source": source_system.code, "domains": scoped, "access": access},
        )
    return IssuedToken(token, secret)


def source_token_rotate(
    *, token: SourceToken, old_valid_until: datetime, actor: Any = None
) -> IssuedToken:
    """Issue a successor of ``token`` with the same name and scopes; the old token keeps
    working until ``old_valid_until`` (now or a past time: at once), then answers 401.

    Locks the old token and refuses (``TokenScopeError``) a revoked or expired one, so two
    concurrent rotations cannot both succeed from the same token.  Not idempotent."""
    now = timezone.now()
    with transaction.atomic():
        locked = SourceToken.objects.select_for_update().get(pk=token.pk)
        if not locked.is_active:
            raise TokenScopeError(f"token {locked.prefix} is revoked or expired; issue a new one")
        issued = source_token_issue(
            source_system=locked.source_system,
            name=locked.name,
            domains=list(locked.domains),
            access=locked.access,
            rotated_from=locked,
            actor=actor,
        )
        until = max(old_valid_until, now)
        if locked.expires_at is None or locked.expires_at > until:
            locked.expires_at = until
            locked.save(update_fields=["expires_at"])
        tokens.forget("source", locked.secret_hash)
        audit_record(
            action="token.rotated",
            actor=actor,
            target_type="source_token",
            target_id=locked.prefix,
            detail={"successor": issued.token.prefix, "old_valid_until": until.isoformat()},
        )
    return issued


def source_token_revoke(*, token: SourceToken, actor: Any = None) -> SourceToken:
    """Revoke a token; later requests with it get 401.  Safe to repeat."""
    with transaction.atomic():
        locked = SourceToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is None:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            audit_record(
                action="token.revoked",
                actor=actor,
                target_type="source_token",
                target_id=locked.prefix,
                detail={"source": locked.source_system.code},
            )
    tokens.forget("source", locked.secret_hash)
    return locked


def source_token_authenticate(secret: str) -> SourceToken | None:
    """The active (not revoked, not expired) token for ``secret``, or None.  Constant-time
    comparison of the hash."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    prefix = secret[len(TOKEN_PREFIX) :].split("_", 1)[0]
    token = (
        SourceToken.objects.select_related("source_system")
        .filter(prefix=prefix, revoked_at__isnull=True)
        .first()
    )
    if token is None or not secrets.compare_digest(token.secret_hash, hash_secret(secret)):
        return None
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return None
    if not token.source_system.is_active:
        return None
    return token


def source_mapping_register(
    *, spec: dict[str, Any], source_system: SourceSystem | None = None
) -> tuple[SourceMapping, CompiledMapping, bool]:
    """Check and store a mapping (a new history row when it changed).  Safe to repeat.

    Raises ``MappingError`` (nothing stored) when the spec is wrong.
    """
    compiled = compile_mapping(spec)
    with transaction.atomic():
        if source_system is None:
            code = spec.get("source")
            if not code:
                from mdm.mapping import MappingError

                raise MappingError("'source' (the source system code) is required")
            source_system, _ = source_system_upsert(code=code, name=spec.get("source_name"))
        is_default = bool(spec.get("default", True))
        mapping = (
            SourceMapping.objects.select_for_update()
            .filter(source_system=source_system, domain=compiled.domain.code, name=compiled.name)
            .first()
        )
        if is_default:
            # One at a time (there is at most one): save() keeps the history row.
            for other in (
                SourceMapping.objects.select_for_update()
                .filter(source_system=source_system, domain=compiled.domain.code, is_default=True)
                .exclude(name=compiled.name)
            ):
                other.is_default = False
                other.save()
        if mapping is None:
            mapping = SourceMapping.objects.create(
                source_system=source_system,
                domain=compiled.domain.code,
                name=compiled.name,
                is_default=is_default,
                spec=compiled.spec,
                fingerprint=compiled.fingerprint,
            )
            return mapping, compiled, True
        if mapping.fingerprint != compiled.fingerprint or mapping.is_default != is_default:
            mapping.spec = compiled.spec
            mapping.fingerprint = fingerprint_of(compiled.spec)
            mapping.is_default = is_default
            mapping.save()
        return mapping, compiled, False
