"""Rate limits (429 with Retry-After) on failed authentications and on ingest, in memory and
on a real Redis; oversized requests (413)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from mdm import ratelimit
from mdm.models import IngestRun, SourceSystem
from mdm.services.sources import IssuedToken, source_token_issue
from mdm.services.user_tokens import user_token_issue

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["memory", "redis"])
def backend(request: Any, settings: Any) -> str:
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
    return str(request.param)


def _address() -> str:
    # A fresh client address per test: counters outlive a test on a shared Redis.
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


def _client(secret: str, address: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_failed_authentications_are_limited_per_address(
    backend: str, settings: Any, token: IssuedToken
) -> None:
    settings.AURUM_AUTH_FAILURES_PER_MINUTE = 3
    address = _address()
    bad = _client("aur_00000000_wrong", address)

    codes = [bad.get("/api/v1/ingest-runs").status_code for _ in range(3)]
    limited = bad.get("/api/v1/ingest-runs")

    assert codes == [401, 401, 401]
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60
    # the address is held off even with a good token; another address is not
    assert _client(token.secret, address).get("/api/v1/ingest-runs").status_code == 429
    assert _client(token.secret, _address()).get("/api/v1/ingest-runs").status_code == 200
    # a hub user's bad token counts too
    assert _client("auru_00000000_wrong", address).get("/api/v1/domains").status_code == 429


def test_ingest_is_limited_per_source_system(
    backend: str, settings: Any, source: SourceSystem
) -> None:
    settings.AURUM_INGEST_REQUESTS_PER_MINUTE = 2
    source.code = f"crm-{uuid.uuid4().hex[:8]}"  # a fresh counter on a shared Redis
    source.save()
    api = _client(source_token_issue(source_system=source).secret, _address())

    codes = [
        api.post(
            "/api/v1/customer/records", {"source_key": f"K{i}", "given_name": "Ann"}, format="json"
        ).status_code
        for i in range(3)
    ]

    assert codes == [201, 201, 429]
    assert IngestRun.objects.count() == 2  # the refused request wrote nothing
    limited = api.post("/api/v1/customer/records", {"source_key": "K9"}, format="json")
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert "more than 2 ingest requests" in limited.json()["detail"]
    # reads are not ingest
    assert api.get("/api/v1/customer/records").status_code == 200


def test_counting_is_atomic_under_concurrency(backend: str) -> None:
    ident = uuid.uuid4().hex

    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(lambda _: ratelimit.hit("test", ident).count, range(40)))

    assert sorted(counts) == list(range(1, 41))


def test_redis_holds_the_counter_with_an_expiry(settings: Any, redis_url: str) -> None:
    settings.REDIS_URL = redis_url
    ident = uuid.uuid4().hex

    ratelimit.hit("test", ident)
    ratelimit.hit("test", ident)

    client = redis.Redis.from_url(redis_url)
    keys = client.keys(f"aurum:rl:test:{ident}:*")
    assert len(keys) == 1
    assert client.get(keys[0]) == b"2"
    assert 0 < client.ttl(keys[0]) <= ratelimit.WINDOW_SECONDS + 1


def test_an_oversized_body_answers_413_on_any_endpoint(settings: Any, token: IssuedToken) -> None:
    settings.AURUM_MAX_REQUEST_BYTES = 2_000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    steward = User.objects.create_user("stew", password="pw")
    steward.groups.add(Group.objects.get(name="steward"))
    big = {"records": [{"source_key": f"K{i}", "given_name": "x" * 50} for i in range(100)]}

    pushed = _client(token.secret, _address()).post("/api/v1/customer/records", big, format="json")
    merged = _client(user_token_issue(user=steward).secret, _address()).post(
        "/api/v1/customer/golden/merge",
        {"golden_ids": [1, 2], "reason": "x" * 5_000},
        format="json",
    )

    assert pushed.status_code == 413
    assert pushed.json()["error"] == "payload_too_large"
    assert merged.status_code == 413
    assert IngestRun.objects.count() == 0


def test_failed_password_logins_are_limited(backend: str, settings: Any) -> None:
    settings.AURUM_AUTH_FAILURES_PER_MINUTE = 2
    User.objects.create_user("ann", password="right-password")
    address = _address()
    client = APIClient(REMOTE_ADDR=address)
    wrong = {"username": "ann", "password": "wrong"}

    codes = [client.post("/accounts/login/", wrong).status_code for _ in range(3)]
    blocked = client.post("/accounts/login/", {"username": "ann", "password": "right-password"})

    assert codes == [200, 200, 429]
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) >= 1
    assert "_auth_user_id" not in client.session
    other = APIClient(REMOTE_ADDR=_address())
    assert (
        other.post(
            "/accounts/login/", {"username": "ann", "password": "right-password"}
        ).status_code
        == 302
    )


def test_a_clean_address_is_checked_on_redis_once_per_memo(
    settings: Any, redis_url: str, token: IssuedToken, monkeypatch: Any
) -> None:
    # given Redis and an address that has not failed this window
    settings.REDIS_URL = redis_url
    settings.AURUM_AUTH_FAILURES_PER_MINUTE = 3
    address = _address()
    reads: list[str] = []
    client = ratelimit._redis(redis_url)
    real_get = client.get

    def counted_get(key: str) -> Any:
        reads.append(key)
        return real_get(key)

    monkeypatch.setattr(client, "get", counted_get)
    good = _client(token.secret, address)

    # when it reads three times
    codes = [good.get("/api/v1/ingest-runs").status_code for _ in range(3)]

    # then Redis was asked once
    assert codes == [200, 200, 200]
    assert len(reads) == 1
    # failures counted by another process hold the address off once the memo runs out
    for _ in range(3):
        ratelimit.hit("authfail", address)
    now = ratelimit._monotonic()
    monkeypatch.setattr(ratelimit, "_monotonic", lambda: now + ratelimit.CLEAN_MEMO_SECONDS + 1)
    assert good.get("/api/v1/ingest-runs").status_code == 429
    assert len(reads) == 2


def test_a_failure_in_this_process_ends_the_memo_at_once(
    settings: Any, redis_url: str, token: IssuedToken
) -> None:
    settings.REDIS_URL = redis_url
    settings.AURUM_AUTH_FAILURES_PER_MINUTE = 2
    address = _address()
    good, bad = _client(token.secret, address), _client("aur_00000000_wrong", address)
    assert good.get("/api/v1/ingest-runs").status_code == 200  # remembered as clean

    codes = [bad.get("/api/v1/ingest-runs").status_code for _ in range(3)]

    assert codes == [401, 401, 429]
    assert good.get("/api/v1/ingest-runs").status_code == 429
