"""Mapping + normalisation of rows, runnable in worker processes.

Imports no Django (mdm.mapping and mdm.domains are pure Python), so a spawned worker starts
quickly and holds no database connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mdm.domains.base import FieldError
from mdm.mapping import CompiledMapping, compile_mapping, identity_mapping

Normalised = tuple[dict[str, Any], tuple[FieldError, ...]]
_MAPPING: CompiledMapping | None = None


def normalise_rows(mapping: CompiledMapping, rows: Sequence[dict[str, Any]]) -> list[Normalised]:
    """Map and normalise each row: (attributes, errors) per row, errors empty when valid."""
    domain = mapping.domain
    out: list[Normalised] = []
    for data in rows:
        values, errors = mapping.map_attributes(data)
        if errors:
            out.append(({}, tuple(errors)))
            continue
        attributes, problems = domain.normalise(values)
        out.append((attributes, tuple(problems)))
    return out


def worker_init(spec: dict[str, Any], domain: str, identity: bool) -> None:
    global _MAPPING
    _MAPPING = identity_mapping(domain) if identity else compile_mapping(spec, domain=domain)


def worker_normalise(rows: list[dict[str, Any]]) -> list[Normalised]:
    assert _MAPPING is not None, "worker_init was not called"
    return normalise_rows(_MAPPING, rows)
