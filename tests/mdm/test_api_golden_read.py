"""The hot read, GET /api/v1/<domain>/golden/<id>: the serializer's JSON, in one query."""

from __future__ import annotations

import json

import pytest
from rest_framework.renderers import JSONRenderer

from mdm.api.serializers import GoldenRecordSerializer
from mdm.api.views import _golden_queryset
from mdm.models import CrossReference, SourceRecord, SourceToken
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.sources import source_token_revoke

URL = "/api/v1/customer/records"


@pytest.fixture
def records(api):
    people = [
        {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "email": "ann@example.com"},
        {"source_key": "B", "given_name": "Anne", "family_name": "Lee", "phone": "+442079460958"},
        {"source_key": "E", "given_name": "Cy", "family_name": "Day"},
    ]
    api.post(URL, {"records": people}, format="json")
    return dict(SourceRecord.objects.values_list("source_key", "id"))


def apply(records, groups):
    clusters = {records[k]: i for i, group in enumerate(groups) for k in group}
    golden_records_apply_clusters(domain="customer", clusters=clusters)


def golden_of(records, key):
    return CrossReference.objects.get(record_id=records[key]).golden_id


def serializer_json(pk: int) -> dict:
    golden = _golden_queryset("customer").get(pk=pk)
    return json.loads(JSONRenderer().render(GoldenRecordSerializer(golden).data))


def test_the_read_answers_what_the_serializer_answers(records, api):
    apply(records, ["AB", "E"])
    gid = golden_of(records, "A")

    response = api.get(f"/api/v1/customer/golden/{gid}")

    assert response.status_code == 200
    assert json.loads(response.content) == serializer_json(gid)
    assert list(json.loads(response.content)) == [
        "id", "domain", "status", "version", "attributes", "provenance", "members",
        "created_at", "updated_at",
    ]  # fmt: skip
    assert [m["source_key"] for m in response.json()["members"]] == ["A", "B"]


def test_a_retired_id_answers_with_its_survivor_and_the_retired_id(records, api):
    apply(records, ["AB", "E"])
    ab, e = golden_of(records, "A"), golden_of(records, "E")
    apply(records, ["ABE"])

    body = json.loads(api.get(f"/api/v1/customer/golden/{e}").content)

    assert body == {**serializer_json(ab), "retired_id": e}
    assert list(body)[-1] == "retired_id"


def test_a_warm_read_is_one_query(records, api, django_assert_num_queries):
    apply(records, ["AB", "E"])
    gid = golden_of(records, "A")
    api.get(f"/api/v1/customer/golden/{gid}")  # authenticates the token: then cached

    with django_assert_num_queries(1):
        response = api.get(f"/api/v1/customer/golden/{gid}")

    assert response.status_code == 200


def test_an_unknown_id_or_domain_is_404(records, api):
    apply(records, ["AB", "E"])

    assert api.get("/api/v1/customer/golden/999999").json()["detail"] == (
        "No customer golden record 999999."
    )
    assert api.get("/api/v1/nosuch/golden/1").status_code == 404


def test_a_revoked_token_is_refused_at_once_despite_the_cache(records, api, token):
    apply(records, ["AB", "E"])
    gid = golden_of(records, "A")
    assert api.get(f"/api/v1/customer/golden/{gid}").status_code == 200

    source_token_revoke(token=SourceToken.objects.get(pk=token.token.pk))

    assert api.get(f"/api/v1/customer/golden/{gid}").status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute(records, api, token):
    apply(records, ["AB", "E"])
    gid = golden_of(records, "A")
    api.get(f"/api/v1/customer/golden/{gid}")
    first = SourceToken.objects.get(pk=token.token.pk).last_used_at

    api.get(f"/api/v1/customer/golden/{gid}")

    assert first is not None
    assert SourceToken.objects.get(pk=token.token.pk).last_used_at == first
