"""The audit trail as people read it: names instead of ids, readable times with the exact one on
hover, a grouped select of actions, and a clear message (and a 400 in the API) for From after To."""

import re
from datetime import date, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from access import grants
from access.audit import audit_record
from access.models import AuditEvent
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def security(db):
    return UserFactory(username="sec", roles=["security_engineer"])


def approvals(*users):
    with transaction.atomic():
        audit_record(actor=None, action="request.approved", details={"approvals": [u.pk for u in users]})


def test_details_show_usernames_instead_of_user_ids(client, security):
    olga, bob = UserFactory(username="olga"), UserFactory(username="bob")
    approvals(olga, bob)
    client.force_login(security)
    page = client.get(reverse("access:audit-list"))
    assert "olga, bob" in page.text
    assert f"{olga.pk}, {bob.pk}" not in page.text


def test_details_names_take_a_constant_number_of_queries(client, security):
    client.force_login(security)
    approvals(UserFactory(username="u0"))
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("access:audit-list"))
    for index in range(1, 15):
        approvals(UserFactory(username=f"u{index}"), UserFactory(username=f"v{index}"))
    with CaptureQueriesContext(connection) as many:
        page = client.get(reverse("access:audit-list"))
    assert "u14, v14" in page.text
    assert len(many) == len(few)


def test_times_are_readable_with_the_exact_time_on_hover(client, security):
    approvals(security)
    event = AuditEvent.objects.get()
    client.force_login(security)
    page = client.get(reverse("access:audit-list")).text
    exact = event.at.isoformat()
    assert f'<time datetime="{exact}" title="{exact}"' in page
    readable = f"{event.at.day} {event.at:%b %Y, %H:%M}"  # e.g. "7 Dec 2026, 14:05" (UTC in tests)
    assert readable in page
    assert not re.search(r">\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}<", page)


def test_actions_are_a_select_grouped_by_family(client, security):
    client.force_login(security)
    page = client.get(reverse("access:audit-list"), {"action": "grant"}).text
    assert '<select name="action"' in page
    assert '<optgroup label="Grants">' in page and '<optgroup label="Proposals">' in page
    assert '<option value="grant" selected>' in page
    assert '<option value="request.approved">request.approved</option>' in page
    assert '<option value="connection">' in page


def test_from_after_to_says_nothing_can_match(client, security):
    approvals(security)
    client.force_login(security)
    today = date.today()
    query = {"since": today.isoformat(), "until": (today - timedelta(days=3)).isoformat()}
    page = client.get(reverse("access:audit-list"), query)
    assert page.status_code == 400
    assert "From is after To: nothing can match" in page.text and "No events" not in page.text
    assert page.context["events"] == []
    assert client.get(reverse("access:audit-export-csv"), query).status_code == 400
    assert not AuditEvent.objects.filter(action="audit.exported").exists()
    assert client.get(reverse("access:audit-list"), {"since": today.isoformat(), "until": today.isoformat()}).status_code == 200


def test_the_audit_api_refuses_an_impossible_range_naming_the_field(security):
    api = APIClient()
    api.force_login(security)
    response = api.get("/api/v1/access/audit/", {"since": "2026-12-07T10:00:00Z", "until": "2026-12-01T00:00:00Z"})
    assert response.status_code == 400 and "since" in response.json()["errors"]
    assert "nothing can match" in str(response.json()["errors"]["since"])
    response = api.get("/api/v1/access/audit/export.csv", {"since": "2026-12-07T10:00:00Z", "until": "2026-12-01"})
    assert response.status_code == 400
    assert api.get("/api/v1/access/audit/", {"since": "2026-12-01T00:00:00Z", "until": "2026-12-07T00:00:00Z"}).status_code == 200


def test_an_approval_shows_the_approvers_name_end_to_end(client, security):
    owner = UserFactory(username="olga", roles=["data_engineer"])
    store = StoreFactory(name="warehouse", environment="prod")
    dataset = dataset_create(principal=owner, store=store, name="sales.orders", owners=["olga"],
                             columns=[column_payload("email", sensitivity="Sensitive")])
    request = grants.access_request_create(principal=UserFactory(username="sam", roles=["data_scientist"]),
                                           dataset=dataset, level="read", duration=2,
                                           justification="Quarterly churn analysis", ticket="OPS-1")
    grants.access_request_review(principal=owner, request=request, approve=True)
    client.force_login(security)
    page = client.get(reverse("access:audit-list"), {"action": "request.approved"})
    assert re.search(r'<span class="k">approvals</span> olga</span>', page.text)
