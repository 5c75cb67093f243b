"""Masking of personal data in API responses, by the caller's role (see ``mdm.masking``)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from mdm.masking import mask_document, sees_pii


class MaskPiiMixin:
    """An API view whose successful responses are masked for callers who may not see PII
    (viewers): one pass over the response data just before it is rendered."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        if (
            isinstance(response, Response)
            and response.status_code < 400
            and response.data is not None
            and not sees_pii(request.user)
        ):
            response.data = mask_document(response.data, kwargs.get("domain"))
        return response
