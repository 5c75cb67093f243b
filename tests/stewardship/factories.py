"""Builders for stewardship tests, the browser tests and the benchmark: users with roles,
source records in golden records, and open review tasks."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, User
from django.utils import timezone

from mdm.models import CrossReference, SourceRecord, SourceSystem
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.sources import source_system_upsert
from stewardship.models import ReviewTask

PASSWORD = "aurum-test-pw"
EXPLANATION = [
    {"attribute": "name", "level": "exact", "match_weight": 6.5},
    {"attribute": "email", "level": "different", "match_weight": -3.25},
    {"attribute": "date_of_birth", "level": "exact", "match_weight": 4.0},
]


def user_with_role(username: str, role: str | None) -> User:
    """A user in the role's group (groups are re-created: a transactional test flushes them)."""
    user = User.objects.create_user(username, password=PASSWORD)
    if role:
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    return user


def source(code: str = "crm") -> SourceSystem:
    system, _ = source_system_upsert(code=code, name=code.upper())
    return system


def record(system: SourceSystem, key: str, **attributes: Any) -> SourceRecord:
    return SourceRecord.objects.create(
        source_system=system,
        domain="customer",
        source_key=key,
        attributes=attributes,
        content_hash=key,
        received_at=timezone.now(),
    )


def golden_of(rec: SourceRecord) -> int:
    return CrossReference.objects.get(record_id=rec.pk).golden_id


def pair_task(
    left: SourceRecord, right: SourceRecord, probability: float = 0.8, **fields: Any
) -> ReviewTask:
    a, b = sorted([left.pk, right.pk])
    return ReviewTask.objects.create(
        domain="customer",
        left_record_id=a,
        right_record_id=b,
        match_probability=probability,
        explanation=EXPLANATION,
        **fields,
    )


def two_people() -> tuple[SourceRecord, SourceRecord]:
    """Two records of (perhaps) one person, in a golden record each."""
    crm, erp = source("crm"), source("erp")
    left = record(
        crm, "C-1", given_name="Ann", family_name="Lee", email="ann@example.com", country="GB"
    )
    right = record(
        erp, "E-7", given_name="Anne", family_name="Lee", email="ann.lee@example.org", country="GB"
    )
    golden_records_apply_clusters(domain="customer", clusters={left.pk: 1, right.pk: 2})
    return left, right
