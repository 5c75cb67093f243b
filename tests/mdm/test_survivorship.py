"""The rules engine: every strategy, tie-breaker, group, trust decay and the provenance."""

from datetime import UTC, datetime, timedelta

import pytest

from mdm.domains import get_domain
from mdm.survivorship import (
    Member,
    RulesError,
    default_rules,
    rules_from_spec,
    spec_changes,
    survive,
)

CUSTOMER = get_domain("customer")
PRODUCT = get_domain("product")
OLD = datetime(2023, 1, 1, tzinfo=UTC)
NEW = datetime(2024, 1, 1, tzinfo=UTC)


def member(rid, source, priority, updated, **attributes):
    return Member(rid, source, f"{source}-{rid}", priority, updated, attributes)


def rules(spec, domain=CUSTOMER, **kwargs):
    return rules_from_spec(domain, spec, **kwargs)


def one(attribute, **rule):
    return rules({"rules": {attribute: rule}})


# --- the default rule ----------------------------------------------------------------------


def test_source_priority_wins_then_recency():
    crm = member(1, "crm", 10, OLD, email="old@example.com", given_name="Ann")
    shop = member(2, "shop", 50, NEW, email="new@example.com", phone="+442079460958")

    attributes, provenance = survive(CUSTOMER, [shop, crm])

    assert attributes == {
        "given_name": "Ann",
        "email": "old@example.com",
        "phone": "+442079460958",
    }
    assert provenance["email"] == {
        "record": 1,
        "source": "crm",
        "source_key": "crm-1",
        "rule": "source_priority",
        "strategy": "source_priority",
        "competitors": [{"value": "new@example.com", "source": "shop", "source_key": "shop-2"}],
    }
    assert provenance["phone"]["rule"] == "only value"
    assert provenance["phone"]["competitors"] == []


def test_same_priority_falls_back_to_most_recent():
    a = member(1, "crm", 10, OLD, email="old@example.com")
    b = member(2, "crm", 10, NEW, email="new@example.com")

    attributes, provenance = survive(CUSTOMER, [a, b])

    assert attributes["email"] == "new@example.com"
    assert provenance["email"]["rule"] == "most_recent"


def test_full_tie_is_broken_by_record_id_and_order_does_not_matter():
    a = member(7, "crm", 10, OLD, email="a@example.com")
    b = member(3, "crm", 10, OLD, email="b@example.com")

    first, _ = survive(CUSTOMER, [a, b])
    second, provenance = survive(CUSTOMER, [b, a])

    assert first == second == {"email": "b@example.com"}
    assert provenance["email"]["rule"] == "lowest record id"
    assert provenance["email"]["competitors"] == [
        {"value": "a@example.com", "source": "crm", "source_key": "crm-7"}
    ]


def test_the_domain_default_makes_the_latest_consent_win_over_a_trusted_source():
    crm = member(1, "crm", 10, OLD, consent_email=True)
    shop = member(2, "shop", 50, NEW, consent_email=False)

    attributes, provenance = survive(CUSTOMER, [crm, shop])

    assert attributes["consent_email"] is False
    assert provenance["consent_email"]["rule"] == "most_recent"


# --- strategies ----------------------------------------------------------------------------


def test_source_priority_follows_the_rule_list_not_the_system_numbers():
    crm = member(1, "crm", 10, NEW, email="crm@example.com")
    erp = member(2, "erp", 90, OLD, email="erp@example.com")
    shop = member(3, "shop", 1, NEW, email="shop@example.com")
    ruleset = one("email", strategy="source_priority", sources=["erp", "crm"])

    attributes, provenance = survive(CUSTOMER, [crm, erp, shop], ruleset)

    assert attributes["email"] == "erp@example.com"
    assert provenance["email"]["rule"] == "source_priority"
    assert [c["source"] for c in provenance["email"]["competitors"]] == ["crm", "shop"]


def test_unlisted_sources_rank_after_listed_ones_by_their_priority_number():
    crm = member(1, "crm", 10, NEW, email="crm@example.com")
    shop = member(2, "shop", 50, NEW, email="shop@example.com")
    steward = member(3, "aurum-steward", 100, OLD, email="fixed@example.com")
    listed = one("email", strategy="source_priority", sources=["aurum-steward"])

    with_steward, _ = survive(CUSTOMER, [crm, shop, steward], listed)
    without, _ = survive(CUSTOMER, [crm, shop], listed)

    assert with_steward["email"] == "fixed@example.com"
    assert without["email"] == "crm@example.com"


