"""Normalisers: turn one raw attribute value into its canonical, JSON-serialisable form.

Every public ``normalise_*`` function has the :data:`~mdm.domains.base.Normaliser` signature
``(value, context) -> value | None`` and raises :class:`NormalisationError` with a sentence
that says what is wrong and what is expected. ``context`` may be omitted when the value does
not depend on the rest of the record.

The work on a value is done by small pure functions cached with ``lru_cache``: ingestion
sees the same countries, names, cities and e-mail domains over and over. The caches are
bounded and thread-safe. The checking is done by the libraries made for it (phonenumbers,
email-validator, python-stdnum, pycountry, cleanco), not by home-made patterns.

Pure Python: nothing here imports Django.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any

import phonenumbers
import pycountry
from cleanco import basename as cleanco_basename
from email_validator import EmailNotValidError, validate_email
from email_validator.syntax import validate_email_local_part
from stdnum import bic as stdnum_bic
from stdnum import ean as stdnum_ean
from stdnum import iban as stdnum_iban
from stdnum import lei as stdnum_lei
from stdnum.eu import vat as stdnum_eu_vat
from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.util import get_cc_module

from mdm.domains.base import NormalisationError, Normaliser, RecordContext

__all__ = [
    "GENDER_CHOICES",
    "PARTY_TYPE_CHOICES",
    "clean_text",
    "country_code",
    "currency_code",
    "email_address",
    "enum",
    "list_of",
    "normalise_bic",
    "normalise_boolean",
    "normalise_country",
    "normalise_currency",
    "normalise_date",
    "normalise_date_of_birth",
    "normalise_datetime",
    "normalise_decimal",
    "normalise_duns",
    "normalise_email",
    "normalise_gender",
    "normalise_gtin",
    "normalise_iban",
    "normalise_integer",
    "normalise_lei",
    "normalise_length_cm",
    "normalise_mpn",
    "normalise_national_id",
    "normalise_non_negative_decimal",
    "normalise_organisation_name",
    "normalise_party_type",
    "normalise_person_name",
    "normalise_phone",
    "normalise_place_name",
    "normalise_postal_code",
    "normalise_tax_id",
    "normalise_text",
    "normalise_vat",
    "normalise_weight_kg",
    "organisation_base_name",
    "phone_e164",
]

_BIG = 65536  # per-value caches: unique-ish values (phones, e-mails, addresses)
_SMALL = 4096  # values from a small set (countries, currencies, units)


# --------------------------------------------------------------------------- helpers


def _show(value: Any) -> str:
    """The value as quoted in an error message (shortened so a message stays readable)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _as_text(value: Any, what: str) -> str:
    """The raw value as a string; numbers become their plain decimal form."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise NormalisationError(f"expected {what}, got a boolean ({value})")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NormalisationError(f"expected {what}, got {value}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    raise NormalisationError(f"expected {what}, got a {type(value).__name__}")


def _country_of(context: RecordContext | None) -> str | None:
    if context is None:
        return None
    country = context.normalised.get("country")
    return country if isinstance(country, str) else None


def _reason(exc: Exception) -> str:
    """A library's exception message as a clause: "the number has an invalid length"."""
    sentences = [sentence.strip() for sentence in str(exc).strip().rstrip(".").split(". ")]
    return "; ".join(
        sentence[0].lower() + sentence[1:]
        if len(sentence) > 1 and not sentence[1].isupper()
        else sentence
        for sentence in sentences
        if sentence
    )


def _fold(text: str) -> str:
    """A lookup key: accents dropped, case-folded, punctuation dropped, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    chars = []
    for char in decomposed:
        if unicodedata.combining(char) or char in ".'\u2019`":
            continue
        chars.append(" " if char in ",-_/()[]" else char)
    key = " ".join("".join(chars).casefold().replace("&", " and ").split())
    return key[4:] if key.startswith("the ") else key


# --------------------------------------------------------------------------- text


@lru_cache(maxsize=_BIG)
def clean_text(text: str) -> str:
    """NFC, surrounding whitespace removed, inner runs of whitespace collapsed to one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def normalise_text(value: Any, context: RecordContext | None = None) -> str | None:
    return clean_text(_as_text(value, "text")) or None


def normalise_mpn(value: Any, context: RecordContext | None = None) -> str | None:
    """A manufacturer part number: upper case, whitespace collapsed, dashes kept."""
    return clean_text(_as_text(value, "a part number")).upper() or None


# --------------------------------------------------------------------------- names


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Lower-cased inside a person's name when another word follows ("Jan van der Berg").
_PERSON_PARTICLES = _words(
    "van von der den de del della delle dei degli di da das dos do du la le ten ter zu zum zur "
    "bin binti bint ibn af av vom het"
)
_PERSON_UPPER = _words("ii iii iv vi vii viii")
# Lower-cased inside a place's or an organisation's name, never as its first word.
_PLACE_SMALL_WORDS = _words(
    "am an im in on upon of the and de del della la le les sur sous en bei ob der die das du "
    "des y et under by"
)
_ORGANISATION_SMALL_WORDS = _words(
    "of and the for de du des la le et und y e van von der den di da del at on in to by"
)
# Legal forms and the like, written as they usually are.
_ORGANISATION_FORMS = {
    "gmbh": "GmbH",
    "mbh": "mbH",
    "ggmbh": "gGmbH",
    "kgaa": "KGaA",
    "spa": "SpA",
    "a/s": "A/S",
    "co": "Co",
    # Abbreviations without a vowel that are not acronyms.
    **{
        abbreviation: abbreviation.capitalize()
        for abbreviation in _words("ltd pty pvt bhd sdn pte st dr mr mrs ms mt mfg jr sr bldg")
    },
    **{
        form: form.upper()
        for form in _words(
            "ag sa se bv nv llc llp lp plc kg ohg ab as asa oy oyj srl sas sarl sl gbr ug cv snc "
            "doo dd kk aps hf ehf bvba vof cvba"
        )
    },
}
_VOWELS = frozenset("aeiouy")


