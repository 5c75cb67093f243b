"""The hot read, GET /api/v1/<domain>/golden/<id>: the serializer's JSON, in one query."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.urls import Resolver404, get_resolver, resolve
from django.urls.resolvers import RegexPattern, URLResolver
from django.utils import timezone as django_timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from mdm.api.serializers import GoldenRecordSerializer
from mdm.api.views import GoldenRecordDetailView, _datetime, _golden_queryset
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
    # byte for byte what DRF renders from the serializer
    golden = _golden_queryset("customer").get(pk=gid)
    assert response.content == JSONRenderer().render(GoldenRecordSerializer(golden).data)
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


@pytest.mark.parametrize("zone", [None, "Europe/Paris", "America/St_Johns"])
def test_timestamps_are_written_as_drf_writes_them(zone):
    drf = serializers.DateTimeField().to_representation
    values: list[datetime | None] = [
        None,
        datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 1, 1, 12, 0),  # naive: DRF makes it aware in the current zone
    ]

    with django_timezone.override(zone) if zone else django_timezone.override(UTC):
        assert [_datetime(v) for v in values] == [drf(v) for v in values]  # type: ignore[arg-type]


def test_no_other_route_answers_a_golden_read_path():
    # The read is resolved first (config/urls.py): every path of its shape, whatever its
    # first segment, is claimed by no other route, so resolving it first changes nothing.
    from config import urls
    from mdm.api.urls import hot_urlpatterns

    first: Any = urls.urlpatterns[0]
    assert first.url_patterns == hot_urlpatterns
    rest: Any = urls.urlpatterns[1:]
    without = URLResolver(RegexPattern(r"^/"), rest)
    words = {"customer", "supplier", "product"}
    pending = list(get_resolver().url_patterns)
    while pending:
        pattern = pending.pop()
        words.update(re.findall(r"[-a-zA-Z0-9_]+", str(pattern.pattern)))
        pending.extend(getattr(pattern, "url_patterns", []))

    for word in sorted(words):
        path = f"/api/v1/{word}/golden/7"
        match = resolve(path)
        view: Any = match.func
        assert view.view_class is GoldenRecordDetailView, path
        assert match.kwargs == {"domain": word, "pk": 7}
        with pytest.raises(Resolver404):
            without.resolve(path)
