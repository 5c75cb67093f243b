"""Token, role and relationship changes write audit entries, with their actor."""

from __future__ import annotations

from mdm.audit.models import AuditEntry
from mdm.audit.selectors import audit_chain_verify
from mdm.services.access import domain_role_grant, domain_role_revoke
from mdm.services.sources import source_token_issue, source_token_revoke
from tests.stewardship.factories import user_with_role


def test_token_issue_and_revoke_are_audited_with_their_actor(source):
    admin = user_with_role("ada", "admin")

    issued = source_token_issue(source_system=source, domains=["customer"], actor=admin)
    source_token_revoke(token=issued.token, actor=admin)

    entries = list(
        AuditEntry.objects.filter(target_type="source_token")
        .order_by("id")
        .values_list("action", "target_id", "actor")
    )
    prefix = issued.token.prefix
    assert [(a, t) for a, t, _ in entries] == [("token.issued", prefix), ("token.revoked", prefix)]
    assert all(actor == "ada" for _, _, actor in entries)
    assert issued.secret not in str(list(AuditEntry.objects.values_list("detail", flat=True)))
    assert audit_chain_verify().ok


def test_domain_role_grant_and_revoke_are_audited(db):
    admin = user_with_role("ada", "admin")
    sam = user_with_role("sam", None)

    domain_role_grant(user=sam, domain="supplier", role="steward", actor=admin)
    domain_role_grant(user=sam, domain="supplier", role="steward", actor=admin)  # no change
    domain_role_revoke(user=sam, domain="supplier", actor=admin)

    assert list(
        AuditEntry.objects.filter(target_type="user").order_by("id").values_list("action", "domain")
    ) == [("role.granted", "supplier"), ("role.revoked", "supplier")]
