"""The survivorship rules page of the hub: admins edit, preview and save; others are refused."""

import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from mdm.models import GoldenRecord, SurvivorshipJob, SurvivorshipRuleSet
from mdm.services.survivorship import survivorship_recompute

PAGE = "/survivorship/customer/"
PREVIEW = "/survivorship/customer/preview"
SAVE = "/survivorship/customer/save"
HTMX = {"HTTP_HX_REQUEST": "true"}


def person(role):
    user = User.objects.create_user(f"{role}-user", password="pw")
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin(db):
    return person("admin")


@pytest.fixture
def golden(ann_golden):
    return ann_golden


def form_data(page_html):
    """What the browser would post: every input and selected option of the page's form."""
    data = {}
    for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page_html):
        data[name] = value
    for name, body in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', page_html, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', body)
        data[name] = chosen.group(1) if chosen else ""
    groups = re.search(
        r'<textarea id="groups" name="groups"[^>]*>(.*?)</textarea>', page_html, re.S
    )
    assert groups is not None
    data["groups"] = groups.group(1)
    return data


def writes():
    return (
        SurvivorshipRuleSet.objects.count(),
        SurvivorshipRuleSet.history.count(),
        SurvivorshipJob.objects.count(),
        GoldenRecord.history.count(),
        sorted(GoldenRecord.objects.values_list("id", "version", "attributes")),
    )


@pytest.mark.parametrize("role", ["viewer", "steward"])
def test_stewards_and_viewers_are_refused(role, admin):
    data = form_data(admin.get(PAGE).content.decode())
    client = person(role)
    before = writes()

    assert client.get(PAGE).status_code == 403
    assert client.post(PREVIEW, data).status_code == 403
    assert client.post(SAVE, data).status_code == 403
    assert client.get("/survivorship/customer/jobs/1").status_code == 403
    assert writes() == before


def test_anonymous_is_sent_to_log_in(db):
    response = Client().get(PAGE)

    assert response.status_code == 302
    assert "login" in response["Location"]


def test_an_admin_sees_every_attribute_and_group_with_its_rule(admin):
    page = admin.get(PAGE).content.decode()

    assert 'id="rule-email"' in page
    assert 'id="rule-address"' in page and 'id="rule-city"' not in page
    assert re.search(
        r'name="consent_email-strategy".*?<option value="most_recent" selected>', page, re.S
    )
    assert "runs on its default rules (version 0)" in page
    data = form_data(page)
    assert data["version"] == "0"
    assert data["email-tie1"] == "most_recent"
    assert data["groups"].startswith("address: address_line1, address_line2, city")


def test_preview_shows_before_and_after_and_writes_nothing(admin, golden):
    data = form_data(admin.get(PAGE).content.decode())
    data.update({"given_name-strategy": "most_recent", "given_name-tie1": ""})
    before = writes()

    response = admin.post(PREVIEW, data, **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith('<div id="rules-panel">')  # the panel only, for htmx to swap
    assert '<strong class="changed-count">1</strong> of 1 golden records' in html
    assert "<td>given_name</td>\n          <td>Ann</td>\n          <td>Anne</td>" in html
    assert "erp <code>X</code>, most_recent" in html
    assert "beat Ann (crm A)" in html
    assert "Save as version 1 and recompute" in html
    assert writes() == before


def test_save_stores_a_version_and_the_job_is_watched_until_done(
    admin, golden, django_capture_on_commit_callbacks
):
    data = form_data(admin.get(PAGE).content.decode())
    data.update({"given_name-strategy": "most_recent", "comment": "latest name wins"})

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin.post(SAVE, data, **HTMX)

    assert response.status_code == 204
    job = SurvivorshipJob.objects.get()
    assert response["HX-Redirect"] == f"{PAGE}?job={job.pk}"
    assert len(queued) == 1
    rules = SurvivorshipRuleSet.objects.get()
    assert (rules.version, rules.comment) == (1, "latest name wins")
    assert rules.spec["rules"]["given_name"]["strategy"] == "most_recent"

    page = admin.get(response["HX-Redirect"]).content.decode()
    assert 'data-status="queued"' in page and 'hx-trigger="every 1s"' in page
    assert "Version 1, saved" in page and "latest name wins" in page
    history = page[page.index("<h2>History</h2>") :]
    assert "given_name: source_priority → most_recent" in history
    assert "admin-user" in history

    survivorship_recompute(job_id=job.pk)  # what the worker does (a real one: test_celery_*)
    fragment = admin.get(f"/survivorship/customer/jobs/{job.pk}").content.decode()

    assert 'data-status="succeeded"' in fragment
    assert "hx-trigger" not in fragment  # finished: the page stops polling
    assert "1 of 1 golden records checked, 1 changed" in fragment
    assert GoldenRecord.objects.get().attributes["given_name"] == "Anne"


def test_a_bad_value_is_shown_next_to_its_row_and_nothing_is_saved(admin, golden):
    data = form_data(admin.get(PAGE).content.decode())
    data.update({"email-decay": "soon"})
    before = writes()

    response = admin.post(SAVE, data, **HTMX)
    whole_page = admin.post(SAVE, data)  # without htmx

    assert (response.status_code, response["X-Aurum-Status"]) == (200, "400")  # htmx swaps it
    assert whole_page.status_code == 400
    assert "Expected a positive number of days" in whole_page.content.decode()
    html = response.content.decode()
    row = html[html.index('id="rule-email"') : html.index('id="rule-phone"')]
    assert "decay half life days: Expected a positive number of days, or null." in row
    assert writes() == before


def test_saving_over_a_newer_version_is_refused(admin, golden):
    stale = form_data(admin.get(PAGE).content.decode())
    assert admin.post(SAVE, stale).status_code == 302
    before = writes()

    response = admin.post(SAVE, stale, **HTMX)
    whole_page = admin.post(SAVE, stale)

    assert (response.status_code, response["X-Aurum-Status"]) == (200, "409")
    assert "version 1, not 0" in response.content.decode()
    assert whole_page.status_code == 409
    assert writes() == before


def test_a_new_group_gets_its_own_row(admin, golden):
    data = form_data(admin.get(PAGE).content.decode())
    data["groups"] += "\ncontact: email, phone"

    response = admin.post(PREVIEW, data, **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="rule-contact"' in html and "group: email, phone" in html
    assert 'id="rule-email"' not in html
