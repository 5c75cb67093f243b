"""The Splink engine: training, batch scoring equal to bare Splink, explanations, candidates.

Runs on fake_1000 (Splink's synthetic people, shared data) mapped to customer attributes and
normalised by the customer domain, with the customer domain's default match model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from splink import DuckDBAPI, Linker

from matching.engine import splink_engine
from matching.engine.interface import EngineRecord, MatchSpec, ScoredPair, TrainedModel
from matching.engine.splink_engine import (
    MatchStore,
    SplinkEngine,
    level_warning,
    prepare_table,
    settings_for,
)
from mdm.domains import customer, product, supplier
from mdm.domains.base import Domain
from mdm.domains.match_spec import ComparisonSpec

assert customer.DOMAIN.match is not None
SPEC: MatchSpec = customer.DOMAIN.match
THRESHOLD = 0.5


@pytest.fixture(scope="module")
def engine() -> SplinkEngine:
    return SplinkEngine()


@pytest.fixture(scope="module")
def model(engine: SplinkEngine, records: list[EngineRecord]) -> TrainedModel:
    return engine.train(SPEC, records, seed=42)


@pytest.fixture(scope="module")
def pairs(
    engine: SplinkEngine, model: TrainedModel, records: list[EngineRecord]
) -> list[ScoredPair]:
    return list(engine.score_all(SPEC, model, records, threshold=THRESHOLD))


def _bare_splink(
    model: TrainedModel,
    records: list[EngineRecord],
    *,
    link_type: str,
    threshold: float = THRESHOLD,
) -> dict[tuple[int, int], tuple[float, float]]:
    """Bare Splink's predict() on the engine's prepared table with the trained model."""
    settings = json.loads(json.dumps(model.parameters))
    settings["link_type"] = link_type
    db_api = DuckDBAPI()
    sdf = db_api.register(prepare_table(SPEC, records), dataset_display_name="fake_1000")
    linker = Linker(sdf, settings)
    predictions = linker.inference.predict(threshold_match_probability=threshold)
    columns = "unique_id_l, unique_id_r, match_probability, match_weight"
    rows = db_api.duckdb_con.execute(
        f"select {columns} from {predictions.physical_name}"  # noqa: S608 - Splink's table
    ).fetchall()
    return {(min(a, b), max(a, b)): (p, w) for a, b, p, w in rows}


# --------------------------------------------------------------------------- training


def test_train_estimates_m_and_u_for_every_level_and_the_prior(model: TrainedModel) -> None:
    assert 0 < model.prior < 1
    compared = [c.attribute for c in SPEC.comparisons]
    present = ["given_name", "family_name", "date_of_birth", "email", "city"]
    assert sorted({level.comparison for level in model.levels}) == sorted(present)
    # No fake_1000 name is written as an initial: nothing is learnt about that level, it
    # keeps Splink's default weight and says so.
    untrained = [level for level in model.levels if level.level == "initial"]
    assert [(level.comparison, level.warning) for level in untrained] == [
        (name, "m and u never estimated (no training pair fell in level 'initial')")
        for name in ("given_name", "family_name")
    ]
    for level in model.levels:
        if level in untrained:
            continue
        assert level.m_probability is not None and 0 < level.m_probability <= 1, level
        assert level.u_probability is not None and 0 < level.u_probability <= 1, level
        assert level.match_weight == pytest.approx(
            math.log2(level.m_probability / level.u_probability), abs=1e-9
        )
        assert level.warning is None, level
    # The attributes fake_1000 lacks are left out of the model, each with a warning.
    assert model.warnings == tuple(
        f"{name}: no record has a value; comparison left out"
        for name in compared
        if name not in present
    ) + tuple(f"{level.comparison} / initial: {level.warning}" for level in untrained)
    # The parameters are Splink's JSON model, stored as is in MatchModel.
    assert json.loads(json.dumps(model.parameters)) == model.parameters
    assert [c["output_column_name"] for c in model.parameters["comparisons"]] == [
        name for name in compared if name in present
    ]


def test_train_is_reproducible_with_a_seed(
    engine: SplinkEngine, model: TrainedModel, records: list[EngineRecord]
) -> None:
    again = engine.train(SPEC, records, seed=42)

    # Equal up to the rounding of DuckDB's parallel sums (their order varies by thread).
    assert again.prior == model.prior
    assert [(lv.comparison, lv.level) for lv in again.levels] == [
        (lv.comparison, lv.level) for lv in model.levels
    ]
    for ours, theirs in zip(again.levels, model.levels, strict=True):
        if theirs.m_probability is None:  # a level no pair fell in (see above)
            assert ours.m_probability is None and ours.u_probability is None
            continue
        assert ours.m_probability == pytest.approx(theirs.m_probability, rel=1e-9)
        assert ours.u_probability == pytest.approx(theirs.u_probability, rel=1e-9)


def test_train_gives_the_same_model_whatever_the_records_ids(
    engine: SplinkEngine, model: TrainedModel, records: list[EngineRecord]
) -> None:
    # The same records under other ids (as in another hub, or after other records took
    # theirs): Splink samples u by a hash of the ids, which the engine trains on ranks of.
    shifted = [
        EngineRecord(id=r.id * 7 + 1_000_003, attributes=r.attributes, dataset=r.dataset)
        for r in records
    ]
    again = engine.train(SPEC, shifted, seed=42)

    assert again.prior == pytest.approx(model.prior, rel=1e-9)
    for ours, theirs in zip(again.levels, model.levels, strict=True):
        if theirs.m_probability is None:
            assert ours.m_probability is None and ours.u_probability is None
            continue
        assert ours.m_probability == pytest.approx(theirs.m_probability, rel=1e-9)
        assert ours.u_probability == pytest.approx(theirs.u_probability, rel=1e-9)


# --------------------------------------------------------------------------- batch scoring


def test_score_all_equals_bare_splink_predict(
    model: TrainedModel, records: list[EngineRecord], pairs: list[ScoredPair]
) -> None:
    baseline = _bare_splink(model, records, link_type="dedupe_only")

    ours = {(p.left, p.right): (p.match_probability, p.match_weight) for p in pairs}
    assert len(pairs) == len(ours) == 1467  # every blocked pair of the customer spec
    assert ours.keys() == baseline.keys()
    for key, (probability, weight) in ours.items():
        assert probability == pytest.approx(baseline[key][0], abs=1e-9), key
        assert weight == pytest.approx(baseline[key][1], abs=1e-9), key
    assert all(p.left < p.right and p.match_probability >= THRESHOLD for p in pairs)
    assert [p.match_weight for p in pairs] == sorted((p.match_weight for p in pairs), reverse=True)


@pytest.mark.parametrize(("threshold", "expected"), [(0.05, 1587), (0.5, 1467), (0.95, 1194)])
def test_score_all_prunes_hopeless_pairs_and_keeps_exactly_splinks(
    engine: SplinkEngine,
    model: TrainedModel,
    records: list[EngineRecord],
    threshold: float,
    expected: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given Splink's own predict at the threshold
    baseline = _bare_splink(model, records, link_type="dedupe_only", threshold=threshold)

    # When the engine scores everything (weighing the expensive comparisons only while a
    # pair can still reach the threshold)
    with caplog.at_level(logging.INFO, logger="matching.engine.splink_engine"):
        pairs = engine.score_all(SPEC, model, records, threshold=threshold)

    # Then pairs were dropped before Splink scored them...
    found = [
        re.fullmatch(r"pruning kept (\d+) of (\d+) blocked pairs", r.message)
        for r in caplog.records
    ]
    [(kept, blocked)] = [(int(m[1]), int(m[2])) for m in found if m]
    assert blocked == 1803
    assert kept == expected < blocked
    # ...and the pairs, probabilities and weights are exactly Splink's
    ours = {(p.left, p.right): (p.match_probability, p.match_weight) for p in pairs}
    assert len(ours) == len(baseline) == expected
    assert ours.keys() == baseline.keys()
    for key, (probability, weight) in ours.items():
        assert probability == pytest.approx(baseline[key][0], abs=1e-9), key
        assert weight == pytest.approx(baseline[key][1], abs=1e-9), key


def test_score_all_with_datasets_links_and_dedupes_like_bare_splink(
    engine: SplinkEngine, model: TrainedModel, records: list[EngineRecord]
) -> None:
    systems = [
        EngineRecord(r.id, r.attributes, dataset="crm" if r.id % 2 else "erp") for r in records
    ]

    ours = engine.score_all(SPEC, model, systems, threshold=THRESHOLD)

    baseline = _bare_splink(model, systems, link_type="link_and_dedupe")
    assert all(p.left < p.right for p in ours)
    assert {(min(p.left, p.right), max(p.left, p.right)): p.match_probability for p in ours} == (
        pytest.approx({key: value[0] for key, value in baseline.items()}, abs=1e-9)
    )


def _as_tuples(pairs: Sequence[ScoredPair]) -> list[tuple[object, ...]]:
    return [(p.left, p.right, p.match_probability, p.match_weight, p.contributions) for p in pairs]


@pytest.mark.parametrize("datasets", [False, True], ids=["dedupe", "link-and-dedupe"])
def test_score_all_streams_records_in_chunks_into_bounded_duckdb_with_the_same_pairs(
    engine: SplinkEngine,
    model: TrainedModel,
    records: list[EngineRecord],
    datasets: bool,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    tmp_path: Path,
) -> None:
    # Given the records in one list, and the same records streamed once (an iterator in
    # another order, as a server-side cursor gives them) and prepared 97 at a time into a
    # DuckDB limited to 256 MB that spills under a directory of ours; with datasets, the
    # first chunks have none (the column must survive them)
    if datasets:
        records = [
            EngineRecord(r.id, r.attributes, dataset="crm" if r.id % 2 else "erp")
            if r.id > records[300].id
            else r
            for r in records
        ]
    whole = engine.score_all(SPEC, model, records, threshold=THRESHOLD)
    monkeypatch.setattr(splink_engine, "PREPARE_CHUNK", 97)
    settings.AURUM_MATCH_DUCKDB_MEMORY = "256MB"
    settings.AURUM_MATCH_DUCKDB_TEMP_DIR = str(tmp_path / "spill")
    shuffled = sorted(records, key=lambda r: (r.id * 7919) % 1009)

    # When the streamed records are scored
    streamed = engine.score_all(SPEC, model, iter(shuffled), threshold=THRESHOLD)

    # Then the pairs, probabilities, weights and contributions are those of the one list
    assert len(whole) > 1000
    assert _as_tuples(streamed) == _as_tuples(whole)
    # ...and the run's spill directory is gone with it
    assert list((tmp_path / "spill").iterdir()) == []


def test_chunks_are_prepared_in_a_second_process_as_prepare_table_does(
    records: list[EngineRecord],
) -> None:
    # Given a full run's preparer (its first chunk was full: more may follow)
    chunk = [
        EngineRecord(r.id, r.attributes, dataset="crm" if r.id % 2 else "") for r in records[:300]
    ]
    preparer = splink_engine._Preparer(SPEC, parallel=True)
    try:
        # When a chunk is prepared
        table = preparer.submit(chunk)()
        assert preparer._pool is not None
        pid = preparer._pool.submit(os.getpid).result()
    finally:
        preparer.close()

    # Then another process prepared it, into prepare_table's very table
    assert pid != os.getpid()
    assert table.equals(prepare_table(SPEC, chunk, with_dataset=True))


def test_score_all_refuses_an_id_repeated_across_chunks(
    engine: SplinkEngine,
    model: TrainedModel,
    records: list[EngineRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(splink_engine, "PREPARE_CHUNK", 4)
    repeated = [*records[:5], *records[1:3]]  # chunks of 4: the repeats are in another one

    with pytest.raises(ValueError, match=re.escape("record ids must be unique; repeated: ")) as e:
        engine.score_all(SPEC, model, iter(repeated), threshold=THRESHOLD)

    assert str(e.value).endswith(f"[{records[1].id}, {records[2].id}]")


def test_score_all_says_what_is_wrong_with_a_bad_duckdb_memory_setting(
    engine: SplinkEngine, model: TrainedModel, records: list[EngineRecord], settings: Any
) -> None:
    settings.AURUM_MATCH_DUCKDB_MEMORY = "plenty"

    with pytest.raises(ValueError, match="AURUM_MATCH_DUCKDB_MEMORY='plenty' is not a DuckDB"):
        engine.score_all(SPEC, model, records, threshold=THRESHOLD)


def test_contributions_add_up_to_the_match_weight(
    model: TrainedModel, pairs: list[ScoredPair]
) -> None:
    prior_weight = math.log2(model.prior / (1 - model.prior))
    for pair in pairs:
        assert [c.attribute for c in pair.contributions] == [
            "given_name",
            "family_name",
            "date_of_birth",
            "email",
            "city",
        ]
        total = prior_weight + sum(c.match_weight for c in pair.contributions)
        assert total == pytest.approx(pair.match_weight, abs=1e-9), pair


def test_contributions_explain_a_pair_level_by_level(
    model: TrainedModel, pairs: list[ScoredPair]
) -> None:
    pair = next(p for p in pairs if (p.left, p.right) == (1, 2))
    weights = {(level.comparison, level.level): level.match_weight for level in model.levels}

    explained = [(c.attribute, c.level, c.left, c.right) for c in pair.contributions]

    assert explained == [
        ("given_name", "nickname", "Robert", "Rob"),
        ("family_name", "exact", "Allen", "Allen"),
        ("date_of_birth", "one character off", "1971-05-24", "1971-06-24"),
        ("email", "exact", "roberta25@smith.net", "roberta25@smith.net"),
        ("city", "missing", None, "London"),
    ]
    by_attribute = {c.attribute: c.match_weight for c in pair.contributions}
    assert by_attribute["given_name"] == pytest.approx(weights[("given_name", "nickname")])
    assert by_attribute["date_of_birth"] == pytest.approx(
        weights[("date_of_birth", "one character off")]
    )
    assert by_attribute["city"] == 0.0
    # An exact match on a term-frequency adjusted name weighs by how rare the name is.
    assert by_attribute["family_name"] != pytest.approx(weights[("family_name", "exact")])


# --------------------------------------------------------------------------- candidates


def test_score_candidates_finds_the_duplicate_with_the_score_all_probability(
    engine: SplinkEngine, model: TrainedModel, records: list[EngineRecord], pairs: list[ScoredPair]
) -> None:
    by_pair = {(p.left, p.right): p for p in pairs}
    searching = engine.with_existing(records)
    candidate = records[1]  # Robert Allen, whose duplicate is record 2 (Rob Allen)

    first = searching.score_candidates(SPEC, model, [candidate], threshold=THRESHOLD)
    again = searching.score_candidates(SPEC, model, [candidate], threshold=THRESHOLD)

    assert again == first  # the second call replays the first one's SQL
    found = {p.right: p for p in first}
    assert 2 in found
    assert 1 not in found  # a candidate already in the set is not paired with itself
    assert all(p.left == 1 for p in first)
    assert found[2].match_probability == pytest.approx(by_pair[(1, 2)].match_probability, abs=1e-9)
    assert found[2].contributions == by_pair[(1, 2)].contributions
    for right, pair in found.items():
        assert pair.match_probability == pytest.approx(
            by_pair[(min(1, right), max(1, right))].match_probability, abs=1e-9
        )


def test_score_candidates_keeps_the_best_top_per_candidate(
    engine: SplinkEngine, model: TrainedModel, records: list[EngineRecord], pairs: list[ScoredPair]
) -> None:
    searching = engine.with_existing(records)
    candidates = records[:20]

    best = searching.score_candidates(SPEC, model, candidates, threshold=0.0, top=1)

    lefts = [p.left for p in best]
    assert len(lefts) == len(set(lefts))
    for pair in best:
        rivals = [
            p.match_weight
            for p in pairs
            if pair.left in (p.left, p.right) and p.match_probability >= THRESHOLD
        ]
        assert pair.match_weight >= max(rivals, default=-math.inf) - 1e-9


def test_match_store_follows_upserts_and_deletes(
    engine: SplinkEngine, model: TrainedModel, records: list[EngineRecord]
) -> None:
    store = MatchStore(SPEC, model, records[:500])
    newcomer = EngineRecord(5000, dict(records[1].attributes))
    try:
        store.score(records[1:3], threshold=THRESHOLD)  # note the SQL before the changes
        store.upsert([newcomer, records[600]])
        store.delete([0, 0, 4])

        scored = store.score(records[1:3], threshold=THRESHOLD)
    finally:
        store.close()

    current = [r for r in records[:500] if r.id not in (0, 4)] + [newcomer, records[600]]
    assert len(current) == 500
    full = {
        (p.left, p.right): p.match_probability
        for p in engine.score_all(SPEC, model, current, threshold=THRESHOLD)
    }
    assert {p.right for p in scored if p.left == 1} >= {2, 5000}
    assert not {0, 4} & {p.right for p in scored}
    for pair in scored:
        key = (min(pair.left, pair.right), max(pair.left, pair.right))
        assert pair.match_probability == pytest.approx(full[key], abs=1e-9), key


def test_score_candidates_needs_existing_records(model: TrainedModel) -> None:
    with pytest.raises(ValueError, match="needs existing records"):
        SplinkEngine().score_candidates(SPEC, model, [], threshold=0.5)


# --------------------------------------------------------------------------- warnings


def test_level_warning_flags_implausible_levels() -> None:
    assert level_warning(level="different", m=0.05, u=0.97, is_else=True) is None
    assert level_warning(level="exact", m=0.8, u=0.001, is_else=False) is None
    assert "EM has probably collapsed" in str(
        level_warning(level="different", m=0.5, u=0.9, is_else=True)
    )
    assert "never estimated" in str(level_warning(level="nickname", m=None, u=0.01, is_else=False))
    assert "m and u never estimated" in str(
        level_warning(level="nickname", m=None, u=None, is_else=False)
    )
    assert "agreement counts against a match" in str(
        level_warning(level="within a year", m=0.005, u=0.035, is_else=False)
    )
    assert "even on an exact match" in str(
        level_warning(level="exact", m=0.001, u=0.2, is_else=False, is_exact=True)
    )


def test_train_warns_about_a_level_no_training_pair_reaches(
    engine: SplinkEngine, records: list[EngineRecord]
) -> None:
    # EM blocks on the date of birth, so no training pair can differ in it.
    spec = MatchSpec(
        comparisons=(
            ComparisonSpec("given_name", "name"),
            ComparisonSpec("family_name", "name"),
            ComparisonSpec("date_of_birth", "date"),
        ),
        blocking=(("date_of_birth",),),
        training=(("date_of_birth",), ("given_name", "family_name")),
        deterministic=(("given_name", "family_name", "date_of_birth"),),
    )

    trained = engine.train(spec, records[:300], seed=1)

    flagged = {(lv.comparison, lv.level) for lv in trained.levels if lv.warning}
    assert ("date_of_birth", "day and month swapped") in flagged
    assert any("day and month swapped" in w and "never estimated" in w for w in trained.warnings)


# --------------------------------------------------------------------------- comparison kinds


def test_each_comparison_kind_places_pairs_in_its_levels(engine: SplinkEngine) -> None:
    spec = MatchSpec(
        comparisons=(
            ComparisonSpec("legal_name", "organisation"),
            ComparisonSpec("vat_id", "identifier"),
            ComparisonSpec("title", "title"),
            ComparisonSpec("price", "numeric"),
            ComparisonSpec("phone", "phone"),
            ComparisonSpec("postal_code", "postal_code"),
            ComparisonSpec("address_line1", "text"),
            ComparisonSpec("email", "email"),
            ComparisonSpec("date_of_birth", "date"),
            ComparisonSpec("contact_name", "name"),
            ComparisonSpec("country", "exact"),
        ),
        blocking=(("batch",),),
    )
    # Untrained settings score with Splink's default m and u: enough to see the levels.
    untrained = TrainedModel(parameters=settings_for(spec), prior=1e-4, levels=())
    records = [
        EngineRecord(
            1,
            {
                "batch": "x",
                "legal_name": "Acme Widgets GmbH",
                "vat_id": "DE 136 695 976",
                "title": "Ardent Port BT Speaker AA-1300 Sand",
                "price": "100.00",
                "phone": "+442079460000",
                "postal_code": "SW1A 1AA",
                "address_line1": "12 High Street",
                "email": "jane.doe@example.com",
                "date_of_birth": "1984-07-12",
                "contact_name": "Bill Jones",
                "country": "GB",
            },
        ),
        EngineRecord(
            2,
            {
                "batch": "x",
                "legal_name": "ACME WIDGETS G.m.b.H.",
                "vat_id": "de136695976",
                "title": "ARDENT PORT BT SPEAKER AA-1300",
                "price": "104",
                "phone": "+442089460000",
                "postal_code": "SW1A 2AA",
                "address_line1": "12 High Stret",
                "email": "jane.doe@work.org",
                "date_of_birth": "1984-12-07",
                "contact_name": "William Jones",
                "country": "GB",
            },
        ),
        EngineRecord(
            3,
            {
                "batch": "x",
                "legal_name": "Widgets Acme Ltd",
                "vat_id": "DE999999999",
                "title": "Ardent speaker sand",
                "price": "115",
                "phone": "+442079460001",
                "postal_code": "EC1 1AA",
                "address_line1": "High Street 12",
                "date_of_birth": "1985-03-01",
                "contact_name": "Bil Jones",
                "country": "IE",
            },
        ),
    ]

    scored = engine.score_all(spec, untrained, records, threshold=0.0)

    levels = {(p.left, p.right): [c.level for c in p.contributions] for p in scored}
    assert levels == {
        (1, 2): [
            "exact",  # the name without its legal form
            "exact",  # compact identifiers
            "70% of the words shared",
            "within 5%",
            "last 7 digits equal",
            "same first 3 characters",
            "Levenshtein <= 2",
            "same local part",
            "day and month swapped",
            "nickname",
            "exact",
        ],
        (1, 3): [
            "half the words shared",
            "different",
            "30% of the words shared",
            "within 20%",
            "one digit off",
            "different",
            "half the words shared",
            "missing, or built from the same name",
            "within a year",
            "Jaro-Winkler >= 0.92",
            "different",
        ],
        (2, 3): [
            "half the words shared",
            "different",
            "different",
            "within 20%",
            "different",
            "different",
            "half the words shared",
            "missing, or built from the same name",
            "within a year",
            "Jaro-Winkler >= 0.8",
            "different",
        ],
    }


def test_an_address_counts_once(engine: SplinkEngine) -> None:
    untrained = TrainedModel(parameters=settings_for(SPEC), prior=1e-4, levels=())
    home = {"address_line1": "2 Ocean Drive", "postal_code": "3201", "city": "Melbourne"}
    records = [
        EngineRecord(1, {"given_name": "Joseph", "family_name": "Lawson", **home}),
        EngineRecord(2, {"given_name": "Richard", "family_name": "Lawson", **home}),
        EngineRecord(
            3,
            {
                "given_name": "Joe",
                "family_name": "Lawson",
                "address_line1": "9 Beach Road",
                "postal_code": "3201",
                "city": "Melbourne",
            },
        ),
    ]

    scored = engine.score_all(SPEC, untrained, records, threshold=0.0)

    levels = {
        (p.left, p.right): {
            c.attribute: (c.level, c.match_weight)
            for c in p.contributions
            if c.attribute in ("address_line1", "postal_code", "city")
        }
        for p in scored
    }
    # The same street line implies the postcode and the city: they add nothing.
    assert levels[(1, 2)]["address_line1"][0] == "exact"
    assert levels[(1, 2)]["postal_code"] == ("missing, or implied by address_line1", 0.0)
    assert levels[(1, 2)]["city"] == ("missing, or implied by address_line1 / postal_code", 0.0)
    # Another street in the same postcode: the postcode speaks, the city is implied by it.
    assert levels[(1, 3)]["address_line1"][0] == "different"
    assert levels[(1, 3)]["postal_code"][0] == "exact"
    assert levels[(1, 3)]["city"][1] == 0.0


def _levels_of(
    engine: SplinkEngine, spec: MatchSpec, records: list[EngineRecord]
) -> dict[tuple[int, int], dict[str, tuple[str, float]]]:
    untrained = TrainedModel(parameters=settings_for(spec), prior=1e-4, levels=())
    scored = engine.score_all(spec, untrained, records, threshold=0.0)
    return {
        (p.left, p.right): {c.attribute: (c.level, c.match_weight) for c in p.contributions}
        for p in scored
    }


def test_an_email_built_from_the_same_name_counts_as_the_name(engine: SplinkEngine) -> None:
    people = [
        {"given_name": "Stefan", "family_name": "Lange", "email": "stefan.lange@gmx.de"},
        {"given_name": "Stefan", "family_name": "Lange", "email": "stefan.lange@web.de"},
        {"given_name": "Stefan", "family_name": "Lange", "email": "surfer77@gmx.de"},
        {"given_name": "Stefan", "family_name": "Lange", "email": "surfer77@web.de"},
        {"given_name": "Jürgen", "family_name": "Müller", "email": "j.mueller@gmx.de"},
        {"given_name": "Jürgen", "family_name": "Müller", "email": "j.mueller@web.de"},
    ]
    records = [EngineRecord(i, {**person, "batch": "x"}) for i, person in enumerate(people, 1)]
    spec = MatchSpec(
        comparisons=(
            ComparisonSpec("given_name", "name"),
            ComparisonSpec("family_name", "name"),
            ComparisonSpec("email", "email"),
        ),
        blocking=(("batch",),),
    )

    levels = _levels_of(engine, spec, records)

    # Namesakes write the same local part at their providers: it says no more than the
    # name (German umlauts spelt out included).
    assert levels[(1, 2)]["email"] == ("missing, or built from the same name", 0.0)
    assert levels[(5, 6)]["email"] == ("missing, or built from the same name", 0.0)
    # A local part not built from the name still speaks.
    assert levels[(3, 4)]["email"][0] == "same local part"
    assert levels[(3, 4)]["email"][1] > 0
    assert levels[(1, 3)]["email"][0] == "different"


def test_swapped_names_are_blocked_and_scored_once(engine: SplinkEngine) -> None:
    spec = MatchSpec(
        comparisons=(
            ComparisonSpec("given_name", "name"),
            ComparisonSpec("family_name", "name"),
        ),
        blocking=(("given_name", "family_name"),),
    )
    records = [
        EngineRecord(1, {"given_name": "Barnaby", "family_name": "Siggins"}),
        EngineRecord(2, {"given_name": "Siggins", "family_name": "Barnaby"}),
        EngineRecord(3, {"given_name": "Barnaby", "family_name": "Siggins"}),
        EngineRecord(4, {"given_name": "Barnaby", "family_name": "Smith"}),
    ]

    levels = _levels_of(engine, spec, records)

    # Only the blocking rule on both names: the swapped pairs are found all the same.
    assert set(levels) == {(1, 2), (1, 3), (2, 3)}
    assert levels[(1, 2)] == {
        "given_name": ("missing, or swapped with the family name", 0.0),
        "family_name": ("swapped with the given name", levels[(1, 2)]["family_name"][1]),
    }
    assert levels[(1, 2)]["family_name"][1] > 0
    assert levels[(1, 3)]["given_name"][0] == "exact"
    assert levels[(1, 3)]["family_name"][0] == "exact"


def test_identifier_levels_for_typos_and_part_numbers_in_titles(engine: SplinkEngine) -> None:
    people = MatchSpec(
        comparisons=(ComparisonSpec("national_id", "identifier", typos=True),),
        blocking=(("batch",),),
    )
    ids = ["4216940", "4216904", "4216950", "4216999", "9999999"]
    records = [EngineRecord(i, {"batch": "x", "national_id": v}) for i, v in enumerate(ids, 1)]

    levels = _levels_of(engine, people, records)

    assert levels[(1, 2)]["national_id"][0] == "one character off"  # transposed
    assert levels[(1, 3)]["national_id"][0] == "one character off"
    assert levels[(1, 4)]["national_id"][0] == "two characters off"
    assert levels[(1, 5)]["national_id"][0] == "different"

    products = MatchSpec(
        comparisons=(ComparisonSpec("mpn", "identifier", found_in=("title",)),),
        blocking=(("batch",),),
    )
    offers = [
        {"mpn": "TE0046AC", "title": "Crown Tire-Track Scraper Mat 48 X 72"},
        {"title": "New-Crown TE0046-AC - Tire-Track Scraper Mat 48 x 72 - CWNTE0046AC"},
        {"title": "New-Crown TE0046GY - Tire-Track Scraper Mat 48 x 72 Gray"},
        {"title": "Crown mat, 48 x 72"},
    ]
    records = [EngineRecord(i, {"batch": "x", **o}) for i, o in enumerate(offers, 1)]

    levels = _levels_of(engine, products, records)

    assert levels[(1, 2)]["mpn"][0] == "one's mpn in the other's title"
    # An offer that names another part (a colour variant) or none: no evidence either way.
    assert levels[(1, 3)]["mpn"][0] == "missing"
    assert levels[(1, 4)]["mpn"][0] == "missing"
    assert levels[(2, 3)]["mpn"][0] == "missing"


def test_the_prior_can_be_refined_to_what_the_trained_model_implies(
    engine: SplinkEngine, model: TrainedModel, records: list[EngineRecord]
) -> None:
    from dataclasses import replace

    # fake_1000: 2,031 true pairs among 499,500. The customer spec keeps the rules' prior.
    truth = 2031 / (1000 * 999 / 2)
    refined = engine.train(replace(SPEC, prior_from_model=True), records, seed=42)

    assert refined.parameters["probability_two_random_records_match"] == refined.prior
    assert abs(math.log(refined.prior / truth)) < abs(math.log(model.prior / truth))
    assert refined.prior == pytest.approx(truth, rel=0.35)


# --------------------------------------------------------------------------- preparation


def test_preparation_reads_names_from_a_full_name_and_knows_nicknames() -> None:
    table = prepare_table(
        SPEC,
        [
            EngineRecord(1, {"full_name": "Jan van der Berg"}),
            EngineRecord(2, {"full_name": "Berg, Bob"}),
            EngineRecord(3, {"given_name": "Élodie", "family_name": "O'Brien"}),
        ],
    ).to_pydict()

    assert table["given_name"] == ["jan", "bob", "elodie"]
    assert table["family_name"] == ["van der berg", "berg", "obrien"]
    assert table["given_name__nick"] == ["jan", "robert", "elodie"]


def test_preparation_finds_the_name_an_email_is_built_from() -> None:
    records = [
        EngineRecord(
            1, {"given_name": "Stefan", "family_name": "Müller", "email": "stefan.mueller@gmx.de"}
        ),
        EngineRecord(
            2, {"given_name": "Annabel", "family_name": "Lee", "email": "annabel.lee@x.com"}
        ),
        EngineRecord(3, {"full_name": "Sir John Smithers", "email": "johnsmithers@x.com"}),
        EngineRecord(4, {"given_name": "Ina", "family_name": "Berg", "email": "in@x.com"}),
        EngineRecord(5, {"given_name": "Ina", "family_name": "Berg", "email": "sales@x.com"}),
    ]

    table = prepare_table(SPEC, records)

    # The longest of the record's names in the local part, umlauts also spelt out; the
    # given name counts through the full name the two parts make.
    assert table.column("email__name").to_pylist() == ["mueller", "annabel", "smithers", None, None]


def test_preparation_rejects_repeated_ids() -> None:
    with pytest.raises(ValueError, match=r"repeated: \[7\]"):
        prepare_table(SPEC, [EngineRecord(7, {}), EngineRecord(7, {})])


@pytest.mark.parametrize("domain", [customer.DOMAIN, supplier.DOMAIN, product.DOMAIN])
def test_domain_match_specs_name_declared_attributes_and_build_settings(domain: Domain) -> None:
    spec = domain.match
    assert spec is not None
    named = {c.attribute for c in spec.comparisons}
    named |= {
        key.partition(":")[0]
        for rule in (*spec.blocking, *spec.training, *spec.deterministic)
        for key in rule
    }
    assert named <= set(domain.attribute_names)
    compared = {c.attribute for c in spec.comparisons}
    for rule in spec.training:
        assert compared - set(rule), rule  # EM must leave something to estimate

    settings = settings_for(spec)

    assert [c["output_column_name"] for c in settings["comparisons"]] == [
        c.attribute for c in spec.comparisons
    ]
    # A rule on both names also finds them swapped: one rule more where a spec has it.
    swapped = sum(set(rule) == {"given_name", "family_name"} for rule in spec.blocking)
    rules = settings["blocking_rules_to_generate_predictions"]
    assert len(rules) == len(spec.blocking) + swapped


def test_blocking_keys_take_a_transform() -> None:
    spec = MatchSpec(
        comparisons=(ComparisonSpec("family_name", "name"),),
        blocking=(("family_name", "date_of_birth:year"), ("date_of_birth", "given_name:initial")),
    )

    rules = [
        r["blocking_rule"] for r in settings_for(spec)["blocking_rules_to_generate_predictions"]
    ]

    assert 'SUBSTRING(l."date_of_birth", 1, 4) = SUBSTRING(r."date_of_birth", 1, 4)' in rules[0]
    assert 'SUBSTRING(l."given_name", 1, 1) = SUBSTRING(r."given_name", 1, 1)' in rules[1]
    bad = MatchSpec(comparisons=spec.comparisons, blocking=(("family_name:soundex",),))
    with pytest.raises(ValueError, match="unknown blocking key transform 'soundex'"):
        settings_for(bad)


def test_titles_are_not_names() -> None:
    table = prepare_table(
        SPEC,
        [
            EngineRecord(1, {"given_name": "Sir", "family_name": "Baronet"}),
            EngineRecord(2, {"given_name": "Dr. Anna", "family_name": "Berg Jr"}),
            EngineRecord(3, {"full_name": "Sir John Smith"}),
            EngineRecord(4, {"given_name": "Earl", "family_name": "Lord", "city": "Lady Bay"}),
            EngineRecord(5, {"given_name": "1st", "family_name": "Abernethy"}),
        ],
    ).to_pydict()

    # A name that is only a title counts as missing. Words that are names too ("Earl",
    # "Lord") stay, and so does a place.
    assert table["given_name"] == [None, "anna", "john", "earl", None]
    assert table["family_name"] == [None, "berg", "smith", "lord", "abernethy"]
    assert table["city"] == [None, None, None, "lady bay", None]


def test_a_single_name_meets_the_other_family_name(engine: SplinkEngine) -> None:
    spec = MatchSpec(
        comparisons=(
            ComparisonSpec("given_name", "name"),
            ComparisonSpec("family_name", "name"),
        ),
        blocking=(("batch",),),
    )
    people = [
        {"given_name": "Keeley"},
        {"given_name": "John", "family_name": "Keeley"},
        {"given_name": "Nessie"},
        {"given_name": "Nessie", "family_name": "Watts"},
    ]
    records = [EngineRecord(i, {**p, "batch": "x"}) for i, p in enumerate(people, 1)]

    levels = _levels_of(engine, spec, records)

    # "Keeley" alone is John Keeley's family name: scored once, on the family name.
    assert levels[(1, 2)]["given_name"] == ("missing, or swapped with the family name", 0.0)
    assert levels[(1, 2)]["family_name"][0] == "the other's only name"
    assert levels[(1, 2)]["family_name"][1] > 0
    # A single name that is the other's given name is scored as a given name.
    assert levels[(3, 4)]["given_name"][0] == "exact"
    assert levels[(3, 4)]["family_name"] == ("missing", 0.0)
    assert levels[(1, 3)]["given_name"][0] == "different"
    assert levels[(1, 3)]["family_name"] == ("missing", 0.0)
    assert levels[(1, 4)]["family_name"] == ("missing", 0.0)


def test_the_or_given_key_blocks_a_single_name_with_the_family_name(
    engine: SplinkEngine,
) -> None:
    spec = MatchSpec(
        comparisons=(ComparisonSpec("family_name", "name"),),
        blocking=(("family_name:or_given", "postal_code"),),
    )
    people = [
        {"given_name": "Keeley", "postal_code": "GL56 0DS"},
        {"given_name": "John", "family_name": "Keeley", "postal_code": "GL56 0DS"},
        {"given_name": "Ann", "family_name": "Keeley", "postal_code": "GL56 0DS"},
        {"given_name": "Keeley", "family_name": "Brown", "postal_code": "GL56 0DS"},
        {"given_name": "John", "family_name": "Keeley", "postal_code": "OX18 4US"},
    ]
    records = [EngineRecord(i, p) for i, p in enumerate(people, 1)]

    assert set(_levels_of(engine, spec, records)) == {(1, 2), (1, 3), (2, 3)}


def test_a_placeholder_birth_date_says_less_than_a_rare_one(engine: SplinkEngine) -> None:
    names = [("Ann", "Lee"), ("Ann", "Lee"), ("Bob", "Ray"), ("Bob", "Ray")]
    names += [("Cy", "Orr"), ("Di", "Fox"), ("Ed", "Pym"), ("Flo", "Ng")]
    born = ["1900-01-01", "1900-01-01", "1971-05-24", "1971-05-24"] + ["1900-01-01"] * 4
    records = [
        EngineRecord(i, {"given_name": g, "family_name": f, "date_of_birth": d})
        for i, ((g, f), d) in enumerate(zip(names, born, strict=True), 1)
    ]

    levels = _levels_of(engine, SPEC, records)

    assert levels[(1, 2)]["date_of_birth"][0] == "exact"
    assert levels[(3, 4)]["date_of_birth"][0] == "exact"
    assert levels[(1, 2)]["date_of_birth"][1] < levels[(3, 4)]["date_of_birth"][1] - 1
