"""The customer domain: people and organisations a company sells to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdm.domains import normalisers as n
from mdm.domains.base import Attribute, Domain
from mdm.domains.common import address_attributes


def display_name(attributes: Mapping[str, Any]) -> str:
    """Full name, else given and family name, else the organisation's name."""
    organisation = attributes.get("organisation_name") or ""
    if attributes.get("party_type") == "organisation" and organisation:
        return str(organisation)
    if full_name := attributes.get("full_name"):
        return str(full_name)
    parts = [attributes.get(name) for name in ("given_name", "family_name")]
    return " ".join(str(part) for part in parts if part) or str(organisation)


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
)

# --- Default match model and survivorship rule -------------------------------------------
# Declared here by later work: the customer's default match model (Splink comparisons and
# blocking rules) and its default survivorship rule. Not built yet.
