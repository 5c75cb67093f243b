"""The supplier domain: the organisations a company buys from."""

from __future__ import annotations

from mdm.domains import normalisers as n
from mdm.domains.base import Attribute, Domain
from mdm.domains.common import address_attributes

DOMAIN = Domain(
    code="supplier",
    label="Supplier",
    attributes=(
        Attribute("legal_name", "name", n.normalise_organisation_name),
        Attribute("trading_name", "name", n.normalise_organisation_name),
        # The address comes before the phone and the identifiers: they are read in its country.
        *address_attributes(pii=False),
        Attribute(
            "vat_id",
            "identifier",
            n.normalise_vat,
            label="VAT ID",
            help_text="Checked with its check digits; EU numbers carry their country prefix.",
        ),
        Attribute("duns", "identifier", n.normalise_duns, label="D-U-N-S number"),
        Attribute("lei", "identifier", n.normalise_lei, label="LEI"),
        Attribute("contact_name", "name", n.normalise_person_name, pii=True),
        Attribute("contact_email", "email", n.normalise_email, label="Contact e-mail", pii=True),
        Attribute(
            "contact_phone",
            "phone",
            n.normalise_phone,
            pii=True,
            help_text="E.164; a national number is read in the supplier's country.",
        ),
        Attribute("iban", "identifier", n.normalise_iban, label="IBAN", pii=True),
        Attribute("bic", "identifier", n.normalise_bic, label="BIC"),
        Attribute("category", "text", n.normalise_text),
    ),
    required_any=(("legal_name", "trading_name"),),
    display_attributes=("legal_name", "trading_name"),
)

# --- Default match model and survivorship rule -------------------------------------------
# Declared here by later work: the supplier's default match model (Splink comparisons and
# blocking rules) and its default survivorship rule. Not built yet.
