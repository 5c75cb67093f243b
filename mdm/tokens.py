"""A short-lived, per-process cache of API token lookups.

Every API request authenticates a token; without a cache that is one query per request
before any work. An entry is keyed by the secret's SHA-256 (the stored hash: no secret is
kept in memory), so a hit means the secret was checked against the database at most
``AURUM_TOKEN_CACHE_SECONDS`` ago (default 10; 0 turns the cache off). Revoking a token
through its service forgets it at once in the process that revoked it; other processes
(other server workers) stop accepting it within that many seconds, as they do for a
deactivated source system or user.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings

T = TypeVar("T")
MAX_ENTRIES = 10_000

_lock = threading.Lock()
_entries: dict[tuple[str, str], tuple[float, object]] = {}


def cached(kind: str, secret_hash: str, load: Callable[[], T | None]) -> T | None:
    """The token of ``kind`` whose secret hashes to ``secret_hash``, from the cache or
    ``load()`` (which checks the secret; None, an unknown token, is not cached)."""
    ttl = float(getattr(settings, "AURUM_TOKEN_CACHE_SECONDS", 10))
    if ttl <= 0:
        return load()
    key = (kind, secret_hash)
    now = time.monotonic()
    entry = _entries.get(key)
    if entry is not None and entry[0] > now:
        return entry[1]  # type: ignore[return-value]
    token = load()
    if token is not None:
        with _lock:
            if len(_entries) >= MAX_ENTRIES:
                _entries.clear()
            _entries[key] = (now + ttl, token)
    return token


def forget(kind: str, secret_hash: str) -> None:
    with _lock:
        _entries.pop((kind, secret_hash), None)


def clear() -> None:
    with _lock:
        _entries.clear()
