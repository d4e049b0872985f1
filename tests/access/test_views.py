"""The browser pages of access: who may open what, the forms and their errors, query counts."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access import grants
from access.audit import audit_record
from access.models import AccessRequest, AuditEvent, Grant, GrantStatus, RequestStatus, RolePermission
from lineage.models import Edge, EdgeLevel
from lineage.services import dataset_nodes_ensure
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db

JUSTIFICATION = "Quarterly churn analysis for the board."


@pytest.fixture
def prod(db):
    return StoreFactory(name="warehouse", environment="prod")


@pytest.fixture
def owner(db):
    return UserFactory(username="olga", roles=["data_analyst"])


@pytest.fixture
def orders(registrar, prod, owner):
    """A prod dataset with a Sensitive column: analysts see its metadata and may ask to read it
    (8 hours at most, a ticket, one approval)."""
    dataset = dataset_create(principal=registrar, store=prod, name="sales.orders", columns=[
        column_payload("order_id", mode="REQUIRED"),
        column_payload("email", sensitivity="Sensitive"),
    ])
    dataset.owners.add(owner)
    return dataset


def web(client, user):
    client.force_login(user)
    return client


def ask(user, dataset, **extra):
    fields = {"level": "read", "duration": 4, "justification": JUSTIFICATION, "ticket": "SEC-1", **extra}
    return grants.access_request_create(principal=user, dataset=dataset, **fields)


def approved_grant(requester, approver, dataset) -> Grant:
    request = ask(requester, dataset)
    grants.access_request_review(principal=approver, request=request, approve=True)
    return Grant.objects.get(request=request)


# Role matrix ---------------------------------------------------------------------------------


def test_role_matrix_is_read_only_for_people_who_are_not_admins(client, reader):
    response = web(client, reader).get(reverse("access:role-matrix"))
    assert response.status_code == 200
    assert "Data scientist" in response.text and "Security engineer" in response.text
    assert "/access/roles/" not in response.text.replace(reverse("access:role-matrix"), "")
    cell = RolePermission.objects.first()
    assert client.get(reverse("access:role-cell-edit", args=[cell.pk])).status_code == 403
    assert client.post(reverse("access:role-cell-edit", args=[cell.pk]), {"standing": 3}).status_code == 403


def test_admin_edits_a_matrix_cell_and_it_is_audited(client, admin_user, reader):
    cell = RolePermission.objects.get(role__slug="data_analyst", environment="prod", sensitivity=2)
    page = web(client, admin_user).get(reverse("access:role-matrix"))
    assert reverse("access:role-cell-edit", args=[cell.pk]) in page.text
    data = {"standing": 1, "jit_level": 2, "jit_max_hours": 12, "approvals_required": 2, "ticket_required": "on"}
    response = client.post(reverse("access:role-cell-edit", args=[cell.pk]), data)
    assert response.status_code == 302
    cell.refresh_from_db()
    assert (cell.jit_max_hours, cell.approvals_required, cell.security_approval_required) == (12, 2, False)
    assert AuditEvent.objects.filter(action="matrix.changed", object_id=str(cell.pk)).exists()


def test_matrix_cell_errors_name_the_field_and_change_nothing(client, admin_user, reader):
    cell = RolePermission.objects.get(role__slug="data_analyst", environment="prod", sensitivity=2)
    before = cell.jit_max_hours
    data = {"standing": 1, "jit_level": 2, "jit_max_hours": 0, "approvals_required": 1}
    response = web(client, admin_user).post(reverse("access:role-cell-edit", args=[cell.pk]), data)
    assert response.status_code == 200
    assert response.context["form"].errors["jit_max_hours"] == ["Give a maximum duration for just-in-time access."]
    assert 'autofocus' in str(response.context["form"]["jit_max_hours"])
    cell.refresh_from_db()
    assert cell.jit_max_hours == before


# Request access ------------------------------------------------------------------------------


def test_request_form_shows_the_cap_the_ticket_and_column_sensitivity(client, reader, orders):
    response = web(client, reader).get(reverse("access:request-create", args=[orders.pk]))
    assert response.status_code == 200
    assert "At most 8 hours." in response.text
    assert "Ticket (required)" in response.text  # prod Sensitive needs a ticket
    assert 'value="email"' in response.text and "badge sens-sensitive" in response.text


def test_request_errors_are_per_field_and_nothing_is_written(client, reader, orders):
    url = reverse("access:request-create", args=[orders.pk])
    response = web(client, reader).post(url, {"level": "read", "duration": "", "justification": "short"})
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"duration"}
    response = client.post(url, {"level": "read", "duration": 4, "justification": "short", "ticket": "SEC-9"})
    assert response.context["form"].errors["justification"] == ["Say why you need it (at least 10 characters)."]
    response = client.post(url, {"level": "read", "duration": 40, "justification": JUSTIFICATION, "ticket": "SEC-9"})
    assert response.context["form"].errors["duration"] == ["At most 8 hours for this scope."]
    assert 'aria-invalid="true"' in response.text and "autofocus" in str(response.context["form"]["duration"])
    response = client.post(url, {"level": "read", "duration": 4, "justification": JUSTIFICATION, "ticket": ""})
    assert response.context["form"].errors["ticket"] == ["This scope needs a ticket reference."]
    assert not AccessRequest.objects.exists()


def test_request_is_created_and_lands_on_its_page(client, reader, orders):
    url = reverse("access:request-create", args=[orders.pk])
    response = web(client, reader).post(
        url, {"level": "read", "columns": ["email"], "duration": 6, "justification": JUSTIFICATION, "ticket": "SEC-2"}
    )
    request = AccessRequest.objects.get()
    assert response.status_code == 302 and response.url == reverse("access:request-detail", args=[request.pk])
    assert (request.columns, request.duration, request.status) == (["email"], timedelta(hours=6), RequestStatus.PENDING)
    page = client.get(response.url)
    assert "0 of 1 approval" in page.text and "request.created" in page.text


def test_dataset_outside_scope_is_404_on_access_pages(client, orders):
    manager = UserFactory(username="pm", roles=["product_manager"])  # aggregated datasets only
    web(client, manager)
    assert client.get(reverse("access:request-create", args=[orders.pk])).status_code == 404
    assert client.get(reverse("access:break-glass", args=[orders.pk])).status_code == 404
    assert client.get(reverse("access:access-review", args=[orders.pk])).status_code == 404


def test_dataset_page_offers_request_access_and_records_restricted_views(client, reader, registrar, prod, orders):
    page = web(client, reader).get(reverse("catalog:dataset-detail", args=[orders.pk]))
    assert reverse("access:request-create", args=[orders.pk]) in page.text
    assert reverse("access:break-glass", args=[orders.pk]) not in page.text
    assert not AuditEvent.objects.filter(action="metadata.restricted_viewed").exists()  # Sensitive, not Restricted
    secrets = dataset_create(principal=registrar, store=prod, name="hr.passports",
                             columns=[column_payload("passport", sensitivity="Restricted")])
    assert client.get(reverse("catalog:dataset-detail", args=[secrets.pk])).status_code == 200
    event = AuditEvent.objects.get(action="metadata.restricted_viewed")
    assert (event.actor, event.dataset, event.remote_addr) == (reader, secrets, "127.0.0.1")


# Approvals -----------------------------------------------------------------------------------


def test_owner_sees_the_request_in_the_queue_and_the_requester_does_not(client, reader, owner, orders):
    ask(reader, orders)
    page = web(client, owner).get(reverse("access:approval-queue"))
    assert "sales.orders" in page.text and JUSTIFICATION in page.text and "Data analyst" in page.text
    assert "0 of 1 approval" in page.text
    count = client.get(reverse("access:approval-count"))
    assert '<span class="nav-count"' in count.text and ">1<" in count.text
    assert "sales.orders" not in web(client, reader).get(reverse("access:approval-queue")).text


def test_queue_shows_what_lies_downstream(client, reader, owner, registrar, prod, orders):
    report = dataset_create(principal=registrar, store=prod, name="bi.orders_daily")
    nodes = dataset_nodes_ensure([orders, report])
    now = timezone.now()
    Edge.objects.create(source=nodes[orders.pk], target=nodes[report.pk], level=EdgeLevel.DATASET,
                        first_seen=now, last_seen=now)
    ask(reader, orders)
    page = web(client, owner).get(reverse("access:approval-queue"))
    downstream = page.context["queue"][0].downstream
    assert [item["dataset"] for item in downstream["datasets"]] == [report]
    assert "bi.orders_daily" in page.text


def test_approve_makes_a_grant_and_deny_needs_a_reason(client, reader, owner, orders):
    request = ask(reader, orders)
    web(client, owner)
    url = reverse("access:request-review", args=[request.pk])
    response = client.post(url, {"decision": "deny", "reason": ""})
    assert response.status_code == 400
    assert response.context["review_form"].errors["reason"] == ["Say why you deny it."]
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    response = client.post(url, {"decision": "approve", "next": reverse("access:approval-queue")})
    assert response.status_code == 302 and response.url == reverse("access:approval-queue")
    assert Grant.objects.get(request=request).status == GrantStatus.ACTIVE


def test_requester_cannot_review_their_own_request(client, reader, orders):
    request = ask(reader, orders)
    response = web(client, reader).post(reverse("access:request-review", args=[request.pk]), {"decision": "approve"})
    assert response.status_code == 403
    assert not Grant.objects.exists()


def test_someone_elses_request_and_grant_are_404(client, reader, owner, orders):
    grant = approved_grant(reader, owner, orders)
    other = UserFactory(username="otto", roles=["data_analyst"])
    web(client, other)
    assert client.get(reverse("access:request-detail", args=[grant.request_id])).status_code == 404
    assert client.get(reverse("access:grant-detail", args=[grant.pk])).status_code == 404
    response = client.post(reverse("access:grant-revoke", args=[grant.pk]), {"reason": "not mine"})
    assert response.status_code == 404
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.ACTIVE


def test_approval_queue_queries_do_not_grow_with_requests(client, owner, registrar, prod):
    def fill(count, start):
        for index in range(start, start + count):
            dataset = dataset_create(principal=registrar, store=prod, name=f"sales.t{index}",
                                     columns=[column_payload("email", sensitivity="Sensitive")])
            dataset.owners.add(owner)
            ask(UserFactory(username=f"asker{index}", roles=["data_analyst"]), dataset)

    web(client, owner)
    fill(2, 0)
    with CaptureQueriesContext(connection) as few:
        assert len(client.get(reverse("access:approval-queue")).context["queue"]) == 2
    fill(10, 2)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(reverse("access:approval-queue")).context["queue"]) == 12
    assert len(many) == len(few)


def test_break_glass_waiting_for_review_is_listed_and_reviewed(client, owner, registrar, prod):
    dataset = dataset_create(principal=registrar, store=prod, name="ops.incidents")
    dataset.owners.add(owner)
    engineer = UserFactory(username="sam", roles=["software_engineer"])
    grant = grants.break_glass_activate(principal=engineer, dataset=dataset, level="read",
                                        reason="Incident 42: checkout is down", minutes=30)
    page = web(client, owner).get(reverse("access:approval-queue"))
    assert "Incident 42" in page.text
    response = client.post(reverse("access:break-glass-review", args=[grant.pk]),
                           {"note": "Checked the queries run; fine.", "next": reverse("access:approval-queue")})
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.reviewed_by == owner


# Break-glass ---------------------------------------------------------------------------------


def test_break_glass_only_where_the_matrix_allows_it(client, reader, registrar, prod):
    dataset = dataset_create(principal=registrar, store=prod, name="ops.incidents")
    assert web(client, reader).get(reverse("access:break-glass", args=[dataset.pk])).status_code == 403
    engineer = UserFactory(username="sam", roles=["software_engineer"])
    web(client, engineer)
    assert reverse("access:break-glass", args=[dataset.pk]) in client.get(
        reverse("catalog:dataset-detail", args=[dataset.pk])).text
    url = reverse("access:break-glass", args=[dataset.pk])
    response = client.post(url, {"level": "read", "reason": "short", "minutes": 500})
    assert response.status_code == 200
    assert response.context["form"].errors["minutes"] == ["Between 1 and 60 minutes."]
    assert not Grant.objects.exists()
    response = client.post(url, {"level": "read", "reason": "Incident 42: checkout is down", "minutes": 20})
    grant = Grant.objects.get()
    assert response.url == reverse("access:grant-detail", args=[grant.pk])
    assert grant.is_break_glass and grant.ends_at - grant.starts_at == timedelta(minutes=20)


# My access -----------------------------------------------------------------------------------


def test_my_access_shows_live_grants_and_ends_one_early(client, reader, owner, orders):
    grant = approved_grant(reader, owner, orders)
    page = web(client, reader).get(reverse("access:my-access"))
    assert f"grant-{grant.pk}" in page.text and "End access now" in page.text
    response = client.post(reverse("access:grant-revoke", args=[grant.pk]), {"reason": ""})
    assert response.status_code == 400
    assert response.context["revoke_form"].errors["reason"]
    response = client.post(reverse("access:grant-revoke", args=[grant.pk]),
                           {"reason": "Done early", "next": reverse("access:my-access")})
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED and grant.revoke_reason == "Done early"
    assert f"grant-{grant.pk}" not in client.get(reverse("access:my-access")).text


def test_ask_to_extend_creates_a_linked_request(client, reader, owner, orders):
    grant = approved_grant(reader, owner, orders)
    web(client, reader)
    url = reverse("access:grant-extend", args=[grant.pk])
    response = client.post(url, {"duration": 2, "justification": "short"})
    assert response.status_code == 400 and "justification" in response.context["extend_form"].errors
    response = client.post(url, {"duration": 2, "justification": JUSTIFICATION, "ticket": "SEC-3"})
    extension = AccessRequest.objects.get(extends=grant)
    assert response.url == reverse("access:request-detail", args=[extension.pk])
    assert "An extension is waiting for review." in client.get(reverse("access:my-access")).text


def test_cancel_a_pending_request(client, reader, orders):
    request = ask(reader, orders)
    page = web(client, reader).get(reverse("access:my-access"))
    assert "Cancel request" in page.text
    response = client.post(reverse("access:request-cancel", args=[request.pk]))
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == RequestStatus.CANCELLED


def test_grant_page_shows_a_failed_enforcement(client, reader, owner, orders):
    grant = approved_grant(reader, owner, orders)
    Grant.objects.filter(pk=grant.pk).update(enforcement="apply_failed", enforcement_attempts=3,
                                             enforcement_message="permission denied for table orders")
    page = web(client, reader).get(reverse("access:grant-detail", args=[grant.pk]))
    assert "The warehouse could not be changed" in page.text
    assert "permission denied for table orders" in page.text
    assert "grant.activated" in page.text


def test_an_approver_retries_a_failed_enforcement_from_the_grant_page(client, reader, owner, orders):
    grant = approved_grant(reader, owner, orders)
    Grant.objects.filter(pk=grant.pk).update(enforcement="apply_failed", enforcement_attempts=5,
                                             enforcement_message="no warehouse role mapped")
    url = reverse("access:grant-retry", args=[grant.pk])
    assert "Try again now" not in web(client, reader).get(reverse("access:grant-detail", args=[grant.pk])).text
    assert client.post(url).status_code == 403  # the holder may not

    assert "Try again now" in web(client, owner).get(reverse("access:grant-detail", args=[grant.pk])).text
    response = client.post(url)

    assert response.status_code == 302
    assert Grant.objects.get(pk=grant.pk).enforcement_attempts == 0
    assert AuditEvent.objects.filter(action="grant.enforcement_retried", actor=owner).count() == 1


# Access review -------------------------------------------------------------------------------


def test_owner_confirms_an_access_review(client, reader, owner, orders):
    grant = approved_grant(reader, owner, orders)
    page = web(client, owner).get(reverse("access:access-review", args=[orders.pk]))
    assert page.status_code == 200
    assert "No role reads this dataset standing" in page.text  # Sensitive in prod: only metadata
    assert "mia" in page.text and f"#{grant.pk}" in page.text
    response = client.post(reverse("access:access-review", args=[orders.pk]), {"note": "All still needed"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="access_review.confirmed")
    assert (event.actor, event.dataset, event.reason, event.details) == (owner, orders, "All still needed",
                                                                         {"live_grants": [grant.pk]})
    assert web(client, reader).get(reverse("access:access-review", args=[orders.pk])).status_code == 404



def test_security_engineer_reviews_access_to_datasets_they_do_not_own_from_sensitive_up(client, registrar, prod,
                                                                                        orders, owner):
    security = UserFactory(username="sec", roles=["security_engineer"])
    regular = dataset_create(principal=registrar, store=prod, name="sales.regions", columns=[column_payload("region")])
    web(client, security)
    assert client.get(reverse("access:access-review", args=[orders.pk])).status_code == 200  # Sensitive, not theirs
    assert client.get(reverse("access:access-review", args=[regular.pk])).status_code == 404  # Regular
    response = client.post(reverse("access:access-review", args=[orders.pk]), {"note": "Checked with security"})
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="access_review.confirmed").actor == security
    api = APIClient()
    api.force_login(security)
    assert api.get(f"/api/v1/access/reviews/{orders.pk}/").status_code == 200
    assert api.get(f"/api/v1/access/reviews/{regular.pk}/").status_code == 403


def test_access_review_index_lists_what_is_due_for_the_reader(client, registrar, prod, orders, owner, reader):
    security = UserFactory(username="sec", roles=["security_engineer"])
    regular = dataset_create(principal=registrar, store=prod, name="sales.regions", columns=[column_payload("region")])
    regular.owners.add(owner)
    restricted = dataset_create(principal=registrar, store=prod, name="hr.people",
                                columns=[column_payload("ssn", sensitivity="Restricted")])
    web(client, security)
    page = client.get(reverse("access:access-review-index"))
    assert page.status_code == 200
    assert [d.qualified_name for d in page.context["datasets"]] == [restricted.qualified_name, orders.qualified_name]
    assert reverse("access:access-review", args=[restricted.pk]) in page.text
    grants.dataset_access_review_confirm(principal=security, dataset=restricted)
    page = client.get(reverse("access:access-review-index"))
    assert [d.qualified_name for d in page.context["datasets"]] == [orders.qualified_name]  # reviewed: not due
    everything = client.get(reverse("access:access-review-index"), {"show": "all"}).context["datasets"]
    assert [d.qualified_name for d in everything] == [orders.qualified_name, restricted.qualified_name]
    assert everything[1].last_reviewed_by == "sec" and not everything[1].is_due
    # The owner reviews their own datasets, whatever the tier; someone else reviews nothing.
    owned = web(client, owner).get(reverse("access:access-review-index")).context["datasets"]
    assert {d.qualified_name for d in owned} == {orders.qualified_name, regular.qualified_name}
    assert list(web(client, reader).get(reverse("access:access-review-index")).context["datasets"]) == []


def test_access_review_index_queries_do_not_grow_with_datasets(client, registrar, prod):
    security = UserFactory(username="sec", roles=["security_engineer"])

    def fill(count, start):
        for index in range(start, start + count):
            dataset = dataset_create(principal=registrar, store=prod, name=f"hr.t{index}",
                                     columns=[column_payload("ssn", sensitivity="Restricted")])
            ask(UserFactory(username=f"asker{index}", roles=["data_scientist"]), dataset)

    web(client, security)
    fill(2, 0)
    with CaptureQueriesContext(connection) as few:
        assert len(client.get(reverse("access:access-review-index")).context["datasets"]) == 2
    fill(8, 2)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(reverse("access:access-review-index")).context["datasets"]) == 10
    assert len(many) == len(few)


# Audit ---------------------------------------------------------------------------------------


@pytest.fixture
def security(db):
    return UserFactory(username="sec", roles=["security_engineer"])


def record_events(count, *, action="test.event", dataset=None):
    with transaction.atomic():
        for index in range(count):
            audit_record(actor=None, action=action, dataset=dataset, reason=f"event {index}")


def test_audit_is_for_security_engineers_and_admins(client, reader, security, admin_user):
    for path in ("access:audit-list", "access:audit-verify", "access:audit-export-csv"):
        assert web(client, reader).get(reverse(path)).status_code == 404
        assert web(client, security).get(reverse(path)).status_code == 200
    page = client.get(reverse("catalog:dataset-list"))
    assert reverse("access:audit-list") in page.text
    assert reverse("access:audit-list") not in web(client, reader).get(reverse("catalog:dataset-list")).text


def test_audit_filters_and_pages_by_id(client, security, orders):
    record_events(60)
    record_events(3, action="other.event", dataset=orders)
    web(client, security)
    page = client.get(reverse("access:audit-list"), {"action": "test.event"})
    events = page.context["events"]
    assert len(events) == 50 and all(e.action == "test.event" for e in events)
    older = page.context["older"]
    assert older == events[-1].pk and page.context["newer"] is None
    second = client.get(reverse("access:audit-list"), {"action": "test.event", "before": older})
    assert len(second.context["events"]) == 10 and second.context["older"] is None
    back = client.get(reverse("access:audit-list"), {"action": "test.event", "after": second.context["events"][0].pk})
    assert [e.pk for e in back.context["events"]] == [e.pk for e in events]
    by_dataset = client.get(reverse("access:audit-list"), {"dataset": "WAREHOUSE.sales.orders"})
    assert {e.action for e in by_dataset.context["events"]} == {"other.event"}
    by_actor = client.get(reverse("access:audit-list"), {"actor": "system", "action": "other.event"})
    assert len(by_actor.context["events"]) == 3


def test_audit_page_queries_do_not_grow_with_events(client, security, orders):
    web(client, security)
    record_events(5, dataset=orders)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("access:audit-list"))
    record_events(120, dataset=orders)
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("access:audit-list"))
    assert len(many) == len(few)
    assert not any("COUNT(" in query["sql"].upper() for query in many.captured_queries)


def test_audit_exports_csv_and_json_of_the_filtered_events(client, security, orders):
    record_events(3)
    record_events(2, action="other.event", dataset=orders)
    web(client, security)
    response = client.get(reverse("access:audit-export-csv"), {"action": "other.event"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["action"] for row in rows] == ["other.event", "other.event"]
    assert rows[0]["dataset"] == orders.qualified_name and int(rows[0]["id"]) < int(rows[1]["id"])  # oldest first
    response = client.get(reverse("access:audit-export-json"), {"action": "test.event"})
    events = json.loads(b"".join(response.streaming_content))
    assert len(events) == 3 and {e["action"] for e in events} == {"test.event"} and events[0]["hash"]
    exported = AuditEvent.objects.filter(action="audit.exported").order_by("id")
    assert [e.details["format"] for e in exported] == ["csv", "json"]
    assert exported[0].details["filters"] == {"action": "other.event"} and exported[0].actor_name == security.username


def test_verify_chain_shows_intact_then_the_first_altered_event(client, security):
    record_events(4)
    web(client, security)
    assert "The chain is intact." in client.post(reverse("access:audit-verify")).text
    victim = AuditEvent.objects.order_by("id")[2]
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE wants deferred FK checks done
        cursor.execute("ALTER TABLE access_auditevent DISABLE TRIGGER audit_append_only")
        cursor.execute("UPDATE access_auditevent SET reason = 'edited' WHERE id = %s", [victim.pk])
        cursor.execute("ALTER TABLE access_auditevent ENABLE TRIGGER audit_append_only")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    page = client.post(reverse("access:audit-verify"))
    assert f"The chain is broken at event #{victim.pk}." in page.text


def test_admin_maps_a_users_warehouse_role_on_the_user_page(client, admin_user, reader):
    page = web(client, admin_user).get(reverse("admin:access_user_change", args=[reader.pk]))
    assert page.status_code == 200
    assert 'name="warehouse_role"' in page.content.decode()


def test_audit_csv_defuses_spreadsheet_formulas_in_what_users_wrote(client, security):
    with transaction.atomic():
        audit_record(actor=None, action="test.event", reason='=HYPERLINK("http://evil.example","open me")')
        audit_record(actor=None, action="test.event", reason="-1+2", details={"note": "@SUM(A1)"})
    response = web(client, security).get(reverse("access:audit-export-csv"), {"action": "test.event"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["reason"] for row in rows] == ['\'=HYPERLINK("http://evil.example","open me")', "'-1+2"]
    assert rows[1]["details"] == '{"note": "@SUM(A1)"}'  # a JSON cell starts with a brace: left alone
    events = json.loads(b"".join(web(client, security).get(reverse("access:audit-export-json"),
                                                          {"action": "test.event"}).streaming_content))
    assert events[0]["reason"].startswith("=HYPERLINK")  # JSON keeps what was written


# Oversight details ---------------------------------------------------------------------------


def test_the_audit_address_is_the_one_the_outermost_trusted_proxy_saw(rf, settings):
    from access.audit import client_address

    request = rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    settings.AUDIT_TRUSTED_PROXIES = 0
    assert client_address(request) == "10.0.0.5"  # no proxy: the header is the client's to write
    settings.AUDIT_TRUSTED_PROXIES = 1
    assert client_address(request) == "203.0.113.7"  # not 6.6.6.6, which the client wrote itself
    settings.AUDIT_TRUSTED_PROXIES = 3
    assert client_address(request) == "10.0.0.5"  # fewer hops than proxies: the header is not trusted
    settings.AUDIT_TRUSTED_PROXIES = 1
    for junk in ("x" * 200, "<script>", "2001:db8::1%eth0' OR 1=1"):
        assert client_address(rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=junk)) == "10.0.0.5"
    assert client_address(rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="2001:db8::1")) == "2001:db8::1"


def test_restricted_columns_seen_in_a_version_or_a_diff_are_audited(client, registrar, prod):
    security = UserFactory(username="sam", roles=["security_engineer"])
    columns = [column_payload("person_id"), column_payload("national_id", sensitivity="Restricted")]
    people = dataset_create(principal=registrar, store=prod, name="hr.people", columns=columns)
    dataset_create(principal=registrar, store=prod, name="hr.people", columns=[column_payload("person_id")])
    web(client, security)

    def viewed():
        return list(AuditEvent.objects.filter(action="metadata.restricted_viewed").order_by("id").values_list("details", flat=True))

    assert client.get(reverse("catalog:dataset-version-detail", args=[people.pk, 2])).status_code == 200
    assert viewed() == []  # version 2 has no Restricted column
    client.get(reverse("catalog:dataset-version-detail", args=[people.pk, 1]))
    client.get(reverse("catalog:dataset-diff", args=[people.pk]), {"from": 1, "to": 2})
    client.get(f"/api/v1/datasets/{people.pk}/versions/1/")
    client.get(f"/api/v1/datasets/{people.pk}/diff/", {"from": 1, "to": 2})
    assert viewed() == [
        {"via": "page:version", "versions": [1]}, {"via": "page:diff", "versions": [1]},
        {"via": "api:version", "versions": [1]}, {"via": "api:diff", "versions": [1]},
    ]
    client.get(f"/api/v1/datasets/{people.pk}/versions/")
    # Dropping national_id did not lower the dataset: it stays Restricted until a reviewer approves
    # lowering it, so its version list is audited as a Restricted dataset's.
    assert viewed()[-1] == {"via": "api:versions"}


def test_break_glass_waiting_for_review_lists_only_what_the_reader_may_review(client, orders, owner, monkeypatch):
    from access import views as access_views

    on_call = UserFactory(username="eve", roles=["software_engineer"])
    security = UserFactory(username="sam", roles=["security_engineer"])
    for minute in range(3):
        grants.break_glass_activate(principal=on_call, dataset=orders, level="read", minutes=10 + minute,
                                    reason="INC-9: checkout is failing for everyone")
    monkeypatch.setattr(access_views, "BREAK_GLASS_SHOWN", 2)

    page = web(client, owner).get(reverse("access:approval-queue"))
    assert len(page.context["break_glass"]) == 2 and page.context["break_glass_total"] == 3
    assert "The oldest 2 are listed" in page.content.decode()
    # A security engineer reviews every break-glass use, whatever the data's tier.
    page = web(client, security).get(reverse("access:approval-queue"))
    assert len(page.context["break_glass"]) == 2 and page.context["break_glass_total"] == 3


def test_security_engineer_reviews_break_glass_on_data_that_is_not_restricted(client, orders, owner):
    on_call = UserFactory(username="eve", roles=["software_engineer"])
    security = UserFactory(username="sam", roles=["security_engineer"])
    analyst = UserFactory(username="ann", roles=["data_analyst"])
    grant = grants.break_glass_activate(principal=on_call, dataset=orders, level="read", minutes=15,
                                        reason="INC-9: checkout is failing for everyone")
    assert grant.request.sensitivity < 3  # Sensitive: before, only the owner saw it
    count = web(client, security).get(reverse("access:approval-count"))
    assert ">1<" in count.text  # the navigation counts it
    page = client.get(reverse("access:approval-queue"))
    assert [g.pk for g in page.context["break_glass"]] == [grant.pk]
    assert "Record review" in client.get(reverse("access:grant-detail", args=[grant.pk])).text
    response = client.post(reverse("access:break-glass-review", args=[grant.pk]),
                           {"note": "Read the query log: only the failing orders.", "next": reverse("access:approval-queue")})
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.reviewed_by == security
    assert AuditEvent.objects.filter(action="break_glass.reviewed", actor=security, object_id=str(grant.pk)).exists()
    assert ">0<" not in web(client, security).get(reverse("access:approval-count")).text
    # Someone who neither owns the dataset nor is a security engineer still may not.
    other = grants.break_glass_activate(principal=on_call, dataset=orders, level="read", minutes=15,
                                        reason="INC-10: checkout is failing again")
    assert web(client, analyst).get(reverse("access:approval-queue")).context["break_glass"] == []
    assert client.post(reverse("access:break-glass-review", args=[other.pk]), {"note": "fine"}).status_code == 404
    # Nor the holder, even a security engineer holding it.
    with pytest.raises(PermissionDenied):
        grants.break_glass_review(principal=on_call, grant=other, note="I checked myself")


def test_navigation_count_includes_break_glass_waiting_for_the_owner(client, orders, owner):
    on_call = UserFactory(username="eve", roles=["software_engineer"])
    web(client, owner)
    assert "nav-count" not in client.get(reverse("access:approval-count")).text
    grants.break_glass_activate(principal=on_call, dataset=orders, level="read", minutes=15,
                                reason="INC-9: checkout is failing for everyone")
    assert ">1<" in client.get(reverse("access:approval-count")).text
