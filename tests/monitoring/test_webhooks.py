"""Where alerts go: webhook deliveries against a real local HTTP receiver that checks the signature,
retries with backoff, URL vetting, Slack and Teams bodies, alert mail, and a catalog event from
the real registration service reaching a subscribed endpoint."""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from access.models import AuditEvent
from catalog.services import dataset_register
from monitoring.alerts import Evidence, Finding, alert_raise
from monitoring.models import Alert, DeliveryStatus, Severity, WebhookDelivery, WebhookKind
from monitoring.webhook_deliveries import webhook_deliveries_due as deliveries_due
from monitoring.webhook_deliveries import webhook_delivery_attempt
from monitoring.webhook_tasks import webhook_deliver, webhook_deliveries_due, webhook_events_scan
from monitoring.webhooks import TargetRefused, webhook_endpoint_create, webhook_url_vet
from tests.factories import UserFactory
from tests.monitoring.receivers import start_receiver, verify

pytestmark = pytest.mark.django_db

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


def endpoint_for(security, receiver, *, kind=WebhookKind.GENERIC, min_severity="Medium", event_types=(), name="hook"):
    endpoint, secret = webhook_endpoint_create(principal=security, name=name, url=receiver.url, kind=kind,
                                               min_severity=min_severity, event_types=list(event_types))
    receiver.secret = secret
    return endpoint, secret


def finding(key="access:1", severity=Severity.HIGH, subject="user:1"):
    return Finding(rule="test_rule", subject_key=subject, severity=severity, title="Burst of Restricted reads",
                   summary="Read 40 Restricted columns in an hour; usually 2.", suggested_action="Ask them why.",
                   evidence=[Evidence(key=key, occurred_at=timezone.now())])


@LOCAL
def test_an_alert_reaches_a_real_receiver_signed_and_verifiable(security, receiver, django_capture_on_commit_callbacks):
    endpoint, secret = endpoint_for(security, receiver)
    with django_capture_on_commit_callbacks(execute=True):  # also runs the notifier's own (the delivery task)
        alert, _ = alert_raise(finding())
    [request] = receiver.received
    assert request.signature_valid is True
    assert request.path == "/hooks/catalog"
    body = request.json
    assert set(body) == {"id", "type", "occurredAt", "data"}
    assert body["type"] == "alert.raised" and body["data"]["severity"] == "High"
    assert body["data"]["url"] == f"https://catalog.example.com/monitoring/alerts/{alert.pk}/"
    assert request.headers["X-Catalog-Event"] == "alert.raised"
    # A tampered body or another secret does not verify.
    assert not verify(secret, request.headers, request.body + b" ")
    assert not verify("whsec_other", request.headers, request.body)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1 and delivery.last_status_code == 200


@LOCAL
def test_a_receiver_that_fails_then_recovers_is_retried_with_backoff(security, receiver):
    endpoint, _ = endpoint_for(security, receiver)
    receiver.statuses = [500, 503]
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="alert.raised", event_id="alert:1:30",
                                              payload={"id": "alert:1:30", "type": "alert.raised",
                                                       "occurredAt": "2026-01-01T00:00:00Z", "data": {}},
                                              next_attempt_at=timezone.now())
    assert webhook_deliver(delivery.pk)["status"] == "pending"
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code) == (1, 500)
    first_wait = delivery.next_attempt_at - timezone.now()
    assert 25 <= first_wait.total_seconds() <= 30
    assert webhook_deliver(delivery.pk) == {"skipped": True}  # not due yet: nothing sent
    assert len(receiver.received) == 1

    later = delivery.next_attempt_at
    assert delivery.pk not in deliveries_due(now=later - timedelta(seconds=1))
    assert delivery.pk in deliveries_due(now=later)
    delivery = webhook_delivery_attempt(delivery_id=delivery.pk, now=later)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 2, 503)
    assert "HTTP 503" in delivery.last_error
    assert (delivery.next_attempt_at - later).total_seconds() == 120

    delivery = webhook_delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered", 3, 200, "")
    assert [r.json["id"] for r in receiver.received] == ["alert:1:30"] * 3  # same event id: receivers deduplicate
    assert all(r.signature_valid for r in receiver.received)


