"""Alerts: raising them (detectors) and working them (the inbox and the API).

``alert_raise`` is the one way a detector opens or adds to an alert: one unresolved alert per
(rule, subject), evidence unique per (alert, evidence key), so an event handled twice counts
once. The workflow (acknowledge, assign, resolve with a note, snooze, reopen) is for whoever
may read the audit trail (security engineers and admins), and every change is audited.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from access.audit import audit_record
from access.policies import can_work_alerts
from catalog.errors import ApplicationError
from monitoring.models import Alert, AlertEvidence, AlertStatus, Severity
from monitoring.signals import alert_raised

NOTE_MAX = 2000


@dataclass
class Evidence:
    key: str  # 'access:<id>', 'audit:<id>' or the detector's own key
    occurred_at: datetime
    description: str = ""
    access_event_id: int | None = None
    audit_event_id: int | None = None


@dataclass
class Finding:
    """What a detector found about one subject."""

    rule: str
    subject_key: str
    severity: Severity
    title: str
    summary: str
    suggested_action: str
    evidence: list[Evidence]
    user_id: int | None = None
    database_role: str = ""
    dataset_ids: list[int] = field(default_factory=list)


def alert_raise(finding: Finding) -> tuple[Alert, int]:
    """Open the alert for (rule, subject) or add to the unresolved one; returns the alert and how
    many pieces of evidence were new (0: everything was already recorded, nothing changes).
    Must run inside the caller's transaction (the detectors' batch)."""
    if not finding.evidence:
        raise ValueError("a finding needs evidence")
    now = timezone.now()
    first = min(item.occurred_at for item in finding.evidence)
    last = max(item.occurred_at for item in finding.evidence)
    alert = (Alert.objects.select_for_update()
             .filter(rule=finding.rule, subject_key=finding.subject_key).exclude(status=AlertStatus.RESOLVED).first())
    created = alert is None
    if created:
        try:
            with transaction.atomic():  # a savepoint: another worker may open the same alert meanwhile
                alert = Alert.objects.create(
                    rule=finding.rule, subject_key=finding.subject_key, severity=finding.severity,
                    title=finding.title[:300], summary=finding.summary, suggested_action=finding.suggested_action,
                    count=0, first_seen_at=first, last_seen_at=last, user_id=finding.user_id,
                    database_role=finding.database_role[:128],
                )
        except IntegrityError:
            created = False
            alert = (Alert.objects.select_for_update().filter(rule=finding.rule, subject_key=finding.subject_key)
                     .exclude(status=AlertStatus.RESOLVED).get())
    rows = [
        AlertEvidence(alert=alert, evidence_key=item.key[:200], occurred_at=item.occurred_at,
                      description=item.description[:500], access_event_id=item.access_event_id,
                      audit_event_id=item.audit_event_id)
        for item in finding.evidence
    ]
    keys = [row.evidence_key for row in rows]
    known = set(AlertEvidence.objects.filter(alert=alert, evidence_key__in=keys).values_list("evidence_key", flat=True))
    new_rows = [row for row in rows if row.evidence_key not in known]
    if not new_rows:
        return alert, 0
    AlertEvidence.objects.bulk_create(new_rows, ignore_conflicts=True)
    escalated = not created and finding.severity > alert.severity
    updates = {"count": F("count") + len(new_rows), "last_seen_at": max(alert.last_seen_at, last)}
    if escalated:
        updates.update(severity=finding.severity, title=finding.title[:300], summary=finding.summary,
                       suggested_action=finding.suggested_action)
    if not created and alert.status == AlertStatus.ACKNOWLEDGED and escalated:
        updates["status"] = AlertStatus.OPEN  # worse than what was acknowledged: back in the inbox
    Alert.objects.filter(pk=alert.pk).update(**updates)
    if finding.dataset_ids:
        alert.datasets.add(*finding.dataset_ids)
    alert.refresh_from_db()
    if created or escalated:
        transaction.on_commit(lambda: alert_raised.send(sender=Alert, alert=alert, escalated=escalated))
    return alert, len(new_rows)


def _checked(principal, alert: Alert) -> None:
    if not can_work_alerts(principal):
        raise ApplicationError("Only security engineers and admins work alerts.")


def _note(note: str, name: str) -> str:
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ApplicationError(f"{name} is at most {NOTE_MAX} characters.", {name.lower(): [f"At most {NOTE_MAX} characters."]})
    return note


def _audit(principal, alert: Alert, *, action: str, reason: str = "", details: dict | None = None,
           remote_addr: str = "") -> None:
    audit_record(actor=principal, action=action, obj=alert, reason=reason,
                 details={"rule": alert.rule, "subject": alert.subject_key, **(details or {})},
                 remote_addr=remote_addr)


@transaction.atomic
def alert_acknowledge(*, principal, alert: Alert, remote_addr: str = "") -> Alert:
    _checked(principal, alert)
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status != AlertStatus.OPEN:
        raise ApplicationError(f"Only an open alert can be acknowledged; this one is {alert.get_status_display().lower()}.")
    alert.status, alert.acknowledged_at, alert.acknowledged_by = AlertStatus.ACKNOWLEDGED, timezone.now(), principal
    alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
    _audit(principal, alert, action="alert.acknowledged", remote_addr=remote_addr)
    return alert


@transaction.atomic
def alert_assign(*, principal, alert: Alert, assignee, remote_addr: str = "") -> Alert:
    """Assign to a security engineer or admin (``assignee=None`` unassigns)."""
    _checked(principal, alert)
    if assignee is not None and not can_work_alerts(assignee):
        raise ApplicationError("An alert can only be assigned to a security engineer or an admin.",
                               {"assignee": ["Not a security engineer or admin."]})
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == AlertStatus.RESOLVED:
        raise ApplicationError("A resolved alert cannot be assigned; reopen it first.")
    before = alert.assignee.username if alert.assignee_id else ""
    alert.assignee = assignee
    alert.save(update_fields=["assignee"])
    _audit(principal, alert, action="alert.assigned", remote_addr=remote_addr,
           details={"from": before, "to": assignee.username if assignee else ""})
    return alert


@transaction.atomic
def alert_resolve(*, principal, alert: Alert, note: str, remote_addr: str = "") -> Alert:
    _checked(principal, alert)
    note = _note(note, "Note")
    if not note:
        raise ApplicationError("Say how the alert was resolved.", {"note": ["Required: how it was resolved."]})
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == AlertStatus.RESOLVED:
        raise ApplicationError("This alert is already resolved.")
    alert.status, alert.resolved_at, alert.resolved_by = AlertStatus.RESOLVED, timezone.now(), principal
    alert.resolution_note, alert.snoozed_until = note, None
    alert.save(update_fields=["status", "resolved_at", "resolved_by", "resolution_note", "snoozed_until"])
    _audit(principal, alert, action="alert.resolved", reason=note, remote_addr=remote_addr)
    return alert


@transaction.atomic
def alert_snooze(*, principal, alert: Alert, until: datetime, note: str = "", remote_addr: str = "") -> Alert:
    """Hide from the inbox until ``until`` (at most 30 days); new evidence still counts meanwhile."""
    _checked(principal, alert)
    note = _note(note, "Note")
    now = timezone.now()
    if until <= now:
        raise ApplicationError("Snooze until a time in the future.", {"until": ["Must be in the future."]})
    if until > now + timedelta(days=30):
        raise ApplicationError("Snooze for at most 30 days.", {"until": ["At most 30 days ahead."]})
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == AlertStatus.RESOLVED:
        raise ApplicationError("A resolved alert cannot be snoozed.")
    alert.snoozed_until = until
    alert.save(update_fields=["snoozed_until"])
    _audit(principal, alert, action="alert.snoozed", reason=note, remote_addr=remote_addr,
           details={"until": until.isoformat()})
    return alert


@transaction.atomic
def alert_reopen(*, principal, alert: Alert, note: str = "", remote_addr: str = "") -> Alert:
    """Back to open: a resolved alert (unless its rule and subject already have a newer open
    one), or an acknowledged or snoozed one."""
    _checked(principal, alert)
    note = _note(note, "Note")
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == AlertStatus.OPEN and not alert.snoozed_until:
        raise ApplicationError("This alert is already open.")
    if (alert.status == AlertStatus.RESOLVED and Alert.objects.filter(rule=alert.rule, subject_key=alert.subject_key)
            .exclude(status=AlertStatus.RESOLVED).exists()):
        raise ApplicationError("A newer alert for the same rule and subject is open; work that one.")
    alert.status, alert.snoozed_until = AlertStatus.OPEN, None
    alert.save(update_fields=["status", "snoozed_until"])
    _audit(principal, alert, action="alert.reopened", reason=note, remote_addr=remote_addr)
    return alert
