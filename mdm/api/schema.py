"""OpenAPI post-processing (drf-spectacular): what every operation shares.

- The ``domain`` path parameter is one of the declared domains (an enum).
- Every operation documents the API's error shape for the statuses any request may get:
  400 (a bad body or query), 401 (no or a bad token), 403 (not allowed), 404 (unknown id or
  domain, or another source system's record), 413 (body too large), 429 (rate limited), and
  for commands 409 (conflicts with the current state).
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "A code: invalid, not_found, ..."},
        "detail": {"description": "What went wrong and what to do."},
        "fields": {"type": "object", "description": "Per-field messages (400 only)."},
    },
    "required": ["error", "detail"],
}
ERRORS = {
    "400": "The body or query is wrong (see fields).",
    "401": "No token, or an unknown, expired or revoked one.",
    "403": "Not allowed for this role, domain or token scope.",
    "404": "No such object (or not visible to the caller), or an unknown domain.",
    "413": "The request body is too large.",
    "429": "Rate limited: retry after the Retry-After header's seconds.",
}
PUBLIC_PATHS = ("/api/v1/schema", "/api/v1/docs", "/api/v1/redoc")


def postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> Any:
    from mdm.domains import domain_codes

    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["ApiError"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/ApiError"}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "path":
                    continue
                if parameter.get("name") == "domain":
                    parameter["schema"] = {"type": "string", "enum": list(domain_codes())}
                elif parameter.get("schema", {}).get("type") == "integer":
                    parameter["schema"]["minimum"] = 0  # what the <int:...> route matches
                elif parameter.get("name") == "prefix":
                    parameter["schema"] = {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$"}
            if path in PUBLIC_PATHS:
                continue
            responses = operation["responses"]
            errors = dict(ERRORS)
            if method in ("post", "put", "patch", "delete"):
                errors["409"] = "Conflicts with the current state (see detail)."
            for code, description in errors.items():
                responses.setdefault(
                    code,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    return result
