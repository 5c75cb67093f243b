"""Masking personal data for those who need not see it: the one masking function.

Domains flag their PII attributes (``Attribute.pii``).  Stewards and admins see clear
values; viewers see them masked by the attribute's type:

* e-mail: the first character and the domain, ``j***@example.com``;
* phone: the last four digits, ``*******4567``;
* identifiers (national id, IBAN), dates, and any other PII value: hidden, ``***``;
* names and other text: the first character, ``J***``.

A source system sees its own records and the golden records of its domains in clear: it
holds those values already and needs them to stay in step.

``mask_document`` walks any JSON-like response (a golden record with its provenance, a
source record with its raw payload, a timeline, an event's payload) and masks the values of
PII attributes wherever they sit, so each API view and export applies one call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from mdm.domains import UnknownDomainError, all_domains, get_domain
from mdm.domains.base import Attribute
from mdm.roles import Role, user_has_role

HIDDEN = "***"

# Keys that hold an attribute's value inside a provenance entry, a timeline change, etc.
_VALUE_KEYS = frozenset({"value", "from", "to", "before", "after", "left", "right"})
# Keys whose whole content is a source's raw payload: field names are the source's own, so
# every value is treated as personal.
_RAW_KEYS = frozenset({"raw", "payload", "candidate_raw"})
_EMAIL = re.compile(r"^([^@\s])[^@\s]*@([^@\s]+)$")


def sees_pii(user: Any) -> bool:
    """Stewards, admins and source systems see personal data in clear; viewers do not."""
    if getattr(user, "source_system", None) is not None and not hasattr(user, "get_username"):
        return True
    return user_has_role(user, Role.STEWARD)


def mask_value(value: Any, attribute: Attribute | None = None) -> Any:
    """``value`` masked as its attribute's type asks (see the module docstring); empty
    values stay empty, so a viewer still sees which attributes are filled."""
    if value is None or value == "" or isinstance(value, bool):
        return value
    if isinstance(value, list):
        return [mask_value(v, attribute) for v in value]
    if isinstance(value, dict):
        return {k: mask_value(v, attribute) for k, v in value.items()}
    kind = attribute.type if attribute is not None else _guess(value)
    text = str(value)
    if kind == "email":
        match = _EMAIL.match(text)
        return f"{match.group(1)}***@{match.group(2)}" if match else HIDDEN
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        return "*" * max(len(digits) - 4, 3) + digits[-4:] if len(digits) > 4 else HIDDEN
    if kind in ("name", "text") and len(text) > 1:
        return f"{text[0]}{HIDDEN}"
    return HIDDEN


_QUOTED = re.compile(r"'[^']*'")


def mask_quoted(message: str) -> str:
    """An error message with the values it quotes (``'ann@x'``) hidden."""
    return _QUOTED.sub(HIDDEN, message)


def mask_quoted_in(error: Any) -> Any:
    if isinstance(error, str):
        return mask_quoted(error)
    if isinstance(error, dict):
        return {
            k: mask_quoted(v) if isinstance(v, str) and k == "message" else v
            for k, v in error.items()
        }
    return error


def _guess(value: Any) -> str:
    text = str(value)
    if _EMAIL.match(text):
        return "email"
    if re.fullmatch(r"\+?[\d\s().-]{7,}", text):
        return "phone"
    return "identifier"


@cache
def pii_attributes(domain: str) -> Mapping[str, Attribute]:
    try:
        return {a.name: a for a in get_domain(domain).attributes if a.pii}
    except UnknownDomainError:
        return {}


@cache
def _all_pii() -> Mapping[str, Attribute]:
    found: dict[str, Attribute] = {}
    for dom in all_domains():
        for attribute in dom.attributes:
            if attribute.pii:
                found.setdefault(attribute.name, attribute)
    return found


def mask_attributes(domain: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A record's attributes with its domain's PII attributes masked."""
    pii = pii_attributes(domain)
    return {k: mask_value(v, pii[k]) if k in pii else v for k, v in attributes.items()}


def _mask_held(value: Any, attribute: Attribute) -> Any:
    """What sits under a PII attribute's key: its value, or a structure (provenance,
    a change) whose value-holding keys are masked and the rest (ids, sources) kept."""
    if isinstance(value, dict):
        return {
            k: mask_value(v, attribute)
            if k in _VALUE_KEYS
            else _mask_held(v, attribute)
            if isinstance(v, (dict, list))
            else v
            for k, v in value.items()
        }
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return [_mask_held(v, attribute) for v in value]
    return mask_value(value, attribute)


def mask_document(data: Any, domain: str | None = None) -> Any:
    """``data`` (parsed JSON) with every PII value masked.  A dict naming its ``domain``
    switches to that domain's attributes; without one, any domain's PII names count."""
    if isinstance(data, list):
        return [mask_document(v, domain) for v in data]
    if not isinstance(data, dict):
        return data
    here = data.get("domain")
    if isinstance(here, str) and pii_attributes(here):
        domain = here
    pii = pii_attributes(domain) if domain else _all_pii()
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in pii:
            out[key] = _mask_held(value, pii[key])
        elif key in _RAW_KEYS and isinstance(value, (dict, list)):
            out[key] = mask_value(value)
        elif key == "errors" and isinstance(value, list):
            out[key] = [mask_quoted_in(e) for e in value]
        elif isinstance(value, (dict, list)):
            out[key] = mask_document(value, domain)
        else:
            out[key] = value
    return out


def mask_for(user: Any, data: Any, domain: str | None = None) -> Any:
    """``data`` as ``user`` may see it: unchanged for stewards, admins and source systems."""
    return data if sees_pii(user) else mask_document(data, domain)
