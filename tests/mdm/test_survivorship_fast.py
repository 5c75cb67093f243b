"""``survive_fast`` (what a full match run calls) gives what ``survive`` gives.

Generated clusters of one to six members, values drawn from small pools so that members
agree, disagree and tie at every step, under rule sets that use every strategy, every
tie-breaker, groups (the domain's and an admin's), trust decay, validators and aggregates.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mdm.domains import get_domain
from mdm.survivorship import (
    LAST_TIE_BREAKER,
    ONLY_VALUE,
    Member,
    RuleSet,
    default_rules,
    rules_from_spec,
    survive,
    survive_fast,
)

CUSTOMER = get_domain("customer")
START = datetime(2024, 1, 1, tzinfo=UTC)
SOURCES = (("crm", 10), ("erp", 20), ("shop", 50), ("aurum-steward", 1), ("legacy", 50))

POOLS: dict[str, list[Any]] = {
    "party_type": ["person", "organisation"],
    "given_name": ["Ann", "Anne", "Annabel", "Bob"],
    "middle_name": ["Lee", "L"],
    "family_name": ["Smith", "Smyth", "Smith-Jones"],
    "full_name": ["Ann Smith", "Anne Smyth"],
    "organisation_name": ["Acme", "Acme Ltd", "ACME Limited"],
    "date_of_birth": ["1980-01-02", "1980-02-01"],
    "gender": ["female", "male"],
    "occupation": ["engineer", "nurse"],
    "address_line1": ["1 High St", "1 High Street", "2 Low Rd"],
    "address_line2": ["Flat 2", "Flat 3"],
    "city": ["Leeds", "York"],
    "postal_code": ["LS1 4AP", "YO1 7HH"],
    "region": ["West Yorkshire"],
    "country": ["GB", "IE"],
    # Invalid today: the validated strategy must leave them out.
    "email": ["ann@example.com", "ANN@example.com", "ann(at)example", "a.smith@example.org"],
    "phone": ["+442079460958", "+442079460959", "020 7946 0958", "not a phone"],
    "national_id": ["AB123456C"],
    "tax_id": ["GB123456789", "GB999999973"],
    "consent_email": [True, False],
    "consent_sms": [True, False],
    "consent_marketing": [True],
}
# Values that are lists (several e-mails or phones from one source) for aggregates.
LISTS: dict[str, list[list[str]]] = {
    "email": [["ann@example.com", "a.smith@example.org"], ["ann@example.com"]],
    "phone": [["+442079460958", "+442079460959"]],
}


def _rules(spec: dict[str, Any]) -> RuleSet:
    return rules_from_spec(CUSTOMER, spec)


TIES = ["most_recent", "most_frequent", "most_complete", "longest", "source_priority"]
RULE_SETS: dict[str, RuleSet] = {
    "domain default": default_rules("customer"),
    "every strategy": _rules(
        {
            "rules": {
                "given_name": {"strategy": "longest"},
                "middle_name": {"strategy": "most_complete", "tie_breakers": []},
                "family_name": {"strategy": "most_frequent"},
                "full_name": {"strategy": "most_recent", "tie_breakers": ["longest"]},
                "organisation_name": {
                    "strategy": "source_priority",
                    "sources": ["shop", "crm"],
                    "decay_half_life_days": 30,
                },
                "date_of_birth": {"strategy": "validated"},
                "gender": {"strategy": "preferred_source", "sources": ["erp"]},
                "occupation": {"strategy": "source_priority", "tie_breakers": TIES},
                "address": {"strategy": "preferred_source", "sources": ["shop"]},
                "email": {"strategy": "validated", "tie_breakers": ["most_frequent"]},
                "phone": {"strategy": "aggregate", "tie_breakers": ["most_recent"]},
                "national_id": {"strategy": "aggregate"},
                "tax_id": {"strategy": "longest", "tie_breakers": []},
            }
        }
    ),
    "admin groups": _rules(
        {
            "groups": {
                "name": ["given_name", "middle_name", "family_name"],
                "contact": ["email", "phone"],
                "address": ["address_line1", "city", "postal_code", "country"],
            },
            "rules": {
                "name": {"strategy": "most_frequent", "tie_breakers": ["longest"]},
                "contact": {"strategy": "validated"},
                "address": {
                    "strategy": "source_priority",
                    "decay_half_life_days": 10,
                    "tie_breakers": ["most_frequent", "most_recent"],
                },
                "organisation_name": {"strategy": "aggregate", "tie_breakers": TIES[::-1]},
                "address_line2": {"strategy": "longest"},
            },
        }
    ),
    "ties only": _rules(
        {
            "rules": {
                name: {"strategy": "most_recent", "tie_breakers": []}
                for name in ("given_name", "family_name", "email", "address")
            }
        }
    ),
}


def _value(rng: random.Random, name: str) -> Any:
    if name in LISTS and rng.random() < 0.2:
        return list(rng.choice(LISTS[name]))
    return rng.choice(POOLS[name])


def _member(rng: random.Random, record_id: int, base: dict[str, Any]) -> Member:
    source, priority = rng.choice(SOURCES)
    attributes: dict[str, Any] = {}
    for name in POOLS:
        roll = rng.random()
        if roll < 0.25:
            continue  # no value
        attributes[name] = base[name] if roll < 0.7 else _value(rng, name)
    # Few distinct times: members often tie on recency.
    updated = START + timedelta(days=rng.choice([0, 0, 5, 40, 400]))
    return Member(record_id, source, f"{source}-{record_id}", priority, updated, attributes)


def _clusters(seed: int, count: int) -> list[list[Member]]:
    rng = random.Random(seed)
    clusters = []
    for _ in range(count):
        base = {name: _value(rng, name) for name in POOLS}
        size = rng.choice([1, 1, 1, 2, 2, 3, 4, 6])
        ids = rng.sample(range(1, 10_000), size)
        members = [_member(rng, rid, base) for rid in ids]
        rng.shuffle(members)
        clusters.append(members)
    return clusters


@pytest.mark.parametrize("name", list(RULE_SETS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_survive_fast_matches_survive_on_generated_clusters(name: str, seed: int) -> None:
    rules = RULE_SETS[name]
    decided: Counter[str] = Counter()
    for members in _clusters(seed, 400):
        expected = survive(CUSTOMER, members, rules)

        got = survive_fast(CUSTOMER, members, rules)

        assert got == expected, [m.record_id for m in members]
        decided.update(p["rule"] for p in expected[1].values())
    # The clusters reached the cases the fast path treats apart.
    assert decided[ONLY_VALUE] > 0
    assert decided[LAST_TIE_BREAKER] > 0
    assert len(decided) >= 3


def test_the_generated_clusters_reach_every_strategy_and_tie_breaker() -> None:
    decided: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    for members in _clusters(1, 400):
        attributes, provenance = survive(CUSTOMER, members, RULE_SETS["every strategy"])
        decided.update(p["rule"] for p in provenance.values())
        present = {n for m in members for n in m.attributes}
        missing.update(n for n in ("email", "date_of_birth") if n in present - set(attributes))

    for step in (
        "longest",
        "most_complete",
        "most_frequent",
        "most_recent",
        "source_priority",
        "validated",
        "preferred_source",
        "aggregate",
        ONLY_VALUE,
        LAST_TIE_BREAKER,
    ):
        assert decided[step] > 0, step
    assert missing["email"] > 0  # only invalid e-mails: the validated attribute stays empty


def test_survive_fast_defaults_to_the_domain_rules_and_ignores_member_order() -> None:
    for members in _clusters(7, 100):
        expected = survive(CUSTOMER, members)

        assert survive_fast(CUSTOMER, members) == expected
        assert survive_fast(CUSTOMER, list(reversed(members))) == expected
