"""Every admin page of the mdm app opens for an admin (list, change and history pages)."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from mdm.models import (
    CrossReference,
    GoldenRecord,
    IngestRun,
    QuarantinedPayload,
    SourceMapping,
    SourceRecord,
    SourceSystem,
    SourceToken,
)
from mdm.services.golden import golden_records_apply_clusters
from mdm.services.sources import source_mapping_register


@pytest.fixture
def admin_client(client, db):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    return client


@pytest.mark.parametrize(
    "model",
    [
        SourceSystem,
        SourceToken,
        SourceMapping,
        SourceRecord,
        IngestRun,
        QuarantinedPayload,
        GoldenRecord,
        CrossReference,
    ],
)
def test_admin_pages_open(admin_client, api, model):
    api.post(
        "/api/v1/customer/records",
        {
            "records": [
                {"source_key": "C1", "given_name": "Ann"},
                {"source_key": "C2", "email": "bad"},
            ]
        },
        format="json",
    )
    source_mapping_register(
        spec={
            "source": "shop",
            "domain": "customer",
            "key": {"field": "id"},
            "attributes": {"given_name": "first"},
        }
    )
    golden_records_apply_clusters(
        domain="customer",
        clusters={pk: 0 for pk in SourceRecord.objects.values_list("id", flat=True)},
    )
    obj = model.objects.first()
    meta = model._meta

    listing = admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
    change = admin_client.get(
        reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    )

    assert listing.status_code == 200
    assert change.status_code == 200
    if hasattr(model, "history"):
        history = admin_client.get(
            reverse(f"admin:{meta.app_label}_{meta.model_name}_history", args=[obj.pk])
        )
        assert history.status_code == 200


def test_admin_refuses_a_bad_mapping_spec(admin_client, source):
    response = admin_client.post(
        reverse("admin:mdm_sourcemapping_add"),
        {
            "source_system": source.pk,
            "domain": "customer",
            "name": "broken",
            "is_default": "on",
            "spec": '{"key": {"field": "id"}, "attributes": {"shoe": "x"}}',
        },
    )

    assert response.status_code == 200
    assert "&#x27;shoe&#x27; is not an attribute of domain customer" in response.content.decode()
    assert SourceMapping.objects.count() == 0


def test_admin_issues_a_token_once(admin_client, source):
    response = admin_client.post(
        reverse("admin:mdm_sourcesystem_changelist"),
        {"action": "issue_token", "_selected_action": [source.pk]},
        follow=True,
    )

    assert "copy it now" in response.content.decode()
    assert SourceToken.objects.filter(source_system=source).count() == 1