@LOCAL
@override_settings(MONITORING_WEBHOOK_MAX_ATTEMPTS=2)
def test_a_delivery_is_given_up_after_the_last_attempt_and_can_be_retried(security, receiver):
    endpoint, _ = endpoint_for(security, receiver)
    receiver.statuses = [500, 500]
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="webhook.test", event_id="t1",
                                              payload={"id": "t1", "type": "webhook.test", "occurredAt": "x",
                                                       "data": {}}, next_attempt_at=timezone.now())
    delivery = webhook_delivery_attempt(delivery_id=delivery.pk)
    delivery = webhook_delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (DeliveryStatus.FAILED, 2, None)
    assert webhook_deliveries_due() == 0  # nothing pending is due: the beat leaves it alone


@override_settings(CATALOG_BASE_URL="https://catalog.example.com", ALLOWED_HOSTS=["catalog.example.com", "testserver"])
@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:9/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.0.10/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://localhost:8000/hook", "resolves to 127.0.0.1"),
    ("https://catalog.example.com/api/v1/datasets/", "catalog's own host"),
    ("ftp://example.com/hook", "http:// and https://"),
    # the same addresses in other spellings
    ("http://2130706433/hook", "loopback"),
    ("http://0177.0.0.1/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://[::ffff:a9fe:a9fe]/latest/meta-data", "link-local"),
    # 6to4 and Teredo addresses carry an IPv4 address, checked as such
    ("http://[2002:7f00:1::]/hook", "loopback"),
    ("http://[2002:a9fe:a9fe::1]/latest/meta-data", "link-local"),
    ("http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook", "a private"),
    ("https://user:pw@example.com/hook", "No user name or password"),
])
def test_urls_to_the_catalog_loopback_or_private_addresses_are_refused(url, reason):
    with pytest.raises(TargetRefused) as refusal:
        webhook_url_vet(url)
    assert reason in str(refusal.value)


@override_settings(MONITORING_WEBHOOK_ALLOWED_PRIVATE=["10.1.0.0/16", "localhost"])
def test_the_operator_can_allow_private_networks_and_hosts():
    assert webhook_url_vet("http://10.1.2.3:8080/hook").addresses == ("10.1.2.3",)
    assert "127.0.0.1" in webhook_url_vet("http://localhost:8000/hook").addresses
    with pytest.raises(TargetRefused):
        webhook_url_vet("http://10.2.0.1/hook")  # outside the listed network


def test_a_url_allowed_when_saved_is_vetted_again_at_delivery(security, receiver):
    with LOCAL:
        endpoint, _ = endpoint_for(security, receiver)
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="webhook.test", event_id="t2",
                                              payload={"id": "t2", "type": "webhook.test", "occurredAt": "x",
                                                       "data": {}}, next_attempt_at=timezone.now())
    delivery = webhook_delivery_attempt(delivery_id=delivery.pk)  # the operator removed the exception since
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_error.startswith("Refused: 127.0.0.1 is")
    assert receiver.received == []
    assert "/hooks/catalog" not in delivery.last_error  # never the URL's path


@LOCAL
def test_slack_and_teams_endpoints_get_their_own_shapes(security, receiver, django_capture_on_commit_callbacks):
    from monitoring.webhook_deliveries import webhook_endpoint_test

    slack, _ = endpoint_for(security, receiver, kind=WebhookKind.SLACK, name="slack")
    teams, _ = endpoint_for(security, receiver, kind=WebhookKind.TEAMS, name="teams")
    assert webhook_endpoint_test(principal=security, endpoint=slack).status == DeliveryStatus.DELIVERED
    assert webhook_endpoint_test(principal=security, endpoint=teams).status == DeliveryStatus.DELIVERED
    slack_body, teams_body = (r.json for r in receiver.received)
    assert slack_body["text"].startswith("Test event from the catalog for slack")
    assert [block["type"] for block in slack_body["blocks"]] == ["header", "section", "context", "actions"]
    assert slack_body["blocks"][-1]["elements"][0]["url"] == "https://catalog.example.com/monitoring/webhooks/"
    assert teams_body["type"] == "message"
    [attachment] = teams_body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["body"][0]["type"] == "RichTextBlock"
    assert card["body"][0]["inlines"][0]["text"].startswith("Test event from the catalog for teams")
    assert card["actions"][0]["type"] == "Action.OpenUrl"