def _capitalise(word: str) -> str:
    return word[:1].upper() + word[1:].lower()


def _case_part(part: str, kind: str) -> str:
    """Case one word (no spaces, no hyphens) of an all-caps or all-lower-case name."""
    lower = part.lower()
    if "." in lower and all(len(piece) <= 1 for piece in lower.split(".")):
        return part.upper()  # initials: "J.R.R."
    if kind == "organisation":
        if lower in _ORGANISATION_FORMS:
            return _ORGANISATION_FORMS[lower]
        if any(char.isdigit() for char in lower):
            return part.upper()  # "3M", "B2B"
        if len(lower) > 1 and lower.isalpha() and lower.isascii() and not _VOWELS & set(lower):
            return part.upper()  # no vowel: an acronym such as "KPMG", "HSBC", "BP"
    for apostrophe in "'\u2019":
        head, sep, tail = lower.partition(apostrophe)
        if sep and head and tail:
            if len(head) <= 2:  # "O'Brien", "D'Angelo", "L'Aquila"
                return _capitalise(head) + sep + _case_part(tail, kind)
            return _case_part(head, kind) + sep + tail  # "McDonald's", "King's"
    if lower.startswith("mc") and len(lower) > 3 and lower[2].isalpha():
        return "Mc" + _capitalise(lower[2:])
    if kind == "person" and lower in _PERSON_UPPER:
        return part.upper()
    return _capitalise(part)


def _case_name(text: str, kind: str) -> str:
    words = text.split(" ")
    last = len(words) - 1
    out = []
    for index, word in enumerate(words):
        lower = word.lower()
        if kind == "person" and index < last and lower in _PERSON_PARTICLES:
            out.append(lower)
            continue
        small = _ORGANISATION_SMALL_WORDS if kind == "organisation" else _PLACE_SMALL_WORDS
        if kind != "person" and index > 0 and lower in small:
            out.append(lower)
            continue
        parts = word.split("-")
        cased = []
        for position, part in enumerate(parts):
            if kind == "place" and 0 < position < len(parts) - 1 and part.lower() in small:
                cased.append(part.lower())  # "Stratford-upon-Avon"
            else:
                cased.append(_case_part(part, kind) if part else part)
        out.append("-".join(cased))
    return " ".join(out)


@lru_cache(maxsize=_BIG)
def _name(text: str, kind: str) -> str:
    cleaned = clean_text(text)
    if cleaned.isupper() or cleaned.islower():
        return _case_name(cleaned, kind)
    return cleaned  # mixed case is taken as written


def normalise_person_name(value: Any, context: RecordContext | None = None) -> str | None:
    """A person's name; ALL CAPS or all lower case becomes "Jan van der Berg", "O'Brien"."""
    return _name(_as_text(value, "a name"), "person") or None


def normalise_organisation_name(value: Any, context: RecordContext | None = None) -> str | None:
    """An organisation's name with its legal form kept ("Acme Widgets GmbH").

    ALL CAPS or all lower case becomes title case, keeping acronyms ("KPMG") and legal
    forms ("GmbH", "AG", "PLC") in their usual spelling.
    """
    return _name(_as_text(value, "a name"), "organisation") or None


def normalise_place_name(value: Any, context: RecordContext | None = None) -> str | None:
    """A city or other place; ALL CAPS becomes "Frankfurt am Main", "Stratford-upon-Avon"."""
    return _name(_as_text(value, "a place name"), "place") or None


@lru_cache(maxsize=_BIG)
def organisation_base_name(name: str) -> str:
    """The name without its legal form, lower-cased and without punctuation, for matching.

    "Müller & Söhne GmbH & Co. KG" -> "müller söhne"; "AT&T Inc." -> "att".
    """
    base = cleanco_basename(clean_text(name))
    kept = "".join(char for char in base.lower() if char.isalnum() or char.isspace())
    return " ".join(kept.split())


# --------------------------------------------------------------------------- dates

_DATE_EXAMPLE = "1984-07-21"
_EARLIEST_BIRTH = date(1000, 1, 1)


@lru_cache(maxsize=_BIG)
def _parse_date(text: str) -> date:
    text = text.strip()
    if len(text) == 10 and text[4] in "-/." and text[7] == text[4]:
        year, month, day = text[:4], text[5:7], text[8:]
    elif len(text) == 8 and text.isascii() and text.isdigit():  # FEBRL style: 19840721
        year, month, day = text[:4], text[4:6], text[6:]
    else:
        try:
            return datetime.fromisoformat(text).date()
        except ValueError:
            raise NormalisationError(
                f"{_show(text)} is not a date; expected YYYY-MM-DD such as {_DATE_EXAMPLE}"
            ) from None
    if not (year + month + day).isascii() or not (year + month + day).isdigit():
        raise NormalisationError(
            f"{_show(text)} is not a date; expected YYYY-MM-DD such as {_DATE_EXAMPLE}"
        )
    try:
        return date(int(year), int(month), int(day))
    except ValueError as exc:
        raise NormalisationError(
            f"{_show(text)} is not a valid date ({exc}); expected YYYY-MM-DD such as "
            f"{_DATE_EXAMPLE}"
        ) from None


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return _parse_date(_as_text(value, "a date"))


