"""The product domain: the goods a company makes, buys or sells."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdm.domains import normalisers as n
from mdm.domains.base import Attribute, Domain

# A price means nothing without its currency, nor a length without its width and height:
# survivorship takes each group from one record.
PRICE = "price"
DIMENSIONS = "dimensions"


def display_name(attributes: Mapping[str, Any]) -> str:
    """The title, else brand and part number, else the GTIN."""
    if title := attributes.get("title"):
        return str(title)
    parts = [attributes.get(name) for name in ("brand", "mpn")]
    return " ".join(str(part) for part in parts if part) or str(attributes.get("gtin") or "")


DOMAIN = Domain(
    code="product",
    label="Product",
    attributes=(
        Attribute(
            "gtin",
            "identifier",
            n.normalise_gtin,
            label="GTIN",
            help_text="EAN-8, UPC-A, EAN-13 or GTIN-14, stored as 14 digits.",
        ),
        Attribute("brand", "name", n.normalise_organisation_name),
        Attribute("manufacturer", "name", n.normalise_organisation_name),
        Attribute(
            "mpn",
            "identifier",
            n.normalise_mpn,
            label="MPN",
            help_text="Manufacturer part number.",
        ),
        Attribute("title", "text", n.normalise_text),
        Attribute("description", "text", n.normalise_text),
        Attribute("category", "text", n.normalise_text),
        Attribute("price", "decimal", n.normalise_non_negative_decimal, group=PRICE),
        Attribute(
            "currency",
            "currency",
            n.normalise_currency,
            group=PRICE,
            help_text="ISO 4217 code.",
        ),
        Attribute("weight_kg", "decimal", n.normalise_weight_kg, label="Weight (kg)"),
        Attribute(
            "length_cm", "decimal", n.normalise_length_cm, label="Length (cm)", group=DIMENSIONS
        ),
        Attribute(
            "width_cm", "decimal", n.normalise_length_cm, label="Width (cm)", group=DIMENSIONS
        ),
        Attribute(
            "height_cm", "decimal", n.normalise_length_cm, label="Height (cm)", group=DIMENSIONS
        ),
    ),
    required_any=(("title", "gtin", "mpn"),),
    display_attributes=("title", "brand", "mpn", "gtin"),
    display=display_name,
)

# --- Default match model and survivorship rule -------------------------------------------
# Declared here by later work: the product's default match model (Splink comparisons and
# blocking rules) and its default survivorship rule. Not built yet.
