"""Training and full match runs, with a fixed-score engine standing in for Splink.

A unit test of the matching services alone; the real engine is tested in test_engine.py and
end to end in test_match_end_to_end.py.
"""

from collections.abc import Iterable

import pytest

from matching.engine.interface import (
    Contribution,
    EngineRecord,
    LevelReport,
    MatchSpec,
    ScoredPair,
    TrainedModel,
)
from matching.models import MatchModel, MatchPair, MatchRun, PairConstraint
from matching.services import (
    MatchingError,
    match_model_train,
    match_pending,
    match_run_full,
)
from mdm.models import CrossReference, RecordChange, SourceRecord
from stewardship.models import ReviewTask


class FixedEngine:
    """Scores given pairs of source keys with given probabilities."""

    def __init__(self, scores: dict[tuple[str, str], float], keys: dict[str, int]) -> None:
        self.scores = dict(scores)
        self.keys = keys

    def train(self, spec: MatchSpec, records: Iterable[EngineRecord], *, seed: int = 42):
        return TrainedModel(
            parameters={"fixed": True, "records": len(list(records))},
            prior=0.001,
            levels=(LevelReport("email", "exact", 0.9, 0.001, 9.8),),
            warnings=("email: example warning",),
        )

    def score_all(self, spec, model, records, *, threshold):
        return [
            ScoredPair(
                self.keys[a],
                self.keys[b],
                p,
                10.0 if p > 0.9 else 1.0,
                (Contribution("email", "exact", 9.8),),
            )
            for (a, b), p in self.scores.items()
            if p >= threshold
        ]

    def score_candidates(self, spec, model, candidates, *, threshold, top=10):
        by_id = {v: k for k, v in self.keys.items()}
        out = []
        for candidate in candidates:
            key = by_id.get(candidate.id)
            for (a, b), p in self.scores.items():
                if p >= threshold and key in (a, b):
                    other = b if key == a else a
                    out.append(
                        ScoredPair(candidate.id, self.keys[other], p, 1.0, self.contributions)
                    )
        return out

    contributions = (Contribution("email", "exact", 9.8),)


@pytest.fixture
def keys(api):
    records = [{"source_key": k, "given_name": f"Person {k}"} for k in "ABCDEFGHIJKL"]
    api.post("/api/v1/customer/records", {"records": records}, format="json")
    return dict(SourceRecord.objects.values_list("source_key", "id"))


SCORES = {("A", "B"): 0.99, ("C", "D"): 0.8, ("E", "F"): 0.97, ("G", "H"): 0.3}


@pytest.fixture
def engine(keys):
    return FixedEngine(SCORES, keys)


def golden(keys, key):
    return CrossReference.objects.get(record_id=keys[key]).golden_id


def test_training_stores_a_version_and_activates_the_first(engine):
    first = match_model_train(domain="customer", engine=engine)
    second = match_model_train(domain="customer", engine=engine)

    assert (first.version, second.version) == (1, 2)
    first.refresh_from_db()
    assert first.is_active and not second.is_active
    assert first.report["warnings"] == ["email: example warning"]
    assert first.report["levels"][0]["m_probability"] == 0.9
    assert first.records_trained == 12

    third = match_model_train(domain="customer", engine=engine, activate=True)
    assert list(MatchModel.objects.filter(is_active=True)) == [third]


def test_match_needs_an_active_model(engine):
    with pytest.raises(MatchingError, match=r"train one with `manage\.py train_model customer`"):
        match_run_full(domain="customer", engine=engine)


def test_full_run_merges_opens_reviews_and_honours_constraints(engine, keys):
    match_model_train(domain="customer", engine=engine)
    PairConstraint.objects.create(
        domain="customer", left_id=keys["E"], right_id=keys["F"], kind="cannot_link"
    )

    run = match_run_full(domain="customer", engine=engine)

    assert run.status == "succeeded"
    assert golden(keys, "A") == golden(keys, "B")
    assert golden(keys, "C") != golden(keys, "D")
    assert golden(keys, "E") != golden(keys, "F")
    assert CrossReference.objects.count() == 12
    task = ReviewTask.objects.get()
    assert (task.left_record_id, task.right_record_id, task.match_probability) == (
        keys["C"],
        keys["D"],
        0.8,
    )
    assert task.explanation == [
        {"attribute": "email", "level": "exact", "match_weight": 9.8, "left": None, "right": None}
    ]
    assert MatchPair.objects.count() == 3  # G~H is below the lower threshold
    assert run.counts["refused_by_constraints"] == 1
    assert run.counts["golden_created"] == 11  # 12 records, A and B merged
    assert RecordChange.objects.count() == 0  # consumed


