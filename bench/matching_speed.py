"""Matching speed benchmark: the hub's match path against bare Splink on the same data.

    python bench/matching_speed.py [--records 1000000 | --quick] [--skip-ingest]
                                   [--searches 200] [--seed 7] [--hub-timeout 1200]
                                   [--server-jit] [--skip-full-match]

Runs against the configured database (DATABASE_URL; point it at PostgreSQL for real
figures).  Steps, each timed and printed with what it was measured on:

1. generate N customer records with realistic duplicates (name pools with real frequencies
   and a long tail of rare family names, birth dates, e-mails, valid phone numbers,
   addresses with postal codes and cities in four countries; about a quarter of the people
   appear 2-4 times with typos, nicknames, missing values, a new e-mail, phone or address)
   and ingest them through ``source_records_ingest_file`` into the source system
   ``matchbench``.  Earlier ``matchbench`` records and every golden record, cross-reference,
   match pair and review task of the customer domain are removed first (set-based): the
   database is a bench database;
2. train and activate a model (``match_model_train``);
3. a full match through the hub (``match_run_full``), with its own load/score/cluster/apply
   timings, a finer breakdown taken by wrapping the functions it calls, the SQL time by
   statement, and the pairwise F1 of the golden records against the generator's truth;
4. bare Splink on the same prepared records and the same trained model: ``predict`` at the
   model's lower threshold and ``cluster_pairwise_predictions_at_threshold`` at its upper
   one, and the ratio hub full match / bare Splink (target <= 1.5);
5. search before create: ``match_search`` on slightly misspelt copies of random existing
   records (p50/p95/p99 after a warm-up call that builds the match store), against Splink's
   ``predict_between`` of one candidate on the same table (target: hub p95 <= 1/5 of it);
6. the process's peak memory.

``--skip-full-match`` skips steps 3 and 4, to measure search alone (there are then no golden
records to check the top search result against).

``--searches 0`` skips step 5. ``--quick`` is 50,000 records; ``--skip-ingest`` reuses the
records already loaded (their truth is regenerated and matched by source key, so give the
same ``--records`` and ``--seed``). A full match that runs longer than ``--hub-timeout``
seconds is stopped (its SQL cancelled, its transaction rolled back) and the table says where
it was; the other steps still run. The process runs production-like: ``DEBUG`` off, no match
queued after the load, and PostgreSQL's JIT off for its session (``--server-jit`` keeps the
server's setting: JIT-compiling the ``CASE`` of a large Django ``bulk_update`` can take
hours and ignores cancel requests).
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import csv
import gc
import hashlib
import json
import logging
import os
import random
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Production-like: no query log (DEBUG), no incremental match queued after the load.
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("AURUM_MATCH_AFTER_INGEST", "false")

import django  # noqa: E402

django.setup()

import duckdb  # noqa: E402
import phonenumbers  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import DatabaseError, connection, connections, transaction  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402
from faker.providers.address.de_DE import Provider as GermanAddresses  # noqa: E402
from faker.providers.address.en_US import Provider as UsAddresses  # noqa: E402
from faker.providers.person.de_DE import Provider as GermanNames  # noqa: E402
from faker.providers.person.en_US import Provider as UsNames  # noqa: E402
from splink import DuckDBAPI, Linker  # noqa: E402
from splink.blocking_analysis import count_comparisons_from_blocking_rules  # noqa: E402
from splink.internals.linker_components.inference import LinkerInference  # noqa: E402

import matching.services as match_services  # noqa: E402
import matching.store as match_store  # noqa: E402
import mdm.services.golden as golden_services  # noqa: E402
from bench.figures import server_settings  # noqa: E402
from matching.engine import splink_engine  # noqa: E402
from matching.engine.interface import EngineRecord  # noqa: E402
from matching.evaluation import pairwise_scores  # noqa: E402
from matching.models import MatchModel, MatchPair, MatchRun, PairConstraint  # noqa: E402
from matching.services import match_model_train, match_run_full, match_search  # noqa: E402
from matching.store import engine_records, stores_clear  # noqa: E402
from mdm import bulk  # noqa: E402
from mdm.domains import get_domain  # noqa: E402
from mdm.mapping import compile_mapping  # noqa: E402
from mdm.models import (  # noqa: E402
    CrossReference,
    GoldenRecord,
    IngestRun,
    QuarantinedPayload,
    RecordChange,
    SourceRecord,
)
from mdm.services.ingest import source_records_ingest_file  # noqa: E402
from mdm.services.sources import source_mapping_register, source_system_upsert  # noqa: E402
from stewardship.models import ReviewTask  # noqa: E402

DOMAIN = "customer"
SOURCE = "matchbench"
QUICK_RECORDS = 50_000
SEARCH_MIN_PROBABILITY = 0.5  # match_search's default
SEARCH_TOP = 10

HEADER = [
    "id",
    "first",
    "last",
    "dob",
    "sex",
    "email",
    "phone",
    "house",
    "street",
    "city",
    "zip",
    "country",
    "updated",
]
MAPPING = {
    "source": SOURCE,
    "domain": DOMAIN,
    "name": SOURCE,
    "key": {"field": "id"},
    "updated_at": {"field": "updated"},
    "attributes": {
        "given_name": "first",
        "family_name": "last",
        "date_of_birth": {"field": "dob", "format": "%d/%m/%Y"},
        "gender": {"field": "sex", "map": {"F": "female", "M": "male"}},
        "email": "email",
        "phone": "phone",
        "address_line1": {"template": "{house} {street}"},
        "city": "city",
        "postal_code": "zip",
        "country": "country",
    },
}

# --------------------------------------------------------------------------- data pools

COUNTRY_WEIGHTS = {"US": 40, "GB": 25, "DE": 20, "AU": 15}
CITIES_PER_COUNTRY = 400
CITY_ZIPF = 0.8  # the largest city holds about 6% of its country's customers
POSTCODES = {"US": 6000, "GB": 12000, "DE": 2500, "AU": 1500}  # per country, by city size
RARE_FAMILY_SHARE = 0.3  # family names outside the 1,000 common ones (uniform, ~12k names)
EMAIL_DOMAINS = {
    "US": "gmail.com yahoo.com outlook.com hotmail.com icloud.com aol.com comcast.net",
    "GB": "gmail.com hotmail.co.uk btinternet.com yahoo.co.uk outlook.com sky.com",
    "DE": "gmx.de web.de t-online.de gmail.com posteo.de outlook.de",
    "AU": "gmail.com bigpond.com outlook.com optusnet.com.au hotmail.com icloud.com",
}
# Diminutives a source may hold instead of the given name (not all of them are known to the
# engine's nickname list: real data has others too).
NICKNAMES = {
    "Robert": "Bob Rob Bobby",
    "William": "Bill Will Billy",
    "James": "Jim Jimmy Jamie",
    "John": "Jack Johnny",
    "Michael": "Mike Mick",
    "Elizabeth": "Liz Beth Betty",
    "Katherine": "Kate Kathy Katie",
    "Margaret": "Maggie Peggy Meg",
    "Richard": "Rick Dick Richie",
    "Thomas": "Tom Tommy",
    "Joseph": "Joe Joey",
    "Christopher": "Chris Kit",
    "Daniel": "Dan Danny",
    "Matthew": "Matt",
    "Anthony": "Tony",
    "Jennifer": "Jen Jenny",
    "Patricia": "Pat Trish Patsy",
    "Susan": "Sue Susie",
    "Deborah": "Debbie Deb",
    "Edward": "Ed Ted Eddie",
    "Andrew": "Andy Drew",
    "Nicholas": "Nick",
    "Samuel": "Sam",
    "Alexander": "Alex Sasha",
    "Benjamin": "Ben",
    "Jessica": "Jess",
    "Rebecca": "Becky",
    "Victoria": "Vicky Tori",
    "Johannes": "Hans Jo",
    "Friedrich": "Fritz",
    "Katharina": "Kathi Katja",
    "Wolfgang": "Wolf",
    "Alexandra": "Alex Sandra",
    "Stephanie": "Steffi",
}
SYLLABLES = (
    "Al Bar Ber Bran Car Dal Dun Ed Fen Gar Hal Har Kel Ken Lan Mar Mor Nor Pem Ral Ros Sel "
    "Stan Thor Wal Wes Whit Wil Ash Brook Cam Fair Green Hart Kings Lock Ox Ply Rad Shel Tem "
    "Ul Vin Wynd Yar Bech Eck Hol Kess Lind Rein Stein Zim",
    " a e i o er in en ing ley",
    "ton ford ley wood field man son well by more ham worth bridge stone berg mann er ke sen "
    "dorf hurst combe ridge gate love wick",
)
EN_STREETS = "Street Road Avenue Lane Drive Close Way Court Place Grove Terrace Crescent"
DE_STREETS = "straße weg allee ring gasse platz"
US_AREA_CODES = (
    "201 202 203 205 206 207 212 213 214 215 216 217 224 225 234 239 240 248 251 252 253 "
    "254 256 260 262 267 269 270 281 301 302 303 304 305 307 309 310 312 313 314 315 316 "
    "317 318 319 320 321 323 330 334 336 337 339 347 352 360 361 386 401 402 404 405 406 "
    "407 408 409 410 412 413 414 415 417 419 423 424 425 432 434 435 440 443 469 478 479 "
    "480 484 501 502 503 504 505 507 508 509 510 512 513 515 516 517 518 520 530 540 541 "
    "551 559 561 562 563 570 571 573 574 580 585 586 601 602 603 605 606 607 608 609 610 "
    "612 614 615 616 617 618 619 620 623 626 630 631 636 641 646 650 651 660 661 662 678 "
    "702 703 704 706 707 708 712 713 714 715 716 717 718 719 720 724 727 731 732 734 740 "
    "757 760 763 765 770 772 773 774 775 781 785 786 801 802 803 804 805 806 810 812 813 "
    "814 815 816 817 818 828 830 831 832 843 845 847 850 856 857 858 859 860 862 863 864 "
    "865 870 901 903 904 906 907 908 909 910 912 913 914 915 916 917 918 919 920 925 928 "
    "931 936 937 940 941 949 951 952 954 956 970 971 972 973 978 979 985 989"
)
# National significant number prefixes of mobile phones (checked against phonenumbers).
MOBILE_PREFIXES = {
    "GB": [f"7{d}{e}" for d in "45789" for e in "0123456789"],
    "DE": ["151", "152", "157", "159", "160", "162", "163", *[f"17{d}" for d in range(10)]],
    "AU": [f"4{d}{e}" for d in "0123456789" for e in "0123456789"],
}
MOBILE_LENGTH = {"GB": 10, "DE": 11, "AU": 9}  # national significant number digits
KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def cumulative(weights: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def ascii_fold(text: str) -> str:
    german = text.replace("ß", "ss").replace("ä", "ae").replace("ö", "oe").replace("ü", "ue")
    german = german.replace("Ä", "Ae").replace("Ö", "Oe").replace("Ü", "Ue")
    decomposed = unicodedata.normalize("NFKD", german)
    return "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c in "-"))


@dataclass(frozen=True)
class City:
    name: str
    postcodes: tuple[str, ...]


@dataclass
class Person:
    given: str
    family: str
    sex: str
    dob: date | None
    email: str | None
    phone: str | None  # the national significant number
    house: int | None
    street: str | None
    city: str | None
    postcode: str | None
    country: str


@dataclass(frozen=True)
class Names:
    values: list[str]
    cum: list[float]
    sexes: list[str]


class Pools:
    """Everything the generator draws from, built once from a seed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.countries = list(COUNTRY_WEIGHTS)
        self.country_cum = cumulative(list(COUNTRY_WEIGHTS.values()))
        self.given = {"en": self._english_given(), "de": self._german_given(rng)}
        self.common_family = {
            "en": (list(UsNames.last_names), cumulative(list(UsNames.last_names.values()))),
            "de": self._zipf_pool(list(dict.fromkeys(GermanNames.last_names)), 0.9, rng),
        }
        starts, middles, ends = (part.split(" ") for part in SYLLABLES)
        self.rare_family = sorted(
            {f"{a}{m}{e}" for a in starts for m in middles for e in ends if a and e}
        )
        self.streets = {
            "en": [
                f"{base} {suffix}"
                for base in rng.sample(list(UsNames.last_names), 250)
                for suffix in EN_STREETS.split()
            ],
            "de": [
                f"{base}{suffix}"
                for base in rng.sample(list(dict.fromkeys(GermanNames.last_names)), 400)
                for suffix in DE_STREETS.split()
            ],
        }
        self.cities = {country: self._cities(country, rng) for country in self.countries}
        self.area_codes = self._valid_us_area_codes(rng)
        self.mobile = {c: self._valid_prefixes(c, rng) for c in MOBILE_PREFIXES}
        self.domains = {c: d.split() for c, d in EMAIL_DOMAINS.items()}
        self.nicknames = {name: nicks.split() for name, nicks in NICKNAMES.items()}

    @staticmethod
    def _zipf_pool(
        values: list[str], s: float, rng: random.Random
    ) -> tuple[list[str], list[float]]:
        values = list(values)
        rng.shuffle(values)
        return values, cumulative(zipf_weights(len(values), s))

    @staticmethod
    def _english_given() -> Names:
        values, weights, sexes = [], [], []
        for sex, pool in (("M", UsNames.first_names_male), ("F", UsNames.first_names_female)):
            total = sum(pool.values())
            for name, weight in pool.items():
                values.append(name)
                weights.append(weight / total)
                sexes.append(sex)
        return Names(values, cumulative(weights), sexes)

    @staticmethod
    def _german_given(rng: random.Random) -> Names:
        values, weights, sexes = [], [], []
        for sex, pool in (
            ("M", GermanNames.first_names_male),
            ("F", GermanNames.first_names_female),
        ):
            names = list(dict.fromkeys(pool))
            rng.shuffle(names)
            zipf = zipf_weights(len(names), 1.0)
            total = sum(zipf)
            values += names
            weights += [w / total for w in zipf]
            sexes += [sex] * len(names)
        return Names(values, cumulative(weights), sexes)

    def _cities(self, country: str, rng: random.Random) -> tuple[list[City], list[float]]:
        names: set[str] = set()
        if country == "DE":
            names.update(GermanAddresses.cities)
        prefixes, suffixes = UsAddresses.city_prefixes, UsAddresses.city_suffixes
        bases = [n for n in UsNames.last_names if len(n) <= 8]
        while len(names) < CITIES_PER_COUNTRY:
            base = rng.choice(bases) + rng.choice(suffixes)
            names.add(f"{rng.choice(prefixes)} {base}" if rng.random() < 0.3 else base)
        ordered = sorted(names)[:CITIES_PER_COUNTRY]
        rng.shuffle(ordered)
        weights = zipf_weights(len(ordered), CITY_ZIPF)
        total = sum(weights)
        codes = iter(self._postcodes(country, POSTCODES[country] + len(ordered), rng))
        cities = []
        for name, weight in zip(ordered, weights, strict=True):
            count = max(1, round(POSTCODES[country] * weight / total))
            cities.append(City(name, tuple(next(codes) for _ in range(count))))
        return cities, cumulative(weights)

    @staticmethod
    def _postcodes(country: str, count: int, rng: random.Random) -> list[str]:
        codes: set[str] = set()
        letters = "ABCDEFGHJKLMNPRSTUWXYZ"
        while len(codes) < count:
            if country in ("US", "DE"):
                codes.add(f"{rng.randint(1001, 99950):05d}")
            elif country == "AU":
                codes.add(f"{rng.randint(800, 9999):04d}")
            else:
                area = rng.choice(letters) + (rng.choice(letters) if rng.random() < 0.6 else "")
                codes.add(
                    f"{area}{rng.randint(1, 29)} {rng.randint(0, 9)}"
                    f"{rng.choice(letters)}{rng.choice(letters)}"
                )
        return sorted(codes)

    @staticmethod
    def _valid_us_area_codes(rng: random.Random) -> list[str]:
        good = []
        for area in US_AREA_CODES.split():
            samples = (
                f"{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}" for _ in range(20)
            )
            if all(_valid_phone(f"+1{nsn}") for nsn in samples if nsn[4:6] != "11"):
                good.append(area)
        return good

    @staticmethod
    def _valid_prefixes(country: str, rng: random.Random) -> list[str]:
        code = phonenumbers.country_code_for_region(country)
        length = MOBILE_LENGTH[country]
        good = []
        for prefix in MOBILE_PREFIXES[country]:
            rest = length - len(prefix)
            samples = (f"{prefix}{rng.randrange(10**rest):0{rest}d}" for _ in range(20))
            if all(_valid_phone(f"+{code}{nsn}") for nsn in samples):
                good.append(prefix)
        if not good:
            raise RuntimeError(f"no valid mobile prefix for {country}: phonenumbers changed?")
        return good

    # -- drawing -------------------------------------------------------------------------

    def country(self) -> str:
        return self.rng.choices(self.countries, cum_weights=self.country_cum)[0]

    def given_name(self, country: str) -> tuple[str, str]:
        names = self.given["de" if country == "DE" else "en"]
        i = self.rng.choices(range(len(names.values)), cum_weights=names.cum)[0]
        return names.values[i], names.sexes[i]

    def family_name(self, country: str) -> str:
        if self.rng.random() < RARE_FAMILY_SHARE:
            return self.rng.choice(self.rare_family)
        values, cum = self.common_family["de" if country == "DE" else "en"]
        return self.rng.choices(values, cum_weights=cum)[0]

    def phone(self, country: str) -> str:
        rng = self.rng
        if country == "US":
            exchange = rng.randint(200, 999)
            while exchange % 100 == 11:
                exchange = rng.randint(200, 999)
            return f"{rng.choice(self.area_codes)}{exchange}{rng.randint(0, 9999):04d}"
        prefix = rng.choice(self.mobile[country])
        rest = MOBILE_LENGTH[country] - len(prefix)
        return f"{prefix}{rng.randrange(10**rest):0{rest}d}"

    def email(self, given: str, family: str, country: str) -> str:
        rng = self.rng
        g, f = ascii_fold(given).lower(), ascii_fold(family).lower()
        style = rng.random()
        if style < 0.25:
            local = f"{g}.{f}"
        elif style < 0.4:
            local = f"{g}{f}{rng.randint(1, 99)}"
        elif style < 0.5:
            local = f"{g[0]}{f}{rng.randint(1, 999)}"
        elif style < 0.6:
            local = f"{f}.{g}{rng.randint(1940, 2005)}"
        else:  # a handle unrelated to the name
            word = rng.choice(self.rare_family).lower()
            local = f"{word}{rng.choice(['', '_', '.'])}{rng.randint(1, 9999)}"
        return f"{local}@{rng.choice(self.domains[country])}"

    def address(self, country: str) -> tuple[int, str, str, str]:
        rng = self.rng
        cities, cum = self.cities[country]
        city = rng.choices(cities, cum_weights=cum)[0]
        street = rng.choice(self.streets["de" if country == "DE" else "en"])
        return rng.randint(1, 250), street, city.name, rng.choice(city.postcodes)

    def person(self) -> Person:
        rng = self.rng
        country = self.country()
        given, sex = self.given_name(country)
        family = self.family_name(country)
        house, street, city, postcode = self.address(country)
        return Person(
            given=given,
            family=family,
            sex=sex,
            dob=date(1940, 1, 1) + timedelta(days=rng.randrange(24_100))
            if rng.random() > 0.02
            else None,
            email=self.email(given, family, country) if rng.random() > 0.05 else None,
            phone=self.phone(country) if rng.random() > 0.07 else None,
            house=house,
            street=street,
            city=city,
            postcode=postcode,
            country=country,
        )


