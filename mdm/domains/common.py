"""Attribute sets that several domains share."""

from __future__ import annotations

from mdm.domains import normalisers as n
from mdm.domains.base import Attribute

ADDRESS = "address"


def address_attributes(*, pii: bool) -> tuple[Attribute, ...]:
    """A postal address, one survivorship group, ending with the country.

    Declare it before phones and identifiers: they are read in the record's country.
    ``pii`` marks the street lines (a person's home address; a company's is not personal).
    """
    return (
        Attribute(
            "address_line1",
            "text",
            n.normalise_text,
            label="Address line 1",
            pii=pii,
            group=ADDRESS,
        ),
        Attribute(
            "address_line2",
            "text",
            n.normalise_text,
            label="Address line 2",
            pii=pii,
            group=ADDRESS,
        ),
        Attribute("city", "name", n.normalise_place_name, group=ADDRESS),
        Attribute("postal_code", "identifier", n.normalise_postal_code, group=ADDRESS),
        Attribute(
            "region",
            "text",
            n.normalise_text,
            group=ADDRESS,
            help_text="State, province or county.",
        ),
        Attribute(
            "country",
            "country",
            n.normalise_country,
            group=ADDRESS,
            help_text="ISO 3166-1 alpha-2 code.",
        ),
    )
