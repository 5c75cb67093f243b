"""The match engine on Splink 5 and DuckDB: train, score everything, score candidates.

Everything that crosses this module's public surface is one of the interface's frozen
dataclasses (``TrainedModel``, ``ScoredPair``...) or plain Python data; the DuckDB
connections and Splink linkers stay inside.

How a ``MatchSpec`` becomes a Splink model
------------------------------------------
* :func:`prepare_table` is the one preparation every path uses (training, batch scoring,
  candidate scoring and the bare-Splink baselines of the tests): a ``unique_id`` column,
  ``source_dataset`` when the records carry datasets, one column per attribute the spec
  mentions in the form the engine compares and blocks on (folded names, organisation base
  names, compact identifiers, ...) and the derived columns some comparisons need
  (``<attribute>__nick`` nickname-canonical names, ``<attribute>__tokens`` token lists,
  ``<attribute>__user`` e-mail local parts, ``<attribute>__last7`` phone tails).
* :func:`settings_for` turns the spec into a Splink settings dictionary: one comparison per
  ``ComparisonSpec`` named after its attribute (so its match weight is ``mw_<attribute>``),
  with levels fit for its kind, and one ``block_on`` rule per blocking rule.
* A trained model's ``parameters`` is Splink's own JSON (``save_model_to_json``): scoring
  loads it as is, so the engine's probabilities are exactly bare Splink's.
* A full run (``score_all``) blocks as Splink's rules say, drops the pairs that cannot
  reach the threshold (the expensive comparisons are weighed only while a pair still can,
  see :func:`_register_promising_pairs`) and scores the rest with Splink's own
  ``predict``: the same pairs, probabilities and weights, without Splink's string
  similarities on the many pairs that are far from a match.
* Candidates (search-before-create, incremental matching) are scored against a
  :class:`MatchStore`: the existing records prepared once and kept in memory with an index
  per blocking rule and their term frequencies, kept in step by ``upsert``/``delete``. A
  candidate's blocks are found through the indexes, and just those records are scored with
  Splink's own ``predict_between`` SQL, so a search costs what its blocks cost, not what
  the store holds, and scores exactly as ``predict_between`` against all the records.
"""

from __future__ import annotations

import gc
import itertools
import logging
import math
import os
import random
import re
import shutil
import tempfile
import threading
import time
import unicodedata
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
from splink import comparison_level_library as cll
from splink.blocking_rule_library import CustomRule
from splink.comparison_library import CustomComparison
from splink.internals.blocking import ExplodingBlockingRule
from splink.internals.comparison_level_creator import ComparisonLevelCreator
from splink.internals.exceptions import SplinkException

from matching.engine.interface import (
    ComparisonSpec,
    Contribution,
    EngineRecord,
    LevelReport,
    MatchSpec,
    ScoredPair,
    ScoredPairs,
    TrainedModel,
)
from mdm.domains.normalisers import organisation_base_name
from mdm.forking import helper_pool

__all__ = [
    "MatchStore",
    "SplinkEngine",
    "level_warning",
    "prepare_table",
    "settings_for",
]

logger = logging.getLogger(__name__)

UNIQUE_ID = "unique_id"
SOURCE_DATASET = "source_dataset"

# u probabilities are estimated on a random sample of pairs: enough for stable values on
# a few hundred thousand records while keeping training to seconds on two cores.
U_MAX_PAIRS = 5e6
# EM on a training rule that yields more pairs than this samples them (Splink's max_pairs).
EM_MAX_PAIRS = 5e6

# The least m probability a trained level keeps. EM on clean identifiers drives m("differ")
# towards 0 (1e-76 on the demo suppliers' VAT ids): one typo would then veto any match by
# hundreds of bits, and the next EM round underflows to 0 and fails. At 1e-4 one
# disagreement costs at most about 13 bits.
M_FLOOR = 1e-4

# The band in which a "values differ" level's m probability says EM lost its footing: in a
# healthy model most true matches agree, so m(else) is small; near 0.5 the "match" class EM
# found is a mix of matches and non-matches (typically two correlated fields).
COLLAPSE_BAND = (0.35, 0.65)


# --------------------------------------------------------------------------- nicknames

# Nickname -> canonical given name. Small on purpose: common diminutives that point to one
# name only ("Chris" could be Christopher or Christine and is read as the former; "Sandy",
# "Jo" or "Al" are left out). A canonical name maps to itself implicitly.
_NICKNAME_GROUPS: dict[str, tuple[str, ...]] = {
    "abigail": ("abby", "abbie"),
    "albert": ("bert", "bertie"),
    "alexander": ("alex", "alec", "xander"),
    "alfred": ("alf", "alfie"),
    "andrew": ("andy", "drew"),
    "anthony": ("tony",),
    "benjamin": ("ben", "benny", "benji"),
    "catherine": ("cathy", "cath", "cat", "kate", "katie", "kathy", "katy", "katherine", "kathryn"),
    "charles": ("charlie", "chuck", "chas"),
    "christina": ("tina", "chrissy"),
    "christopher": ("chris", "kris"),
    "daniel": ("dan", "danny"),
    "david": ("dave", "davy"),
    "deborah": ("deb", "debbie", "debby"),
    "donald": ("don", "donnie"),
    "douglas": ("doug",),
    "edward": ("ed", "eddie", "eddy", "ted", "teddy", "ned"),
    "elizabeth": ("elisabeth", "liz", "lizzie", "lizzy", "beth", "betty", "bess", "libby"),
    "francesco": ("cesco", "franco"),
    "francisco": ("paco", "pancho"),
    "frederick": ("fred", "freddie", "freddy"),
    "friedrich": ("fritz",),
    "gerald": ("gerry", "jerry"),
    "giuseppe": ("beppe", "peppe", "pino"),
    "gregory": ("greg",),
    "henry": ("harry", "hank"),
    "jacqueline": ("jackie",),
    "james": ("jim", "jimmy", "jamie"),
    "jennifer": ("jen", "jenny", "jenn"),
    "jessica": ("jess", "jessie"),
    "johannes": ("hannes", "johann", "hans"),
    "john": ("jack", "johnny"),
    "jonathan": ("jon", "jonny"),
    "jose": ("pepe",),
    "joseph": ("joe", "joey"),
    "joshua": ("josh",),
    "katharina": ("kathi", "katja"),
    "kenneth": ("ken", "kenny"),
    "kimberly": ("kim",),
    "lawrence": ("larry",),
    "margaret": ("maggie", "meg", "peggy", "marge"),
    "matthew": ("matt", "matty"),
    "maximilian": ("max",),
    "michael": ("mike", "mikey", "mick", "mickey"),
    "nathaniel": ("nate",),
    "nicholas": ("nick", "nicky"),
    "patricia": ("pat", "patty", "trish", "tricia"),
    "patrick": ("paddy",),
    "peter": ("pete",),
    "philip": ("phil",),
    "rebecca": ("becky", "becca"),
    "richard": ("rick", "ricky", "rich", "richie", "dick"),
    "robert": ("rob", "robbie", "bob", "bobby"),
    "ronald": ("ron", "ronnie"),
    "samuel": ("sam", "sammy"),
    "stephen": ("steve", "stevie", "steven"),
    "susan": ("sue", "susie", "suzy"),
    "theodore": ("theo",),
    "thomas": ("tom", "tommy"),
    "timothy": ("tim", "timmy"),
    "victoria": ("vicky", "vicki", "tori"),
    "william": ("will", "bill", "billy", "willy", "liam"),
    "zachary": ("zach", "zack"),
}
NICKNAMES: dict[str, str] = {
    nickname: canonical
    for canonical, nicknames in _NICKNAME_GROUPS.items()
    for nickname in nicknames
}
assert len(NICKNAMES) == sum(map(len, _NICKNAME_GROUPS.values())), "a nickname in two groups"


# --------------------------------------------------------------------------- preparation


# _fold of ASCII text in one pass: letters and digits kept, apostrophes and dots dropped,
# anything else a space (NFKD leaves ASCII as it is, and casefold is lower there).
_ASCII_FOLD = {
    code: (chr(code) if chr(code).isalnum() else None if chr(code) in "'`." else " ")
    for code in range(128)
}
# _letters of ASCII text: the letters only.
_ASCII_NON_LETTERS = {code: None for code in range(128) if not chr(code).isalpha()}


@lru_cache(maxsize=65536)
def _fold(text: str) -> str:
    """Accents dropped, case-folded, apostrophes dropped, other punctuation as spaces."""
    if text.isascii():
        return " ".join(text.translate(_ASCII_FOLD).lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    chars = []
    for char in decomposed:
        if unicodedata.combining(char) or char in "'\u2019`.":
            continue
        chars.append(char if char.isalnum() else " ")
    return " ".join("".join(chars).casefold().split())


@lru_cache(maxsize=65536)
def _canonical_name(folded: str) -> str:
    return " ".join(NICKNAMES.get(token, token) for token in folded.split())


def _tokens(folded: str) -> list[str]:
    return sorted(set(folded.split()))


def _compact(text: str) -> str:
    return "".join(char for char in text.upper() if char.isalnum())


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(Decimal(str(value).strip()))
    except (InvalidOperation, ValueError):
        return None
    return number if math.isfinite(number) else None


# Name attributes that hold a person's given name (alone or in a full name): only these get
# the nickname level. A family name "Will" must not become "william", nor a city "Sandy".
_GIVEN_NAME_HINTS = ("given", "first", "fore", "middle", "full", "contact", "person")


def _nickname_aware(spec: ComparisonSpec) -> bool:
    return spec.kind == "name" and any(hint in spec.attribute for hint in _GIVEN_NAME_HINTS)


# Name attributes that hold a person's name, given or family: titles are dropped from them.
_PERSON_NAME_HINTS = (*_GIVEN_NAME_HINTS, "family", "surname", "last")

# Titles, honorifics and generational suffixes, folded: sources put them in the name fields
# ("Sir" as the given name, "Baronet" or "Jr" as the family name), where they are not the
# person's name. Only words that are hardly ever a name: not "Earl", "Duke", "Lord",
# "Baron", "King" or "Prince", which are given or family names too.
_TITLES = frozenset(
    {"mr", "mrs", "ms", "mx", "miss", "dr", "prof", "professor", "sir", "dame", "lady"}
    | {"rev", "revd", "reverend", "hon", "honourable", "viscount", "viscountess"}
    | {"marquess", "marchioness", "countess", "duchess", "baronet", "baronetess", "bt", "bart"}
    | {"jr", "jnr", "junior", "sr", "snr", "senior", "esq", "ii", "iii", "iv", "phd"}
)
_ORDINAL = re.compile(r"^[0-9]+(?:st|nd|rd|th)$")


def _is_title(token: str) -> bool:
    return token in _TITLES or _ORDINAL.match(token) is not None


def _person_name(attribute: str, kind: str) -> bool:
    return kind == "name" and any(hint in attribute for hint in _PERSON_NAME_HINTS)


@lru_cache(maxsize=65536)
def _without_titles(folded: str) -> str:
    """A folded person name without its titles ("sir john" -> "john"; "baronet" -> "")."""
    return " ".join(token for token in folded.split() if not _is_title(token))


# Family-name particles kept with the family name when a full name is split.
_PARTICLES = frozenset(
    {"van", "von", "der", "den", "de", "del", "della", "di", "da", "das", "dos", "do", "du"}
    | {"la", "le", "ten", "ter", "zu", "bin", "ibn", "af", "av"}
)


def _split_full_name(full: str) -> tuple[str | None, str | None]:
    """(given, family) read from a full name: "Jan van der Berg", "Berg, Jan"; else Nones.

    Titles are skipped: "Sir John Smith Jr" is John Smith.
    """
    family_part, comma, given_part = full.partition(",")
    if comma:
        given_tokens = [token for token in given_part.split() if not _is_title(_fold(token))]
        return (given_tokens[0] if given_tokens else None), (family_part.strip() or None)
    tokens = [token for token in full.split() if not _is_title(_fold(token))]
    if len(tokens) < 2:
        return None, None
    start = len(tokens) - 1
    while start > 1 and tokens[start - 1].lower() in _PARTICLES:
        start -= 1
    return tokens[0], " ".join(tokens[start:])


def _given_from_full(attributes: Mapping[str, Any]) -> Any:
    full = attributes.get("full_name")
    return _split_full_name(str(full))[0] if full else None


def _family_from_full(attributes: Mapping[str, Any]) -> Any:
    full = attributes.get("full_name")
    return _split_full_name(str(full))[1] if full else None


def _full_from_parts(attributes: Mapping[str, Any]) -> Any:
    parts = [attributes.get("given_name"), attributes.get("family_name")]
    return " ".join(str(part) for part in parts if part) or None


# Where an attribute is missing, the value it can be read from in the same record, so that a
# source that only sends a full name (or only a trading name) still meets the others on the
# same comparisons and blocking keys.
_FALLBACKS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "given_name": _given_from_full,
    "family_name": _family_from_full,
    "full_name": _full_from_parts,
    "legal_name": lambda attributes: attributes.get("trading_name"),
}