def _valid_phone(e164: str) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(e164, None)))
    except phonenumbers.NumberParseException:
        return False


def typo(rng: random.Random, word: str) -> str:
    """One keying error: swapped, dropped, doubled or neighbouring character."""
    if len(word) < 3:
        return word
    for _ in range(10):
        i = rng.randint(1, len(word) - 2)
        kind = rng.randrange(4)
        if kind == 0:
            out = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif kind == 1:
            out = word[:i] + word[i + 1 :]
        elif kind == 2:
            out = word[:i] + word[i] + word[i:]
        else:
            c = word[i].lower()
            row = next((r for r in KEYBOARD if c in r), None)
            if row is None:
                continue
            j = row.index(c)
            near = row[j - 1] if j > 0 and (j == len(row) - 1 or rng.random() < 0.5) else row[j + 1]
            out = word[:i] + near + word[i + 1 :]
        if out != word:
            return out
    return word


def duplicate(pools: Pools, person: Person) -> Person:
    """Another source's version of the same person: typos, nicknames, gaps, changes."""
    rng = pools.rng
    dup = replace(person)
    if dup.given in pools.nicknames and rng.random() < 0.3:
        dup.given = rng.choice(pools.nicknames[dup.given])
    elif rng.random() < 0.12:
        dup.given = typo(rng, dup.given)
    if rng.random() < 0.12:
        dup.family = typo(rng, dup.family)
    elif dup.sex == "F" and rng.random() < 0.03:  # married since
        dup.family = pools.family_name(dup.country)
    if dup.dob is not None:
        roll = rng.random()
        if roll < 0.08:
            dup.dob = None
        elif roll < 0.12:
            dup.dob = dup.dob + timedelta(days=rng.choice([-10, -1, 1, 10, 365]))
        elif roll < 0.14 and dup.dob.day <= 12 and dup.dob.day != dup.dob.month:
            dup.dob = dup.dob.replace(day=dup.dob.month, month=dup.dob.day)
    roll = rng.random()
    if roll < 0.15:
        dup.email = None
    elif roll < 0.25:
        dup.email = pools.email(dup.given, dup.family, dup.country)
    roll = rng.random()
    if roll < 0.15:
        dup.phone = None
    elif roll < 0.25:
        dup.phone = pools.phone(dup.country)
    roll = rng.random()
    if roll < 0.08:
        dup.house = dup.street = dup.city = dup.postcode = None
    elif roll < 0.16:  # moved
        dup.house, dup.street, dup.city, dup.postcode = pools.address(dup.country)
    elif roll < 0.21 and dup.street:
        dup.street = typo(rng, dup.street)
    elif roll < 0.24:
        dup.postcode = None
    return dup


