"""Relationships of golden records: read them and their hierarchies; stewards edit them.

Reads take any hub role or a source system's token (like golden records); commands (add,
end, re-parent) need the steward role.  The work is in ``mdm.services.relationships`` and
``mdm.relationship_selectors``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mdm.api.errors import Conflict
from mdm.api.golden_serializers import ErrorSerializer
from mdm.api.views import domain_or_404
from mdm.domains import get_domain
from mdm.models import GoldenRecord, GoldenRelationship
from mdm.relationship_selectors import (
    Hierarchy,
    HierarchyNode,
    golden_hierarchy,
    golden_relationships,
    golden_unresolved_references,
    hierarchy_limits,
)
from mdm.roles import CanReadDomain, IsSteward
from mdm.selectors import golden_record_resolve, golden_records_visible
from mdm.services.relationships import (
    RelationshipConflictError,
    RelationshipError,
    RelationshipNotFoundError,
    golden_relationship_add,
    golden_relationship_end,
    golden_relationship_reparent,
)

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer}
STATUSES = ("active", "held", "ended", "all")


def _label(rel: GoldenRelationship) -> tuple[str, str]:
    try:
        t = get_domain(rel.domain).relationship(rel.rel_type)
    except (LookupError, KeyError):
        return rel.rel_type, rel.rel_type
    return t.label, t.inverse_label


class GoldenRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    domain = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()


def _ref(golden: GoldenRecord) -> dict[str, Any]:
    return {
        "id": golden.pk,
        "domain": golden.domain,
        "name": get_domain(golden.domain).display_name(golden.attributes),
        "status": golden.status,
    }


class RelationshipSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    inverse_label = serializers.CharField()
    status = serializers.CharField(help_text="active, held (would close a cycle) or ended")
    origin = serializers.CharField(help_text="source (derived) or steward")
    steward_locked = serializers.BooleanField()
    version = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    provenance = serializers.DictField()
    from_golden = GoldenRefSerializer()
    to_golden = GoldenRefSerializer()


def relationship_data(rel: GoldenRelationship) -> dict[str, Any]:
    label, inverse = _label(rel)
    return {
        "id": rel.pk,
        "type": rel.rel_type,
        "label": label,
        "inverse_label": inverse,
        "status": rel.status,
        "origin": rel.origin,
        "steward_locked": rel.steward_locked,
        "version": rel.version,
        "started_at": rel.started_at,
        "ended_at": rel.ended_at,
        "provenance": rel.provenance,
        "from_golden": _ref(rel.from_golden),
        "to_golden": _ref(rel.to_golden),
    }


class UnresolvedSerializer(serializers.Serializer):
    record_id = serializers.IntegerField()
    source = serializers.CharField()  # type: ignore[assignment]
    source_key = serializers.CharField()
    type = serializers.CharField(source="rel_type")
    target_key = serializers.CharField()


class RelationshipsSerializer(serializers.Serializer):
    golden_id = serializers.IntegerField()
    outgoing = RelationshipSerializer(many=True)
    incoming = RelationshipSerializer(many=True)
    unresolved = UnresolvedSerializer(many=True)


class NodeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    depth = serializers.IntegerField()
    parent_id = serializers.IntegerField(allow_null=True)


class HierarchySerializer(serializers.Serializer):
    type = serializers.CharField(source="rel_type")
    root = serializers.SerializerMethodField()  # type: ignore[assignment]
    ancestors = NodeSerializer(many=True, help_text="nearest first; depth 1 is the parent")
    descendants = NodeSerializer(many=True, help_text="by depth, then id")
    ancestors_truncated = serializers.BooleanField()
    descendants_truncated = serializers.BooleanField()

    def get_root(self, obj: Hierarchy) -> dict[str, Any]:
        return {"id": obj.root_id, "name": obj.root_name}


class AddInputSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=50)
    to_golden_id = serializers.IntegerField(min_value=1)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class EndInputSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    expected_version = serializers.IntegerField(required=False, allow_null=True, default=None)


class ReparentInputSerializer(EndInputSerializer):
    to_golden_id = serializers.IntegerField(min_value=1)


def _golden(domain: str, pk: int) -> GoldenRecord:
    golden = golden_records_visible(domain=domain).filter(pk=pk).first()
    if golden is None:
        raise Http404(f"No {domain} golden record {pk}.")
    return golden_record_resolve(golden)


class GoldenRelationshipsView(APIView):
    """A golden record's relationships (GET), or a steward adds one (POST)."""

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsSteward()]
        return [CanReadDomain()]

    @extend_schema(
        operation_id="golden_relationships",
        summary="A golden record's relationships: outgoing, incoming and unresolved references",
        parameters=[
            OpenApiParameter("type", str, description="Only this relationship type."),
            OpenApiParameter("status", str, description="active (default), held, ended or all"),
        ],
        responses={200: RelationshipsSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, domain: str, pk: int) -> Response:
        domain = domain_or_404(domain)
        golden = _golden(domain, pk)
        params = request.query_params
        wanted = params.get("status", "active")
        if wanted not in STATUSES:
            raise exceptions.ValidationError({"status": [f"Must be one of {', '.join(STATUSES)}."]})
        rel_type = params.get("type") or None
        if rel_type:
            _check_type(domain, rel_type, incoming_too=True)
        found = golden_relationships(
            golden_id=golden.pk, rel_type=rel_type, status=None if wanted == "all" else wanted
        )
        unresolved = [
            u
            for u in golden_unresolved_references(golden_id=golden.pk)
            if not rel_type or u.rel_type == rel_type
        ]
        body = {
            "golden_id": golden.pk,
            "outgoing": [relationship_data(r) for r in found["outgoing"]],
            "incoming": [relationship_data(r) for r in found["incoming"]],
            "unresolved": UnresolvedSerializer(unresolved, many=True).data,
        }
        return Response(body)

    @extend_schema(
        operation_id="golden_relationship_add",
        summary="Add a relationship from this golden record (steward)",
        request=AddInputSerializer,
        responses={201: RelationshipSerializer, **ERRORS},
    )
    def post(self, request: Request, domain: str, pk: int) -> Response:
        domain = domain_or_404(domain)
        data = AddInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        row = _run(
            lambda: golden_relationship_add(
                domain=domain,
                from_golden_id=pk,
                rel_type=v["type"],
                to_golden_id=v["to_golden_id"],
                actor=request.user,
                reason=v["reason"],
            )
        )
        return Response(relationship_data(row), status=status.HTTP_201_CREATED)


def _check_type(domain: str, rel_type: str, *, incoming_too: bool = False) -> None:
    from mdm.services.relationships import relationship_types

    types = relationship_types()
    ok = rel_type in types and (
        types[rel_type][0] == domain or (incoming_too and types[rel_type][1].target == domain)
    )
    if not ok:
        known = ", ".join(
            code
            for code, (d, t) in types.items()
            if d == domain or (incoming_too and t.target == domain)
        )
        raise exceptions.ValidationError(
            {"type": [f"Unknown relationship type {rel_type!r} for {domain}; expected: {known}."]}
        )


def _run(command: Callable[[], GoldenRelationship]) -> GoldenRelationship:
    try:
        row = command()
    except RelationshipNotFoundError as exc:
        raise Http404(str(exc)) from exc
    except RelationshipError as exc:
        raise exceptions.ValidationError({"non_field_errors": [str(exc)]}) from exc
    except RelationshipConflictError as exc:
        raise Conflict(str(exc)) from exc
    return GoldenRelationship.objects.select_related("from_golden", "to_golden").get(pk=row.pk)


class RelationshipEndView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="relationship_end",
        summary="End a relationship (steward); it stays ended whatever the sources say",
        request=EndInputSerializer,
        responses={200: RelationshipSerializer, **ERRORS},
    )
    def post(self, request: Request, domain: str, pk: int) -> Response:
        domain = domain_or_404(domain)
        data = EndInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        row = _run(
            lambda: golden_relationship_end(
                domain=domain,
                relationship_id=pk,
                actor=request.user,
                reason=v["reason"],
                expected_version=v["expected_version"],
            )
        )
        return Response(relationship_data(row))


