"""The requester's own access on the dataset page and in the dataset API: standing access, live
grants with their end, pending requests with who they wait for; "Request access" only where it
makes sense."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from access import grants
from access.models import Grant
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db

JUSTIFICATION = "Quarterly churn analysis for the board."


@pytest.fixture
def prod(db):
    return StoreFactory(name="warehouse", environment="prod")


@pytest.fixture
def owner(db):
    return UserFactory(username="olga", first_name="Olga", last_name="Owens", roles=["data_analyst"])


@pytest.fixture
def security(db):
    return UserFactory(username="sam", roles=["security_engineer"])


@pytest.fixture
def orders(registrar, prod, owner):
    """prod, Regular and Sensitive columns: analysts read ``order_id`` standing and ask for ``email``."""
    dataset = dataset_create(principal=registrar, store=prod, name="sales.orders", columns=[
        column_payload("order_id", mode="REQUIRED"),
        column_payload("email", sensitivity="Sensitive"),
    ])
    dataset.owners.set([owner])  # not the registrar
    return dataset


@pytest.fixture
def passports(registrar, prod):
    """Restricted, prod, and nobody owns it."""
    dataset = dataset_create(principal=registrar, store=prod, name="hr.passports",
                             columns=[column_payload("passport", sensitivity="Restricted")])
    dataset.owners.clear()
    return dataset


def ask(user, dataset, **extra):
    fields = {"level": "read", "duration": 4, "justification": JUSTIFICATION, "ticket": "SEC-1", **extra}
    return grants.access_request_create(principal=user, dataset=dataset, **fields)


def page_of(client, user, dataset):
    client.force_login(user)
    return client.get(reverse("catalog:dataset-detail", args=[dataset.pk]))


def api_of(user, dataset):
    client = APIClient()
    client.force_login(user)
    response = client.get(f"/api/v1/datasets/{dataset.pk}/")
    assert response.status_code == 200
    return response.json()["myAccess"]


def test_dataset_page_shows_the_live_grant_with_its_columns_and_end(client, reader, owner, orders):
    request = ask(reader, orders, columns=["email"])
    grants.access_request_review(principal=owner, request=request, approve=True)
    grant = Grant.objects.get(request=request)
    page = page_of(client, reader, orders)
    section = page.text.split('id="your-access"')[1].split("</section>")[0]
    assert "<code>email</code>" in section
    assert f'href="{reverse("access:grant-detail", args=[grant.pk])}">grant #{grant.pk}</a>' in section
    assert grant.ends_at.strftime("%H:%M") in section and "until" in section
    # Standing: the Regular column through the analyst's roles, metadata on the whole dataset.
    assert "see its metadata" in section and "<code>order_id</code>" in section


def test_dataset_api_my_access_lists_the_grant_and_standing(reader, owner, orders):
    request = ask(reader, orders, columns=["email"])
    grants.access_request_review(principal=owner, request=request, approve=True)
    grant = Grant.objects.get(request=request)
    mine = api_of(reader, orders)
    assert mine["standing"] == {
        "level": "metadata", "roles": ["Data analyst"], "columns": [{"name": "order_id", "level": "read"}],
    }
    assert [(g["id"], g["level"], g["columns"], g["outgrown"]) for g in mine["grants"]] == [
        (grant.pk, "read", ["email"], False)
    ]
    assert mine["grants"][0]["endsAt"].startswith(grant.ends_at.strftime("%Y-%m-%dT%H:%M"))
    assert mine["pendingRequests"] == [] and mine["relation"] is None


def test_pending_request_names_the_owner_it_waits_for(client, reader, orders):
    request = ask(reader, orders)
    page = page_of(client, reader, orders)
    section = page.text.split('id="your-access"')[1].split("</section>")[0]
    assert f"Request #{request.pk}</a>" in section
    assert "1 approval from Olga Owens (olga, owner)" in section
    assert reverse("access:request-create", args=[orders.pk]) not in page.text  # one pending request at a time
    waiting = api_of(reader, orders)["pendingRequests"][0]["waitingFor"]
    assert waiting["approvers"] == [{"username": "olga", "name": "Olga Owens", "as": "owner"}]
    assert waiting["approvalsNeeded"] == 1 and waiting["securityApprovalNeeded"] is False


def test_restricted_request_without_owner_waits_for_security_engineers_and_admins(client, reader, security, admin_user, passports):
    request = ask(reader, passports)
    assert request.approvals_required == 2
    page = page_of(client, reader, passports)
    assert "2 approvals from a security engineer or an admin; one of them from a security engineer" in page.text
    assert "Nobody owns this dataset, so only security engineers and admins decide" in page.text
    waiting = api_of(reader, passports)["pendingRequests"][0]["waitingFor"]
    assert waiting["approvers"] == [] and waiting["approverRoles"] == ["security engineer", "admin"]
    # Once the security engineer approved, it waits for one more, from someone else.
    grants.access_request_review(principal=security, request=request, approve=True)
    waiting = api_of(reader, passports)["pendingRequests"][0]["waitingFor"]
    assert (waiting["approvalsNeeded"], waiting["securityApprovalNeeded"], waiting["approverRoles"]) == (1, False, ["admin"])


def test_owner_is_not_offered_request_access_on_their_own_dataset(client, owner, reader, orders):
    page = page_of(client, owner, orders)
    assert reverse("access:request-create", args=[orders.pk]) not in page.text
    assert "You <strong>own</strong> this dataset" in page.text
    assert api_of(owner, orders)["canRequestAccess"] is False
    # The analyst who is not an owner still is.
    page = page_of(client, reader, orders)
    assert reverse("access:request-create", args=[orders.pk]) in page.text


def test_steward_who_already_reads_is_not_offered_request_access(client, registrar, prod, reader):
    regular = dataset_create(principal=registrar, store=prod, name="sales.regions", columns=[column_payload("region")])
    grants.dataset_steward_add(principal=registrar, dataset=regular, user=reader)
    mine = api_of(reader, regular)
    assert (mine["relation"], mine["level"], mine["canRequestAccess"]) == ("steward", "read", False)
    page = page_of(client, reader, regular)
    assert reverse("access:request-create", args=[regular.pk]) not in page.text
    assert "let you <strong>read</strong> the whole dataset" in page.text


def test_reader_with_a_live_grant_on_the_whole_dataset_is_not_offered_it_again(client, reader, owner, orders):
    request = ask(reader, orders)
    grants.access_request_review(principal=owner, request=request, approve=True)
    assert api_of(reader, orders)["canRequestAccess"] is False
    assert reverse("access:request-create", args=[orders.pk]) not in page_of(client, reader, orders).text


def test_dataset_page_queries_do_not_grow_with_grants_and_requests(
    client, reader, owner, orders, django_assert_max_num_queries
):
    email_grant = approved(owner, ask(reader, orders, columns=["email"]))
    whole = ask(reader, orders)
    client.force_login(reader)
    url = reverse("catalog:dataset-detail", args=[orders.pk])
    with CaptureQueriesContext(connection) as one_of_each:
        page = client.get(url)
    assert page.text.count('class="own-grant"') == 1 and page.text.count('class="own-pending"') == 1
    whole_grant = approved(owner, whole)
    for grant in (email_grant, whole_grant):
        grants.grant_extend(principal=reader, grant=grant, duration=2, justification=JUSTIFICATION, ticket="SEC-3")
    with django_assert_max_num_queries(len(one_of_each.captured_queries)):
        page = client.get(url)
    assert page.text.count('class="own-grant"') == 2 and page.text.count('class="own-pending"') == 2


def approved(approver, request) -> Grant:
    grants.access_request_review(principal=approver, request=request, approve=True)
    return Grant.objects.get(request=request)


def test_schema_documents_my_access(client, reader):
    client.force_login(reader)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    detail = schema["components"]["schemas"]["DatasetDetail"]["properties"]
    assert "myAccess" in detail
    my_access = schema["components"]["schemas"]["MyAccess"]["properties"]
    assert {"standing", "grants", "pendingRequests", "canRequestAccess"} <= set(my_access)
    waiting = schema["components"]["schemas"]["MyAccessWaitingFor"]["properties"]
    assert {"approvers", "approverRoles", "approvalsNeeded", "securityApprovalNeeded"} <= set(waiting)
