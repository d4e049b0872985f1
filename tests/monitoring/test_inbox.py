"""The alert inbox and an alert's page: who sees them, the URL's filters, constant queries, and
the workflow forms (inline errors, audited changes through monitoring/alerts.py)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from access.models import AuditEvent
from monitoring.alerts import Evidence, Finding, alert_raise, alert_snooze
from monitoring.models import Alert, AlertStatus, Severity
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def security(db):
    return UserFactory(username="sec", roles=["security_engineer"])


@pytest.fixture
def colleague(db):
    return UserFactory(username="sam", roles=["security_engineer"])


@pytest.fixture
def analyst(db):
    return UserFactory(username="ann", roles=["data_analyst"], warehouse_role="ann_ro")


@pytest.fixture
def dataset(db):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    store = StoreFactory(name="pg-inbox", kind="transactional", platform="postgresql", environment="prod")
    return dataset_create(principal=registrar, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INTEGER"), column_payload("national_id", sensitivity="Restricted")])


def raise_alert(rule="volume_baseline", subject="user:1", severity=Severity.HIGH, title="Burst of Restricted reads",
                user=None, datasets=(), keys=("access:1",)):
    now = timezone.now()
    alert, _ = alert_raise(Finding(
        rule=rule, subject_key=subject, severity=severity, title=title,
        summary="ann_ro read 40 Restricted rows in an hour; her baseline is 2 an hour.",
        suggested_action="Ask ann what the reads were for; revoke the grant if there was no reason.",
        evidence=[Evidence(key=key, occurred_at=now - timedelta(minutes=index), description=f"read {key}")
                  for index, key in enumerate(keys)],
        user_id=user.pk if user else None, dataset_ids=[d.pk for d in datasets]))
    return alert


def test_the_inbox_is_a_404_for_people_who_do_not_work_alerts(client, analyst, security):
    alert = raise_alert(user=analyst)
    client.force_login(analyst)
    assert client.get(reverse("monitoring:alert-list")).status_code == 404
    assert client.get(reverse("monitoring:alert-detail", args=[alert.pk])).status_code == 404
    response = client.post(reverse("monitoring:alert-resolve", args=[alert.pk]), {"resolve-note": "mine"})
    assert response.status_code == 404
    assert Alert.objects.get(pk=alert.pk).status == AlertStatus.OPEN
    assert "Alerts" not in client.get(reverse("catalog:dataset-list")).text


def test_the_inbox_shows_open_unsnoozed_alerts_by_default_and_filters_in_the_url(client, security, analyst, dataset):
    burst = raise_alert(user=analyst, datasets=[dataset])
    critical = raise_alert(rule="audit_chain_broken", subject="audit", severity=Severity.CRITICAL,
                           title="The audit chain fails verification")
    resolved = raise_alert(rule="read_not_allowed", subject="role:etl", title="Read outside any grant")
    resolved.status = AlertStatus.RESOLVED
    resolved.save()
    snoozed = raise_alert(rule="unusual_time_or_place", subject="user:9", title="Read at 3am")
    alert_snooze(principal=security, alert=snoozed, until=timezone.now() + timedelta(hours=1))
    client.force_login(security)

    page = client.get(reverse("monitoring:alert-list"))
    assert page.status_code == 200
    assert {a.pk for a in page.context["alerts"]} == {critical.pk, burst.pk}
    assert "shop.customers" in page.text and 'sev-critical' in page.text and "Burst of Restricted reads" in page.text

    def shown(**params):
        response = client.get(reverse("monitoring:alert-list"), params)
        assert response.status_code == 200, response.context["form"].errors
        return {a.pk for a in response.context["alerts"]}

    assert shown(severity="critical") == {critical.pk}
    assert shown(status="resolved") == {resolved.pk}
    assert shown(snoozed="true") == {snoozed.pk}
    assert shown(status="all", snoozed="any") == {burst.pk, critical.pk, resolved.pk, snoozed.pk}
    assert shown(rule="volume_baseline") == {burst.pk}
    assert shown(q="audit chain") == {critical.pk}
    assert shown(assignee="none") == {burst.pk, critical.pk}
    burst.assignee = security
    burst.save()
    assert shown(assignee="me") == {burst.pk}
    assert shown(assignee="sec") == {burst.pk}
    bad = client.get(reverse("monitoring:alert-list"), {"severity": "apocalyptic"})
    assert bad.status_code == 400 and "severity" in bad.context["form"].errors


def test_an_empty_inbox_says_what_it_shows(client, security):
    client.force_login(security)
    page = client.get(reverse("monitoring:alert-list"))
    assert "No open alerts" in page.text and "not snoozed" in page.text


def test_the_inbox_costs_the_same_queries_for_2_or_30_alerts(client, security, analyst, dataset):
    client.force_login(security)

    def fill(start, count):
        for index in range(start, start + count):
            raise_alert(subject=f"user:{index}", user=analyst, datasets=[dataset], keys=(f"access:{index}",))

    fill(0, 2)
    with CaptureQueriesContext(connection) as few:
        assert len(client.get(reverse("monitoring:alert-list")).context["alerts"]) == 2
    fill(2, 28)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(reverse("monitoring:alert-list")).context["alerts"]) == 30
    assert len(many) == len(few)


def test_the_nav_counts_open_alerts_for_security_engineers(client, security, analyst):
    raise_alert(user=analyst)
    raise_alert(subject="user:2", user=analyst)
    acknowledged = raise_alert(subject="user:3", user=analyst)
    acknowledged.status = AlertStatus.ACKNOWLEDGED
    acknowledged.save()
    client.force_login(security)
    assert 'href="/monitoring/alerts/"' in client.get(reverse("catalog:dataset-list")).text
    count = client.get(reverse("monitoring:alert-count"))
    assert '<span class="nav-count"' in count.text and ">2</span>" in count.text
    client.force_login(analyst)
    assert "nav-count" not in client.get(reverse("monitoring:alert-count")).text


def test_the_alert_page_shows_evidence_history_and_works_the_alert(client, security, colleague, analyst, dataset):
    alert = raise_alert(user=analyst, datasets=[dataset])
    client.force_login(security)
    url = reverse("monitoring:alert-detail", args=[alert.pk])
    page = client.get(url)
    assert page.status_code == 200 and "Ask ann what the reads were for" in page.text and "read access:1" in page.text

    assert client.post(reverse("monitoring:alert-acknowledge", args=[alert.pk])).status_code == 302
    assert client.post(reverse("monitoring:alert-assign", args=[alert.pk]), {"assign-assignee": "sam"}).status_code == 302
    refused = client.post(reverse("monitoring:alert-assign", args=[alert.pk]), {"assign-assignee": "ann"})
    assert refused.status_code == 400 and "assignee" in refused.context["assign_form"].errors
    empty = client.post(reverse("monitoring:alert-resolve", args=[alert.pk]), {"resolve-note": "  "})
    assert empty.status_code == 400 and "Say how the alert was resolved." in empty.text
    assert 'aria-invalid="true"' in empty.text
    too_far = client.post(reverse("monitoring:alert-snooze", args=[alert.pk]),
                          {"snooze-until": (timezone.localtime() + timedelta(days=40)).strftime("%Y-%m-%dT%H:%M")})
    assert too_far.status_code == 400 and "At most 30 days ahead." in too_far.text
    assert client.post(reverse("monitoring:alert-snooze", args=[alert.pk]), {"snooze-preset": "1d"}).status_code == 302
    assert Alert.objects.get(pk=alert.pk).snoozed_until > timezone.now() + timedelta(hours=23)
    assert client.post(reverse("monitoring:alert-reopen", args=[alert.pk]), {"reopen-note": "still odd"}).status_code == 302
    done = client.post(reverse("monitoring:alert-resolve", args=[alert.pk]),
                       {"resolve-note": "Ann ran the quarterly fraud check."})
    assert done.status_code == 302

    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.assignee == colleague
    actions = list(AuditEvent.objects.filter(object_type="alert", object_id=str(alert.pk)).order_by("id")
                   .values_list("action", flat=True))
    assert actions == ["alert.acknowledged", "alert.assigned", "alert.snoozed", "alert.reopened", "alert.resolved"]
    page = client.get(url)
    for action in actions:
        assert action in page.text
    assert "Ann ran the quarterly fraud check." in page.text


def test_htmx_gets_the_form_errors_in_place(client, security, analyst):
    alert = raise_alert(user=analyst)
    client.force_login(security)
    response = client.post(reverse("monitoring:alert-resolve", args=[alert.pk]), {"resolve-note": ""},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'id="alert-page"' in response.text
    assert "Say how the alert was resolved." in response.text
    assert Alert.objects.get(pk=alert.pk).status == AlertStatus.OPEN