def _value(attributes: Mapping[str, Any], attribute: str) -> Any:
    value = attributes.get(attribute)
    if value is None or value == "":
        fallback = _FALLBACKS.get(attribute)
        if fallback is not None:
            return fallback(attributes)
    return value


@dataclass(frozen=True)
class _Column:
    name: str
    type: pa.DataType


def _derived(spec: ComparisonSpec) -> tuple[_Column, ...]:
    """The derived columns a comparison kind reads besides ``<attribute>`` itself."""
    a = spec.attribute
    if spec.kind == "name" and _nickname_aware(spec):
        return (_Column(f"{a}__nick", pa.string()),)
    if spec.kind in ("organisation", "text", "title"):
        return (_Column(f"{a}__tokens", pa.list_(pa.string())),)
    if spec.kind == "email":
        return (_Column(f"{a}__user", pa.string()), _Column(f"{a}__name", pa.string()))
    if spec.kind == "phone":
        return (_Column(f"{a}__last7", pa.string()),)
    if spec.kind == "identifier" and spec.found_in:
        return (_Column(f"{a}__codes", pa.list_(pa.string())),)
    return ()


def _codes(attributes: Mapping[str, Any], found_in: Sequence[str]) -> Any:
    """The code-like words of the texts an identifier may be found in, compact.

    A code-like word has at least 4 letters or digits once compact, one of them a digit:
    "TE0046GY", "52104001", "HD6870" (not "4pk", "10W" or "Black").
    """
    codes = set()
    for attribute in found_in:
        text = _text(attributes.get(attribute))
        if text is None:
            continue
        for word in text.split():
            code = _compact(word)
            if len(code) >= 4 and any(char.isdigit() for char in code):
                codes.add(code)
    return sorted(codes) or None


def _prepare_value(kind: str, value: Any, *, person_name: bool = False) -> Any:
    """The compared (and blocked-on) form of one attribute value, None for no value.

    ``person_name``: a person's name, compared without its titles (a name that is only a
    title, "Sir", counts as missing).
    """
    if person_name:
        text = _text(value)
        return (_without_titles(_fold(text)) or None) if text is not None else None
    if kind == "numeric":
        return _number(value)
    text = _text(value)
    if text is None:
        return None
    if kind == "organisation":
        return organisation_base_name(text) or None
    if kind in ("name", "text", "title"):
        return _fold(text) or None
    if kind == "email":
        return text.lower()
    if kind in ("identifier", "postal_code"):
        return _compact(text) or None
    if kind == "phone":
        return "".join(char for char in text if char.isdigit() or char == "+") or None
    return text  # date (YYYY-MM-DD), exact


def _derive(spec: ComparisonSpec, prepared: Any) -> Any:
    if prepared is None:
        return None
    if spec.kind == "name":
        return _canonical_name(prepared)
    if spec.kind in ("organisation", "text", "title"):
        return _tokens(prepared) or None
    if spec.kind == "email":
        user = prepared.partition("@")[0].partition("+")[0]
        return user or None
    if spec.kind == "phone":
        digits = "".join(char for char in prepared if char.isdigit())
        return digits[-7:] if len(digits) >= 7 else None
    raise AssertionError(spec.kind)


# The attributes an e-mail address is commonly built from ("anna.berg@", "info@acme-"): the
# name that appears in an address's local part is kept beside it (``<attribute>__name``).
_EMAIL_NAME_SOURCES = ("family_name", "full_name", "organisation_name", "legal_name")
_TRANSLITERATIONS = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"}
)


def _letters(text: str) -> str:
    if text.isascii():
        return text.translate(_ASCII_NON_LETTERS)
    return "".join(char for char in text if char.isalpha())


def _email_name(prepared: Any, attributes: Mapping[str, Any]) -> str | None:
    """The record's own name as found in its e-mail's local part, else None.

    "stefan.lange@gmx.de" of Stefan Lange gives "lange"; "info@acme.com" of Acme gives None.
    Names are compared letters only, folded and also with German umlauts spelt out
    ("mueller" is Müller), and need three letters; the longest found wins.
    """
    if prepared is None:
        return None
    local = _letters(str(prepared).partition("@")[0].partition("+")[0])
    if len(local) < 3:
        return None
    found: str | None = None
    for attribute in _EMAIL_NAME_SOURCES:
        if attribute == "full_name" and not attributes.get(attribute):
            # The fallback joins the given and family names: the same words as each
            # part's, whose words are cached (the joined name is new for every record).
            values = [attributes.get("given_name"), attributes.get("family_name")]
        else:
            values = [_value(attributes, attribute)]
        for raw in values:
            value = _text(raw)
            if value is None:
                continue
            for token in _name_tokens(value):
                if token in local and len(token) > len(found or ""):
                    found = token
    return found


@lru_cache(maxsize=262144)
def _name_tokens(value: str) -> tuple[str, ...]:
    """The words of a name an e-mail's local part may hold: folded, letters only, three
    letters or more, also with German umlauts spelt out."""
    return tuple(
        token
        for spelling in {_fold(value), _fold(value.translate(_TRANSLITERATIONS))}
        for token in map(_letters, spelling.split())
        if len(token) >= 3
    )


def _spec_attributes(spec: MatchSpec) -> dict[str, str]:
    """Every attribute the spec mentions -> the kind it is prepared as.

    An attribute only used for blocking or training rules is prepared as "exact" (its
    text as is); one compared is prepared for its comparison's kind.
    """
    kinds: dict[str, str] = {}
    for comparison in spec.comparisons:
        if comparison.attribute in kinds:
            raise ValueError(f"the match spec compares {comparison.attribute!r} twice")
        kinds[comparison.attribute] = comparison.kind
    for rule in (*spec.blocking, *spec.training, *spec.deterministic):
        for key in rule:
            attribute, _, transform = key.partition(":")
            kinds.setdefault(attribute, "exact")
            if transform == "or_given":
                # Prepared as a name, so that it meets the family names it is compared to.
                kinds.setdefault(SWAPPABLE_NAMES[0], "name")
    return kinds


# Blocking keys "attribute:transform" (see mdm/domains/match_spec.py), on prepared columns.
_KEY_TRANSFORMS = {
    "year": 'substr("{column}", 1, 4)',
    "initial": 'substr("{column}", 1, 1)',
    "prefix3": 'substr("{column}", 1, 3)',
    # Derived columns of compared attributes (see _derived): an e-mail's local part, a
    # given name read through the nickname list.
    "user": '"{column}__user"',
    "nickname": '"{column}__nick"',
    # A family name, else the given name of a record with one name only ("Keeley" alone
    # meets John Keeley; see _single_name_is_family).
    "or_given": 'coalesce("{column}", "given_name")',  # see _spec_attributes
}


def _block_key(key: str) -> str:
    attribute, _, transform = key.partition(":")
    if not transform:
        return attribute
    if transform not in _KEY_TRANSFORMS:
        raise ValueError(
            f"unknown blocking key transform {transform!r} in {key!r}; "
            f"expected one of {', '.join(_KEY_TRANSFORMS)}"
        )
    return _KEY_TRANSFORMS[transform].format(column=attribute)


def _block_on(rule: Sequence[str]) -> Any:
    return block_on(*(_block_key(key) for key in rule))


def _has_datasets(records: Sequence[EngineRecord]) -> bool:
    return any(record.dataset for record in records)


def prepare_table(
    spec: MatchSpec, records: Sequence[EngineRecord], *, with_dataset: bool | None = None
) -> pa.Table:
    """The records as the table Splink reads: the one preparation of every path.

    Also what the tests and benchmarks give bare Splink for their baselines. Columns:
    ``unique_id`` (the record id), ``source_dataset`` (when ``with_dataset``, by default
    when any record has a dataset), ``<attribute>`` in compared form for every attribute
    the spec mentions, and the derived columns of :func:`_derived`. Raises ``ValueError``
    on duplicate ids.
    """
    kinds = _spec_attributes(spec)
    by_attribute = {comparison.attribute: comparison for comparison in spec.comparisons}
    if with_dataset is None:
        with_dataset = _has_datasets(records)

    ids = [record.id for record in records]
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
        raise ValueError(f"record ids must be unique; repeated: {repeated[:10]}")

    arrays: dict[str, pa.Array] = {UNIQUE_ID: pa.array(ids, pa.int64())}
    if with_dataset:
        arrays[SOURCE_DATASET] = pa.array([record.dataset for record in records], pa.string())
    for attribute, kind in kinds.items():
        person_name = _person_name(attribute, kind)
        values = _memoised(
            lambda value, kind=kind, person_name=person_name: _prepare_value(  # type: ignore[misc]
                kind, value, person_name=person_name
            ),
            _column_values(records, attribute),
        )
        arrays[attribute] = pa.array(values, pa.float64() if kind == "numeric" else pa.string())
        comparison = by_attribute.get(attribute)
        if comparison is None:
            continue
        for column in _derived(comparison):
            if column.name == f"{attribute}__name":
                derived = [
                    _email_name(value, record.attributes)
                    for value, record in zip(values, records, strict=True)
                ]
            elif column.name == f"{attribute}__codes":
                derived = [_codes(record.attributes, comparison.found_in) for record in records]
            else:
                derived = _memoised(lambda value, c=comparison: _derive(c, value), values)  # type: ignore[misc]
            arrays[column.name] = pa.array(derived, column.type)
    return pa.table(arrays)


def _column_values(records: Sequence[EngineRecord], attribute: str) -> list[Any]:
    """``_value`` of every record: a plain lookup where the attribute has no fallback."""
    if attribute in _FALLBACKS:
        return [_value(record.attributes, attribute) for record in records]
    return [record.attributes.get(attribute) for record in records]