class RelationshipReparentView(APIView):
    permission_classes = [IsSteward]

    @extend_schema(
        operation_id="relationship_reparent",
        summary="Move a relationship to another target (steward): the old one ends",
        request=ReparentInputSerializer,
        responses={200: RelationshipSerializer, **ERRORS},
    )
    def post(self, request: Request, domain: str, pk: int) -> Response:
        domain = domain_or_404(domain)
        data = ReparentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        row = _run(
            lambda: golden_relationship_reparent(
                domain=domain,
                relationship_id=pk,
                to_golden_id=v["to_golden_id"],
                actor=request.user,
                reason=v["reason"],
                expected_version=v["expected_version"],
            )
        )
        return Response(relationship_data(row))


class RelationshipDetailView(APIView):
    permission_classes = [CanReadDomain]

    @extend_schema(
        operation_id="relationship_read",
        summary="Read one relationship",
        responses={200: RelationshipSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, domain: str, pk: int) -> Response:
        domain = domain_or_404(domain)
        row = (
            GoldenRelationship.objects.select_related("from_golden", "to_golden")
            .filter(pk=pk, domain=domain)
            .first()
        )
        if row is None:
            raise Http404(f"No {domain} relationship {pk}.")
        return Response(relationship_data(row))


def _int_param(params: Any, name: str, default: int, limit: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    if not str(raw).isdigit() or int(raw) > limit:
        raise exceptions.ValidationError({name: [f"Must be a whole number from 0 to {limit}."]})
    return int(raw)


class GoldenHierarchyView(APIView):
    permission_classes = [CanReadDomain]

    @extend_schema(
        operation_id="golden_hierarchy",
        summary="A golden record's hierarchy: ancestors and descendants to a depth, in one call",
        parameters=[
            OpenApiParameter(
                "type", str, description="A hierarchy type; default: the domain's first one."
            ),
            OpenApiParameter("up", int, description="Levels of ancestors (default 10)."),
            OpenApiParameter("down", int, description="Levels of descendants (default 10)."),
        ],
        responses={200: HierarchySerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, domain: str, pk: int) -> Response:
        domain = domain_or_404(domain)
        golden = _golden(domain, pk)
        hierarchies = [t for t in get_domain(domain).relationships if t.hierarchy]
        if not hierarchies:
            raise exceptions.ValidationError({"type": [f"Domain {domain} has no hierarchy type."]})
        params = request.query_params
        rel_type = params.get("type") or hierarchies[0].code
        if rel_type not in {t.code for t in hierarchies}:
            known = ", ".join(t.code for t in hierarchies)
            raise exceptions.ValidationError(
                {"type": [f"{rel_type!r} is not a hierarchy of {domain}; expected: {known}."]}
            )
        depth_limit, _ = hierarchy_limits()
        up = _int_param(params, "up", 10, depth_limit)
        down = _int_param(params, "down", 10, depth_limit)
        tree = golden_hierarchy(golden=golden, rel_type=rel_type, up=up, down=down)
        return Response(hierarchy_data(tree))


def hierarchy_data(tree: Hierarchy) -> dict[str, Any]:
    """The body ``HierarchySerializer`` documents, built directly: DRF's per-field
    serialisation of 10,000 nodes took as long as reading them."""

    def nodes(items: list[HierarchyNode]) -> list[dict[str, Any]]:
        return [
            {"id": n.id, "name": n.name, "depth": n.depth, "parent_id": n.parent_id} for n in items
        ]

    return {
        "type": tree.rel_type,
        "root": {"id": tree.root_id, "name": tree.root_name},
        "ancestors": nodes(tree.ancestors),
        "descendants": nodes(tree.descendants),
        "ancestors_truncated": tree.ancestors_truncated,
        "descendants_truncated": tree.descendants_truncated,
    }