def test_a_second_run_changes_nothing(engine, keys):
    match_model_train(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)

    run = match_run_full(domain="customer", engine=engine)

    assert run.counts["golden_created"] == run.counts["golden_changed"] == 0
    assert run.counts["review_tasks_opened"] == 0
    assert ReviewTask.objects.filter(status="open").count() == 1


def test_a_must_link_decision_merges_and_closes_the_task(engine, keys):
    match_model_train(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)
    c, d = golden(keys, "C"), golden(keys, "D")
    PairConstraint.objects.create(
        domain="customer", left_id=keys["C"], right_id=keys["D"], kind="must_link"
    )

    run = match_run_full(domain="customer", engine=engine)

    assert golden(keys, "C") == golden(keys, "D") == min(c, d)
    assert ReviewTask.objects.get().status == "obsolete"
    assert run.counts["golden_retired"] == 1
    assert MatchRun.objects.filter(kind="full").count() == 2


def push(api, *keys):
    records = [{"source_key": k, "given_name": f"Person {k}"} for k in keys]
    api.post("/api/v1/customer/records", {"records": records}, format="json")
    return dict(SourceRecord.objects.values_list("source_key", "id"))


def test_incremental_run_joins_reviews_and_founds(api, engine, keys):
    match_model_train(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)
    keys.update(push(api, "M", "N", "O"))
    engine.scores.update({("M", "A"): 0.99, ("N", "C"): 0.8})

    run = match_pending(domain="customer", engine=engine)

    assert run is not None and run.counts["records"] == 3
    assert golden(keys, "M") == golden(keys, "A") == golden(keys, "B")  # joined
    assert golden(keys, "N") != golden(keys, "C")  # review band
    assert golden(keys, "O") not in {golden(keys, k) for k in "ABCDEFGHIJKLMN"}  # founded
    task = ReviewTask.objects.get(left_record_id=keys["C"], right_record_id=keys["N"])
    assert task.status == "open"
    assert RecordChange.objects.count() == 0
    assert match_pending(domain="customer", engine=engine) is None  # nothing left


def test_incremental_run_honours_cannot_link_between_two_goldens(api, engine, keys):
    match_model_train(domain="customer", engine=engine)
    PairConstraint.objects.create(
        domain="customer", left_id=keys["E"], right_id=keys["F"], kind="cannot_link"
    )
    match_run_full(domain="customer", engine=engine)
    keys.update(push(api, "P"))
    engine.scores.update({("P", "E"): 0.99, ("P", "F"): 0.98})

    match_pending(domain="customer", engine=engine)

    assert golden(keys, "P") == golden(keys, "E")
    assert golden(keys, "E") != golden(keys, "F")


def test_nothing_happens_before_a_model_exists(api, engine, keys):
    assert match_pending(domain="customer", engine=engine) is None
    assert RecordChange.objects.count() == 12  # the markers wait for the first run


def _pairs_and_tasks():
    pairs = sorted(
        MatchPair.objects.values_list(
            "left_id", "right_id", "match_probability", "match_weight", "contributions"
        )
    )
    tasks = sorted(
        ReviewTask.objects.values_list(
            "left_record_id", "right_record_id", "status", "pair__left_id", "explanation"
        )
    )
    return pairs, tasks


class ExplainingEngine(FixedEngine):
    """Pairs with the higher id first and contributions that carry values."""

    explained = (
        Contribution("email", "exact", 9.8, "ann@example.com", "ann@example.com"),
        Contribution("date_of_birth", "within a year", -1.25, "1980-01-02", None),
    )

    def score_all(self, spec, model, records, *, threshold):
        return [
            ScoredPair(self.keys[b], self.keys[a], p, 3.5, self.explained)
            for (a, b), p in self.scores.items()
            if p >= threshold
        ]


def test_pairs_written_with_copy_are_those_the_orm_writes(require_postgres, keys, monkeypatch):
    from mdm import bulk

    engine = ExplainingEngine(SCORES, keys)
    engine_copy = ExplainingEngine(SCORES, keys)
    match_model_train(domain="customer", engine=engine)
    with monkeypatch.context() as patch:
        patch.setattr(bulk, "_use_copy", lambda: False)
        match_run_full(domain="customer", engine=engine)
        orm = _pairs_and_tasks()

    match_run_full(domain="customer", engine=engine_copy)  # replaces the pairs, with COPY

    assert _pairs_and_tasks() == orm
    pairs, tasks = orm
    assert len(pairs) == 3
    assert pairs[0][4][1] == {
        "attribute": "date_of_birth",
        "level": "within a year",
        "match_weight": -1.25,
        "left": "1980-01-02",
        "right": None,
    }
    # The open task follows its pair into the new run.
    assert [(t[2], t[3]) for t in tasks] == [("open", keys["C"])]
