"""Survivorship: which member record gives each golden attribute, and why.

Pure functions over plain data.  The default rule for every attribute is a chain of
strategies tried in order until one leaves a single candidate: source priority (lower
``priority`` number wins), then the most recent value (source-updated time, else received
time), then the most frequent value, then the most complete record, with the lowest record
id as the final tie-breaker.  Attributes of one group (an address) survive together from
one record, so a street never comes from a different record than its postal code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mdm.domains.base import Domain

DEFAULT_CHAIN = ("source_priority", "most_recent", "most_frequent", "most_complete")


@dataclass(frozen=True)
class Member:
    record_id: int
    source: str
    source_key: str
    priority: int
    updated_at: datetime
    attributes: Mapping[str, Any]


Strategy = Callable[[list[Member], Sequence[str], Sequence[Member]], list[Member]]


def _values(member: Member, names: Sequence[str]) -> tuple[Any, ...]:
    return tuple(repr(member.attributes.get(n)) for n in names)


def _best(candidates: list[Member], key: Callable[[Member], Any]) -> list[Member]:
    top = max(key(c) for c in candidates)
    return [c for c in candidates if key(c) == top]


def _source_priority(
    cands: list[Member], names: Sequence[str], all_: Sequence[Member]
) -> list[Member]:
    return _best(cands, lambda m: -m.priority)


def _most_recent(cands: list[Member], names: Sequence[str], all_: Sequence[Member]) -> list[Member]:
    return _best(cands, lambda m: m.updated_at)


def _most_frequent(
    cands: list[Member], names: Sequence[str], all_: Sequence[Member]
) -> list[Member]:
    counts = Counter(_values(m, names) for m in all_ if any(n in m.attributes for n in names))
    return _best(cands, lambda m: counts[_values(m, names)])


def _most_complete(
    cands: list[Member], names: Sequence[str], all_: Sequence[Member]
) -> list[Member]:
    return _best(cands, lambda m: len(m.attributes))


STRATEGIES: dict[str, Strategy] = {
    "source_priority": _source_priority,
    "most_recent": _most_recent,
    "most_frequent": _most_frequent,
    "most_complete": _most_complete,
}


_GROUPS: dict[int, tuple[Domain, tuple[tuple[str, ...], ...]]] = {}


def _groups(domain: Domain) -> tuple[tuple[str, ...], ...]:
    """The names of each attribute group of ``domain`` (a lone attribute is a group of
    one), in declaration order; computed once per domain: ``survive`` runs per golden."""
    cached = _GROUPS.get(id(domain))
    if cached is None or cached[0] is not domain:
        groups: list[tuple[str, ...]] = []
        done: set[str] = set()
        for attribute in domain.attributes:
            if attribute.name in done:
                continue
            names = (
                tuple(a.name for a in domain.attributes if a.group == attribute.group)
                if attribute.group
                else (attribute.name,)
            )
            done.update(names)
            groups.append(names)
        cached = _GROUPS[id(domain)] = (domain, tuple(groups))
    return cached[1]


def survive(
    domain: Domain, members: Sequence[Member], chain: Sequence[str] = DEFAULT_CHAIN
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The golden attributes of ``members`` and the provenance of each.

    Deterministic for the same members whatever their order.  Members without a value for
    an attribute (or for every attribute of its group) do not compete for it.
    """
    if len(members) == 1:
        return _survive_alone(domain, members[0])
    attributes: dict[str, Any] = {}
    provenance: dict[str, dict[str, Any]] = {}
    for names in _groups(domain):
        if len(names) == 1:
            candidates = [m for m in members if names[0] in m.attributes]
        else:
            candidates = [m for m in members if any(n in m.attributes for n in names)]
        if not candidates:
            continue
        # A lone candidate competes with nobody: no need to compare values.
        competitors = len({_values(m, names) for m in candidates}) if len(candidates) > 1 else 1
        rule = "only value"
        for strategy in chain:
            if len(candidates) == 1:
                break
            narrowed = STRATEGIES[strategy](candidates, names, members)
            if len(narrowed) < len(candidates):
                rule = strategy
            candidates = narrowed
        if len(candidates) > 1:
            if len({_values(m, names) for m in candidates}) > 1:
                rule = "lowest record id"
            candidates = [min(candidates, key=lambda m: m.record_id)]
        elif rule == "only value" and competitors > 1:
            rule = chain[0]
        winner = candidates[0]
        for name in names:
            if name in winner.attributes:
                attributes[name] = winner.attributes[name]
                provenance[name] = {
                    "record": winner.record_id,
                    "source": winner.source,
                    "source_key": winner.source_key,
                    "rule": rule,
                    "competitors": competitors,
                }
    return attributes, provenance


def _survive_alone(
    domain: Domain, member: Member
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """What ``survive`` gives for one member, without its comparisons: a lone candidate
    wins every attribute it has a value for as the "only value" (most golden records of a
    full match have a single member, so this is most of its survivorship time)."""
    attributes: dict[str, Any] = {}
    provenance: dict[str, dict[str, Any]] = {}
    values = member.attributes
    for names in _groups(domain):
        for name in names:
            if name in values:
                attributes[name] = values[name]
                provenance[name] = {
                    "record": member.record_id,
                    "source": member.source,
                    "source_key": member.source_key,
                    "rule": "only value",
                    "competitors": 1,
                }
    return attributes, provenance
