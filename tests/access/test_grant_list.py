"""The grants list across datasets (/access/grants/ and GET /api/v1/access/grants/): who sees it,
its filters in the URL, its constant query count, and its audited CSV export."""

import csv
import io
from datetime import datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access import grants
from access.models import AuditEvent, Enforcement, Grant, GrantStatus
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db

API = "/api/v1/access/grants/"


@pytest.fixture
def cast(db):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    owner = UserFactory(username="olga", roles=["data_analyst"])
    prod = StoreFactory(name="warehouse", environment="prod")
    staging = StoreFactory(name="lake", environment="staging")
    orders = dataset_create(principal=registrar, store=prod, name="sales.orders",
                            columns=[column_payload("order_id"), column_payload("email", sensitivity="Sensitive")])
    events = dataset_create(principal=registrar, store=staging, name="web.events",
                            columns=[column_payload("url"), column_payload("ip", sensitivity="Sensitive")])
    orders.owners.add(owner)
    events.owners.add(owner)
    return {
        "owner": owner, "orders": orders, "events": events,
        "security": UserFactory(username="sec", roles=["security_engineer"]),
        "admin": UserFactory(username="root", is_staff=True, is_superuser=True),
        "analyst": UserFactory(username="ann", roles=["data_analyst"]),
    }


def grant_for(cast, user, dataset) -> Grant:
    request = grants.access_request_create(principal=user, dataset=dataset, level="read", duration=4,
                                           justification="Quarterly churn analysis", ticket="OPS-1")
    grants.access_request_review(principal=cast["owner"], request=request, approve=True)
    return Grant.objects.get(request=request)


@pytest.fixture
def assorted(cast):
    """One grant in each state: live (ends tomorrow or later), ending today, failed in the
    warehouse, expired (past its end, not yet marked), revoked."""
    now = timezone.now()
    midnight = datetime.combine(timezone.localdate(now) + timedelta(days=1), time.min,
                                tzinfo=timezone.get_current_timezone())
    live = grant_for(cast, cast["analyst"], cast["orders"])
    Grant.objects.filter(pk=live.pk).update(ends_at=midnight + timedelta(hours=3))
    ending = grant_for(cast, UserFactory(username="sue", roles=["data_analyst"]), cast["events"])
    Grant.objects.filter(pk=ending.pk).update(starts_at=now - timedelta(hours=1), ends_at=now + (midnight - now) / 2)
    failed = grant_for(cast, UserFactory(username="fay", roles=["data_analyst"]), cast["orders"])
    Grant.objects.filter(pk=failed.pk).update(enforcement=Enforcement.APPLY_FAILED, ends_at=midnight + timedelta(hours=5))
    expired = grant_for(cast, UserFactory(username="ed", roles=["data_analyst"]), cast["orders"])
    Grant.objects.filter(pk=expired.pk).update(starts_at=now - timedelta(days=3), ends_at=now - timedelta(days=2))
    revoked = grant_for(cast, UserFactory(username="rex", roles=["data_analyst"]), cast["events"])
    # Its planned end stays today whatever the hour (a four-hour grant made after 20:00 would end tomorrow).
    Grant.objects.filter(pk=revoked.pk).update(starts_at=now - timedelta(hours=2), ends_at=now + (midnight - now) / 2)
    revoked.refresh_from_db()
    grants.grant_revoke(principal=cast["owner"], grant=revoked, reason="No longer needed")
    return {"live": live, "ending": ending, "failed": failed, "expired": expired, "revoked": revoked}


def web(client, user):
    client.force_login(user)
    return client


def ids(response) -> set[int]:
    return {grant.pk for grant in response.context["grants"]}


def test_grants_page_is_for_security_engineers_and_admins(client, cast, assorted):
    for who in ("security", "admin"):
        page = web(client, cast[who]).get(reverse("access:grant-list"))
        assert page.status_code == 200
        assert ids(page) == {grant.pk for grant in assorted.values()}
        assert f'href="{reverse("access:grant-list")}"' in page.text  # linked from the navigation
    for who in ("owner", "analyst"):
        web(client, cast[who])
        assert client.get(reverse("access:grant-list")).status_code == 404
        assert client.get(reverse("access:grant-export-csv")).status_code == 404
        assert f'href="{reverse("access:grant-list")}"' not in client.get(reverse("access:my-access")).text


def test_grants_page_filters_by_status(client, cast, assorted):
    web(client, cast["security"])
    expected = {
        "live": {"live", "ending", "failed"},
        "ending_today": {"ending"},
        "failed": {"failed"},
        "expired": {"expired"},
        "revoked": {"revoked"},
    }
    for status, names in expected.items():
        page = client.get(reverse("access:grant-list"), {"status": status})
        assert ids(page) == {assorted[name].pk for name in names}, status
    page = client.get(reverse("access:grant-list"), {"status": "expired"})
    assert "Expired" in page.text  # as of now, though no worker marked it
    assert Grant.objects.get(pk=assorted["expired"].pk).status == GrantStatus.ACTIVE


