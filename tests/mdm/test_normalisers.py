"""Normalisers: each turns good raw values into one canonical form and explains bad ones.

Pure functions, no database.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from mdm.domains import normalisers as n
from mdm.domains.base import NormalisationError, RecordContext


def in_country(country: str | None) -> RecordContext:
    return RecordContext(raw={}, normalised={"country": country} if country else {})


def error_of(normaliser: Any, value: Any, country: str | None = None) -> NormalisationError:
    with pytest.raises(NormalisationError) as caught:
        normaliser(value, in_country(country))
    return caught.value


# --------------------------------------------------------------------------- the error type


def test_normalisation_error_carries_message_and_code():
    # given / when
    error = NormalisationError("'x' is wrong; expected y", code="too_long")

    # then
    assert isinstance(error, ValueError)
    assert error.message == "'x' is wrong; expected y"
    assert error.code == "too_long"
    assert str(error) == "'x' is wrong; expected y"
    assert NormalisationError("m").code == "invalid"


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  hello \t  world ", "hello world"),
        ("line\none", "line one"),
        ("non\u00a0breaking", "non breaking"),
        ("Cafe\u0301", "Caf\u00e9"),  # NFC
        ("MiXeD Case", "MiXeD Case"),
        (42, "42"),
        (2.5, "2.5"),
        ("   ", None),
    ],
)
def test_text_collapses_whitespace_and_composes_unicode(raw, expected):
    assert n.normalise_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (True, "expected text, got a boolean (True)"),
        ({"a": 1}, "expected text, got a dict"),
    ],
)
def test_text_rejects_values_that_are_not_text(raw, message):
    assert error_of(n.normalise_text, raw).message == message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("sony  wh-1000xm4 ", "SONY WH-1000XM4"), ("ab-12/c", "AB-12/C")],
)
def test_mpn_is_upper_case_with_dashes_kept(raw, expected):
    assert n.normalise_mpn(raw) == expected


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("JOHN SMITH", "John Smith"),
        ("john smith", "John Smith"),
        ("  anna   maria ", "Anna Maria"),
        ("O'BRIEN", "O'Brien"),
        ("d\u2019angelo", "D\u2019Angelo"),
        ("MCDONALD", "McDonald"),
        ("MARY-JANE", "Mary-Jane"),
        ("JAN VAN DER BERG", "Jan van der Berg"),
        ("VAN DER BERG", "van der Berg"),
        ("DE LA CRUZ", "de la Cruz"),
        ("VAN", "Van"),
        ("JOHN SMITH III", "John Smith III"),
        ("JOHN E SMITH", "John E Smith"),
        ("J.R.R. TOLKIEN", "J.R.R. Tolkien"),
        ("ÉMILE ZOLA", "Émile Zola"),
        # mixed case is taken as written
        ("McDonald", "McDonald"),
        ("van Gogh", "van Gogh"),
        ("DeShawn", "DeShawn"),
        ("eBay", "eBay"),
    ],
)
def test_person_name_title_cases_only_all_caps_or_all_lower(raw, expected):
    assert n.normalise_person_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ACME WIDGETS GMBH", "Acme Widgets GmbH"),
        ("acme ltd", "Acme Ltd"),
        ("SIEMENS AG", "Siemens AG"),
        ("KPMG LLP", "KPMG LLP"),
        ("BANK OF AMERICA", "Bank of America"),
        ("MCDONALD'S CORPORATION", "McDonald's Corporation"),
        ("3M COMPANY", "3M Company"),
        ("BP PLC", "BP PLC"),
        ("MY SHOP & CO", "My Shop & Co"),
        ("MAERSK A/S", "Maersk A/S"),
        ("DR. OETKER GMBH & CO. KG", "Dr. Oetker GmbH & Co. KG"),
        ("Acme Widgets GmbH", "Acme Widgets GmbH"),
    ],
)
def test_organisation_name_keeps_legal_form_and_acronyms(raw, expected):
    assert n.normalise_organisation_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("FRANKFURT AM MAIN", "Frankfurt am Main"),
        ("STRATFORD-UPON-AVON", "Stratford-upon-Avon"),
        ("LOS ANGELES", "Los Angeles"),
        ("RIO DE JANEIRO", "Rio de Janeiro"),
        ("L'AQUILA", "L'Aquila"),
        ("KING'S LYNN", "King's Lynn"),
        ("st. louis", "St. Louis"),
        ("SAINT-ÉTIENNE", "Saint-Étienne"),
        ("New York", "New York"),
    ],
)
def test_place_name_title_cases_sensibly(raw, expected):
    assert n.normalise_place_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Müller & Söhne GmbH & Co. KG", "müller söhne"),
        ("AT&T Inc.", "att"),
        ("ACME LTD", "acme"),
        ("Acme  Widgets GmbH", "acme widgets"),
        ("Bank of America Corporation", "bank of america"),
    ],
)
def test_organisation_base_name_drops_legal_form_case_and_punctuation(raw, expected):
    assert n.organisation_base_name(raw) == expected


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1984-07-21", "1984-07-21"),
        (" 1984-07-21 ", "1984-07-21"),
        ("19840721", "1984-07-21"),
        (19840721, "1984-07-21"),
        ("1984/07/21", "1984-07-21"),
        ("1984-07-21T10:00:00", "1984-07-21"),
        (dt.date(1984, 7, 21), "1984-07-21"),
        (dt.datetime(1984, 7, 21, 23, 59), "1984-07-21"),
        ("2024-02-29", "2024-02-29"),
    ],
)
def test_date_accepts_iso_compact_and_date_objects(raw, expected):
    assert n.normalise_date(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "2023-02-30",
            "'2023-02-30' is not a valid date (day is out of range for month); "
            "expected YYYY-MM-DD such as 1984-07-21",
        ),
        (
            "19841321",
            "'19841321' is not a valid date (month must be in 1..12); "
            "expected YYYY-MM-DD such as 1984-07-21",
        ),
        ("21/07/1984", "'21/07/1984' is not a date; expected YYYY-MM-DD such as 1984-07-21"),
        ("yesterday", "'yesterday' is not a date; expected YYYY-MM-DD such as 1984-07-21"),
        ("abcd-ef-gh", "'abcd-ef-gh' is not a date; expected YYYY-MM-DD such as 1984-07-21"),
    ],
)
def test_date_rejects_impossible_or_unreadable_dates(raw, message):
    assert error_of(n.normalise_date, raw).message == message


@pytest.mark.parametrize("raw", ["1000-01-01", "1850-06-30", "19550315", dt.date.today()])
def test_date_of_birth_accepts_any_real_past_date(raw):
    assert n.normalise_date_of_birth(raw) == n.normalise_date(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "2999-01-01",
            "date of birth 2999-01-01 is in the future; expected a past date",
        ),
        (
            "0998-12-31",
            "date of birth 0998-12-31 is before the year 1000; "
            "expected a real date of birth (is the year mistyped?)",
        ),
    ],
)
def test_date_of_birth_rejects_future_and_mistyped_years(raw, message):
    assert error_of(n.normalise_date_of_birth, raw).message == message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-01T14:30:00+01:00", "2024-03-01T13:30:00+00:00"),
        ("2024-03-01T14:30:00Z", "2024-03-01T14:30:00+00:00"),
        ("2024-03-01T14:30:00", "2024-03-01T14:30:00+00:00"),  # naive is UTC
        ("2024-03-01 14:30:00.250000", "2024-03-01T14:30:00.250000+00:00"),
        ("2024-03-01", "2024-03-01T00:00:00+00:00"),
        (dt.datetime(2024, 3, 1, 14, 30, tzinfo=dt.UTC), "2024-03-01T14:30:00+00:00"),
        (dt.date(2024, 3, 1), "2024-03-01T00:00:00+00:00"),
    ],
)
def test_datetime_is_iso_8601_in_utc(raw, expected):
    assert n.normalise_datetime(raw) == expected


def test_datetime_rejects_unreadable_values():
    assert error_of(n.normalise_datetime, "1st of March").message == (
        "'1st of March' is not an ISO 8601 date and time; "
        "expected a value such as 2024-03-01T14:30:00+01:00"
    )


# --------------------------------------------------------------------------- e-mail


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John.Smith@Example.COM", "john.smith@example.com"),
        ("  jane@example.org ", "jane@example.org"),
        ("a+tag@mail.co.uk", "a+tag@mail.co.uk"),
        ("Jane Doe <JANE@example.com>", "jane@example.com"),
        ("Ünïcode@Bücher.example", "ünïcode@bücher.example"),
        ("a@xn--bcher-kva.example", "a@bücher.example"),
    ],
)
def test_email_is_checked_and_lower_cased(raw, expected):
    assert n.normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "john.smith",
            "'john.smith' is not a valid e-mail address: an email address must have an "
            "@-sign; expected an address such as jane.doe@example.com",
        ),
        (
            "a@b",
            "'a@b' is not a valid e-mail address: the part after the @-sign is not valid; "
            "it should have a period; expected an address such as jane.doe@example.com",
        ),
        (
            "jo..e@example.com",
            "'jo..e@example.com' is not a valid e-mail address: an email address cannot have "
            "two periods in a row; expected an address such as jane.doe@example.com",
        ),
        (
            "john smith@example.com",
            "'john smith@example.com' is not a valid e-mail address: the email address "
            "contains invalid characters before the @-sign: SPACE; expected an address such as "
            "jane.doe@example.com",
        ),
        (
            "x@example.invalid",
            "'x@example.invalid' is not a valid e-mail address: the part after the @-sign is a "
            "special-use or reserved name that cannot be used with email; expected an address "
            "such as jane.doe@example.com",
        ),
    ],
)
def test_email_rejects_invalid_addresses_and_says_why(raw, message):
    assert error_of(n.normalise_email, raw).message == message


@pytest.mark.parametrize(
    "raw",
    [
        "a@123.com",
        "a@x.c",
        "a!#$%&'*+/=?^_`{|}~-@x.com",
        "=?utf-8?@x.com",
        "a" * 65 + "@x.com",
        "a" * 250 + "@x.com",
        ".a@x.com",
        "a.@x.com",
        "a@x..com",
        "a@-x.com",
        "a@x-.com",
        "a@x.com.",
        "a@localhost",
        "a@x_y.com",
        "a@b@c.com",
        "a@x.local",
        "a@1.2.3.4",
        "a@ex--ample.com",
        "postmaster@x.com",
    ],
)
def test_email_fast_path_agrees_with_the_full_check(raw):
    # given the library's own verdict
    try:
        full = n.validate_email(raw, check_deliverability=False).normalized.lower()
    except n.EmailNotValidError:
        full = None

    # when the cached two-halves check runs
    fast = n._simple_email(raw)

    # then it never accepts what the library rejects, nor changes the result
    assert fast is None or fast == full


# --------------------------------------------------------------------------- phone


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("02 9876 5432", "AU", "+61298765432"),
        ("(02) 9876-5432", "AU", "+61298765432"),
        ("0412 345 678", "AU", "+61412345678"),
        ("+61 2 9876 5432", "AU", "+61298765432"),
        ("(212) 555-1234", "US", "+12125551234"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("030 12345678", "DE", "+493012345678"),
        ("+44 20 7946 0958", None, "+442079460958"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("0044 20 7946 0958", "AU", "+442079460958"),  # Australia dials 0011, data says 00
        ("0011 44 20 7946 0958", "AU", "+442079460958"),
        ("011 44 20 7946 0958", "US", "+442079460958"),
        ("02 9876 5432 ext. 12", "AU", "+61298765432"),
        ("+1 212 555 1234", "GB", "+12125551234"),  # a foreign number keeps its country
        (61298765432, "AU", "+61298765432"),
    ],
)
def test_phone_is_e164_read_in_the_record_country(raw, country, expected):
    assert n.normalise_phone(raw, in_country(country)) == expected


@pytest.mark.parametrize(
    ("raw", "country", "message"),
    [
        (
            "12-34",
            "AU",
            "'12-34' is not a valid phone number for AU; expected a number such as +61 2 1234 5678",
        ),
        (
            "020 7946 0958",
            None,
            "'020 7946 0958' is not in international form and the record has no valid country; "
            "expected a number starting with + and the country code, such as +44 20 7946 0958",
        ),
        (
            "+1 555 123 4567",
            "GB",
            "'+1 555 123 4567' is not a valid phone number for US; expected a number such as "
            "+1 201-555-0123",
        ),
        (
            "+999 1234",
            None,
            "'+999 1234' is not a valid phone number (its country code is not known); expected "
            "a number such as +44 20 7946 0958",
        ),
        (
            "0099 1234",
            "AU",
            "'0099 1234' is not a valid phone number for AU; expected a number such as "
            "+61 2 1234 5678",
        ),
        (
            "0099 1234",
            None,
            "'0099 1234' is not a valid phone number (its country code is not known); expected "
            "a number such as +44 20 7946 0958",
        ),
        (
            "call me",
            "AU",
            "'call me' is not a valid phone number for AU (it does not look like a phone number); "
            "expected a number such as +61 2 1234 5678",
        ),
    ],
)
def test_phone_rejects_invalid_numbers_and_says_what_is_expected(raw, country, message):
    assert error_of(n.normalise_phone, raw, country).message == message


# --------------------------------------------------------------------------- country, currency


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("gb", "GB"),
        ("GBR", "GB"),
        ("826", "GB"),
        (826, "GB"),
        ("36", "AU"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("England", "GB"),
        ("Scotland", "GB"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("United States of America", "US"),
        ("Holland", "NL"),
        ("the Netherlands", "NL"),
        ("Deutschland", "DE"),
        ("germany", "DE"),
        ("Türkiye", "TR"),
        ("Turkey", "TR"),
        ("Côte d'Ivoire", "CI"),
        ("Ivory Coast", "CI"),
        ("Korea, Republic of", "KR"),
        ("South Korea", "KR"),
        ("Bolivia", "BO"),
        ("Plurinational State of Bolivia", "BO"),
    ],
)
def test_country_is_iso_alpha_2_from_codes_names_and_aliases(raw, expected):
    assert n.normalise_country(raw) == expected


@pytest.mark.parametrize("raw", ["Atlantis", "XX", "999"])
def test_country_rejects_unknown_values_with_an_example(raw):
    assert error_of(n.normalise_country, raw).message == (
        f"{raw!r} is not a known country; expected an ISO 3166 country code or name such as "
        f"GB, GBR or United Kingdom"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("eur", "EUR"),
        ("978", "EUR"),
        ("Euro", "EUR"),
        ("euros", "EUR"),
        ("€", "EUR"),
        ("$", "USD"),
        ("US Dollar", "USD"),
        ("£", "GBP"),
        ("Pound Sterling", "GBP"),
        ("chf", "CHF"),
    ],
)
def test_currency_is_iso_4217_from_codes_names_and_symbols(raw, expected):
    assert n.normalise_currency(raw) == expected


def test_currency_rejects_unknown_values():
    assert error_of(n.normalise_currency, "bitcoin").message == (
        "'bitcoin' is not a known currency; expected an ISO 4217 code or name such as "
        "EUR, USD or Pound Sterling"
    )


# --------------------------------------------------------------------------- postal code


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("sw1a  1aa", "SW1A 1AA"), ("10115", "10115"), ("12345-6789", "12345-6789"), (2000, "2000")],
)
def test_postal_code_is_upper_case_with_spaces_collapsed(raw, expected):
    assert n.normalise_postal_code(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "#$%",
            "'#$%' is not a valid postal code; expected letters, digits, spaces or dashes such "
            "as SW1A 1AA or 10115",
        ),
        (
            "SW1A;1AA",
            "'SW1A;1AA' is not a valid postal code; expected letters, digits, spaces or dashes "
            "such as SW1A 1AA or 10115",
        ),
        (
            "1234567890123",
            "'1234567890123' is too long for a postal code; expected at most 12 characters such "
            "as SW1A 1AA or 10115",
        ),
    ],
)
def test_postal_code_rejects_values_that_cannot_be_postal_codes(raw, message):
    assert error_of(n.normalise_postal_code, raw).message == message


# --------------------------------------------------------------------------- VAT and tax IDs


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("DE 136,695 976", None, "DE136695976"),
        ("de136695976", "FR", "DE136695976"),  # a prefix wins over the record's country
        ("136695976", "DE", "DE136695976"),
        ("EL 094259216", None, "EL094259216"),
        ("GR094259216", None, "EL094259216"),  # Greece's VAT prefix is EL
        ("094259216", "GR", "EL094259216"),
        ("NL004495445B01", "DE", "NL004495445B01"),
        ("FR 40 303 265 045", None, "FR40303265045"),
        ("GB 980 7806 84", None, "GB980780684"),
        ("980780684", "GB", "GB980780684"),
        ("CHE-107.787.577 IVA", "CH", "CHE107787577IVA"),
        ("51 824 753 556", "AU", "51824753556"),
        ("12-3456789", "US", "123456789"),  # no checkable VAT number in the US
    ],
)
def test_vat_is_checked_and_compact(raw, country, expected):
    assert n.normalise_vat(raw, in_country(country)) == expected


@pytest.mark.parametrize(
    ("raw", "country", "message"),
    [
        (
            "DE123456789",
            None,
            "'DE123456789' is not a valid VAT number for DE: the number's checksum or check "
            "digit is invalid; expected a number such as DE136695976",
        ),
        (
            "123456789",
            "DE",
            "'123456789' is not a valid VAT number for DE: the number's checksum or check digit "
            "is invalid; expected a number such as DE136695976",
        ),
        (
            "136695976",
            None,
            "'136695976' has no country prefix and the record has no valid country; expected a "
            "VAT number with its country prefix such as DE136695976",
        ),
        (
            "12",
            "US",
            "'12' is not a valid VAT number; expected 4 to 20 letters or digits",
        ),
    ],
)
def test_vat_rejects_numbers_with_bad_check_digits_or_no_country(raw, country, message):
    assert error_of(n.normalise_vat, raw, country).message == message


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("DE136695976", "FR", "DE136695976"),
        ("91-1144442", "US", "911144442"),  # a US EIN
        ("536-90-4399", "US", "536904399"),  # a US SSN used as TIN
    ],
)
def test_tax_id_accepts_vat_numbers_and_taxpayer_numbers(raw, country, expected):
    assert n.normalise_tax_id(raw, in_country(country)) == expected


def test_tax_id_rejects_invalid_numbers():
    assert error_of(n.normalise_tax_id, "bogus", "DE").message == (
        "'bogus' is not a valid tax ID for DE: the number has an invalid format; expected a "
        "number such as DE136695976"
    )


# --------------------------------------------------------------------------- other identifiers


@pytest.mark.parametrize(
    ("normaliser", "raw", "expected"),
    [
        (n.normalise_lei, "529900t8bm49aursdo55", "529900T8BM49AURSDO55"),
        (n.normalise_iban, "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"),
        (n.normalise_iban, "de89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        (n.normalise_bic, "deutdeff", "DEUTDEFF"),
        (n.normalise_bic, "DEUT DE FF 500", "DEUTDEFF500"),
        (n.normalise_gtin, "4006381333931", "04006381333931"),
        (n.normalise_gtin, "4006-3813-3393-1", "04006381333931"),
        (n.normalise_gtin, "73513537", "00000073513537"),  # EAN-8
        (n.normalise_gtin, "036000291452", "00036000291452"),  # UPC-A
        (n.normalise_gtin, "00036000291452", "00036000291452"),  # GTIN-14
        (n.normalise_gtin, 36000291452, "00036000291452"),  # a number lost its leading zero
        (n.normalise_duns, "15-048-3782", "150483782"),
        (n.normalise_duns, "150 483 782", "150483782"),
        (n.normalise_duns, 1504837, "001504837"),
    ],
)
def test_identifiers_are_checked_and_compact(normaliser, raw, expected):
    assert normaliser(raw) == expected


@pytest.mark.parametrize(
    ("normaliser", "raw", "message"),
    [
        (
            n.normalise_lei,
            "529900T8BM49AURSDO56",
            "'529900T8BM49AURSDO56' is not a valid LEI: the number's checksum or check digit is "
            "invalid; expected a value such as 529900T8BM49AURSDO55",
        ),
        (
            n.normalise_iban,
            "DE89 3704 0044 0532 0130 01",
            "'DE89 3704 0044 0532 0130 01' is not a valid IBAN: the number's checksum or check "
            "digit is invalid; expected a value such as GB82WEST12345698765432",
        ),
        (
            n.normalise_bic,
            "AGRIFRPP8",
            "'AGRIFRPP8' is not a valid BIC: the number has an invalid length; expected a value "
            "such as DEUTDEFF or DEUTDEFF500",
        ),
        (
            n.normalise_gtin,
            "4006381333932",
            "'4006381333932' is not a valid GTIN: the number's checksum or check digit is "
            "invalid; expected a value such as 4006381333931",
        ),
        (
            n.normalise_gtin,
            "1234567890",
            "'1234567890' is not a valid GTIN; expected 8, 12, 13 or 14 digits such as "
            "4006381333931",
        ),
        (
            n.normalise_duns,
            "1504837",
            "'1504837' is not a valid D-U-N-S number; expected 9 digits such as 15-048-3782",
        ),
        (
            n.normalise_duns,
            "15048378A",
            "'15048378A' is not a valid D-U-N-S number; expected 9 digits such as 15-048-3782",
        ),
    ],
)
def test_identifiers_with_bad_check_digits_or_format_are_rejected(normaliser, raw, message):
    assert error_of(normaliser, raw).message == message


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("536-90-4399", "US", "536904399"),
        ("111 222 333", "NL", "111222333"),
        ("131052-308T", "FI", "131052-308T"),  # the dash is the century sign: kept
        ("1234567", "AU", "1234567"),  # no checkable national ID in Australia
        ("ab 12 34 56 c", "GB", "AB123456C"),
        ("X1234567", None, "X1234567"),
    ],
)
def test_national_id_is_checked_where_the_country_has_a_known_format(raw, country, expected):
    assert n.normalise_national_id(raw, in_country(country)) == expected


@pytest.mark.parametrize(
    ("raw", "country", "message"),
    [
        (
            "078-05-1120",
            "US",
            "'078-05-1120' is not a valid national ID for US: one of the parts of the number are "
            "invalid or unknown; expected a valid US national ID number",
        ),
        (
            "123456789",
            "NL",
            "'123456789' is not a valid national ID for NL: the number's checksum or check digit "
            "is invalid; expected a valid NL national ID number",
        ),
        ("12", "GB", "'12' is not a valid national ID; expected 4 to 20 letters or digits"),
        (
            "AB#123456",
            None,
            "'AB#123456' is not a valid national ID; expected 4 to 20 letters or digits",
        ),
    ],
)
def test_national_id_rejects_invalid_numbers(raw, country, message):
    assert error_of(n.normalise_national_id, raw, country).message == message


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("19.99", "19.99"),
        ("19.90", "19.9"),
        ("2.50", "2.5"),
        ("100", "100"),
        ("100.00", "100"),
        ("1,299.00", "1299"),
        ("1.299,00", "1299"),
        ("1 299,50", "1299.5"),
        ("19,99", "19.99"),
        ("€19.99", "19.99"),
        ("$ 5", "5"),
        ("19.99 EUR", "19.99"),
        ("0", "0"),
        ("0.00", "0"),
        (19.99, "19.99"),
        (100, "100"),
        (Decimal("2.50"), "2.5"),
    ],
)
def test_price_is_a_normalised_decimal_string(raw, expected):
    assert n.normalise_non_negative_decimal(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("-5", "'-5' is negative; expected a number of zero or more such as 19.99"),
        (-0.01, "-0.01 is negative; expected a number of zero or more such as 19.99"),
        ("12abc", "'12abc' is not a number; expected a decimal number such as 19.99"),
        ("nan", "'nan' is not a number; expected a decimal number such as 19.99"),
        ("1,2,3", "'1,2,3' is not a number; expected a decimal number such as 19.99"),
        (True, "expected a number, got a boolean (True)"),
    ],
)
def test_price_rejects_negatives_and_non_numbers(raw, message):
    assert error_of(n.normalise_non_negative_decimal, raw).message == message


def test_decimal_allows_negatives():
    assert n.normalise_decimal("-5.50") == "-5.5"


@pytest.mark.parametrize(("raw", "expected"), [("42", 42), (7.0, 7), ("1,000", 1000)])
def test_integer_accepts_whole_numbers(raw, expected):
    assert n.normalise_integer(raw) == expected


def test_integer_rejects_fractions():
    assert error_of(n.normalise_integer, "4.5").message == (
        "'4.5' is not a whole number; expected e.g. 42"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (2, "2"),
        (0.4536, "0.454"),
        ("1.5kg", "1.5"),
        ("1,5 kg", "1.5"),
        ("500 g", "0.5"),
        ("3 lb", "1.361"),
        ("2 lbs", "0.907"),
        ("2 pounds", "0.907"),
        ("16 oz", "0.454"),
        ("8 ounces", "0.227"),
        ("0", "0"),
    ],
)
def test_weight_is_kg_with_three_places(raw, expected):
    assert n.normalise_weight_kg(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "5 stone",
            "'5 stone' is not a measurement we can read; expected a number with a unit such as "
            "1.5 kg, 500 g or 3 lb",
        ),
        (
            "kg",
            "'kg' is not a measurement we can read; expected a number with a unit such as "
            "1.5 kg, 500 g or 3 lb",
        ),
        (
            "-1 kg",
            "'-1 kg' is negative; expected a number of zero or more such as 1.5 kg, 500 g or 3 lb",
        ),
        (-2, "-2 is negative; expected a number of zero or more such as 19.99"),
    ],
)
def test_weight_rejects_unknown_units_and_negatives(raw, message):
    assert error_of(n.normalise_weight_kg, raw).message == message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (30, "30"),
        ("30cm", "30"),
        ("150 mm", "15"),
        ("1.2 m", "120"),
        ("12 in", "30.48"),
        ("12 inches", "30.48"),
        ('12"', "30.48"),
        ("2 ft", "60.96"),
        ("0.333 cm", "0.33"),
    ],
)
def test_length_is_cm_with_two_places(raw, expected):
    assert n.normalise_length_cm(raw) == expected


def test_length_rejects_unknown_units():
    assert error_of(n.normalise_length_cm, "3 yards").message == (
        "'3 yards' is not a measurement we can read; expected a number with a unit such as "
        "30 cm, 12 in or 1.2 m"
    )


# --------------------------------------------------------------------------- boolean, enum, list


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        (1.0, True),
        ("true", True),
        ("FALSE", False),
        ("yes", True),
        ("No", False),
        ("y", True),
        ("n", False),
        ("1", True),
        ("0", False),
        ("on", True),
        ("off", False),
        ("opt-in", True),
        ("opt-out", False),
        ("Opted In", True),
        ("opted out", False),
    ],
)
def test_boolean_accepts_the_usual_spellings(raw, expected):
    assert n.normalise_boolean(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", 2, "in", "opt"])
def test_boolean_rejects_anything_else(raw):
    assert error_of(n.normalise_boolean, raw).message == (
        f"{raw!r} is not a yes/no value; expected one of: true, false, yes, no, 1, 0, "
        f"opt-in, opt-out"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("F", "female"),
        ("Female", "female"),
        ("w", "female"),
        ("woman", "female"),
        ("m", "male"),
        ("MALE", "male"),
        ("man", "male"),
        ("x", "other"),
        ("diverse", "other"),
        ("Other", "other"),
        ("u", "unknown"),
        ("unknown", "unknown"),
    ],
)
def test_gender_accepts_choices_and_synonyms(raw, expected):
    assert n.normalise_gender(raw, in_country(None)) == expected


def test_gender_rejects_other_values_listing_the_choices():
    assert error_of(n.normalise_gender, "q").message == (
        "'q' is not a valid gender; expected one of: female, male, other, unknown"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Person", "person"), ("individual", "person"), ("organization", "organisation")],
)
def test_party_type_accepts_choices_and_synonyms(raw, expected):
    assert n.normalise_party_type(raw, in_country(None)) == expected


def test_enum_refuses_a_synonym_for_an_unknown_choice():
    with pytest.raises(ValueError, match="synonym 'z' maps to 'zed', which is not a choice"):
        n.enum(("a", "b"), {"z": "zed"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("tools; hardware", ["Tools", "Hardware"]),
        ("TOOLS,HARDWARE,tools", ["Tools", "Hardware"]),
        ("a|b", ["A", "B"]),
        (["garden", " garden ", "", None, "GARDEN"], ["Garden"]),
        (" ; , ", None),
    ],
)
def test_list_splits_normalises_and_deduplicates_in_order(raw, expected):
    # given a list normaliser of place-style names
    normalise = n.list_of(n.normalise_place_name)

    # when / then
    assert normalise(raw, in_country(None)) == expected


def test_list_reports_the_first_bad_item():
    normalise = n.list_of(n.normalise_country)
    assert error_of(normalise, "GB; Atlantis").message == (
        "'Atlantis' is not a known country; expected an ISO 3166 country code or name such as "
        "GB, GBR or United Kingdom"
    )


# --------------------------------------------------------------------------- all of them


@pytest.mark.parametrize(
    ("normaliser", "raw"),
    [
        (n.normalise_date, dt.date(2020, 1, 2)),
        (n.normalise_datetime, dt.datetime(2020, 1, 2, 3, 4, 5)),
        (n.normalise_non_negative_decimal, Decimal("1E+2")),
        (n.normalise_weight_kg, 1.0),
        (n.normalise_boolean, "yes"),
        (n.normalise_gtin, 4006381333931),
    ],
)
def test_outputs_are_json_serialisable(normaliser, raw):
    value = normaliser(raw, in_country(None))
    assert json.loads(json.dumps(value)) == value
