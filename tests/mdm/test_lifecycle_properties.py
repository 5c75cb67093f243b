"""Property test over random sequences of ingest, match, merge, split, correct and undo.

After every step: every source record is in exactly one active golden record, no active
golden record is empty, every must-link pair shares a golden record and no cannot-link pair
does.  An undo right after its operation restores the earlier state exactly (membership,
status, attributes, provenance, constraints); a later undo either restores the membership
the operation changed or is refused with a conflict and changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from rest_framework.test import APIClient

from matching.engine.interface import EngineRecord, ScoredPair, TrainedModel
from matching.models import MatchModel, PairConstraint
from matching.services import match_pending, match_run_full
from mdm.models import STEWARD_SOURCE, CrossReference, GoldenRecord, SourceRecord
from mdm.services.lifecycle import (
    GoldenConflictError,
    golden_attribute_correct,
    golden_record_merge,
    golden_record_split,
    golden_record_undo,
)
from mdm.services.sources import source_system_upsert, source_token_issue

KEYS = [f"k{i}" for i in range(8)]
FAMILIES = ["Lee", "Ray", "Day"]


class FamilyEngine:
    """Records of one family name match (0.97), others do not: deterministic and simple, so
    that the steward's decisions, not the engine, are what the test varies."""

    def train(self, spec: Any, records: Any, *, seed: int = 42) -> TrainedModel:
        return TrainedModel(parameters={}, prior=0.1, levels=(), warnings=())

    def score_all(self, spec: Any, model: Any, records: Any, *, threshold: float) -> list:
        records = list(records)
        return [
            ScoredPair(a.id, b.id, 0.97, 5.0)
            for i, a in enumerate(records)
            for b in records[i + 1 :]
            if a.attributes.get("family_name") == b.attributes.get("family_name")
        ]

    def score_candidates(
        self, spec: Any, model: Any, candidates: Any, *, threshold: float, top: int = 10
    ) -> list:
        existing = [
            EngineRecord(pk, attributes)
            for pk, attributes in SourceRecord.objects.filter(is_deleted=False)
            .exclude(source_system__code=STEWARD_SOURCE)
            .values_list("pk", "attributes")
        ]
        return [
            ScoredPair(c.id, e.id, 0.97, 5.0)
            for c in candidates
            for e in existing
            if e.id != c.id and c.attributes.get("family_name") == e.attributes.get("family_name")
        ]