def render_phone(rng: random.Random, country: str, nsn: str) -> str:
    """The number as a source would write it: national or international layout."""
    international = rng.random() < 0.3
    if country == "US":
        if international:
            return f"+1 {nsn[:3]} {nsn[3:6]} {nsn[6:]}"
        return f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}"
    code = phonenumbers.country_code_for_region(country)
    if country == "GB":
        head, tail = nsn[:4], nsn[4:]
    elif country == "DE":
        head, tail = nsn[:3], nsn[3:]
    else:
        head, tail = nsn[:3], f"{nsn[3:6]} {nsn[6:]}"
    return f"+{code} {head} {tail}" if international else f"0{head} {tail}"


def generate(path: Path, records: int, seed: int) -> tuple[dict[str, int], int]:
    """Write the CSV; returns source key -> entity (the truth) and the number of people."""
    rng = random.Random(seed)
    pools = Pools(rng)
    rows: list[tuple[int, Person]] = []
    entity = 0
    while len(rows) < records:
        person = pools.person()
        rows.append((entity, person))
        if rng.random() < 0.25:
            copies = rng.choices((1, 2, 3), weights=(60, 30, 10))[0]
            rows += [(entity, duplicate(pools, person)) for _ in range(copies)]
        entity += 1
    del rows[records:]
    rng.shuffle(rows)
    truth: dict[str, int] = {}
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i, (eid, p) in enumerate(rows):
            key = f"M{i:08d}"
            truth[key] = eid
            w.writerow(
                [
                    key,
                    p.given.upper() if rng.random() < 0.05 else p.given,
                    p.family,
                    p.dob.strftime("%d/%m/%Y") if p.dob else "",
                    p.sex if rng.random() > 0.05 else "",
                    p.email or "",
                    render_phone(rng, p.country, p.phone) if p.phone else "",
                    p.house or "",
                    p.street or "",
                    p.city or "",
                    p.postcode or "",
                    p.country,
                    "2024-05-01T10:00:00Z",
                ]
            )
    return truth, len({eid for eid, _ in rows})


