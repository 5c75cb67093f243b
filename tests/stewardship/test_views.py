"""The workspace pages and the stewardship API, per persona: anonymous, source system,
viewer, steward, admin."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from mdm.models import CrossReference, QuarantinedPayload
from mdm.services.sources import source_token_issue
from stewardship.models import ReviewTask, TaskEvent
from tests.stewardship.factories import (
    PASSWORD,
    pair_task,
    record,
    source,
    two_people,
    user_with_role,
)

pytestmark = pytest.mark.django_db
ROLES = ["viewer", "steward", "admin"]


@pytest.fixture
def task():
    left, right = two_people()
    return pair_task(left, right, probability=0.83)


def login(role: str | None) -> Client:
    client = Client()
    if role is not None:
        user_with_role(f"user-{role}", role)
        assert client.login(username=f"user-{role}", password=PASSWORD)
    return client


@pytest.mark.parametrize(
    "path",
    ["/steward/", "/steward/queue/matches/", "/steward/queue/quality/", "/steward/quarantine/"],
)
def test_anonymous_is_sent_to_the_login_page(path):
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_a_user_without_a_role_is_refused():
    assert login("").get("/steward/").status_code == 403


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_the_queue_and_the_pair(role, task):
    client = login(role)

    queue = client.get("/steward/queue/matches/")
    pair = client.get(f"/steward/tasks/{task.pk}/")

    assert queue.status_code == 200 and pair.status_code == 200
    assert f'id="task-{task.pk}"' in queue.content.decode()
    page = pair.content.decode()
    assert "0.830" in page
    assert ('id="decide-merge"' in page) is (role != "viewer")
    assert ('id="read-only"' in page) is (role == "viewer")


def test_a_viewer_decision_is_refused_and_changes_nothing(task):
    client = login("viewer")

    response = client.post(f"/steward/tasks/{task.pk}/decide", {"decision": "skip"})
    bulk = client.post("/steward/tasks/bulk", {"task": [task.pk], "decision": "not_a_match"})
    claim = client.post(f"/steward/tasks/{task.pk}/claim")

    assert (response.status_code, bulk.status_code, claim.status_code) == (403, 403, 403)
    task.refresh_from_db()
    assert (task.status, task.assignee_id) == ("open", None)
    assert not TaskEvent.objects.exists()


def test_pair_page_highlights_differences_and_draws_contributions(task):
    page = login("steward").get(f"/steward/tasks/{task.pk}/").content.decode()

    assert (
        '<tr class="differs" data-attribute="given_name"><th>given_name</th>'
        "<td>Ann</td><td>Anne</td>" in page
    )
    assert '<tr class="same" data-attribute="family_name">' in page
    # The largest weight is a full half bar; a negative weight is drawn on the left.
    assert '<span class="bar positive" style="width: 50.0%">' in page
    assert '<span class="bar negative" style="width: 25.0%">' in page


def test_queue_filters_sort_and_page(task):
    left, right = two_people_again()
    low = pair_task(left, right, probability=0.61)
    client = login("steward")

    only_high = client.get("/steward/queue/matches/?min_p=0.7").content.decode()
    lowest_first = client.get("/steward/queue/matches/?sort=-probability").content.decode()
    by_source = client.get("/steward/queue/matches/?source=nowhere").content.decode()

    assert f'id="task-{task.pk}"' in only_high and f'id="task-{low.pk}"' not in only_high
    assert lowest_first.index(f'id="task-{low.pk}"') < lowest_first.index(f'id="task-{task.pk}"')
    assert "No open tasks in this queue with these filters" in by_source


def two_people_again():
    crm = source("crm")
    return record(crm, "C-20", given_name="Bo"), record(crm, "C-21", given_name="Bob")


def test_htmx_filter_answers_with_the_table_only(task):
    response = login("viewer").get(
        "/steward/queue/matches/?domain=customer",
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="queue-table",
    )

    body = response.content.decode()
    assert "<html" not in body and f'id="task-{task.pk}"' in body


def test_claim_from_the_queue_row_with_htmx(task):
    client = login("steward")

    response = client.post(f"/steward/tasks/{task.pk}/claim", {"row": "1"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert '<td class="assignee">user-steward</td>' in response.content.decode()
    task.refresh_from_db()
    assert task.assignee.username == "user-steward"


def test_skip_moves_to_the_next_task(task):
    left, right = two_people_again()
    second = pair_task(left, right, probability=0.7)
    client = login("steward")

    response = client.post(f"/steward/tasks/{task.pk}/decide", {"decision": "skip"})

    assert response.status_code == 302
    assert response["Location"] == f"/steward/tasks/{second.pk}/"
    task.refresh_from_db()
    assert task.status == "open"


def test_dashboard_counts(task):
    client = login("steward")
    ReviewTask.objects.filter(pk=task.pk).update(due_at="2000-01-01T00:00:00Z")

    page = client.get("/steward/").content.decode()

    assert '<strong id="overdue">1</strong>' in page
    assert '<strong id="decided-today">0</strong>' in page
    assert '<span id="backlog-today">1</span>' in page
    assert 'Potential match</a></td><td>customer</td><td class="num">1</td>' in page


def test_data_quality_queue_shows_its_tasks():
    from stewardship.services import data_quality_task_open

    client = login("viewer")
    assert "No open tasks in this queue" in client.get("/steward/queue/quality/").content.decode()
    rec = record(source("crm"), "C-5", email="bad")
    dq = data_quality_task_open(domain="customer", record_id=rec.pk, rule="email_valid")

    page = client.get("/steward/queue/quality/").content.decode()

    assert f'id="task-{dq.pk}"' in page and "email_valid" in page


@pytest.fixture
def bad_payload(api):
    response = api.post(
        "/api/v1/customer/records",
        {"source_key": "Q1", "given_name": "Zoe", "email": "zoe@@example"},
        format="json",
    )
    assert response.status_code == 422
    return QuarantinedPayload.objects.get(pk=response.json()["results"][0]["quarantine_id"])


def test_quarantine_form_shows_errors_beside_fields_and_replays(bad_payload):
    client = login("steward")

    page = client.get(f"/steward/quarantine/{bad_payload.pk}/").content.decode()
    response = client.post(
        f"/steward/quarantine/{bad_payload.pk}/replay",
        {"field:source_key": "Q1", "field:given_name": "Zoe", "field:email": "zoe@example.com"},
    )

    fields = re.findall(
        r'<div class="field( has-error)?">.*?name="field:(\w+)".*?</div>', page, re.S
    )
    # PostgreSQL's jsonb keeps its own key order.
    assert sorted(fields) == [("", "given_name"), ("", "source_key"), (" has-error", "email")]
    email_field = page[page.index('name="field:email"') :]
    assert email_field.index(
        "zoe@@example&#x27; is not a valid e-mail address"
    ) < email_field.index("</div>")
    assert response.status_code == 302 and response["Location"] == "/steward/quarantine/"
    bad_payload.refresh_from_db()
    assert bad_payload.status == "replayed"
    assert bad_payload.record.attributes["email"] == "zoe@example.com"


def test_quarantine_discard_needs_a_reason_and_the_steward_role(bad_payload):
    assert (
        login("viewer")
        .post(f"/steward/quarantine/{bad_payload.pk}/discard", {"reason": "x"})
        .status_code
        == 403
    )
    client = login("steward")

    client.post(f"/steward/quarantine/{bad_payload.pk}/discard", {"reason": "  "})
    bad_payload.refresh_from_db()
    assert bad_payload.status == "open"
    client.post(f"/steward/quarantine/{bad_payload.pk}/discard", {"reason": "test row"})
    bad_payload.refresh_from_db()
    assert (bad_payload.status, bad_payload.resolution_note) == ("discarded", "test row")


# --- API ---------------------------------------------------------------------------------


def api_as(role: str | None) -> APIClient:
    client = APIClient()
    if role == "source":
        client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {source_token_issue(source_system=source('web')).secret}"
        )
    elif role is not None:
        client.force_authenticate(user_with_role(f"api-{role}", role))
    return client


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [
        (None, 401, 401),
        ("source", 403, 403),
        ("viewer", 200, 403),
        ("steward", 200, 200),
        ("admin", 200, 200),
    ],
)
def test_api_permissions_per_persona(task, role, read, write):
    client = api_as(role)

    listed = client.get("/api/v1/steward/tasks")
    claimed = client.post(f"/api/v1/steward/tasks/{task.pk}/claim")

    assert (listed.status_code, claimed.status_code) == (read, write)
    if read == 200:
        assert [t["id"] for t in listed.json()["results"]] == [task.pk]
    task.refresh_from_db()
    assert (task.assignee_id is not None) is (write == 200)


def test_api_decide_errors(task):
    client = api_as("steward")

    bad = client.post(
        f"/api/v1/steward/tasks/{task.pk}/decide", {"decision": "maybe"}, format="json"
    )
    missing = client.post(
        "/api/v1/steward/tasks/999999/decide", {"decision": "skip"}, format="json"
    )
    skip = client.post(
        f"/api/v1/steward/tasks/{task.pk}/decide", {"decision": "skip"}, format="json"
    )

    assert bad.status_code == 400 and bad.json()["error"] == "invalid"
    assert missing.status_code == 404
    assert skip.status_code == 200 and skip.json()["status"] == "open"


def test_api_conflict_when_another_steward_holds_the_task(task):
    kim = api_as("steward")
    kim.post(f"/api/v1/steward/tasks/{task.pk}/claim")

    other = api_as("admin")
    other_steward = APIClient()
    other_steward.force_authenticate(user_with_role("lee", "steward"))
    response = other_steward.post(f"/api/v1/steward/tasks/{task.pk}/claim")

    assert response.status_code == 409 and response.json()["error"] == "conflict"
    assert other.get(f"/api/v1/steward/tasks/{task.pk}").json()["assignee"] == "api-steward"


def test_assign_from_the_pair_page(task):
    client = login("steward")
    kim = user_with_role("kim", "steward")

    page = client.get(f"/steward/tasks/{task.pk}/").content.decode()
    response = client.post(f"/steward/tasks/{task.pk}/assign", {"assignee": kim.pk})

    assert f'<option value="{kim.pk}">kim</option>' in page
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.assignee_id == kim.pk
    assert TaskEvent.objects.get(task=task).action == "assign"


def test_next_urls_stay_on_the_site(task):
    client = login("steward")

    response = client.post(f"/steward/tasks/{task.pk}/claim", {"next": "//evil.example/x"})

    assert response["Location"] == f"/steward/tasks/{task.pk}/"


def test_viewers_see_personal_data_masked(task, bad_payload):
    viewer, steward = login("viewer"), login("steward")

    as_viewer = viewer.get(f"/steward/tasks/{task.pk}/").content.decode()
    as_steward = steward.get(f"/steward/tasks/{task.pk}/").content.decode()
    queue = viewer.get("/steward/queue/matches/").content.decode()
    payload = viewer.get(f"/steward/quarantine/{bad_payload.pk}/").content.decode()
    listing = viewer.get("/steward/quarantine/").content.decode()

    # The differences are still shown, on the real values; the values themselves are masked.
    assert (
        '<tr class="differs" data-attribute="given_name"><th>given_name</th>'
        "<td>A***</td><td>A***</td>" in as_viewer
    )
    assert '<tr class="same" data-attribute="country"><th>country</th><td>GB</td>' in as_viewer
    assert "ann@example.com" in as_steward and "ann@example.com" not in as_viewer
    assert "Ann" not in queue and "A***" in queue
    assert "zoe@@example" not in payload and "zoe@@example" not in listing
    assert 'value="***"' in payload
    golden = CrossReference.objects.get(record_id=task.left_record_id).golden_id
    golden_page = viewer.get(f"/steward/golden/{golden}/").content.decode()
    assert "ann@example.com" not in golden_page and "a***@example.com" in golden_page
    assert "ann@example.com" in steward.get(f"/steward/golden/{golden}/").content.decode()


def test_api_gives_viewers_the_weights_without_the_compared_values(task):
    ReviewTask.objects.filter(pk=task.pk).update(
        explanation=[
            {
                "attribute": "email",
                "level": "exact",
                "match_weight": 5.0,
                "left": "a@x.io",
                "right": "a@x.io",
            }
        ]
    )

    as_viewer = api_as("viewer").get(f"/api/v1/steward/tasks/{task.pk}").json()
    as_steward = api_as("steward").get(f"/api/v1/steward/tasks/{task.pk}").json()

    assert as_viewer["explanation"] == [
        {"attribute": "email", "level": "exact", "match_weight": 5.0}
    ]
    assert as_steward["explanation"][0]["left"] == "a@x.io"


@pytest.mark.parametrize(
    ("role", "admin_links"), [("viewer", False), ("steward", False), ("admin", True)]
)
def test_navigation_per_role(role, admin_links):
    page = login(role).get("/steward/").content.decode()

    assert f'data-role="{role}"' in page
    assert ('href="/survivorship/customer/"' in page) is admin_links
    assert ('href="/admin/"' in page) is admin_links


def test_api_decide_with_a_user_token(task):
    from mdm.services.user_tokens import user_token_issue

    steward = user_with_role("tok", "steward")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {user_token_issue(user=steward).secret}")

    response = client.post(
        f"/api/v1/steward/tasks/{task.pk}/decide",
        {"decision": "not_a_match", "comment": "from a script"},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["decision"], body["decided_by"]) == (
        "decided",
        "not_a_match",
        "tok",
    )
