"""The survivorship rules form of the hub's admin page: posted fields <-> a rule spec.

Parsing only; checking the spec is ``mdm.survivorship.rules_from_spec``'s job, whose error
paths (``rules.email.sources``) are mapped back onto the rows of the form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mdm.domains.base import Domain
from mdm.survivorship import STRATEGY_LABELS, TIE_BREAKER_NAMES, default_rules

TIE_BREAKER_SLOTS = 3


@dataclass
class RuleRow:
    """One row of the form: an attribute, or a group and its attributes."""

    name: str
    attributes: tuple[str, ...]
    is_group: bool
    strategy: str
    sources: str  # comma-separated, most trusted first
    decay: str
    tie_breakers: list[str]
    errors: list[str] = field(default_factory=list)


@dataclass
class RulesForm:
    domain: Domain
    groups_text: str
    rows: list[RuleRow]
    version: int
    comment: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)  # non-row errors by field

    @property
    def strategies(self) -> list[tuple[str, str]]:
        return list(STRATEGY_LABELS.items())

    @property
    def tie_breaker_choices(self) -> list[tuple[str, str]]:
        return [(name, STRATEGY_LABELS[name]) for name in TIE_BREAKER_NAMES]

    def spec(self) -> dict[str, Any]:
        groups, _ = parse_groups(self.domain, self.groups_text)
        rules: dict[str, Any] = {}
        for row in self.rows:
            rule: dict[str, Any] = {
                "strategy": row.strategy,
                "sources": [s.strip() for s in row.sources.split(",") if s.strip()],
                "tie_breakers": [t for t in row.tie_breakers if t],
            }
            if row.decay.strip():
                try:
                    rule["decay_half_life_days"] = float(row.decay)
                except ValueError:
                    rule["decay_half_life_days"] = row.decay  # the spec check names it
            rules[row.name] = rule
        return {"groups": groups, "rules": rules}

    def add_errors(self, errors: Mapping[str, list[str]]) -> None:
        """Put each error of a spec check next to its row, the others above the table."""
        by_name = {row.name: row for row in self.rows}
        for path, messages in errors.items():
            parts = path.split(".")
            row = by_name.get(parts[1]) if parts[0] == "rules" and len(parts) > 1 else None
            if row is not None:
                what = parts[2].replace("_", " ") if len(parts) > 2 else "rule"
                row.errors.extend(f"{what}: {m}" for m in messages)
            else:
                self.errors.setdefault(path, []).extend(messages)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors) or any(row.errors for row in self.rows)


def groups_text_of(groups: Mapping[str, list[str]]) -> str:
    return "\n".join(f"{name}: {', '.join(attrs)}" for name, attrs in groups.items())


def parse_groups(domain: Domain, text: str) -> tuple[dict[str, list[str]], list[str]]:
    """``name: a, b, c`` per line -> groups, and the lines that cannot be read."""
    groups: dict[str, list[str]] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        if not sep or not name.strip():
            problems.append(f"line {number}: write 'group name: attribute, attribute, ...'")
            continue
        groups[name.strip()] = [a.strip() for a in rest.split(",") if a.strip()]
    return groups, problems


def _units(domain: Domain, groups: Mapping[str, list[str]]) -> list[tuple[str, tuple[str, ...]]]:
    group_of = {a: g for g, attrs in groups.items() for a in attrs}
    units: list[tuple[str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for attribute in domain.attribute_names:
        name = group_of.get(attribute, attribute)
        if name in seen:
            continue
        seen.add(name)
        members = tuple(a for a in domain.attribute_names if group_of.get(a) == name)
        units.append((name, members or (attribute,)))
    return units


def _slots(tie_breakers: list[str]) -> list[str]:
    return (list(tie_breakers) + [""] * TIE_BREAKER_SLOTS)[
        : max(TIE_BREAKER_SLOTS, len(tie_breakers))
    ]


def form_from_spec(
    domain: Domain, spec: Mapping[str, Any], *, version: int, comment: str = ""
) -> RulesForm:
    """The form showing a checked, explicit spec (``RuleSet.as_spec()``)."""
    groups = spec["groups"]
    rows = []
    for name, attributes in _units(domain, groups):
        rule = spec["rules"][name]
        rows.append(
            RuleRow(
                name=name,
                attributes=attributes,
                is_group=name in groups,
                strategy=rule["strategy"],
                sources=", ".join(rule["sources"]),
                decay=""
                if rule["decay_half_life_days"] is None
                else f"{rule['decay_half_life_days']:g}",
                tie_breakers=_slots(rule["tie_breakers"]),
            )
        )
    return RulesForm(domain, groups_text_of(groups), rows, version, comment)


def form_from_post(domain: Domain, data: Mapping[str, Any]) -> RulesForm:
    """The form as posted.  Rows follow the posted groups: a new group gets the default rule."""
    groups_text = str(data.get("groups", ""))
    groups, problems = parse_groups(domain, groups_text)
    defaults = default_rules(domain.code).as_spec()["rules"]
    rows = []
    for name, attributes in _units(domain, groups):
        strategy = data.get(f"{name}-strategy")
        if strategy is None:  # not on the form yet: a new group, or an attribute left one
            default = defaults.get(name) or defaults.get(attributes[0]) or {}
            strategy = default.get("strategy", "source_priority")
            sources = ", ".join(default.get("sources", []))
            decay_value = default.get("decay_half_life_days")
            decay = "" if decay_value is None else f"{decay_value:g}"
            ties = list(default.get("tie_breakers", []))
        else:
            sources = str(data.get(f"{name}-sources", ""))
            decay = str(data.get(f"{name}-decay", ""))
            ties = [str(data.get(f"{name}-tie{i}", "")) for i in range(1, TIE_BREAKER_SLOTS + 1)]
        rows.append(
            RuleRow(
                name=name,
                attributes=attributes,
                is_group=name in groups,
                strategy=str(strategy),
                sources=sources,
                decay=decay,
                tie_breakers=_slots(ties),
            )
        )
    try:
        version = int(data.get("version", 0))
    except (TypeError, ValueError):
        version = -1
    form = RulesForm(domain, groups_text, rows, version, str(data.get("comment", "")))
    if problems:
        form.errors["groups"] = problems
    return form