def normalise_date(value: Any, context: RecordContext | None = None) -> str:
    """A calendar date as "YYYY-MM-DD"; accepts dates, "YYYY-MM-DD" and "YYYYMMDD"."""
    return _to_date(value).isoformat()


def normalise_date_of_birth(value: Any, context: RecordContext | None = None) -> str:
    """A date of birth: a real date, not in the future, and from year 1000 on.

    Only impossible values are refused here (a rejected record goes to quarantine as a
    whole).  An improbable one for a living customer, such as 1850, is a data-quality
    finding for a steward, not a reason to refuse the record.
    """
    born = _to_date(value)
    if born > date.today():
        raise NormalisationError(
            f"date of birth {born.isoformat()} is in the future; expected a past date"
        )
    if born < _EARLIEST_BIRTH:
        raise NormalisationError(
            f"date of birth {born.isoformat()} is before the year 1000; expected a real "
            "date of birth (is the year mistyped?)"
        )
    return born.isoformat()


@lru_cache(maxsize=_BIG)
def _parse_datetime(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise NormalisationError(
            f"{_show(text)} is not an ISO 8601 date and time; expected a value such as "
            f"2024-03-01T14:30:00+01:00"
        ) from None


def normalise_datetime(value: Any, context: RecordContext | None = None) -> str:
    """A moment as ISO 8601 in UTC ("2024-03-01T13:30:00+00:00"); naive values are UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        moment = _parse_datetime(_as_text(value, "a date and time"))
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


# --------------------------------------------------------------------------- e-mail

_EMAIL_EXAMPLE = "jane.doe@example.com"
_EMAIL_MAX_LENGTH = 254  # RFC 5321, as email-validator checks it
# Characters that make email-validator's full parse necessary (quotes, display names, ...).
_EMAIL_SPECIALS = frozenset('"<>()[]\\,;: \t')


@lru_cache(maxsize=_BIG)
def _email_domain(domain: str) -> str:
    """The domain as email-validator normalises it; cached, since domains repeat a lot."""
    return str(validate_email("postmaster@" + domain, check_deliverability=False).domain)


def _simple_email(text: str) -> str | None:
    """The common case, checked by the library in two cached halves; None to do it in full.

    For a plain ASCII address this accepts exactly what validate_email accepts: the
    local part and the domain are checked by the same email-validator functions, and the
    whole address by the same length limit. The domain check, most of the cost, is cached.
    """
    if not text.isascii() or len(text) > _EMAIL_MAX_LENGTH or _EMAIL_SPECIALS.intersection(text):
        return None
    local, at, domain = text.rpartition("@")
    if not at or not local or "@" in local:
        return None
    try:
        validate_email_local_part(local, allow_smtputf8=False, quoted_local_part=False)
        normalised_domain = _email_domain(domain)
    except EmailNotValidError:
        return None  # the full check says why
    return f"{local}@{normalised_domain}".lower()


@lru_cache(maxsize=_BIG)
def email_address(text: str) -> str:
    """The address checked for syntax (no DNS look-up) and lower-cased as a whole.

    A display name ("Jane Doe <jane@example.com>") is accepted and dropped.
    """
    text = text.strip()
    simple = _simple_email(text)
    if simple is not None:
        return simple
    try:
        checked = validate_email(text, check_deliverability=False, allow_display_name=True)
    except EmailNotValidError as exc:
        raise NormalisationError(
            f"{_show(text)} is not a valid e-mail address: {_reason(exc)}; expected an address "
            f"such as {_EMAIL_EXAMPLE}"
        ) from None
    return checked.normalized.lower()


def normalise_email(value: Any, context: RecordContext | None = None) -> str:
    return email_address(_as_text(value, "an e-mail address"))


# --------------------------------------------------------------------------- phone

_PHONE_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "its country code is not known",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "it does not look like a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "it is too short",
    phonenumbers.NumberParseException.TOO_LONG: "it is too long",
}


@cache
def _phone_example(region: str | None) -> str:
    number = phonenumbers.example_number(region) if region else None
    if number is None:
        return "+44 20 7946 0958"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _parse_phone(text: str, region: str | None, shown: str) -> phonenumbers.PhoneNumber:
    """The parsed number; NormalisationError (quoting ``shown``) unless it is valid."""
    where = f" for {region}" if region else ""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        reason = _PHONE_PARSE_REASONS.get(exc.error_type, "it cannot be read")
        raise NormalisationError(
            f"{_show(shown)} is not a valid phone number{where} ({reason}); expected a number "
            f"such as {_phone_example(region)}"
        ) from None
    # The region's own patterns are the cheap check; the full one finds the number's region.
    if not (
        region is not None
        and number.country_code == phonenumbers.country_code_for_region(region)
        and phonenumbers.is_valid_number_for_region(number, region)
    ) and not phonenumbers.is_valid_number(number):
        number_region = phonenumbers.region_code_for_country_code(number.country_code or 0)
        if number_region and number_region != phonenumbers.UNKNOWN_REGION:
            where, region = f" for {number_region}", number_region
        raise NormalisationError(
            f"{_show(shown)} is not a valid phone number{where}; expected a number such as "
            f"{_phone_example(region)}"
        )
    return number


@lru_cache(maxsize=_BIG)
def phone_e164(text: str, region: str | None) -> str:
    """The number in E.164 ("+61298765432"), read as a national number of ``region``.

    Without a region only international numbers ("+61 2 9876 5432", "0061 2 ...") are
    accepted. The number must be valid (phonenumbers.is_valid_number), not merely plausible.
    """
    text = text.strip()
    # "00" is the international prefix almost everywhere, even in countries whose own
    # prefix is another one (Australia's is 0011).
    international = "+" + text[2:] if text.startswith("00") else None
    if region is None:
        if international is None and not text.startswith("+"):
            raise NormalisationError(
                f"{_show(text)} is not in international form and the record has no valid "
                f"country; expected a number starting with + and the country code, such as "
                f"{_phone_example(None)}"
            )
        number = _parse_phone(international or text, None, text)
    else:
        try:
            number = _parse_phone(text, region, text)
        except NormalisationError as national_error:
            if international is None:
                raise
            try:
                number = _parse_phone(international, None, text)
            except NormalisationError:
                raise national_error from None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_phone(value: Any, context: RecordContext | None = None) -> str:
    """A phone number in E.164, read in the record's (already normalised) ``country``."""
    return phone_e164(_as_text(value, "a phone number"), _country_of(context))


# --------------------------------------------------------------------------- country, currency

_COUNTRY_ALIASES = {
    "GB": "uk;u k;great britain;britain;england;scotland;wales;northern ireland;"
    "united kingdom of great britain",
    "US": "usa;u s;u s a;united states;united states of america;america;us of a",
    "NL": "holland;nederland;netherlands the",
    "DE": "deutschland;brd;west germany",
    "AT": "osterreich;austria",
    "CH": "schweiz;suisse;svizzera;swiss confederation",
    "ES": "espana",
    "IT": "italia",
    "FR": "republique francaise",
    "BE": "belgique;belgie",
    "SE": "sverige",
    "NO": "norge",
    "DK": "danmark",
    "FI": "suomi",
    "PL": "polska",
    "BR": "brasil",
    "IE": "eire;republic of ireland",
    "RU": "russia;russian federation",
    "KR": "korea;south korea;republic of korea",
    "KP": "north korea",
    "CI": "ivory coast;cote divoire",
    "TR": "turkey;turkiye",
    "MK": "macedonia;north macedonia",
    "SZ": "swaziland",
    "MM": "burma",
    "CV": "cape verde",
    "CD": "dr congo;drc;democratic republic of congo;congo kinshasa",
    "CG": "republic of congo;congo brazzaville",
    "PS": "palestine",
    "FM": "micronesia",
    "VA": "vatican;vatican city;holy see",
    "BN": "brunei",
    "CZ": "czech republic;czechia",
    "AE": "uae;emirates",
    "TL": "east timor",
    "CN": "prc;peoples republic of china",
    "TW": "republic of china",
    "HK": "hong kong sar",
    "MO": "macau;macao",
    "SA": "ksa",
    "VN": "viet nam",
    "LA": "laos",
}


@cache
def _country_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for country in pycountry.countries:
        for attr in ("alpha_2", "alpha_3", "numeric", "name", "official_name", "common_name"):
            label = getattr(country, attr, None)
            if label:
                index.setdefault(_fold(label), country.alpha_2)
    for alpha_2, aliases in _COUNTRY_ALIASES.items():
        for alias in aliases.split(";"):
            index[_fold(alias)] = alpha_2
    return index


@lru_cache(maxsize=_SMALL)
def country_code(text: str) -> str:
    """ISO 3166-1 alpha-2 for a code (alpha-2, alpha-3, numeric), a name or a common alias."""
    key = _fold(text)
    if key.isdigit():
        key = key.zfill(3)
    code = _country_index().get(key)
    if code is None:
        raise NormalisationError(
            f"{_show(text)} is not a known country; expected an ISO 3166 country code or name "
            f"such as GB, GBR or United Kingdom"
        )
    return code


def normalise_country(value: Any, context: RecordContext | None = None) -> str:
    return country_code(_as_text(value, "a country"))


_CURRENCY_ALIASES = {
    "EUR": "€;euro;euros",
    "USD": "$;us$;us dollar;dollar;usd$",
    "GBP": "£;pound;pound sterling;sterling;gbp£",
    "JPY": "¥;yen",
    "CNY": "rmb;yuan;renminbi",
    "AUD": "a$;au$",
    "CAD": "c$;ca$",
    "NZD": "nz$",
    "HKD": "hk$",
    "SGD": "s$",
    "BRL": "r$",
    "INR": "₹;rupee",
    "KRW": "₩;won",
    "RUB": "₽;rouble;ruble",
    "TRY": "₺;lira",
    "PLN": "zł;zloty",
    "CHF": "swiss franc",
}


@cache
def _currency_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for currency in pycountry.currencies:
        for attr in ("alpha_3", "numeric", "name"):
            label = getattr(currency, attr, None)
            if label:
                index.setdefault(_fold(label), currency.alpha_3)
    for code, aliases in _CURRENCY_ALIASES.items():
        for alias in aliases.split(";"):
            index[_fold(alias)] = code
    return index


@lru_cache(maxsize=_SMALL)
def currency_code(text: str) -> str:
    """ISO 4217 code for a code, a numeric code, a name ("euro", "US dollars") or a symbol."""
    key = _fold(text)
    index = _currency_index()
    code = index.get(key) or (index.get(key[:-1]) if key.endswith("s") else None)
    if code is None:
        raise NormalisationError(
            f"{_show(text)} is not a known currency; expected an ISO 4217 code or name such as "
            f"EUR, USD or Pound Sterling"
        )
    return code


def normalise_currency(value: Any, context: RecordContext | None = None) -> str:
    return currency_code(_as_text(value, "a currency"))


# --------------------------------------------------------------------------- postal code


@lru_cache(maxsize=_BIG)
def _postal_code(text: str) -> str:
    code = clean_text(text).upper()
    if not any(char.isalnum() for char in code) or not all(
        char.isalnum() or char in " -" for char in code
    ):
        raise NormalisationError(
            f"{_show(text)} is not a valid postal code; expected letters, digits, spaces or "
            f"dashes such as SW1A 1AA or 10115"
        )
    if len(code) > 12:
        raise NormalisationError(
            f"{_show(text)} is too long for a postal code; expected at most 12 characters "
            f"such as SW1A 1AA or 10115"
        )
    return code


def normalise_postal_code(value: Any, context: RecordContext | None = None) -> str:
    """A postal code: upper case, spaces collapsed; letters, digits, spaces and dashes only."""
    return _postal_code(_as_text(value, "a postal code"))


# --------------------------------------------------------------------------- identifiers


def _compact(text: str) -> str:
    return "".join(char for char in text if char not in " -./,\t\u00a0").upper()


def _generic_identifier(text: str, what: str) -> str:
    compact = _compact(text)
    if not (4 <= len(compact) <= 20 and compact.isalnum() and compact.isascii()):
        raise NormalisationError(
            f"{_show(text)} is not a valid {what}; expected 4 to 20 letters or digits"
        )
    return compact


def _stdnum_check(module: Any, text: str, what: str, example: str) -> str:
    try:
        return str(module.validate(text))
    except StdnumValidationError as exc:
        raise NormalisationError(
            f"{_show(text)} is not a valid {what}: {_reason(exc)}; expected a value such as "
            f"{example}"
        ) from None


@lru_cache(maxsize=_BIG)
def _lei(text: str) -> str:
    return _stdnum_check(stdnum_lei, text.strip().upper(), "LEI", "529900T8BM49AURSDO55")


def normalise_lei(value: Any, context: RecordContext | None = None) -> str:
    """A Legal Entity Identifier (ISO 17442), 20 characters with check digits."""
    return _lei(_as_text(value, "an LEI"))


@lru_cache(maxsize=_BIG)
def _iban(text: str) -> str:
    return _stdnum_check(stdnum_iban, text.strip(), "IBAN", "GB82WEST12345698765432")


def normalise_iban(value: Any, context: RecordContext | None = None) -> str:
    """An IBAN, checked (check digits and national format), compact and upper case."""
    return _iban(_as_text(value, "an IBAN"))


@lru_cache(maxsize=_BIG)
def _bic(text: str) -> str:
    return _stdnum_check(stdnum_bic, text.strip(), "BIC", "DEUTDEFF or DEUTDEFF500")


def normalise_bic(value: Any, context: RecordContext | None = None) -> str:
    """A BIC (SWIFT code) of 8 or 11 characters, compact and upper case."""
    return _bic(_as_text(value, "a BIC"))


@lru_cache(maxsize=_BIG)
def _gtin(text: str, from_number: bool) -> str:
    digits = _compact(text)
    if from_number and digits.isdigit() and len(digits) < 14:
        digits = digits.zfill(14)  # a number lost its leading zeros
    if not (digits.isascii() and digits.isdigit() and len(digits) in (8, 12, 13, 14)):
        raise NormalisationError(
            f"{_show(text)} is not a valid GTIN; expected 8, 12, 13 or 14 digits such as "
            f"4006381333931"
        )
    return _stdnum_check(stdnum_ean, digits, "GTIN", "4006381333931").zfill(14)


def normalise_gtin(value: Any, context: RecordContext | None = None) -> str:
    """A GTIN (EAN-8, UPC-A, EAN-13 or GTIN-14) with its check digit, as 14 digits."""
    return _gtin(_as_text(value, "a GTIN"), not isinstance(value, str))


@lru_cache(maxsize=_BIG)
def _duns(text: str, from_number: bool) -> str:
    digits = _compact(text)
    if from_number and digits.isdigit() and len(digits) < 9:
        digits = digits.zfill(9)
    if not (digits.isascii() and digits.isdigit() and len(digits) == 9):
        raise NormalisationError(
            f"{_show(text)} is not a valid D-U-N-S number; expected 9 digits such as 15-048-3782"
        )
    return digits


def normalise_duns(value: Any, context: RecordContext | None = None) -> str:
    """A D-U-N-S number: 9 digits (it has no check digit)."""
    return _duns(_as_text(value, "a D-U-N-S number"), not isinstance(value, str))


_VAT_EXAMPLE = "DE136695976"
# VAT numbers of these non-EU countries are written with the country prefix, as in the EU.
_VAT_PREFIXED = frozenset({"GB"})


def _vat_prefix(country: str) -> str:
    return "EL" if country == "GR" else country


def _is_eu_vat_prefix(prefix: str) -> bool:
    return prefix == "EL" or (prefix != "GR" and prefix.lower() in stdnum_eu_vat.MEMBER_STATES)


def _eu_vat(number: str) -> str:
    return str(stdnum_eu_vat.validate(number))


@cache
def _cc_module(country: str, name: str) -> Any:
    return get_cc_module(country.lower(), name)


def _vat_candidates(compact: str, country: str | None) -> list[tuple[str, Callable[[], str]]]:
    """The ways ``compact`` may be a VAT number, most likely first: (country, check)."""
    candidates: list[tuple[str, Callable[[], str]]] = []
    prefix = compact[:2]
    if prefix == "GR":
        compact, prefix = "EL" + compact[2:], "EL"
    if _is_eu_vat_prefix(prefix):
        candidates.append((prefix, lambda: _eu_vat(compact)))
    if country:
        own = _vat_prefix(country)
        if _is_eu_vat_prefix(own):
            if prefix != own:
                candidates.append((country, lambda: _eu_vat(own + compact)))
        elif (module := _cc_module(country, "vat")) is not None:
            formatted = own if country in _VAT_PREFIXED else ""
            candidates.append((country, lambda: formatted + module.validate(compact)))
            if compact.startswith(country):
                candidates.append(
                    (country, lambda: formatted + module.validate(compact[len(country) :]))
                )
    elif not candidates and prefix.isalpha() and (module := _cc_module(prefix, "vat")):
        formatted = prefix if prefix in _VAT_PREFIXED else ""
        candidates.append((prefix, lambda: formatted + module.validate(compact)))
        candidates.append((prefix, lambda: formatted + module.validate(compact[2:])))
    return candidates


def _first_valid(
    text: str, candidates: Iterable[tuple[str, Callable[[], str]]], what: str, expected: str
) -> str | None:
    """The first candidate check that passes, or the first failure as a NormalisationError."""
    first_error: tuple[str, StdnumValidationError] | None = None
    for country, check in candidates:
        try:
            number = check()
        except StdnumValidationError as exc:
            first_error = first_error or (country, exc)
            continue
        return "EL" + number[2:] if number.startswith("GR") else number
    if first_error is None:
        return None
    country, error = first_error
    raise NormalisationError(
        f"{_show(text)} is not a valid {what} for {country}: {_reason(error)}; expected {expected}"
    )


@lru_cache(maxsize=_BIG)
def _vat(text: str, country: str | None, allow_tin: bool) -> str:
    compact = _compact(text)
    candidates = _vat_candidates(compact, country)
    what = "tax ID" if allow_tin else "VAT number"
    if allow_tin and country and (tin := _cc_module(country, "tin")) is not None:
        candidates.append((country, lambda: tin.validate(compact)))
    number = _first_valid(text, candidates, what, f"a number such as {_VAT_EXAMPLE}")
    if number is not None:
        return number
    if country is None:
        raise NormalisationError(
            f"{_show(text)} has no country prefix and the record has no valid country; "
            f"expected a {what} with its country prefix such as {_VAT_EXAMPLE}"
        )
    return _generic_identifier(text, what)  # the country has no checkable VAT number


def normalise_vat(value: Any, context: RecordContext | None = None) -> str:
    """A VAT number, checked with its check digits, compact.

    EU numbers carry their country prefix ("DE136695976", Greece "EL..."); a number without
    a prefix is read in the record's country. For a country python-stdnum has no VAT module
    for, 4 to 20 letters or digits are accepted.
    """
    return _vat(_as_text(value, "a VAT number"), _country_of(context), False)


def normalise_tax_id(value: Any, context: RecordContext | None = None) -> str:
    """A tax ID: a VAT number, or the country's taxpayer number (e.g. a US TIN)."""
    return _vat(_as_text(value, "a tax ID"), _country_of(context), True)


# Personal identity numbers python-stdnum can check, by country.
_NATIONAL_ID_MODULES = {
    "AR": ("ar.dni",),
    "AT": ("at.vnr",),
    "BE": ("be.nn",),
    "BG": ("bg.egn",),
    "BR": ("br.cpf",),
    "CA": ("ca.sin",),
    "CH": ("ch.ssn",),
    "CL": ("cl.rut",),
    "CN": ("cn.ric",),
    "CZ": ("cz.rc",),
    "DE": ("de.idnr",),
    "DK": ("dk.cpr",),
    "EE": ("ee.ik",),
    "ES": ("es.dni", "es.nie"),
    "FI": ("fi.hetu",),
    "FR": ("fr.nir",),
    "IE": ("ie.pps",),
    "IN": ("in_.aadhaar",),
    "IS": ("is_.kennitala",),
    "IT": ("it.codicefiscale",),
    "KR": ("kr.rrn",),
    "LT": ("lt.asmens",),
    "MX": ("mx.curp",),
    "NL": ("nl.bsn",),
    "NO": ("no.fodselsnummer",),
    "PL": ("pl.pesel",),
    "PT": ("pt.cc",),
    "RO": ("ro.cnp",),
    "SE": ("se.personnummer",),
    "SI": ("si.emso",),
    "US": ("us.ssn",),
    "ZA": ("za.idnr",),
}


@cache
def _national_id_modules(country: str) -> tuple[Any, ...]:
    return tuple(
        importlib.import_module(f"stdnum.{name}") for name in _NATIONAL_ID_MODULES.get(country, ())
    )


@lru_cache(maxsize=_BIG)
def _national_id(text: str, country: str | None) -> str:
    modules = _national_id_modules(country) if country else ()
    if not modules:
        return _generic_identifier(text, "national ID")
    stripped = clean_text(text).upper()
    # Some numbers carry meaning in a dash (the Finnish century sign): each module compacts.
    candidates = [(str(country), lambda m=module: m.validate(stripped)) for module in modules]
    number = _first_valid(text, candidates, "national ID", f"a valid {country} national ID number")
    assert number is not None
    return number


def normalise_national_id(value: Any, context: RecordContext | None = None) -> str:
    """A national identity number, compact and upper case.

    Checked with python-stdnum where the record's country has a personal-ID module (US SSN,
    NL BSN, SE personnummer, ...); otherwise 4 to 20 letters or digits.
    """
    return _national_id(_as_text(value, "a national ID"), _country_of(context))


# --------------------------------------------------------------------------- numbers


def _decimal_text(number: Decimal) -> str:
    """ "19.99", "2.5", "100": no exponent, no trailing zeros."""
    if number == 0:
        return "0"
    return format(number.normalize(), "f")


def _strip_currency(text: str) -> str | None:
    """Drop a currency symbol or code before or after the number ("€19.99", "19.99 EUR").

    None when the text around the number is not a currency.
    """
    start, end = 0, len(text)
    while start < end and (text[start].isalpha() or unicodedata.category(text[start]) == "Sc"):
        start += 1
    while end > start and (text[end - 1].isalpha() or unicodedata.category(text[end - 1]) == "Sc"):
        end -= 1
    for affix in (text[:start], text[end:]):
        if affix.strip() and _fold(affix) not in _currency_index():
            return None
    return text[start:end]


@lru_cache(maxsize=_BIG)
def _parse_decimal(text: str) -> Decimal:
    number = _strip_currency(text.strip())
    result = Decimal("NaN")
    if number is not None:
        number = "".join(char for char in number if char not in " '\u00a0\u202f\u2009")
        comma, dot = number.rfind(","), number.rfind(".")
        if comma >= 0 and dot >= 0:  # the later mark is the decimal separator
            if comma > dot:
                number = number.replace(".", "").replace(",", ".")
            else:
                number = number.replace(",", "")
        elif comma >= 0:
            groups = number.lstrip("+-").split(",")
            if (
                len(groups) > 1
                and 1 <= len(groups[0]) <= 3
                and all(len(group) == 3 for group in groups[1:])
            ):
                number = number.replace(",", "")  # "1,299": a thousands separator
            elif len(groups) == 2:
                number = number.replace(",", ".")  # "19,99": a decimal comma
        with contextlib.suppress(InvalidOperation):
            result = Decimal(number)
    if not result.is_finite():
        raise NormalisationError(
            f"{_show(text)} is not a number; expected a decimal number such as 19.99"
        )
    return result


def _to_decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise NormalisationError(f"expected {what}, got a boolean ({value})")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise NormalisationError(f"expected {what}, got {value}")
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NormalisationError(f"expected {what}, got {value}")
        return Decimal(repr(value))
    return _parse_decimal(_as_text(value, what))


def _non_negative(number: Decimal, value: Any, example: str = "19.99") -> Decimal:
    if number < 0:
        raise NormalisationError(
            f"{_show(value)} is negative; expected a number of zero or more such as {example}"
        )
    return number


def normalise_decimal(value: Any, context: RecordContext | None = None) -> str:
    """A decimal number as a string ("19.99", "2.5"); accepts "1,299.00", "€19.99", "19,99"."""
    return _decimal_text(_to_decimal(value, "a number"))


def normalise_non_negative_decimal(value: Any, context: RecordContext | None = None) -> str:
    """A decimal number of zero or more (a price), as a string."""
    return _decimal_text(_non_negative(_to_decimal(value, "a number"), value))


def normalise_integer(value: Any, context: RecordContext | None = None) -> int:
    number = _to_decimal(value, "a whole number")
    if number != number.to_integral_value():
        raise NormalisationError(f"{_show(value)} is not a whole number; expected e.g. 42")
    return int(number)


_KG_PER_UNIT = {
    **dict.fromkeys(("kg", "kgs", "kilo", "kilos", "kilogram", "kilograms"), Decimal(1)),
    **dict.fromkeys(("g", "gram", "grams", "gramme", "grammes"), Decimal("0.001")),
    **dict.fromkeys(("mg", "milligram", "milligrams"), Decimal("0.000001")),
    **dict.fromkeys(("t", "tonne", "tonnes"), Decimal(1000)),
    **dict.fromkeys(("lb", "lbs", "pound", "pounds"), Decimal("0.45359237")),
    **dict.fromkeys(("oz", "ounce", "ounces"), Decimal("0.028349523125")),
}
_CM_PER_UNIT = {
    **dict.fromkeys(("cm", "centimetre", "centimetres", "centimeter", "centimeters"), Decimal(1)),
    **dict.fromkeys(
        ("mm", "millimetre", "millimetres", "millimeter", "millimeters"), Decimal("0.1")
    ),
    **dict.fromkeys(("m", "metre", "metres", "meter", "meters"), Decimal(100)),
    **dict.fromkeys(("in", "inch", "inches", '"', "\u2033", "''"), Decimal("2.54")),
    **dict.fromkeys(("ft", "foot", "feet", "'", "\u2032"), Decimal("30.48")),
}


@lru_cache(maxsize=_BIG)
def _measure(text: str, units: str) -> str:
    factors, places, example = (
        (_KG_PER_UNIT, Decimal("0.001"), "1.5 kg, 500 g or 3 lb")
        if units == "kg"
        else (_CM_PER_UNIT, Decimal("0.01"), "30 cm, 12 in or 1.2 m")
    )
    stripped = text.strip()
    split = len(stripped)
    while split > 0 and not stripped[split - 1].isdigit():
        split -= 1
    amount, unit = stripped[:split], stripped[split:].strip().lower().rstrip(".")
    factor = factors.get(unit or units)
    if factor is None or not amount:
        raise NormalisationError(
            f"{_show(text)} is not a measurement we can read; expected a number with a unit "
            f"such as {example}"
        )
    number = _non_negative(_parse_decimal(amount), text, example)
    return _decimal_text((number * factor).quantize(places, rounding=ROUND_HALF_UP))


def _measurement(value: Any, units: str) -> str:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        number = _to_decimal(value, "a number")
        return _measure(_decimal_text(_non_negative(number, value)), units)
    return _measure(_as_text(value, "a measurement"), units)


def normalise_weight_kg(value: Any, context: RecordContext | None = None) -> str:
    """A weight in kg, 3 decimal places at most; numbers are kg, strings may say g, lb, oz."""
    return _measurement(value, "kg")


def normalise_length_cm(value: Any, context: RecordContext | None = None) -> str:
    """A length in cm, 2 decimal places at most; numbers are cm, strings may say mm, m, in, ft."""
    return _measurement(value, "cm")


# --------------------------------------------------------------------------- boolean, enum, list

_TRUE = frozenset(
    (
        "true",
        "t",
        "yes",
        "y",
        "1",
        "on",
        "opt-in",
        "optin",
        "opt in",
        "opted in",
        "opted-in",
        "subscribed",
    )
)
_FALSE = frozenset(
    (
        "false",
        "f",
        "no",
        "n",
        "0",
        "off",
        "opt-out",
        "optout",
        "opt out",
        "opted out",
        "opted-out",
        "unsubscribed",
    )
)


def normalise_boolean(value: Any, context: RecordContext | None = None) -> bool:
    """True/false from booleans, 0/1 and words: yes/no, y/n, on/off, opt-in/opt-out, ..."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        key = " ".join(value.lower().split())
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
    raise NormalisationError(
        f"{_show(value)} is not a yes/no value; expected one of: true, false, yes, no, 1, 0, "
        f"opt-in, opt-out"
    )


def enum(
    choices: Sequence[str], synonyms: Mapping[str, str] | None = None, what: str = "value"
) -> Normaliser:
    """A normaliser accepting ``choices`` and ``synonyms`` (both case-insensitive)."""
    lookup = {choice.casefold(): choice for choice in choices}
    for synonym, choice in (synonyms or {}).items():
        if choice not in choices:
            raise ValueError(f"synonym {synonym!r} maps to {choice!r}, which is not a choice")
        lookup[synonym.casefold()] = choice
    expected = ", ".join(choices)

    def normalise_enum(value: Any, context: RecordContext | None = None) -> str:
        text = _as_text(value, what)
        choice = lookup.get(" ".join(text.casefold().split()))
        if choice is None:
            raise NormalisationError(
                f"{_show(value)} is not a valid {what}; expected one of: {expected}"
            )
        return choice

    return normalise_enum


GENDER_CHOICES = ("female", "male", "other", "unknown")
normalise_gender = enum(
    GENDER_CHOICES,
    {
        **dict.fromkeys(("f", "w", "woman", "women", "girl", "feminine"), "female"),
        **dict.fromkeys(("m", "man", "men", "boy", "masculine"), "male"),
        **dict.fromkeys(("x", "d", "diverse", "non-binary", "nonbinary", "nb"), "other"),
        **dict.fromkeys(("u", "unknown", "not known", "unspecified", "n/a", "?"), "unknown"),
    },
    what="gender",
)

PARTY_TYPE_CHOICES = ("person", "organisation")
normalise_party_type = enum(
    PARTY_TYPE_CHOICES,
    {
        **dict.fromkeys(("p", "individual", "private", "consumer", "b2c", "people"), "person"),
        **dict.fromkeys(
            ("o", "organization", "org", "company", "business", "corporate", "b2b", "legal"),
            "organisation",
        ),
    },
    what="party type",
)


def list_of(item: Normaliser, separators: str = ";,|") -> Normaliser:
    """A normaliser for a list (or a delimited string) of items, de-duplicated in order."""
    first = separators[0]

    def normalise_list(value: Any, context: RecordContext | None = None) -> list[Any] | None:
        if isinstance(value, str):
            for separator in separators[1:]:
                value = value.replace(separator, first)
            items: Iterable[Any] = value.split(first)
        elif isinstance(value, list | tuple):
            items = value
        else:
            items = [value]
        out: list[Any] = []
        for raw in items:
            if isinstance(raw, str):
                raw = raw.strip()
            if raw is None or raw == "":
                continue
            normalised = item(raw, context)  # type: ignore[arg-type]
            if normalised is not None and normalised not in out:
                out.append(normalised)
        return out or None

    return normalise_list
