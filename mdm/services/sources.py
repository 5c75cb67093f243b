"""Source systems, their API tokens and their field mappings."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from mdm.mapping import CompiledMapping, compile_mapping, fingerprint_of
from mdm.models import SourceMapping, SourceSystem, SourceToken

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


def source_token_issue(*, source_system: SourceSystem, name: str = "default") -> IssuedToken:
    """Issue a new API token.  The secret is returned once and never stored in clear."""
    prefix = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = SourceToken.objects.create(
        source_system=source_system, name=name, prefix=prefix, secret_hash=hash_secret(secret)
    )
    return IssuedToken(token, secret)


def source_token_revoke(*, token: SourceToken) -> SourceToken:
    """Revoke a token; later requests with it get 401.  Safe to repeat."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def source_token_authenticate(secret: str) -> SourceToken | None:
    """The active token for ``secret``, or None.  Constant-time comparison of the hash."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    try:
        prefix = secret[len(TOKEN_PREFIX) :].split("_", 1)[0]
    except IndexError:  # pragma: no cover - split always returns one item
        return None
    token = (
        SourceToken.objects.select_related("source_system")
        .filter(prefix=prefix, revoked_at__isnull=True)
        .first()
    )
    if token is None or not secrets.compare_digest(token.secret_hash, hash_secret(secret)):
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
