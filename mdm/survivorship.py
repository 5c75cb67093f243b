"""Survivorship: which member record gives each golden attribute, and why.

The rules engine.  A domain's rule set (``RuleSet``) says, for every attribute or attribute
group, which strategy picks the surviving value and which tie-breakers settle what the
strategy leaves open; the lowest record id is always the last tie-breaker, so the result is
deterministic whatever the order of the members.  Attributes of one group (an address)
survive together from one record, so a street never comes from a different record than its
postal code.

Strategies (``Rule.strategy``):

- ``source_priority``: the most trusted source wins.  ``sources`` is the ordered list (most
  trusted first); sources missing from it rank after the listed ones, by their
  ``SourceSystem.priority`` number (lower wins).  An empty list ranks by that number alone.
  With ``decay_half_life_days`` a source's trust fades with the age of its value: trust is
  ``1 / (1 + rank)`` (rank 0 for the most trusted source among the candidates), halved for
  every half-life by which the value is older than the newest candidate value.  Age is
  counted from the newest value, not from the clock, so a golden record changes only when
  its data does.
- ``most_recent``: the newest value by source-updated time (else received time).
- ``most_frequent``: the value most members agree on.
- ``most_complete``: the value of the member with the most attributes.
- ``longest``: the longest value (for a group, the longest values in total).
- ``validated``: only values that pass the attribute's validation today (a stored value may
  predate a stricter validator); with none the attribute stays empty.
- ``preferred_source``: a fixed source (``sources`` holds exactly one); when it has no value
  the tie-breakers choose among the others.
- ``aggregate``: the union of every member's values as a list (e-mails, phones), the value
  of the best member (by the tie-breakers) first.  Not for groups.

Everything here is pure Python over plain data, except ``survivorship_rules_active`` which
reads the active rule set of a domain from the database.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from mdm.domains import get_domain
from mdm.domains.base import Domain, NormalisationError, RecordContext

STEWARD_SOURCE = "aurum-steward"  # steward corrections; may be placed in any source list

STRATEGY_LABELS: dict[str, str] = {
    "source_priority": "Source priority",
    "most_recent": "Most recent",
    "most_frequent": "Most frequent",
    "most_complete": "Most complete record",
    "longest": "Longest value",
    "validated": "Validated value only",
    "preferred_source": "Preferred source",
    "aggregate": "Aggregate (union of values)",
}
STRATEGY_NAMES = tuple(STRATEGY_LABELS)
TIE_BREAKER_NAMES = ("source_priority", "most_recent", "most_frequent", "most_complete", "longest")
DEFAULT_TIE_BREAKERS = ("most_recent", "most_frequent", "most_complete")
LAST_TIE_BREAKER = "lowest record id"
ONLY_VALUE = "only value"
MAX_COMPETITORS = 50  # provenance keeps at most this many beaten values per attribute
_DAY = 86400.0


@dataclass(frozen=True)
class Member:
    record_id: int
    source: str
    source_key: str
    priority: int
    updated_at: datetime
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class Rule:
    """How one attribute, or one group of attributes, survives."""

    strategy: str = "source_priority"
    sources: tuple[str, ...] = ()
    decay_half_life_days: float | None = None
    tie_breakers: tuple[str, ...] = DEFAULT_TIE_BREAKERS

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "sources": list(self.sources),
            "decay_half_life_days": self.decay_half_life_days,
            "tie_breakers": list(self.tie_breakers),
        }


@dataclass(frozen=True)
class Unit:
    """What survives together: one attribute, or a group (``name`` is the group's)."""

    name: str
    attributes: tuple[str, ...]
    rule: Rule
    is_group: bool = False


@dataclass(frozen=True)
class RuleSet:
    """Every unit of a domain with its rule, in the domain's attribute order."""

    domain: str
    units: tuple[Unit, ...]
    version: int = 0
    _validators: Mapping[str, Callable[[Any, RecordContext], Any]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def groups(self) -> dict[str, list[str]]:
        return {u.name: list(u.attributes) for u in self.units if u.is_group}

    def as_spec(self) -> dict[str, Any]:
        """The full, explicit spec: what ``rules_from_spec`` reads back to the same rules."""
        return {
            "groups": self.groups(),
            "rules": {u.name: u.rule.as_dict() for u in self.units},
        }

    def unit_of(self, attribute: str) -> Unit:
        for unit in self.units:
            if attribute in unit.attributes:
                return unit
        raise KeyError(attribute)


class RulesError(ValueError):
    """A rule spec that cannot be used; ``errors`` maps a field path to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        first = next(iter(errors.items()))
        super().__init__(f"{first[0]}: {first[1][0]}")


# --- Reading and checking a spec ---------------------------------------------------------


def _domain_groups(domain: Domain) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for attribute in domain.attributes:
        if attribute.group:
            groups.setdefault(attribute.group, []).append(attribute.name)
    return groups


def default_spec(domain: Domain) -> dict[str, Any]:
    """The domain's declared default (``Domain.survivorship``), groups from its attributes."""
    declared = dict(domain.survivorship or {})
    return {
        "groups": declared.get("groups", _domain_groups(domain)),
        "rules": dict(declared.get("rules", {})),
    }


def rules_from_spec(
    domain: Domain,
    spec: Mapping[str, Any],
    *,
    version: int = 0,
    known_sources: Iterable[str] | None = None,
) -> RuleSet:
    """Check ``spec`` and build its rule set; ``RulesError`` names every bad field.

    ``spec`` is ``{"groups": {name: [attribute, ...]}, "rules": {attribute or group: rule}}``
    where a rule is ``{"strategy", "sources", "decay_half_life_days", "tie_breakers"}`` (all
    but ``strategy`` optional).  Without ``groups`` the domain's groups apply.  A unit
    without a rule gets the domain's default rule, else the built-in default (source
    priority, then most recent, most frequent, most complete).  ``known_sources`` (codes)
    checks source lists; ``aurum-steward`` is always allowed.
    """
    errors: dict[str, list[str]] = {}

    def err(path: str, message: str) -> None:
        errors.setdefault(path, []).append(message)

    if not isinstance(spec, Mapping):
        raise RulesError({"rules": ["Expected an object with 'groups' and 'rules'."]})
    for key in spec:
        if key not in ("groups", "rules"):
            err(key, "Unknown field; expected 'groups' and 'rules'.")
    names = set(domain.attribute_names)
    groups_raw = spec.get("groups", _domain_groups(domain))
    groups: dict[str, tuple[str, ...]] = {}
    grouped: dict[str, str] = {}
    if not isinstance(groups_raw, Mapping):
        err("groups", "Expected an object: group name -> list of attributes.")
        groups_raw = {}
    for gname, members in groups_raw.items():
        path = f"groups.{gname}"
        if not str(gname).isidentifier():
            err(path, "A group name must be an identifier (letters, digits, underscores).")
            continue
        if not isinstance(members, list) or not members:
            err(path, "Expected a non-empty list of attribute names.")
            continue
        if gname in names and gname not in members:
            err(path, f"{gname!r} is an attribute outside the group; name the group otherwise.")
            continue
        ok: list[str] = []
        for member in members:
            if member not in names:
                err(path, f"Unknown attribute {member!r}; expected one of: {', '.join(names)}.")
            elif member in grouped:
                err(path, f"{member!r} is already in group {grouped[member]!r}.")
            elif member in ok:
                err(path, f"{member!r} is listed twice.")
            else:
                ok.append(member)
        for member in ok:
            grouped[member] = gname
        groups[gname] = tuple(a for a in domain.attribute_names if a in ok)

    rules_raw = spec.get("rules", {})
    if not isinstance(rules_raw, Mapping):
        err("rules", "Expected an object: attribute or group name -> rule.")
        rules_raw = {}
    defaults = default_spec(domain)["rules"]
    sources_ok = None if known_sources is None else {*known_sources, STEWARD_SOURCE}
    rules: dict[str, Rule] = {}
    for target, raw in rules_raw.items():
        path = f"rules.{target}"
        if target in grouped and target not in groups:
            err(path, f"{target!r} is in group {grouped[target]!r}; set the rule of the group.")
            continue
        if target not in names and target not in groups:
            err(path, "Unknown attribute or group.")
            continue
        rule = _rule_from(raw, path, err, sources_ok, is_group=target in groups)
        if rule is not None:
            rules[target] = rule
    if errors:
        raise RulesError(errors)

    units: list[Unit] = []
    seen: set[str] = set()
    for attribute in domain.attribute_names:
        gname = grouped.get(attribute)
        key = gname or attribute
        if key in seen:
            continue
        seen.add(key)
        rule = rules.get(key)
        if rule is None:
            default = defaults.get(key)
            rule = Rule() if default is None else _rule_from(default, key, err, None, bool(gname))
        if rule is None:
            raise RulesError(errors)  # the domain module declares a bad default
        attrs = groups[gname] if gname else (attribute,)
        units.append(Unit(key, attrs, rule, is_group=gname is not None))
    validators = {
        a.name: a.normalise
        for a in domain.attributes
        if any(u.rule.strategy == "validated" and a.name in u.attributes for u in units)
    }
    return RuleSet(domain.code, tuple(units), version, validators)


def _rule_from(
    raw: Any,
    path: str,
    err: Callable[[str, str], None],
    sources_ok: set[str] | None,
    is_group: bool,
) -> Rule | None:
    if not isinstance(raw, Mapping):
        err(path, "Expected an object with 'strategy' and its options.")
        return None
    bad = False
    for key in raw:
        if key not in ("strategy", "sources", "decay_half_life_days", "tie_breakers"):
            err(
                f"{path}.{key}",
                "Unknown field; expected strategy, sources, decay_half_life_days, tie_breakers.",
            )
            bad = True
    strategy = raw.get("strategy")
    if strategy not in STRATEGY_LABELS:
        err(
            f"{path}.strategy",
            f"Unknown strategy {strategy!r}; expected one of: {', '.join(STRATEGY_NAMES)}.",
        )
        return None
    sources = raw.get("sources") or []
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        err(f"{path}.sources", "Expected a list of source system codes.")
        return None
    for code in sources:
        if sources_ok is not None and code not in sources_ok:
            err(f"{path}.sources", f"Unknown source system {code!r}.")
            bad = True
    if len(set(sources)) != len(sources):
        err(f"{path}.sources", "A source is listed twice.")
        bad = True
    if strategy == "preferred_source" and len(sources) != 1:
        err(f"{path}.sources", "The preferred source strategy takes exactly one source.")
        bad = True
    if strategy not in ("source_priority", "preferred_source") and sources:
        err(f"{path}.sources", f"Sources are not used by the {strategy} strategy.")
        bad = True
    decay = raw.get("decay_half_life_days")
    if decay is not None:
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not decay > 0:
            err(f"{path}.decay_half_life_days", "Expected a positive number of days, or null.")
            bad = True
        elif not math.isfinite(decay):
            err(f"{path}.decay_half_life_days", "Expected a finite number of days.")
            bad = True
        elif strategy != "source_priority":
            err(f"{path}.decay_half_life_days", "Trust decay applies to source priority only.")
            bad = True
    if strategy == "aggregate" and is_group:
        err(f"{path}.strategy", "A group survives from one record; it cannot be aggregated.")
        bad = True
    tie_raw = raw.get("tie_breakers", list(DEFAULT_TIE_BREAKERS))
    if not isinstance(tie_raw, list):
        err(f"{path}.tie_breakers", "Expected a list of tie-breakers.")
        return None
    for name in tie_raw:
        if name not in TIE_BREAKER_NAMES:
            err(
                f"{path}.tie_breakers",
                f"Unknown tie-breaker {name!r}; expected one of: "
                f"{', '.join(TIE_BREAKER_NAMES)} (the lowest record id always comes last).",
            )
            bad = True
    if len(set(tie_raw)) != len(tie_raw):
        err(f"{path}.tie_breakers", "A tie-breaker is listed twice.")
        bad = True
    if bad:
        return None
    return Rule(
        strategy=strategy,
        sources=tuple(sources),
        decay_half_life_days=float(decay) if decay is not None else None,
        tie_breakers=tuple(tie_raw),
    )


@cache
def default_rules(domain_code: str) -> RuleSet:
    """The domain's default rule set (version 0), used until an admin saves one."""
    domain = get_domain(domain_code)
    return rules_from_spec(domain, default_spec(domain))


def survivorship_rules_active(*, domain: str) -> RuleSet:
    """The rule set in force for ``domain``: the saved one, else the domain's default."""
    from mdm.models import SurvivorshipRuleSet

    row = SurvivorshipRuleSet.objects.filter(domain=domain).values("spec", "version").first()
    if row is None:
        return default_rules(domain)
    return rules_from_spec(get_domain(domain), row["spec"], version=row["version"])


# --- The engine ----------------------------------------------------------------------------


@dataclass
class _Context:
    names: tuple[str, ...]
    rule: Rule
    members: Sequence[Member]
    validators: Mapping[str, Callable[[Any, RecordContext], Any]]
    _counts: Counter[Any] | None = None

    def key(self, member: Member) -> Any:
        """What makes two members' values the same (hashable)."""
        if len(self.names) == 1:
            return _hashable(member.attributes.get(self.names[0]))
        return _key(member, self.names)

    def counts(self) -> Counter[Any]:
        if self._counts is None:
            self._counts = Counter(self.key(m) for m in self.members if _has(m, self.names))
        return self._counts


def _has(member: Member, names: Sequence[str]) -> bool:
    attributes = member.attributes
    return any(n in attributes for n in names)


def _hashable(value: Any) -> Any:
    if value.__class__ is list:
        return tuple(_hashable(v) for v in value)
    if value.__class__ is dict:
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _key(member: Member, names: Sequence[str]) -> tuple[Any, ...]:
    attributes = member.attributes
    return tuple(_hashable(attributes.get(n)) for n in names)


def _best(candidates: list[Member], key: Callable[[Member], Any]) -> list[Member]:
    keys = [key(c) for c in candidates]
    top = max(keys)
    return [c for c, k in zip(candidates, keys, strict=True) if k == top]


@cache
def _trust_key(rule: Rule) -> Callable[[Member], tuple[int, int]]:
    """(rank in the rule's list, system priority number): lower is more trusted."""
    listed = {code: i for i, code in enumerate(rule.sources)}
    unlisted = len(listed)
    return lambda m: (listed.get(m.source, unlisted), m.priority)


@cache
def _trust_score(rule: Rule) -> Callable[[Member], tuple[int, int]]:
    """The same, negated: higher is more trusted (what ``_best`` keeps)."""
    listed = {code: -i for i, code in enumerate(rule.sources)}
    unlisted = -len(listed)
    return lambda m: (listed.get(m.source, unlisted), -m.priority)


def _source_priority(cands: list[Member], ctx: _Context) -> list[Member]:
    if ctx.rule.decay_half_life_days is None:
        return _best(cands, _trust_score(ctx.rule))
    trust = _trust_key(ctx.rule)
    ranks = {k: i for i, k in enumerate(sorted({trust(m) for m in cands}))}
    newest = max(m.updated_at for m in cands)
    half_life = ctx.rule.decay_half_life_days * _DAY

    def score(m: Member) -> float:
        age = (newest - m.updated_at).total_seconds()
        return round(0.5 ** (age / half_life) / (1 + ranks[trust(m)]), 12)

    return _best(cands, score)


def _most_recent(cands: list[Member], ctx: _Context) -> list[Member]:
    return _best(cands, lambda m: m.updated_at)


def _most_frequent(cands: list[Member], ctx: _Context) -> list[Member]:
    counts = ctx.counts()
    key = ctx.key
    return _best(cands, lambda m: counts[key(m)])


def _most_complete(cands: list[Member], ctx: _Context) -> list[Member]:
    return _best(cands, lambda m: len(m.attributes))


def _length(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, list):
        return sum(len(str(v)) for v in value)
    return len(str(value))


def _longest(cands: list[Member], ctx: _Context) -> list[Member]:
    return _best(cands, lambda m: sum(_length(m.attributes.get(n)) for n in ctx.names))


def _is_valid(member: Member, names: Sequence[str], validators: Mapping[str, Any]) -> bool:
    attributes = member.attributes
    context = RecordContext(attributes, dict(attributes))
    for name in names:
        if name not in attributes:
            continue
        validate = validators.get(name)
        if validate is None:
            continue
        try:
            if validate(attributes[name], context) != attributes[name]:
                return False
        except (NormalisationError, TypeError, ValueError):
            return False
    return True


def _validated(cands: list[Member], ctx: _Context) -> list[Member]:
    return [m for m in cands if _is_valid(m, ctx.names, ctx.validators)]


def _preferred_source(cands: list[Member], ctx: _Context) -> list[Member]:
    preferred = [m for m in cands if m.source in ctx.rule.sources]
    return preferred or cands


_STEPS: dict[str, Callable[[list[Member], _Context], list[Member]]] = {
    "source_priority": _source_priority,
    "most_recent": _most_recent,
    "most_frequent": _most_frequent,
    "most_complete": _most_complete,
    "longest": _longest,
    "validated": _validated,
    "preferred_source": _preferred_source,
}


def _pick(cands: list[Member], ctx: _Context, *, apply_strategy: bool) -> tuple[Member | None, str]:
    """The winning member and the step that decided (a strategy or tie-breaker name)."""
    decided = ""
    steps = ctx.rule.tie_breakers
    if apply_strategy:
        steps = (ctx.rule.strategy, *steps)
    must_filter = ctx.rule.strategy == "validated" and apply_strategy
    for i, step in enumerate(steps):
        if not cands or (len(cands) == 1 and not (must_filter and i == 0)):
            break
        narrowed = _STEPS[step](cands, ctx)
        if len(narrowed) < len(cands):
            decided = step
        cands = narrowed
    if not cands:
        return None, ""
    if len(cands) > 1:
        if len({ctx.key(m) for m in cands}) > 1:
            decided = LAST_TIE_BREAKER
        return min(cands, key=lambda m: m.record_id), decided
    return cands[0], decided


def _entry(member: Member, value: Any) -> dict[str, Any]:
    return {"value": value, "source": member.source, "source_key": member.source_key}


def _candidates(
    ordered: Sequence[Member], present: set[str], names: tuple[str, ...]
) -> list[Member]:
    """The members holding a value for ``names`` (any of them, for a group), in order."""
    if len(names) == 1:
        only = names[0]
        if only not in present:
            return []
        return [m for m in ordered if only in m.attributes]
    if present.isdisjoint(names):
        return []
    return [m for m in ordered if not m.attributes.keys().isdisjoint(names)]


def survive(
    domain: Domain, members: Sequence[Member], rules: RuleSet | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The golden attributes of ``members`` and the provenance of each, in one pass.

    ``rules`` defaults to the domain's default rule set (no database read).  Deterministic
    for the same members whatever their order.  Members without a value for an attribute
    (or for every attribute of its group) do not compete for it.  Provenance per attribute:
    ``record``, ``source``, ``source_key`` of the winner, ``rule`` (the strategy or
    tie-breaker that decided, "only value" when nothing competed, "lowest record id" for a
    full tie), ``strategy`` (the configured one) and ``competitors``: the values it beat,
    each ``{"value", "source", "source_key"}``.  The rule version is not part of it, so a
    new rule version rewrites only the golden records whose outcome changes (the history
    row's change reason names the version).
    """
    if rules is None:
        rules = default_rules(domain.code)
    attributes: dict[str, Any] = {}
    provenance: dict[str, dict[str, Any]] = {}
    ordered = sorted(members, key=lambda m: m.record_id) if len(members) > 1 else members
    present: set[str] = set()
    for m in ordered:
        present.update(m.attributes)
    for unit in rules.units:
        names = unit.attributes
        candidates = _candidates(ordered, present, names)
        if not candidates:
            continue
        rule = unit.rule
        if len(candidates) == 1 and rule.strategy not in ("validated", "aggregate"):
            # The common case of a lone value: nothing to choose, nothing beaten.
            winner = candidates[0]
            for name in names:
                if name in winner.attributes:
                    attributes[name] = winner.attributes[name]
                    provenance[name] = _provenance(winner, ONLY_VALUE, rule.strategy, [])
            continue
        ctx = _Context(names, rule, ordered, rules._validators)
        if rule.strategy == "aggregate":
            _aggregate(unit, candidates, ctx, attributes, provenance)
            continue
        distinct = len({ctx.key(m) for m in candidates})
        picked, decided = _pick(candidates, ctx, apply_strategy=True)
        if picked is None:
            continue
        if distinct == 1 and rule.strategy != "validated":
            decided = ONLY_VALUE
        elif not decided:
            decided = rule.strategy if distinct > 1 else ONLY_VALUE
        _write_unit(picked, decided, rule.strategy, names, candidates, attributes, provenance)
    return attributes, provenance


def survive_fast(
    domain: Domain, members: Sequence[Member], rules: RuleSet | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``survive``, faster: the same attributes and provenance for the same arguments.

    What a full match run calls once per golden record.  A lone member (most golden
    records) needs no competition: every value it has is an "only value" (a validated
    unit still checks it, an aggregate still lists it).  Between several members each
    candidate's value key is computed once per unit and the strategy and tie-breakers
    narrow a list of positions by plain scores; trust decay and the longest value use
    ``survive``'s own steps, and validated and aggregate units its own code.
    ``tests/mdm/test_survivorship_fast.py`` compares both on generated clusters.
    """
    if rules is None:
        rules = default_rules(domain.code)
    if len(members) == 1:
        return _survive_one(members[0], rules)
    return _survive_many(members, rules)


def _survive_one(
    member: Member, rules: RuleSet
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    attributes: dict[str, Any] = {}
    provenance: dict[str, dict[str, Any]] = {}
    values = member.attributes
    for unit in rules.units:
        names = unit.attributes
        if len(names) == 1:
            if names[0] not in values:
                continue
            present: Sequence[str] = names
        else:
            present = [n for n in names if n in values]
            if not present:
                continue
        strategy = unit.rule.strategy
        if strategy == "aggregate":
            (name,) = names
            _aggregate_one(member, name, attributes, provenance)
            continue
        if strategy == "validated" and not _is_valid(member, names, rules._validators):
            continue
        for name in present:
            attributes[name] = values[name]
            provenance[name] = _provenance(member, ONLY_VALUE, strategy, [])
    return attributes, provenance


def _aggregate_one(
    member: Member, name: str, attributes: dict[str, Any], provenance: dict[str, dict[str, Any]]
) -> None:
    """``_aggregate`` of a lone member: its values in order, each once."""
    raw = member.attributes[name]
    values: list[Any] = []
    contributors: list[dict[str, Any]] = []
    for value in raw if isinstance(raw, list) else [raw]:
        if value not in values:
            values.append(value)
            contributors.append(_entry(member, value))
    attributes[name] = values
    provenance[name] = {
        "record": member.record_id,
        "source": member.source,
        "source_key": member.source_key,
        "rule": "aggregate",
        "strategy": "aggregate",
        "competitors": [],
        "contributors": contributors[:MAX_COMPETITORS],
    }


def _value_key(value: Any) -> Any:
    cls = value.__class__
    if cls is list or cls is dict:
        return _hashable(value)
    return value


def _survive_many(
    members: Sequence[Member], rules: RuleSet
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    attributes: dict[str, Any] = {}
    provenance: dict[str, dict[str, Any]] = {}
    ordered = sorted(members, key=lambda m: m.record_id)
    present: set[str] = set()
    for m in ordered:
        present.update(m.attributes)
    # When the candidates agree on a unit's value, the winner depends on the rule and on
    # who the candidates are, not on the value: units of the same rule and candidates share it.
    agreed: dict[tuple[Rule, tuple[int, ...]], Member] = {}
    for unit in rules.units:
        names = unit.attributes
        single = len(names) == 1
        candidates = _candidates(ordered, present, names)
        if not candidates:
            continue
        rule = unit.rule
        strategy = rule.strategy
        if len(candidates) == 1 and strategy not in ("validated", "aggregate"):
            winner = candidates[0]
            for name in names:
                if name in winner.attributes:
                    attributes[name] = winner.attributes[name]
                    provenance[name] = _provenance(winner, ONLY_VALUE, strategy, [])
            continue
        if strategy in ("validated", "aggregate"):
            ctx = _Context(names, rule, ordered, rules._validators)
            if strategy == "aggregate":
                _aggregate(unit, candidates, ctx, attributes, provenance)
            else:
                _survive_picked(names, rule, candidates, ctx, attributes, provenance)
            continue
        if single:
            keys = [_value_key(m.attributes.get(names[0])) for m in candidates]
        else:
            keys = [_key(m, names) for m in candidates]
        if len(set(keys)) == 1:
            who = (rule, tuple(m.record_id for m in candidates))
            winner = agreed.get(who)  # type: ignore[assignment]
            if winner is None:
                winner, _ = _pick_fast(candidates, keys, rule, names, ordered, rules)
                agreed[who] = winner
            decided = ONLY_VALUE
        else:
            winner, decided = _pick_fast(candidates, keys, rule, names, ordered, rules)
            if not decided:
                decided = strategy
        _write_unit(winner, decided, strategy, names, candidates, attributes, provenance)
    return attributes, provenance


def _pick_fast(
    candidates: list[Member],
    keys: list[Any],
    rule: Rule,
    names: tuple[str, ...],
    ordered: Sequence[Member],
    rules: RuleSet,
) -> tuple[Member, str]:
    """``_pick`` with the strategy applied, for any strategy but validated and aggregate:
    positions in ``candidates`` (sorted by record id) narrowed step by step."""
    positions = list(range(len(candidates)))
    decided = ""
    for step in (rule.strategy, *rule.tie_breakers):
        if len(positions) == 1:
            break
        if step == "most_recent":
            scores: Any = [candidates[i].updated_at for i in positions]
        elif step == "most_complete":
            scores = [len(candidates[i].attributes) for i in positions]
        elif step == "most_frequent":
            counts = Counter(keys)
            scores = [counts[keys[i]] for i in positions]
        elif step == "source_priority" and rule.decay_half_life_days is None:
            trust = _trust_score(rule)
            scores = [trust(candidates[i]) for i in positions]
        elif step == "preferred_source":
            narrowed = [i for i in positions if candidates[i].source in rule.sources]
            if narrowed and len(narrowed) < len(positions):
                decided = step
                positions = narrowed
            continue
        else:  # trust decay, longest: survive's own steps on the members left
            ctx = _Context(names, rule, ordered, rules._validators)
            kept = {id(m) for m in _STEPS[step]([candidates[i] for i in positions], ctx)}
            narrowed = [i for i in positions if id(candidates[i]) in kept]
            if len(narrowed) < len(positions):
                decided = step
            positions = narrowed
            continue
        top = max(scores)
        narrowed = [i for i, score in zip(positions, scores, strict=True) if score == top]
        if len(narrowed) < len(positions):
            decided = step
        positions = narrowed
    if len(positions) > 1 and len({keys[i] for i in positions}) > 1:
        decided = LAST_TIE_BREAKER
    return candidates[positions[0]], decided


def _survive_picked(
    names: tuple[str, ...],
    rule: Rule,
    candidates: list[Member],
    ctx: _Context,
    attributes: dict[str, Any],
    provenance: dict[str, dict[str, Any]],
) -> None:
    """``survive``'s own handling of one unit between several candidates."""
    distinct = len({ctx.key(m) for m in candidates})
    picked, decided = _pick(candidates, ctx, apply_strategy=True)
    if picked is None:
        return
    if distinct == 1 and rule.strategy != "validated":
        decided = ONLY_VALUE
    elif not decided:
        decided = rule.strategy if distinct > 1 else ONLY_VALUE
    _write_unit(picked, decided, rule.strategy, names, candidates, attributes, provenance)


def _write_unit(
    winner: Member,
    decided: str,
    strategy: str,
    names: tuple[str, ...],
    candidates: list[Member],
    attributes: dict[str, Any],
    provenance: dict[str, dict[str, Any]],
) -> None:
    for name in names:
        if name not in winner.attributes:
            continue
        value = winner.attributes[name]
        beaten = [
            _entry(m, m.attributes[name])
            for m in candidates
            if m is not winner and name in m.attributes and m.attributes[name] != value
        ]
        attributes[name] = value
        provenance[name] = _provenance(winner, decided, strategy, beaten[:MAX_COMPETITORS])


def _provenance(
    winner: Member, decided: str, strategy: str, competitors: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "record": winner.record_id,
        "source": winner.source,
        "source_key": winner.source_key,
        "rule": decided,
        "strategy": strategy,
        "competitors": competitors,
    }


def _aggregate(
    unit: Unit,
    candidates: list[Member],
    ctx: _Context,
    attributes: dict[str, Any],
    provenance: dict[str, dict[str, Any]],
) -> None:
    # Members in tie-breaker order, best first: the best member's value leads the list.
    remaining = list(candidates)
    ranked: list[Member] = []
    while remaining:
        best, _ = _pick(remaining, ctx, apply_strategy=False)
        assert best is not None
        ranked.append(best)
        remaining.remove(best)
    (name,) = unit.attributes
    values: list[Any] = []
    contributors: list[dict[str, Any]] = []
    for member in ranked:
        raw = member.attributes[name]
        for value in raw if isinstance(raw, list) else [raw]:
            if value not in values:
                values.append(value)
                contributors.append(_entry(member, value))
    first = ranked[0]
    attributes[name] = values
    provenance[name] = {
        "record": first.record_id,
        "source": first.source,
        "source_key": first.source_key,
        "rule": "aggregate",
        "strategy": "aggregate",
        "competitors": [],
        "contributors": contributors[:MAX_COMPETITORS],
    }


def spec_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """What changed between two stored specs, one line per group or rule, for people."""
    before = before or {"groups": {}, "rules": {}}
    lines: list[str] = []
    old_groups, new_groups = before.get("groups", {}), after.get("groups", {})
    for name in sorted({*old_groups, *new_groups}):
        if name not in new_groups:
            lines.append(f"group {name} removed")
        elif name not in old_groups:
            lines.append(f"group {name} added: {', '.join(new_groups[name])}")
        elif old_groups[name] != new_groups[name]:
            lines.append(f"group {name}: {', '.join(new_groups[name])}")
    old_rules, new_rules = before.get("rules", {}), after.get("rules", {})
    for name, rule in new_rules.items():
        old = old_rules.get(name)
        if old == rule:
            continue
        if old is None or old.get("strategy") != rule.get("strategy"):
            was = old.get("strategy") if old else "default"
            lines.append(f"{name}: {was} → {rule.get('strategy')}")
            continue
        details = [
            f"{key} {rule.get(key)}"
            for key in ("sources", "decay_half_life_days", "tie_breakers")
            if old.get(key) != rule.get(key)
        ]
        lines.append(f"{name}: {'; '.join(details)}")
    return lines
