"""The match store: its scores equal Splink's predict_between, and it follows every change.

Runs on fake_1000 (Splink's synthetic people, shared data) with the customer domain's default
match model, which is term-frequency adjusted on names and city and has records with missing
values. Bare Splink is the reference: ``predict_between`` of the candidates against all the
current records, with the term-frequency tables computed on those records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from splink import DuckDBAPI, Linker

from matching.engine.interface import EngineRecord, MatchSpec, TrainedModel
from matching.engine.splink_engine import MatchStore, SplinkEngine, prepare_table
from mdm.domains import customer

assert customer.DOMAIN.match is not None
SPEC: MatchSpec = customer.DOMAIN.match

# (candidate, existing) -> probability, match weight, weight per comparison, TF adjustments
Reference = dict[tuple[int, int], tuple[float, float, dict[str, float], float]]


@pytest.fixture(scope="module")
def model(records: list[EngineRecord]) -> TrainedModel:
    return SplinkEngine().train(SPEC, records, seed=42)


def _tf_columns(model: TrainedModel) -> list[str]:
    return sorted(
        {
            level["tf_adjustment_column"]
            for comparison in model.parameters["comparisons"]
            for level in comparison["comparison_levels"]
            if level.get("tf_adjustment_column")
        }
    )


def splink_between(
    model: TrainedModel,
    existing: Sequence[EngineRecord],
    candidates: Sequence[EngineRecord],
    *,
    threshold: float,
) -> Reference:
    """Bare Splink's scores of the candidates against the existing records."""
    settings = json.loads(json.dumps(model.parameters))
    settings["link_type"] = "dedupe_only"
    db_api = DuckDBAPI()
    stored = db_api.register(prepare_table(SPEC, existing, with_dataset=False))
    linker = Linker(stored, settings)
    for column in _tf_columns(model):
        linker.table_management.compute_tf_table(column)
    new = db_api.register(prepare_table(SPEC, candidates, with_dataset=False))
    predictions = linker.inference.predict_between(
        stored, new, threshold_match_probability=threshold
    )
    names = [c["output_column_name"] for c in settings["comparisons"]]
    tf = {
        c["output_column_name"]
        for c in settings["comparisons"]
        if any(level.get("tf_adjustment_column") for level in c["comparison_levels"])
    }
    adjustments = " + ".join(f'coalesce("mw_tf_adj_{name}", 0)' for name in sorted(tf))
    weights = [
        f'"mw_{name}"' + (f' + coalesce("mw_tf_adj_{name}", 0)' if name in tf else "")
        for name in names
    ]
    rows = db_api.duckdb_con.execute(
        f"select unique_id_r, unique_id_l, match_probability, match_weight, {adjustments}, "  # noqa: S608
        f"{', '.join(weights)} from {predictions.physical_name} "
        "where unique_id_l <> unique_id_r"
    ).fetchall()
    return {
        (row[0], row[1]): (row[2], row[3], dict(zip(names, row[5:], strict=True)), row[4])
        for row in rows
    }


def assert_equal_to_splink(
    store: MatchStore,
    model: TrainedModel,
    existing: Sequence[EngineRecord],
    candidates: Sequence[EngineRecord],
    *,
    threshold: float = 0.0,
) -> Reference:
    expected = splink_between(model, existing, candidates, threshold=threshold)

    scored = store.score(candidates, threshold=threshold, top=10**6)

    got = {(p.left, p.right): p for p in scored}
    assert set(got) == set(expected)  # the same candidates: exactly the blocked pairs
    for key, (probability, weight, by_comparison, _) in expected.items():
        pair = got[key]
        assert pair.match_probability == pytest.approx(probability, abs=1e-9), key
        assert pair.match_weight == pytest.approx(weight, abs=1e-9), key
        assert {c.attribute: c.match_weight for c in pair.contributions} == pytest.approx(
            by_comparison, abs=1e-9
        ), key
    return expected


