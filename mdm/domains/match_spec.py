"""A domain's match model, declared engine-neutrally in the domain's module.

The matching app turns it into Splink settings (matching/engine/); mdm imports nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ComparisonKind = Literal[
    "name",  # person names: Jaro-Winkler levels, term-frequency adjusted, nickname aware
    "organisation",  # organisation names cleaned of legal forms (cleanco), token similarity
    "text",  # free text such as street lines: Levenshtein / Jaro-Winkler levels
    "title",  # product titles: token-set similarity
    "date",  # dates: exact, one character off, day/month swapped, within a year
    "email",  # exact, same local part, same domain
    "phone",  # exact E.164, last 7 digits equal
    "postal_code",  # exact, same prefix
    "exact",  # equal or not (country, gender, brand, currency)
    "identifier",  # identifiers compared in compact form: exact or not (tax id, GTIN, MPN)
    "numeric",  # numbers: equal, within 5%, within 20% (price, weight)
]


@dataclass(frozen=True)
class ComparisonSpec:
    """One compared attribute.

    ``term_frequency``: an exact match weighs by how rare the value is. ``typos`` (for
    identifiers keyed by hand, such as a national id without a check digit): levels for
    one and two characters off (Damerau-Levenshtein) besides the exact match. Identifiers
    with a check digit (GTIN, VAT) or part numbers, where one character apart is another
    thing, leave it off. ``found_in`` (identifiers only): attributes whose text may carry
    the identifier, as a marketplace title carries the part number its offer leaves out;
    the code-like words of that text (letters and digits, at least 4 characters, with a
    digit) then count as the record's identifiers too.
    """

    attribute: str
    kind: ComparisonKind
    term_frequency: bool = False
    typos: bool = False
    found_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class MatchSpec:
    """A domain's match model, declared in its module.

    ``blocking`` lists rules for candidate pairs: each rule is the keys that must be
    equal (after the engine's own preparation, e.g. lower-cased, compact).  A key is an
    attribute, or ``attribute:transform`` with transform ``year`` (first four characters,
    the year of an ISO date), ``initial`` (first character), ``prefix3``, ``user`` (an
    e-mail's local part), ``nickname`` (a given name through the nickname list) or
    ``or_given`` (a family name, else the given name of a record with one name only).  A rule
    on exactly given and family name also finds the two written swapped.  ``training``
    lists the blocking rules used for expectation maximisation (each must leave out the
    attributes it blocks on); ``deterministic`` the rules used to estimate the prior.
    With ``prior_from_model`` the engine then refines the prior to the value the trained
    model itself implies (see the engine's ``_refine_prior``). Off in every domain for
    now: it finds the true rate on FEBRL 3 and fake_1000, but a higher prior lets more
    weak links chain records into one cluster (50k historical figures: pairwise precision
    at 0.9 fell from 0.96 to 0.87), and with correlated comparisons (a product title that
    repeats the brand and part number) it overshoots tenfold.
    """

    comparisons: tuple[ComparisonSpec, ...]
    blocking: tuple[tuple[str, ...], ...]
    training: tuple[tuple[str, ...], ...] = ()
    deterministic: tuple[tuple[str, ...], ...] = ()
    deterministic_recall: float = 0.7
    prior_from_model: bool = False
