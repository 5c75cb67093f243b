"""A steward's decision committed while a full match run is under way is not lost (PostgreSQL).

The run clustered from a snapshot without the decision (the test holds it just after
clustering, the widest window); its apply takes the domain lock, sees the new constraints
and clusters again, so the split record stays apart.  Without the re-check the run would
merge the record back.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group, User
from django.db import connections

from matching import services
from matching.services import match_model_train, match_run_full
from mdm.models import CrossReference, SourceRecord
from mdm.services.lifecycle import golden_record_split
from tests.matching.test_services import FixedEngine

pytestmark = pytest.mark.django_db(transaction=True)


class Pause:
    """Wraps ``matching.services.cluster_columns``: the first call returns only when told to."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.clustered = threading.Event()
        self.go_on = threading.Event()

    def __call__(self, *args, **kwargs):
        result = self.cluster(*args, **kwargs)
        if not self.clustered.is_set():
            self.clustered.set()
            assert self.go_on.wait(30)
        return result


def golden(keys, key):
    return CrossReference.objects.get(record_id=keys[key]).golden_id


def test_a_split_committed_during_a_full_run_is_honoured(require_postgres, api, monkeypatch):
    people = [
        {"source_key": k, "given_name": f"P{k}", "family_name": "Lee"} for k in "ABCDEFGHIJKL"
    ]
    api.post("/api/v1/customer/records", {"records": people}, format="json")
    keys = dict(SourceRecord.objects.values_list("source_key", "id"))
    engine = FixedEngine({("A", "B"): 0.99, ("B", "C"): 0.99}, keys)
    match_model_train(domain="customer", engine=engine)
    match_run_full(domain="customer", engine=engine)
    abc = golden(keys, "A")
    assert golden(keys, "C") == abc
    steward = User.objects.create_user("stella")
    steward.groups.add(Group.objects.get_or_create(name="steward")[0])

    pause = Pause(services.cluster_columns)
    monkeypatch.setattr(services, "cluster_columns", pause)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            match_run_full(domain="customer", engine=engine)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    runner = threading.Thread(target=run)
    runner.start()
    assert pause.clustered.wait(30)
    split = golden_record_split(
        domain="customer", golden_id=abc, record_ids=[keys["C"]], actor=steward
    )
    pause.go_on.set()
    runner.join(60)

    assert not runner.is_alive() and errors == []
    assert golden(keys, "A") == golden(keys, "B") == abc
    assert golden(keys, "C") == split.target_id != abc
