"""The product domain: the goods a company makes, buys or sells."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mdm.domains import normalisers as n
from mdm.domains.base import Attribute, Domain, RelationshipType
from mdm.domains.match_spec import ComparisonSpec, MatchSpec

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


# The default survivorship rules (admins change them in the hub); unnamed attributes survive
# by source priority, then the most recent, most frequent and most complete value.  The
# fullest description is the most useful one.
SURVIVORSHIP = {
    "rules": {
        "description": {"strategy": "longest", "tie_breakers": ["source_priority", "most_recent"]}
    }
}

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
    survivorship=SURVIVORSHIP,
    relationships=(
        RelationshipType(
            "variant_of", "Variant of", "product", hierarchy=True, inverse_label="Variants"
        ),
    ),
    # The default match model: GTIN and part number (compact, so "TK-800-B" is "TK800B")
    # nearly decide it; brand, title words and category weigh in where they are missing, as
    # on marketplace duplicates without a GTIN. The price is left out on purpose: the same
    # product sells at prices 20% apart from one channel to the next, EM then learns
    # nothing from it (m("different") = 0.41) and it costs accuracy (Walmart-Amazon F1 0.68
    # without it, 0.58 with it; on the demo catalogue precision at p >= 0.5 drops from
    # 1.000 to 0.972). A deployment with one price list can add ("price", "numeric").
    match=MatchSpec(
        comparisons=(
            ComparisonSpec("gtin", "identifier"),
            # Marketplace offers often leave the part number out of its field and put it
            # in the title ("New-Crown TE0046GY - Tire-Track Scraper Mat ...").
            ComparisonSpec("mpn", "identifier", found_in=("title",)),
            ComparisonSpec("brand", "organisation", term_frequency=True),
            ComparisonSpec("title", "title"),
            ComparisonSpec("category", "text"),
        ),
        blocking=(
            ("gtin",),
            ("mpn",),
            ("brand",),
            ("title",),
        ),
        # EM on pairs that share an identifier: such pairs are mostly matches, so EM
        # learns what a match looks like. Pairs of one brand are mostly different
        # products of that brand, which EM then takes for the matches (on
        # Walmart-Amazon: F1 0.51 with a brand round, 0.64 without).
        training=(
            ("gtin",),
            ("mpn",),
        ),
        deterministic=(
            ("gtin",),
            ("brand", "mpn"),
        ),
        deterministic_recall=0.7,
    ),
)
