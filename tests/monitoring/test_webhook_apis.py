"""The webhook API: who may manage endpoints, step-up, bad input naming the field, the secret shown
once, deliveries listed with their failures, a test event and a retry."""

import json

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from access.models import AuditEvent
from monitoring.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from tests.factories import UserFactory
from tests.identity.helpers import session_step_up_clear
from tests.monitoring.receivers import start_receiver, verify

pytestmark = pytest.mark.django_db

LIST = "/api/v1/monitoring/webhooks/"
LOCAL = override_settings(MONITORING_WEBHOOK_ALLOWED_PRIVATE=["127.0.0.1/32"],
                          CATALOG_BASE_URL="https://catalog.example.com")


@pytest.fixture
def receiver():
    receiver = start_receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def security_client(db):
    client = APIClient()
    client.force_login(UserFactory(username="sec", roles=["security_engineer"]))
    return client


def create(client, receiver, **fields):
    body = {"name": "siem", "url": receiver.url, "kind": "generic", "minSeverity": "High",
            "eventTypes": ["grant.approved"], **fields}
    return client.post(LIST, body, format="json")


@LOCAL
def test_the_secret_is_in_the_creation_answer_only(security_client, receiver):
    created = create(security_client, receiver)
    assert created.status_code == 201, created.json()
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert created.json()["url"] == f"http://127.0.0.1:{receiver.server.server_address[1]}/hooks/…"
    pk = created.json()["id"]
    answers = [security_client.get(LIST), security_client.get(f"{LIST}{pk}/"),
               security_client.patch(f"{LIST}{pk}/", {"minSeverity": "Critical"}, format="json"),
               security_client.post(f"{LIST}{pk}/test/"), security_client.get(f"{LIST}{pk}/deliveries/")]
    for answer in answers:
        assert answer.status_code == 200, answer.content
        assert secret not in answer.content.decode() and "secret" not in answer.json()
    audit = list(AuditEvent.objects.filter(action__startswith="webhook.").order_by("id")
                 .values_list("action", "details"))
    assert [action for action, _ in audit] == ["webhook.created", "webhook.changed"]
    assert all(secret not in json.dumps(details) and "/hooks/catalog" not in json.dumps(details)
               for _, details in audit)
    assert audit[1][1]["changes"] == {"min_severity": {"from": "High", "to": "Critical"}}
    [test] = receiver.received  # the receiver checks the signature with the secret it was given once
    assert verify(secret, test.headers, test.body)


@LOCAL
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(security_client, receiver):
    for fields, field in [({"url": "http://10.0.0.5/hook"}, "url"), ({"url": "http://localhost:8000/"}, "url"),
                          ({"minSeverity": "Severe"}, "minSeverity"), ({"eventTypes": ["dataset.deleted"]}, "eventTypes"),
                          ({"kind": "discord"}, "kind"), ({"name": ""}, "name"),
                          ({"minSeverity": None, "eventTypes": []}, "eventTypes")]:
        answer = create(security_client, receiver, **fields)
        errors = answer.json().get("errors", {})
        assert answer.status_code == 400 and any(key.startswith(field) for key in errors), (fields, answer.json())
    assert not WebhookEndpoint.objects.exists() and not AuditEvent.objects.filter(action__startswith="webhook.").exists()
    pk = create(security_client, receiver).json()["id"]
    answer = security_client.patch(f"{LIST}{pk}/", {"url": "http://192.168.1.1/x"}, format="json")
    assert answer.status_code == 400 and "private" in answer.json()["errors"]["url"][0]
    assert WebhookEndpoint.objects.get(pk=pk).url == receiver.url


@LOCAL
@pytest.mark.no_second_factor
def test_creating_changing_and_removing_need_a_step_up(receiver, db):
    client = APIClient()
    client.force_login(UserFactory(username="sec", roles=["security_engineer"]))
    answer = create(client, receiver)
    assert answer.status_code == 403 and answer.json()["code"] == "step_up_required"
    assert client.get(LIST).status_code == 200  # reading is never asked
    from tests.identity.helpers import session_step_up

    session_step_up(client)
    pk = create(client, receiver).json()["id"]
    session_step_up_clear(client)
    assert client.patch(f"{LIST}{pk}/", {"active": False}, format="json").json()["code"] == "step_up_required"
    assert client.delete(f"{LIST}{pk}/").status_code == 403
    assert WebhookEndpoint.objects.get(pk=pk).active


@LOCAL
def test_only_security_engineers_and_admins_manage_webhooks(receiver, reader_client, security_client, admin_user):
    assert create(reader_client, receiver).status_code == 403
    assert reader_client.get(LIST).status_code == 403
    pk = create(security_client, receiver).json()["id"]
    assert reader_client.get(f"{LIST}{pk}/deliveries/").status_code == 403
    assert reader_client.delete(f"{LIST}{pk}/").status_code == 403
    admin = APIClient()
    admin.force_login(admin_user)
    assert admin.delete(f"{LIST}{pk}/").status_code == 204
    assert AuditEvent.objects.filter(action="webhook.removed", actor=admin_user).exists()
    assert not WebhookEndpoint.objects.exists()


