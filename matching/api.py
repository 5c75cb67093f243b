"""Search before create: one view, thin; the work is in matching.services.match_search."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from matching.services import CandidateInvalidError, MatchingError, match_search
from mdm.api import serializers as s
from mdm.api.errors import Conflict
from mdm.api.masking import MaskPiiMixin
from mdm.api.views import domain_or_404
from mdm.roles import CanReadDomain


class MatchSearchView(MaskPiiMixin, APIView):
    permission_classes = [CanReadDomain]
    required_access = "read"  # a POST that only reads: a read-only token may search

    @extend_schema(
        operation_id="match_search",
        summary="Search before create: the golden records a candidate most likely is",
        request=s.MatchSearchInputSerializer,
        responses={200: s.MatchSearchOutputSerializer},
    )
    def post(self, request: Request, domain: str) -> Response:
        domain = domain_or_404(domain)
        data = s.MatchSearchInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            candidate, matches = match_search(
                domain=domain,
                attributes=data.validated_data["attributes"],
                min_probability=data.validated_data["min_probability"],
                top=data.validated_data["top"],
            )
        except CandidateInvalidError as exc:
            raise exceptions.ValidationError(
                {
                    "attributes": {
                        e["field"] or "non_field_errors": [e["message"]] for e in exc.errors
                    }
                }
            ) from exc
        except MatchingError as exc:
            raise Conflict(str(exc)) from exc
        body = {
            "candidate": candidate,
            "matches": [{**asdict(m), "reasons": [asdict(r) for r in m.reasons]} for m in matches],
        }
        return Response(s.MatchSearchOutputSerializer(body).data, status=status.HTTP_200_OK)