def test_most_recent():
    a = member(1, "crm", 10, OLD, family_name="Lee")
    b = member(2, "shop", 50, NEW, family_name="Leigh")

    attributes, provenance = survive(CUSTOMER, [a, b], one("family_name", strategy="most_recent"))

    assert attributes["family_name"] == "Leigh"
    assert provenance["family_name"]["rule"] == "most_recent"


def test_most_frequent():
    a = member(1, "crm", 10, NEW, given_name="Jon")
    b = member(2, "shop", 50, OLD, given_name="John")
    c = member(3, "erp", 50, OLD, given_name="John")

    attributes, provenance = survive(
        CUSTOMER, [a, b, c], one("given_name", strategy="most_frequent")
    )

    assert attributes["given_name"] == "John"
    assert provenance["given_name"]["rule"] == "most_frequent"
    assert provenance["given_name"]["record"] == 2  # same value twice: the lowest record id
    assert provenance["given_name"]["competitors"] == [
        {"value": "Jon", "source": "crm", "source_key": "crm-1"}
    ]


def test_most_complete_record():
    sparse = member(1, "crm", 10, NEW, given_name="Ann")
    full = member(2, "shop", 50, OLD, given_name="Anne", family_name="Lee", email="a@example.com")

    attributes, provenance = survive(
        CUSTOMER, [sparse, full], one("given_name", strategy="most_complete")
    )

    assert attributes["given_name"] == "Anne"
    assert provenance["given_name"]["rule"] == "most_complete"


def test_longest_value():
    a = member(1, "crm", 10, NEW, organisation_name="ACME")
    b = member(2, "erp", 50, OLD, organisation_name="ACME Industrial Supplies")

    attributes, provenance = survive(CUSTOMER, [a, b], one("organisation_name", strategy="longest"))

    assert attributes["organisation_name"] == "ACME Industrial Supplies"
    assert provenance["organisation_name"]["rule"] == "longest"


def test_validated_value_only_skips_values_that_fail_validation_today():
    legacy = member(1, "crm", 10, NEW, email="ann(at)example")  # predates the validator
    shop = member(2, "shop", 50, OLD, email="ann@example.com")
    ruleset = one("email", strategy="validated")

    attributes, provenance = survive(CUSTOMER, [legacy, shop], ruleset)
    alone, _ = survive(CUSTOMER, [legacy], ruleset)

    assert attributes["email"] == "ann@example.com"
    assert provenance["email"]["rule"] == "validated"
    assert provenance["email"]["competitors"] == [
        {"value": "ann(at)example", "source": "crm", "source_key": "crm-1"}
    ]
    assert "email" not in alone  # no valid value: the attribute stays empty


def test_preferred_source_wins_even_when_older_and_less_trusted():
    crm = member(1, "crm", 10, NEW, city="Leeds", postal_code="LS1 4AP")
    erp = member(2, "erp", 90, OLD, city="York", postal_code="YO1 7HH")
    ruleset = rules({"rules": {"address": {"strategy": "preferred_source", "sources": ["erp"]}}})

    attributes, provenance = survive(CUSTOMER, [crm, erp], ruleset)
    fallback, fallback_provenance = survive(CUSTOMER, [crm], ruleset)

    assert (attributes["city"], attributes["postal_code"]) == ("York", "YO1 7HH")
    assert provenance["city"]["rule"] == "preferred_source"
    assert fallback["city"] == "Leeds"  # no value from erp: the others compete
    assert fallback_provenance["city"]["rule"] == "only value"


def test_aggregate_is_the_union_of_values_best_member_first():
    a = member(1, "crm", 10, OLD, email="ann@example.com")
    b = member(2, "shop", 50, NEW, email="ann.lee@example.com")
    c = member(3, "erp", 50, OLD, email="ann@example.com")
    ruleset = one("email", strategy="aggregate", tie_breakers=["most_recent"])

    attributes, provenance = survive(CUSTOMER, [a, b, c], ruleset)

    assert attributes["email"] == ["ann.lee@example.com", "ann@example.com"]
    assert provenance["email"]["rule"] == "aggregate"
    assert provenance["email"]["source"] == "shop"
    assert provenance["email"]["contributors"] == [
        {"value": "ann.lee@example.com", "source": "shop", "source_key": "shop-2"},
        {"value": "ann@example.com", "source": "crm", "source_key": "crm-1"},
    ]


