"""The API's JSON parser (orjson) gives what DRF's parser gives, for every body."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
from rest_framework import parsers as drf
from rest_framework.exceptions import ParseError

from mdm.api.parsers import JSONParser

BODIES = [
    b'{"records": [{"source_key": "A1", "email": "ann@example.com", "n": 1.5}]}',
    '{"given_name": "Zo\u00eb \u6f22\u5b57 \U0001f600", "x": "\\u00e9\\n"}'.encode(),
    b'{"a": 1, "a": 2}',  # the last key wins
    b'{"a": -0.0, "b": 1e-7, "c": 0.1, "d": 18446744073709551615, "e": -9223372036854775808}',
    b'{"a": 123456789012345678901234567890}',  # beyond 64 bits: stays an integer
    b'{"a": -12345678901234567890}',
    b'{"key": "12345678901234567890123"}',  # digits in a string
    b'{"a": 1e400}',  # the standard parser gives infinity
    b'{"a": "\\ud800"}',  # a lone surrogate
    b'\xef\xbb\xbf{"a": 1}',  # a byte order mark
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": "\xff"}',  # not UTF-8
    b"[" * 5000 + b"]" * 5000,  # deeper than orjson goes
    b"",
    b'{"a": 1} trailing',
    b"  [1, 2, 3]  ",
    b'{"a": "tab\there"}',  # a raw control character
]


def outcome(parser: drf.JSONParser, body: bytes, encoding: str = "utf-8") -> Any:
    try:
        return ("ok", parser.parse(io.BytesIO(body), "application/json", {"encoding": encoding}))
    except ParseError as exc:
        return ("error", str(exc.detail))
    except RecursionError:
        return ("recursion", None)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_orjson_parser_gives_what_drfs_parser_gives(body):
    assert same(outcome(JSONParser(), body), outcome(drf.JSONParser(), body))


def test_another_charset_is_decoded_as_declared():
    body = '{"name": "Zo\u00eb"}'.encode("latin-1")
    assert outcome(JSONParser(), body, "latin-1") == ("ok", {"name": "Zo\u00eb"})
    assert same(outcome(JSONParser(), body, "latin-1"), outcome(drf.JSONParser(), body, "latin-1"))


def test_a_nul_character_is_refused():
    with pytest.raises(ParseError, match="NUL"):
        JSONParser().parse(io.BytesIO(b'{"a": "x\\u0000y"}'), "application/json", {})