def variants(records: Sequence[EngineRecord]) -> list[EngineRecord]:
    """Candidates of every sort: as stored, misspelt, with a value no stored record has,
    with missing values, and one that blocks with nothing."""
    out = [records[1], records[2], records[10]]  # stored ones: never paired with themselves
    for number, record in enumerate(records[20:40]):
        attributes = dict(record.attributes)
        if number % 4 == 0 and attributes.get("family_name"):
            attributes["family_name"] = str(attributes["family_name"]) + "x"  # a typo
        elif number % 4 == 1:
            attributes["city"] = None  # missing
            attributes["email"] = None
        elif number % 4 == 2:
            attributes["given_name"] = "Zebedeus"  # in no stored record: no term frequency
        out.append(EngineRecord(-1 - number, attributes))
    out.append(EngineRecord(-100, {"given_name": "Nobody", "family_name": "Atall"}))
    return out


@pytest.mark.parametrize("merge_at", [10, 10**9], ids=["base", "delta"])
def test_scores_equal_splink_predict_between_with_term_frequencies_and_nulls(
    model: TrainedModel, records: list[EngineRecord], merge_at: int, monkeypatch
) -> None:
    # Below merge_at records the store keeps them in its delta, above in its sorted base.
    monkeypatch.setattr(MatchStore, "_MIN_DELTA", merge_at)
    store = MatchStore(SPEC, model, records)
    candidates = variants(records)
    try:
        expected = assert_equal_to_splink(store, model, records, candidates)
    finally:
        store.close()

    weights = [w for _, _, by_comparison, _ in expected.values() for w in by_comparison.values()]
    assert len(expected) > 50
    assert {c for c, _ in expected} >= {1, 2, 10, -1, -2, -3}
    assert not {c for c, _ in expected} & {-100}
    # The pairs exercise term-frequency adjustments and missing values (weight 0).
    adjusted = [tf for _, _, _, tf in expected.values() if tf != 0]
    assert len(adjusted) > 10
    assert 0.0 in weights


def test_a_threshold_keeps_the_same_pairs_as_splink(
    model: TrainedModel, records: list[EngineRecord]
) -> None:
    store = MatchStore(SPEC, model, records)
    try:
        expected = assert_equal_to_splink(store, model, records, variants(records), threshold=0.9)
        again = store.score(variants(records), threshold=0.9, top=10**6)
    finally:
        store.close()

    assert 0 < len(expected) == len(again)
    assert all(probability >= 0.9 for probability, _, _, _ in expected.values())


def test_the_store_follows_upserts_and_deletes_in_base_and_delta(
    model: TrainedModel, records: list[EngineRecord], monkeypatch
) -> None:
    monkeypatch.setattr(MatchStore, "_MIN_DELTA", 100)
    current = {r.id: r for r in records[:800]}
    store = MatchStore(SPEC, model, current.values())  # 800 records: all in the base
    candidates = variants(records)
    try:
        # A base record changes its names (its old keys must no longer find it), another
        # takes a candidate's family name; some go, one of them comes back; new ones come.
        changed = []
        for number, record in enumerate(records[40:70]):
            attributes = dict(record.attributes)
            source = records[20 + number % 20].attributes
            attributes["family_name"] = source.get("family_name")
            attributes["given_name"] = source.get("given_name")
            changed.append(EngineRecord(record.id, attributes))
        store.upsert(changed)
        newcomers = [EngineRecord(5000 + r.id, dict(r.attributes)) for r in records[900:960]]
        store.upsert(newcomers)
        store.delete([1, 2, 45, 46, 5900, 5901, 77777])
        store.upsert([records[2]])
        for record in [*changed, *newcomers, records[2]]:
            current[record.id] = record
        for gone in (1, 45, 46, 5900, 5901):
            del current[gone]

        assert len(store) == len(current)
        assert 1 not in store and 2 in store and 5900 not in store
        assert_equal_to_splink(store, model, list(current.values()), candidates)

        # Past the delta's limit everything merges into a new base: still the same.
        more = [EngineRecord(7000 + r.id, dict(r.attributes)) for r in records[:120]]
        store.upsert(more)
        current.update({r.id: r for r in more})
        store.delete([3, 7003])
        del current[3], current[7003]

        assert len(store) == len(current)
        assert_equal_to_splink(store, model, list(current.values()), candidates)
    finally:
        store.close()