@LOCAL
def test_alert_mail_goes_to_security_engineers_and_admins_only(security, receiver, django_capture_on_commit_callbacks):
    UserFactory(username="root", is_superuser=True)
    UserFactory(username="ann", roles=["data_analyst"])
    UserFactory(username="quiet", roles=["security_engineer"], email="")
    UserFactory(username="gone", roles=["security_engineer"], is_active=False)
    endpoint_for(security, receiver, min_severity="Critical", name="critical-only")
    with django_capture_on_commit_callbacks(execute=True):
        alert, _ = alert_raise(finding())
    assert sorted(message.to[0] for message in mail.outbox) == ["root@example.com", "sec@example.com"]
    message = mail.outbox[0]
    assert message.subject == "[High] Burst of Restricted reads"
    assert "Read 40 Restricted columns in an hour" in message.body and "Ask them why." in message.body
    assert f"https://catalog.example.com/monitoring/alerts/{alert.pk}/" in message.body
    assert not WebhookDelivery.objects.exists()  # High is below the endpoint's Critical
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        alert_raise(finding(key="access:2", severity=Severity.LOW, subject="user:2"))
    assert mail.outbox == []  # below MONITORING_ALERT_MAIL_MIN_SEVERITY (Medium)


@LOCAL
def test_a_breaking_change_through_registration_reaches_a_subscribed_endpoint(
        security, receiver, store, registrar, django_capture_on_commit_callbacks):
    endpoint_for(security, receiver, min_severity=None,
                 event_types=["dataset.breaking_change", "column.restricted_added"])
    columns = [{"name": "ReviewID", "description": "Review", "mode": "REQUIRED", "type": "STRING",
                "originatingSource": "transactional:Reviews", "sensitivity": "Regular", "protection": "None"},
               {"name": "Score", "description": "Stars", "mode": "NULLABLE", "type": "INTEGER",
                "originatingSource": "transactional:Reviews", "sensitivity": "Public", "protection": "None"}]
    payload = {"name": "marketing.review_sentiment", "store": "analytics", "registrationTime": "1623167711",
               "registeredBy": "ServiceAccount1", "description": "Reviews", "version": "1", "columns": columns}
    dataset, _ = dataset_register(principal=registrar, payload=payload)
    passport = {"name": "PassportNo", "description": "Identity document", "mode": "NULLABLE", "type": "STRING",
                "originatingSource": "transactional:Reviews", "sensitivity": "Restricted", "protection": "None"}
    dataset_register(principal=registrar, payload={**payload, "version": "2", "columns": [columns[0], passport]})
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_events_scan() == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_events_scan() == 0  # scanned again: nothing new, nothing sent twice
    bodies = {r.json["type"]: r.json for r in receiver.received}
    assert set(bodies) == {"dataset.breaking_change", "column.restricted_added"}
    breaking = bodies["dataset.breaking_change"]["data"]
    assert breaking["dataset"] == dataset.qualified_name and breaking["version"] == 2
    assert breaking["removedColumns"] == ["Score"]
    assert bodies["column.restricted_added"]["data"]["columns"] == ["PassportNo"]
    assert all(r.signature_valid for r in receiver.received)


