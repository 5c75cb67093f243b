"""A golden record's provenance is stored packed (each distinct entry once) and read in full,
by the ORM, the golden read API and survivorship, whichever path wrote it."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from django.db import connection

from mdm.models import GoldenRecord, SourceRecord
from mdm.provenance import MARK, pack, unpack
from mdm.services.golden import golden_records_apply_clusters

URL = "/api/v1/customer/records"
PEOPLE = [
    {"source_key": "A", "given_name": "Ann", "family_name": "Lee", "email": "ann@example.com"},
    {"source_key": "B", "given_name": "Anne", "family_name": "Lee", "phone": "+442079460958"},
    {"source_key": "C", "given_name": "Bob", "family_name": "Ray"},
]
LONE = {
    name: {
        "record": 7,
        "source": "crm",
        "source_key": "K7",
        "rule": "only value",
        "strategy": "source_priority",
        "competitors": [],
    }
    for name in ("given_name", "family_name", "email")
}
MIGRATION = importlib.import_module("mdm.migrations.0016_golden_provenance_packed")


def _stored(pk: int) -> Any:
    """The provenance column of golden record ``pk`` as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT provenance FROM mdm_goldenrecord WHERE id = %s", [pk])
        (value,) = cursor.fetchone()
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _set_stored(pk: int, document: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE mdm_goldenrecord SET provenance = %s WHERE id = %s",
            [orjson.dumps(document).decode(), pk],
        )


def test_a_lone_members_provenance_packs_to_one_entry():
    packed = pack(LONE)
    assert packed == {"email": 0, "family_name": 0, "given_name": 0, MARK: [LONE["email"]]}
    assert unpack(packed) == LONE


def test_packing_keeps_distinct_entries_and_is_canonical():
    beaten = dict(LONE["email"], rule="most_recent", competitors=[{"value": "x", "source": "e"}])
    provenance = {**LONE, "email": beaten}
    packed = pack(provenance)
    assert packed[MARK] == [beaten, LONE["family_name"]]  # in the order of the names
    assert unpack(packed) == provenance
    # The same provenance in another order packs to the same document.
    assert pack(dict(reversed(list(provenance.items())))) == packed
    # Each attribute reads its own entry: changing one changes no other.
    full = unpack(packed)
    full["given_name"]["rule"] = "changed"
    assert full["family_name"]["rule"] == "only value"


def test_full_and_empty_documents_read_as_they_are():
    assert unpack(LONE) is LONE
    assert pack({}) == {} and unpack({}) == {}
    assert pack(pack(LONE)) == pack(LONE)


def _goldens(api: Any) -> dict[str, int]:
    api.post(URL, {"records": PEOPLE}, format="json")
    records = dict(SourceRecord.objects.values_list("source_key", "id"))
    clusters = {records["A"]: 1, records["B"]: 1, records["C"]: 2}
    golden_records_apply_clusters(domain="customer", clusters=clusters, reason="run")
    xref = dict(SourceRecord.objects.values_list("source_key", "xref__golden_id"))
    return {"AB": xref["A"], "C": xref["C"]}


def test_goldens_are_stored_packed_and_read_in_full(api):
    goldens = _goldens(api)
    lone = GoldenRecord.objects.get(pk=goldens["C"])
    stored = _stored(lone.pk)
    assert len(stored[MARK]) == 1  # every attribute of the lone member: one entry
    assert set(lone.provenance) == set(lone.attributes) == {"given_name", "family_name"}
    assert lone.provenance["given_name"]["source_key"] == "C"
    assert unpack(stored) == lone.provenance

    merged = GoldenRecord.objects.get(pk=goldens["AB"])
    assert merged.provenance["email"]["source_key"] == "A"
    assert merged.provenance["phone"]["source_key"] == "B"
    assert unpack(_stored(merged.pk)) == merged.provenance
    # The history rows and the API read the full form too.
    history = GoldenRecord.history.filter(id=merged.pk).latest("history_id")
    assert history.provenance == merged.provenance
    response = api.get(f"/api/v1/customer/golden/{merged.pk}")
    assert response.status_code == 200
    assert response.json()["provenance"] == merged.provenance


def test_a_row_in_the_full_form_reads_as_it_is_and_the_migration_packs_it(api):
    goldens = _goldens(api)
    pk = goldens["C"]
    full = GoldenRecord.objects.get(pk=pk).provenance
    _set_stored(pk, full)  # as a row written before the migration
    assert MARK not in _stored(pk)
    assert GoldenRecord.objects.get(pk=pk).provenance == full
    assert api.get(f"/api/v1/customer/golden/{pk}").json()["provenance"] == full

    editor = SimpleNamespace(connection=connection)
    MIGRATION.forward(None, editor)
    assert _stored(pk) == pack(full)
    assert GoldenRecord.objects.get(pk=pk).provenance == full
    MIGRATION.backward(None, editor)
    assert _stored(pk) == full


def test_saving_through_the_orm_packs(api):
    pk = _goldens(api)["C"]
    golden = GoldenRecord.objects.get(pk=pk)
    golden.provenance = LONE
    golden.save()
    assert _stored(pk) == pack(LONE)
    GoldenRecord.objects.filter(pk=pk).update(provenance={})
    assert _stored(pk) == {}
    assert GoldenRecord.objects.get(pk=pk).provenance == {}


@pytest.mark.django_db
def test_the_column_is_json_on_postgresql(require_postgres):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, data_type FROM information_schema.columns "
            "WHERE column_name = 'provenance' AND table_name LIKE 'mdm_%%goldenrecord'"
        )
        assert dict(cursor.fetchall()) == {
            "mdm_goldenrecord": "json",
            "mdm_historicalgoldenrecord": "json",
        }
