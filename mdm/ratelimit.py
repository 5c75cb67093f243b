"""Rate limits: failed authentications per client address, and ingest requests per source
system.  Over the limit the API answers 429 with ``Retry-After``.

Fixed windows counted atomically: on Redis (``REDIS_URL``) one ``INCR`` and ``EXPIRE`` in a
MULTI/EXEC transaction, so every worker process shares the count; without Redis a counter in
this process's memory under a lock (enough for the embedded single-process hub).  DRF's own
throttles read-then-write the cache and are not atomic, so they are not used for this.

Checking an address before its credentials are looked at would cost a Redis round trip on
every API request.  Each process remembers, for ``CLEAN_MEMO_SECONDS``, the addresses Redis
showed without any failure in the current window, and checks those again only when the memo
runs out or when this process counts a failure of theirs: failures counted by other
processes hold an address off here at most that much later (their failed attempts are
answered 429 at once all the same, since counting a failure checks the limit).

Settings (environment variables of the same name): ``AURUM_AUTH_FAILURES_PER_MINUTE``
(default 20), ``AURUM_INGEST_REQUESTS_PER_MINUTE`` (default 1,800); 0 turns a limit off.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from rest_framework import exceptions

WINDOW_SECONDS = 60
CLEAN_MEMO_SECONDS = 1.0
_monotonic = time.monotonic  # the memo's clock (a test moves it)


class RateLimited(exceptions.Throttled):
    default_detail = "Too many requests."
    default_code = "rate_limited"


@dataclass(frozen=True)
class Hit:
    count: int
    retry_after: int  # seconds until the window ends


_local_lock = threading.Lock()
_local: dict[str, tuple[int, float]] = {}
# Addresses Redis showed without failures: address -> (window index, monotonic expiry).
_clean: dict[str, tuple[int, float]] = {}


@lru_cache(maxsize=4)
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _window(now: float) -> tuple[int, int]:
    index = int(now // WINDOW_SECONDS)
    return index, max(1, math.ceil((index + 1) * WINDOW_SECONDS - now))


def hit(scope: str, ident: str, *, count: bool = True) -> Hit:
    """Count one event of ``scope`` by ``ident`` in the current window (``count=False``:
    only read the count).  Atomic on Redis and in memory."""
    now = time.time()
    index, retry_after = _window(now)
    key = f"aurum:rl:{scope}:{ident}:{index}"
    url = getattr(settings, "REDIS_URL", "")
    if url:
        client = _redis(url)
        if not count:
            raw = client.get(key)
            return Hit(int(raw or 0), retry_after)
        pipe = client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS + 1)
        value, _ = pipe.execute()
        return Hit(int(value), retry_after)
    with _local_lock:
        stored, expires = _local.get(key, (0, 0.0))
        if expires <= now:
            stored = 0
        if count:
            stored += 1
            _local[key] = (stored, now + WINDOW_SECONDS + 1)
            if len(_local) > 10_000:  # drop windows that have ended
                for k in [k for k, (_, e) in _local.items() if e <= now]:
                    del _local[k]
        return Hit(stored, retry_after)


def client_address(request: Any) -> str:
    """The client's address as the server saw it (behind a proxy, set the proxy to pass the
    real address; ``X-Forwarded-For`` is not trusted here since any client can forge it)."""
    meta = getattr(request, "META", {})
    return str(meta.get("REMOTE_ADDR") or "unknown")


def auth_failures_check(request: Any) -> None:
    """Refuse (429) a client that has already failed to authenticate too often this
    window, before its credentials are even looked at."""
    limit = int(getattr(settings, "AURUM_AUTH_FAILURES_PER_MINUTE", 20))
    if limit <= 0:
        return
    address = client_address(request)
    index = int(time.time() // WINDOW_SECONDS)
    memo = _clean.get(address)
    if memo is not None and memo[0] == index and memo[1] > _monotonic():
        return
    current = hit("authfail", address, count=False)
    on_redis = bool(getattr(settings, "REDIS_URL", ""))
    if current.count == 0 and on_redis:
        if len(_clean) >= 10_000:
            _clean.clear()
        _clean[address] = (index, _monotonic() + CLEAN_MEMO_SECONDS)
    if current.count >= limit:
        raise RateLimited(
            wait=current.retry_after,
            detail="Too many failed authentications from this address.",
        )


def auth_failure_limit(request: Any) -> None:
    """Count one failed authentication of the client; past the limit, answer 429."""
    limit = int(getattr(settings, "AURUM_AUTH_FAILURES_PER_MINUTE", 20))
    if limit <= 0:
        return
    address = client_address(request)
    _clean.pop(address, None)
    current = hit("authfail", address)
    if current.count > limit:
        raise RateLimited(
            wait=current.retry_after,
            detail="Too many failed authentications from this address.",
        )


def ingest_limit(source_code: str) -> None:
    """Count one ingest request of a source system; past the limit, answer 429."""
    limit = int(getattr(settings, "AURUM_INGEST_REQUESTS_PER_MINUTE", 1800))
    if limit <= 0:
        return
    current = hit("ingest", source_code)
    if current.count > limit:
        raise RateLimited(
            wait=current.retry_after,
            detail=f"Source system {source_code} sent more than {limit} ingest requests this "
            "minute; send bigger batches or wait.",
        )