def snapshot() -> tuple[Any, ...]:
    goldens = {
        g.pk: (g.status, g.survivor_id, g.attributes, g.provenance)
        for g in GoldenRecord.objects.order_by("pk")
    }
    members = dict(CrossReference.objects.values_list("record_id", "golden_id"))
    constraints = frozenset(PairConstraint.objects.values_list("left_id", "right_id", "kind"))
    records = frozenset(SourceRecord.objects.values_list("pk", "content_hash"))
    return goldens, members, constraints, records


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()  # each example runs in a savepoint rolled back at teardown
        self.engine = FamilyEngine()
        source, _ = source_system_upsert(code="crm", name="CRM")
        self.api = APIClient()
        self.api.credentials(
            HTTP_AUTHORIZATION=f"Bearer {source_token_issue(source_system=source).secret}"
        )
        self.steward = User.objects.create_user("stella")
        self.steward.groups.add(Group.objects.get(name="steward"))
        MatchModel.objects.create(domain="customer", version=1, parameters={}, is_active=True)
        # (operation id, state before it, whether nothing else changed the state since)
        self.stack: list[list[Any]] = []
        for i, key in enumerate(KEYS[:4]):
            self._push(key, FAMILIES[i % 2])
        match_run_full(domain="customer", engine=self.engine)

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    def _push(self, key: str, family: str) -> None:
        body = {"source_key": key, "given_name": f"Pat {key}", "family_name": family}
        response = self.api.post("/api/v1/customer/records", body, format="json")
        assert response.status_code in (200, 201), response.content

    def _changed_by_others(self, before: tuple[Any, ...]) -> None:
        if snapshot() != before:  # records, membership or attributes changed
            for entry in self.stack:
                entry[2] = False

    def _did(self, op_id: int, before: tuple[Any, ...]) -> None:
        for entry in self.stack:
            entry[2] = False
        self.stack.append([op_id, before, True])

    def _active(self) -> list[int]:
        return list(
            GoldenRecord.objects.filter(status="active").order_by("pk").values_list("pk", flat=True)
        )

    @rule(key=st.sampled_from(KEYS), family=st.sampled_from(FAMILIES))
    def ingest(self, key: str, family: str) -> None:
        before = snapshot()
        self._push(key, family)
        match_pending(domain="customer", engine=self.engine)
        self._changed_by_others(before)

    @rule()
    def full_match(self) -> None:
        before = snapshot()
        match_run_full(domain="customer", engine=self.engine)
        self._changed_by_others(before)

    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        active = self._active()
        if len(active) < 2:
            return
        ids = data.draw(st.lists(st.sampled_from(active), min_size=2, max_size=3, unique=True))
        target = data.draw(st.sampled_from(ids))
        before = snapshot()
        op = golden_record_merge(
            domain="customer", golden_ids=ids, actor=self.steward, target_id=target
        )
        self._did(op.pk, before)

    @rule(data=st.data())
    def split(self, data: st.DataObject) -> None:
        active = self._active()
        splittable = [g for g in active if CrossReference.objects.filter(golden_id=g).count() > 1]
        if not splittable:
            return
        gid = data.draw(st.sampled_from(splittable))
        members = sorted(
            CrossReference.objects.filter(golden_id=gid).values_list("record_id", flat=True)
        )
        out = data.draw(
            st.lists(st.sampled_from(members), min_size=1, max_size=len(members) - 1, unique=True)
        )
        into = data.draw(st.sampled_from([None, *[g for g in active if g != gid]]))
        before = snapshot()
        op = golden_record_split(
            domain="customer",
            golden_id=gid,
            record_ids=out,
            into_golden_id=into,
            actor=self.steward,
        )
        self._did(op.pk, before)

    @rule(data=st.data(), name=st.sampled_from(["Ann", "Bo", None]))
    def correct(self, data: st.DataObject, name: str | None) -> None:
        gid = data.draw(st.sampled_from(self._active()))
        before = snapshot()
        op = golden_attribute_correct(
            domain="customer", golden_id=gid, attribute="given_name", value=name, actor=self.steward
        )
        self._did(op.pk, before)

    @rule()
    def undo(self) -> None:
        if not self.stack:
            return
        op_id, earlier, clean = self.stack.pop()
        now = snapshot()
        try:
            golden_record_undo(operation_id=op_id, actor=self.steward)
        except GoldenConflictError:
            assert not clean, "an undo right after its operation must succeed"
            assert snapshot() == now  # refused: nothing changed
            return
        goldens, members, constraints, _ = snapshot()
        if clean:
            # Exactly the earlier state; golden records the operation created are retired.
            extra = {g: v for g, v in goldens.items() if g not in earlier[0]}
            assert all(v[0] == "retired" for v in extra.values())
            assert {g: v for g, v in goldens.items() if g in earlier[0]} == earlier[0]
            assert (members, constraints) == earlier[1:3]
        if self.stack:
            self.stack[-1][2] = self.stack[-1][2] and clean

    @invariant()
    def every_record_in_exactly_one_active_golden_record(self) -> None:
        links = dict(CrossReference.objects.values_list("record_id", "golden__status"))
        records = SourceRecord.objects.exclude(source_system__code=STEWARD_SOURCE, is_deleted=True)
        for pk in records.values_list("pk", flat=True):
            assert links.get(pk) == "active", f"record {pk} is in no active golden record"
        assert not GoldenRecord.objects.filter(status="active", members__isnull=True).exists()
        assert not GoldenRecord.objects.filter(status="retired", members__isnull=False).exists()

    @invariant()
    def constraints_hold(self) -> None:
        golden = dict(CrossReference.objects.values_list("record_id", "golden_id"))
        for left, right, kind in PairConstraint.objects.values_list("left_id", "right_id", "kind"):
            same = golden.get(left) == golden.get(right)
            assert same == (kind == "must_link"), (left, right, kind)


@pytest.mark.slow
def test_lifecycle_properties(db: Any) -> None:
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=40,
            stateful_step_count=12,
            report_multiple_bugs=False,
            # Each step is a few database writes: shrinking a failure can take minutes, so
            # it is off here; add Phase.shrink to debug one.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
