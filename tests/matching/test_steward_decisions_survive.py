"""Matching never undoes a steward: merges, splits and corrections survive later match runs.

With a fixed-score engine (a unit test of the services together), then with the real engine
(Splink on DuckDB) on the demo data.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db.models import Count

from matching.services import match_model_train, match_pending, match_run_full
from matching.store import stores_clear
from mdm.models import STEWARD_SOURCE, CrossReference, GoldenRecord, RecordChange, SourceRecord
from mdm.selectors import golden_record_timeline
from mdm.services.lifecycle import (
    golden_attribute_correct,
    golden_record_merge,
    golden_record_split,
)
from tests.matching.test_services import FixedEngine


@pytest.fixture
def steward(db):
    user = User.objects.create_user("stella")
    user.groups.add(Group.objects.get(name="steward"))
    return user


def push(api, **names):
    records = [{"source_key": k, "given_name": v, "family_name": "Lee"} for k, v in names.items()]
    api.post("/api/v1/customer/records", {"records": records}, format="json")
    return dict(SourceRecord.objects.values_list("source_key", "id"))


def golden(keys, key):
    return CrossReference.objects.get(record_id=keys[key]).golden_id


@pytest.fixture
def matched(api):
    keys = push(api, **{k: f"Person {k}" for k in "ABCDEFGHIJKL"})
    engine = FixedEngine({("A", "B"): 0.99, ("B", "C"): 0.99, ("D", "E"): 0.1}, keys)
    match_model_train(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)
    assert golden(keys, "A") == golden(keys, "B") == golden(keys, "C")
    return keys, engine


def test_a_split_survives_full_and_incremental_matching(api, matched, steward):
    keys, engine = matched
    abc = golden(keys, "A")
    split = golden_record_split(
        domain="customer", golden_id=abc, record_ids=[keys["C"]], actor=steward
    )

    match_run_full(domain="customer", engine=engine)

    assert golden(keys, "A") == golden(keys, "B") == abc
    assert golden(keys, "C") == split.target_id
    # C changes at its source and now scores even higher with A: still apart.
    push(api, C="Person C (updated)")
    engine.scores[("C", "A")] = 0.999
    run = match_pending(domain="customer", engine=engine)
    assert run is not None and run.counts["records"] == 1
    assert golden(keys, "C") == split.target_id != golden(keys, "A")
    match_run_full(domain="customer", engine=engine)
    assert golden(keys, "C") == split.target_id != golden(keys, "A")


def test_a_merge_and_a_correction_survive_matching(api, matched, steward):
    keys, engine = matched
    d, e, abc = golden(keys, "D"), golden(keys, "E"), golden(keys, "A")
    golden_record_merge(domain="customer", golden_ids=[d, e], actor=steward, target_id=d)
    golden_attribute_correct(
        domain="customer", golden_id=abc, attribute="given_name", value="Ann", actor=steward
    )

    match_run_full(domain="customer", engine=engine)
    push(api, D="Person D (moved)", A="Person A (renamed)")
    match_pending(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)

    assert golden(keys, "D") == golden(keys, "E") == d
    assert GoldenRecord.objects.get(pk=e).status == "retired"
    record = GoldenRecord.objects.get(pk=abc)
    assert record.attributes["given_name"] == "Ann"
    assert record.provenance["given_name"]["source"] == STEWARD_SOURCE
    assert record.members.filter(record__source_system__code=STEWARD_SOURCE).count() == 1


@pytest.mark.slow
def test_a_split_survives_the_real_engine_on_the_demo_data(db, steward):
    stores_clear()
    try:
        call_command("load_demo", "--no-tokens", "--no-match", stdout=StringIO())
        call_command("train_model", "customer", stdout=StringIO())
        match_run_full(domain="customer")
        big = (
            GoldenRecord.objects.filter(domain="customer", status="active")
            .annotate(n=Count("members"))
            .filter(n__gte=3)
            .order_by("-n", "pk")
            .first()
        )
        assert big is not None
        members = sorted(big.members.values_list("record_id", flat=True))
        out = members[0]
        split = golden_record_split(
            domain="customer", golden_id=big.pk, record_ids=[out], actor=steward
        )
        before = dict(CrossReference.objects.values_list("record_id", "golden_id"))

        match_run_full(domain="customer")

        after = dict(CrossReference.objects.values_list("record_id", "golden_id"))
        assert after[out] == split.target_id
        assert all(after[r] == big.pk for r in members[1:])
        assert after == before  # nothing the steward did moved
        # Incremental matching looks at the split-off record again (the marker an ingest of
        # a change writes): it stays apart.
        record = SourceRecord.objects.get(pk=out)
        RecordChange.objects.create(
            record=record, domain="customer", kind="upsert", created_at=record.received_at
        )
        match_pending(domain="customer")
        assert CrossReference.objects.get(record_id=out).golden_id == split.target_id
        assert set(
            CrossReference.objects.filter(golden_id=big.pk).values_list("record_id", flat=True)
        ) == set(members[1:])
    finally:
        stores_clear()


def test_an_ingest_reaches_the_golden_record_but_not_past_a_correction(api, matched, steward):
    keys, engine = matched
    abc, d = golden(keys, "A"), golden(keys, "D")
    golden_attribute_correct(
        domain="customer", golden_id=abc, attribute="given_name", value="Ann", actor=steward
    )
    version = GoldenRecord.objects.get(pk=d).version

    push(api, A="Person A (renamed)", D="Dee")
    match_pending(domain="customer", engine=engine)

    changed = GoldenRecord.objects.get(pk=d)  # a record that stayed where it was
    assert (changed.attributes["given_name"], changed.version) == ("Dee", version + 1)
    last = changed.history.order_by("-history_id").first()
    assert last.history_change_reason.endswith("source record changed")
    assert golden_record_timeline(golden_id=d)[0].kind == "ingest"
    assert GoldenRecord.objects.get(pk=abc).attributes["given_name"] == "Ann"