# --------------------------------------------------------------------------- database


def _table(model: Any) -> str:
    return str(model._meta.db_table)


def _sql(head: str, table: str, tail: str) -> str:
    """One statement on a model's table (every name comes from the models: no user input)."""
    return f"{head} {table} {tail}"


def reset(*, records_too: bool = True) -> None:
    """Remove every match result of the domain and matchbench's records, set-based.

    Without ``records_too`` the source records stay (``--skip-ingest``).
    """
    system, _ = source_system_upsert(code=SOURCE, name="Matching benchmark")
    records = _table(SourceRecord)
    of_domain = _sql("select id from", records, "where domain = %s")
    of_source = _sql("select id from", records, "where source_system_id = %s")
    by_domain, by_source = [DOMAIN], [system.pk]
    in_domain = f"where record_id in ({of_domain})"
    statements: list[tuple[str, list[Any]]] = [
        (_sql("delete from", _table(ReviewTask), "where domain = %s"), by_domain),
        (_sql("delete from", _table(MatchPair), "where domain = %s"), by_domain),
        (_sql("delete from", _table(PairConstraint.history.model), "where domain = %s"), by_domain),
        (_sql("delete from", _table(PairConstraint), "where domain = %s"), by_domain),
        (_sql("delete from", _table(CrossReference.history.model), in_domain), by_domain),
        (_sql("delete from", _table(CrossReference), in_domain), by_domain),
        (_sql("delete from", _table(GoldenRecord.history.model), "where domain = %s"), by_domain),
        (_sql("delete from", _table(GoldenRecord), "where domain = %s"), by_domain),
    ]
    if records_too:
        statements += [
            (
                _sql("delete from", _table(RecordChange), f"where record_id in ({of_source})"),
                by_source,
            ),
            (
                _sql(
                    "delete from", _table(SourceRecord.history.model), "where source_system_id = %s"
                ),
                by_source,
            ),
            (
                _sql(
                    "update",
                    _table(QuarantinedPayload),
                    f"set record_id = null where record_id in ({of_source})",
                ),
                by_source,
            ),
            (_sql("delete from", records, "where source_system_id = %s"), by_source),
        ]
    with transaction.atomic(), connection.cursor() as cur:
        for sql, params in statements:
            cur.execute(sql, params)
    if records_too:
        QuarantinedPayload.objects.filter(source_system=system).delete()
        IngestRun.objects.filter(source_system=system).delete()
    stores_clear()


def vacuum_analyze() -> float:
    """VACUUM ANALYZE the tables matching reads and writes (autovacuum may be off)."""
    if connection.vendor != "postgresql":
        return 0.0
    started = time.perf_counter()
    models = [
        SourceRecord,
        SourceRecord.history.model,
        RecordChange,
        CrossReference,
        CrossReference.history.model,
        GoldenRecord,
        GoldenRecord.history.model,
        MatchPair,
        ReviewTask,
    ]
    with connection.cursor() as cur:
        for model in models:
            cur.execute(f"vacuum analyze {_table(model)}")
    return time.perf_counter() - started


