"""What the right to erasure needs from every app: the subject, scrubbing, and the hooks.

``mdm.services.erasure.erasure_request_file`` erases a person from mdm's own tables, then
calls every hook registered here, in the same transaction, with an ``ErasureSubject``.
``matching``, ``stewardship`` and ``sync`` register theirs in ``AppConfig.ready`` (mdm
imports none of them).  A hook returns the number of rows it changed, by table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import models
from django.db.models.functions import Cast

ERASED = "[erased]"


@dataclass(frozen=True)
class ErasureSubject:
    """The person being erased: their records and golden records, and ``needles``, the
    personal values (lower-cased) to find wherever they were copied."""

    request_id: int
    domain: str
    record_ids: frozenset[int]
    golden_ids: frozenset[int]
    needles: tuple[str, ...]

    def mentions(self, value: Any) -> bool:
        if value is None or value == "" or value == {} or value == []:
            return False
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        lowered = text.lower()
        return any(n in lowered for n in self.needles)

    def scrub(self, value: Any) -> Any:
        """``value`` with every string that mentions the subject replaced by ``[erased]``
        (keys and other values kept)."""
        if isinstance(value, str):
            return ERASED if self.mentions(value) else value
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        return value

    def mentioning(self, qs: models.QuerySet[Any], field: str) -> models.QuerySet[Any]:
        """Rows of ``qs`` whose ``field`` (text or JSON) contains a needle: a database-side
        filter first, so only the few rows that mention the subject come back."""
        if not self.needles:
            return qs.none()
        alias = f"_erasure_{field}"
        qs = qs.annotate(**{alias: Cast(field, models.TextField())})
        condition = models.Q()
        for needle in self.needles:
            for form in _forms(needle):
                condition |= models.Q(**{f"{alias}__icontains": form})
        return qs.filter(condition)

    def scrub_rows(self, qs: models.QuerySet[Any], fields: Iterable[str]) -> int:
        """Scrub ``fields`` of every row of ``qs`` that mentions the subject, with
        ``QuerySet.update`` (no history row, no signal).  Returns the rows changed."""
        fields = list(fields)
        ids: set[Any] = set()
        for field in fields:
            ids |= set(self.mentioning(qs, field).values_list("pk", flat=True))
        changed = 0
        for row in qs.model._default_manager.filter(pk__in=ids).values("pk", *fields):
            new = {f: self.scrub(row[f]) for f in fields}
            qs.model._default_manager.filter(pk=row["pk"]).update(**new)
            changed += 1
        return changed


def _forms(needle: str) -> set[str]:
    # JSON on SQLite is stored ASCII-escaped ("\u00e9"); PostgreSQL's jsonb keeps "é".
    escaped = orjson.dumps(needle).decode()[1:-1]
    ascii_escaped = needle.encode("ascii", "backslashreplace").decode().replace("\\x", "\\u00")
    return {needle, escaped, ascii_escaped}


ErasureHook = Callable[[ErasureSubject], dict[str, int]]
_hooks: dict[str, ErasureHook] = {}


def erasure_hook_register(name: str, hook: ErasureHook) -> None:
    """Register ``hook`` (idempotent by name): called by every erasure, in its transaction."""
    _hooks[name] = hook


def erasure_hooks() -> dict[str, ErasureHook]:
    return dict(_hooks)
