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


def _expected(domain_code, golden_ids):
    """What survivorship gives each golden record from all its members at once."""
    from mdm.domains import get_domain
    from mdm.selectors import live_record_rows
    from mdm.services.golden import MEMBER_COLUMNS, members_from_rows
    from mdm.survivorship import survive_fast, survivorship_rules_active

    dom = get_domain(domain_code)
    rules = survivorship_rules_active(domain=domain_code)
    members = {
        m.record_id: m
        for m in members_from_rows(live_record_rows(domain=domain_code, columns=MEMBER_COLUMNS))
    }
    expected = {}
    for gid in golden_ids:
        ids = CrossReference.objects.filter(golden_id=gid).values_list("record_id", flat=True)
        expected[gid] = survive_fast(dom, [members[r] for r in ids], rules)
    return expected


def test_chunked_survivorship_gives_each_golden_record_all_its_members(api, monkeypatch):
    from mdm.services import golden as golden_services

    # Given 45 records in 15 clusters of 3 whose members disagree, read 7 records at a time
    people = [
        {
            "source_key": f"K{i:02}",
            "given_name": ["Ann", "Anne", "Annie"][i % 3] + f" {i // 3}",
            "family_name": "Lee" if i % 3 else "Leigh",
            **({"email": f"p{i // 3}.{i % 3}@example.com"} if i % 2 else {}),
            **({"phone": "+442079460958"} if i % 5 == 0 else {}),
        }
        for i in range(45)
    ]
    api.post(URL, {"records": people}, format="json")
    records = dict(SourceRecord.objects.values_list("source_key", "id"))
    monkeypatch.setattr(golden_services, "SURVIVE_CHUNK", 7)
    monkeypatch.setattr(golden_services, "REBUILD_CHUNK", 4)
    groups = [[f"K{i:02}" for i in range(n * 3, n * 3 + 3)] for n in range(15)]

    # When they are applied, then merged two by two (rebuilt across chunks)
    first = golden_records_apply_clusters(
        domain="customer",
        clusters={records[k]: n for n, group in enumerate(groups) for k in group},
    )
    created = sorted(first.golden_of.values())
    created_state = {
        g.pk: (g.attributes, g.provenance) for g in GoldenRecord.objects.filter(pk__in=created)
    }
    assert created_state == _expected("customer", created)
    second = golden_records_apply_clusters(
        domain="customer",
        clusters={records[k]: n // 2 for n, group in enumerate(groups) for k in group},
    )

    # Then every golden record holds what survivorship gives from all its members
    assert (first.created, second.retired, second.changed) == (15, 7, 7)
    active = sorted(GoldenRecord.objects.filter(status="active").values_list("pk", flat=True))
    assert len(active) == 8
    state = {g.pk: (g.attributes, g.provenance) for g in GoldenRecord.objects.filter(pk__in=active)}
    assert state == _expected("customer", active)
    merged = GoldenRecord.objects.get(pk=first.golden_of[0])
    assert len(merged.provenance["given_name"]["competitors"]) == 5  # 6 members, 1 winner