# --- tie-breakers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tie_breaker", "winner"),
    [
        ("most_recent", "new@example.com"),
        ("most_frequent", "common@example.com"),
        ("most_complete", "full@example.com"),
        ("longest", "a.much.longer.name@example.com"),
        ("source_priority", "trusted@example.com"),
    ],
)
def test_each_tie_breaker_settles_what_the_strategy_left_open(tie_breaker, winner):
    # the strategy (preferred source "web", absent) leaves all four candidates open
    members = [
        member(1, "crm", 10, OLD, email="trusted@example.com"),
        member(2, "shop", 50, NEW, email="new@example.com"),
        member(3, "erp", 60, OLD, email="common@example.com"),
        member(4, "erp", 60, OLD, email="common@example.com"),
        member(5, "erp", 60, OLD, email="full@example.com", given_name="A", family_name="B"),
        member(6, "erp", 60, OLD, email="a.much.longer.name@example.com"),
    ]
    ruleset = one("email", strategy="preferred_source", sources=["web"], tie_breakers=[tie_breaker])

    attributes, provenance = survive(CUSTOMER, members, ruleset)

    assert attributes["email"] == winner
    assert provenance["email"]["rule"] == tie_breaker


def test_without_tie_breakers_the_lowest_record_id_decides():
    a = member(9, "shop", 50, NEW, email="b@example.com")
    b = member(4, "crm", 10, OLD, email="a@example.com")
    ruleset = one("email", strategy="most_frequent", tie_breakers=[])

    attributes, provenance = survive(CUSTOMER, [a, b], ruleset)

    assert attributes["email"] == "a@example.com"
    assert provenance["email"]["rule"] == "lowest record id"


def test_tie_breakers_apply_in_their_order():
    newer = member(1, "shop", 50, NEW, email="new@example.com")
    fuller = member(2, "shop", 50, OLD, email="full@example.com", given_name="Ann")
    first_recent = one("email", strategy="most_frequent", tie_breakers=["most_recent"])
    first_complete = one(
        "email", strategy="most_frequent", tie_breakers=["most_complete", "most_recent"]
    )

    assert survive(CUSTOMER, [newer, fuller], first_recent)[0]["email"] == "new@example.com"
    assert survive(CUSTOMER, [newer, fuller], first_complete)[0]["email"] == "full@example.com"


# --- groups ----------------------------------------------------------------------------------


def test_an_address_survives_as_a_group_from_one_record():
    a = member(1, "crm", 10, OLD, city="Leeds", country="GB")
    b = member(2, "erp", 20, NEW, address_line1="1 High St", city="York", postal_code="YO1 7HH")

    attributes, provenance = survive(CUSTOMER, [a, b])

    assert (attributes["city"], attributes["country"]) == ("Leeds", "GB")
    assert "address_line1" not in attributes
    assert "postal_code" not in attributes
    assert provenance["city"]["record"] == provenance["country"]["record"] == 1
    assert provenance["city"]["competitors"] == [
        {"value": "York", "source": "erp", "source_key": "erp-2"}
    ]
    assert provenance["country"]["competitors"] == []  # erp had no country to beat


def test_an_admin_defined_group_survives_together():
    a = member(1, "crm", 10, NEW, email="ann@example.com")
    b = member(2, "shop", 50, OLD, email="lee@example.com", phone="+442079460958")
    separate = one("email", strategy="most_recent")
    together = rules(
        {
            "groups": {"contact": ["email", "phone"]},
            "rules": {"contact": {"strategy": "most_recent"}},
        }
    )

    apart, _ = survive(CUSTOMER, [a, b], separate)
    joint, provenance = survive(CUSTOMER, [a, b], together)

    assert (apart["email"], apart["phone"]) == ("ann@example.com", "+442079460958")
    assert joint["email"] == "ann@example.com" and "phone" not in joint
    assert provenance["email"]["record"] == 1


def test_without_groups_in_the_spec_the_domain_groups_apply():
    ruleset = rules({"rules": {}}, domain=PRODUCT)

    assert ruleset.unit_of("currency").attributes == ("price", "currency")
    assert ruleset.unit_of("width_cm").name == "dimensions"


# --- trust decay ---------------------------------------------------------------------------


def test_trust_decay_lets_a_fresh_value_of_a_lesser_source_win():
    crm = member(1, "crm", 10, NEW - timedelta(days=730), email="old@example.com")
    shop = member(2, "shop", 50, NEW, email="new@example.com")
    plain = one("email", strategy="source_priority", sources=["crm", "shop"])
    decaying = one(
        "email", strategy="source_priority", sources=["crm", "shop"], decay_half_life_days=365
    )

    assert survive(CUSTOMER, [crm, shop], plain)[0]["email"] == "old@example.com"
    attributes, provenance = survive(CUSTOMER, [crm, shop], decaying)
    # crm: 1/1 halved twice = 0.25; shop: 1/2 not decayed = 0.5
    assert attributes["email"] == "new@example.com"
    assert provenance["email"]["rule"] == "source_priority"


