"""Raising alerts (one per rule and subject, evidence counted once) and working them (audited)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from access.models import AuditEvent
from catalog.errors import ApplicationError
from monitoring.alerts import (Evidence, Finding, alert_acknowledge, alert_assign, alert_raise, alert_reopen,
                               alert_resolve, alert_snooze)
from monitoring.models import Alert, AlertStatus, Severity
from monitoring.signals import alert_raised
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=False)


def finding(*keys, severity=Severity.HIGH, subject="user:1"):
    now = timezone.now()
    return Finding(rule="test_rule", subject_key=subject, severity=severity, title="Something odd",
                   summary="Read more than usual.", suggested_action="Ask them why.",
                   evidence=[Evidence(key=key, occurred_at=now) for key in keys])


def test_one_alert_per_rule_and_subject_and_evidence_counts_once(django_capture_on_commit_callbacks):
    raised = []
    alert_raised.connect(lambda sender, alert, escalated, **kw: raised.append((alert.pk, escalated)), weak=False,
                         dispatch_uid="test-alerts")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            alert, new = alert_raise(finding("access:1", "access:2"))
        assert new == 2 and alert.count == 2 and raised == [(alert.pk, False)]
        with django_capture_on_commit_callbacks(execute=True):
            again, new = alert_raise(finding("access:2", "access:3"))  # access:2 delivered twice
        assert again.pk == alert.pk and new == 1 and again.count == 3
        assert raised == [(alert.pk, False)]  # counting up does not notify again
        with django_capture_on_commit_callbacks(execute=True):
            worse, _ = alert_raise(finding("access:4", severity=Severity.CRITICAL))
        assert worse.severity == Severity.CRITICAL and raised[-1] == (alert.pk, True)
        assert alert_raise(finding("access:4"))[1] == 0
        assert Alert.objects.count() == 1
        alert_raise(finding("access:5", subject="user:2"))
        assert Alert.objects.count() == 2
    finally:
        alert_raised.disconnect(dispatch_uid="test-alerts")


def test_the_workflow_is_for_security_engineers_and_audited():
    security = UserFactory(username="sec", roles=["security_engineer"])
    other = UserFactory(username="sam", roles=["security_engineer"])
    analyst = UserFactory(username="ann", roles=["data_analyst"])
    alert, _ = alert_raise(finding("access:1"))
    with pytest.raises(ApplicationError):
        alert_acknowledge(principal=analyst, alert=alert)
    with pytest.raises(ApplicationError):
        alert_assign(principal=security, alert=alert, assignee=analyst)
    alert = alert_acknowledge(principal=security, alert=alert)
    alert = alert_assign(principal=security, alert=alert, assignee=other)
    with pytest.raises(ApplicationError):
        alert_snooze(principal=other, alert=alert, until=timezone.now() - timedelta(minutes=1))
    alert = alert_snooze(principal=other, alert=alert, until=timezone.now() + timedelta(days=1))
    with pytest.raises(ApplicationError) as error:
        alert_resolve(principal=other, alert=alert, note=" ")
    assert "note" in error.value.extra
    alert = alert_resolve(principal=other, alert=alert, note="Asked: a quarterly audit, ticket OPS-7.")
    assert alert.status == AlertStatus.RESOLVED
    fresh, _ = alert_raise(finding("access:9"))  # the same subject again: a new alert
    assert fresh.pk != alert.pk
    with pytest.raises(ApplicationError):
        alert_reopen(principal=security, alert=alert)  # the newer one is open
    actions = list(AuditEvent.objects.filter(object_type="alert").order_by("id").values_list("action", flat=True))
    assert actions == ["alert.acknowledged", "alert.assigned", "alert.snoozed", "alert.resolved"]


def test_nobody_works_an_alert_about_themselves():
    """A security engineer whose own reads, break-glass or approvals raised an alert may read it
    but not acknowledge, snooze, resolve, reopen or take it, nor be given it; a colleague may."""
    sam = UserFactory(username="sam", roles=["security_engineer"])
    colleague = UserFactory(username="sec", roles=["security_engineer"])
    about_sam = finding("access:1", subject=f"user:{sam.pk}")
    about_sam.user_id = sam.pk
    alert, _ = alert_raise(about_sam)
    until = timezone.now() + timedelta(days=1)
    for change in (lambda: alert_acknowledge(principal=sam, alert=alert),
                   lambda: alert_snooze(principal=sam, alert=alert, until=until),
                   lambda: alert_resolve(principal=sam, alert=alert, note="Fine, it was me."),
                   lambda: alert_assign(principal=sam, alert=alert, assignee=sam)):
        with pytest.raises(ApplicationError, match="about you"):
            change()
    with pytest.raises(ApplicationError) as error:
        alert_assign(principal=colleague, alert=alert, assignee=sam)
    assert "assignee" in error.value.extra
    alert.refresh_from_db()
    assert (alert.status, alert.assignee_id, alert.snoozed_until) == (AlertStatus.OPEN, None, None)
    assert not AuditEvent.objects.filter(object_type="alert").exists()
    alert = alert_resolve(principal=colleague, alert=alert, note="Asked sam: the quarterly audit.")
    with pytest.raises(ApplicationError, match="about you"):
        alert_reopen(principal=sam, alert=alert)


def test_both_people_of_a_rubber_stamp_pair_are_kept_off_its_alert():
    requester = UserFactory(username="ria", roles=["data_analyst"])
    approver = UserFactory(username="apo", roles=["security_engineer"])
    pair = finding("audit:1", subject=f"pair:{requester.pk}:{approver.pk}")
    pair.rule, pair.user_id = "rubber_stamp", requester.pk
    alert, _ = alert_raise(pair)
    with pytest.raises(ApplicationError, match="about you"):
        alert_resolve(principal=approver, alert=alert, note="Looks fine to me.")
    assert Alert.objects.get(pk=alert.pk).status == AlertStatus.OPEN