@LOCAL
@override_settings(MONITORING_WEBHOOK_MAX_ATTEMPTS=1)
def test_failures_are_listed_per_endpoint_and_can_be_retried(security_client, receiver,
                                                              django_capture_on_commit_callbacks):
    pk = create(security_client, receiver).json()["id"]
    receiver.statuses = [500]
    tested = security_client.post(f"{LIST}{pk}/test/").json()
    assert (tested["status"], tested["attempts"], tested["lastStatusCode"]) == ("failed", 1, 500)
    assert tested["lastError"].startswith("HTTP 500")
    failed = security_client.get(f"{LIST}{pk}/deliveries/?status=failed").json()
    assert [d["id"] for d in failed["results"]] == [tested["id"]]
    assert security_client.get(f"{LIST}{pk}/deliveries/?status=lost").status_code == 400
    assert security_client.get(LIST).json()[0]["deliveries"] == {"failed": 1, "pending": 0, "delivered": 0}
    with django_capture_on_commit_callbacks(execute=True):  # the attempt is queued after commit
        retried = security_client.post(f"{LIST}deliveries/{tested['id']}/retry/")
    assert retried.status_code == 202
    delivery = WebhookDelivery.objects.get(pk=tested["id"])
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 2, 200)
    assert security_client.post(f"{LIST}deliveries/{tested['id']}/retry/").status_code == 400  # delivered already


@LOCAL
def test_the_endpoint_list_and_deliveries_keep_a_constant_number_of_queries(
        security_client, receiver, django_assert_max_num_queries):
    for index in range(3):
        pk = create(security_client, receiver, name=f"siem-{index}").json()["id"]
        security_client.post(f"{LIST}{pk}/test/")
        security_client.post(f"{LIST}{pk}/test/")
    with django_assert_max_num_queries(8):
        assert len(security_client.get(LIST).json()) == 3
    with django_assert_max_num_queries(8):
        assert len(security_client.get(f"{LIST}{pk}/deliveries/").json()["results"]) == 2


def test_the_schema_documents_the_webhook_api():
    from django.test import Client

    schema = Client().get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "403" in paths["/api/v1/monitoring/webhooks/"]["post"]["responses"]
    assert {"/api/v1/monitoring/webhooks/{id}/test/", "/api/v1/monitoring/webhooks/{id}/deliveries/",
            "/api/v1/monitoring/webhooks/deliveries/{id}/retry/"} <= set(paths)


@LOCAL
def test_another_security_engineer_cannot_repoint_read_or_use_an_endpoint(security_client, receiver, admin_user):
    """An endpoint acts with its creator's visibility (its payloads name the datasets its creator
    may see): another security engineer, who may see less, may not re-point it to a URL of theirs,
    read its deliveries' payloads, test it, retry its deliveries or remove it. An admin may."""
    pk = create(security_client, receiver).json()["id"]
    tested = security_client.post(f"{LIST}{pk}/test/").json()
    other = APIClient()
    other.force_login(UserFactory(username="sec2", roles=["security_engineer"]))
    assert other.get(LIST).json() == []
    assert other.get(f"{LIST}{pk}/").status_code == 404
    assert other.patch(f"{LIST}{pk}/", {"url": "http://127.0.0.1:9/mine"}, format="json").status_code == 404
    assert other.get(f"{LIST}{pk}/deliveries/").status_code == 404
    assert other.post(f"{LIST}{pk}/test/").status_code == 404
    assert other.post(f"{LIST}deliveries/{tested['id']}/retry/").status_code == 404
    assert other.delete(f"{LIST}{pk}/").status_code == 404
    endpoint = WebhookEndpoint.objects.get(pk=pk)
    assert endpoint.url == receiver.url
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1
    assert not AuditEvent.objects.filter(action__startswith="webhook.", actor__username="sec2").exists()
    admin = APIClient()
    admin.force_login(admin_user)
    assert [row["id"] for row in admin.get(LIST).json()] == [pk]
    assert len(admin.get(f"{LIST}{pk}/deliveries/").json()["results"]) == 1


@LOCAL
def test_the_services_refuse_another_engineers_endpoint(db):
    from catalog.errors import ApplicationError
    from monitoring.webhooks import webhook_endpoint_remove, webhook_endpoint_update

    owner = UserFactory(username="sec-owner", roles=["security_engineer"])
    other = UserFactory(username="sec-other", roles=["security_engineer"])
    endpoint = WebhookEndpoint.objects.create(name="siem", url="https://hooks.example.com/x", min_severity=3,
                                              created_by=owner)
    with pytest.raises(ApplicationError):
        webhook_endpoint_update(principal=other, endpoint=endpoint, url="http://127.0.0.1:9/mine")
    with pytest.raises(ApplicationError):
        webhook_endpoint_remove(principal=other, endpoint=endpoint)
    endpoint.refresh_from_db()
    assert endpoint.url == "https://hooks.example.com/x"
