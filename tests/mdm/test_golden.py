"""Golden records follow the clustering with stable ids, survivorship and history."""

import pytest

from mdm.models import CrossReference, GoldenRecord, SourceRecord
from mdm.selectors import golden_record_resolve
from mdm.services.golden import golden_records_apply_clusters

URL = "/api/v1/customer/records"


@pytest.fixture
def records(api):
    people = [
        {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "email": "ann@example.com"},
        {"source_key": "B", "given_name": "Anne", "family_name": "Lee", "phone": "+442079460958"},
        {"source_key": "C", "given_name": "Bob", "family_name": "Ray"},
        {"source_key": "D", "given_name": "Bobby", "family_name": "Ray"},
        {"source_key": "E", "given_name": "Cy", "family_name": "Day"},
    ]
    api.post(URL, {"records": people}, format="json")
    return dict(SourceRecord.objects.values_list("source_key", "id"))


def apply(records, groups):
    clusters = {records[k]: i for i, group in enumerate(groups) for k in group}
    return golden_records_apply_clusters(domain="customer", clusters=clusters)


def golden_of(records, key):
    return CrossReference.objects.get(record_id=records[key]).golden_id


def test_first_run_creates_one_golden_record_per_cluster(records):
    result = apply(records, ["AB", "CD", "E"])

    assert (result.created, result.linked, result.retired) == (3, 5, 0)
    assert golden_of(records, "A") == golden_of(records, "B") != golden_of(records, "C")
    golden = GoldenRecord.objects.get(pk=golden_of(records, "A"))
    assert golden.attributes["email"] == "ann@example.com"
    assert golden.attributes["phone"] == "+442079460958"
    assert golden.provenance["phone"]["source_key"] == "B"
    assert golden.provenance["given_name"]["rule"] in {"lowest record id", "most_complete"}
    # Written once, with its attributes: one history row, version 1.
    assert golden.version == 1
    assert list(golden.history.values_list("history_type", "history_change_reason")) == [
        ("+", "match: new")
    ]
    assert golden.history.get().attributes == golden.attributes


def test_a_rerun_changes_nothing(records):
    apply(records, ["AB", "CD", "E"])
    ids = {k: golden_of(records, k) for k in records}
    history = GoldenRecord.history.count(), CrossReference.history.count()

    result = apply(records, ["AB", "CD", "E"])

    assert (result.created, result.changed, result.retired, result.linked, result.moved) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert {k: golden_of(records, k) for k in records} == ids
    assert (GoldenRecord.history.count(), CrossReference.history.count()) == history


def test_merge_keeps_the_id_of_the_majority_and_retires_the_other(records):
    apply(records, ["AB", "CD", "E"])
    ab, e = golden_of(records, "A"), golden_of(records, "E")

    result = apply(records, ["ABE", "CD"])

    assert (result.retired, result.moved) == (1, 1)
    assert golden_of(records, "E") == ab
    retired = GoldenRecord.objects.get(pk=e)
    assert (retired.status, retired.survivor_id) == ("retired", ab)
    assert golden_record_resolve(retired).pk == ab
    assert GoldenRecord.objects.get(pk=ab).attributes["given_name"] in {"Ann", "Anne", "Cy"}


def test_split_keeps_the_id_on_the_larger_part(records):
    apply(records, ["ABC", "D", "E"])
    abc = golden_of(records, "A")

    result = apply(records, ["AB", "C", "D", "E"])

    assert golden_of(records, "A") == golden_of(records, "B") == abc
    assert golden_of(records, "C") != abc
    assert (result.created, result.moved, result.retired) == (1, 1, 0)
    assert CrossReference.history.filter(record_id=records["C"]).count() == 2


def test_members_outside_the_clustering_follow_their_golden_record(records):
    apply(records, ["AB", "CD", "E"])
    ab, cd = golden_of(records, "A"), golden_of(records, "C")

    apply(records, ["AE"])  # an incremental run that only looked at A and E

    assert golden_of(records, "B") == golden_of(records, "E") == ab
    assert golden_of(records, "C") == golden_of(records, "D") == cd


def test_read_a_golden_record_with_its_members_and_provenance(records, api):
    apply(records, ["AB", "CD", "E"])
    gid = golden_of(records, "A")

    body = api.get(f"/api/v1/customer/golden/{gid}").json()

    assert (body["id"], body["status"], body["domain"]) == (gid, "active", "customer")
    assert body["attributes"]["email"] == "ann@example.com"
    assert sorted(m["source_key"] for m in body["members"]) == ["A", "B"]
    assert body["provenance"]["phone"]["source_key"] == "B"
    assert "retired_id" not in body


def test_a_retired_id_answers_with_its_survivor(records, api):
    apply(records, ["AB", "CD", "E"])
    ab, e = golden_of(records, "A"), golden_of(records, "E")
    apply(records, ["ABE", "CD"])

    body = api.get(f"/api/v1/customer/golden/{e}").json()

    assert (body["id"], body["retired_id"]) == (ab, e)
    assert sorted(m["source_key"] for m in body["members"]) == ["A", "B", "E"]


def test_look_up_the_golden_record_of_a_source_key(records, api):
    apply(records, ["AB", "CD", "E"])

    found = api.get("/api/v1/customer/golden?source=crm&source_key=B").json()["results"]
    missing = api.get("/api/v1/customer/golden?source=crm&source_key=ZZ").json()["results"]
    half = api.get("/api/v1/customer/golden?source=crm")

    assert [g["id"] for g in found] == [golden_of(records, "A")]
    assert missing == []
    assert half.status_code == 400


def test_list_active_and_retired(records, api):
    apply(records, ["AB", "CD", "E"])
    apply(records, ["ABE", "CD"])

    active = api.get("/api/v1/customer/golden").json()["results"]
    retired = api.get("/api/v1/customer/golden?status=retired").json()["results"]

    assert len(active) == 2
    assert [g["status"] for g in retired] == ["retired"]
    assert api.get("/api/v1/customer/golden/999999").status_code == 404
    assert api.get("/api/v1/customer/golden?status=bogus").status_code == 400
