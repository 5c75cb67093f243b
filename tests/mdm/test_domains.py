"""The domain registry and Domain.normalise: declared attributes, errors, completeness.

Pure Python, no database.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mdm.domains import (
    DOMAIN_MODULES,
    UnknownDomainError,
    all_domains,
    domain_codes,
    get_domain,
)
from mdm.domains import normalisers as n
from mdm.domains.base import Attribute, Domain, FieldError, NormalisationError, RecordContext

REPO = Path(__file__).resolve().parents[2]

CUSTOMER_ROW = {
    "party_type": "Individual",
    "given_name": "JOHN",
    "middle_name": "paul",
    "family_name": "o'brien",
    "full_name": "John Paul O'Brien",
    "organisation_name": "ACME PTY LTD",
    "date_of_birth": "19840721",
    "gender": "M",
    "occupation": "  Data   steward ",
    "email": "John.OBrien@Example.COM",
    "phone": "02 9876 5432",
    "address_line1": " 12  George Street ",
    "address_line2": "Unit 4",
    "city": "SYDNEY",
    "postal_code": "2000",
    "region": "NSW",
    "country": "Australia",
    "national_id": "123 4567",
    "tax_id": "51 824 753 556",
    "consent_email": "yes",
    "consent_sms": "no",
    "consent_marketing": True,
}

CUSTOMER_NORMALISED = {
    "party_type": "person",
    "given_name": "John",
    "middle_name": "Paul",
    "family_name": "O'Brien",
    "full_name": "John Paul O'Brien",
    "organisation_name": "Acme Pty Ltd",
    "date_of_birth": "1984-07-21",
    "gender": "male",
    "occupation": "Data steward",
    "address_line1": "12 George Street",
    "address_line2": "Unit 4",
    "city": "Sydney",
    "postal_code": "2000",
    "region": "NSW",
    "country": "AU",
    "email": "john.obrien@example.com",
    "phone": "+61298765432",
    "national_id": "1234567",
    "tax_id": "51824753556",
    "consent_email": True,
    "consent_sms": False,
    "consent_marketing": True,
}


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_three_domains_in_module_order():
    assert DOMAIN_MODULES == ("mdm.domains.customer", "mdm.domains.supplier", "mdm.domains.product")
    assert domain_codes() == ["customer", "supplier", "product"]
    assert [domain.code for domain in all_domains()] == ["customer", "supplier", "product"]
    assert [domain.label for domain in all_domains()] == ["Customer", "Supplier", "Product"]


def test_get_domain_returns_the_same_object_each_time():
    assert get_domain("customer") is get_domain("customer")
    assert get_domain("product").code == "product"


@pytest.mark.parametrize("code", ["vendor", "", "Customer", None])
def test_get_domain_rejects_unknown_codes_naming_the_known_ones(code):
    with pytest.raises(UnknownDomainError) as caught:
        get_domain(code)

    assert isinstance(caught.value, LookupError)
    assert str(caught.value) == (
        f"unknown domain {code!r}; expected one of: customer, supplier, product"
    )


def test_domains_do_not_import_django():
    # given a fresh interpreter
    code = (
        "import sys, mdm.domains as d\n"
        "[x.normalise({'title': 't'}) for x in d.all_domains()]\n"
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))"
    )

    # when the domains are loaded and used
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )

    # then Django was never imported
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- declarations

CUSTOMER_ATTRIBUTES = [
    "party_type",
    "given_name",
    "middle_name",
    "family_name",
    "full_name",
    "organisation_name",
    "date_of_birth",
    "gender",
    "occupation",
    "address_line1",
    "address_line2",
    "city",
    "postal_code",
    "region",
    "country",
    "email",
    "phone",
    "national_id",
    "tax_id",
    "consent_email",
    "consent_sms",
    "consent_marketing",
]
SUPPLIER_ATTRIBUTES = [
    "legal_name",
    "trading_name",
    "address_line1",
    "address_line2",
    "city",
    "postal_code",
    "region",
    "country",
    "vat_id",
    "duns",
    "lei",
    "contact_name",
    "contact_email",
    "contact_phone",
    "iban",
    "bic",
    "category",
]
PRODUCT_ATTRIBUTES = [
    "gtin",
    "brand",
    "manufacturer",
    "mpn",
    "title",
    "description",
    "category",
    "price",
    "currency",
    "weight_kg",
    "length_cm",
    "width_cm",
    "height_cm",
]


@pytest.mark.parametrize(
    ("code", "names"),
    [
        ("customer", CUSTOMER_ATTRIBUTES),
        ("supplier", SUPPLIER_ATTRIBUTES),
        ("product", PRODUCT_ATTRIBUTES),
    ],
)
def test_domains_declare_the_agreed_attributes(code, names):
    assert get_domain(code).attribute_names == tuple(names)


@pytest.mark.parametrize(
    ("code", "before", "after"),
    [
        ("customer", "country", "phone"),
        ("customer", "country", "national_id"),
        ("customer", "country", "tax_id"),
        ("supplier", "country", "contact_phone"),
        ("supplier", "country", "vat_id"),
    ],
)
def test_country_is_normalised_before_what_depends_on_it(code, before, after):
    names = get_domain(code).attribute_names
    assert names.index(before) < names.index(after)


@pytest.mark.parametrize(
    ("code", "pii"),
    [
        (
            "customer",
            {
                "given_name",
                "middle_name",
                "family_name",
                "full_name",
                "date_of_birth",
                "gender",
                "occupation",
                "email",
                "phone",
                "address_line1",
                "address_line2",
                "national_id",
            },
        ),
        ("supplier", {"contact_name", "contact_email", "contact_phone", "iban"}),
        ("product", set()),
    ],
)
def test_pii_attributes_are_flagged(code, pii):
    assert {a.name for a in get_domain(code).attributes if a.pii} == pii


@pytest.mark.parametrize("code", ["customer", "supplier"])
def test_the_address_is_one_group(code):
    domain = get_domain(code)
    assert {a.name for a in domain.attributes if a.group == "address"} == {
        "address_line1",
        "address_line2",
        "city",
        "postal_code",
        "region",
        "country",
    }


def test_product_price_and_dimensions_are_groups():
    groups = {a.name: a.group for a in get_domain("product").attributes if a.group}
    assert groups == {
        "price": "price",
        "currency": "price",
        "length_cm": "dimensions",
        "width_cm": "dimensions",
        "height_cm": "dimensions",
    }


def test_required_any_per_domain():
    assert get_domain("customer").required_any == (
        ("given_name", "family_name", "full_name", "organisation_name"),
    )
    assert get_domain("supplier").required_any == (("legal_name", "trading_name"),)
    assert get_domain("product").required_any == (("title", "gtin", "mpn"),)


def test_enum_attributes_list_their_choices():
    customer = get_domain("customer")
    assert customer.attribute("gender").choices == ("female", "male", "other", "unknown")
    assert customer.attribute("party_type").choices == ("person", "organisation")


def test_labels_default_from_the_name_or_are_declared():
    customer, supplier = get_domain("customer"), get_domain("supplier")
    assert customer.attribute("date_of_birth").label == "Date of birth"
    assert customer.attribute("email").label == "E-mail"
    assert supplier.attribute("vat_id").label == "VAT ID"
    assert get_domain("product").attribute("gtin").label == "GTIN"


def test_attribute_lookup_of_an_unknown_name_is_a_clear_key_error():
    with pytest.raises(KeyError) as caught:
        get_domain("product").attribute("colour")
    assert caught.value.args[0] == (
        "unknown attribute 'colour' for domain product; expected one of: "
        + ", ".join(PRODUCT_ATTRIBUTES)
    )


def test_attribute_rejects_unknown_types_and_enums_without_choices():
    with pytest.raises(ValueError, match="attribute 'x' has unknown type 'colour'"):
        Attribute("x", "colour", n.normalise_text)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="enum attribute 'x' must declare its choices"):
        Attribute("x", "enum", n.normalise_text)


def test_domain_rejects_duplicate_or_undeclared_attributes():
    text = Attribute("a", "text", n.normalise_text)
    with pytest.raises(ValueError, match="domain d declares 'a' twice"):
        Domain("d", "D", (text, text))
    with pytest.raises(ValueError, match="domain d refers to undeclared attribute 'b'"):
        Domain("d", "D", (text,), required_any=(("a", "b"),))


# --------------------------------------------------------------------------- normalise


def test_customer_row_is_normalised_attribute_by_attribute():
    # when
    normalised, errors = get_domain("customer").normalise(CUSTOMER_ROW)

    # then
    assert errors == []
    assert normalised == CUSTOMER_NORMALISED
    assert list(normalised) == [name for name in CUSTOMER_ATTRIBUTES if name in normalised]


def test_normalised_output_is_json_serialisable_and_deterministic():
    domain = get_domain("customer")
    first, _ = domain.normalise(CUSTOMER_ROW)
    second, _ = domain.normalise(dict(reversed(CUSTOMER_ROW.items())))
    assert json.dumps(first) == json.dumps(second)
    assert json.loads(json.dumps(first)) == CUSTOMER_NORMALISED


def test_supplier_row_uses_the_supplier_country_for_phone_and_vat():
    # given
    row = {
        "legal_name": "MÜLLER & SÖHNE GMBH & CO. KG",
        "trading_name": "Müller Tools",
        "address_line1": "Hauptstraße 1",
        "city": "FRANKFURT AM MAIN",
        "postal_code": "60311",
        "country": "Deutschland",
        "vat_id": "136 695 976",
        "duns": "15-048-3782",
        "lei": "529900t8bm49aursdo55",
        "contact_name": "ANNA SCHMIDT",
        "contact_email": "Anna.Schmidt@Mueller.DE",
        "contact_phone": "069 1234567",
        "iban": "DE89 3704 0044 0532 0130 00",
        "bic": "deutdeff",
        "category": "  tools ",
    }

    # when
    normalised, errors = get_domain("supplier").normalise(row)

    # then
    assert errors == []
    assert normalised == {
        "legal_name": "Müller & Söhne GmbH & Co. KG",
        "trading_name": "Müller Tools",
        "address_line1": "Hauptstraße 1",
        "city": "Frankfurt am Main",
        "postal_code": "60311",
        "country": "DE",
        "vat_id": "DE136695976",
        "duns": "150483782",
        "lei": "529900T8BM49AURSDO55",
        "contact_name": "Anna Schmidt",
        "contact_email": "anna.schmidt@mueller.de",
        "contact_phone": "+49691234567",
        "iban": "DE89370400440532013000",
        "bic": "DEUTDEFF",
        "category": "tools",
    }


def test_product_row_is_normalised_with_units_converted():
    # given
    row = {
        "gtin": "4006381333931",
        "brand": "ACME",
        "manufacturer": "acme gmbh",
        "mpn": " wh-1000 xm4",
        "title": "Wireless  headphones",
        "price": "€1,299.00",
        "currency": "€",
        "weight_kg": "250 g",
        "length_cm": "7 in",
        "width_cm": 18,
        "height_cm": "0.08 m",
    }

    # when
    normalised, errors = get_domain("product").normalise(row)

    # then
    assert errors == []
    assert normalised == {
        "gtin": "04006381333931",
        "brand": "Acme",
        "manufacturer": "Acme GmbH",
        "mpn": "WH-1000 XM4",
        "title": "Wireless headphones",
        "price": "1299",
        "currency": "EUR",
        "weight_kg": "0.25",
        "length_cm": "17.78",
        "width_cm": "18",
        "height_cm": "8",
    }


def test_every_invalid_value_is_reported_not_just_the_first():
    # given
    row = {
        "given_name": "Jane",
        "email": "jane.example.com",
        "phone": "12-34",
        "country": "AU",
        "date_of_birth": "2023-02-30",
        "gender": "q",
    }

    # when
    normalised, errors = get_domain("customer").normalise(row)

    # then the valid values are kept and each bad one has its own error, in declared order
    assert normalised == {"given_name": "Jane", "country": "AU"}
    assert errors == [
        FieldError(
            "date_of_birth",
            "'2023-02-30' is not a valid date (day is out of range for month); expected "
            "YYYY-MM-DD such as 1984-07-21",
        ),
        FieldError(
            "gender", "'q' is not a valid gender; expected one of: female, male, other, unknown"
        ),
        FieldError(
            "email",
            "'jane.example.com' is not a valid e-mail address: an email address must have an "
            "@-sign; expected an address such as jane.doe@example.com",
        ),
        FieldError(
            "phone",
            "'12-34' is not a valid phone number for AU; expected a number such as +61 2 1234 5678",
        ),
    ]


def test_phone_without_a_valid_country_must_be_international():
    # given the country is invalid, so the phone cannot be read as a national number
    row = {"full_name": "Jane Doe", "country": "Atlantis", "phone": "02 9876 5432"}

    # when
    normalised, errors = get_domain("customer").normalise(row)

    # then
    assert normalised == {"full_name": "Jane Doe"}
    assert [(e.field, e.code) for e in errors] == [("country", "invalid"), ("phone", "invalid")]
    assert errors[1].message == (
        "'02 9876 5432' is not in international form and the record has no valid country; "
        "expected a number starting with + and the country code, such as +44 20 7946 0958"
    )


def test_unknown_attributes_are_reported_and_the_rest_is_normalised():
    # when
    normalised, errors = get_domain("supplier").normalise(
        {"legal_name": "Acme Ltd", "colour": "red", "Legal_Name": "x"}
    )

    # then
    expected = ", ".join(SUPPLIER_ATTRIBUTES)
    assert normalised == {"legal_name": "Acme Ltd"}
    assert errors == [
        FieldError(
            "colour",
            f"unknown attribute 'colour' for domain supplier; expected one of: {expected}",
            "unknown_attribute",
        ),
        FieldError(
            "Legal_Name",
            f"unknown attribute 'Legal_Name' for domain supplier; expected one of: {expected}",
            "unknown_attribute",
        ),
    ]


@pytest.mark.parametrize("empty", [None, "", "   ", "\t\n", []])
def test_empty_values_are_omitted(empty):
    normalised, errors = get_domain("product").normalise({"title": "Lamp", "brand": empty})
    assert normalised == {"title": "Lamp"}
    assert errors == []


@pytest.mark.parametrize(
    ("code", "row", "message"),
    [
        (
            "customer",
            {"email": "a@example.com"},
            "at least one of given_name, family_name, full_name, organisation_name is required",
        ),
        ("supplier", {"country": "GB"}, "at least one of legal_name, trading_name is required"),
        (
            "product",
            {"brand": "Acme", "title": "  "},
            "at least one of title, gtin, mpn is required",
        ),
        ("product", {}, "at least one of title, gtin, mpn is required"),
    ],
)
def test_a_record_without_any_identifying_attribute_is_incomplete(code, row, message):
    normalised, errors = get_domain(code).normalise(row)
    assert errors == [FieldError("", message, "required")]
    assert normalised == {key: value for key, value in normalised.items() if key in row}


def test_an_invalid_identifying_value_is_reported_once_not_also_as_missing():
    normalised, errors = get_domain("product").normalise({"gtin": "123"})
    assert normalised == {}
    assert [(e.field, e.code) for e in errors] == [("gtin", "invalid")]


def test_required_attributes_are_checked_with_their_own_error():
    # given
    domain = Domain(
        "d",
        "D",
        (
            Attribute("code", "identifier", n.normalise_mpn, required=True),
            Attribute("note", "text", n.normalise_text),
        ),
    )

    # when
    normalised, errors = domain.normalise({"note": "hello", "code": " "})

    # then
    assert normalised == {"note": "hello"}
    assert errors == [FieldError("code", "code is required", "required")]


def test_a_normaliser_can_read_what_was_normalised_before_it_and_choose_its_code():
    # given a normaliser that depends on an earlier attribute
    seen: list[RecordContext] = []

    def needs_unit(value, context):
        seen.append(context)
        if "unit" not in context.normalised:
            raise NormalisationError("a size needs a unit", code="needs_unit")
        return f"{value} {context.normalised['unit']}"

    domain = Domain(
        "d",
        "D",
        (
            Attribute("unit", "text", n.normalise_text),
            Attribute("size", "text", needs_unit),
        ),
    )

    # when
    good, good_errors = domain.normalise({"size": 3, "unit": " cm "})
    bad, bad_errors = domain.normalise({"size": 3})

    # then
    assert (good, good_errors) == ({"unit": "cm", "size": "3 cm"}, [])
    assert seen[0].raw == {"size": 3, "unit": " cm "}
    assert (bad, bad_errors) == ({}, [FieldError("size", "a size needs a unit", "needs_unit")])


def test_field_error_as_dict():
    assert FieldError("email", "bad", "invalid").as_dict() == {
        "field": "email",
        "message": "bad",
        "code": "invalid",
    }
    assert FieldError("", "missing").as_dict() == {
        "field": "",
        "message": "missing",
        "code": "invalid",
    }


def test_normalise_is_safe_from_many_threads():
    # given
    domain = get_domain("customer")
    rows = [
        {**CUSTOMER_ROW, "email": f"user{i}@example.com", "phone": f"02 9876 {i:04d}"}
        for i in range(400)
    ]
    expected = [domain.normalise(row) for row in rows]
    results: dict[int, list] = {}

    def work(worker: int) -> None:
        results[worker] = [domain.normalise(row) for row in rows]

    # when
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert all(result == expected for result in results.values())


# --------------------------------------------------------------------------- display


@pytest.mark.parametrize(
    ("code", "attributes", "expected"),
    [
        ("customer", {"full_name": "Jane Doe", "given_name": "J"}, "Jane Doe"),
        ("customer", {"given_name": "Jane", "family_name": "Doe"}, "Jane Doe"),
        ("customer", {"family_name": "Doe"}, "Doe"),
        ("customer", {"organisation_name": "Acme Ltd"}, "Acme Ltd"),
        (
            "customer",
            {"party_type": "organisation", "organisation_name": "Acme Ltd", "full_name": "J D"},
            "Acme Ltd",
        ),
        ("customer", {"email": "x@example.com"}, ""),
        ("supplier", {"legal_name": "Acme Ltd", "trading_name": "Acme"}, "Acme Ltd"),
        ("supplier", {"trading_name": "Acme"}, "Acme"),
        ("product", {"title": "Lamp", "brand": "Acme"}, "Lamp"),
        ("product", {"brand": "Acme", "mpn": "L-1"}, "Acme L-1"),
        ("product", {"gtin": "04006381333931"}, "04006381333931"),
        ("product", {}, ""),
    ],
)
def test_display_name_is_one_line(code, attributes, expected):
    assert get_domain(code).display_name(attributes) == expected
