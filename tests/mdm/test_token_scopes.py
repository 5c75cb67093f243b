"""Source-system tokens: domain and read/write scopes, expiry, rotation and revocation through
the command and the admin API; hub users' tokens: expiry and revocation."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from mdm import tokens
from mdm.models import SourceRecord, SourceSystem, SourceToken, UserToken
from mdm.services.sources import (
    TokenScopeError,
    source_mapping_register,
    source_token_issue,
    source_token_rotate,
)
from mdm.services.user_tokens import user_token_issue

pytestmark = pytest.mark.django_db

ANN = {"source_key": "A1", "given_name": "Ann"}
ACME = {"source_key": "S1", "legal_name": "Acme Ltd"}


def client(secret: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return c


def push(secret: str, domain: str, body: dict[str, Any]) -> Any:
    return client(secret).post(f"/api/v1/{domain}/records", body, format="json")


@pytest.fixture
def admin_api() -> APIClient:
    user = User.objects.create_user("root", password="pw")
    user.groups.add(Group.objects.get(name="admin"))
    return client(user_token_issue(user=user).secret)


def test_a_domain_scoped_token_writes_and_reads_only_its_domains(source: SourceSystem) -> None:
    secret = source_token_issue(source_system=source, domains=["supplier"]).secret

    refused = push(secret, "customer", ANN)
    accepted = push(secret, "supplier", ACME)

    assert refused.status_code == 403
    assert "not scoped to domain 'customer'" in refused.json()["detail"]
    assert accepted.status_code == 201
    assert list(SourceRecord.objects.values_list("domain", "source_key")) == [("supplier", "S1")]
    assert client(secret).get("/api/v1/customer/golden").status_code == 403
    assert client(secret).get("/api/v1/supplier/golden").status_code == 200


def test_an_unscoped_token_follows_the_systems_mapped_domains(source: SourceSystem) -> None:
    source_mapping_register(
        source_system=source,
        spec={"domain": "supplier", "key": {"field": "id"}, "attributes": {"legal_name": "n"}},
    )
    secret = source_token_issue(source_system=source).secret

    assert push(secret, "customer", ANN).status_code == 403
    assert push(secret, "supplier", {"id": "S9", "n": "Acme Ltd"}).status_code == 201
    assert SourceRecord.objects.get().domain == "supplier"


def test_read_only_and_write_only_tokens(source: SourceSystem) -> None:
    writer = source_token_issue(source_system=source, access="write").secret
    reader = source_token_issue(source_system=source, access="read").secret

    assert push(reader, "customer", ANN).status_code == 403
    assert not SourceRecord.objects.exists()
    assert push(writer, "customer", ANN).status_code == 201
    assert client(writer).get("/api/v1/customer/records/A1").status_code == 403
    assert client(reader).get("/api/v1/customer/records/A1").status_code == 200
    assert client(reader).delete("/api/v1/customer/records/A1").status_code == 403
    assert SourceRecord.objects.get().is_deleted is False
    # a search only reads: a read-only token may do it
    search = client(reader).post(
        "/api/v1/customer/match", {"attributes": {"given_name": "Ann"}}, format="json"
    )
    assert search.status_code not in (401, 403)


def test_an_expired_token_answers_401(source: SourceSystem) -> None:
    issued = source_token_issue(
        source_system=source, expires_at=timezone.now() + timedelta(hours=1)
    )
    assert push(issued.secret, "customer", ANN).status_code == 201

    SourceToken.objects.filter(pk=issued.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    tokens.clear()  # the hour passed: the process's token cache (at most 10 s) has turned over

    response = push(issued.secret, "customer", {**ANN, "source_key": "A2"})
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid, expired, revoked or unknown token."
    assert SourceRecord.objects.count() == 1


def test_issue_refuses_unknown_domains_and_past_expiry(source: SourceSystem) -> None:
    with pytest.raises(TokenScopeError, match="unknown domain"):
        source_token_issue(source_system=source, domains=["nope"])
    with pytest.raises(TokenScopeError, match="future"):
        source_token_issue(source_system=source, expires_at=timezone.now())
    assert not SourceToken.objects.exists()


def test_rotation_by_command_keeps_the_old_token_for_the_grace_period(
    source: SourceSystem,
) -> None:
    old = source_token_issue(source_system=source, domains=["customer"], access="write")
    out, err = io.StringIO(), io.StringIO()

    call_command("issue_token", rotate=old.token.prefix, grace_hours=2, stdout=out, stderr=err)

    new_secret = out.getvalue().strip()
    new = SourceToken.objects.get(rotated_from=old.token)
    assert new_secret.startswith(f"aur_{new.prefix}_")
    assert (new.domains, new.access, new.name) == (["customer"], "write", old.token.name)
    old.token.refresh_from_db()
    assert old.token.expires_at is not None
    assert timedelta(minutes=119) < old.token.expires_at - timezone.now() <= timedelta(hours=2)
    assert push(old.secret, "customer", ANN).status_code == 201  # still within the grace
    assert push(new_secret, "customer", {**ANN, "source_key": "A2"}).status_code == 201
    assert "stays valid until" in err.getvalue()


def test_rotation_without_grace_stops_the_old_token_now(source: SourceSystem) -> None:
    old = source_token_issue(source_system=source)

    new = source_token_rotate(token=old.token, old_valid_until=timezone.now())

    assert push(old.secret, "customer", ANN).status_code == 401
    assert push(new.secret, "customer", ANN).status_code == 201


def test_a_revoked_token_cannot_be_rotated(source: SourceSystem) -> None:
    old = source_token_issue(source_system=source)
    call_command("issue_token", revoke=old.token.prefix, stdout=io.StringIO())

    with pytest.raises(CommandError, match="revoked or expired"):
        call_command("issue_token", rotate=old.token.prefix, stdout=io.StringIO())
    assert SourceToken.objects.count() == 1
    assert push(old.secret, "customer", ANN).status_code == 401


def test_issue_command_with_scopes_and_list(source: SourceSystem) -> None:
    out = io.StringIO()
    call_command(
        "issue_token",
        "crm",
        domains="customer,product",
        access="read",
        expires_in_days=30,
        stdout=out,
    )
    token = SourceToken.objects.get()
    assert out.getvalue().strip().startswith(f"aur_{token.prefix}_")
    assert (token.domains, token.access) == (["customer", "product"], "read")
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)  # type: ignore[operator]

    listing = io.StringIO()
    call_command("issue_token", "crm", list=True, stdout=listing)
    assert token.prefix in listing.getvalue()
    assert "customer,product" in listing.getvalue() and "active" in listing.getvalue()

    with pytest.raises(CommandError, match="unknown domain"):
        call_command("issue_token", "crm", domains="nope", stdout=io.StringIO())
    assert SourceToken.objects.count() == 1


def test_admin_api_issues_rotates_and_revokes(source: SourceSystem, admin_api: APIClient) -> None:
    issued = admin_api.post(
        "/api/v1/source-tokens",
        {"source": "crm", "name": "nightly", "domains": ["customer"], "access": "write"},
        format="json",
    )
    assert issued.status_code == 201
    body = issued.json()
    assert (body["source"], body["domains"], body["access"]) == ("crm", ["customer"], "write")
    assert push(body["secret"], "customer", ANN).status_code == 201

    rotated = admin_api.post(
        f"/api/v1/source-tokens/{body['prefix']}/rotate", {"old_valid_hours": 0}, format="json"
    )
    assert rotated.status_code == 201
    assert rotated.json()["rotated_from"] == body["prefix"]
    assert push(body["secret"], "customer", ANN).status_code == 401
    new_secret = rotated.json()["secret"]
    assert push(new_secret, "customer", ANN).status_code == 200  # unchanged record

    revoked = admin_api.post(f"/api/v1/source-tokens/{rotated.json()['prefix']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["is_active"] is False
    assert push(new_secret, "customer", ANN).status_code == 401

    listing = admin_api.get("/api/v1/source-tokens?source=crm").json()["results"]
    assert {t["prefix"] for t in listing} == {body["prefix"], rotated.json()["prefix"]}
    assert all("secret" not in t and "secret_hash" not in t for t in listing)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"prefix": "deadbeef"}, "prefix"),
        ({"secret_hash": "0" * 64}, "secret_hash"),
        ({"revoked_at": None}, "revoked_at"),
        ({"source_system": 99}, "source_system"),
        ({"domains": ["nope"]}, "non_field_errors"),
    ],
)
def test_admin_api_refuses_what_the_hub_sets(
    source: SourceSystem, admin_api: APIClient, extra: dict[str, Any], field: str
) -> None:
    response = admin_api.post("/api/v1/source-tokens", {"source": "crm", **extra}, format="json")

    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not SourceToken.objects.exists()


def test_user_tokens_expire_and_are_revoked_through_the_api(admin_api: APIClient) -> None:
    viewer = User.objects.create_user("vera", password="pw")
    viewer.groups.add(Group.objects.get(name="viewer"))
    issued = admin_api.post(
        "/api/v1/user-tokens",
        {"username": "vera", "expires_at": (timezone.now() + timedelta(days=1)).isoformat()},
        format="json",
    )
    assert issued.status_code == 201
    secret, prefix = issued.json()["secret"], issued.json()["prefix"]
    assert client(secret).get("/api/v1/customer/golden").status_code == 200

    assert admin_api.post(f"/api/v1/user-tokens/{prefix}/revoke").status_code == 200
    assert client(secret).get("/api/v1/customer/golden").status_code == 401

    expiring = user_token_issue(user=viewer, expires_at=timezone.now() + timedelta(minutes=5))
    UserToken.objects.filter(pk=expiring.token.pk).update(expires_at=timezone.now())
    assert client(expiring.secret).get("/api/v1/customer/golden").status_code == 401


def test_rotation_until_a_given_time(source: SourceSystem, admin_api: APIClient) -> None:
    old = source_token_issue(source_system=source)
    until = timezone.now() + timedelta(days=3)

    by_api = admin_api.post(
        f"/api/v1/source-tokens/{old.token.prefix}/rotate",
        {"old_valid_until": until.isoformat()},
        format="json",
    )
    assert by_api.status_code == 201
    old.token.refresh_from_db()
    assert old.token.expires_at == until

    out, err = io.StringIO(), io.StringIO()
    call_command(
        "issue_token",
        rotate=by_api.json()["prefix"],
        valid_until="2099-01-01T00:00:00+00:00",
        stdout=out,
        stderr=err,
    )
    assert SourceToken.objects.get(prefix=by_api.json()["prefix"]).expires_at.year == 2099  # type: ignore[union-attr]
    assert push(out.getvalue().strip(), "customer", ANN).status_code == 201
