"""The customer domain: people and organisations a company sells to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdm.domains import normalisers as n
from mdm.domains.base import Attribute, Domain, RelationshipType
from mdm.domains.common import address_attributes
from mdm.domains.match_spec import ComparisonSpec, MatchSpec


def display_name(attributes: Mapping[str, Any]) -> str:
    """Full name, else given and family name, else the organisation's name."""
    organisation = attributes.get("organisation_name") or ""
    if attributes.get("party_type") == "organisation" and organisation:
        return str(organisation)
    if full_name := attributes.get("full_name"):
        return str(full_name)
    parts = [attributes.get(name) for name in ("given_name", "family_name")]
    return " ".join(str(part) for part in parts if part) or str(organisation)


# The default survivorship rules (admins change them in the hub).  Every attribute not named
# here survives by source priority, then the most recent, most frequent and most complete
# value.  A consent is a statement in time: the latest one wins whatever its source.
SURVIVORSHIP = {
    "rules": {
        name: {"strategy": "most_recent", "tie_breakers": ["source_priority"]}
        for name in ("consent_email", "consent_sms", "consent_marketing")
    }
}

DOMAIN = Domain(
    code="customer",
    label="Customer",
    attributes=(
        Attribute(
            "party_type",
            "enum",
            n.normalise_party_type,
            choices=n.PARTY_TYPE_CHOICES,
            help_text="Whether the customer is a person or an organisation.",
        ),
        Attribute("given_name", "name", n.normalise_person_name, pii=True),
        Attribute("middle_name", "name", n.normalise_person_name, pii=True),
        Attribute("family_name", "name", n.normalise_person_name, pii=True),
        Attribute(
            "full_name",
            "name",
            n.normalise_person_name,
            pii=True,
            help_text="The whole name as one value, when the source does not split it.",
        ),
        Attribute("organisation_name", "name", n.normalise_organisation_name),
        Attribute("date_of_birth", "date", n.normalise_date_of_birth, pii=True),
        Attribute("gender", "enum", n.normalise_gender, pii=True, choices=n.GENDER_CHOICES),
        Attribute(
            "occupation",
            "text",
            n.normalise_text,
            pii=True,
            help_text="The person's occupation or job title.",
        ),
        # The address comes before the phone and the identifiers: they are read in its country.
        *address_attributes(pii=True),
        Attribute("email", "email", n.normalise_email, label="E-mail", pii=True),
        Attribute(
            "phone",
            "phone",
            n.normalise_phone,
            pii=True,
            help_text="E.164; a national number is read in the customer's country.",
        ),
        Attribute(
            "national_id",
            "identifier",
            n.normalise_national_id,
            label="National ID",
            pii=True,
            help_text="Checked where the customer's country has a known format (e.g. US SSN).",
        ),
        Attribute(
            "tax_id",
            "identifier",
            n.normalise_tax_id,
            label="Tax ID",
            help_text="A VAT number (with country prefix) or the country's taxpayer number.",
        ),
        Attribute("consent_email", "boolean", n.normalise_boolean, label="Consent to e-mail"),
        Attribute("consent_sms", "boolean", n.normalise_boolean, label="Consent to SMS"),
        Attribute(
            "consent_marketing", "boolean", n.normalise_boolean, label="Consent to marketing"
        ),
    ),
    required_any=(("given_name", "family_name", "full_name", "organisation_name"),),
    display_attributes=("full_name", "given_name", "family_name", "organisation_name"),
    display=display_name,
    survivorship=SURVIVORSHIP,
    relationships=(
        # A contact (a person) works for an organisation; a person may work for several.
        RelationshipType(
            "works_for", "Works for", "customer", cardinality="many", inverse_label="Employs"
        ),
        # An account rolls up to its parent company: one parent, no cycles.
        RelationshipType(
            "child_of", "Child of", "customer", hierarchy=True, inverse_label="Parent of"
        ),
        # A household moves together: the latest statement of it wins.
        RelationshipType(
            "member_of_household",
            "Member of household",
            "customer",
            rule="most_recent",
            inverse_label="Household of",
        ),
    ),
    # The default match model. People are compared on their names (term-frequency
    # adjusted: a shared "Smith" says less than a shared "Vollbrecht"), birth date and
    # contact points; organisations on their name without legal form and their tax id.
    # A source that only sends full_name still meets the others: the engine reads given
    # and family name from it. Blocking keeps recall high with small blocks (a name with a
    # postcode or city, the birth date, or one contact point or identifier on its own).
    match=MatchSpec(
        comparisons=(
            ComparisonSpec("given_name", "name", term_frequency=True),
            ComparisonSpec("family_name", "name", term_frequency=True),
            ComparisonSpec("organisation_name", "organisation", term_frequency=True),
            # Term-frequency adjusted: placeholder dates ("1900-01-01", or 1 January for a
            # year known alone) are shared by many people.
            ComparisonSpec("date_of_birth", "date", term_frequency=True),
            # Agreement says little, a disagreement much: namesakes of the other sex.
            ComparisonSpec("gender", "exact"),
            # A shared "cricketer" says less than a shared "musicologist".
            ComparisonSpec("occupation", "text", term_frequency=True),
            ComparisonSpec("email", "email"),
            ComparisonSpec("phone", "phone"),
            ComparisonSpec("address_line1", "text"),
            ComparisonSpec("postal_code", "postal_code"),
            ComparisonSpec("city", "name", term_frequency=True),
            ComparisonSpec("country", "exact"),
            # Keyed by hand and mostly without a check digit: a typo is still the person.
            ComparisonSpec("national_id", "identifier", typos=True),
            ComparisonSpec("tax_id", "identifier"),
        ),
        blocking=(
            ("given_name", "family_name"),
            ("family_name:or_given", "date_of_birth"),
            ("given_name", "date_of_birth"),
            # The birth date with a place finds the pairs with typos in both names (FEBRL 3
            # F1 0.989 -> 0.997). Not the birth date alone: placeholder dates ("1900-01-01",
            # "1862-01-01" for a year known alone) make blocks of thousands (1.5M pairs
            # on the 50k historical figures, more than all other rules together).
            ("date_of_birth", "postal_code"),
            ("date_of_birth", "city"),
            ("family_name:or_given", "postal_code"),
            ("given_name", "postal_code"),
            ("family_name:or_given", "city"),
            ("given_name", "city"),
            # A typo in the other name or a slipped birth day: blocking recall on fake_1000
            # 0.624 -> 0.673 at unchanged precision, +56% pairs on the 50k historical set.
            ("family_name:or_given", "date_of_birth:year"),
            ("date_of_birth", "given_name:initial"),
            ("date_of_birth", "family_name:initial"),
            ("family_name", "given_name:prefix3"),
            ("postal_code", "given_name:initial"),
            ("postal_code", "family_name:initial"),
            # No usable name (only a title, "Sir Baronet") and a birth day off.
            ("postal_code", "date_of_birth:year"),
            ("city", "given_name:initial", "family_name:initial"),
            ("email",),
            # The local part alone: the same person at another provider, or a typo in
            # the domain (fake_1000 blocking recall +0.07, 62k pairs on 200k customers).
            ("email:user",),
            ("phone",),
            ("national_id",),
            ("tax_id",),
            ("organisation_name",),
        ),
        # EM rounds whose blocks are rich in matches; the e-mail round is the one that
        # reaches organisations (no birth date, no person name).
        training=(
            ("given_name", "family_name"),
            ("date_of_birth",),
            ("email",),
        ),
        deterministic=(
            ("given_name", "family_name", "date_of_birth"),
            ("email",),
            ("national_id",),
            ("tax_id",),
        ),
        deterministic_recall=0.7,
    ),
)