# --------------------------------------------------------------------------- measuring


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Probe:
    """Wall time and calls of chosen functions (wrapped in place) and of SQL statements.

    Also knows what is running right now (the wrapped functions entered and not left, the
    SQL statement being executed), for the watchdog's report of a run that does not end.
    """

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        self.sql: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        self.inside: list[tuple[str, float]] = []
        self.sql_now: tuple[str, float, int] | None = None
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        calls = self.calls[label]
        inside = self.inside

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            inside.append((label, started))
            try:
                return original(*args, **kwargs)
            finally:
                inside.pop()
                calls[0] += time.perf_counter() - started
                calls[1] += 1

        self._undo.append((owner, name, original))
        setattr(owner, name, timed)

    @staticmethod
    def sql_key(sql: str) -> str:
        words = sql[:4000].split()
        verb = words[0].upper() if words else "?"
        upper = [w.upper() for w in words]
        marker = {"UPDATE": "UPDATE", "INSERT": "INTO", "DELETE": "FROM"}.get(verb, "FROM")
        table = words[upper.index(marker) + 1] if marker in upper[:-1] else "?"
        if verb == "UPDATE":
            table = words[1] if len(words) > 1 else "?"
        return f"{verb} {table.strip(chr(34) + '();,')}"

    def _sql_wrapper(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        key = self.sql_key(sql)
        self.sql_now = (key, started, len(sql))
        try:
            return execute(sql, params, many, context)
        finally:
            self.sql_now = None
            entry = self.sql[key]
            entry[0] += time.perf_counter() - started
            entry[1] += 1

    @contextlib.contextmanager
    def active(self) -> Iterator[Probe]:
        try:
            with connection.execute_wrapper(self._sql_wrapper):
                yield self
        finally:
            for owner, name, original in reversed(self._undo):
                setattr(owner, name, original)
            self._undo.clear()

    def seconds(self, label: str) -> float:
        return self.calls[label][0] if label in self.calls else 0.0

    def now(self) -> list[str]:
        """What is running: the wrapped functions entered, the SQL being executed."""
        t = time.perf_counter()
        lines = [f"in {label.strip()} for {t - since:,.0f} s" for label, since in self.inside]
        if self.sql_now is not None:
            key, since, size = self.sql_now
            lines.append(
                f"executing SQL {key} ({size / 1e6:,.1f} MB of SQL) for {t - since:,.0f} s"
            )
        return lines


class Watchdog:
    """Stops the main thread's work after ``seconds``: cancels its SQL, interrupts Python."""

    def __init__(self, seconds: float, probe: Probe) -> None:
        self.seconds = seconds
        self.probe = probe
        self.fired: list[str] = []
        self._pid = self._backend_pid()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    @staticmethod
    def _backend_pid() -> int | None:
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cur:
            cur.execute("select pg_backend_pid()")
            return int(cur.fetchall()[0][0])

    def _fire(self) -> None:
        self.fired = self.probe.now() or ["(nothing wrapped was running)"]
        print(f"\n  WATCHDOG after {self.seconds:,.0f} s: " + "; ".join(self.fired), flush=True)
        if self._pid is not None:
            try:
                with connections["default"].cursor() as cur:  # this thread's own connection
                    cur.execute("select pg_cancel_backend(%s)", [self._pid])
            finally:
                connections.close_all()
        _thread.interrupt_main()

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


class TimedConnection:
    """A DuckDB connection whose ``execute`` is timed by statement (for the match store)."""

    _SUFFIX = re.compile(r"_[0-9a-f]{6,}$")

    def __init__(self, inner: Any, probe: Probe) -> None:
        self._inner = inner
        self._probe = probe

    def execute(self, sql: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._inner.execute(sql, *args)
        finally:
            words = sql.split(None, 6)
            if words[:2] == ["CREATE", "TABLE"] and len(words) > 2:
                key = f"duckdb CREATE TABLE {self._SUFFIX.sub('', words[2])}"
            else:
                key = f"duckdb {' '.join(words[:2])}"
            entry = self._probe.calls[key]
            entry[0] += time.perf_counter() - started
            entry[1] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Report:
    """The printed table: one row per figure, with what it was measured on."""

    def __init__(self, json_path: Path | None = None) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.json_path = json_path

    def section(self, title: str) -> None:
        self.rows.append((f"-- {title}", "", ""))
        print(f"\n== {title}", flush=True)

    def add(self, label: str, value: str, on: str = "") -> None:
        self.rows.append((label, value, on))
        print(f"  {label:<44} {value:>14}  {on}", flush=True)

    def print(self) -> None:
        width = max(len(r[0]) for r in self.rows)
        vwidth = max(len(r[1]) for r in self.rows)
        print("\n" + "=" * 100)
        for label, value, on in self.rows:
            if label.startswith("-- "):
                print(f"{label[3:]}")
                continue
            print(f"  {label:<{width}}  {value:>{vwidth}}  {on}")
        print("=" * 100)
        if self.json_path is not None:  # for bench/suite.py: the same rows, machine-readable
            rows = [{"label": label, "value": value, "on": on} for label, value, on in self.rows]
            self.json_path.write_text(json.dumps(rows, indent=2))


def _jit_off(sender: Any, connection: Any, **kwargs: Any) -> None:
    with connection.cursor() as cur:
        cur.execute("set jit = off")


def fmt_s(seconds: float) -> str:
    return f"{seconds:,.2f} s"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


# --------------------------------------------------------------------------- stages


def load_truth_ids(truth_by_key: dict[str, int]) -> dict[int, int]:
    """Source record id -> true entity, for the matchbench records in the database."""
    rows = SourceRecord.objects.filter(
        source_system__code=SOURCE, domain=DOMAIN, is_deleted=False
    ).values_list("id", "source_key")
    return {pk: truth_by_key[key] for pk, key in rows.iterator(20_000) if key in truth_by_key}


def hub_clusters(ids: set[int]) -> dict[int, int]:
    rows = CrossReference.objects.filter(record__domain=DOMAIN).values_list(
        "record_id", "golden_id"
    )
    return {rid: gid for rid, gid in rows.iterator(20_000) if rid in ids}


def blocked_pairs(sdf: Any, parameters: dict[str, Any]) -> int:
    """The comparisons the model's blocking rules make (exact, pairs found twice once)."""
    records = count_comparisons_from_blocking_rules(
        sdf,
        blocking_rules=parameters["blocking_rules_to_generate_predictions"],
        link_type="dedupe_only",
        record_sample_proportion=1.0,
    )
    return int(records[-1]["cumulative_comparison_count"]) if records else 0


def model_settings(model: MatchModel) -> dict[str, Any]:
    parameters = dict(model.parameters)
    parameters["link_type"] = "dedupe_only"
    return parameters


def tf_columns(parameters: dict[str, Any]) -> list[str]:
    return sorted(
        {
            level["tf_adjustment_column"]
            for comparison in parameters["comparisons"]
            for level in comparison["comparison_levels"]
            if level.get("tf_adjustment_column")
        }
    )


def perturb(rng: random.Random, attributes: dict[str, Any]) -> dict[str, Any]:
    """A slightly misspelt copy: one typo in the given or the family name."""
    out = dict(attributes)
    names = [a for a in ("given_name", "family_name") if out.get(a)]
    if names:
        name = rng.choice(names)
        out[name] = typo(rng, str(out[name]))
    return out


def time_calls(items: Sequence[Any], call: Callable[[Any], Any]) -> tuple[list[float], list[Any]]:
    seconds, results = [], []
    for item in items:
        started = time.perf_counter()
        results.append(call(item))
        seconds.append(time.perf_counter() - started)
    return seconds, results


def breakdown_of_search(report: Report, candidates: Sequence[tuple[int, dict[str, Any]]]) -> None:
    """The same searches again, with their parts timed: mean ms per call."""
    entry = match_store._stores.get(DOMAIN)
    if entry is None:
        return
    probe = Probe()
    store = entry.store
    inner = store._connection
    store._connection = TimedConnection(inner, probe)
    probe.wrap(type(get_domain(DOMAIN)), "normalise", "Domain.normalise")
    probe.wrap(match_services, "match_model_active", "match_model_active (SQL)")
    probe.wrap(match_services, "_trained", "_trained (model from JSON)")
    probe.wrap(match_services, "store_for", "store_for (history check SQL)")
    probe.wrap(splink_engine, "prepare_table", "prepare_table (candidate)")
    probe.wrap(splink_engine.MatchStore, "_lookup", "store: key index lookup")
    probe.wrap(splink_engine.MatchStore, "_rows", "store: rows of the records found")
    probe.wrap(splink_engine.MatchStore, "_blocked_pairs", "store: blocked pairs")
    probe.wrap(splink_engine.MatchStore, "_register_term_frequencies", "store: TF tables")
    probe.wrap(splink_engine, "_pairs", "store: _pairs")
    t = time.perf_counter()
    try:
        with probe.active():
            for _, attributes in candidates:
                match_search(domain=DOMAIN, attributes=attributes)
    finally:
        store._connection = inner
    calls = len(candidates)
    total = time.perf_counter() - t
    report.add("  breakdown (mean per call, second pass)", fmt_ms(total / calls))
    for label, (seconds, _) in sorted(probe.calls.items(), key=lambda kv: -kv[1][0]):
        report.add(f"    {label[:46]}", fmt_ms(seconds / calls))
    sql = sum(seconds for seconds, _ in probe.sql.values())
    statements = sum(int(count) for _, count in probe.sql.values())
    report.add(
        "    PostgreSQL statements", fmt_ms(sql / calls), f"{statements / calls:.1f} per call"
    )


def code_fingerprint() -> str:
    """A short hash of the code this benchmark measures (the figures change with it)."""
    paths = sorted(
        [
            *(ROOT / "matching").rglob("*.py"),
            ROOT / "mdm" / "services" / "golden.py",
            ROOT / "mdm" / "survivorship.py",
            ROOT / "mdm" / "domains" / "customer.py",
        ]
    )
    digest = hashlib.sha256()
    for path in paths:
        if path.is_file() and "migrations" not in path.parts:
            digest.update(path.read_bytes())
    newest = max(path.stat().st_mtime for path in paths if path.is_file())
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(newest))
    return (
        f"sha256 {digest.hexdigest()[:12]} of matching/ and mdm's golden, survivorship and "
        f"customer modules (newest change {stamp} UTC)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RECORDS:,} records")
    parser.add_argument("--skip-ingest", action="store_true", help="reuse the loaded records")
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--hub-timeout",
        type=float,
        default=1200,
        help="stop the hub's full match after this many seconds and go on (default 1200)",
    )
    parser.add_argument(
        "--server-jit",
        action="store_true",
        help="keep the server's JIT setting (PostgreSQL JIT can compile bulk_update's CASE "
        "for hours, without answering a cancel); by default this session turns it off",
    )
    parser.add_argument(
        "--skip-full-match",
        action="store_true",
        help="skip steps 3 and 4 (hub full match, bare Splink predict): measure search alone",
    )
    parser.add_argument("--json", type=Path, help="also write the table's rows to this file")
    args = parser.parse_args()
    logging.getLogger("splink").setLevel(logging.WARNING)
    if connection.vendor == "postgresql" and not args.server_jit:
        connection_created.connect(_jit_off)
        connection.close()
    n = QUICK_RECORDS if args.quick else args.records
    report = Report(args.json)
    db = f"{connection.vendor} {connection.settings_dict.get('NAME')}"
    jit = "server default" if args.server_jit else "off for this session"
    print(f"code measured: {code_fingerprint()}")
    print(
        f"matching speed benchmark: {n:,} customer records, database {db}, "
        f"{os.cpu_count()} CPUs, DEBUG {settings.DEBUG}, PostgreSQL JIT {jit}"
    )
    if server := server_settings():
        print(f"PostgreSQL settings: {server}")
    spec = get_domain(DOMAIN).match
    assert spec is not None

    # 1. data ---------------------------------------------------------------------------
    report.section(f"data: {n:,} generated customer records (seed {args.seed})")
    tmp = Path(tempfile.mkdtemp(prefix="aurum-matchbench-"))
    path = tmp / "customers.csv"
    t = time.perf_counter()
    truth_by_key, people = generate(path, n, args.seed)
    report.add("generate CSV", fmt_s(time.perf_counter() - t), f"{people:,} people")
    if not args.skip_ingest:
        t = time.perf_counter()
        reset()
        report.add("reset (set-based deletes)", fmt_s(time.perf_counter() - t))
        mapping_obj, _, _ = source_mapping_register(spec=MAPPING)
        compiled = compile_mapping(mapping_obj.spec)
        t = time.perf_counter()
        result = source_records_ingest_file(
            path=path,
            source_system=mapping_obj.source_system,
            mapping=compiled,
            mapping_obj=mapping_obj,
        )
        seconds = time.perf_counter() - t
        c = result.counts
        report.add(
            "ingest (source_records_ingest_file)",
            fmt_s(seconds),
            f"{c.read:,} rows, {c.read / seconds:,.0f} rows/s, created {c.created:,}, "
            f"quarantined {c.quarantined:,}",
        )
    else:
        t = time.perf_counter()
        reset(records_too=False)
        report.add("reset of earlier match results", fmt_s(time.perf_counter() - t))
        report.add("ingest", "skipped", "--skip-ingest: the records already loaded")
    path.unlink()
    tmp.rmdir()
    report.add("VACUUM ANALYZE (autovacuum may be off)", fmt_s(vacuum_analyze()))
    truth = load_truth_ids(truth_by_key)
    del truth_by_key
    customers = SourceRecord.objects.filter(domain=DOMAIN, is_deleted=False).count()
    true_pairs = sum(k * (k - 1) // 2 for k in Counter(truth.values()).values())
    report.add(
        "customer records in the database",
        f"{customers:,}",
        f"{len(truth):,} matchbench, {len(set(truth.values())):,} people, "
        f"{true_pairs:,} true duplicate pairs",
    )
    if customers != len(truth):
        print("  WARNING: other sources hold customer records; they are matched too")

    # 2. training -----------------------------------------------------------------------
    report.section("train (match_model_train, activate=True)")
    t = time.perf_counter()
    model = match_model_train(domain=DOMAIN, activate=True)
    report.add("train", fmt_s(time.perf_counter() - t), f"{model.records_trained:,} records")
    for warning in model.report.get("warnings", []):
        print(f"  model warning: {warning}")
    lower, upper = model.lower_threshold, model.upper_threshold
    gc.collect()
    if args.skip_full_match:
        report.section("full match and bare Splink predict: skipped (--skip-full-match)")
        con, db_api, existing, linker = bare_linker(spec, model)
        hub_times = search_before_create(
            report, args, set(truth), spec, linker, existing, db_api, con
        )
        con.close()
        report_memory(report, n, hub_times)
        return

    # 3. full match through the hub ------------------------------------------------------
    report.section(f"full match through the hub (match_run_full), thresholds {lower} / {upper}")
    probe = Probe()
    probe.wrap(splink_engine, "prepare_table", "score: prepare_table")
    probe.wrap(splink_engine, "_blocked_pairs", "score: blocking")
    probe.wrap(splink_engine, "_register_promising_pairs", "score: blocking + pruning")
    probe.wrap(LinkerInference, "predict", "score: Splink predict")
    probe.wrap(splink_engine, "_display_table", "score: _display_table (values as JSON)")
    probe.wrap(splink_engine, "_scored_table", "score: pairs by column (DuckDB, to Arrow)")
    probe.wrap(splink_engine, "_pairs_by_column", "score: pairs by column (Arrow to Python)")
    probe.wrap(match_services, "_store_pairs", "apply: _store_pairs (MatchPair rows)")
    probe.wrap(match_services, "_insert_pair_columns", "  pairs: _insert_pair_columns (COPY)")
    probe.wrap(
        match_services, "golden_records_apply_clusters", "apply: golden_records_apply_clusters"
    )
    probe.wrap(golden_services, "_read_members", "  golden: _read_members (a chunk's members)")
    probe.wrap(golden_services, "survive_fast", "  golden: survive_fast()")
    probe.wrap(bulk, "rows_create_with_history", "  golden: rows_create_with_history")
    probe.wrap(bulk, "rows_update_with_history", "  golden: rows_update_with_history")
    probe.wrap(bulk, "table_analyze", "  golden: table_analyze")
    probe.wrap(match_services, "_review_tasks", "apply: _review_tasks")
    rss_before, peak_before = rss_mb(), peak_mb()
    t = time.perf_counter()
    finished = False
    watchdog = Watchdog(args.hub_timeout, probe)
    try:
        with probe.active(), watchdog:
            match_run_full(domain=DOMAIN)
        finished = True
    except (KeyboardInterrupt, DatabaseError) as exc:
        if not watchdog.fired:
            raise
        print(f"  the hub's full match was stopped: {type(exc).__name__}")
        connection.close()
    hub_seconds = time.perf_counter() - t
    run = MatchRun.objects.filter(domain=DOMAIN, kind=MatchRun.Kind.FULL).latest("id")
    if not finished:
        MatchRun.objects.filter(pk=run.pk).update(
            status=MatchRun.Status.FAILED,
            error=f"stopped by the benchmark after {args.hub_timeout} s",
        )
    run_on = (
        f"{run.counts.get('records', len(truth)):,} records, {run.counts.get('pairs', 0):,} pairs"
    )
    if finished:
        report.add("hub full match, total", fmt_s(hub_seconds), run_on)
    else:
        report.add(
            "hub full match, total",
            f"> {fmt_s(hub_seconds)}",
            f"DID NOT FINISH: stopped after --hub-timeout {args.hub_timeout:,.0f} s; "
            + "; ".join(watchdog.fired),
        )
    for phase in ("load", "score", "cluster", "apply", "commit"):
        value = run.timings.get(phase)
        report.add(f"  run.timings[{phase}]", fmt_s(value) if value is not None else "n/a")
    score_known = sum(
        probe.seconds(label)
        for label in (
            "score: prepare_table",
            "score: blocking + pruning",
            "score: Splink predict",
            "score: _display_table (values as JSON)",
            "score: pairs by column (DuckDB, to Arrow)",
            "score: pairs by column (Arrow to Python)",
        )
    )
    for label, (seconds, calls) in probe.calls.items():
        report.add(f"    {label}", fmt_s(seconds), f"{int(calls):,} calls")
    if "score" in run.timings:
        report.add(
            "    score: rest (records read and loaded into DuckDB, Linker, settings)",
            fmt_s(run.timings["score"] - score_known),
        )
    if run.counts:
        report.add("  counts", "", ", ".join(f"{k} {v:,}" for k, v in run.counts.items()))
    sql_total = sum(s for s, _ in probe.sql.values())
    statements = sum(int(c) for _, c in probe.sql.values())
    report.add("  SQL time (all statements)", fmt_s(sql_total), f"{statements:,} statements")
    for key, (seconds, calls) in sorted(probe.sql.items(), key=lambda kv: -kv[1][0])[:8]:
        report.add(f"    SQL {key[:40]}", fmt_s(seconds), f"{int(calls):,} statements")
    report.add(
        "  RSS growth during the run",
        f"{rss_mb() - rss_before:,.0f} MB",
        f"peak RSS {peak_before:,.0f} MB before the run, {peak_mb():,.0f} MB after",
    )
    ids = set(truth)
    if finished:
        scores = pairwise_scores(hub_clusters(ids), truth)
        report.add("  hub pairwise F1", f"{scores.f1:.4f}", scores.format())
    gc.collect()

    # 4. bare Splink ---------------------------------------------------------------------
    report.section("bare Splink on the same prepared records and trained model")
    t = time.perf_counter()
    records = engine_records(DOMAIN)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    table = splink_engine.prepare_table(spec, records, with_dataset=False)
    prep_s = time.perf_counter() - t
    del records
    report.add(
        "(not timed below) load + prepare_table",
        fmt_s(load_s + prep_s),
        f"{table.num_rows:,} records",
    )
    con = duckdb.connect(":memory:")
    con.register("arrow_existing", table)
    con.execute("create table existing as select * from arrow_existing")
    con.unregister("arrow_existing")
    del table
    gc.collect()
    splink_settings = model_settings(model)
    db_api = DuckDBAPI(con)
    existing = db_api.register("existing", table_name="existing_records")
    linker = Linker(existing, splink_settings, log_level=None)
    t = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=lower, warning_mode="never")
    predict_s = time.perf_counter() - t
    t = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=upper
    )
    cluster_s = time.perf_counter() - t
    bare_s = predict_s + cluster_s
    bare_pairs = con.execute(f"select count(*) from {predictions.physical_name}").fetchall()[0][0]  # noqa: S608
    report.add("bare Splink predict", fmt_s(predict_s), f"threshold {lower}: {bare_pairs:,} pairs")
    report.add("bare Splink cluster_pairwise_predictions", fmt_s(cluster_s), f"threshold {upper}")
    report.add("bare Splink predict + cluster", fmt_s(bare_s))
    bare_clusters = dict(
        con.execute(f"select unique_id, cluster_id from {clusters.physical_name}").fetchall()  # noqa: S608
    )
    bare_scores = pairwise_scores({k: v for k, v in bare_clusters.items() if k in ids}, truth)
    report.add("  bare Splink pairwise F1", f"{bare_scores.f1:.4f}", bare_scores.format())
    del bare_clusters
    ratio = hub_seconds / bare_s
    report.add(
        "RATIO hub full match / bare predict+cluster",
        f"{ratio:.2f}" if finished else f"> {ratio:.1f}",
        f"target <= 1.5 ({'met' if finished and ratio <= 1.5 else 'NOT met'})",
    )
    engine_s = sum(run.timings.get(p, 0.0) for p in ("load", "score", "cluster"))
    report.add("  ratio without apply (load+score+cluster)", f"{engine_s / bare_s:.2f}")
    predictions.drop_table_from_database_and_remove_from_cache()
    clusters.drop_table_from_database_and_remove_from_cache()
    rules = len(splink_settings["blocking_rules_to_generate_predictions"])
    report.add(
        "comparisons the blocking rules make",
        f"{blocked_pairs(existing, splink_settings):,}",
        f"{rules} rules (Splink's count, exact; counted after the timings above)",
    )
    report.add("peak RSS so far", f"{peak_mb():,.0f} MB")
    gc.collect()

    # 5. search before create ------------------------------------------------------------
    hub_times = search_before_create(report, args, ids, spec, linker, existing, db_api, con)
    con.close()
    report_memory(report, n, hub_times)


