"""How a golden record's provenance is stored: each distinct entry once.

A golden record's provenance says, per attribute, which source record gave the value, under
which rule, and which values it beat (:mod:`mdm.survivorship`). Most golden records have one
member, and then every attribute names the same record under the same rule: written out in
full, the provenance was three quarters of a golden row and most of what PostgreSQL parsed,
compressed and logged when a full match wrote 700k of them. It is stored packed::

    {"@": [entry, ...], "city": 0, "email": 0, "phone": 1, ...}

the distinct entries once, under ``"@"`` (no attribute can be named so), and each attribute
the position of its entry. The column is ``json`` on PostgreSQL (the text as written: no
``jsonb`` parse, and a packed document is small enough to stay uncompressed), ``text`` on
SQLite as every JSON field.

Readers get the full form: :class:`ProvenanceField` packs on the way in and unpacks on the
way out, and raw SQL readers call :func:`unpack`. A document without ``"@"`` is already in
the full form (rows written before migration ``mdm/0016``, history among them) and reads as
it is. :func:`pack` is canonical: the attributes in name order, the entries in the order
they are first named, so the same provenance always packs to the same document (compared as
``jsonb`` where survivorship recomputes in the database).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.db import models

MARK = "@"


def pack(provenance: Any) -> Any:
    """The stored form of a full provenance (anything else is returned as it is)."""
    if not isinstance(provenance, dict) or not provenance or MARK in provenance:
        return provenance
    entries: list[Any] = []
    positions: dict[bytes, int] = {}
    packed: dict[str, Any] = {}
    dumps = orjson.dumps
    for name in sorted(provenance):
        entry = provenance[name]
        key = dumps(entry)
        position = positions.get(key)
        if position is None:
            position = positions[key] = len(entries)
            entries.append(entry)
        packed[name] = position
    packed[MARK] = entries
    return packed


def unpack(stored: Any) -> Any:
    """The full provenance of a stored one (a document in the full form is returned as it
    is). Each attribute gets its own copy of a shared entry."""
    if not isinstance(stored, dict) or MARK not in stored:
        return stored
    entries = stored[MARK]
    return {
        name: dict(entries[position]) if isinstance(entries[position], dict) else entries[position]
        for name, position in stored.items()
        if name != MARK
    }


def dumps_packed(provenance: Any) -> str:
    """The stored form's JSON text (what COPY writes)."""
    return orjson.dumps(pack(provenance)).decode()


class ProvenanceField(models.JSONField):
    """A JSON field that stores a provenance packed (:func:`pack`) and reads it in full.

    ``json`` rather than ``jsonb`` on PostgreSQL: nothing queries inside a provenance, and
    ``jsonb``'s parse and larger binary form were most of the cost of writing a golden row.
    ``json`` has no equality operator: compare ``column::jsonb``.
    """

    def db_type(self, connection: Any) -> str | None:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def get_prep_value(self, value: Any) -> Any:
        return super().get_prep_value(pack(value))

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, str | bytes):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                return value
        return unpack(value)
