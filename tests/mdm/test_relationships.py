"""Relationships between golden records: references from the sources, re-pointing, cycles,
hierarchies, survivorship, steward edits and their events, through the services and the API."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from mdm.mapping import MappingError, compile_mapping
from mdm.models import CrossReference, GoldenRelationship, SourceRecord
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.lifecycle import golden_record_merge, golden_record_split, golden_record_undo
from mdm.services.relationships import (
    RelationshipConflictError,
    golden_relationship_add,
    golden_relationship_end,
    golden_relationship_reparent,
    relationships_recompute,
)
from mdm.services.sources import source_system_upsert
from mdm.services.user_tokens import user_token_issue
from sync.models import ChangeEvent
from sync.selectors import event_payloads

URL = "/api/v1/customer/records"
API = "/api/v1/customer"


def hub_user(name: str, role: str) -> User:
    user = User.objects.create_user(name, password="pw")
    user.groups.add(Group.objects.get(name=role))
    return user


def user_client(name: str, role: str) -> APIClient:
    client = APIClient()
    secret = user_token_issue(user=hub_user(name, role)).secret
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def steward() -> User:
    return hub_user("stella", "steward")


@pytest.fixture
def steward_api(steward: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token_issue(user=steward).secret}")
    return client


@pytest.fixture
def systems(db: Any) -> None:
    source_system_upsert(code="crm", priority=10)
    source_system_upsert(code="erp", priority=20)


def push(client: APIClient, *records: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(URL, {"records": list(records)}, format="json")
    assert response.status_code in (200, 201, 207), response.content
    return response.json()["results"]


def rid(source: str, key: str) -> int:
    return SourceRecord.objects.get(source_system__code=source, source_key=key).pk


def alone(*record_ids: int) -> None:
    """Each record its own golden record (what a match run finds for unrelated records)."""
    golden_records_apply_clusters(domain="customer", clusters={r: r for r in record_ids})


def gold(source: str, key: str) -> int:
    return CrossReference.objects.get(record_id=rid(source, key)).golden_id


def org(key: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"source_key": key, "party_type": "organisation", "organisation_name": name, **extra}


def person(key: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"source_key": key, "full_name": name, **extra}


def active_links(rel_type: str | None = None) -> list[tuple[int, str, int]]:
    qs = GoldenRelationship.objects.filter(status="active")
    if rel_type:
        qs = qs.filter(rel_type=rel_type)
    return sorted(qs.values_list("from_golden_id", "rel_type", "to_golden_id"))


# --- mappings -------------------------------------------------------------------------------


def test_a_mapping_declares_references_and_is_checked() -> None:
    spec = {
        "domain": "customer",
        "key": {"field": "id"},
        "attributes": {"full_name": "name"},
        "references": {"works_for": {"field": "employers", "split": ";"}, "child_of": "parent"},
    }
    mapping = compile_mapping(spec)
    meta = mapping.meta({"id": "7", "name": "Ann", "employers": "A1; A2", "parent": ""})
    assert meta.references == (("works_for", "A1"), ("works_for", "A2"))
    assert meta.errors == ()

    bad = mapping.meta({"id": "7", "name": "Ann", "parent": "7"})
    assert [e.field for e in bad.errors] == ["references.child_of"]
    assert "references itself" in bad.errors[0].message

    with pytest.raises(MappingError, match="unknown relationship type 'owns'"):
        compile_mapping({**spec, "references": {"owns": "x"}})
    with pytest.raises(MappingError, match="'split' needs a relationship of cardinality 'many'"):
        compile_mapping({**spec, "references": {"child_of": {"field": "p", "split": ";"}}})


def test_a_bad_reference_is_quarantined_and_nothing_is_stored(
    api: APIClient, systems: None
) -> None:
    response = api.post(
        URL, person("A", "Ann Lee", references={"child_of": ["P1", "P2"]}), format="json"
    )
    assert response.status_code == 422
    assert "cardinality one" in str(response.json())
    assert not SourceRecord.objects.exists()


# --- resolution -----------------------------------------------------------------------------


def test_a_reference_is_held_until_its_target_arrives(api: APIClient, systems: None) -> None:
    reader = user_client("vic", "viewer")
    push(api, person("C1", "Ann Lee", references={"works_for": "ORG1"}))
    alone(rid("crm", "C1"))
    assert active_links() == []
    body = reader.get(f"{API}/golden/{gold('crm', 'C1')}/relationships").json()
    assert body["outgoing"] == []
    assert body["unresolved"] == [
        {
            "record_id": rid("crm", "C1"),
            "source": "crm",
            "source_key": "C1",
            "type": "works_for",
            "target_key": "ORG1",
        }
    ]

    push(api, org("ORG1", "Acme Ltd"))
    alone(rid("crm", "ORG1"))  # the late target is matched: the link appears

    assert active_links() == [(gold("crm", "C1"), "works_for", gold("crm", "ORG1"))]
    body = reader.get(f"{API}/golden/{gold('crm', 'C1')}/relationships").json()
    assert body["unresolved"] == []
    [link] = body["outgoing"]
    assert link["type"] == "works_for"
    assert link["to_golden"]["name"] == "Acme Ltd"
    assert link["provenance"]["source"] == "crm"
    assert link["provenance"]["source_key"] == "C1"
    assert link["provenance"]["target_key"] == "ORG1"
    incoming = reader.get(f"{API}/golden/{gold('crm', 'ORG1')}/relationships").json()["incoming"]
    assert [i["from_golden"]["id"] for i in incoming] == [gold("crm", "C1")]


def test_a_changed_or_deleted_reference_changes_the_link(api: APIClient, systems: None) -> None:
    push(api, org("P1", "Parent One"), org("P2", "Parent Two"))
    push(api, org("A", "Acme", references={"child_of": "P1"}))
    alone(rid("crm", "P1"), rid("crm", "P2"), rid("crm", "A"))
    [row] = GoldenRelationship.objects.all()
    assert row.to_golden_id == gold("crm", "P1")

    push(api, org("A", "Acme", references={"child_of": "P2"}))
    relationships_recompute(golden_ids=[gold("crm", "A")], reason="match run: changed")
    row.refresh_from_db()
    assert (row.to_golden_id, row.status, row.version) == (gold("crm", "P2"), "active", 2)

    push(api, org("A", "Acme"))  # the source no longer names a parent
    relationships_recompute(golden_ids=[gold("crm", "A")], reason="match run: changed")
    row.refresh_from_db()
    assert (row.status, row.version) == ("ended", 3)


# --- merge, split, undo ---------------------------------------------------------------------


@pytest.fixture
def parent_twins(api: APIClient, other_api: APIClient, systems: None) -> dict[str, int]:
    """crm: A child_of P; erp: Q, the same company as P.  Each its own golden record."""
    push(api, org("P", "Parent Holdings"), org("A", "Acme", references={"child_of": "P"}))
    push(other_api, org("Q", "Parent Holdings Ltd"))
    alone(rid("crm", "P"), rid("crm", "A"), rid("erp", "Q"))
    return {"A": gold("crm", "A"), "P": gold("crm", "P"), "Q": gold("erp", "Q")}


def test_links_follow_merge_split_and_undo(parent_twins: dict[str, int], steward: User) -> None:
    g = parent_twins
    [row] = GoldenRelationship.objects.all()
    assert (row.from_golden_id, row.to_golden_id) == (g["A"], g["P"])

    merge = golden_record_merge(
        domain="customer", golden_ids=[g["P"], g["Q"]], target_id=g["Q"], actor=steward
    )
    row.refresh_from_db()
    assert (row.to_golden_id, row.status) == (g["Q"], "active")  # the same link, re-pointed
    assert row.provenance["previous_to"] == g["P"]

    golden_record_undo(operation_id=merge.pk, actor=steward)
    row.refresh_from_db()
    assert (row.to_golden_id, row.status) == (g["P"], "active")

    golden_record_merge(
        domain="customer", golden_ids=[g["P"], g["Q"]], target_id=g["Q"], actor=steward
    )
    golden_record_split(
        domain="customer", golden_id=g["Q"], record_ids=[rid("crm", "P")], actor=steward
    )
    new_id = gold("crm", "P")  # split out into a new golden record
    assert new_id not in (g["P"], g["Q"])
    assert active_links() == [(g["A"], "child_of", new_id)]
    assert GoldenRelationship.objects.count() == 1


def test_a_merge_of_the_child_keeps_one_link(parent_twins: dict[str, int], steward: User) -> None:
    g = parent_twins
    golden_record_merge(
        domain="customer", golden_ids=[g["A"], g["Q"]], target_id=g["Q"], actor=steward
    )
    # A's golden record is retired into Q's: the link now starts at Q.
    assert active_links() == [(g["Q"], "child_of", g["P"])]
    ended = GoldenRelationship.objects.get(from_golden_id=g["A"])
    assert ended.status == "ended"


# --- survivorship ---------------------------------------------------------------------------


def test_the_type_rule_decides_between_sources(
    api: APIClient, other_api: APIClient, systems: None
) -> None:
    push(
        api,
        org("P1", "North Group"),
        org("A", "Acme", references={"child_of": "P1"}),
        person("H1", "Lee household"),
        person("ANN", "Ann Lee", references={"member_of_household": "H1", "works_for": "P1"}),
    )
    push(
        other_api,
        org("P2", "South Group"),
        org("A2", "Acme Ltd", references={"child_of": "P2"}),
        person("H2", "Lee-Ray household"),
        person("ANN2", "Ann Lee", references={"member_of_household": "H2", "works_for": "P2"}),
    )
    ids = {k: rid(s, k) for s, k in [("crm", "P1"), ("crm", "H1"), ("erp", "P2"), ("erp", "H2")]}
    clusters = {v: k for k, v in ids.items()}
    clusters |= {rid("crm", "A"): "acme", rid("erp", "A2"): "acme"}
    clusters |= {rid("crm", "ANN"): "ann", rid("erp", "ANN2"): "ann"}
    golden_records_apply_clusters(domain="customer", clusters=clusters)

    # child_of: source priority, crm (10) over erp (20).
    parent = GoldenRelationship.objects.get(rel_type="child_of")
    assert parent.to_golden_id == gold("crm", "P1")
    assert parent.provenance["rule"] == "source_priority"
    assert parent.provenance["source"] == "crm"
    assert [(c["source"], c["target_key"]) for c in parent.provenance["competitors"]] == [
        ("erp", "P2")
    ]
    # member_of_household: most recent, the erp record came last.
    household = GoldenRelationship.objects.get(rel_type="member_of_household")
    assert household.to_golden_id == gold("erp", "H2")
    assert household.provenance["rule"] == "most_recent"
    assert household.provenance["source"] == "erp"
    # works_for has cardinality many: every source's employer is kept.
    jobs = GoldenRelationship.objects.filter(rel_type="works_for").order_by("to_golden_id")
    assert [(j.to_golden_id, j.provenance["source"]) for j in jobs] == sorted(
        [(gold("crm", "P1"), "crm"), (gold("erp", "P2"), "erp")]
    )


# --- cycles and steward edits ---------------------------------------------------------------


@pytest.fixture
def chain(api: APIClient, systems: None) -> list[int]:
    """Golden records of five companies: C1 child_of C0, C2 child_of C1, ... (from crm)."""
    rows = [org("C0", "Company 0")]
    rows += [
        org(f"C{i}", f"Company {i}", references={"child_of": f"C{i - 1}"}) for i in (1, 2, 3, 4)
    ]
    push(api, *rows)
    alone(*(rid("crm", f"C{i}") for i in range(5)))
    return [gold("crm", f"C{i}") for i in range(5)]


def test_a_cycle_is_refused_with_a_clear_message(
    chain: list[int], steward: User, steward_api: APIClient
) -> None:
    events = ChangeEvent.objects.count()
    links = list(GoldenRelationship.objects.values_list("id", "version", "status"))
    with pytest.raises(RelationshipConflictError, match="would make a cycle"):
        golden_relationship_add(
            domain="customer",
            from_golden_id=chain[0],
            rel_type="child_of",
            to_golden_id=chain[3],
            actor=steward,
        )
    response = steward_api.post(
        f"{API}/golden/{chain[0]}/relationships",
        {"type": "child_of", "to_golden_id": chain[4]},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"refused: golden record {chain[4]} is already below {chain[0]} in the child_of "
        f"hierarchy, so linking {chain[0]} child_of {chain[4]} would make a cycle "
        f"({chain[0]} -> {chain[4]} -> {chain[3]} -> {chain[2]} -> {chain[1]} -> {chain[0]}); "
        f"re-parent {chain[4]} first"
    )
    # Re-parenting C1 under C3 would make one too.
    c1_link = GoldenRelationship.objects.get(from_golden_id=chain[1])
    response = steward_api.post(
        f"{API}/relationships/{c1_link.pk}/reparent", {"to_golden_id": chain[3]}, format="json"
    )
    assert response.status_code == 409
    assert "would make a cycle" in response.json()["detail"]
    assert list(GoldenRelationship.objects.values_list("id", "version", "status")) == links
    assert ChangeEvent.objects.count() == events


def test_a_cycle_in_the_sources_is_held(api: APIClient, systems: None) -> None:
    push(
        api,
        org("X", "X Corp", references={"child_of": "Y"}),
        org("Y", "Y Corp", references={"child_of": "X"}),
    )
    alone(rid("crm", "X"), rid("crm", "Y"))
    statuses = dict(GoldenRelationship.objects.values_list("from_golden_id", "status"))
    assert sorted(statuses.values()) == ["active", "held"]
    held = GoldenRelationship.objects.get(status="held")
    assert held.provenance["note"].startswith("held: would close a cycle")
    # Nothing changes on a repeat: no churn of versions.
    before = list(GoldenRelationship.objects.values_list("id", "version"))
    relationships_recompute(golden_ids=[gold("crm", "X"), gold("crm", "Y")], reason="again")
    assert list(GoldenRelationship.objects.values_list("id", "version")) == before
    # Y drops its parent: the held link becomes active.
    push(api, org("Y", "Y Corp"))
    relationships_recompute(golden_ids=[gold("crm", "Y")], reason="changed")
    assert active_links() == [(gold("crm", "X"), "child_of", gold("crm", "Y"))]


def test_steward_add_end_and_reparent_win_over_the_sources(
    chain: list[int], steward: User, steward_api: APIClient
) -> None:
    c2 = GoldenRelationship.objects.get(from_golden_id=chain[2])
    response = steward_api.post(
        f"{API}/relationships/{c2.pk}/end", {"reason": "sold off"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ended"
    relationships_recompute(golden_ids=chain, reason="match run")
    c2.refresh_from_db()
    assert (c2.status, c2.steward_locked) == ("ended", True)
    assert not GoldenRelationship.objects.filter(from_golden_id=chain[2], status="active").exists()
    history = c2.history.order_by("-history_id").first()
    assert history is not None
    assert (history.history_user, history.history_change_reason) == (
        steward,
        "steward end: sold off",
    )

    response = steward_api.post(
        f"{API}/golden/{chain[2]}/relationships",
        {"type": "child_of", "to_golden_id": chain[0], "reason": "bought by C0"},
        format="json",
    )
    assert response.status_code == 201
    added = response.json()
    assert (added["origin"], added["to_golden"]["id"]) == ("steward", chain[0])
    # A second parent is refused: re-parent instead.
    response = steward_api.post(
        f"{API}/golden/{chain[2]}/relationships",
        {"type": "child_of", "to_golden_id": chain[1]},
        format="json",
    )
    assert response.status_code == 409
    assert "re-parent that relationship instead" in response.json()["detail"]

    new = golden_relationship_reparent(
        domain="customer", relationship_id=added["id"], to_golden_id=chain[1], actor=steward
    )
    assert new.to_golden_id == chain[1]
    assert GoldenRelationship.objects.get(pk=added["id"]).status == "ended"
    relationships_recompute(golden_ids=chain, reason="match run")
    assert active_links() == [
        (chain[1], "child_of", chain[0]),
        (chain[2], "child_of", chain[1]),
        (chain[3], "child_of", chain[2]),
        (chain[4], "child_of", chain[3]),
    ]
    with pytest.raises(RelationshipConflictError, match="is ended"):
        golden_relationship_end(domain="customer", relationship_id=c2.pk, actor=steward)


@pytest.mark.parametrize(
    ("persona", "expected"), [("anonymous", 401), ("source", 403), ("viewer", 403)]
)
def test_only_stewards_edit_relationships(
    chain: list[int], api: APIClient, persona: str, expected: int
) -> None:
    client = {"anonymous": APIClient(), "source": api}.get(persona) or user_client("v", "viewer")
    before = GoldenRelationship.objects.count()
    response = client.post(
        f"{API}/golden/{chain[4]}/relationships",
        {"type": "works_for", "to_golden_id": chain[0]},
        format="json",
    )
    assert response.status_code == expected
    assert GoldenRelationship.objects.count() == before


def test_bad_input_says_what_to_fix(chain: list[int], steward_api: APIClient) -> None:
    before = GoldenRelationship.objects.count()
    response = steward_api.post(
        f"{API}/golden/{chain[4]}/relationships",
        {"type": "owns", "to_golden_id": chain[0]},
        format="json",
    )
    assert response.status_code == 400
    assert "unknown relationship type 'owns' for domain customer" in response.json()["detail"]
    response = steward_api.post(
        f"{API}/golden/{chain[4]}/relationships",
        {"type": "works_for", "to_golden_id": chain[4]},
        format="json",
    )
    assert response.status_code == 400
    assert "cannot be works_for itself" in response.json()["detail"]
    response = steward_api.post(
        f"{API}/golden/{chain[4]}/relationships",
        {"type": "works_for", "to_golden_id": 999999},
        format="json",
    )
    assert response.status_code == 404
    assert GoldenRelationship.objects.count() == before


# --- hierarchy reads ------------------------------------------------------------------------


def test_hierarchy_reads_respect_depth_limits(chain: list[int]) -> None:
    reader = user_client("vic", "viewer")
    body = reader.get(f"{API}/golden/{chain[2]}/hierarchy?up=1&down=1").json()
    assert body["type"] == "child_of"
    assert body["root"] == {"id": chain[2], "name": "Company 2"}
    assert [(n["id"], n["depth"]) for n in body["ancestors"]] == [(chain[1], 1)]
    assert [(n["id"], n["depth"], n["parent_id"]) for n in body["descendants"]] == [
        (chain[3], 1, chain[2])
    ]
    assert body["ancestors_truncated"] is True
    assert body["descendants_truncated"] is True

    body = reader.get(f"{API}/golden/{chain[0]}/hierarchy").json()
    assert [(n["name"], n["depth"]) for n in body["descendants"]] == [
        ("Company 1", 1),
        ("Company 2", 2),
        ("Company 3", 3),
        ("Company 4", 4),
    ]
    assert body["ancestors"] == []
    assert body["descendants_truncated"] is False

    body = reader.get(f"{API}/golden/{chain[4]}/hierarchy?down=0").json()
    assert [n["id"] for n in body["ancestors"]] == [chain[3], chain[2], chain[1], chain[0]]
    assert body["ancestors"][0]["parent_id"] == chain[2]

    response = reader.get(f"{API}/golden/{chain[4]}/hierarchy?type=works_for")
    assert response.status_code == 400
    assert "not a hierarchy of customer" in response.json()["detail"]
    response = reader.get(f"{API}/golden/{chain[4]}/hierarchy?down=-1")
    assert response.status_code == 400


# --- events ---------------------------------------------------------------------------------


def test_relationship_changes_are_events(parent_twins: dict[str, int], steward: User) -> None:
    g = parent_twins
    [row] = GoldenRelationship.objects.all()
    [added] = ChangeEvent.objects.filter(kind="relationship")
    assert (added.golden_id, added.domain, added.version) == (g["A"], "customer", 1)
    payload = event_payloads([added])[added.pk]
    assert payload["type"] == "golden.relationship"
    assert payload["relationship"]["action"] == "added"
    assert payload["relationship"]["to_id"] == g["P"]
    assert payload["relationship"]["type"] == "child_of"
    assert payload["xref"] == [{"source": "crm", "source_key": "A"}]

    merge = golden_record_merge(
        domain="customer", golden_ids=[g["P"], g["Q"]], target_id=g["Q"], actor=steward
    )
    repointed = ChangeEvent.objects.filter(kind="relationship").order_by("-id").first()
    assert repointed is not None
    body = event_payloads([repointed])[repointed.pk]["relationship"]
    assert (body["action"], body["to_id"], body["previous_to_id"]) == ("re-pointed", g["Q"], g["P"])
    assert repointed.reason == f"merge #{merge.pk}"
    assert (repointed.version, row.pk) == (2, body["id"])


def test_the_domains_list_their_relationship_types(api: APIClient) -> None:
    domains = {d["code"]: d for d in api.get("/api/v1/domains").json()}
    assert [r["code"] for r in domains["customer"]["relationships"]] == [
        "works_for",
        "child_of",
        "member_of_household",
    ]
    assert domains["supplier"]["relationships"] == [
        {
            "code": "subsidiary_of",
            "label": "Subsidiary of",
            "inverse_label": "Parent of",
            "target": "supplier",
            "cardinality": "one",
            "hierarchy": True,
            "rule": "source_priority",
        }
    ]
