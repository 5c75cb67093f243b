"""The domain registry: which kinds of master data the hub knows, by code.

A domain is a plain module in ``DOMAIN_MODULES`` that defines ``DOMAIN = Domain(...)``.
Adding a domain is adding its module and one line here. Pure Python: no Django import.
"""

from __future__ import annotations

import importlib
from functools import cache

from mdm.domains.base import (
    Attribute,
    Domain,
    FieldError,
    NormalisationError,
    RecordContext,
    RelationshipType,
    UnknownDomainError,
)

__all__ = [
    "DOMAIN_MODULES",
    "Attribute",
    "Domain",
    "FieldError",
    "NormalisationError",
    "RecordContext",
    "RelationshipType",
    "UnknownDomainError",
    "all_domains",
    "domain_codes",
    "get_domain",
]

DOMAIN_MODULES: tuple[str, ...] = (
    "mdm.domains.customer",
    "mdm.domains.supplier",
    "mdm.domains.product",
)


@cache
def _registry() -> dict[str, Domain]:
    domains: dict[str, Domain] = {}
    for module_name in DOMAIN_MODULES:
        domain = importlib.import_module(module_name).DOMAIN
        if not isinstance(domain, Domain):
            raise TypeError(f"{module_name}.DOMAIN must be a Domain, not {type(domain).__name__}")
        if domain.code in domains:
            raise ValueError(f"domain code {domain.code!r} is declared twice ({module_name})")
        domains[domain.code] = domain
    return domains


def get_domain(code: str) -> Domain:
    """The domain registered under ``code``; UnknownDomainError names the known codes."""
    try:
        return _registry()[code]
    except (KeyError, TypeError):
        raise UnknownDomainError(
            f"unknown domain {code!r}; expected one of: {', '.join(domain_codes())}"
        ) from None


def all_domains() -> list[Domain]:
    """Every registered domain, in the order of DOMAIN_MODULES."""
    return list(_registry().values())


def domain_codes() -> list[str]:
    return list(_registry())
