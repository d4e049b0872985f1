"""The access REST API: every endpoint tried by someone who may and someone who may not."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from access import grants
from access.models import AccessRequest, AuditEvent, Grant, RolePermission
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create, service_account_with_key

API = "/api/v1/access"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def cast(db):
    """Olga owns a prod dataset with a Sensitive column; Sam (data scientist) may ask to read it."""
    owner = UserFactory(username="olga", roles=["data_engineer"])
    store = StoreFactory(name="warehouse", environment="prod")
    dataset = dataset_create(
        principal=owner, store=store, name="sales.orders", owners=["olga"],
        columns=[column_payload("order_id"), column_payload("email", sensitivity="Sensitive")],
    )
    return {
        "owner": owner,
        "dataset": dataset,
        "scientist": UserFactory(username="sam", roles=["data_scientist"]),
        "security": UserFactory(username="sec", roles=["security_engineer"]),
        "analyst": UserFactory(username="ann", roles=["data_analyst"]),
        "oncall": UserFactory(username="sven", roles=["software_engineer"]),
        "nobody": UserFactory(username="noone"),
        "admin": UserFactory(username="root", is_staff=True, is_superuser=True),
    }


def ask(cast, user=None, **extra) -> AccessRequest:
    fields = {"level": "read", "duration": 4, "justification": "Quarterly churn analysis", "ticket": "OPS-1"} | extra
    return grants.access_request_create(principal=user or cast["scientist"], dataset=cast["dataset"], **fields)


def granted(cast) -> Grant:
    request = ask(cast)
    grants.access_request_review(principal=cast["owner"], request=request, approve=True)
    return Grant.objects.get(request=request)


def request_body(cast, **extra) -> dict:
    return {
        "dataset": cast["dataset"].pk, "level": "read", "durationHours": 4,
        "justification": "Quarterly churn analysis", "ticket": "OPS-1",
    } | extra


# Authentication ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/matrix/", "/requests/", "/approvals/", "/grants/", "/audit/", "/audit/verify/", "/audit/export.csv",
    "/decide/?dataset=1&action=read",
])
def test_anonymous_callers_get_401(db, path):
    response = APIClient().get(API + path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


def test_anonymous_cannot_ask_for_access(cast):
    response = APIClient().post(f"{API}/requests/", request_body(cast), format="json")
    assert response.status_code == 401
    assert not AccessRequest.objects.exists()


# Role matrix -------------------------------------------------------------------------------------


def test_everyone_signed_in_reads_the_whole_matrix(cast, django_assert_max_num_queries):
    client = client_for(cast["analyst"])
    with django_assert_max_num_queries(6):
        response = client.get(f"{API}/matrix/")
    assert response.status_code == 200
    cells = response.json()
    assert len(cells) == RolePermission.objects.count() == 9 * 3 * 4
    prod_restricted = next(c for c in cells if c["role"] == "data_scientist" and c["environment"] == "prod"
                           and c["sensitivity"] == "Restricted")
    assert prod_restricted["standing"] == "metadata"
    assert prod_restricted["approvalsRequired"] == 2 and prod_restricted["securityApprovalRequired"] is True


def test_admin_changes_a_matrix_cell_and_it_is_audited(cast):
    cell = RolePermission.objects.get(role__slug="data_scientist", environment="prod", sensitivity=2)
    response = client_for(cast["admin"]).patch(f"{API}/matrix/{cell.pk}/", {"jitMaxHours": 2, "standing": "read"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["jitMaxHours"] == 2 and response.json()["standing"] == "read"
    cell.refresh_from_db()
    assert (cell.jit_max_hours, cell.standing) == (2, 2)
    event = AuditEvent.objects.get(action="matrix.changed")
    assert event.actor_name == "root" and event.remote_addr == "127.0.0.1"
    assert event.details["after"] == {"jit_max_hours": 2, "standing": 2}


def test_only_admins_change_the_matrix(cast):
    cell = RolePermission.objects.get(role__slug="data_scientist", environment="prod", sensitivity=2)
    response = client_for(cast["security"]).patch(f"{API}/matrix/{cell.pk}/", {"jitMaxHours": 100}, format="json")
    assert response.status_code == 403
    cell.refresh_from_db()
    assert cell.jit_max_hours == 8


@pytest.mark.parametrize("body, field", [
    ({"standing": "everything"}, "standing"),
    ({"approvalsRequired": 7}, "approvalsRequired"),
    ({"colour": "red"}, "colour"),
    ({"jitLevel": "read", "jitMaxHours": 0}, "jitMaxHours"),
])
def test_bad_matrix_changes_name_the_field_and_change_nothing(cast, body, field):
    cell = RolePermission.objects.get(role__slug="data_scientist", environment="prod", sensitivity=2)
    before = RolePermission.objects.values().get(pk=cell.pk)
    response = client_for(cast["admin"]).patch(f"{API}/matrix/{cell.pk}/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert RolePermission.objects.values().get(pk=cell.pk) == before
    assert not AuditEvent.objects.filter(action="matrix.changed").exists()


def test_an_unknown_matrix_cell_is_404(cast):
    assert client_for(cast["admin"]).patch(f"{API}/matrix/999999/", {"jitMaxHours": 2}, format="json").status_code == 404


# Requests ----------------------------------------------------------------------------------------


def test_asking_for_access_answers_201_with_the_request(cast):
    response = client_for(cast["scientist"]).post(
        f"{API}/requests/", request_body(cast, columns=["EMAIL"]), format="json", REMOTE_ADDR="10.1.2.3"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["level"] == "read" and body["columns"] == ["email"]
    assert body["dataset"] == {"id": cast["dataset"].pk, "qualifiedName": "warehouse.sales.orders"}
    assert body["requester"] == "sam" and body["requesterRoles"] == ["data_scientist"]
    assert body["sensitivity"] == "Sensitive" and body["durationHours"] == 4.0 and body["grant"] is None
    event = AuditEvent.objects.get(action="request.created")
    assert event.remote_addr == "10.1.2.3" and event.object_id == str(body["id"])


@pytest.mark.parametrize("extra, field", [
    ({"durationHours": 100}, "durationHours"),
    ({"durationHours": "soon"}, "durationHours"),
    ({"ticket": ""}, "ticket"),
    ({"justification": "pls"}, "justification"),
    ({"level": "admin"}, "level"),
    ({"columns": ["email", "shoe_size"]}, "columns"),
    ({"dataset": 999999}, "dataset"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_request_names_the_field_and_writes_nothing(cast, extra, field):
    response = client_for(cast["scientist"]).post(f"{API}/requests/", request_body(cast, **extra), format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_dataset_the_caller_cannot_see_is_reported_as_missing(cast):
    response = client_for(cast["nobody"]).post(f"{API}/requests/", request_body(cast), format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["dataset"] == ["No such dataset."]


def test_asking_beyond_what_the_roles_allow_is_403(cast):
    # Data analysts may ask for read, never for write.
    response = client_for(cast["analyst"]).post(f"{API}/requests/", request_body(cast, level="write"), format="json")
    assert response.status_code == 403
    assert not AccessRequest.objects.exists()


def test_service_accounts_cannot_ask_for_access(cast):
    _, key = service_account_with_key()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.post(f"{API}/requests/", request_body(cast), format="json")
    assert response.status_code == 403
    assert not AccessRequest.objects.exists()


def test_service_accounts_read_the_matrix_and_ask_for_decisions(cast):
    _, key = service_account_with_key()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(f"{API}/matrix/").status_code == 200
    decision = client.get(f"{API}/decide/", {"dataset": cast["dataset"].pk, "action": "read"}).json()
    assert decision["allowed"] is False and decision["level"] == "metadata"  # data engineer: prod Sensitive is metadata
    assert client.get(f"{API}/approvals/").json()["results"] == []
    assert client.get(f"{API}/audit/").status_code == 403


def test_requests_are_seen_by_requester_owner_and_security_only(cast):
    request = ask(cast)
    for who in ("scientist", "owner", "security", "admin"):
        assert client_for(cast[who]).get(f"{API}/requests/{request.pk}/").status_code == 200, who
    assert client_for(cast["analyst"]).get(f"{API}/requests/{request.pk}/").status_code == 404
    assert client_for(cast["analyst"]).get(f"{API}/requests/").json()["results"] == []


def test_the_owner_approves_and_the_grant_is_made(cast):
    request = ask(cast)
    response = client_for(cast["owner"]).post(f"{API}/requests/{request.pk}/approve/", {"reason": "ok"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "approved"
    assert body["reviews"][0]["reviewer"] == "olga" and body["reviews"][0]["decision"] == "approve"
    assert body["grant"] == Grant.objects.get(request=request).pk


def test_self_approval_is_refused(cast):
    request = ask(cast)
    response = client_for(cast["scientist"]).post(f"{API}/requests/{request.pk}/approve/", {}, format="json")
    assert response.status_code == 403
    request.refresh_from_db()
    assert request.status == "pending" and not request.reviews.exists()


def test_a_security_engineer_does_not_approve_below_restricted(cast):
    request = ask(cast)
    assert client_for(cast["security"]).post(f"{API}/requests/{request.pk}/approve/").status_code == 403


def test_approving_a_request_out_of_scope_is_404(cast):
    request = ask(cast)
    assert client_for(cast["analyst"]).post(f"{API}/requests/{request.pk}/approve/").status_code == 404


def test_approving_twice_names_the_status(cast):
    request = ask(cast)
    client_for(cast["owner"]).post(f"{API}/requests/{request.pk}/approve/")
    response = client_for(cast["admin"]).post(f"{API}/requests/{request.pk}/approve/")
    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_denying_needs_a_reason(cast):
    request = ask(cast)
    client = client_for(cast["owner"])
    response = client.post(f"{API}/requests/{request.pk}/deny/", {}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["errors"]
    response = client.post(f"{API}/requests/{request.pk}/deny/", {"reason": "Use the aggregate"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "denied" and response.json()["grant"] is None


def test_only_the_requester_cancels(cast):
    request = ask(cast)
    assert client_for(cast["owner"]).post(f"{API}/requests/{request.pk}/cancel/").status_code == 403
    response = client_for(cast["scientist"]).post(f"{API}/requests/{request.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_the_approval_queue_holds_what_i_may_review(cast):
    request = ask(cast)
    assert [r["id"] for r in client_for(cast["owner"]).get(f"{API}/approvals/").json()["results"]] == [request.pk]
    assert client_for(cast["scientist"]).get(f"{API}/approvals/").json()["results"] == []
    assert client_for(cast["security"]).get(f"{API}/approvals/").json()["results"] == []


def _many_requests(cast, count, prefix="scientist"):
    for index in range(count):
        user = UserFactory(username=f"{prefix}{index}", roles=["data_scientist"])
        ask(cast, user=user)


@pytest.mark.parametrize("path, who", [("/requests/", "admin"), ("/approvals/", "owner")])
def test_request_lists_take_a_constant_number_of_queries(cast, django_assert_max_num_queries, path, who):
    _many_requests(cast, 2)
    client = client_for(cast[who])
    with django_assert_max_num_queries(12) as few:
        assert len(client.get(API + path).json()["results"]) == 2
    _many_requests(cast, 6, prefix="more")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(API + path).json()["results"]) == 8


# Grants ------------------------------------------------------------------------------------------


def test_my_live_grants(cast):
    grant = granted(cast)
    client = client_for(cast["scientist"])
    results = client.get(f"{API}/grants/", {"user": "me", "live": "true"}).json()["results"]
    assert [g["id"] for g in results] == [grant.pk]
    assert results[0]["status"] == "active" and results[0]["isLive"] is True and 0 < results[0]["secondsLeft"] <= 4 * 3600
    assert client_for(cast["owner"]).get(f"{API}/grants/", {"user": "me"}).json()["results"] == []
    assert client_for(cast["analyst"]).get(f"{API}/grants/{grant.pk}/").status_code == 404


def test_a_grant_past_its_end_shows_expired_before_any_worker_ran(cast):
    grant = granted(cast)
    Grant.objects.filter(pk=grant.pk).update(starts_at=timezone.now() - timedelta(hours=5), ends_at=timezone.now() - timedelta(hours=1))
    client = client_for(cast["scientist"])
    body = client.get(f"{API}/grants/{grant.pk}/").json()
    assert body["status"] == "expired" and body["isLive"] is False and body["secondsLeft"] == 0
    assert client.get(f"{API}/grants/", {"user": "me", "live": "true"}).json()["results"] == []


def test_grants_list_takes_a_constant_number_of_queries(cast, django_assert_max_num_queries):
    granted(cast)
    client = client_for(cast["admin"])
    with django_assert_max_num_queries(8) as few:
        assert len(client.get(f"{API}/grants/").json()["results"]) == 1
    for index in range(5):
        user = UserFactory(username=f"s{index}", roles=["data_scientist"])
        grants.access_request_review(principal=cast["owner"], request=ask(cast, user=user), approve=True)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(client.get(f"{API}/grants/").json()["results"]) == 6


def test_the_holder_ends_a_grant_early_with_a_reason(cast):
    grant = granted(cast)
    client = client_for(cast["scientist"])
    response = client.post(f"{API}/grants/{grant.pk}/revoke/", {}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["errors"]
    response = client.post(f"{API}/grants/{grant.pk}/revoke/", {"reason": "Done early"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "revoked" and response.json()["revokedBy"] == "sam"
    decision = client.get(f"{API}/decide/", {"dataset": cast["dataset"].pk, "action": "read"}).json()
    assert decision["allowed"] is False


def test_ending_a_grant_out_of_scope_is_404(cast):
    grant = granted(cast)
    assert client_for(cast["analyst"]).post(f"{API}/grants/{grant.pk}/revoke/", {"reason": "Not yours"}, format="json").status_code == 404
    grant.refresh_from_db()
    assert grant.status == "active"


def test_the_holder_asks_to_extend_a_grant(cast):
    grant = granted(cast)
    response = client_for(cast["scientist"]).post(
        f"{API}/grants/{grant.pk}/extend/",
        {"durationHours": 2, "justification": "The analysis runs one more day", "ticket": "OPS-1"}, format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["extends"] == grant.pk and response.json()["status"] == "pending"
    response = client_for(cast["scientist"]).post(
        f"{API}/grants/{grant.pk}/extend/", {"durationHours": 50, "justification": "x" * 20, "ticket": "OPS-1"}, format="json"
    )
    assert response.status_code == 400 and "grant" in response.json()["errors"]  # one extension waits already
    assert client_for(cast["owner"]).post(
        f"{API}/grants/{grant.pk}/extend/", {"durationHours": 2, "justification": "x" * 20}, format="json"
    ).status_code == 403


# Break-glass -------------------------------------------------------------------------------------


def test_on_call_break_glass_then_an_after_the_fact_review(cast):
    response = client_for(cast["oncall"]).post(
        f"{API}/break-glass/", {"dataset": cast["dataset"].pk, "level": "read", "reason": "Incident 42: orders stuck",
                                "minutes": 30}, format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["isBreakGlass"] is True and body["reviewRequired"] is True and body["user"] == "sven"
    assert 29 * 60 < body["secondsLeft"] <= 30 * 60
    assert client_for(cast["oncall"]).post(f"{API}/grants/{body['id']}/review/", {"note": "fine"}, format="json").status_code == 403
    response = client_for(cast["owner"]).post(f"{API}/grants/{body['id']}/review/", {}, format="json")
    assert response.status_code == 400 and "note" in response.json()["errors"]
    response = client_for(cast["owner"]).post(f"{API}/grants/{body['id']}/review/", {"note": "Justified"}, format="json")
    assert response.status_code == 200
    assert response.json()["reviewedBy"] == "olga" and response.json()["reviewNote"] == "Justified"


def test_break_glass_is_refused_to_roles_without_it(cast):
    response = client_for(cast["scientist"]).post(
        f"{API}/break-glass/", {"dataset": cast["dataset"].pk, "level": "read", "reason": "Incident 42: orders stuck"},
        format="json",
    )
    assert response.status_code == 403
    assert not Grant.objects.exists()


def test_break_glass_longer_than_the_cap_names_minutes(cast):
    response = client_for(cast["oncall"]).post(
        f"{API}/break-glass/", {"dataset": cast["dataset"].pk, "level": "read", "reason": "Incident 42: orders stuck",
                                "minutes": 600}, format="json",
    )
    assert response.status_code == 400 and "minutes" in response.json()["errors"]
    assert not Grant.objects.exists()


# The decision ------------------------------------------------------------------------------------


def test_decide_follows_standing_access_and_grants(cast):
    client = client_for(cast["scientist"])
    params = {"dataset": cast["dataset"].pk, "action": "read"}
    before = client.get(f"{API}/decide/", params).json()
    assert before["allowed"] is False and before["level"] == "metadata" and before["via"] == ""
    regular_only = client.get(f"{API}/decide/", params | {"columns": "order_id"}).json()
    assert regular_only["allowed"] is True and regular_only["via"] == "standing"  # prod Regular: standing read
    grant = granted(cast)
    after = client.get(f"{API}/decide/", params).json()
    assert after == {"dataset": cast["dataset"].pk, "action": "read", "columns": [], "allowed": True, "level": "read",
                     "via": f"grant #{grant.pk}", "reason": "", "grant": grant.pk}


@pytest.mark.parametrize("params, field", [
    ({"dataset": "", "action": "read"}, "dataset"),
    ({"dataset": "x", "action": "read"}, "dataset"),
    ({"action": "delete"}, "action"),
    ({"action": "read", "columns": "email,shoe_size"}, "columns"),
])
def test_decide_names_the_bad_parameter(cast, params, field):
    params = {"dataset": cast["dataset"].pk} | params
    response = client_for(cast["scientist"]).get(f"{API}/decide/", params)
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_decide_on_a_dataset_out_of_scope_is_404(cast):
    response = client_for(cast["nobody"]).get(f"{API}/decide/", {"dataset": cast["dataset"].pk, "action": "read"})
    assert response.status_code == 404


# Audit -------------------------------------------------------------------------------------------


def test_security_engineers_read_and_filter_the_audit_trail(cast, django_assert_max_num_queries):
    granted(cast)
    client = client_for(cast["security"])
    with django_assert_max_num_queries(6):
        events = client.get(f"{API}/audit/").json()["results"]
    assert [e["action"] for e in events][::-1] == ["request.created", "request.reviewed", "request.approved", "grant.activated"]
    assert events[0]["dataset"]["qualifiedName"] == "warehouse.sales.orders"
    assert [e["action"] for e in client.get(f"{API}/audit/", {"action": "request."}).json()["results"]] == [
        "request.approved", "request.reviewed", "request.created"]
    assert len(client.get(f"{API}/audit/", {"action": "request"}).json()["results"]) == 3  # a family, without the dot
    assert [e["action"] for e in client.get(f"{API}/audit/", {"action": "request.reviewed"}).json()["results"]] == [
        "request.reviewed"]
    assert client.get(f"{API}/audit/", {"action": "request.review"}).json()["results"] == []  # one action is exact
    assert [e["action"] for e in client.get(f"{API}/audit/", {"actor": "sam"}).json()["results"]] == ["request.created"]
    assert client.get(f"{API}/audit/", {"dataset": cast["dataset"].pk + 1}).json()["results"] == []
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert client.get(f"{API}/audit/", {"since": future}).json()["results"] == []
    assert len(client.get(f"{API}/audit/", {"until": future}).json()["results"]) == 4


def test_audit_pages_with_a_cursor(cast):
    granted(cast)
    client = client_for(cast["admin"])
    first = client.get(f"{API}/audit/", {"page_size": 3}).json()
    second = client.get(first["next"]).json()
    ids = [e["id"] for e in first["results"] + second["results"]]
    assert ids == sorted(AuditEvent.objects.values_list("id", flat=True), reverse=True)


def test_a_bad_audit_filter_names_it(cast):
    response = client_for(cast["security"]).get(f"{API}/audit/", {"since": "last tuesday"})
    assert response.status_code == 400
    assert "since" in response.json()["errors"]


@pytest.mark.parametrize("path", ["/audit/", "/audit/export.csv", "/audit/export.json", "/audit/verify/"])
def test_the_audit_trail_is_not_for_everyone(cast, path):
    for who in ("scientist", "owner", "analyst", "nobody"):
        assert client_for(cast[who]).get(API + path).status_code == 403, who


def test_audit_exports_stream_csv_and_json(cast):
    granted(cast)
    client = client_for(cast["security"])
    response = client.get(f"{API}/audit/export.csv", {"action": "request."})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["action"] for row in rows] == ["request.created", "request.reviewed", "request.approved"]
    assert json.loads(rows[0]["details"])["ticket"] == "OPS-1"
    response = client.get(f"{API}/audit/export.json")
    events = json.loads(b"".join(response.streaming_content))
    assert [e["id"] for e in events] == sorted(AuditEvent.objects.values_list("id", flat=True))
    assert events[-1]["hash"] == AuditEvent.objects.order_by("id").last().hash
    exports = list(AuditEvent.objects.filter(action="audit.exported").order_by("id"))
    assert [(e.actor_name, e.details) for e in exports] == [
        (cast["security"].username, {"format": "csv", "filters": {"action": "request."}}),
        (cast["security"].username, {"format": "json", "filters": {}}),
    ]


def test_verify_reports_an_intact_chain(cast):
    granted(cast)
    response = client_for(cast["admin"]).get(f"{API}/audit/verify/")
    head = AuditEvent.objects.order_by("-id").first()
    assert response.json() == {
        "intact": True, "checked": 4, "firstBadId": None, "problem": "", "headId": head.pk, "headHash": head.hash,
    }


# Periodic access reviews ---------------------------------------------------------------------------


def test_the_owner_reviews_and_confirms_access_to_their_dataset(cast):
    grant = granted(cast)
    client = client_for(cast["owner"])
    body = client.get(f"{API}/reviews/{cast['dataset'].pk}/").json()
    assert [g["id"] for g in body["grants"]] == [grant.pk]
    assert body["lastConfirmedAt"] is None
    response = client.post(f"{API}/reviews/{cast['dataset'].pk}/confirm/", {"note": "All still needed"}, format="json")
    assert response.status_code == 200
    assert response.json()["confirmedBy"] == "olga" and response.json()["note"] == "All still needed"
    event = AuditEvent.objects.get(action="access_review.confirmed")
    assert event.dataset_id == cast["dataset"].pk
    assert client.get(f"{API}/reviews/{cast['dataset'].pk}/").json()["lastConfirmedBy"] == "olga"


def test_access_reviews_are_for_owners(cast):
    dataset_id = cast["dataset"].pk
    assert client_for(cast["scientist"]).get(f"{API}/reviews/{dataset_id}/").status_code == 403
    assert client_for(cast["scientist"]).post(f"{API}/reviews/{dataset_id}/confirm/").status_code == 403
    assert client_for(cast["nobody"]).get(f"{API}/reviews/{dataset_id}/").status_code == 404
    assert not AuditEvent.objects.filter(action="access_review.confirmed").exists()


# OpenAPI -----------------------------------------------------------------------------------------


def test_the_openapi_schema_lists_the_access_endpoints(db):
    schema = APIClient().get("/api/schema/?format=json").json()
    expected = {
        "/api/v1/access/matrix/", "/api/v1/access/matrix/{id}/", "/api/v1/access/requests/",
        "/api/v1/access/requests/{id}/", "/api/v1/access/requests/{id}/approve/", "/api/v1/access/requests/{id}/deny/",
        "/api/v1/access/requests/{id}/cancel/", "/api/v1/access/approvals/", "/api/v1/access/grants/",
        "/api/v1/access/grants/{id}/", "/api/v1/access/grants/{id}/revoke/", "/api/v1/access/grants/{id}/extend/",
        "/api/v1/access/grants/{id}/review/", "/api/v1/access/break-glass/", "/api/v1/access/decide/",
        "/api/v1/access/audit/", "/api/v1/access/audit/export.csv", "/api/v1/access/audit/export.json",
        "/api/v1/access/audit/verify/", "/api/v1/access/reviews/{dataset_id}/",
        "/api/v1/access/reviews/{dataset_id}/confirm/",
    }
    assert expected <= set(schema["paths"])
    assert "patch" in schema["paths"]["/api/v1/access/matrix/{id}/"]
    create = schema["components"]["schemas"]["AccessRequestCreateRequest"]["properties"]
    assert set(create) == {"dataset", "level", "columns", "durationHours", "justification", "ticket"}


def test_reading_a_restricted_dataset_through_the_api_is_audited(db):
    from rest_framework.test import APIClient

    from access.models import AuditEvent
    from catalog.services import dataset_register
    from tests.factories import StoreFactory, UserFactory

    StoreFactory(name="vault", environment="prod")
    owner = UserFactory(username="olive", roles=["data_engineer"])
    dataset, _ = dataset_register(principal=owner, payload={
        "name": "secrets.passwords", "store": "vault", "registeredBy": "test",
        "columns": [{"name": "hash", "type": "STRING", "mode": "REQUIRED", "sensitivity": "Restricted", "protection": "Hashed"}],
    })
    reader = UserFactory(username="sami", roles=["security_engineer"])
    client = APIClient()
    client.force_authenticate(reader)

    response = client.get(f"/api/v1/datasets/{dataset.pk}/", REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 200
    event = AuditEvent.objects.get(action="metadata.restricted_viewed")
    assert (event.actor_name, event.dataset_id, event.remote_addr, event.details) == ("sami", dataset.pk, "10.1.2.3", {"via": "api"})


def test_retrying_enforcement_through_the_api(cast):
    from access.models import Grant

    grant = granted(cast)
    retry = f"{API}/grants/{grant.pk}/retry/"
    assert client_for(cast["owner"]).post(retry).status_code == 400  # nothing failed
    Grant.objects.filter(pk=grant.pk).update(enforcement="revoke_failed", enforcement_attempts=5)
    assert client_for(cast["scientist"]).post(retry).status_code == 403  # the holder

    response = client_for(cast["security"]).post(retry)

    assert response.status_code == 200
    assert Grant.objects.get(pk=grant.pk).enforcement_attempts == 0


def test_the_access_review_costs_the_same_queries_for_one_grant_or_many(cast):
    granted(cast)
    client = client_for(cast["owner"])
    url = f"{API}/reviews/{cast['dataset'].pk}/"
    client.get(url)  # warm the session
    with CaptureQueriesContext(connection) as one:
        client.get(url)
    for username in ("ann", "ben", "cy"):
        user = UserFactory(username=username, roles=["data_scientist"])
        grants.access_request_review(principal=cast["owner"], request=ask(cast, user), approve=True)
    with CaptureQueriesContext(connection) as four:
        assert len(client.get(url).json()["grants"]) == 4
    assert len(four) == len(one)
