"""Reads of golden relationships: a record's links by type, and hierarchies.

A hierarchy is read with one recursive query (``WITH RECURSIVE``, on PostgreSQL and SQLite)
per direction, bounded by a depth limit, joined to the golden records for their names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.db import connection

from mdm.domains import get_domain
from mdm.models import GoldenRecord, GoldenRelationship, SourceReference

ACTIVE = GoldenRelationship.Status.ACTIVE.value


def hierarchy_limits() -> tuple[int, int]:
    """(the largest depth a read may ask for, the most nodes one read returns)."""
    return (
        int(getattr(settings, "AURUM_HIERARCHY_MAX_DEPTH", 1000)),
        int(getattr(settings, "AURUM_HIERARCHY_MAX_NODES", 100_000)),
    )


NameOf = Callable[[str, dict[str, Any]], str]


def display_name(domain: str, attributes: dict[str, Any]) -> str:
    return get_domain(domain).display_name(attributes)


def _name(domain: str, attributes: Any, name_of: NameOf = display_name) -> str:
    if isinstance(attributes, (str, bytes)):
        attributes = orjson.loads(attributes)
    return name_of(domain, attributes or {})


def golden_relationships(
    *, golden_id: int, rel_type: str | None = None, status: str | None = ACTIVE
) -> dict[str, list[GoldenRelationship]]:
    """The links from (``outgoing``) and to (``incoming``) a golden record, oldest first.

    ``status`` None means every status (active, held, ended).
    """
    qs = GoldenRelationship.objects.select_related("from_golden", "to_golden")
    if rel_type:
        qs = qs.filter(rel_type=rel_type)
    if status:
        qs = qs.filter(status=status)
    return {
        "outgoing": list(qs.filter(from_golden_id=golden_id).order_by("rel_type", "id")),
        "incoming": list(qs.filter(to_golden_id=golden_id).order_by("rel_type", "id")),
    }


@dataclass(frozen=True)
class UnresolvedReference:
    record_id: int
    source: str
    source_key: str
    rel_type: str
    target_key: str


def golden_unresolved_references(*, golden_id: int) -> list[UnresolvedReference]:
    """References of a golden record's members whose target the hub does not hold (or has
    not matched) yet: they become links when it arrives."""
    refs = (
        SourceReference.objects.filter(record__xref__golden_id=golden_id, record__is_deleted=False)
        .select_related("record", "source_system")
        .order_by("id")
    )
    out: list[UnresolvedReference] = []
    for ref in refs:
        resolved = GoldenRecord.objects.filter(
            members__record__source_system_id=ref.source_system_id,
            members__record__domain=ref.target_domain,
            members__record__source_key=ref.target_key,
            members__record__is_deleted=False,
        ).exists()
        if not resolved:
            out.append(
                UnresolvedReference(
                    ref.record_id,
                    ref.source_system.code,
                    ref.record.source_key,
                    ref.rel_type,
                    ref.target_key,
                )
            )
    return out


@dataclass(frozen=True)
class HierarchyNode:
    id: int
    name: str
    depth: int  # 1 = parent (ancestors) or child (descendants)
    parent_id: int | None  # descendants: the node's parent; ancestors: the node's own parent
    status: str = "active"


@dataclass
class Hierarchy:
    rel_type: str
    root_id: int
    root_name: str
    ancestors: list[HierarchyNode] = field(default_factory=list)  # nearest first
    descendants: list[HierarchyNode] = field(default_factory=list)  # by depth, then id
    ancestors_truncated: bool = False
    descendants_truncated: bool = False


_DOWN = """
WITH RECURSIVE tree(node, parent, depth) AS (
    SELECT r.from_golden_id, r.to_golden_id, 1 FROM mdm_goldenrelationship r
    WHERE r.to_golden_id = %s AND r.rel_type = %s AND r.status = 'active'
    UNION
    SELECT r.from_golden_id, r.to_golden_id, tree.depth + 1
    FROM mdm_goldenrelationship r JOIN tree ON r.to_golden_id = tree.node
    WHERE r.rel_type = %s AND r.status = 'active' AND tree.depth < %s
)
SELECT tree.node, tree.parent, tree.depth, g.domain, g.attributes
FROM tree JOIN mdm_goldenrecord g ON g.id = tree.node
ORDER BY tree.depth, tree.node
LIMIT %s
"""

_UP = """
WITH RECURSIVE chain(node, child, depth) AS (
    SELECT r.to_golden_id, r.from_golden_id, 1 FROM mdm_goldenrelationship r
    WHERE r.from_golden_id = %s AND r.rel_type = %s AND r.status = 'active'
    UNION
    SELECT r.to_golden_id, r.from_golden_id, chain.depth + 1
    FROM mdm_goldenrelationship r JOIN chain ON r.from_golden_id = chain.node
    WHERE r.rel_type = %s AND r.status = 'active' AND chain.depth < %s
)
SELECT chain.node, chain.child, chain.depth, g.domain, g.attributes
FROM chain JOIN mdm_goldenrecord g ON g.id = chain.node
ORDER BY chain.depth, chain.node
LIMIT %s
"""


def _walk(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return list(cursor.fetchall())


def golden_hierarchy(
    *,
    golden: GoldenRecord,
    rel_type: str,
    up: int,
    down: int,
    max_nodes: int | None = None,
    name_of: NameOf = display_name,
) -> Hierarchy:
    """A golden record's place in a hierarchy: its ancestors up to ``up`` levels and its
    descendants down to ``down`` levels, each with its name, in two queries.

    A level beyond the limit is read only to say whether the result is truncated.  A node
    met twice (a cycle or a diamond left by the sources) is listed once, at its smallest
    depth.  ``max_nodes`` caps the descendants (the setting AURUM_HIERARCHY_MAX_NODES);
    ``name_of(domain, attributes)`` names a node (the steward UI masks personal data).
    """
    cap = max_nodes if max_nodes is not None else hierarchy_limits()[1]
    result = Hierarchy(rel_type, golden.pk, _name(golden.domain, golden.attributes, name_of))
    if up > 0:
        seen = {golden.pk}
        for node, _child, depth, domain, attributes in _walk(
            _UP, [golden.pk, rel_type, rel_type, up + 1, up + 2]
        ):
            if depth > up:
                result.ancestors_truncated = True
                continue
            if node in seen:
                continue
            seen.add(node)
            result.ancestors.append(
                HierarchyNode(node, _name(domain, attributes, name_of), depth, None)
            )
        for i, item in enumerate(result.ancestors[:-1]):
            result.ancestors[i] = HierarchyNode(
                item.id, item.name, item.depth, result.ancestors[i + 1].id
            )
    if down > 0:
        seen = {golden.pk}
        rows = _walk(_DOWN, [golden.pk, rel_type, rel_type, down + 1, cap + 1])
        for node, parent, depth, domain, attributes in rows:
            if depth > down:
                result.descendants_truncated = True
                continue
            if node in seen:
                continue
            if len(result.descendants) >= cap:
                result.descendants_truncated = True
                break
            seen.add(node)
            result.descendants.append(
                HierarchyNode(node, _name(domain, attributes, name_of), depth, parent)
            )
    return result
