from datetime import UTC, datetime

from mdm.domains import get_domain
from mdm.survivorship import Member, survive

CUSTOMER = get_domain("customer")
OLD = datetime(2023, 1, 1, tzinfo=UTC)
NEW = datetime(2024, 1, 1, tzinfo=UTC)


def member(rid, source, priority, updated, **attributes):
    return Member(rid, source, f"{source}-{rid}", priority, updated, attributes)


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
        "competitors": 2,
    }
    assert provenance["phone"]["rule"] == "only value"


def test_same_priority_falls_back_to_most_recent():
    a = member(1, "crm", 10, OLD, email="old@example.com")
    b = member(2, "crm", 10, NEW, email="new@example.com")

    attributes, provenance = survive(CUSTOMER, [a, b])

    assert attributes["email"] == "new@example.com"
    assert provenance["email"]["rule"] == "most_recent"


def test_an_address_survives_as_a_group_from_one_record():
    a = member(1, "crm", 10, OLD, city="Leeds", country="GB")
    b = member(2, "erp", 20, NEW, address_line1="1 High St", city="York", postal_code="YO1 7HH")

    attributes, provenance = survive(CUSTOMER, [a, b])

    assert (attributes["city"], attributes["country"]) == ("Leeds", "GB")
    assert "address_line1" not in attributes
    assert "postal_code" not in attributes
    assert provenance["city"]["record"] == provenance["country"]["record"] == 1


def test_full_tie_is_broken_by_record_id_and_order_does_not_matter():
    a = member(7, "crm", 10, OLD, email="a@example.com")
    b = member(3, "crm", 10, OLD, email="b@example.com")

    first, _ = survive(CUSTOMER, [a, b])
    second, provenance = survive(CUSTOMER, [b, a])

    assert first == second == {"email": "b@example.com"}
    assert provenance["email"]["rule"] in {"most_complete", "lowest record id"}


def test_a_lone_member_gives_every_value_it_has_as_the_only_value():
    alone = member(4, "crm", 10, OLD, given_name="Ann", city="Leeds", country="GB", shoe="42")
    empty = member(9, "erp", 1, NEW)  # competes for nothing: the general path, same result

    attributes, provenance = survive(CUSTOMER, [alone])

    assert attributes == {"given_name": "Ann", "city": "Leeds", "country": "GB"}
    assert provenance["city"] == {
        "record": 4,
        "source": "crm",
        "source_key": "crm-4",
        "rule": "only value",
        "competitors": 1,
    }
    assert (attributes, provenance) == survive(CUSTOMER, [alone, empty])
