from datetime import UTC, datetime

import pytest

from mdm.mapping import MappingError, compile_mapping, identity_mapping


def spec(**attributes):
    return {"domain": "customer", "key": {"field": "id"}, "attributes": attributes}


def test_rename_short_and_long_form():
    m = compile_mapping(spec(given_name="fname", family_name={"field": "lname"}))

    values, errors = m.map_attributes({"id": "1", "fname": "Ann", "lname": "Lee", "extra": "x"})

    assert errors == []
    assert values == {"given_name": "Ann", "family_name": "Lee"}


def test_template_combines_fields_and_collapses_whitespace():
    m = compile_mapping(spec(address_line1={"template": "{no} {street}"}))

    assert m.map_attributes({"no": "12", "street": " High  St "})[0] == {
        "address_line1": "12 High St"
    }
    assert m.map_attributes({"no": "", "street": "High St"})[0] == {"address_line1": "High St"}
    assert m.map_attributes({})[0] == {"address_line1": None}


def test_template_over_nested_fields():
    m = compile_mapping(spec(full_name={"template": "{name.first} {name.last}"}))

    values, _ = m.map_attributes({"name": {"first": "Ann", "last": "Lee"}})

    assert values == {"full_name": "Ann Lee"}


def test_date_format_is_parsed_to_iso():
    m = compile_mapping(spec(date_of_birth={"field": "dob", "format": ["%d/%m/%Y", "%Y%m%d"]}))

    assert m.map_attributes({"dob": "31/12/1980"})[0] == {"date_of_birth": "1980-12-31"}
    assert m.map_attributes({"dob": "19801231"})[0] == {"date_of_birth": "1980-12-31"}
    values, errors = m.map_attributes({"dob": "1980-12-31"})
    assert values == {}
    assert errors[0].field == "date_of_birth"
    assert "does not match the date format" in errors[0].message


def test_value_map_case_insensitive_and_pass_through():
    m = compile_mapping(spec(gender={"field": "sex", "map": {"F": "female", "M": "male"}}))

    assert m.map_attributes({"sex": "f"})[0] == {"gender": "female"}
    assert m.map_attributes({"sex": "X"})[0] == {"gender": "X"}


def test_strict_value_map_rejects_unmapped_values():
    m = compile_mapping(
        spec(consent_email={"field": "optin", "map": {"Y": True, "N": False}, "strict": True})
    )

    assert m.map_attributes({"optin": "Y"})[0] == {"consent_email": True}
    values, errors = m.map_attributes({"optin": "maybe"})
    assert values == {}
    assert errors[0].field == "consent_email"
    assert "'maybe' is not one of the mapped values" in errors[0].message


def test_const_default_and_split():
    m = compile_mapping(
        spec(
            country={"const": "AU"},
            city={"field": "town", "default": "Sydney"},
            region={"field": "r"},
        )
    )

    assert m.map_attributes({"town": ""})[0] == {"country": "AU", "city": "Sydney", "region": None}


def test_key_template_updated_at_and_deleted():
    m = compile_mapping(
        {
            "domain": "customer",
            "key": {"template": "{company}-{id}"},
            "updated_at": {"field": "mod", "format": "%Y%m%d%H%M"},
            "deleted": {"field": "status", "values": ["Deleted"]},
            "attributes": {"given_name": "fname"},
        }
    )

    meta = m.meta({"company": "10", "id": "7", "mod": "202401021530", "status": "deleted"})

    assert meta.source_key == "10-7"
    assert meta.source_updated_at == datetime(2024, 1, 2, 15, 30, tzinfo=UTC)
    assert meta.deleted is True
    assert meta.errors == ()
    assert m.meta({"company": "10", "id": "7"}).deleted is False


def test_missing_key_is_an_error():
    m = compile_mapping(spec(given_name="fname"))

    meta = m.meta({"fname": "Ann"})

    assert meta.source_key is None
    assert meta.errors[0].field == "source_key"
    assert meta.errors[0].code == "required"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"key": {"field": "id"}, "attributes": {"shoe_size": "s"}}, "not an attribute of domain"),
        ({"key": {"field": "id"}, "attributes": {}}, "at least one attribute"),
        ({"attributes": {"given_name": "f"}}, "[key] needs exactly one"),
        (
            {"key": {"field": "id"}, "attributes": {"given_name": {"field": "a", "const": "b"}}},
            "exactly one of 'field', 'template' or 'const'",
        ),
        (
            {"key": {"field": "id"}, "attributes": {"given_name": {"field": "a", "fromat": "x"}}},
            "unknown key(s) ['fromat']",
        ),
        (
            {"key": {"field": "id"}, "attributes": {"given_name": {"field": "a", "format": "%Y"}}},
            "'format' applies to date attributes only",
        ),
        ({"key": {"field": "id"}, "attributes": {"x": "y"}, "colour": 1}, "unknown key(s)"),
    ],
)
def test_bad_specs_say_what_to_fix(bad, message):
    with pytest.raises(MappingError) as excinfo:
        compile_mapping({"domain": "customer", **bad})

    assert message in str(excinfo.value)


def test_unknown_domain():
    with pytest.raises(MappingError, match="starship"):
        compile_mapping({"domain": "starship", "key": {"field": "id"}, "attributes": {"a": "b"}})


def test_identity_mapping_takes_attribute_names_and_rejects_unknown_fields():
    m = identity_mapping("customer")

    meta = m.meta({"source_key": "K1", "given_name": "Ann", "deleted": "true"})
    values, errors = m.map_attributes({"source_key": "K1", "given_name": "Ann", "shoe": 42})

    assert meta.source_key == "K1"
    assert meta.deleted is True
    assert values == {"given_name": "Ann"}
    assert [(e.field, e.code) for e in errors] == [("shoe", "unknown_attribute")]


def test_fingerprint_changes_with_the_spec():
    a = compile_mapping(spec(given_name="fname"))
    b = compile_mapping(spec(given_name="first"))

    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == compile_mapping(spec(given_name="fname")).fingerprint