@LOCAL
def test_an_endpoint_gets_no_event_about_a_dataset_its_creator_may_not_see(
        receiver, store, registrar, django_capture_on_commit_callbacks):
    from access.models import Role, RolePermission

    # A security engineer whose role sees nothing in prod (the store's environment).
    outsider = UserFactory(username="limited", roles=["security_engineer"])
    RolePermission.objects.filter(role=Role.objects.get(slug="security_engineer")).delete()
    endpoint_for(outsider, receiver, min_severity=None, event_types=["dataset.breaking_change"])
    columns = [{"name": "A", "type": "STRING", "mode": "NULLABLE", "sensitivity": "Regular", "protection": "None"},
               {"name": "B", "type": "STRING", "mode": "NULLABLE", "sensitivity": "Regular", "protection": "None"}]
    payload = {"name": "hidden.table", "store": "analytics", "version": "1", "columns": columns}
    dataset_register(principal=registrar, payload=payload)
    dataset_register(principal=registrar, payload={**payload, "version": "2", "columns": columns[:1]})
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_events_scan() == 0
    assert receiver.received == []


@LOCAL
def test_the_secret_is_sealed_and_never_in_the_audit_trail(security, receiver):
    endpoint, secret = endpoint_for(security, receiver)
    endpoint.refresh_from_db()
    assert secret.startswith("whsec_") and endpoint.secret_id
    assert secret.encode() not in bytes(endpoint.secret.ciphertext)
    event = AuditEvent.objects.get(action="webhook.created")
    text = json.dumps(event.details) + event.reason
    assert secret not in text and "/hooks/catalog" not in text
    assert event.details["url"] == f"http://127.0.0.1:{receiver.server.server_address[1]}/hooks/…"


@LOCAL
def test_an_approved_grant_and_a_new_violation_reach_subscribed_endpoints(
        security, receiver, registrar, store, django_capture_on_commit_callbacks):
    from access.grants import access_request_create, access_request_review
    from tests.factories import StoreFactory, column_payload, dataset_create, registration_payload

    endpoint_for(security, receiver, min_severity=None, event_types=["grant.approved", "violation.created"])
    owner = UserFactory(username="olga", roles=["data_engineer"])
    scientist = UserFactory(username="sara", roles=["data_scientist"])
    prod = StoreFactory(name="warehouse", environment="prod", platform="bigquery")
    customers = dataset_create(principal=registrar, store=prod, name="crm.customers",
                               columns=[column_payload("customer_id", sensitivity="Regular"),
                                        column_payload("email", sensitivity="Sensitive")], owners=["olga"])
    request = access_request_create(principal=scientist, dataset=customers, level="read", duration=4,
                                    justification="Investigating churn for the Q3 review", ticket="SEC-1234")
    access_request_review(principal=owner, request=request, approve=True, reason="Looks right")
    appdb = StoreFactory(name="appdb", kind="transactional", platform="postgresql")
    dataset_register(principal=registrar, payload=registration_payload(
        store=appdb, name="public.reviews", columns=[column_payload("ReviewID", sensitivity="Sensitive")]))
    dataset_register(principal=registrar, payload=registration_payload(
        store=store, name="marketing.review_sentiment",
        columns=[column_payload("ReviewID", originatingSource="transactional:Reviews", sensitivity="Public")]))
    with django_capture_on_commit_callbacks(execute=True):
        webhook_events_scan()
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_events_scan() == 0
    bodies = {r.json["type"]: r.json["data"] for r in receiver.received}
    assert set(bodies) == {"grant.approved", "violation.created"}
    assert (bodies["grant.approved"]["user"], bodies["grant.approved"]["dataset"]) == ("sara", "warehouse.crm.customers")
    assert bodies["violation.created"]["column"] == "ReviewID"
    assert (bodies["violation.created"]["declaredSensitivity"], bodies["violation.created"]["unprotectedInflow"]) == (
        "Public", "Sensitive")


