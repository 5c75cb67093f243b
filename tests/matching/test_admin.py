import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from matching.models import MatchModel, PairConstraint
from mdm.models import SourceRecord


@pytest.fixture
def admin_client(client, db):
    client.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    return client


@pytest.fixture
def two(api):
    api.post(
        "/api/v1/customer/records",
        {
            "records": [
                {"source_key": "A", "given_name": "A"},
                {"source_key": "B", "given_name": "B"},
            ]
        },
        format="json",
    )
    return list(SourceRecord.objects.order_by("id"))


@pytest.mark.parametrize("name", ["matchmodel", "matchrun", "matchpair", "pairconstraint"])
def test_matching_admin_lists_open(admin_client, name):
    assert admin_client.get(reverse(f"admin:matching_{name}_changelist")).status_code == 200


def test_review_tasks_list_opens(admin_client):
    assert admin_client.get(reverse("admin:stewardship_reviewtask_changelist")).status_code == 200


def test_thresholds_are_edited_in_the_admin(admin_client):
    model = MatchModel.objects.create(domain="customer", version=1, parameters={}, is_active=True)

    response = admin_client.post(
        reverse("admin:matching_matchmodel_change", args=[model.pk]),
        {"upper_threshold": "0.97", "lower_threshold": "0.7"},
    )

    assert response.status_code == 302
    model.refresh_from_db()
    assert (model.upper_threshold, model.lower_threshold) == (0.97, 0.7)
    assert model.history.count() == 2


def test_a_steward_constraint_is_stored_in_id_order(admin_client, two):
    a, b = two

    response = admin_client.post(
        reverse("admin:matching_pairconstraint_add"),
        {"domain": "customer", "left": b.pk, "right": a.pk, "kind": "cannot_link", "reason": "x"},
    )

    assert response.status_code == 302
    constraint = PairConstraint.objects.get()
    assert (constraint.left_id, constraint.right_id) == (a.pk, b.pk)
    assert constraint.created_by is not None
    assert constraint.created_by.get_username() == "root"