def test_trust_decay_keeps_the_trusted_source_while_its_value_is_young():
    crm = member(1, "crm", 10, NEW - timedelta(days=180), email="crm@example.com")
    shop = member(2, "shop", 50, NEW, email="shop@example.com")
    decaying = one(
        "email", strategy="source_priority", sources=["crm", "shop"], decay_half_life_days=365
    )

    # crm: 0.5 ** (180/365) = 0.71 > shop's 0.5
    assert survive(CUSTOMER, [crm, shop], decaying)[0]["email"] == "crm@example.com"


# --- reading a spec ------------------------------------------------------------------------


def test_a_spec_round_trips_and_carries_its_version():
    spec = {
        "groups": {"address": ["city", "postal_code"]},
        "rules": {
            "email": {"strategy": "aggregate", "tie_breakers": ["most_recent"]},
            "address": {"strategy": "preferred_source", "sources": ["erp"]},
            "phone": {"strategy": "source_priority", "decay_half_life_days": 30},
        },
    }

    ruleset = rules(spec, version=4, known_sources=["erp"])

    assert ruleset.version == 4
    assert rules(ruleset.as_spec()).as_spec() == ruleset.as_spec()
    assert ruleset.as_spec()["rules"]["email"] == {
        "strategy": "aggregate",
        "sources": [],
        "decay_half_life_days": None,
        "tie_breakers": ["most_recent"],
    }
    assert ruleset.unit_of("country").attributes == ("country",)  # not in the group any more


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"rules": {"email": {"strategy": "best"}}}, "rules.email.strategy", "Unknown strategy"),
        ({"rules": {"mail": {"strategy": "longest"}}}, "rules.mail", "Unknown attribute"),
        (
            {"rules": {"city": {"strategy": "longest"}}},
            "rules.city",
            "'city' is in group 'address'",
        ),
        (
            {"rules": {"email": {"strategy": "source_priority", "sources": ["nope"]}}},
            "rules.email.sources",
            "Unknown source system 'nope'",
        ),
        (
            {"rules": {"email": {"strategy": "preferred_source", "sources": []}}},
            "rules.email.sources",
            "exactly one source",
        ),
        (
            {"rules": {"email": {"strategy": "most_recent", "decay_half_life_days": 10}}},
            "rules.email.decay_half_life_days",
            "source priority only",
        ),
        (
            {"rules": {"email": {"strategy": "source_priority", "decay_half_life_days": -1}}},
            "rules.email.decay_half_life_days",
            "positive number",
        ),
        (
            {"rules": {"email": {"strategy": "longest", "tie_breakers": ["random"]}}},
            "rules.email.tie_breakers",
            "Unknown tie-breaker 'random'",
        ),
        (
            {"rules": {"address": {"strategy": "aggregate"}}},
            "rules.address.strategy",
            "cannot be aggregated",
        ),
        (
            {"groups": {"contact": ["email", "fax"]}},
            "groups.contact",
            "Unknown attribute 'fax'",
        ),
        (
            {"groups": {"a": ["email"], "b": ["email", "phone"]}},
            "groups.b",
            "already in group 'a'",
        ),
        ({"rule": {}}, "rule", "Unknown field"),
    ],
)
def test_a_bad_spec_names_the_field(spec, field, message):
    with pytest.raises(RulesError) as caught:
        rules(spec, known_sources=["crm", "erp"])

    assert field in caught.value.errors
    assert any(message in m for m in caught.value.errors[field]), caught.value.errors


def test_the_steward_source_is_always_placeable():
    spec = {"rules": {"email": {"strategy": "source_priority", "sources": ["aurum-steward"]}}}

    ruleset = rules(spec, known_sources=[])

    assert ruleset.unit_of("email").rule.sources == ("aurum-steward",)


def test_every_domain_default_is_valid():
    for code in ("customer", "supplier", "product"):
        assert default_rules(code).version == 0


def test_spec_changes_describe_a_new_version_for_people():
    before = default_rules("customer").as_spec()
    after = rules(
        {
            "groups": {**before["groups"], "contact": ["email", "phone"]},
            "rules": {
                "contact": {"strategy": "most_recent"},
                "given_name": {"strategy": "source_priority", "sources": ["erp"]},
            },
        },
        known_sources=["erp"],
    ).as_spec()

    assert spec_changes(before, after) == [
        "group contact added: email, phone",
        "given_name: sources ['erp']",
        "contact: default → most_recent",
    ]