@LOCAL
def test_a_sign_in_name_typed_by_anyone_cannot_make_links_or_mentions_in_slack(security, receiver,
                                                                                django_capture_on_commit_callbacks):
    """Failed sign-ins need no account: their name lands in a probing alert's title and summary,
    which go to Slack. Slack's mrkdwn would make ``<https://…|…>`` a link and ``<!channel>`` a
    mention of everyone; the catalog escapes them."""
    from access.signin import signin_failure_record
    from monitoring.detectors import detect_all

    endpoint_for(security, receiver, kind=WebhookKind.SLACK, name="slack")
    endpoint_for(security, receiver, kind=WebhookKind.TEAMS, name="teams")
    crafted = "<!channel> <https://evil.example/reset|Reset your password> & more [Verify](https://evil.example/)"
    for _ in range(6):
        signin_failure_record(username=crafted, remote_addr="198.51.100.9")
    with django_capture_on_commit_callbacks(execute=True):
        detect_all()
    assert Alert.objects.filter(rule="probing").exists()
    bodies = {("teams" if "attachments" in r.json else "slack"): r.json for r in receiver.received}
    body = bodies["slack"]
    texts = [body["text"]] + [block["text"]["text"] for block in body["blocks"] if block["type"] == "section"]
    assert any("&lt;!channel&gt; &lt;https://evil.example/reset|reset your password&gt; &amp; more" in t for t in texts)
    for text in texts:
        assert "<!channel>" not in text and "<https://evil.example" not in text
    # Teams: a TextBlock renders Markdown ([text](url) is a link); the alert's words are text runs.
    card = bodies["teams"]["attachments"][0]["content"]
    markdown = [block for block in card["body"] if block["type"] == "TextBlock"]
    assert not any("evil.example" in block["text"] for block in markdown)
    runs = [run["text"] for block in card["body"] if block["type"] == "RichTextBlock" for run in block["inlines"]]
    assert any("[verify](https://evil.example/)" in run for run in runs)


def test_a_sign_in_name_with_a_line_break_cannot_stop_the_alert_mail(security, django_capture_on_commit_callbacks):
    """A name typed at the sign-in page ends up in the probing alert's title, the mail's subject. A
    line break in a subject makes Django refuse the whole batch (BadHeaderError): whoever probes
    would silence the mail about their own probing. The subject is one line, whatever the title."""
    from access.signin import signin_failure_record
    from monitoring.detectors import detect_all

    for _ in range(5):
        signin_failure_record(username="probe\r\nBcc: x@evil.example", remote_addr="198.51.100.10")
    with django_capture_on_commit_callbacks(execute=True):
        detect_all()
    assert Alert.objects.filter(rule="probing").exists()
    [message] = mail.outbox
    assert message.to == ["sec@example.com"] and message.bcc == []
    assert "\n" not in message.subject and "\r" not in message.subject
    assert "probe bcc: x@evil.example" in message.subject


@LOCAL
def test_an_endpoint_of_someone_who_left_the_security_team_gets_no_catalog_events(
        receiver, registrar, django_capture_on_commit_callbacks):
    from access.grants import access_request_create, access_request_review
    from access.models import Role
    from tests.factories import StoreFactory, column_payload, dataset_create

    # A security engineer who is also a data engineer makes an endpoint, then leaves the security
    # team: still active, still seeing the dataset as a data engineer, but no longer managing webhooks.
    mover = UserFactory(username="moved", roles=["security_engineer", "data_engineer"])
    endpoint_for(mover, receiver, min_severity="Low", event_types=["grant.approved", "dataset.breaking_change"])
    mover.groups.remove(Role.objects.get(slug="security_engineer").group)
    owner = UserFactory(username="olga", roles=["data_engineer"])
    scientist = UserFactory(username="sara", roles=["data_scientist"])
    prod = StoreFactory(name="warehouse", environment="prod", platform="bigquery")
    customers = dataset_create(principal=registrar, store=prod, name="crm.customers",
                               columns=[column_payload("customer_id", sensitivity="Regular"),
                                        column_payload("email", sensitivity="Sensitive")], owners=["olga"])
    from catalog.selectors import dataset_visible
    from access.models import User
    assert dataset_visible(user=User.objects.get(pk=mover.pk)).filter(pk=customers.pk).exists()
    request = access_request_create(principal=scientist, dataset=customers, level="read", duration=4,
                                    justification="Investigating churn for the Q3 review", ticket="SEC-1234")
    access_request_review(principal=owner, request=request, approve=True, reason="Looks right")
    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_events_scan() == 0
    assert receiver.received == [] and not WebhookDelivery.objects.exists()