def bare_linker(
    spec: Any, model: MatchModel
) -> tuple[duckdb.DuckDBPyConnection, DuckDBAPI, Any, Linker]:
    """A Linker of the trained model on the prepared records (for --skip-full-match)."""
    table = splink_engine.prepare_table(spec, engine_records(DOMAIN), with_dataset=False)
    con = duckdb.connect(":memory:")
    con.register("arrow_existing", table)
    con.execute("create table existing as select * from arrow_existing")
    con.unregister("arrow_existing")
    db_api = DuckDBAPI(con)
    existing = db_api.register("existing", table_name="existing_records")
    return con, db_api, existing, Linker(existing, model_settings(model), log_level=None)


def search_before_create(
    report: Report,
    args: argparse.Namespace,
    ids: set[int],
    spec: Any,
    linker: Linker,
    existing: Any,
    db_api: DuckDBAPI,
    con: duckdb.DuckDBPyConnection,
) -> list[float]:
    """Step 5: the hub's match_search against Splink's predict_between; the hub's times."""
    if args.searches <= 0:
        report.section("search before create: skipped (--searches 0)")
        return []
    splink_settings = model_settings(MatchModel.objects.get(domain=DOMAIN, is_active=True))
    report.section(f"search before create: {args.searches} misspelt existing records")
    rng = random.Random(args.seed + 1)
    all_ids = sorted(ids)
    picked = rng.sample(all_ids, min(args.searches, len(all_ids)))
    originals = dict(SourceRecord.objects.filter(id__in=picked).values_list("id", "attributes"))
    golden_of = dict(
        CrossReference.objects.filter(record_id__in=picked).values_list("record_id", "golden_id")
    )
    candidates = [(pk, perturb(rng, originals[pk])) for pk in picked]
    stores_clear()
    warm = rng.choice(all_ids)
    warm_attributes = SourceRecord.objects.get(id=warm).attributes
    t = time.perf_counter()
    match_search(domain=DOMAIN, attributes=warm_attributes)
    report.add(
        "warm-up match_search (builds the store)",
        fmt_s(time.perf_counter() - t),
        f"{len(all_ids):,} records",
    )
    hub_times, results = time_calls(
        candidates, lambda c: match_search(domain=DOMAIN, attributes=c[1])[1]
    )
    hits = sum(
        1
        for (pk, _), found in zip(candidates, results, strict=True)
        if found and found[0].golden_id == golden_of.get(pk)
    )
    on = f"{len(hub_times)} calls at {len(all_ids):,} records"
    report.add("hub match_search p50", fmt_ms(percentile(hub_times, 50)), on)
    report.add("hub match_search p95", fmt_ms(percentile(hub_times, 95)))
    report.add("hub match_search p99", fmt_ms(percentile(hub_times, 99)))
    report.add("  top result is the record's golden record", f"{hits}/{len(candidates)}")
    breakdown_of_search(report, candidates)

    dom = get_domain(DOMAIN)
    normalised = [dom.normalise(attributes)[0] for _, attributes in candidates]
    tf_tables = [
        linker.table_management.compute_tf_table(col) for col in tf_columns(splink_settings)
    ]
    between_linker = linker

    def between(attributes: dict[str, Any]) -> list[tuple[Any, ...]]:
        candidate = splink_engine.prepare_table(
            spec, [EngineRecord(id=-1, attributes=attributes)], with_dataset=False
        )
        sdf = db_api.register(candidate)
        out = between_linker.inference.predict_between(
            existing, sdf, threshold_match_probability=SEARCH_MIN_PROBABILITY, warning_mode="never"
        )
        rows = con.execute(
            f"select unique_id_l, match_probability from {out.physical_name} "  # noqa: S608
            f"order by match_weight desc limit {SEARCH_TOP * 3}"
        ).fetchall()
        out.drop_table_from_database_and_remove_from_cache()
        sdf.drop_table_from_database_and_remove_from_cache(force_non_splink_table=True)
        return rows

    between(normalised[0])  # warm-up
    between_times, _ = time_calls(normalised, between)
    on = f"{len(between_times)} calls, TF tables ({len(tf_tables)}) computed first"
    report.add("Splink predict_between p50", fmt_ms(percentile(between_times, 50)), on)
    report.add("Splink predict_between p95", fmt_ms(percentile(between_times, 95)))
    search_ratio = percentile(hub_times, 95) / percentile(between_times, 95)
    report.add(
        "RATIO hub p95 / predict_between p95",
        f"{search_ratio:.3f}",
        f"target <= 0.2 ({'met' if search_ratio <= 0.2 else 'NOT met'})",
    )
    return hub_times


def report_memory(report: Report, n: int, hub_times: Sequence[float]) -> None:
    """Step 6: the process's peak memory, then the report."""
    report.section("memory")
    report.add("peak RSS of the process", f"{peak_mb():,.0f} MB", f"{n:,} records")
    if hub_times:
        print(f"\n(mean match_search {statistics.fmean(hub_times) * 1000:.1f} ms)")
    report.print()


if __name__ == "__main__":
    main()