def test_grants_page_filters_by_dataset_user_store_environment_and_end(client, cast, assorted):
    web(client, cast["security"])
    url = reverse("access:grant-list")
    assert ids(client.get(url, {"dataset": "WAREHOUSE.sales.orders"})) == {
        assorted[name].pk for name in ("live", "failed", "expired")}
    assert ids(client.get(url, {"dataset": cast["events"].pk})) == {assorted["ending"].pk, assorted["revoked"].pk}
    assert ids(client.get(url, {"user": "sue"})) == {assorted["ending"].pk}
    assert ids(client.get(url, {"store": "lake"})) == {assorted["ending"].pk, assorted["revoked"].pk}
    assert ids(client.get(url, {"environment": "staging", "status": "live"})) == {assorted["ending"].pk}
    tomorrow = timezone.localdate() + timedelta(days=1)
    assert ids(client.get(url, {"endsAfter": tomorrow.isoformat()})) == {assorted["live"].pk, assorted["failed"].pk}
    assert ids(client.get(url, {"endsBefore": timezone.localdate().isoformat()})) == {assorted["expired"].pk}
    page = client.get(url, {"endsAfter": tomorrow.isoformat(), "endsBefore": timezone.localdate().isoformat()})
    assert page.status_code == 400 and "nothing can match" in page.text
    assert client.get(url, {"status": "sideways"}).status_code == 400


def test_grants_page_is_paged_with_a_constant_number_of_queries(client, cast, monkeypatch):
    from access import views as access_views

    monkeypatch.setattr(access_views, "GRANTS_PAGE_SIZE", 3)
    web(client, cast["security"])

    def fill(count, start):
        for index in range(start, start + count):
            grant_for(cast, UserFactory(username=f"u{index}", roles=["data_analyst"]), cast["orders"])

    fill(2, 0)
    with CaptureQueriesContext(connection) as few:
        assert len(client.get(reverse("access:grant-list")).context["grants"]) == 2
    fill(5, 2)
    with CaptureQueriesContext(connection) as many:
        page = client.get(reverse("access:grant-list"), {"status": "live"})
    assert len(page.context["grants"]) == 3 and page.context["page"].paginator.num_pages == 3
    assert len(many) == len(few)
    second = client.get(reverse("access:grant-list"), {"status": "live", "page": 2})
    assert "status=live&amp;page=3" in second.text  # the filters stay in the page links


def test_grants_export_is_the_filtered_list_and_is_audited(client, cast, assorted):
    web(client, cast["security"])
    response = client.get(reverse("access:grant-export-csv"), {"status": "failed"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(row["id"]) for row in rows] == [assorted["failed"].pk]
    assert rows[0]["enforcement"] == "apply_failed" and rows[0]["dataset"] == cast["orders"].qualified_name
    event = AuditEvent.objects.get(action="grant.exported")
    assert event.actor == cast["security"] and event.details["filters"] == {"status": "failed"}


def test_grants_api_takes_the_same_filters_and_exports(cast, assorted):
    api = APIClient()
    api.force_login(cast["security"])
    results = api.get(API, {"status": "ending_today"}).json()["results"]
    assert [g["id"] for g in results] == [assorted["ending"].pk]
    results = api.get(API, {"status": "expired", "store": "WAREHOUSE"}).json()["results"]
    assert [(g["id"], g["status"]) for g in results] == [(assorted["expired"].pk, "expired")]
    results = api.get(API, {"environment": "staging", "user": "rex"}).json()["results"]
    assert [g["id"] for g in results] == [assorted["revoked"].pk]
    response = api.get(API, {"endsAfter": "next tuesday"})
    assert response.status_code == 400 and "endsAfter" in str(response.json())
    response = api.get(API, {"status": "sideways"})
    assert response.status_code == 400 and "status" in str(response.json())
    out_of_range = api.get(API, {"dataset": "9" * 40})  # a number that is no id: a 400 naming it, no 500
    assert out_of_range.status_code == 400 and "dataset" in out_of_range.json()["errors"]
    export = api.get(API + "export.csv", {"status": "revoked"})
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [int(row["id"]) for row in rows] == [assorted["revoked"].pk] and rows[0]["revokedBy"] == "olga"
    assert AuditEvent.objects.filter(action="grant.exported", actor=cast["security"]).count() == 1
    # Anyone else exports only what they may see.
    analyst = APIClient()
    analyst.force_login(cast["analyst"])
    export = analyst.get(API + "export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [int(row["id"]) for row in rows] == [assorted["live"].pk]


# Found by a walk through the demo ---------------------------------------------------------------


@pytest.mark.parametrize("parameter, value", [
    ("endsAfter", "0001-01-01T00:00:00+01:00"), ("endsBefore", "9999-12-31T23:59:59-01:00"),
])
def test_a_date_no_database_can_hold_is_a_400_naming_it(cast, client, parameter, value):
    api = APIClient()
    api.force_authenticate(cast["security"])
    response = api.get(API, {parameter: value})
    assert response.status_code == 400 and parameter in response.json()["errors"]
    exported = api.get(API + "export.csv", {parameter: value})
    assert exported.status_code == 400  # never a 200 with only the header row
    client.force_login(cast["security"])
    assert client.get(reverse("access:grant-list"), {parameter: value}).status_code == 400
    assert not AuditEvent.objects.filter(action="grant.exported").exists()
