"""Data-quality checks: what each rule kind tests on a record.  Pure Python, no database.

A rule is one of five kinds, each a dimension of the data-quality page:

- ``completeness``: ``attribute`` has a value;
- ``validity``: ``attribute``'s value passes the attribute's own normaliser and validators
  today (a record stored before a validator was tightened fails it);
- ``uniqueness``: no other live record holds the same ``attribute`` value, within the same
  source system (``scope: "source"``, the default) or anywhere in the domain (``"domain"``);
- ``consistency`` between attributes: ``{"when": other, "equals": value}`` requires
  ``attribute`` to have a value whenever ``other`` has that value (any value when ``equals``
  is left out); ``{"not_after": other}`` requires ``attribute`` not to be later than
  ``other`` (dates or numbers) when both are present;
- ``freshness``: the record was updated in its source (else received by the hub) no more than
  ``max_age_days`` ago.

The service in ``mdm.services.quality`` reads records in chunks and hands them here; the
uniqueness counts are read for the whole domain at once, by the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from mdm.domains import UnknownDomainError, get_domain
from mdm.domains.base import NormalisationError, RecordContext, _is_empty

__all__ = [
    "KINDS",
    "CheckedRecord",
    "RuleSpec",
    "RuleSpecError",
    "check_rule",
    "rule_spec_errors",
    "value_key",
]

KINDS = ("completeness", "validity", "uniqueness", "consistency", "freshness")


class RuleSpecError(ValueError):
    """A rule that cannot be evaluated; ``errors`` maps a field to what to fix."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: int
    name: str
    domain: str
    kind: str
    attribute: str
    params: Mapping[str, Any]
    source_system_id: int | None = None


@dataclass(frozen=True, slots=True)
class CheckedRecord:
    id: int
    source_system_id: int
    attributes: Mapping[str, Any]
    updated_at: datetime


def value_key(value: Any) -> str | None:
    """A hashable, order-stable key for a JSON value; None for no value."""
    if _is_empty(value):
        return None
    if isinstance(value, str):
        return value.strip().casefold()
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def rule_spec_errors(
    *, domain: str, kind: str, attribute: str, params: Mapping[str, Any]
) -> dict[str, str]:
    """What is wrong with a rule, by field ({} when it can be evaluated)."""
    errors: dict[str, str] = {}
    try:
        dom = get_domain(domain)
    except UnknownDomainError as exc:
        return {"domain": str(exc)}
    names = dom.attribute_names
    if kind not in KINDS:
        return {"kind": f"Unknown kind {kind!r}; expected one of: {', '.join(KINDS)}."}
    if not isinstance(params, Mapping):
        return {"params": "Expected a JSON object."}
    if kind == "freshness":
        days = params.get("max_age_days")
        if not isinstance(days, int | float) or isinstance(days, bool) or days <= 0:
            errors["params"] = 'Freshness needs {"max_age_days": a positive number}.'
        if attribute:
            errors["attribute"] = "Freshness is about the whole record: leave the attribute empty."
        return errors
    if attribute not in names:
        errors["attribute"] = (
            f"Unknown attribute {attribute!r}; expected one of: {', '.join(names)}."
        )
    if kind == "uniqueness" and params.get("scope", "source") not in ("source", "domain"):
        errors["params"] = 'Uniqueness scope is "source" or "domain".'
    if kind == "consistency":
        other = params.get("when") or params.get("not_after")
        if bool(params.get("when")) == bool(params.get("not_after")):
            errors["params"] = (
                'Consistency needs {"when": attribute, "equals": value} '
                'or {"not_after": attribute}.'
            )
        elif other not in names:
            errors["params"] = f"Unknown attribute {other!r} in the consistency rule."
    return errors


def check_rule(
    rule: RuleSpec,
    records: Iterable[CheckedRecord],
    *,
    now: datetime,
    counts: Counter[tuple[int | None, str]] | None = None,
) -> Iterator[tuple[CheckedRecord, str | None]]:
    """Each record the rule applies to, with why it fails (None when it passes).

    ``counts`` (uniqueness only): how many live records hold each (scope, value key), the scope
    being the source system id or None for the whole domain."""
    attr = rule.attribute
    for record in records:
        if rule.source_system_id is not None and record.source_system_id != rule.source_system_id:
            continue
        yield record, _failure(rule, record, attr, now, counts)


def _failure(
    rule: RuleSpec,
    record: CheckedRecord,
    attr: str,
    now: datetime,
    counts: Counter[tuple[int | None, str]] | None,
) -> str | None:
    value = record.attributes.get(attr) if attr else None
    kind = rule.kind
    if kind == "completeness":
        return f"{attr} is empty" if _is_empty(value) else None
    if kind == "validity":
        if _is_empty(value):
            return None
        normalise = get_domain(rule.domain).attribute(attr).normalise
        context = RecordContext(raw=record.attributes, normalised=dict(record.attributes))
        try:
            normalise(value, context)
        except NormalisationError as exc:
            return exc.message
        return None
    if kind == "uniqueness":
        key = value_key(value)
        if key is None or counts is None:
            return None
        scope = record.source_system_id if rule.params.get("scope", "source") == "source" else None
        holders = counts.get((scope, key), 0)
        return f"{attr} {value!r} is held by {holders} records" if holders > 1 else None
    if kind == "consistency":
        if other := rule.params.get("when"):
            other_value = record.attributes.get(other)
            if _is_empty(other_value):
                return None
            if "equals" in rule.params and value_key(other_value) != value_key(
                rule.params["equals"]
            ):
                return None
            return (
                f"{attr} is empty although {other} is {other_value!r}" if _is_empty(value) else None
            )
        other = rule.params.get("not_after", "")
        other_value = record.attributes.get(other)
        if _is_empty(value) or _is_empty(other_value):
            return None
        try:
            later = bool(value > other_value)  # type: ignore[operator]
        except TypeError:
            return f"{attr} {value!r} cannot be compared with {other} {other_value!r}"
        return f"{attr} {value!r} is after {other} {other_value!r}" if later else None
    if kind == "freshness":
        max_age = timedelta(days=float(rule.params["max_age_days"]))
        age = now - record.updated_at
        return f"last updated {age.days} days ago (limit {max_age.days})" if age > max_age else None
    raise RuleSpecError({"kind": f"Unknown kind {kind!r}."})