def _memoised(function: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """``[function(v) for v in values]``, computed once per distinct string: names, cities,
    countries and dates repeat across records, and their preparation (folding, parsing)
    costs more than a dictionary lookup.  Other values (numbers, None) are computed as is."""
    done: dict[str, Any] = {}
    out: list[Any] = []
    append = out.append
    for value in values:
        if type(value) is str:
            try:
                append(done[value])
            except KeyError:
                done[value] = result = function(value)
                append(result)
        else:
            append(function(value))
    return out


# --------------------------------------------------------------------------- settings


def _q(column: str, side: str) -> str:
    return f'"{column}_{side}"'


def _level(sql: str, label: str) -> cll.CustomLevel:
    return cll.CustomLevel(sql, label_for_charts=label)


def _exact(column: str, label: str, *, term_frequency: bool) -> ComparisonLevelCreator:
    level = cll.ExactMatchLevel(column).configure(label_for_charts=label)
    if term_frequency:
        level.configure(tf_adjustment_column=column)
    return level


def _token_overlap(column: str, threshold: float) -> str:
    """Jaccard similarity of two token lists >= threshold, as DuckDB SQL.

    The lists hold distinct tokens, so with ``shared`` tokens the Jaccard index is
    shared / (|l| + |r| - shared); ``shared * (1 + t) >= t * (|l| + |r|)`` is the same test
    with ``shared`` counted once. ``list_filter`` with a lambda is about five times faster
    than ``list_intersect`` here (measured on 1.5M Walmart-Amazon title pairs).
    """
    left, right = _q(column, "l"), _q(column, "r")
    shared = f"len(list_filter({left}, lambda token: list_contains({right}, token)))"
    return f"{shared} * {1 + threshold} >= {threshold} * (len({left}) + len({right}))"


def _levenshtein_at_most(left: str, right: str, distance: int) -> str:
    # The length test first: DuckDB then runs levenshtein only on pairs that pass it, which
    # matters on long texts (seconds per million pairs otherwise).
    return (
        f"abs(length({left}) - length({right})) <= {distance} "
        f"and levenshtein({left}, {right}) <= {distance}"
    )


# The parts of an address, the most specific first. One address must not count three times
# (same street line, same postcode, same city: 30 bits on the demo customers, which made
# family members at one address look like one person). Agreement on a part says nothing
# more when a more specific part already agrees, so such a pair is scored on the specific
# part alone; a disagreement, or an agreement below a differing specific part, still counts.
ADDRESS_PARTS = ("address_line1", "postal_code", "city", "country")


# Given and family name written the other way round ("Siggins Barnaby" for Barnaby Siggins)
# are one piece of evidence: it is scored on the family name ("swapped with the given name")
# and the given name then counts as missing, so the swap is not counted twice.
SWAPPABLE_NAMES = ("given_name", "family_name")


def _names_swapped() -> str:
    """Each name close to the other record's other name, and the given names not equal."""
    given, family = SWAPPABLE_NAMES
    return (
        f"{_q(given, 'l')} <> {_q(given, 'r')}"
        f" AND jaro_winkler_similarity({_q(given, 'l')}, {_q(family, 'r')}) >= 0.92"
        f" AND jaro_winkler_similarity({_q(family, 'l')}, {_q(given, 'r')}) >= 0.92"
    )


def _single_name_is_family() -> str:
    """One record has a given name only, and it is close to the other's family name.

    A source with one name field, or a person known by one name, puts "Ingram" in the
    given name of a record whose family name is missing; beside "Walter Ingram" that is the
    family name agreeing, not the given name differing. Scored on the family name ("the
    other's only name"); the given name then counts as missing, as for swapped names.
    """
    given, family = SWAPPABLE_NAMES
    return (
        f"coalesce(({_q(family, 'l')} IS NULL"
        f" AND jaro_winkler_similarity({_q(given, 'l')}, {_q(family, 'r')}) >= 0.92)"
        f" OR ({_q(family, 'r')} IS NULL"
        f" AND jaro_winkler_similarity({_q(given, 'r')}, {_q(family, 'l')}) >= 0.92), false)"
    )


def _swaps(attribute: str, compared: Sequence[str]) -> bool:
    return attribute in SWAPPABLE_NAMES and all(name in compared for name in SWAPPABLE_NAMES)


def _null_level(attribute: str, compared: Sequence[str]) -> ComparisonLevelCreator:
    if attribute == SWAPPABLE_NAMES[0] and _swaps(attribute, compared):
        l, r = _q(attribute, "l"), _q(attribute, "r")  # noqa: E741
        return cll.CustomLevel(
            f"{l} IS NULL OR {r} IS NULL OR ({_names_swapped()}) OR {_single_name_is_family()}",
            label_for_charts="missing, or swapped with the family name",
        ).configure(is_null_level=True)
    if attribute == SWAPPABLE_NAMES[1] and _swaps(attribute, compared):
        l, r = _q(attribute, "l"), _q(attribute, "r")  # noqa: E741
        return cll.CustomLevel(
            f"({l} IS NULL OR {r} IS NULL) AND NOT {_single_name_is_family()}",
            label_for_charts="missing",
        ).configure(is_null_level=True)
    if not _is_conditional(attribute, compared):
        return cll.NullLevel(attribute).configure(label_for_charts="missing")
    finer = [p for p in ADDRESS_PARTS[: ADDRESS_PARTS.index(attribute)] if p in compared]
    l, r = _q(attribute, "l"), _q(attribute, "r")  # noqa: E741
    implied = " OR ".join(f"{_q(part, 'l')} = {_q(part, 'r')}" for part in finer)
    return cll.CustomLevel(
        f"{l} IS NULL OR {r} IS NULL OR ({l} = {r} AND ({implied}))",
        label_for_charts=f"missing, or implied by {' / '.join(finer)}",
    ).configure(is_null_level=True)


def _email_null_level(attribute: str) -> ComparisonLevelCreator:
    """Missing, or the same local part built from the same name: no evidence of its own.

    Two Stefan Langes both write "stefan.lange@" at their providers: random pairs almost
    never share a local part (u about 1e-6), but pairs of the same name do, so counting it
    beside the names (15 bits on the benchmark's customers) merged namesakes, more of them
    the more records there are (pairwise precision 0.96 at 50k generated customers, about
    0.5 at 1M). Such a pair is scored on the names alone, as an address part implied by a
    finer one is. An address not built from the name, or one whose name differs from the
    other record's (a typo, a married name), still counts.
    """
    l, r = _q(attribute, "l"), _q(attribute, "r")  # noqa: E741
    user_l, user_r = _q(f"{attribute}__user", "l"), _q(f"{attribute}__user", "r")
    name_l, name_r = _q(f"{attribute}__name", "l"), _q(f"{attribute}__name", "r")
    return cll.CustomLevel(
        f"{l} IS NULL OR {r} IS NULL OR ({user_l} = {user_r} AND {name_l} = {name_r})",
        label_for_charts="missing, or built from the same name",
    ).configure(is_null_level=True)


def _found_in_other(attribute: str) -> str:
    """One record's identifier among the code-like words of the other's texts."""
    l, r = _q(attribute, "l"), _q(attribute, "r")  # noqa: E741
    codes_l, codes_r = _q(f"{attribute}__codes", "l"), _q(f"{attribute}__codes", "r")
    return (
        f"coalesce(list_contains({codes_r}, {l}), false)"
        f" OR coalesce(list_contains({codes_l}, {r}), false)"
    )


def _levels(
    spec: ComparisonSpec, compared: Sequence[str] = ()
) -> list[ComparisonLevelCreator | dict[str, Any]]:
    """The comparison levels of one attribute, most specific first.

    ``compared`` names the model's compared attributes (for the address parts' precedence).
    """
    a, kind, tf = spec.attribute, spec.kind, spec.term_frequency
    l, r = _q(a, "l"), _q(a, "r")  # noqa: E741
    if kind == "email":
        null = _email_null_level(a)
    elif kind == "identifier" and spec.found_in:
        null = cll.CustomLevel(
            f"({l} IS NULL OR {r} IS NULL) AND NOT ({_found_in_other(a)})",
            label_for_charts="missing",
        ).configure(is_null_level=True)
    else:
        null = _null_level(a, compared)
    levels: list[ComparisonLevelCreator | dict[str, Any]] = [null]
    exact = _exact(a, "exact", term_frequency=tf)
    if kind == "name":
        levels.append(exact)
        if a == SWAPPABLE_NAMES[1] and _swaps(a, compared):
            levels.append(_level(_names_swapped(), "swapped with the given name"))
            levels.append(_level(_single_name_is_family(), "the other's only name"))
        levels += [
            _level(f"jaro_winkler_similarity({l}, {r}) >= 0.92", "Jaro-Winkler >= 0.92"),
        ]
        if _nickname_aware(spec):
            nick_l, nick_r = _q(f"{a}__nick", "l"), _q(f"{a}__nick", "r")
            levels.append(_level(f"{nick_l} = {nick_r}", "nickname"))
        levels.append(_level(f"jaro_winkler_similarity({l}, {r}) >= 0.8", "Jaro-Winkler >= 0.8"))
        if _nickname_aware(spec) or a in SWAPPABLE_NAMES:
            # A person's name written as its initial ("S." for Samuel).
            levels.append(
                _level(
                    f"least(length({l}), length({r})) = 1"
                    f" and substr({l}, 1, 1) = substr({r}, 1, 1)",
                    "initial",
                )
            )
    elif kind == "organisation":
        levels += [
            exact,
            _level(f"jaro_winkler_similarity({l}, {r}) >= 0.92", "Jaro-Winkler >= 0.92"),
            _level(_token_overlap(f"{a}__tokens", 0.5), "half the words shared"),
        ]
    elif kind == "text":
        levels += [
            exact,
            # Not on short texts: "9" and "5" (a street line that is only a number) are
            # one edit apart but say nothing.
            _level(
                f"least(length({l}), length({r})) >= 5 and {_levenshtein_at_most(l, r, 2)}",
                "Levenshtein <= 2",
            ),
            _level(_token_overlap(f"{a}__tokens", 0.5), "half the words shared"),
        ]
    elif kind == "title":
        levels += [
            exact,
            _level(_token_overlap(f"{a}__tokens", 0.7), "70% of the words shared"),
            _level(_token_overlap(f"{a}__tokens", 0.5), "half the words shared"),
            _level(_token_overlap(f"{a}__tokens", 0.3), "30% of the words shared"),
        ]
    elif kind == "date":
        swapped = (
            f"substr({l}, 1, 4) = substr({r}, 1, 4) and substr({l}, 6, 2) = substr({r}, 9, 2)"
            f" and substr({l}, 9, 2) = substr({r}, 6, 2)"
        )
        within_year = f"abs(date_diff('day', try_cast({l} as date), try_cast({r} as date))) <= 365"
        levels += [
            exact,
            _level(f"levenshtein({l}, {r}) <= 1", "one character off"),
            _level(swapped, "day and month swapped"),
            _level(within_year, "within a year"),
        ]
    elif kind == "email":
        user_l, user_r = _q(f"{a}__user", "l"), _q(f"{a}__user", "r")
        levels += [
            exact,
            _level(f"{user_l} = {user_r}", "same local part"),
            # No fuzzy level: e-mail addresses are often built from the name, so a near
            # miss ("ivy.vanbunschoten59@" / "ivyvanbunschoten@") would count the name twice.
        ]
    elif kind == "phone":
        last_l, last_r = _q(f"{a}__last7", "l"), _q(f"{a}__last7", "r")
        levels += [
            exact,
            _level(f"{last_l} = {last_r}", "last 7 digits equal"),
            _level(f"levenshtein({l}, {r}) <= 1", "one digit off"),
        ]
    elif kind == "postal_code":
        # The sector of a British postcode ("SW1P 4" of "SW1P 4DG"), the last digits of a
        # zip code, then the district or region.
        sector = f"length({l}) >= 5 and left({l}, -2) = left({r}, -2)"
        levels += [
            exact,
            _level(sector, "all but the last 2 characters equal"),
            _level(f"substr({l}, 1, 3) = substr({r}, 1, 3)", "same first 3 characters"),
        ]
    elif kind in ("exact", "identifier"):
        levels.append(exact)
        if spec.found_in:
            where = " / ".join(spec.found_in)
            levels.append(_level(_found_in_other(a), f"one's {a} in the other's {where}"))
        if spec.typos:
            for distance, label in ((1, "one character off"), (2, "two characters off")):
                levels.append(
                    _level(
                        f"abs(length({l}) - length({r})) <= {distance} "
                        f"and damerau_levenshtein({l}, {r}) <= {distance}",
                        label,
                    )
                )
    elif kind == "numeric":
        levels += [
            exact,
            _level(f"abs({l} - {r}) <= 0.05 * greatest(abs({l}), abs({r}))", "within 5%"),
            _level(f"abs({l} - {r}) <= 0.2 * greatest(abs({l}), abs({r}))", "within 20%"),
        ]
    else:
        raise ValueError(f"unknown comparison kind {kind!r} for {a!r}")
    levels.append(cll.ElseLevel().configure(label_for_charts="different"))
    return levels


def _blocking_rules(spec: MatchSpec, compared: Sequence[str]) -> list[Any]:
    """The spec's blocking rules; a rule on both names also finds them written swapped."""
    rules: list[Any] = []
    for rule in spec.blocking:
        rules.append(_block_on(rule))
        if set(rule) == set(SWAPPABLE_NAMES) and _swaps(SWAPPABLE_NAMES[0], compared):
            given, family = SWAPPABLE_NAMES
            rules.append(
                CustomRule(
                    f'l."{given}" = r."{family}" AND l."{family}" = r."{given}"',
                    sql_dialect="duckdb",
                )
            )
    return rules


def settings_for(
    spec: MatchSpec,
    *,
    link_type: str = "dedupe_only",
    comparisons: Sequence[ComparisonSpec] | None = None,
) -> dict[str, Any]:
    """The (untrained) Splink settings dictionary of a spec, for the DuckDB dialect."""
    chosen = spec.comparisons if comparisons is None else comparisons
    compared = [comparison.attribute for comparison in chosen]
    settings = {
        "link_type": link_type,
        "unique_id_column_name": UNIQUE_ID,
        "source_dataset_column_name": SOURCE_DATASET,
        "comparisons": [
            CustomComparison(
                _levels(comparison, compared),
                output_column_name=comparison.attribute,
                comparison_description=f"{comparison.attribute} ({comparison.kind})",
            ).create_comparison_dict("duckdb")
            for comparison in chosen
        ],
        "blocking_rules_to_generate_predictions": [
            rule.create_blocking_rule_dict("duckdb") for rule in _blocking_rules(spec, compared)
        ],
        "retain_matching_columns": True,
        "retain_intermediate_calculation_columns": True,
    }
    return settings


# --------------------------------------------------------------------------- sessions


@contextmanager
def _session() -> Iterator[DuckDBAPI]:
    """A private in-memory DuckDB for one call, closed afterwards."""
    connection = duckdb.connect(":memory:")
    try:
        yield DuckDBAPI(connection)
    finally:
        connection.close()


# Records prepared in Python at a time by a full run before they go to DuckDB: Python
# holds one chunk of records and their prepared columns, never the whole domain.
PREPARE_CHUNK = 50_000
# A full run's DuckDB when Django's settings do not say (``AURUM_MATCH_DUCKDB_MEMORY``).
DEFAULT_DUCKDB_MEMORY = "1GB"


def _scoring_limits() -> tuple[str, str | None]:
    """(DuckDB ``memory_limit``, the directory it spills under) from Django's settings."""
    from django.conf import settings

    if not settings.configured:
        return DEFAULT_DUCKDB_MEMORY, None
    memory = str(getattr(settings, "AURUM_MATCH_DUCKDB_MEMORY", DEFAULT_DUCKDB_MEMORY))
    temp = getattr(settings, "AURUM_MATCH_DUCKDB_TEMP_DIR", None)
    return memory.strip(), (str(temp) if temp else None)


@contextmanager
def _scoring_session() -> Iterator[DuckDBAPI]:
    """A private in-memory DuckDB for a full run: bounded memory, spilling to disk.

    Without a ``memory_limit`` DuckDB may take 80% of the machine's memory, and a full
    run's blocked pairs at 1M records take gigabytes: with one, joins, aggregates and the
    tables themselves spill to a private directory (removed afterwards) under
    ``AURUM_MATCH_DUCKDB_TEMP_DIR`` (the system's temporary directory by default) instead
    of growing the worker.  The order of rows is never read (every result is ordered
    explicitly): without it DuckDB streams joins and writes in parallel and holds fewer
    rows at once.
    """
    memory, temp_root = _scoring_limits()
    if temp_root:
        os.makedirs(temp_root, exist_ok=True)
    temp = tempfile.mkdtemp(prefix="aurum-duckdb-", dir=temp_root)
    config: dict[str, Any] = {"preserve_insertion_order": False, "temp_directory": temp}
    if memory:
        config["memory_limit"] = memory
    try:
        connection = duckdb.connect(":memory:", config=config)
    except duckdb.Error as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise ValueError(
            f"AURUM_MATCH_DUCKDB_MEMORY={memory!r} is not a DuckDB memory limit "
            "(e.g. 1GB, 512MB, 80%)"
        ) from exc
    try:
        yield DuckDBAPI(connection)
    finally:
        connection.close()
        shutil.rmtree(temp, ignore_errors=True)


def _chunked(records: Iterable[EngineRecord], size: int) -> Iterator[list[EngineRecord]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class _Preparer:
    """:func:`prepare_table` of a full run's chunks, in a second process when it can.

    Preparing is pure Python (folding, parsing, nicknames: about a third of a full run's
    scoring at 1M records), and so is reading the records from the database: with the
    preparation in a process of its own, chunk N is prepared while this process reads
    chunk N+1, writes the display values and inserts chunk N-1 into DuckDB (a machine has
    two cores or more). The process is forked (it inherits the engine, nothing is imported
    again) and only runs :func:`_prepare_rows`: no DuckDB, no database. Where a process
    cannot be started (:func:`mdm.forking.helper_pool`), the chunks are prepared here: the
    tables are the same either way.
    """

    def __init__(self, spec: MatchSpec, *, parallel: bool) -> None:
        self._spec = spec
        self._pool: ProcessPoolExecutor | None = None
        if parallel:
            self._pool = helper_pool()

    def submit(self, chunk: Sequence[EngineRecord]) -> Callable[[], pa.Table]:
        """Start preparing ``chunk``; the call returned gives its table (or raises)."""
        if self._pool is not None:
            # Tuples: cheaper to pickle than the dataclasses.
            rows = [(record.id, record.attributes, record.dataset) for record in chunk]
            try:
                return self._pool.submit(_prepare_rows, self._spec, rows).result
            except (OSError, RuntimeError) as exc:  # the process died
                logger.warning("preparing the records in this process: %s", exc)
                self.close()
        table = prepare_table(self._spec, chunk, with_dataset=True)
        return lambda: table

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _prepare_rows(spec: MatchSpec, rows: Sequence[tuple[int, Mapping[str, Any], str]]) -> pa.Table:
    """:func:`prepare_table` of (id, attributes, dataset) rows, in the preparing process."""
    records = [
        EngineRecord(id=pk, attributes=attributes, dataset=ds) for pk, attributes, ds in rows
    ]
    return prepare_table(spec, records, with_dataset=True)


def _load_records(
    con: duckdb.DuckDBPyConnection,
    spec: MatchSpec,
    records: Iterable[EngineRecord],
    comparisons: Sequence[_ComparisonInfo],
    *,
    chunk_size: int | None = None,
) -> tuple[int, bool]:
    """Prepare ``records`` a chunk at a time (``PREPARE_CHUNK`` by default) into the DuckDB
    tables ``__aurum_records_table`` (:func:`prepare_table`'s columns) and
    ``__aurum_display`` (:func:`_display_table`'s).

    Each chunk's Python objects are dropped before the next is read, so a streamed
    ``records`` (a server-side cursor) never sits in Python whole.  When the first chunk
    is full (more may follow), the chunks are prepared in a second process while this one
    reads the next (:class:`_Preparer`); at most two chunks are in flight.  The tables are
    what :func:`prepare_table` and :func:`_display_table` give on all the records at once;
    the ``source_dataset`` column is kept only when some record has a dataset.  Returns
    (the number of records, whether any has a dataset); raises ``ValueError`` on duplicate
    ids.
    """
    size = chunk_size or PREPARE_CHUNK
    chunks = _chunked(records, size)
    first = next(chunks, None)
    if first is None:
        return 0, False
    created: set[str] = set()

    def insert(name: str, data: pa.Table) -> None:
        con.register("__aurum_chunk", data)
        if name in created:
            con.execute(f"insert into {name} select * from __aurum_chunk")  # noqa: S608  # nosec B608
        else:
            con.execute(f"create table {name} as select * from __aurum_chunk")  # noqa: S608  # nosec B608
            created.add(name)
        con.unregister("__aurum_chunk")

    count = 0
    datasets = False
    preparer = _Preparer(spec, parallel=len(first) == size)
    chunks = itertools.chain([first], chunks)
    del first
    try:
        pending: Callable[[], pa.Table] | None = None
        for chunk in chunks:
            datasets = datasets or _has_datasets(chunk)
            prepared = preparer.submit(chunk)
            display = _display_table(chunk, comparisons)
            count += len(chunk)
            del chunk
            insert("__aurum_display", display)
            del display
            if pending is not None:
                insert("__aurum_records_table", pending())
            pending = prepared
        if pending is not None:
            insert("__aurum_records_table", pending())
        del pending, prepared  # the last table, now in DuckDB
    finally:
        preparer.close()
    repeated = [
        row[0]
        for row in con.execute(
            f"select {UNIQUE_ID} from __aurum_records_table group by 1 "  # noqa: S608  # nosec B608
            "having count(*) > 1 order by 1 limit 10"
        ).fetchall()
    ]
    if repeated:
        raise ValueError(f"record ids must be unique; repeated: {repeated}")
    if not datasets:
        con.execute(f"alter table __aurum_records_table drop column {SOURCE_DATASET}")
    return count, datasets


_link_counter = itertools.count()


def _register(db_api: DuckDBAPI, table: pa.Table | str, name: str) -> Any:
    return db_api.register(table, table_name=f"{name}_{next(_link_counter)}")


def _linker(
    db_api: DuckDBAPI,
    table: pa.Table | str,
    settings: Mapping[str, Any],
    *,
    validate: bool = True,
) -> Linker:
    """A Linker on ``table``.  ``validate=False`` skips Splink's settings validation, which
    only logs the columns a settings dictionary names and the table lacks (parsing every
    level's SQL to find them): for scoring with a model trained on the same prepared
    columns."""
    sdf = _register(db_api, table, "records")
    # log_level=None: Splink must not configure the application's logging.
    return Linker(sdf, dict(deepcopy(settings)), log_level=None, validate_settings=validate)


def _scoring_settings(parameters: Mapping[str, Any], *, link_type: str) -> dict[str, Any]:
    settings = deepcopy(dict(parameters))
    settings["link_type"] = link_type
    settings["retain_matching_columns"] = True
    settings["retain_intermediate_calculation_columns"] = True
    return settings


def _ranked_ids(table: pa.Table) -> pa.Table:
    """``table`` with each record's id replaced by its rank among the ids (0, 1, ...).

    Splink samples the pairs that estimate u by a hash of the record ids: with the ids
    themselves, the same records loaded twice (in another hub, or after other records took
    the ids they had) would train another model.  The rank keeps the records' order and
    makes training a function of the records alone.
    """
    position = table.schema.get_field_index(UNIQUE_ID)
    rank = pc.rank(table.column(position), sort_keys="ascending", tiebreaker="first")
    return table.set_column(
        position, table.schema.field(position), pc.subtract(rank, 1).cast(pa.int64())
    )


def _link_type(records: Sequence[EngineRecord]) -> str:
    return "link_and_dedupe" if _has_datasets(records) else "dedupe_only"


def _rule_name(rule: Sequence[str]) -> str:
    return "+".join(rule)


def _estimate_prior(linker: Linker, spec: MatchSpec, filled: set[str], warnings: list[str]) -> None:
    """The prior from the spec's deterministic rules; Splink's default when they say nothing.

    A rule on an attribute no record has can find no pair, so it is left out; a prior of 0
    (no pair found) would make every weight infinite, so it is not kept either.
    """
    default = linker._settings_obj._probability_two_random_records_match
    rules = [rule for rule in spec.deterministic if set(rule) <= filled]
    if not rules:
        warnings.append(
            f"no deterministic rule can apply to these records: the prior is Splink's "
            f"default ({default:g})"
        )
        return
    try:
        linker.training.estimate_probability_two_random_records_match(
            [_block_on(rule) for rule in rules], recall=spec.deterministic_recall
        )
    except ValueError as exc:
        warnings.append(f"prior not estimated ({exc}); Splink's default ({default:g}) kept")
        return
    prior = linker._settings_obj._probability_two_random_records_match
    if not 0 < prior < 1:
        linker._settings_obj._probability_two_random_records_match = default
        warnings.append(
            f"the deterministic rules found no matching pair: the prior is Splink's default "
            f"({default:g})"
        )


def _estimate_m(
    linker: Linker,
    rule: Sequence[str],
    compared: set[str],
    filled: set[str],
    warnings: list[str],
) -> None:
    """One EM round blocked on ``rule``; a round that cannot run or fails is skipped."""
    if not set(rule) <= filled:
        missing = ", ".join(a for a in rule if a not in filled)
        warnings.append(f"EM on {_rule_name(rule)} skipped: no record has {missing}")
        return
    if not compared - set(rule):
        warnings.append(f"EM on {_rule_name(rule)} skipped: it blocks on every comparison")
        return
    _floor_m_probabilities(linker)
    # A failed round leaves Splink's settings half-updated (the prior and m values of its
    # last iteration): keep a copy to put back.
    before = deepcopy(linker._settings_obj)
    try:
        linker.training.estimate_parameters_using_expectation_maximisation(
            _block_on(rule),
            estimate_without_term_frequencies=True,
            max_pairs=EM_MAX_PAIRS,
        )
    except (SplinkException, ValueError, ZeroDivisionError) as exc:
        linker._settings_obj = before
        reason = str(exc).split("\n", 1)[0]
        warnings.append(f"EM on {_rule_name(rule)} failed and was skipped: {reason}")


# The prior is refined on a random sample of this many records (all when fewer).
PRIOR_SAMPLE_RECORDS = 20_000
PRIOR_ITERATIONS = 100


def _refine_prior(
    table: pa.Table, parameters: Mapping[str, Any], *, link_type: str, seed: int
) -> float | None:
    """The prior that the trained m and u probabilities themselves imply, or None.

    The deterministic rules' estimate rests on a guess of their recall (0.7 in the
    domains' specs), which is far off on noisy data: on the historical figures the rules
    find a quarter of the pairs they are taken to find. With m and u trained, the prior is
    the one free parameter left, and its maximum-likelihood value is the fixed point of
    lambda = mean posterior over all pairs, where pairs outside the blocking rules count
    as non-matches (their Bayes factor is tiny). Computed on a random sample of records,
    which keeps every pair probability unbiased. None when the sample holds no scored
    pair or the fixed point leaves (1e-3, 1e3) times the first estimate: the model is then
    not trusted to say.
    """
    start = float(parameters["probability_two_random_records_match"])
    rows = table.num_rows
    if rows > PRIOR_SAMPLE_RECORDS:
        picked = sorted(random.Random(seed).sample(range(rows), PRIOR_SAMPLE_RECORDS))
        table = table.take(picked)
        rows = PRIOR_SAMPLE_RECORDS
    pairs = rows * (rows - 1) / 2
    settings = _scoring_settings(parameters, link_type=link_type)
    with _session() as db_api:
        linker = _linker(db_api, table, settings)
        predictions = linker.inference.predict(warning_mode="never")
        weights = db_api.duckdb_con.execute(
            f"select match_weight from {predictions.physical_name}"  # noqa: S608  # nosec B608
        ).fetchall()
    if not weights:
        return None
    prior_weight = math.log2(start / (1 - start))
    # Sorted: the same sum whatever order DuckDB's threads returned the rows in.
    factors = sorted(2.0 ** min(weight - prior_weight, 1000.0) for (weight,) in weights)
    prior = start
    for _ in range(PRIOR_ITERATIONS):
        odds = prior / (1 - prior)
        updated = sum(odds * f / (1 + odds * f) for f in factors) / pairs
        if updated <= 0 or updated >= 1:
            return None
        converged = abs(updated - prior) <= 1e-4 * prior
        prior = updated
        if converged:
            break
    if not start * 1e-3 < prior < start * 1e3:
        return None
    return prior


def _bound_unobserved_u(linker: Linker, sampled: float) -> list[tuple[str, int]]:
    """Give a level no sampled pair fell in the u of one pair in the sample.

    Splink otherwise scores such a level with a default u spread over the levels (0.003
    for an e-mail's "same local part" on 50k customers), which makes agreement on a rare
    level count *against* a match. Not one in ``sampled`` random pairs agreeing bounds u
    by about 1 / ``sampled``.
    """
    bound = 1.0 / max(sampled, 1.0)
    bounded = []
    for comparison in linker._settings_obj.comparisons:
        for level in comparison._comparison_levels_excluding_null:
            if not level._u_is_trained and not level._is_else_level:
                level.u_probability = bound
                bounded.append((comparison.output_column_name, level.comparison_vector_value))
    return bounded


def _unbound_untrained(linker: Linker, bounded: Sequence[tuple[str, int]]) -> None:
    """Put back Splink's defaults where EM did not see a level the u sample did not see.

    Nothing was learnt about such a level (no record pair fell in it): a default m over
    the bound u would make it weigh a dozen bits. (EM rounds replace the level objects,
    so they are found again by comparison and level.)
    """
    wanted = set(bounded)
    for comparison in linker._settings_obj.comparisons:
        for level in comparison._comparison_levels_excluding_null:
            key = (comparison.output_column_name, level.comparison_vector_value)
            if key in wanted and not level._m_is_trained:
                level.u_probability = None


def _floor_m_probabilities(linker: Linker) -> None:
    """Raise every trained m probability below :data:`M_FLOOR` to it."""
    for comparison in linker._settings_obj.comparisons:
        for level in comparison._comparison_levels_excluding_null:
            if level._m_is_trained and level.m_probability < M_FLOOR:
                level.m_probability = M_FLOOR


# --------------------------------------------------------------------------- reading a model


@dataclass(frozen=True)
class _LevelInfo:
    label: str
    is_null: bool
    is_else: bool
    is_exact: bool
    m: float | None  # None: never trained
    u: float | None
    weight: float  # the match weight scoring uses (Splink's default m/u where untrained)


@dataclass(frozen=True)
class _ComparisonInfo:
    name: str
    levels: dict[int, _LevelInfo]  # by gamma (comparison vector) value; -1 is "missing"
    has_tf: bool


def _model_comparisons(parameters: Mapping[str, Any]) -> list[_ComparisonInfo]:
    """The comparisons of a Splink model as Splink itself reads them."""
    settings = SettingsCreator.from_path_or_dict(dict(parameters)).get_settings("duckdb")
    comparisons = []
    for comparison in settings.comparisons:
        levels = {}
        for level in comparison.comparison_levels:
            is_null = bool(level.is_null_level)
            levels[level.comparison_vector_value] = _LevelInfo(
                label=level.label_for_charts,
                is_null=is_null,
                is_else=bool(level._is_else_level),
                is_exact=not is_null and bool(level._is_exact_match),
                m=level.m_probability if level._m_is_trained and not is_null else None,
                u=level.u_probability if level._u_is_trained and not is_null else None,
                weight=float(level._match_weight or 0.0),
            )
        comparisons.append(
            _ComparisonInfo(
                name=comparison.output_column_name,
                levels=levels,
                has_tf=bool(comparison._has_tf_adjustments),
            )
        )
    return comparisons


def level_warning(
    *,
    level: str,
    m: float | None,
    u: float | None,
    is_else: bool,
    is_exact: bool = False,
    conditional: bool = False,
) -> str | None:
    """Why a trained level looks implausible, or None.

    * m or u missing: the level was never trained (no pair fell in it), so predictions use
      Splink's defaults for it;
    * a "values differ" (else) level with m in 0.35-0.65: expectation maximisation has
      probably collapsed, typically because two compared fields are correlated. Not for a
      ``conditional`` comparison (an address part scored only where the more specific parts
      differ: there, many matches differ by construction);
    * u > m on a level that is meant as evidence for a match (anything but "differ"):
      agreeing on it makes a match less likely, which no such level should.
    """
    if m is None or u is None:
        missing = " and ".join(name for name, value in (("m", m), ("u", u)) if value is None)
        return f"{missing} never estimated (no training pair fell in level {level!r})"
    low, high = COLLAPSE_BAND
    if is_else and not conditional and low <= m <= high:
        return (
            f"m = {m:.2f} for {level!r}: half the 'matches' disagree here, so EM has "
            f"probably collapsed (correlated fields?)"
        )
    if not is_else and u > m:
        return f"u = {u:.3g} > m = {m:.3g} for {level!r}: agreement counts against a match" + (
            " even on an exact match" if is_exact else ""
        )
    return None


def _is_conditional(attribute: str, compared: Sequence[str]) -> bool:
    """Whether an address part is scored only where a more specific part is not implied."""
    if attribute not in ADDRESS_PARTS:
        return False
    return any(part in compared for part in ADDRESS_PARTS[: ADDRESS_PARTS.index(attribute)])


def _level_reports(parameters: Mapping[str, Any]) -> tuple[LevelReport, ...]:
    reports = []
    comparisons = _model_comparisons(parameters)
    compared = [comparison.name for comparison in comparisons]
    for comparison in comparisons:
        conditional = _is_conditional(comparison.name, compared)
        for gamma in sorted(comparison.levels, reverse=True):
            info = comparison.levels[gamma]
            if info.is_null:
                continue
            reports.append(
                LevelReport(
                    comparison=comparison.name,
                    level=info.label,
                    m_probability=info.m,
                    u_probability=info.u,
                    match_weight=info.weight,
                    warning=level_warning(
                        level=info.label,
                        m=info.m,
                        u=info.u,
                        is_else=info.is_else,
                        is_exact=info.is_exact,
                        conditional=conditional,
                    ),
                )
            )
    return tuple(reports)


# --------------------------------------------------------------------------- scoring output


def _select_sql(
    table: str,
    comparisons: Sequence[_ComparisonInfo],
    *,
    extra_where: str = "",
    top: int | None = None,
) -> str:
    """Ids, probability, weight, then (gamma, weight with its TF adjustment) per comparison.

    ``top`` keeps the best pairs of each right-hand (candidate) record.
    """
    columns = ["unique_id_l", "unique_id_r", "match_probability", "match_weight"]
    for comparison in comparisons:
        columns.append(f'"gamma_{comparison.name}"')
        weight = f'"mw_{comparison.name}"'
        if comparison.has_tf:
            weight += f' + coalesce("mw_tf_adj_{comparison.name}", 0)'
        columns.append(weight)
    # Every name here is the engine's own (Splink's output columns, attribute names of a
    # domain declared in code): nothing comes from user input.
    sql = f"select {', '.join(columns)} from {table}"  # noqa: S608  # nosec B608
    if extra_where:
        sql += f" where {extra_where}"
    if top is not None:
        sql += (
            " qualify row_number() over (partition by unique_id_r"
            f" order by match_weight desc, unique_id_l) <= {int(top)}"
        )
    return sql + " order by match_weight desc, unique_id_l, unique_id_r"


def _display_values(
    records: Iterable[EngineRecord], comparisons: Sequence[_ComparisonInfo]
) -> dict[int, tuple[Any, ...]]:
    """Each record's values as contributions show them (fallbacks applied), by record id."""
    names = [comparison.name for comparison in comparisons]
    return {
        record.id: tuple(_value(record.attributes, name) for name in names) for record in records
    }


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    Hundreds of thousands of pairs and contributions otherwise trigger repeated full
    collections that cost twice the building itself; nothing built here holds a cycle.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _pairs(
    rows: Iterable[tuple[Any, ...]],
    comparisons: Sequence[_ComparisonInfo],
    left_values: Mapping[int, tuple[Any, ...]],
    right_values: Mapping[int, tuple[Any, ...]],
    *,
    swap: bool = False,
    lower_first: bool = False,
) -> list[ScoredPair]:
    """ScoredPairs from rows of :func:`_select_sql`.

    ``swap`` puts Splink's right record first; ``lower_first`` the record with the lower id
    (Splink orders link_and_dedupe pairs by "<dataset>-__-<id>", not by id).
    """
    names = [comparison.name for comparison in comparisons]
    labels = [
        {gamma: level.label for gamma, level in comparison.levels.items()}
        for comparison in comparisons
    ]
    missing = (None,) * len(comparisons)
    pairs: list[ScoredPair] = []
    append = pairs.append
    with _gc_paused():
        for row in rows:
            left_id, right_id = row[0], row[1]
            left = left_values.get(left_id, missing)
            right = right_values.get(right_id, missing)
            if swap or (lower_first and left_id > right_id):
                left_id, right_id, left, right = right_id, left_id, right, left
            contributions = tuple(
                [
                    Contribution(name, level_labels.get(gamma) or str(gamma), weight, lv, rv)
                    for name, level_labels, gamma, weight, lv, rv in zip(
                        names, labels, row[4::2], row[5::2], left, right, strict=True
                    )
                ]
            )
            # DuckDB returns BIGINT as int and DOUBLE as float: no conversion needed.
            append(ScoredPair(left_id, right_id, row[2], row[3], contributions))
    return pairs


def _no_pairs() -> ScoredPairs:
    return ScoredPairs(
        left=[], right=[], match_probability=[], match_weight=[], contributions_json=[]
    )


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _display_table(
    records: Sequence[EngineRecord], comparisons: Sequence[_ComparisonInfo]
) -> pa.Table:
    """Each record's values as contributions show them (fallbacks applied), as JSON text:
    ``unique_id`` and one column ``d<i>`` per comparison, for :func:`_columns_sql`."""
    arrays: dict[str, Any] = {"unique_id": pa.array([r.id for r in records], pa.int64())}
    for i, comparison in enumerate(comparisons):
        name = comparison.name
        values = _memoised(_json_text, _column_values(records, name))
        arrays[f"d{i}"] = pa.array(values, pa.string())
    return pa.table(arrays)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _columns_sql(predictions: str, display: str, comparisons: Sequence[_ComparisonInfo]) -> str:
    """Pairs by column, lower id left, best first; each pair's contributions as JSON text.

    The JSON is what serialising the pair's ``Contribution`` dataclasses gives: a weight
    is written as DuckDB casts a DOUBLE to text (the shortest text that reads back to the
    same double, as Python's ``repr``), a non-finite one as null (as orjson does), a level
    by its label (else its gamma value as text), values as :func:`_display_table` wrote them.

    The text is one ``concat`` of all its pieces: chained ``||`` built a new string per
    piece (about 80 per pair), three times the cost of the rest of the query.  No piece is
    ever NULL (``concat`` would skip it where ``||`` gave NULL): each is a literal, a label,
    a coalesced value or a weight's text.
    """
    pieces: list[str] = []
    for i, comparison in enumerate(comparisons):
        gamma = f'p."gamma_{comparison.name}"'
        weight = f'p."mw_{comparison.name}"'
        if comparison.has_tf:
            weight += f' + coalesce(p."mw_tf_adj_{comparison.name}", 0)'
        whens = " ".join(
            f"when {int(value)} then {_sql_string(_json_text(level.label))}"
            for value, level in sorted(comparison.levels.items())
            if level.label
        )
        level_sql = f"""concat('"', cast({gamma} as varchar), '"')"""
        if whens:
            level_sql = f"case {gamma} {whens} else {level_sql} end"
        opening = "[" if i == 0 else ","
        pieces += [
            _sql_string(f'{opening}{{"attribute":{_json_text(comparison.name)},"level":'),
            level_sql,
            _sql_string(',"match_weight":'),
            f"(case when isfinite({weight}) then cast({weight} as varchar) else 'null' end)",
            _sql_string(',"left":'),
            f"coalesce(a.d{i}, 'null')",
            _sql_string(',"right":'),
            f"coalesce(b.d{i}, 'null')",
            "'}'",
        ]
    contributions = f"concat({', '.join(pieces)}, ']')" if pieces else "'[]'"
    # Every name here is the engine's own (Splink's output columns, attribute names of a
    # domain declared in code): nothing comes from user input.
    return (
        f"select least(p.unique_id_l, p.unique_id_r) as left_id, "  # noqa: S608  # nosec B608
        f"greatest(p.unique_id_l, p.unique_id_r) as right_id, "
        f"p.match_probability, p.match_weight, {contributions} as contributions "
        f"from {predictions} p "
        f"left join {display} a on a.unique_id = least(p.unique_id_l, p.unique_id_r) "
        f"left join {display} b on b.unique_id = greatest(p.unique_id_l, p.unique_id_r) "
        "order by p.match_weight desc, left_id, right_id"
    )


def _scored_table(
    con: duckdb.DuckDBPyConnection,
    predictions: str,
    display: str,
    comparisons: Sequence[_ComparisonInfo],
) -> pa.Table:
    """The pairs of the table ``predictions`` by column, as Arrow (:func:`_columns_sql`)."""
    return con.sql(_columns_sql(predictions, display, comparisons)).to_arrow_table()


def _pairs_by_column(result: pa.Table) -> ScoredPairs:
    """:class:`ScoredPairs` from :func:`_scored_table`'s columns.

    Called once DuckDB is closed, a column at a time, the Arrow table dropped as it goes:
    the Python lists and the Arrow buffers of one column, not of all, at once.
    """
    columns: dict[str, list[Any]] = {}
    for name in ("left_id", "right_id", "match_probability", "match_weight"):
        columns[name] = result.column(name).to_pylist()
        result = result.drop_columns([name])
    contributions = result.column("contributions").to_pylist()
    del result
    return ScoredPairs(
        left=columns["left_id"],
        right=columns["right_id"],
        match_probability=columns["match_probability"],
        match_weight=columns["match_weight"],
        contributions_json=contributions,
    )


# --------------------------------------------------------------------------- pruning

# Functions whose cost per pair is far above a comparison of values (string similarities,
# list scans with lambdas, date parsing): a level whose SQL calls one is left to Splink.
_EXPENSIVE_SQL = re.compile(
    r"\b(jaro_winkler_similarity|jaro_similarity|levenshtein|damerau_levenshtein|jaccard"
    r"|list_filter|list_intersect|lambda|date_diff|try_cast|strptime|regexp_\w+)\b",
    re.IGNORECASE,
)
# Taken off the threshold's weight before pruning: the bounds sum the same weights as
# Splink's score in another order, which may differ in the last bits.
_BOUND_MARGIN = 1e-6


def _then(when_sql: str) -> str:
    """The expression of Splink's ``WHEN <gamma> = <v> THEN <expression>`` fragment."""
    return when_sql.split("THEN", 1)[1].strip()


@dataclass(frozen=True)
class _WeighedComparison:
    """A comparison of a trained model as SQL on a pair's ``<column>_l/_r`` columns."""

    weight: str  # the pair's weight for this comparison, with its TF adjustment: Splink's
    bound: str  # at least ``weight``, from the cheap levels only
    expensive: bool  # whether some level calls an expensive function
    gap: float  # how far the bound may be above the weight (the order of evaluation)


def _weighed(comparison: Any) -> _WeighedComparison | None:
    """A comparison's weight and its cheap bound as SQL; None for an untrained level.

    Splink takes the first level whose condition holds. The bound evaluates the cheap
    conditions (no string similarity, see ``_EXPENSIVE_SQL``) in the same order and
    assumes the expensive ones hold: when cheap level *i* is the first cheap one that
    holds, the comparison's level is *i* or an expensive level before it, so its weight
    (with its term-frequency adjustment, which depends on the values only) is at most
    the greatest of theirs.
    """
    levels = comparison.comparison_levels
    gamma = f"gamma_{comparison.output_column_name}"
    before: list[str] = []  # values of the expensive levels seen so far
    bound: list[str] = []
    weight: list[str] = []
    weights: list[float] = []
    expensive_weights: list[float] = []
    for level in levels:
        level_weight = level._match_weight
        if level_weight is None or not math.isfinite(level_weight):
            return None
        weights.append(level_weight)
        value = f"cast({level_weight!r} as float8)"
        if comparison._has_tf_adjustments:
            value = f"({value} + ({_then(level._tf_adjustment_sql(gamma, levels))}))"
        if level._is_else_level:
            bound.append(f"ELSE greatest({', '.join([*before, value])})")
            weight.append(f"ELSE {value}")
            break
        weight.append(f"WHEN {level.sql_condition} THEN {value}")
        if _EXPENSIVE_SQL.search(level.sql_condition):
            expensive_weights.append(level_weight)
            before.append(value)
            continue
        bound.append(f"WHEN {level.sql_condition} THEN greatest({', '.join([*before, value])})")
    else:
        return None  # Splink's comparisons end with an else level
    return _WeighedComparison(
        weight="(CASE " + " ".join(weight) + " END)",
        bound="(CASE " + " ".join(bound) + " END)",
        expensive=bool(expensive_weights),
        gap=max(expensive_weights, default=0.0) - min(weights),
    )


def _promising_sql(
    comparisons: Sequence[_WeighedComparison], blocked: str, records: str, floor: float
) -> str:
    """The blocked pairs whose weight can reach ``floor`` (the prior's weight left out).

    The comparisons without expensive levels are summed first; then each expensive one
    (first the one whose bound can be furthest above its weight) is weighed only for the
    pairs that can still reach the floor with the bounds of those not weighed yet (a
    ``CASE`` per step: DuckDB evaluates its branch only on the rows that take it, and a
    pair out of reach is null from there).
    """
    cheap = [c for c in comparisons if not c.expensive]
    costly = sorted((c for c in comparisons if c.expensive), key=lambda c: -c.gap)
    zero = "cast(0 as float8)"
    floor_sql = f"cast({floor - _BOUND_MARGIN!r} as float8)"
    # The SQL is the model's own (Splink's level conditions) and the engine's.
    # Each bound once per pair, beside the sum of the cheap comparisons' weights.
    bounds = "".join(f", {c.bound} as __b{n}" for n, c in enumerate(costly))
    sql = f"select *, {' + '.join(c.weight for c in cheap) or zero} as __w0{bounds} from pairs"  # noqa: S608  # nosec B608
    for step, comparison in enumerate(costly):
        rest = " + ".join(f"__b{n}" for n in range(step, len(costly)))
        sql = (
            f"select *, case when __w{step} + {rest} >= {floor_sql} "  # noqa: S608  # nosec B608
            f"then __w{step} + {comparison.weight} end as __w{step + 1} from ({sql})"
        )
    return (
        f"with pairs as (select b.match_key, b.join_key_l, b.join_key_r, {{sides}} "  # noqa: S608  # nosec B608
        f"from {blocked} b "
        f'join {records} l on l."{UNIQUE_ID}" = b.join_key_l '
        f'join {records} r on r."{UNIQUE_ID}" = b.join_key_r) '
        f"select match_key, join_key_l, join_key_r from ({sql}) "
        f"where __w{len(costly)} >= {floor_sql}"
    )


def _blocked_pairs(linker: Linker, records: str) -> Any:
    """Splink's blocked pairs of a dedupe_only linker on ``records``, as a SplinkDataFrame.

    The same pairs and ``match_key`` (the first rule that blocks the pair) as Splink's
    ``compute_blocked_pairs_for_predict``, in half its time: Splink excludes the pairs of
    earlier rules with a growing ``NOT (...)`` per rule; here every rule's pairs are
    joined, and each pair is kept once with its first rule. Splink's own blocking for
    rules that explode arrays.
    """
    rules = linker._settings_obj._blocking_rules_to_generate_predictions
    if not rules or any(isinstance(rule, ExplodingBlockingRule) for rule in rules):
        return linker.inference.compute_blocked_pairs_for_predict()
    parts = [
        f"select {number} as rule, l.{UNIQUE_ID} as join_key_l, r.{UNIQUE_ID} as join_key_r "  # noqa: S608  # nosec B608
        f"from {records} l join {records} r on ({rule.blocking_rule_sql}) "
        f"and l.{UNIQUE_ID} < r.{UNIQUE_ID}"
        for number, rule in enumerate(rules)
    ]
    linker._db_api.duckdb_con.execute(
        "create table __aurum_blocked as select cast(min(rule) as varchar) as match_key, "  # noqa: S608  # nosec B608
        f"join_key_l, join_key_r from ({' union all '.join(parts)}) group by join_key_l, join_key_r"
    )
    return linker._db_api.register("__aurum_blocked", table_name="__aurum_blocked_pairs")


def _register_promising_pairs(linker: Linker, records: str, threshold: float) -> None:
    """Block as Splink does, then keep for Splink's predict the pairs that can reach
    ``threshold``.

    Most blocked pairs are far from a match, and what Splink's predict spends on them is
    string similarities: each comparison's CASE evaluates Jaro-Winkler or Levenshtein
    once per fuzzy level, for every pair. Here the cheap comparisons are summed, and each
    expensive one is weighed only while the pair can still reach the threshold's weight
    given the bounds of the comparisons not weighed yet (:func:`_weighed`). A pair
    Splink keeps always reaches it, so the pairs at or above the threshold, their
    probabilities and weights are Splink's: Splink scores the kept pairs with its own
    SQL. Does nothing for a model with an untrained level.
    """
    settings = linker._settings_obj
    db_api = linker._db_api
    con = db_api.duckdb_con
    prior = settings._probability_two_random_records_match
    if not 0 < threshold < 1 or not 0 < prior < 1:
        return
    weighed = [_weighed(comparison) for comparison in settings.comparisons]
    if any(w is None for w in weighed):
        return
    comparisons = [w for w in weighed if w is not None]
    floor = math.log2(threshold / (1 - threshold)) - math.log2(prior / (1 - prior))
    blocked = _blocked_pairs(linker, records)
    tf_columns = sorted(
        {
            level._tf_adjustment_input_column.unquote().name
            for comparison in settings.comparisons
            for level in comparison.comparison_levels
            if level._has_tf_adjustments
        }
    )
    tf_tables = {
        column: linker.table_management.compute_tf_table(column).physical_name
        for column in tf_columns
    }
    joins = " ".join(
        f'left join {name} as "tf_{column}" on "tf_{column}"."{column}" = d."{column}"'
        for column, name in tf_tables.items()
    )
    tf_select = "".join(f', "tf_{column}"."tf_{column}"' for column in tf_tables)
    # Every name here is Splink's or the engine's own; nothing comes from user input.
    con.execute(
        f"create table __aurum_with_tf as select d.*{tf_select} from {records} d {joins}"  # noqa: S608  # nosec B608
    )
    columns = [
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns "
            "where table_name = '__aurum_with_tf' order by ordinal_position"
        ).fetchall()
    ]
    sides = ", ".join(
        f'{side}."{column}" as "{column}_{side}"' for column in columns for side in ("l", "r")
    )
    query = _promising_sql(comparisons, blocked.physical_name, "__aurum_with_tf", floor)
    con.execute("create table __aurum_promising as " + query.replace("{sides}", sides))
    con.execute("drop table __aurum_with_tf")
    counts = con.execute(
        f"select (select count(*) from {blocked.physical_name}), "  # noqa: S608  # nosec B608
        "(select count(*) from __aurum_promising)"
    ).fetchall()[0]
    logger.info("pruning kept %d of %d blocked pairs", counts[1], counts[0])
    blocked.drop_table_from_database_and_remove_from_cache(force_non_splink_table=True)
    promising = db_api.register("__aurum_promising", table_name="__aurum_promising_pairs")
    linker.table_management.register_blocked_pairs_for_predict(promising)


# --------------------------------------------------------------------------- the engine


class SplinkEngine:
    """The ``MatchEngine`` on Splink 5 and an in-memory DuckDB per call.

    ``score_candidates`` scores against an existing set of records, held by a
    :class:`MatchStore`: give one to the constructor, or call :meth:`with_existing` to
    get an engine that builds its store on first use. The engine is safe to share
    between threads; a store serialises its own calls.
    """

    def __init__(self, store: MatchStore | None = None) -> None:
        self._store = store
        self._existing: tuple[EngineRecord, ...] | None = None
        self._lock = threading.Lock()

    # -- existing records ------------------------------------------------------------

    def with_existing(self, records: Iterable[EngineRecord]) -> SplinkEngine:
        """A new engine whose ``score_candidates`` scores against ``records``."""
        engine = SplinkEngine()
        engine._existing = tuple(records)
        return engine

    @property
    def store(self) -> MatchStore | None:
        return self._store

    def _store_for(self, spec: MatchSpec, model: TrainedModel) -> MatchStore:
        with self._lock:
            store = self._store
            if store is not None and store.serves(spec, model):
                return store
            if self._existing is None:
                if store is None:
                    raise ValueError(
                        "score_candidates needs existing records: build the engine with "
                        "a MatchStore or call with_existing(records) first"
                    )
                raise ValueError(
                    "the engine's MatchStore was built for another spec or model; build "
                    "a new MatchStore for this one"
                )
            if store is not None:
                store.close()
            self._store = MatchStore(spec, model, self._existing)
            return self._store

    # -- training --------------------------------------------------------------------

    def train(
        self, spec: MatchSpec, records: Iterable[EngineRecord], *, seed: int = 42
    ) -> TrainedModel:
        """Estimate the prior, u (random sampling) and m (EM per training rule).

        Comparisons whose attribute has no value in ``records`` are left out of the model
        (with a warning): nothing can be learnt about them, and so are deterministic and
        training rules on such attributes. Pure: reads nothing but its arguments; the same
        records and seed give the same model (up to the last bits of DuckDB's parallel sums).
        """
        records = list(records)
        if len(records) < 2:
            raise ValueError("training needs at least two records")
        started = time.perf_counter()
        warnings: list[str] = []
        table = _ranked_ids(prepare_table(spec, records))
        filled = {
            name for name in table.column_names if table.column(name).null_count < len(records)
        }
        present = [c for c in spec.comparisons if c.attribute in filled]
        warnings.extend(
            f"{c.attribute}: no record has a value; comparison left out"
            for c in spec.comparisons
            if c.attribute not in filled
        )
        if not present:
            raise ValueError("none of the compared attributes has a value in the records")
        settings = settings_for(spec, link_type=_link_type(records), comparisons=present)

        with _session() as db_api:
            linker = _linker(db_api, table, settings)
            _estimate_prior(linker, spec, filled, warnings)
            pairs = len(records) * (len(records) - 1) / 2
            sampled = min(U_MAX_PAIRS, max(pairs, 1.0))
            linker.training.estimate_u_using_random_sampling(max_pairs=sampled, seed=seed)
            bounded = _bound_unobserved_u(linker, sampled)
            compared = {c.attribute for c in present}
            for rule in spec.training:
                _estimate_m(linker, rule, compared, filled, warnings)
            _floor_m_probabilities(linker)
            _unbound_untrained(linker, bounded)
            parameters = linker.misc.save_model_to_json()
        if spec.prior_from_model:
            refined = _refine_prior(table, parameters, link_type=_link_type(records), seed=seed)
            if refined is not None:
                parameters["probability_two_random_records_match"] = refined
        prior = float(parameters["probability_two_random_records_match"])

        levels = _level_reports(parameters)
        warnings.extend(
            f"{level.comparison} / {level.level}: {level.warning}"
            for level in levels
            if level.warning
        )
        logger.info(
            "trained on %d records in %.2f s (%d warnings)",
            len(records),
            time.perf_counter() - started,
            len(warnings),
        )
        return TrainedModel(
            parameters=parameters, prior=prior, levels=levels, warnings=tuple(warnings)
        )

    # -- scoring ---------------------------------------------------------------------

    def score_all(
        self,
        spec: MatchSpec,
        model: TrainedModel,
        records: Iterable[EngineRecord],
        *,
        threshold: float,
    ) -> ScoredPairs:
        """Every blocked pair of ``records`` at or above ``threshold``, best first.

        The model is loaded as trained (no retraining); term frequencies come from
        ``records``. ``left`` is the lower id of each pair. Records with datasets are
        linked and deduplicated (``link_and_dedupe``), others deduplicated; ids must be
        unique either way. Deduplication drops the blocked pairs that cannot reach
        ``threshold`` before Splink scores the rest (:func:`_register_promising_pairs`).
        Pure: reads nothing but its arguments (and the DuckDB limits of Django's settings).
        The pairs come back by column (:class:`ScoredPairs`): DuckDB writes each pair's
        contributions as JSON, so no Python object is built per pair.

        ``records`` may be an iterator (a server-side cursor): it is read once, a chunk at
        a time, into DuckDB (:func:`_load_records`), and DuckDB's memory is bounded by
        ``AURUM_MATCH_DUCKDB_MEMORY``, spilling to disk beyond it (:func:`_scoring_session`).
        """
        # The comparisons (names, levels, TF) do not depend on the link type.
        comparisons = _model_comparisons(
            _scoring_settings(model.parameters, link_type="dedupe_only")
        )
        with _scoring_session() as db_api:
            con = db_api.duckdb_con
            # DuckDB tables, as the benchmark's bare Splink reads: no Arrow scan in predict.
            count, datasets = _load_records(con, spec, records, comparisons)
            if count < 2:
                return _no_pairs()
            link_type = "link_and_dedupe" if datasets else "dedupe_only"
            settings = _scoring_settings(model.parameters, link_type=link_type)
            linker = _linker(db_api, "__aurum_records_table", settings, validate=False)
            if link_type == "dedupe_only":
                _register_promising_pairs(linker, "__aurum_records_table", threshold)
            predictions = linker.inference.predict(
                threshold_match_probability=threshold, warning_mode="never"
            )
            result = _scored_table(con, predictions.physical_name, "__aurum_display", comparisons)
            predictions.drop_table_from_database_and_remove_from_cache()
        return _pairs_by_column(result)

    def score_candidates(
        self,
        spec: MatchSpec,
        model: TrainedModel,
        candidates: Sequence[EngineRecord],
        *,
        threshold: float,
        top: int = 10,
    ) -> list[ScoredPair]:
        """The best ``top`` existing records for each candidate, at or above ``threshold``.

        ``left`` is the candidate, ``right`` the existing record. A candidate whose id is
        already in the existing set is not paired with itself. Reads the store only.
        """
        return self._store_for(spec, model).score(candidates, threshold=threshold, top=top)


# --------------------------------------------------------------------------- the store


class _RecordingDuckDBAPI(DuckDBAPI):
    """DuckDBAPI that can note the SQL Splink runs, so that a call can be replayed."""

    recording: list[str] | None = None

    def _execute_sql_against_backend(self, final_sql: str) -> duckdb.DuckDBPyRelation:
        if self.recording is not None:
            self.recording.append(final_sql)
        return super()._execute_sql_against_backend(final_sql)


_CREATE_TABLE = re.compile(r"\s*CREATE TABLE\s+(\S+)\s+AS\s", re.IGNORECASE)


def _created_tables(statements: Iterable[str]) -> dict[str, str]:
    """The query of each ``CREATE TABLE name AS query`` statement, by table name."""
    created = {}
    for statement in statements:
        match = _CREATE_TABLE.match(statement)
        if match:
            created[match.group(1)] = statement[match.end() :]
    return created


@dataclass(frozen=True)
class _KeyRule:
    """A blocking rule as the store indexes it: its key on each side, as SQL.

    A ``block_on`` rule blocks a pair exactly when the stored (left) record's key equals
    the candidate's (right) key with no part of it null. The store finds the records
    whose key *hash* equals the candidate's, then compares the keys themselves.
    """

    stored: tuple[str, ...]  # the key's expressions on the stored record's columns
    candidate: tuple[str, ...]

    @property
    def stored_hash(self) -> str:
        return _key_hash_sql(self.stored)


def _key_hash_sql(expressions: Sequence[str]) -> str:
    not_null = " and ".join(f"({e}) is not null" for e in expressions)
    return f"case when {not_null} then hash({', '.join(expressions)}) end"


def _key_rules(settings: Mapping[str, Any]) -> list[_KeyRule]:
    """The blocking rules of a model as the store indexes them.

    Each rule must be equalities between an expression of the left record and one of the
    right record, nothing else: that is what ``block_on`` (and so every match spec) makes.
    """
    parsed = SettingsCreator.from_path_or_dict(dict(settings)).get_settings("duckdb")
    rules = []
    for rule in parsed._blocking_rules_to_generate_predictions:
        exploding = isinstance(rule, ExplodingBlockingRule)
        equalities = [] if exploding else rule._equi_join_conditions
        if exploding or not equalities or rule._filter_conditions.upper() != "TRUE":
            raise ValueError(
                f"the match store indexes blocking rules made of equalities only; "
                f"{rule.blocking_rule_sql!r} is not"
            )
        rules.append(
            _KeyRule(
                stored=tuple(left for left, _ in equalities),
                candidate=tuple(right for _, right in equalities),
            )
        )
    return rules


@dataclass
class _KeyIndex:
    """One blocking rule's keys of the base records: hashes sorted, ids alongside."""

    hashes: array[int]
    ids: array[int]

    def find(self, key: int) -> array[int]:
        return self.ids[bisect_left(self.hashes, key) : bisect_right(self.hashes, key)]


def _int_array(code: str, column: pa.ChunkedArray | pa.Array) -> array[int]:
    """A null-free 64-bit Arrow column as a Python array (one copy, no Python ints)."""
    out = array(code)
    combined = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(combined):
        buffer = combined.buffers()[1]
        width = out.itemsize
        out.frombytes(buffer[combined.offset * width : (combined.offset + len(combined)) * width])
    return out


class MatchStore:
    """The existing records of one spec and model, kept for scoring candidates fast.

    Scoring a candidate costs what its blocks cost, not what the store holds:

    * the prepared records live in memory as an Arrow table (the *base*, sorted by id)
      plus the records upserted since (the *delta*); ids of base rows replaced or deleted
      since are *dead*. When the delta outgrows a twentieth of the store, both are merged
      into a new base;
    * each blocking rule of the model has a key index: the hash (DuckDB's ``hash``) of
      each record's key (the left side of the rule's equalities) in a sorted array for the
      base, in a dictionary for the delta. A candidate's key (the right side) finds the
      records that can share a block with it by two bisections;
    * term frequencies are counts per value, kept up to date on every change;
    * scoring runs Splink's own ``predict_between`` SQL (noted once per threshold on empty
      tables, then replayed) on just the records found and the candidates, with term
      frequency tables holding just their values. Splink's blocking rules run in that SQL
      too, so the pairs are exactly Splink's, and the comparisons, term-frequency
      adjustments and match weights are Splink's own SQL: the scores equal
      ``predict_between`` against all the records.

    ``upsert`` and ``delete`` keep the store in step with the hub. One DuckDB connection:
    calls are serialised by a lock.
    """

    _FOUND = "aurum_found"
    _CANDIDATES = "aurum_candidates"
    _MAX_COMPILED = 16  # thresholds whose statements are kept (search takes any threshold)
    _MIN_DELTA = 20_000  # the delta merges into the base past this many rows and 5% of it

    def __init__(
        self, spec: MatchSpec, model: TrainedModel, records: Iterable[EngineRecord] = ()
    ) -> None:
        self.spec = spec
        self.model = model
        settings = _scoring_settings(model.parameters, link_type="dedupe_only")
        self._comparisons = _model_comparisons(settings)
        self._rules = _key_rules(settings)
        self._tf_columns = sorted(
            {
                level["tf_adjustment_column"]
                for comparison in settings["comparisons"]
                for level in comparison["comparison_levels"]
                if level.get("tf_adjustment_column")
            }
        )
        self._lock = threading.Lock()
        # One thread: the queries here are small, and a second thread costs more to
        # start than it saves (the connection is private to this store).
        self._connection = duckdb.connect(":memory:", config={"threads": 1})
        self._db_api = _RecordingDuckDBAPI(self._connection)
        self._values: dict[int, tuple[Any, ...]] = {}
        self._compiled: dict[tuple[float, int], str] = {}  # (threshold, top) -> query
        self._blocked_name = ""

        empty = prepare_table(spec, [], with_dataset=False)
        self._schema = empty.schema
        self._connection.register(self._FOUND, empty)
        self._connection.register(self._CANDIDATES, empty)
        self._found_sdf = _register(self._db_api, self._FOUND, "found")
        self._candidates_sdf = _register(self._db_api, self._CANDIDATES, "candidates")
        self._linker = Linker(self._found_sdf, settings, log_level=None)
        # Splink needs its term-frequency tables registered before predict_between; these
        # (empty) ones only give the SQL their names, replaced by the store's own tables.
        self._tf_names = {
            column: self._linker.table_management.compute_tf_table(column).physical_name
            for column in self._tf_columns
        }
        self._tf_counts: dict[str, Counter[Any]] = {c: Counter() for c in self._tf_columns}
        self._candidate_keys_sql, self._found_keys_sql = self._key_statements()
        self._key_offsets = list(itertools.accumulate([0] + [len(r.stored) for r in self._rules]))
        self._tf_totals: dict[str, int] = dict.fromkeys(self._tf_columns, 0)

        self._base = empty
        self._base_ids: array[int] = array("q")
        self._base_index = [_KeyIndex(array("Q"), array("q")) for _ in self._rules]
        self._dead: set[int] = set()
        self._delta = empty
        self._delta_rows: dict[int, int] = {}  # id -> row of its current version
        self._delta_index: list[dict[int, set[int]]] = [{} for _ in self._rules]
        self._delta_keys: dict[int, tuple[int | None, ...]] = {}
        self.upsert(records)

    def serves(self, spec: MatchSpec, model: TrainedModel) -> bool:
        """Whether this store was built for this spec and model."""
        return spec == self.spec and (
            model is self.model or model.parameters == self.model.parameters
        )

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._values

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # -- changes -------------------------------------------------------------------------

    def upsert(self, records: Iterable[EngineRecord]) -> int:
        """Insert or replace records by id; returns how many. Safe to repeat."""
        records = list(records)
        if not records:
            return 0
        table = prepare_table(self.spec, records, with_dataset=False)
        ids = table.column(UNIQUE_ID).to_pylist()
        with self._lock:
            self._count_terms(self._rows([i for i in ids if i in self._values]), -1)
            self._count_terms(table, +1)
            if not self._values and len(records) >= self._MIN_DELTA:
                self._values.update(_display_values(records, self._comparisons))
                self._rebuild(table)
                return len(records)
            self._forget(ids)
            start = self._delta.num_rows
            self._delta = pa.concat_tables([self._delta, table]).combine_chunks()
            keys = self._keys(table)
            for offset, record_id in enumerate(ids):
                self._delta_rows[record_id] = start + offset
                record_keys = keys[record_id]
                self._delta_keys[record_id] = record_keys
                for index, key in zip(self._delta_index, record_keys, strict=True):
                    if key is not None:
                        index.setdefault(key, set()).add(record_id)
            self._values.update(_display_values(records, self._comparisons))
            if self._delta.num_rows > max(self._MIN_DELTA, len(self._values) // 20):
                self._rebuild()
        return len(records)

    def delete(self, ids: Iterable[int]) -> int:
        """Remove records by id; returns how many were there. Safe to repeat."""
        with self._lock:
            gone = [i for i in set(ids) if i in self._values]
            if not gone:
                return 0
            self._count_terms(self._rows(gone), -1)
            self._forget(gone)
            for i in gone:
                del self._values[i]
        return len(gone)

    def _forget(self, ids: Iterable[int]) -> None:
        """Take the current version of each record out of the indexes."""
        for record_id in ids:
            if self._in_base(record_id):
                self._dead.add(record_id)
            if self._delta_rows.pop(record_id, None) is None:
                continue
            for index, key in zip(self._delta_index, self._delta_keys.pop(record_id), strict=True):
                if key is not None:
                    block = index[key]
                    block.discard(record_id)
                    if not block:
                        del index[key]

    def _in_base(self, record_id: int) -> bool:
        position = bisect_left(self._base_ids, record_id)
        return position < len(self._base_ids) and self._base_ids[position] == record_id

    def _count_terms(self, table: pa.Table, sign: int) -> None:
        for column in self._tf_columns:
            values = [v for v in table.column(column).to_pylist() if v is not None]
            if sign > 0:
                self._tf_counts[column].update(values)
            else:
                self._tf_counts[column].subtract(values)
            self._tf_totals[column] += sign * len(values)

    def _rebuild(self, table: pa.Table | None = None) -> None:
        """Merge the live base and delta rows (or take ``table``) into a new base."""
        if table is None:
            live = [p for p, i in enumerate(self._base_ids) if i not in self._dead]
            current = sorted(self._delta_rows.values())
            table = pa.concat_tables(
                [
                    self._base.take(pa.array(live, pa.int64())),
                    self._delta.take(pa.array(current, pa.int64())),
                ]
            )
        self._base = table.sort_by(UNIQUE_ID).combine_chunks()
        self._base_ids = _int_array("q", self._base.column(UNIQUE_ID))
        self._connection.register("aurum_base", self._base)
        # Hashing and sorting every record's keys is the one large job here: all cores.
        self._connection.execute(f"set threads to {os.cpu_count() or 1}")
        try:
            for number, rule in enumerate(self._rules):
                keys = self._connection.sql(
                    f"select k, {UNIQUE_ID} from (select {rule.stored_hash} as k, {UNIQUE_ID} "  # noqa: S608  # nosec B608
                    f"from aurum_base) where k is not null order by k, {UNIQUE_ID}"
                ).to_arrow_table()
                self._base_index[number] = _KeyIndex(
                    _int_array("Q", keys.column(0)), _int_array("q", keys.column(1))
                )
        finally:
            self._connection.execute("set threads to 1")
            self._connection.unregister("aurum_base")
        self._dead = set()
        self._delta = self._base.slice(0, 0)
        self._delta_rows = {}
        self._delta_index = [{} for _ in self._rules]
        self._delta_keys = {}
        for counts in self._tf_counts.values():
            for value in [v for v, n in counts.items() if n <= 0]:
                del counts[value]

    # -- reading -------------------------------------------------------------------------

    def _keys(self, table: pa.Table) -> dict[int, tuple[int | None, ...]]:
        """Each record's key hash per rule (None where the rule cannot block it)."""
        self._connection.register("aurum_keys", table)
        try:
            columns = ", ".join(rule.stored_hash for rule in self._rules)
            rows = self._connection.execute(
                f"select {UNIQUE_ID}, {columns} from aurum_keys"  # noqa: S608  # nosec B608
            ).fetchall()
        finally:
            self._connection.unregister("aurum_keys")
        return {row[0]: row[1:] for row in rows}

    def _lookup(self, keys: Iterable[tuple[Any, ...]]) -> set[int]:
        """The ids of the live records whose key equals a candidate's in some rule."""
        in_base: set[int] = set()
        in_delta: set[int] = set()
        for candidate in keys:
            for base, delta, key in zip(
                self._base_index, self._delta_index, candidate, strict=True
            ):
                if key is None:
                    continue
                in_base.update(base.find(key))
                block = delta.get(key)
                if block:
                    in_delta.update(block)
        # The delta index holds current versions only; a dead base row is an old one.
        return (in_base - self._dead) | in_delta

    def _rows(self, ids: Iterable[int]) -> pa.Table:
        """The current prepared rows of live records."""
        base: list[int] = []
        delta: list[int] = []
        for record_id in ids:
            row = self._delta_rows.get(record_id)
            if row is not None:
                delta.append(row)
            else:
                base.append(bisect_left(self._base_ids, record_id))
        if not delta:
            return self._base.take(pa.array(base, pa.int64()))
        if not base:
            return self._delta.take(pa.array(delta, pa.int64()))
        return pa.concat_tables(
            [
                self._base.take(pa.array(base, pa.int64())),
                self._delta.take(pa.array(delta, pa.int64())),
            ]
        )

    def _register_term_frequencies(self, found: pa.Table, candidates: pa.Table) -> None:
        """Term-frequency tables of just the values of the found records and candidates.

        The same figures as Splink's ``compute_tf_table`` over all the stored records:
        ``count(value) / count(non-null values)`` in double precision; a value no stored
        record has is left out, as there.
        """
        for column in self._tf_columns:
            counts, total = self._tf_counts[column], self._tf_totals[column]
            values = {
                v
                for part in (found, candidates)
                for v in part.column(column).to_pylist()
                if v is not None and counts.get(v, 0) > 0
            }
            kept = sorted(values)
            table = pa.table(
                {
                    column: pa.array(kept, self._schema.field(column).type),
                    f"tf_{column}": pa.array(
                        [float(counts[v]) / float(total) for v in kept], pa.float64()
                    ),
                }
            )
            self._connection.register(f"aurum_tf_{column}", table)

    def _key_statements(self) -> tuple[str, str]:
        """The queries of the candidates' keys (hashes, then values) and the found ones'."""
        # Bare hashes (a null part is caught in Python from the values): DuckDB plans a
        # CASE per rule in several milliseconds.
        candidate = [f"hash({', '.join(rule.candidate)})" for rule in self._rules]
        candidate += [e for rule in self._rules for e in rule.candidate]
        stored = [e for rule in self._rules for e in rule.stored]
        return (
            f"select {UNIQUE_ID}, {', '.join(candidate)} from {self._CANDIDATES}",  # noqa: S608  # nosec B608
            f"select {UNIQUE_ID}, {', '.join(stored)} from {self._FOUND}",  # noqa: S608  # nosec B608
        )

    def _compile(self, threshold: float, top: int) -> str:
        """Splink's predict_between scoring query for a threshold, on the store's tables.

        Noted from a real call on empty tables. The blocking statement is left out: the
        store finds the blocked pairs itself (:meth:`_blocked_pairs`) and registers them
        under the name Splink gave them; DuckDB takes longer to plan Splink's blocking SQL
        (a join and a growing exclusion per rule) than to run the rest on a few rows.
        Splink's term-frequency tables are replaced by the store's.
        """
        key = (threshold, top)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled
        if len(self._compiled) >= self._MAX_COMPILED:
            self._compiled.pop(next(iter(self._compiled)))  # the oldest
        empty = pa.Table.from_batches([], self._schema)
        self._connection.register(self._FOUND, empty)
        self._connection.register(self._CANDIDATES, empty)
        self._db_api.recording = []
        try:
            predictions = self._linker.inference.predict_between(
                self._found_sdf,
                self._candidates_sdf,
                threshold_match_probability=threshold,
                warning_mode="never",
            )
            created = _created_tables(self._db_api.recording)
        finally:
            self._db_api.recording = None
        predictions.drop_table_from_database_and_remove_from_cache()
        blocked = [name for name in created if name.startswith("__splink__blocked_id_pairs")]
        scoring = created.get(predictions.physical_name)
        if len(created) != 2 or len(blocked) != 1 or scoring is None:
            raise SplinkException(
                "predict_between ran other statements than the store replays: " + ", ".join(created)
            )
        self._blocked_name = blocked[0]
        for column, name in self._tf_names.items():
            scoring = scoring.replace(name, f"aurum_tf_{column}")
        select = _select_sql(
            f"({scoring}) as predictions",
            self._comparisons,
            extra_where="unique_id_l <> unique_id_r",
            top=top,
        )
        self._compiled[key] = select
        return select

    def _candidate_hashes(self, row: tuple[Any, ...]) -> tuple[int | None, ...]:
        """A candidate's key hash per rule (None where a part of the key is null)."""
        rules, offsets = len(self._rules), self._key_offsets
        return tuple(
            None if None in row[1 + rules + offsets[n] : 1 + rules + offsets[n + 1]] else row[1 + n]
            for n in range(rules)
        )

    def _blocked_pairs(self, candidates: Sequence[tuple[Any, ...]]) -> pa.Table:
        """Splink's blocked pairs of the candidates and the registered found records.

        A pair is blocked by the first rule whose key is equal on both sides with no
        part null (its ``match_key``), as in Splink's blocking SQL; a candidate is not
        paired with a stored record of its own id.
        """
        rules = len(self._rules)
        found = self._connection.execute(self._found_keys_sql).fetchall()
        offsets = self._key_offsets
        pairs: dict[tuple[int, int], int] = {}
        for number in range(rules):
            first, last = 1 + offsets[number], 1 + offsets[number + 1]
            block: dict[tuple[Any, ...], list[int]] = {}
            for row in found:
                key = row[first:last]
                if None not in key:
                    block.setdefault(key, []).append(row[0])
            if not block:
                continue
            for row in candidates:
                key = row[1 + rules + offsets[number] : 1 + rules + offsets[number + 1]]
                if None in key:
                    continue
                for stored_id in block.get(key, ()):
                    if stored_id != row[0]:
                        pairs.setdefault((stored_id, row[0]), number)
        return pa.table(
            {
                "match_key": pa.array([str(n) for n in pairs.values()], pa.string()),
                "join_key_l": pa.array([left for left, _ in pairs], pa.int64()),
                "join_key_r": pa.array([right for _, right in pairs], pa.int64()),
            }
        )

    def score(
        self, candidates: Sequence[EngineRecord], *, threshold: float, top: int = 10
    ) -> list[ScoredPair]:
        """Score candidates against the stored records (see score_candidates)."""
        candidates = list(candidates)
        if not candidates or not self._values:
            return []
        table = prepare_table(self.spec, candidates, with_dataset=False)
        with self._lock:
            query = self._compile(threshold, top)
            self._connection.register(self._CANDIDATES, table)
            keys = self._connection.execute(self._candidate_keys_sql).fetchall()
            found = self._lookup(self._candidate_hashes(row) for row in keys)
            if not found:
                return []
            rows = self._rows(found)
            self._connection.register(self._FOUND, rows)
            pairs = self._blocked_pairs(keys)
            if not pairs.num_rows:
                return []
            self._connection.register(self._blocked_name, pairs)
            self._register_term_frequencies(rows, table)
            scored = self._connection.execute(query).fetchall()
            candidate_values = _display_values(candidates, self._comparisons)
            return _pairs(scored, self._comparisons, self._values, candidate_values, swap=True)
