"""Matching accuracy on labelled public data: a bare Splink model against the hub's engine.

    python bench/matching_accuracy.py [--quick] [--dataset NAME ...] [--threshold 0.9]

For each data set in the shared data folder (see its README.md) this runs:

* **splink**: a plain, first-attempt Splink 5 model written for that data set (default
  comparison-library comparisons on the obvious columns, simple ``block_on`` rules, the prior
  from a deterministic rule, u by random sampling, m by EM on one or two blocking rules),
  ``predict`` and ``cluster_pairwise_predictions_at_threshold``;
* **hub**: the hub's own engine (``matching.engine.splink_engine.SplinkEngine``) with the
  domain's declared match model, on records mapped to the domain's attributes and normalised
  by the domain exactly as ingestion does (invalid values dropped), clustered with
  ``pairs_to_clusters``.  When the engine or the domain's match model is not there yet, or
  the engine fails on a data set, a line says so; no number is made up.  The hub links and
  dedupes its sources at once, while the truth of a link data set (FEBRL 4, Walmart-Amazon)
  only knows pairs across sources: a second row, **hub x-src**, clusters the hub's
  cross-source pairs only, which is what link-only Splink is measured on.

Both are scored against the truth with pairwise precision, recall and F1 and B-cubed F1
(matching/evaluation.py), at ``--threshold`` and at each of 0.5/0.7/0.9/0.95/0.99; the best
of those is reported separately and is chosen *with the labels*, so it is an optimistic
upper bound for the threshold, not a result.

The data is read from ``$AURUM_SHARED_DATA`` or ``../shared/data`` next to the project.
``--quick`` subsamples the 50k historical figures to about 10k records (whole true clusters)
and Walmart-Amazon to all Walmart offers, the 853 matched Amazon offers and 4,000 others, so
the whole run takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import os
import re
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import splink.comparison_library as cl  # noqa: E402
from splink import DuckDBAPI, Linker, SettingsCreator, block_on  # noqa: E402
from splink.internals.blocking_rule_creator import BlockingRuleCreator  # noqa: E402
from splink.internals.comparison_creator import ComparisonCreator  # noqa: E402

from matching.evaluation import (  # noqa: E402
    Id,
    Scores,
    bcubed_scores,
    format_table,
    pairs_to_clusters,
    pairwise_scores,
)

THRESHOLDS = (0.5, 0.7, 0.9, 0.95, 0.99)
QUICK_HISTORICAL_RECORDS = 10_000
QUICK_AMAZON_NON_MATCHES = 4_000
U_MAX_PAIRS = 1e7
SEED = 42

Row = dict[str, str | None]
LinkType = Literal["link_only", "dedupe_only"]


def shared_data() -> Path:
    configured = os.environ.get("AURUM_SHARED_DATA")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


# --------------------------------------------------------------------------- reading the data


@dataclass
class Loaded:
    """A data set ready to match: its tables (one per source) and the true cluster of each id.

    Every row has a ``unique_id`` that is unique across all the tables.
    """

    tables: list[tuple[str, list[Row]]]
    truth: dict[str, Hashable]
    notes: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(len(rows) for _, rows in self.tables)

    @property
    def ids(self) -> list[str]:
        return [str(row["unique_id"]) for _, rows in self.tables for row in rows]


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def read_delimited(path: Path, delimiter: str = ",") -> list[Row]:
    """Rows of a CSV file as dicts of stripped strings; empty values are None.

    FEBRL puts a space after each comma (``rec_id, given_name, ...``): ``skipinitialspace``.
    Walmart-Amazon is ``|``-separated and its titles contain inch marks (``55"``), so it is
    read without quoting.
    """
    quoting: Literal[0, 3] = csv.QUOTE_NONE if delimiter == "|" else csv.QUOTE_MINIMAL
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, skipinitialspace=True, quoting=quoting)
        return [
            {key.strip(): _clean(value) for key, value in row.items() if key is not None}
            for row in reader
        ]


_FEBRL_ID = re.compile(r"^rec-(\d+)-(?:org|dup-\d+)$")


def _febrl_entity(rec_id: str) -> str:
    found = _FEBRL_ID.match(rec_id)
    if not found:
        raise ValueError(f"unexpected FEBRL rec_id {rec_id!r}")
    return found.group(1)


def _febrl_rows(path: Path) -> list[Row]:
    rows = read_delimited(path)
    for row in rows:
        row["unique_id"] = row.pop("rec_id")
    return rows


def load_febrl4(data: Path, quick: bool) -> Loaded:
    left = _febrl_rows(data / "febrl" / "dataset4a.csv")
    right = _febrl_rows(data / "febrl" / "dataset4b.csv")
    truth: dict[str, Hashable] = {
        str(row["unique_id"]): _febrl_entity(str(row["unique_id"])) for row in left + right
    }
    return Loaded([("febrl4a", left), ("febrl4b", right)], truth)


def load_febrl3(data: Path, quick: bool) -> Loaded:
    rows = _febrl_rows(data / "febrl" / "dataset3.csv")
    truth: dict[str, Hashable] = {
        str(row["unique_id"]): _febrl_entity(str(row["unique_id"])) for row in rows
    }
    return Loaded([("febrl3", rows)], truth)


def load_fake_1000(data: Path, quick: bool) -> Loaded:
    rows = read_delimited(data / "fake_1000.csv")
    truth: dict[str, Hashable] = {str(row["unique_id"]): row.pop("cluster") for row in rows}
    return Loaded([("fake_1000", rows)], truth)


def _stable_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def load_historical(data: Path, quick: bool) -> Loaded:
    table = pq.read_table(data / "historical_figures_with_errors_50k.parquet")
    rows: list[Row] = [
        {key: _clean(value) for key, value in row.items()} for row in table.to_pylist()
    ]
    notes = []
    if quick:
        sizes = Counter(str(row["cluster"]) for row in rows)
        keep: set[str] = set()
        total = 0
        for cluster in sorted(sizes, key=_stable_key):
            if total >= QUICK_HISTORICAL_RECORDS:
                break
            keep.add(cluster)
            total += sizes[cluster]
        rows = [row for row in rows if row["cluster"] in keep]
        notes.append(f"--quick: {len(keep):,} whole true clusters of {len(sizes):,}")
    truth: dict[str, Hashable] = {str(row["unique_id"]): row.pop("cluster") for row in rows}
    return Loaded([("historical", rows)], truth, notes)


def load_walmart_amazon(data: Path, quick: bool) -> Loaded:
    folder = data / "walmart_amazon"
    walmart = read_delimited(folder / "walmart.csv", "|")
    amazon = read_delimited(folder / "amazon.csv", "|")
    gold = read_delimited(folder / "gt.csv", "|")
    for prefix, rows in (("walmart", walmart), ("amazon", amazon)):
        for row in rows:
            row["unique_id"] = f"{prefix}-{row.pop('id')}"
    # gt.csv: walmart.id|amazon.id, one-to-one; a true cluster is the pair (others: singletons).
    partner = {f"amazon-{pair['D2']}": f"walmart-{pair['D1']}" for pair in gold}
    notes = [
        f"truth: {len(gold):,} walmart-amazon pairs from gt.csv, all else singletons",
        "gt.csv is incomplete: some offers with the same model number and title are not "
        "listed (e.g. Garmin 010-00777-00), so precision here is a lower bound",
    ]
    if quick:
        others = sorted(
            (str(row["unique_id"]) for row in amazon if row["unique_id"] not in partner),
            key=_stable_key,
        )
        keep = partner.keys() | set(others[:QUICK_AMAZON_NON_MATCHES])
        notes.append(
            f"--quick: amazon = the {len(partner):,} matched offers + "
            f"{QUICK_AMAZON_NON_MATCHES:,} others (of {len(others):,})"
        )
        amazon = [row for row in amazon if row["unique_id"] in keep]
    truth: dict[str, Hashable] = {}
    for row in walmart + amazon:
        key = str(row["unique_id"])
        truth[key] = partner.get(key, key)
    return Loaded([("walmart", walmart), ("amazon", amazon)], truth, notes)


# --------------------------------------------------------------------------- bare Splink models


@dataclass(frozen=True)
class BareModel:
    """A straightforward Splink model, as a user writes it first for these columns."""

    comparisons: list[ComparisonCreator]
    blocking: list[BlockingRuleCreator]
    deterministic: list[BlockingRuleCreator]
    recall: float
    em: list[BlockingRuleCreator]
    prepare: Callable[[Row], Row] | None = None  # per-row clean-up before registering
    description: str = ""


def febrl_model() -> BareModel:
    # As in Splink's FEBRL examples: the location columns beyond postcode and street number
    # are left out (they are strongly correlated with the postcode).
    return BareModel(
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison(
                "date_of_birth", input_is_string=True, datetime_format="%Y%m%d"
            ),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(
                term_frequency_adjustments=True
            ),
        ],
        blocking=[
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("postcode", "street_number"),
        ],
        deterministic=[
            block_on("soc_sec_id"),
            block_on("given_name", "surname", "date_of_birth"),
        ],
        recall=0.9,
        em=[block_on("date_of_birth"), block_on("soc_sec_id")],
        description="names (JW), dob, soc_sec_id (DL<=2), street number, postcode",
    )


def fake_1000_model() -> BareModel:
    # Splink's tutorial model for this data set, blocking also on dob and e-mail: first name
    # or surname alone finds half of the true pairs (the names are very noisy).
    return BareModel(
        comparisons=[
            cl.NameComparison("first_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.EmailComparison("email"),
        ],
        blocking=[
            block_on("first_name"),
            block_on("surname"),
            block_on("dob"),
            block_on("email"),
        ],
        deterministic=[block_on("first_name", "surname", "dob"), block_on("email")],
        recall=0.7,
        em=[block_on("first_name", "surname"), block_on("dob")],
        description="names (JW), dob, city (tf), email",
    )


def historical_model() -> BareModel:
    return BareModel(
        comparisons=[
            cl.NameComparison("first_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.PostcodeComparison("postcode_fake"),
            cl.ExactMatch("birth_place").configure(term_frequency_adjustments=True),
            cl.ExactMatch("gender"),
            cl.ExactMatch("occupation").configure(term_frequency_adjustments=True),
        ],
        blocking=[
            block_on("surname"),
            block_on("first_name", "dob"),
            block_on("postcode_fake"),
            block_on("first_name", "birth_place"),
        ],
        deterministic=[block_on("first_name", "surname", "dob")],
        recall=0.6,
        em=[block_on("first_name", "surname"), block_on("dob")],
        description="names (JW), dob, postcode, birth place, gender, occupation",
    )


def _product_row(row: Row) -> Row:
    """Lower-case the text; the model number without spaces, dashes or dots."""
    out = dict(row)
    for name in ("title", "brand"):
        if out.get(name):
            out[name] = str(out[name]).lower()
    if out.get("modelno"):
        out["modelno"] = re.sub(r"[^0-9a-z]", "", str(out["modelno"]).lower()) or None
    return out


def walmart_amazon_model() -> BareModel:
    # Training EM on block_on("brand") collapses (the m of "same model number" comes out at
    # 0.07 where the labels say 0.6: the EM finds "same product family", since only 0.3% of
    # same-brand pairs match).  Splink's advice is a training rule whose pairs are 1-99%
    # matches: the first 20 characters of the title (10% matches) trains model number and
    # brand; the model number (80% matches) trains title and brand.  Jaccard on the title
    # (DuckDB's, over characters) measured better than Jaro-Winkler (which rewards the
    # brand at the start of every title) and steadier across thresholds than
    # token-intersection sizes.  Model numbers one character apart are different products
    # (TN450 / TN460): exact match only.
    return BareModel(
        comparisons=[
            cl.JaccardAtThresholds("title", [0.9, 0.8, 0.7]),
            cl.ExactMatch("modelno"),
            cl.ExactMatch("brand").configure(term_frequency_adjustments=True),
        ],
        blocking=[block_on("brand"), block_on("modelno")],
        deterministic=[block_on("modelno")],
        recall=0.6,
        em=[block_on("modelno"), block_on("substr(title, 1, 20)")],
        prepare=_product_row,
        description="title (char Jaccard), model number (exact), brand (tf); lower-cased",
    )


# --------------------------------------------------------------------------- domain mapping


def _join(*parts: str | None) -> str | None:
    return " ".join(part for part in parts if part) or None


def febrl_to_customer(row: Row) -> dict[str, Any]:
    return {
        "party_type": "person",
        "given_name": row["given_name"],
        "family_name": row["surname"],
        "date_of_birth": row["date_of_birth"],
        "address_line1": _join(row["street_number"], row["address_1"]),
        "address_line2": row["address_2"],
        "city": row["suburb"],
        "postal_code": row["postcode"],
        "region": row["state"],
        "country": "AU",
        "national_id": row["soc_sec_id"],
    }


def fake_1000_to_customer(row: Row) -> dict[str, Any]:
    return {
        "party_type": "person",
        "given_name": row["first_name"],
        "family_name": row["surname"],
        "date_of_birth": row["dob"],
        "city": row["city"],
        "email": row["email"],
    }


def historical_to_customer(row: Row) -> dict[str, Any]:
    # The customer domain has no birth place: it stands for the city.
    return {
        "party_type": "person",
        "given_name": row["first_name"],
        "family_name": row["surname"],
        "date_of_birth": row["dob"],
        "gender": row["gender"],
        "occupation": row["occupation"],
        "city": row["birth_place"],
        "postal_code": row["postcode_fake"],
        "country": "GB",
    }


_DIMENSIONS = re.compile(
    r"^\s*([\d.]+)\s*x\s*([\d.]+)\s*x\s*([\d.]+)\s*([a-z]+)\s*$", re.IGNORECASE
)


def walmart_amazon_to_product(row: Row) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": row["title"],
        "mpn": row["modelno"],
        "brand": row["brand"],
        "price": row["price"],
        "currency": "USD" if row["price"] else None,
        # Ship weights are in pounds in this benchmark.
        "weight_kg": f"{row['shipweight']} lb" if row["shipweight"] else None,
    }
    found = _DIMENSIONS.match(row["dimensions"] or "")
    if found:
        length, width, height, unit = found.groups()
        values["length_cm"] = f"{length} {unit}"
        values["width_cm"] = f"{width} {unit}"
        values["height_cm"] = f"{height} {unit}"
    return values


# --------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class DataSet:
    name: str
    description: str
    link_type: LinkType
    domain: str
    load: Callable[[Path, bool], Loaded]
    model: Callable[[], BareModel]
    to_domain: Callable[[Row], dict[str, Any]]


DATASETS: dict[str, DataSet] = {
    dataset.name: dataset
    for dataset in (
        DataSet(
            "febrl4",
            "FEBRL 4 link: 5,000 originals to 5,000 corrupted copies",
            "link_only",
            "customer",
            load_febrl4,
            febrl_model,
            febrl_to_customer,
        ),
        DataSet(
            "febrl3",
            "FEBRL 3 dedupe: 5,000 records, several duplicates per original",
            "dedupe_only",
            "customer",
            load_febrl3,
            febrl_model,
            febrl_to_customer,
        ),
        DataSet(
            "fake_1000",
            "fake_1000 dedupe: 1,000 synthetic people",
            "dedupe_only",
            "customer",
            load_fake_1000,
            fake_1000_model,
            fake_1000_to_customer,
        ),
        DataSet(
            "historical",
            "historical_figures_with_errors_50k dedupe",
            "dedupe_only",
            "customer",
            load_historical,
            historical_model,
            historical_to_customer,
        ),
        DataSet(
            "walmart_amazon",
            "Walmart-Amazon product link",
            "link_only",
            "product",
            load_walmart_amazon,
            walmart_amazon_model,
            walmart_amazon_to_product,
        ),
    )
}


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    dataset: str
    method: str
    records: int
    candidate_pairs: int | None  # pairs scored (splink), pairs returned at the floor (hub)
    candidate_label: str
    blocking_recall: float | None  # share of true pairs among the candidates
    by_threshold: dict[float, tuple[Scores, Scores]]  # threshold -> (pairwise, B-cubed)
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def best(self) -> tuple[float, Scores, Scores]:
        threshold = max(self.by_threshold, key=lambda t: (self.by_threshold[t][0].f1, -t))
        pairwise, bcubed = self.by_threshold[threshold]
        return threshold, pairwise, bcubed


@dataclass
class Unavailable:
    dataset: str
    method: str
    reason: str
    notes: list[str] = field(default_factory=list)


def score(predicted: Mapping[Id, Hashable], truth: Mapping[Id, Hashable]) -> tuple[Scores, Scores]:
    return pairwise_scores(predicted, truth), bcubed_scores(predicted, truth)


def _fetch(db_api: DuckDBAPI, sql: str) -> list[tuple[Any, ...]]:
    # DuckDB 2: fetchall(), not fetchone(), or the connection stays busy.
    return db_api.duckdb_con.sql(sql).fetchall()


def run_bare_splink(dataset: DataSet, loaded: Loaded, thresholds: Sequence[float]) -> Result:
    model = dataset.model()
    db_api = DuckDBAPI()
    started = time.perf_counter()
    sdfs = []
    for name, rows in loaded.tables:
        prepared = [model.prepare(row) for row in rows] if model.prepare else rows
        sdfs.append(db_api.register(pa.Table.from_pylist(prepared), dataset_display_name=name))
    settings = SettingsCreator(
        link_type=dataset.link_type,
        comparisons=list(model.comparisons),
        blocking_rules_to_generate_predictions=list(model.blocking),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(sdfs if len(sdfs) > 1 else sdfs[0], settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        list(model.deterministic), recall=model.recall
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS, seed=SEED)
    for rule in model.em:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    trained = time.perf_counter()

    predictions = linker.inference.predict()
    (candidates,) = _fetch(db_api, f"select count(*) from {predictions.physical_name}")[0]  # noqa: S608
    predicted = time.perf_counter()

    truth_table = pa.table(
        {
            "unique_id": list(loaded.truth),
            "true_cluster": [str(value) for value in loaded.truth.values()],
        }
    )
    db_api.duckdb_con.register("bench_truth", truth_table)
    true_pairs = pairwise_scores(loaded.truth, loaded.truth).true_pairs
    found_sql = (
        f"select count(*) from {predictions.physical_name} p "  # noqa: S608
        "join bench_truth l on l.unique_id = p.unique_id_l "
        "join bench_truth r on r.unique_id = p.unique_id_r "
        "where l.true_cluster = r.true_cluster"
    )
    (found,) = _fetch(db_api, found_sql)[0]

    by_threshold: dict[float, tuple[Scores, Scores]] = {}
    cluster_seconds = 0.0
    for threshold in thresholds:
        start = time.perf_counter()
        clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=threshold
        )
        sql = f"select unique_id, cluster_id from {clustered.physical_name}"  # noqa: S608
        clusters = {str(uid): cluster for uid, cluster in _fetch(db_api, sql)}
        cluster_seconds += time.perf_counter() - start
        by_threshold[threshold] = score(clusters, loaded.truth)
        clustered.drop_table_from_database_and_remove_from_cache()
    finished = time.perf_counter()
    return Result(
        dataset=dataset.name,
        method="splink",
        records=loaded.records,
        candidate_pairs=int(candidates),
        candidate_label="blocked pairs scored",
        blocking_recall=found / true_pairs if true_pairs else None,
        by_threshold=by_threshold,
        seconds={
            "train": trained - started,
            "predict": predicted - trained,
            "cluster": cluster_seconds / len(thresholds),
            "total": finished - started,
        },
        notes=[f"model: {model.description}"],
    )


def _shorten(text: str, limit: int = 150) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_hub(
    dataset: DataSet, loaded: Loaded, thresholds: Sequence[float]
) -> list[Result | Unavailable]:
    try:
        from matching.engine.interface import EngineRecord
        from matching.engine.splink_engine import SplinkEngine
    except ImportError as exc:
        return [
            Unavailable(
                dataset.name,
                "hub",
                f"matching.engine.splink_engine.SplinkEngine is not importable ({exc})",
            )
        ]
    from mdm.domains import get_domain

    domain = get_domain(dataset.domain)
    if domain.match is None:
        return [
            Unavailable(
                dataset.name,
                "hub",
                f"the {domain.code} domain declares no match model yet (Domain.match is None)",
            )
        ]

    started = time.perf_counter()
    records: list[EngineRecord] = []
    number_of: dict[str, int] = {}
    invalid: Counter[str] = Counter()
    rejected_rows = 0
    for name, rows in loaded.tables:
        for row in rows:
            attributes, errors = domain.normalise(
                {k: v for k, v in dataset.to_domain(row).items() if v is not None}
            )
            bad = [error for error in errors if error.code != "required"]
            invalid.update(error.field for error in bad)
            rejected_rows += bool(errors)
            number = len(records)
            number_of[str(row["unique_id"])] = number
            records.append(EngineRecord(number, attributes, name))
    normalised = time.perf_counter()
    notes = []
    if invalid:
        dropped = ", ".join(f"{name} {count:,}" for name, count in invalid.most_common())
        notes.append(f"invalid values dropped by normalisation: {dropped}")
    if rejected_rows:
        notes.append(
            f"{rejected_rows:,} of {len(records):,} rows have a field error: ingestion would "
            "quarantine them; here they are matched with their valid values"
        )

    try:
        engine = SplinkEngine()
        model = engine.train(domain.match, records, seed=SEED)
        trained = time.perf_counter()
        floor = min(thresholds)
        pairs = engine.score_all(domain.match, model, records, threshold=floor)
        scored = time.perf_counter()
    except Exception as exc:
        # The engine is young: report its failure on this data set and go on with the rest.
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        return [Unavailable(dataset.name, "hub", f"the engine failed: {detail}{where}", notes)]
    notes.extend(
        f"engine warning: {_shorten(str(warning))}" for warning in getattr(model, "warnings", ())
    )

    truth = {number_of[key]: value for key, value in loaded.truth.items() if key in number_of}
    ids = list(range(len(records)))
    source = [record.dataset for record in records]

    def evaluate(cross_source_only: bool) -> tuple[dict[float, tuple[Scores, Scores]], float]:
        by_threshold: dict[float, tuple[Scores, Scores]] = {}
        seconds = 0.0
        for threshold in thresholds:
            start = time.perf_counter()
            edges = [
                (pair.left, pair.right)
                for pair in pairs
                if pair.match_probability >= threshold
                and not (cross_source_only and source[pair.left] == source[pair.right])
            ]
            clusters = pairs_to_clusters(ids, edges)
            seconds += time.perf_counter() - start
            by_threshold[threshold] = score(clusters, truth)
        return by_threshold, seconds / len(thresholds)

    by_threshold, cluster_seconds = evaluate(cross_source_only=False)
    finished = time.perf_counter()
    seconds = {
        "normalise": normalised - started,
        "train": trained - normalised,
        "predict": scored - trained,
        "cluster": cluster_seconds,
        "total": finished - started,
    }
    results: list[Result | Unavailable] = [
        Result(
            dataset=dataset.name,
            method="hub",
            records=len(records),
            candidate_pairs=len(pairs),
            candidate_label=f"pairs returned at p >= {floor:g}",
            blocking_recall=None,
            by_threshold=by_threshold,
            seconds=seconds,
            notes=notes,
        )
    ]
    if dataset.link_type == "link_only":
        # The hub links *and* dedupes its sources; the truth of a link data set knows only
        # pairs across sources, so a pair within one source counts as false here even when
        # it is a real duplicate.  The second row clusters the cross-source pairs only.
        cross, cross_seconds = evaluate(cross_source_only=True)
        within = sum(source[pair.left] == source[pair.right] for pair in pairs)
        notes.insert(
            0,
            f"{within:,} of the {len(pairs):,} pairs returned are within one source (the "
            "truth has none there); 'hub x-src' clusters the cross-source pairs only",
        )
        results.append(
            Result(
                dataset=dataset.name,
                method="hub x-src",
                records=len(records),
                candidate_pairs=len(pairs),
                candidate_label=f"pairs returned at p >= {floor:g}",
                blocking_recall=None,
                by_threshold=cross,
                seconds={**seconds, "cluster": cross_seconds},
                notes=["the same model and pairs as 'hub', within-source pairs left out"],
            )
        )
    return results


# --------------------------------------------------------------------------- report


def _sweep(result: Result) -> str:
    return "  ".join(
        f"{threshold:g}: {pairwise.f1:.4f}"
        for threshold, (pairwise, _) in sorted(result.by_threshold.items())
    )


def report(results: Iterable[Result | Unavailable], threshold: float, quick: bool) -> str:
    results = list(results)
    done = [result for result in results if isinstance(result, Result)]
    out = []
    headers = [
        "data set",
        "method",
        "records",
        "cand. pairs",
        "block rec.",
        "thr",
        "P",
        "R",
        "F1",
        "B3 P",
        "B3 R",
        "B3 F1",
        "train s",
        "predict s",
        "total s",
    ]
    rows = []
    for result in done:
        pairwise, bcubed = result.by_threshold[threshold]
        rows.append(
            [
                result.dataset,
                result.method,
                result.records,
                result.candidate_pairs,
                result.blocking_recall,
                f"{threshold:g}",
                pairwise.precision,
                pairwise.recall,
                pairwise.f1,
                bcubed.precision,
                bcubed.recall,
                bcubed.f1,
                f"{result.seconds['train']:.1f}",
                f"{result.seconds['predict']:.1f}",
                f"{result.seconds['total']:.1f}",
            ]
        )
    mode = "--quick subsets" if quick else "full data sets"
    out.append(f"Matching accuracy at threshold {threshold:g} ({mode})")
    out.append(format_table(headers, rows, "ll" + "r" * (len(headers) - 2)))
    out.append("")
    out.append(
        "Best threshold of " + "/".join(f"{t:g}" for t in THRESHOLDS) + " by pairwise F1 "
        "(chosen with the labels: an optimistic bound, not a result)"
    )
    best_rows = []
    for result in done:
        best, pairwise, bcubed = result.best()
        best_rows.append(
            [
                result.dataset,
                result.method,
                f"{best:g}",
                pairwise.precision,
                pairwise.recall,
                pairwise.f1,
                bcubed.f1,
                pairwise.predicted_pairs,
                pairwise.true_pairs,
                pairwise.true_positive_pairs,
            ]
        )
    out.append(
        format_table(
            [
                "data set",
                "method",
                "best thr",
                "P",
                "R",
                "F1",
                "B3 F1",
                "pred. pairs",
                "true pairs",
                "correct",
            ],
            best_rows,
            "llrrrrrrrr",
        )
    )
    out.append("")
    out.append("Pairwise F1 by threshold, and what each figure was measured on:")
    for entry in results:
        if isinstance(entry, Unavailable):
            out.append(f"  {entry.dataset} / {entry.method}: NOT AVAILABLE - {entry.reason}")
            out.extend(f"      {note}" for note in entry.notes)
            continue
        result = entry
        out.append(f"  {result.dataset} / {result.method}: {_sweep(result)}")
        candidates = (
            f"{result.candidate_pairs:,} {result.candidate_label}"
            if result.candidate_pairs is not None
            else "candidate pairs unknown"
        )
        timing = ", ".join(f"{name} {value:.1f}s" for name, value in result.seconds.items())
        out.append(f"      {result.records:,} records, {candidates}; {timing}")
        out.extend(f"      {note}" for note in result.notes)
    out.append("")
    out.append(
        "P/R/F1: pairwise over within-cluster record pairs; B3: B-cubed (per-record means). "
        "block rec.: share of the true pairs among the pairs Splink scored."
    )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--dataset",
        action="append",
        choices=sorted(DATASETS),
        help="a data set to run (repeatable; default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="small subsets: a few minutes")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.9,
        help="match probability at which pairs are clustered (default 0.9)",
    )
    parser.add_argument("--skip-hub", action="store_true", help="run the bare Splink baseline only")
    parser.add_argument("--verbose", action="store_true", help="show Splink's log and warnings")
    args = parser.parse_args(argv)
    if not 0 < args.threshold <= 1:
        parser.error("--threshold must be in (0, 1]")
    if not args.verbose:
        warnings.filterwarnings("ignore")
        logging.getLogger("splink").setLevel(logging.ERROR)

    data = shared_data()
    if not data.is_dir():
        parser.error(f"no shared data folder at {data} (set AURUM_SHARED_DATA)")
    thresholds = sorted({*THRESHOLDS, args.threshold})
    names = args.dataset or list(DATASETS)
    results: list[Result | Unavailable] = []
    overall = time.perf_counter()
    for name in names:
        dataset = DATASETS[name]
        start = time.perf_counter()
        loaded = dataset.load(data, args.quick)
        print(
            f"== {dataset.name}: {dataset.description}; {loaded.records:,} records "
            f"in {len(loaded.tables)} table(s), loaded in {time.perf_counter() - start:.1f}s",
            flush=True,
        )
        for note in loaded.notes:
            print(f"   {note}", flush=True)
        bare = run_bare_splink(dataset, loaded, thresholds)
        pairwise, _ = bare.by_threshold[args.threshold]
        print(
            f"   splink: F1 {pairwise.f1:.4f} at {args.threshold:g} ({bare.seconds['total']:.1f}s)",
            flush=True,
        )
        results.append(bare)
        if args.skip_hub:
            continue
        for hub in run_hub(dataset, loaded, thresholds):
            if isinstance(hub, Unavailable):
                print(f"   {hub.method}: NOT AVAILABLE - {hub.reason}", flush=True)
            else:
                pairwise, _ = hub.by_threshold[args.threshold]
                print(
                    f"   {hub.method}: F1 {pairwise.f1:.4f} at {args.threshold:g} "
                    f"({hub.seconds['total']:.1f}s)",
                    flush=True,
                )
            results.append(hub)
    print()
    print(report(results, args.threshold, args.quick))
    print(f"\nWhole run: {time.perf_counter() - overall:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
