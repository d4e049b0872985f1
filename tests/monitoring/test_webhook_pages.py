"""The webhooks page: for security engineers and admins, errors naming fields, the secret shown
once, deliveries with status badges, step-up before saving."""

import pytest
from django.test import Client, override_settings

from access.models import AuditEvent
from monitoring.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from monitoring.webhooks import webhook_endpoint_create
from tests.factories import UserFactory
from tests.monitoring.receivers import start_receiver

pytestmark = pytest.mark.django_db

PAGE = "/monitoring/webhooks/"
LOCAL = override_settings(MONITORING_WEBHOOK_ALLOWED_PRIVATE=["127.0.0.1/32"],
                          CATALOG_BASE_URL="https://catalog.example.com")


@pytest.fixture
def receiver():
    receiver = start_receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def security(db):
    return UserFactory(username="sec", roles=["security_engineer"])


@pytest.fixture
def security_page(security):
    client = Client()
    client.force_login(security)
    return client


@LOCAL
def test_adding_a_webhook_shows_its_secret_once(security_page, receiver):
    answer = security_page.post(PAGE, {"name": "siem", "url": receiver.url, "kind": "generic",
                                       "min_severity": "High", "event_types": ["grant.approved"], "active": "on"})
    assert answer.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    text = answer.content.decode()
    secret = text.split('class="secret-once" tabindex="0">')[1].split("<")[0]
    assert secret.startswith("whsec_")
    again = security_page.get(PAGE).content.decode()
    assert secret not in again and "/hooks/catalog" not in again and f"/monitoring/webhooks/{endpoint.pk}/" in again
    assert secret not in security_page.get(f"{PAGE}{endpoint.pk}/").content.decode()


@override_settings(CATALOG_BASE_URL="https://catalog.example.com")
def test_a_refused_url_is_named_on_its_field_and_nothing_is_saved(security_page):
    answer = security_page.post(PAGE, {"name": "internal", "url": "http://10.0.0.8/hook", "kind": "generic",
                                       "min_severity": "High"})
    assert answer.status_code == 400
    form = answer.context["form"]
    assert "private" in form.errors["url"][0]
    assert form.fields["url"].widget.attrs.get("autofocus")
    assert 'id="id_url_error"' in answer.content.decode()
    answer = security_page.post(PAGE, {"name": "", "url": "https://catalog.example.com/x", "kind": "generic"})
    assert set(answer.context["form"].errors) >= {"name", "url"}
    assert not WebhookEndpoint.objects.exists() and not AuditEvent.objects.filter(action="webhook.created").exists()


@LOCAL
def test_deliveries_are_listed_with_status_badges_and_a_filter_in_the_url(security, security_page, receiver,
                                                                           django_assert_max_num_queries):
    endpoint, _ = webhook_endpoint_create(principal=security, name="siem", url=receiver.url, min_severity="High")
    for index, status in enumerate([DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.PENDING] * 3):
        WebhookDelivery.objects.create(endpoint=endpoint, event_type="alert.raised", event_id=f"alert:{index}:30",
                                       payload={}, status=status, attempts=1, last_status_code=500,
                                       last_error="HTTP 500 Internal Server Error")
    with django_assert_max_num_queries(14):
        page = security_page.get(f"{PAGE}{endpoint.pk}/").content.decode()
    assert page.count('class="badge delivery-failed"') == 3 and page.count('class="badge delivery-delivered"') == 3
    failed = security_page.get(f"{PAGE}{endpoint.pk}/?status=failed").content.decode()
    assert failed.count('class="badge delivery-failed"') == 3 and "delivery-delivered" not in failed
    listing = security_page.get(PAGE).content.decode()
    assert "3 failed" in listing and f"{PAGE}{endpoint.pk}/?status=failed" in listing


@LOCAL
def test_changing_keeps_the_url_unless_a_new_one_is_typed(security, security_page, receiver):
    endpoint, _ = webhook_endpoint_create(principal=security, name="siem", url=receiver.url, min_severity="High")
    answer = security_page.post(f"{PAGE}{endpoint.pk}/", {"name": "siem-prod", "url": "", "kind": "slack",
                                                          "min_severity": "Critical", "active": "on"})
    assert answer.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.url, endpoint.kind, endpoint.min_severity) == ("siem-prod", receiver.url, "slack", 40)


def test_people_who_do_not_work_alerts_get_a_403(reader):
    client = Client()
    client.force_login(reader)
    assert client.get(PAGE).status_code == 403


@pytest.mark.no_second_factor
@LOCAL
def test_adding_without_a_fresh_second_factor_goes_to_verify_first(security, receiver):
    client = Client()
    client.force_login(security)
    assert client.get(PAGE).status_code == 200
    answer = client.post(PAGE, {"name": "siem", "url": receiver.url, "kind": "generic", "min_severity": "High"})
    assert answer.status_code == 302 and "/verify/" in answer["Location"]
    assert not WebhookEndpoint.objects.exists()
