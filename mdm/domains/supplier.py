"""The supplier domain: the organisations a company buys from."""

from __future__ import annotations

from mdm.domains import normalisers as n
from mdm.domains.base import Attribute, Domain, RelationshipType
from mdm.domains.common import address_attributes
from mdm.domains.match_spec import ComparisonSpec, MatchSpec

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
    # The default match model: the legal name without its legal form ("Acme GmbH" and
    # "ACME G.m.b.H." agree; the trading name stands in where it is missing), the registry
    # and bank identifiers, the address and the contact's e-mail. Any one identifier, the
    # name or the postcode brings a pair to scoring.
    relationships=(
        RelationshipType(
            "subsidiary_of", "Subsidiary of", "supplier", hierarchy=True, inverse_label="Parent of"
        ),
    ),
    match=MatchSpec(
        comparisons=(
            ComparisonSpec("legal_name", "organisation", term_frequency=True),
            ComparisonSpec("vat_id", "identifier"),
            ComparisonSpec("duns", "identifier"),
            ComparisonSpec("lei", "identifier"),
            ComparisonSpec("iban", "identifier"),
            ComparisonSpec("postal_code", "postal_code"),
            ComparisonSpec("city", "name", term_frequency=True),
            ComparisonSpec("country", "exact"),
            ComparisonSpec("contact_email", "email"),
        ),
        blocking=(
            ("legal_name",),
            ("vat_id",),
            ("duns",),
            ("lei",),
            ("iban",),
            ("contact_email",),
            ("postal_code",),
        ),
        training=(
            ("legal_name",),
            ("postal_code",),
        ),
        deterministic=(
            ("vat_id",),
            ("duns",),
            ("lei",),
            ("legal_name", "postal_code"),
        ),
        deterministic_recall=0.8,
    ),
)
