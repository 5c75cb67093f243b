"""Merge, split, correct and undo golden records: membership, attributes, constraints, audit."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from matching.models import PairConstraint
from mdm.models import STEWARD_SOURCE, CrossReference, GoldenOperation, GoldenRecord, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.lifecycle import (
    GoldenConflictError,
    GoldenNotFoundError,
    GoldenOperationError,
    golden_attribute_correct,
    golden_record_merge,
    golden_record_split,
    golden_record_undo,
)

URL = "/api/v1/customer/records"


@pytest.fixture
def steward(db):
    user = User.objects.create_user("stella", password="pw")
    user.groups.add(Group.objects.get(name="steward"))
    return user


@pytest.fixture
def records(api):
    people = [
        {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "email": "ann@example.com"},
        {"source_key": "B", "given_name": "Anne", "family_name": "Lee", "phone": "+442079460958"},
        {"source_key": "C", "given_name": "Bob", "family_name": "Ray"},
        {"source_key": "D", "given_name": "Bob", "family_name": "Ray", "email": "bob@example.com"},
        {"source_key": "E", "given_name": "Cy", "family_name": "Day"},
    ]
    assert api.post(URL, {"records": people}, format="json").status_code == 200
    ids = dict(SourceRecord.objects.values_list("source_key", "id"))
    groups = ["AB", "CD", "E"]
    clusters = {ids[k]: i for i, group in enumerate(groups) for k in group}
    golden_records_apply_clusters(domain="customer", clusters=clusters)
    return ids


def golden_of(records, key):
    return CrossReference.objects.get(record_id=records[key]).golden_id


def state():
    """Everything an undo must restore, as plain data."""
    goldens = {
        g.pk: (g.status, g.survivor_id, g.attributes, g.provenance)
        for g in GoldenRecord.objects.order_by("pk")
    }
    members = dict(CrossReference.objects.values_list("record_id", "golden_id"))
    constraints = set(PairConstraint.objects.values_list("left_id", "right_id", "kind"))
    return goldens, members, constraints


def test_merge_moves_members_retires_the_others_and_must_links(records, steward):
    ab, cd = golden_of(records, "A"), golden_of(records, "C")
    versions = dict(GoldenRecord.objects.values_list("pk", "version"))

    op = golden_record_merge(
        domain="customer", golden_ids=[ab, cd], actor=steward, reason="same household"
    )

    assert (op.kind, op.target_id, op.actor, op.golden_ids) == ("merge", ab, steward, [ab, cd])
    assert {golden_of(records, k) for k in "ABCD"} == {ab}
    retired = GoldenRecord.objects.get(pk=cd)
    assert (retired.status, retired.survivor_id) == ("retired", ab)
    assert retired.version == versions[cd] + 1
    survivor = GoldenRecord.objects.get(pk=ab)
    assert survivor.version == versions[ab] + 1
    assert survivor.attributes["phone"] == "+442079460958"
    assert survivor.attributes["email"] in {"ann@example.com", "bob@example.com"}
    links = set(PairConstraint.objects.values_list("left_id", "right_id", "kind"))
    a = records["A"]
    assert links == {(a, records[k], "must_link") for k in "BCD"}
    last = survivor.history.order_by("-history_id").first()
    assert last.history_change_reason == f"merge #{op.pk}: same household"
    assert last.history_user == steward
    assert last.version == survivor.version
    moved = CrossReference.history.filter(record_id=records["C"]).order_by("-history_id").first()
    assert (moved.history_user, moved.golden_id, moved.linked_by) == (steward, ab, "steward")


def test_merge_then_undo_restores_membership_attributes_and_constraints(records, steward):
    ab, cd, e = (golden_of(records, k) for k in "ACE")
    before = state()
    versions = dict(GoldenRecord.objects.values_list("pk", "version"))
    op = golden_record_merge(domain="customer", golden_ids=[cd, ab, e], actor=steward, target_id=e)
    assert GoldenRecord.objects.get(pk=e).members.count() == 5

    undo = golden_record_undo(operation_id=op.pk, actor=steward, reason="wrong call")

    assert state() == before
    assert (undo.kind, undo.undoes_id) == ("undo", op.pk)
    after = dict(GoldenRecord.objects.values_list("pk", "version"))
    assert all(after[g] == versions[g] + 2 for g in (ab, cd, e))  # never backwards
    last = GoldenRecord.objects.get(pk=ab).history.order_by("-history_id").first()
    assert last.history_change_reason == f"undo #{undo.pk}: merge #{op.pk}: wrong call"


def test_split_into_a_new_golden_record_and_undo(records, steward):
    ab = golden_of(records, "A")
    before = state()

    op = golden_record_split(
        domain="customer", golden_id=ab, record_ids=[records["B"]], actor=steward
    )

    new = op.target_id
    assert new not in before[0]
    assert golden_of(records, "A") == ab and golden_of(records, "B") == new
    assert GoldenRecord.objects.get(pk=new or 0).attributes["given_name"] == "Anne"
    assert "phone" not in GoldenRecord.objects.get(pk=ab).attributes
    assert set(PairConstraint.objects.values_list("left_id", "right_id", "kind")) == {
        (records["A"], records["B"], "cannot_link")
    }

    golden_record_undo(operation_id=op.pk, actor=steward)

    goldens, members, constraints = state()
    assert goldens.pop(new)[:2] == ("retired", ab)  # the split-off id points to where it went
    assert (goldens, members, constraints) == before


def test_split_into_an_existing_golden_record_and_undo(records, steward):
    ab, cd = golden_of(records, "A"), golden_of(records, "C")
    before = state()

    op = golden_record_split(
        domain="customer",
        golden_id=cd,
        record_ids=[records["D"]],
        into_golden_id=ab,
        actor=steward,
    )

    assert op.target_id == ab
    assert {golden_of(records, k) for k in "ABD"} == {ab}
    assert golden_of(records, "C") == cd
    kinds = set(PairConstraint.objects.values_list("left_id", "right_id", "kind"))
    a, b, c, d = (records[k] for k in "ABCD")
    assert kinds == {(a, b, "must_link"), (a, d, "must_link"), (c, d, "cannot_link")}

    golden_record_undo(operation_id=op.pk, actor=steward)

    assert state() == before


def test_split_after_merge_replaces_the_must_link_and_keeps_the_rest_together(records, steward):
    ab, cd = golden_of(records, "A"), golden_of(records, "C")
    golden_record_merge(domain="customer", golden_ids=[ab, cd], actor=steward)
    before = state()

    op = golden_record_split(
        domain="customer", golden_id=ab, record_ids=[records["A"]], actor=steward
    )

    a, b, c, d = (records[k] for k in "ABCD")
    kinds = set(PairConstraint.objects.values_list("left_id", "right_id", "kind"))
    # The merge's star through A is cut; B, C and D stay joined, A is apart from each.
    assert {(x, y) for x, y, k in kinds if k == "cannot_link"} == {(a, b), (a, c), (a, d)}
    must = [(x, y) for x, y, k in kinds if k == "must_link"]
    assert len(must) == 2 and {r for pair in must for r in pair} == {b, c, d}
    assert {golden_of(records, k) for k in "BCD"} == {ab}

    golden_record_undo(operation_id=op.pk, actor=steward)

    goldens, members, constraints = state()
    assert goldens.pop(op.target_id)[:2] == ("retired", ab)
    assert (goldens, members, constraints) == before


def test_undo_of_an_undo_redoes(records, steward):
    ab, cd = golden_of(records, "A"), golden_of(records, "C")
    op = golden_record_merge(domain="customer", golden_ids=[ab, cd], actor=steward)
    merged = state()
    undo = golden_record_undo(operation_id=op.pk, actor=steward)

    golden_record_undo(operation_id=undo.pk, actor=steward)

    assert state() == merged


def test_correction_wins_survives_ingest_shows_in_provenance_and_undoes(records, steward, api):
    ab = golden_of(records, "A")
    before = state()

    op = golden_attribute_correct(
        domain="customer",
        golden_id=ab,
        attribute="email",
        value="  Ann.Lee@Example.COM ",
        actor=steward,
        reason="customer called",
    )

    golden = GoldenRecord.objects.get(pk=ab)
    assert golden.attributes["email"] == "ann.lee@example.com"
    assert golden.provenance["email"]["source"] == STEWARD_SOURCE
    assert golden.provenance["email"]["source_key"] == str(ab)
    assert golden.attributes["given_name"] in {"Ann", "Anne"}  # the rest still from sources
    record = SourceRecord.objects.get(source_system__code=STEWARD_SOURCE)
    assert record.attributes == {"email": "ann.lee@example.com"}
    assert CrossReference.objects.get(record=record).golden_id == ab
    assert PairConstraint.objects.filter(kind="must_link").count() == 1
    assert op.state["value"] == "ann.lee@example.com"

    # A later ingest of a new e-mail by the source does not overwrite the correction.
    api.post(
        URL,
        {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "email": "new@example.com"},
        format="json",
    )
    from mdm.services.golden import golden_records_rebuild

    golden_records_rebuild(domain="customer", golden_ids=[ab], reason="match run 9")
    assert GoldenRecord.objects.get(pk=ab).attributes["email"] == "ann.lee@example.com"

    golden_record_undo(operation_id=op.pk, actor=steward)

    golden = GoldenRecord.objects.get(pk=ab)
    assert golden.attributes["email"] == "new@example.com"
    assert golden.provenance["email"]["source"] == "crm"
    assert state()[1:] == before[1:]


def test_correction_of_an_address_part_keeps_the_group_whole(records, steward, api):
    api.post(
        URL,
        {
            "source_key": "A",
            "given_name": "Ann",
            "family_name": "Lee",
            "address_line1": "1 High Street",
            "city": "Leeds",
            "postal_code": "LS1 1AA",
            "country": "GB",
        },
        format="json",
    )
    ab = golden_of(records, "A")
    from mdm.services.golden import golden_records_rebuild

    golden_records_rebuild(domain="customer", golden_ids=[ab])

    golden_attribute_correct(
        domain="customer", golden_id=ab, attribute="city", value="York", actor=steward
    )

    attributes = GoldenRecord.objects.get(pk=ab).attributes
    assert (attributes["city"], attributes["address_line1"]) == ("York", "1 High Street")


def test_withdrawing_a_correction_gives_the_sources_value_back(records, steward):
    ab = golden_of(records, "A")
    golden_attribute_correct(
        domain="customer", golden_id=ab, attribute="email", value="x@example.com", actor=steward
    )

    golden_attribute_correct(
        domain="customer", golden_id=ab, attribute="email", value=None, actor=steward
    )

    golden = GoldenRecord.objects.get(pk=ab)
    assert (golden.attributes["email"], golden.provenance["email"]["source"]) == (
        "ann@example.com",
        "crm",
    )


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [("shoe_size", "42", "unknown attribute"), ("email", "not an e-mail", "email:")],
)
def test_a_bad_correction_is_refused_and_nothing_is_written(
    records, steward, attribute, value, message
):
    ab = golden_of(records, "A")
    before = state()

    with pytest.raises(GoldenOperationError, match=message):
        golden_attribute_correct(
            domain="customer", golden_id=ab, attribute=attribute, value=value, actor=steward
        )

    assert state() == before
    assert not GoldenOperation.objects.exists()


def test_conflicts_write_nothing(records, steward):
    ab, cd, e = (golden_of(records, k) for k in "ACE")
    version = GoldenRecord.objects.get(pk=ab).version
    op = golden_record_merge(domain="customer", golden_ids=[ab, cd], actor=steward)
    before, operations = state(), GoldenOperation.objects.count()

    with pytest.raises(GoldenConflictError, match="retired"):
        golden_record_merge(domain="customer", golden_ids=[cd, e], actor=steward)
    with pytest.raises(GoldenConflictError, match="version"):
        golden_record_merge(
            domain="customer",
            golden_ids=[ab, e],
            expected_versions={ab: version},
            actor=steward,
        )
    with pytest.raises(GoldenConflictError, match="not members"):
        golden_record_split(
            domain="customer", golden_id=e, record_ids=[records["A"]], actor=steward
        )
    golden_record_undo(operation_id=op.pk, actor=steward)
    before, operations = state(), GoldenOperation.objects.count()
    with pytest.raises(GoldenConflictError, match="already undone"):
        golden_record_undo(operation_id=op.pk, actor=steward)

    assert (state(), GoldenOperation.objects.count()) == (before, operations)


def test_undo_is_refused_once_the_golden_records_changed(records, steward):
    ab, cd, e = (golden_of(records, k) for k in "ACE")
    first = golden_record_merge(domain="customer", golden_ids=[ab, cd], actor=steward)
    golden_record_merge(domain="customer", golden_ids=[ab, e], actor=steward)
    before = state()

    with pytest.raises(GoldenConflictError, match="changed since operation"):
        golden_record_undo(operation_id=first.pk, actor=steward)

    assert state() == before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"golden_ids": [1]}, GoldenOperationError, "at least two"),
        ({"golden_ids": [1, 2], "target_id": 3}, GoldenOperationError, "target 3"),
        ({"golden_ids": [10**6, 10**6 + 1]}, GoldenNotFoundError, "no customer golden"),
    ],
)
def test_bad_merges_are_refused(records, steward, kwargs, error, message):
    with pytest.raises(error, match=message):
        golden_record_merge(domain="customer", actor=steward, **kwargs)
    assert not GoldenOperation.objects.exists()


def test_a_split_must_leave_a_member_behind(records, steward):
    ab = golden_of(records, "A")
    with pytest.raises(GoldenOperationError, match="at least one record behind"):
        golden_record_split(
            domain="customer",
            golden_id=ab,
            record_ids=[records["A"], records["B"]],
            actor=steward,
        )
    assert not GoldenOperation.objects.exists()
