"""The alert API: the inbox list (filters, constant queries), one alert with its evidence, and the
workflow endpoints (400 naming the field, 404 for anyone who does not work alerts, audited)."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import AuditEvent
from monitoring.alerts import Evidence, Finding, alert_raise
from monitoring.ingestion import access_log_ingest
from monitoring.models import AccessEvent, Alert, AlertStatus, EventSource, LogFormat, Severity
from monitoring.parsing import records_from_text
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create
from tests.monitoring.test_push import pg_line

pytestmark = pytest.mark.django_db

ALERTS = "/api/v1/monitoring/alerts/"


@pytest.fixture
def security(db):
    return UserFactory(username="sec", roles=["security_engineer"])


@pytest.fixture
def analyst(db):
    return UserFactory(username="mia", roles=["data_analyst"], warehouse_role="mia_role")


@pytest.fixture
def store(db):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    store = StoreFactory(name="pg-alerts", kind="transactional", platform="postgresql", environment="prod")
    dataset_create(principal=registrar, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive")])
    return store


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def access_events(store, *statements) -> list[AccessEvent]:
    """Access events recorded the real way: pgaudit csvlog lines through ingestion."""
    text = "\n".join(pg_line(number, statement) for number, statement in enumerate(statements, start=1))
    records, errors, _ = records_from_text(text, LogFormat.PGAUDIT, final=True)
    assert not errors
    access_log_ingest(store=store, records=records, source=EventSource.PUSH, log_format=LogFormat.PGAUDIT)
    return list(AccessEvent.objects.filter(store=store).order_by("id"))


def raise_for(events, *, rule="read_not_allowed", subject="user:mia", severity=Severity.HIGH, user=None):
    alert, _ = alert_raise(Finding(
        rule=rule, subject_key=subject, severity=severity, title="Read of columns no grant allows",
        summary="mia_role read shop.customers.email; no standing permission or grant allows it.",
        suggested_action="Ask mia why; if it was needed, have her request access.",
        evidence=[Evidence(key=f"access:{e.pk}", occurred_at=e.occurred_at, access_event_id=e.pk,
                           description="read of shop.customers") for e in events],
        user_id=user.pk if user else None, database_role="mia_role",
        dataset_ids=sorted({e.dataset_id for e in events if e.dataset_id})))
    return alert


def test_the_alert_api_is_a_404_for_people_who_do_not_work_alerts(analyst, store):
    alert = raise_for(access_events(store, "SELECT email FROM shop.customers"), user=analyst)
    client = api(analyst)
    assert client.get(ALERTS).status_code == 404
    assert client.get(f"{ALERTS}{alert.pk}/").status_code == 404
    assert client.post(f"{ALERTS}{alert.pk}/resolve/", {"note": "fine"}, format="json").status_code == 404
    assert Alert.objects.get(pk=alert.pk).status == AlertStatus.OPEN


def test_an_alert_comes_with_its_evidence_in_camel_case(security, analyst, store):
    events = access_events(store, "SELECT email FROM shop.customers WHERE id = 4242")
    alert = raise_for(events, user=analyst)
    body = api(security).get(f"{ALERTS}{alert.pk}/").json()
    assert body["severity"] == "high" and body["user"] == "mia" and body["databaseRole"] == "mia_role"
    assert body["datasets"] == [{"id": events[0].dataset_id, "qualifiedName": "pg-alerts.shop.customers"}]
    assert body["suggestedAction"].startswith("Ask mia")
    evidence = body["evidence"][0]
    assert evidence["key"] == f"access:{events[0].pk}" and evidence["auditEvent"] is None
    assert evidence["accessEvent"]["columns"] == ["id", "email"] and evidence["accessEvent"]["clientAddress"] == "10.1.2.3"
    assert evidence["accessEvent"]["datasetName"] == "pg-alerts.shop.customers"
    assert "4242" not in str(body)  # the statement's literal values never leave the catalog


def test_the_list_filters_like_the_page_and_costs_constant_queries(security, analyst, store):
    events = access_events(store, *[f"SELECT id FROM shop.customers WHERE id = {n}" for n in range(30)])
    client = api(security)
    raise_for(events[:1], subject="user:0", user=analyst)
    raise_for(events[1:2], subject="user:1", user=analyst)
    client.get(ALERTS)  # warm: content types and the like, read once per process
    with CaptureQueriesContext(connection) as few:
        assert client.get(ALERTS).json()["count"] == 2
    for index, event in enumerate(events[2:], start=2):
        raise_for([event], subject=f"user:{index}", user=analyst,
                  severity=Severity.CRITICAL if index == 2 else Severity.HIGH)
    with CaptureQueriesContext(connection) as many:
        assert client.get(ALERTS).json()["count"] == 30
    assert len(many) == len(few)
    assert [a["subjectKey"] for a in client.get(ALERTS, {"severity": "critical"}).json()["results"]] == ["user:2"]
    assert client.get(ALERTS, {"assignee": "none", "limit": 5}).json()["count"] == 30
    assert client.get(ALERTS, {"status": "resolved"}).json()["count"] == 0
    bad = client.get(ALERTS, {"status": "sleeping"})
    assert bad.status_code == 400 and "status" in bad.json()["errors"]
    unknown_rule = client.get(ALERTS, {"rule": "volume"})  # rules are the detectors' names, not a substring
    assert unknown_rule.status_code == 400 and "rule" in unknown_rule.json()["errors"]
    assert client.get(ALERTS, {"rule": "read_not_allowed"}).status_code == 200


def test_the_workflow_endpoints_answer_with_the_alert_and_are_audited(security, analyst, store):
    colleague = UserFactory(username="sam", roles=["security_engineer"])
    alert = raise_for(access_events(store, "SELECT email FROM shop.customers"), user=analyst)
    client = api(security)
    base = f"{ALERTS}{alert.pk}"
    assert client.post(f"{base}/acknowledge/").json()["status"] == "acknowledged"
    assert client.post(f"{base}/acknowledge/").status_code == 400  # only an open alert
    assert client.post(f"{base}/assign/", {"assignee": "sam"}, format="json").json()["assignee"] == "sam"
    refused = client.post(f"{base}/assign/", {"assignee": "mia"}, format="json")
    assert refused.status_code == 400 and "assignee" in refused.json()["errors"]
    until = timezone.now() + timedelta(hours=2)
    assert client.post(f"{base}/snooze/", {"until": until.isoformat()}, format="json").json()["snoozedUntil"]
    too_far = client.post(f"{base}/snooze/", {"until": (timezone.now() + timedelta(days=31)).isoformat()},
                          format="json")
    assert too_far.status_code == 400 and "until" in too_far.json()["errors"]
    assert client.post(f"{base}/snooze/", {"until": "tomorrow"}, format="json").json()["errors"].keys() == {"until"}
    assert client.post(f"{base}/reopen/", {"note": "still odd"}, format="json").json()["status"] == "open"
    empty = client.post(f"{base}/resolve/", {"note": ""}, format="json")
    assert empty.status_code == 400 and "note" in empty.json()["errors"]
    assert client.post(f"{base}/resolve/", {}, format="json").json()["errors"].keys() == {"note"}
    done = client.post(f"{base}/resolve/", {"note": "Fraud check, agreed with her lead."}, format="json").json()
    assert done["status"] == "resolved" and done["resolutionNote"] == "Fraud check, agreed with her lead."
    assert client.post(f"{base}/assign/", {"assignee": None}, format="json").status_code == 400  # reopen first
    actions = list(AuditEvent.objects.filter(object_type="alert", object_id=str(alert.pk)).order_by("id")
                   .values_list("action", flat=True))
    assert actions == ["alert.acknowledged", "alert.assigned", "alert.snoozed", "alert.reopened", "alert.resolved"]
    assert Alert.objects.get(pk=alert.pk).assignee == colleague


def test_the_alert_endpoints_are_in_the_openapi_schema(security):
    schema = api(security).get("/api/schema/", {"format": "json"}).json()
    for path in ("/api/v1/monitoring/alerts/", "/api/v1/monitoring/alerts/{id}/",
                 "/api/v1/monitoring/alerts/{id}/resolve/", "/api/v1/monitoring/alerts/{id}/snooze/"):
        assert path in schema["paths"], path
    resolve = schema["paths"]["/api/v1/monitoring/alerts/{id}/resolve/"]["post"]
    assert {"400", "404"} <= set(resolve["responses"])


def test_a_security_engineer_cannot_work_the_alert_about_their_own_reads(store):
    """Through the API and the page: the alert about sam's own warehouse reads is sam's to read, not
    to resolve, snooze, acknowledge or take; the page says so instead of offering the forms."""
    from django.test import Client

    sam = UserFactory(username="sam", roles=["security_engineer"], warehouse_role="mia_role")
    colleague = UserFactory(username="sec2", roles=["security_engineer"])
    alert = raise_for(access_events(store, "SELECT email FROM shop.customers"), subject=f"user:{sam.pk}", user=sam)
    client = api(sam)
    base = f"{ALERTS}{alert.pk}"
    assert client.get(f"{base}/").status_code == 200
    for path, body in (("resolve", {"note": "It was me, fine."}), ("acknowledge", {}),
                       ("snooze", {"until": (timezone.now() + timedelta(days=2)).isoformat()}),
                       ("assign", {"assignee": "sam"})):
        answer = client.post(f"{base}/{path}/", body, format="json")
        assert answer.status_code == 400, path
        assert "about you" in json.dumps(answer.json()), path
    assert api(colleague).post(f"{base}/assign/", {"assignee": "sam"}, format="json").json()["errors"].keys() == {"assignee"}
    assert Alert.objects.get(pk=alert.pk).status == "open"
    assert not AuditEvent.objects.filter(object_type="alert", object_id=str(alert.pk)).exists()
    page = Client()
    page.force_login(sam)
    html = page.get(f"/monitoring/alerts/{alert.pk}/").content.decode()
    assert 'id="about-you"' in html and 'id="resolve-form"' not in html
    assert page.post(f"/monitoring/alerts/{alert.pk}/resolve/", {"resolve-note": "me"}).status_code == 400
    assert Alert.objects.get(pk=alert.pk).status == "open"
    page.force_login(colleague)
    assert 'id="resolve-form"' in page.get(f"/monitoring/alerts/{alert.pk}/").content.decode()


def test_a_security_engineer_who_may_not_see_a_dataset_reads_no_event_or_evidence_naming_it(security, analyst, store):
    from django.test import Client

    from access.models import Role, RolePermission

    events = access_events(store, "SELECT email FROM shop.customers WHERE id = 4242")
    alert = raise_for(events, user=analyst)
    # The security engineers' role sees nothing in prod (the store's environment) any more.
    RolePermission.objects.filter(role=Role.objects.get(slug="security_engineer")).delete()
    client = api(security)
    listed = client.get("/api/v1/monitoring/events/").json()["results"]
    assert listed == []
    evidence = client.get(f"{ALERTS}{alert.pk}/").json()["evidence"][0]["accessEvent"]
    assert evidence["dataset"] is None and evidence["datasetName"] is None
    assert "customers" not in json.dumps(evidence) and "email" not in json.dumps(evidence)
    page = Client()
    page.force_login(security)
    html = page.get(f"/monitoring/alerts/{alert.pk}/").content.decode()
    assert "a dataset you may not see" in html  # (the hand-made summary above names it; detectors' do not)
    assert '<span class="mono small">shop.customers</span>' not in html and "FROM shop.customers" not in html
    admin = api(UserFactory(username="root", is_superuser=True))
    assert [e["id"] for e in admin.get("/api/v1/monitoring/events/").json()["results"]] == [events[0].pk]
    assert admin.get(f"{ALERTS}{alert.pk}/").json()["evidence"][0]["accessEvent"]["relation"] == "shop.customers"
