"""The API's JSON parser: DRF's, refusing text that holds a NUL character.

PostgreSQL cannot store NUL (``\\u0000``) in text; without this check such a value reaches
the database and fails there (a 500) instead of answering 400.  The raw body is searched
first, so the usual request pays one bytes search, not a walk of the parsed data.
"""

from __future__ import annotations

import io
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _has_nul(data: Any) -> bool:
    if isinstance(data, str):
        return "\x00" in data
    if isinstance(data, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in data.items())
    if isinstance(data, list):
        return any(_has_nul(item) for item in data)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read()
        data = super().parse(io.BytesIO(raw), media_type, parser_context)
        if b"\\u0000" in raw and _has_nul(data):
            raise ParseError("Text may not contain NUL characters (\\u0000); remove them.")
        return data
