"""Training and full match runs, with a fixed-score engine standing in for Splink.

A unit test of the matching services alone; the real engine is tested in test_engine.py and
end to end in test_match_end_to_end.py.
"""

from collections.abc import Iterable

import orjson
import pytest
from django.db import connection

from matching.engine.interface import (
    Contribution,
    EngineRecord,
    LevelReport,
    MatchSpec,
    ScoredPair,
    ScoredPairs,
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


def test_a_marker_whose_record_is_gone_is_consumed_without_it(api, engine, keys):
    match_model_train(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)
    keys.update(push(api, "M", "N"))
    # No database constraint ties a marker to its record: one removed by SQL leaves it.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM mdm_sourcerecord WHERE id = %s", [keys["M"]])
    assert RecordChange.objects.filter(record_id=keys["M"]).count() == 1

    run = match_pending(domain="customer", engine=engine)

    assert run is not None
    assert CrossReference.objects.filter(record_id=keys["M"]).count() == 0
    assert golden(keys, "N") not in {golden(keys, k) for k in "ABCDEFGHIJKL"}  # founded
    assert RecordChange.objects.count() == 0
    assert match_pending(domain="customer", engine=engine) is None


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

    MatchPair.objects.all().delete()  # unchanged pairs stay: make the next run write them
    match_run_full(domain="customer", engine=engine_copy)  # writes the pairs, with COPY

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


def test_two_new_records_that_match_each_other_make_one_pair(api, engine, keys):
    match_model_train(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)
    keys.update(push(api, "Q", "R"))
    engine.scores.update({("Q", "R"): 0.99})  # each is scored against the other

    run = match_pending(domain="customer", engine=engine)

    assert run is not None and run.counts["pairs"] == 1
    assert golden(keys, "Q") == golden(keys, "R")
    low, high = sorted((keys["Q"], keys["R"]))
    assert MatchPair.objects.filter(left_id=low, right_id=high).count() == 1


class ColumnEngine(ExplainingEngine):
    """The same pairs by column, lower id first, contributions as JSON text (as Splink's)."""

    def score_all(self, spec, model, records, *, threshold):
        pairs = super().score_all(spec, model, records, threshold=threshold)
        ordered = [(min(p.left, p.right), max(p.left, p.right), p) for p in pairs]
        return ScoredPairs(
            left=[left for left, _, _ in ordered],
            right=[right for _, right, _ in ordered],
            match_probability=[p.match_probability for _, _, p in ordered],
            match_weight=[p.match_weight for _, _, p in ordered],
            contributions_json=[orjson.dumps(p.contributions).decode() for _, _, p in ordered],
        )


@pytest.mark.parametrize("copy", [True, False], ids=["COPY", "ORM"])
def test_pairs_by_column_are_written_as_pairs_as_objects(request, keys, monkeypatch, copy):
    from mdm import bulk

    if copy:
        request.getfixturevalue("require_postgres")
    else:
        monkeypatch.setattr(bulk, "_use_copy", lambda: False)
    match_model_train(domain="customer", engine=ExplainingEngine(SCORES, keys))
    match_run_full(domain="customer", engine=ExplainingEngine(SCORES, keys))
    as_objects = _pairs_and_tasks()
    golden_as_objects = sorted(CrossReference.objects.values_list("record_id", "golden_id"))

    MatchPair.objects.all().delete()  # unchanged pairs stay: make the next run write them
    run = match_run_full(domain="customer", engine=ColumnEngine(SCORES, keys))

    assert run.counts["pairs_written"] == 3
    assert _pairs_and_tasks() == as_objects
    assert sorted(CrossReference.objects.values_list("record_id", "golden_id")) == (
        golden_as_objects
    )
    assert run.counts["pairs"] == 3
    assert run.counts["auto_merge_pairs"] == 2
    assert run.counts["golden_changed"] == run.counts["golden_created"] == 0
    assert len(as_objects[0]) == 3
    assert as_objects[0][0][4][0]["left"] == "ann@example.com"


class TextEngine(ColumnEngine):
    """ColumnEngine whose contributions JSON is the text given (any valid JSON)."""

    def __init__(self, scores, keys, text):
        super().__init__(scores, keys)
        self.text = text

    def score_all(self, spec, model, records, *, threshold):
        pairs = super().score_all(spec, model, records, threshold=threshold)
        pairs.contributions_json = [self.text] * len(pairs)
        return pairs


@pytest.mark.parametrize(
    "text",
    [
        orjson.dumps(ColumnEngine.explained).decode(),
        # what COPY's text format escapes: a backslash (in a JSON escape), tab, newlines
        '[{"attribute": "family_name",\n\t"left": "O\\"Brien \\\\ \\t",\r\n'
        '"level": "exact", "match_weight": 1e-07, "right": null}]',
    ],
    ids=["compact", "escapes"],
)
def test_stored_pairs_keep_the_contributions_text_the_engine_wrote(require_postgres, keys, text):
    # Given an engine that gives its pairs by column, contributions as JSON text
    match_model_train(domain="customer", engine=TextEngine(SCORES, keys, text))

    # When a full run stores them (COPY)
    run = match_run_full(domain="customer", engine=TextEngine(SCORES, keys, text))

    # Then the database holds that text as it is (json: jsonb would re-order the keys and
    # re-space the text), and the ORM reads the same contributions back
    with connection.cursor() as cursor:
        cursor.execute("SELECT contributions::text FROM matching_matchpair")
        stored = [row[0] for row in cursor.fetchall()]
    assert run.counts["pairs_written"] == 3
    assert stored == [text] * 3
    assert [p.contributions for p in MatchPair.objects.all()] == [orjson.loads(text)] * 3


def test_scored_pairs_are_a_sequence_of_pairs():
    contributions = (Contribution("email", "exact", 9.8, "a@x.org", None),)
    pairs = ScoredPairs(
        left=[1, 3],
        right=[2, 4],
        match_probability=[0.99, 0.7],
        match_weight=[7.5, 1.25],
        contributions_json=[orjson.dumps(contributions).decode(), "[]"],
    )

    assert len(pairs) == 2
    assert pairs[0] == ScoredPair(1, 2, 0.99, 7.5, contributions)
    assert pairs[-1] == ScoredPair(3, 4, 0.7, 1.25, ())
    assert pairs[1:] == [ScoredPair(3, 4, 0.7, 1.25, ())]
    assert list(pairs) == [pairs[0], pairs[1]]
    with pytest.raises(IndexError):
        pairs[2]
    with pytest.raises(ValueError, match="same length"):
        ScoredPairs(
            left=[1], right=[], match_probability=[], match_weight=[], contributions_json=[]
        )


def test_copy_writes_awkward_values_as_they_are(require_postgres, keys):
    from django.utils import timezone

    from mdm import bulk

    model = match_model_train(domain="customer", engine=FixedEngine(SCORES, keys))
    awkward = "tab\there\nnew line \\ backslash \\N \r ü \u2028"
    now = timezone.now()
    columns: tuple[str, ...] = ("domain", "model_id", "left_id", "right_id")
    columns += ("match_probability", "match_weight", "contributions", "scored_at")
    bulk.rows_create(
        MatchPair,
        columns,
        [
            ("customer", model.pk, keys["A"], keys["B"], 0.1 + 0.2, float("-inf"), [awkward], now),
            (
                "customer",
                model.pk,
                keys["C"],
                keys["D"],
                1e-300,
                -0.0,
                bulk.RawJSON('{"a": 1}'),
                now,
            ),
        ],
    )

    rows = sorted(
        MatchPair.objects.values_list(
            "left_id", "match_probability", "match_weight", "contributions", "scored_at"
        )
    )
    assert rows == [
        (keys["A"], 0.1 + 0.2, float("-inf"), [awkward], now),
        (keys["C"], 1e-300, -0.0, {"a": 1}, now),
    ]


def test_a_rerun_over_unchanged_data_writes_nothing(engine, keys):
    from mdm.models import GoldenRecord
    from sync.models import ChangeEvent

    match_model_train(domain="customer", engine=engine)
    first = match_run_full(domain="customer", engine=engine)
    pairs = sorted(MatchPair.objects.values_list("id", "left_id", "right_id"))
    task = ReviewTask.objects.get()
    written = (
        GoldenRecord.history.count(),
        CrossReference.history.count(),
        ChangeEvent.objects.count(),
    )

    run = match_run_full(domain="customer", engine=engine)

    assert (first.counts["pairs_written"], run.counts["pairs_written"]) == (3, 0)
    assert sorted(MatchPair.objects.values_list("id", "left_id", "right_id")) == pairs
    assert ReviewTask.objects.get().pair_id == task.pair_id  # the task keeps its pair
    assert (
        GoldenRecord.history.count(),
        CrossReference.history.count(),
        ChangeEvent.objects.count(),
    ) == written


def test_a_rerun_rewrites_the_pairs_that_changed(api, engine, keys):
    match_model_train(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)
    before = dict(MatchPair.objects.values_list("left_id", "id"))
    engine.scores[("C", "D")] = 0.85  # rescored
    api.post(  # E changes: its pairs' contributions may carry its old values
        "/api/v1/customer/records",
        {"records": [{"source_key": "E", "given_name": "Person E2"}]},
        format="json",
    )

    run = match_run_full(domain="customer", engine=engine)

    after = dict(MatchPair.objects.values_list("left_id", "id"))
    assert run.counts["pairs_written"] == 2
    assert after[keys["A"]] == before[keys["A"]]  # A~B kept as it was
    assert after[keys["C"]] != before[keys["C"]]
    assert after[keys["E"]] != before[keys["E"]]
    task = ReviewTask.objects.get(status="open")
    assert (task.pair_id, task.match_probability) == (after[keys["C"]], 0.85)
    assert MatchPair.objects.get(pk=after[keys["C"]]).match_probability == 0.85


def test_a_full_run_rebuilds_a_golden_record_whose_member_changed(api, engine, keys):
    from mdm.models import GoldenRecord

    match_model_train(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)
    version = GoldenRecord.objects.get(pk=golden(keys, "L")).version
    api.post(  # L changes and stays alone: its cluster is the same, its values are not
        "/api/v1/customer/records",
        {"records": [{"source_key": "L", "given_name": "Person L2"}]},
        format="json",
    )
    assert RecordChange.objects.filter(record_id=keys["L"]).exists()

    run = match_run_full(domain="customer", engine=engine)

    record = GoldenRecord.objects.get(pk=golden(keys, "L"))
    assert record.attributes["given_name"] == "Person L2"
    assert record.version == version + 1
    assert run.counts["golden_changed"] == 1
    assert not RecordChange.objects.exists()


def test_pairs_go_with_their_record_or_model_without_a_database_constraint(engine, keys):
    # The database does not check the pairs' keys (derived data, db_constraint=False): the
    # writers that delete what a pair points at delete the pair themselves.
    from matching.erasure import erase
    from mdm.erasure import ErasureSubject

    match_model_train(domain="customer", engine=engine)
    model = match_model_train(domain="customer", engine=engine, activate=True)
    match_run_full(domain="customer", engine=engine)
    pair_keys = {(keys["A"], keys["B"]), (keys["C"], keys["D"]), (keys["E"], keys["F"])}
    assert set(MatchPair.objects.values_list("left_id", "right_id")) == pair_keys
    with connection.cursor() as cursor:
        foreign_keys = {
            c["foreign_key"][0]
            for c in connection.introspection.get_constraints(
                cursor, MatchPair._meta.db_table
            ).values()
            if c["foreign_key"]
        }
    assert foreign_keys == set()

    # Erasure deletes the person's pairs (their explanations hold the compared values) ...
    subject = ErasureSubject(
        request_id=1,
        domain="customer",
        record_ids=frozenset({keys["E"]}),
        golden_ids=frozenset(),
        needles=(),
    )
    assert erase(subject)["match_pairs"] == 1
    # ... deleting a record deletes its pairs through the ORM's cascade ...
    CrossReference.objects.filter(record_id=keys["A"]).delete()
    SourceRecord.objects.filter(pk=keys["A"]).delete()
    assert set(MatchPair.objects.values_list("left_id", "right_id")) == {(keys["C"], keys["D"])}
    # ... and so does deleting the model that scored them.
    model.delete()
    assert not MatchPair.objects.exists()
