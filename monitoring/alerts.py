"""Alerts: raising them (detectors) and working them (the inbox and the API).

``alert_raise`` is the one way a detector opens or adds to an alert: one unresolved alert per
(rule, subject), evidence unique per (alert, evidence key), so an event handled twice counts
once. The workflow (acknowledge, assign, resolve with a note, snooze, reopen) is for whoever
may read the audit trail (security engineers and admins), and every change is audited.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from access.audit import audit_record
from access.policies import can_work_alert, can_work_alerts
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
    return alerts_raise([finding])[0]


def _open_alerts(pairs) -> dict:
    """The unresolved alerts of these (rule, subject) pairs, locked. Filtered on both columns
    then matched here: cheaper to build than one OR term per pair (a batch has hundreds)."""
    wanted = set(pairs)
    found = Alert.objects.select_for_update().filter(
        rule__in={rule for rule, _ in wanted}, subject_key__in={subject for _, subject in wanted},
    ).exclude(status=AlertStatus.RESOLVED)
    return {(alert.rule, alert.subject_key): alert for alert in found if (alert.rule, alert.subject_key) in wanted}


_COUNT_UP_SQL = """
    UPDATE monitoring_alert AS a
    SET count = a.count + v.added, last_seen_at = GREATEST(a.last_seen_at, v.last_seen_at), severity = v.severity,
        title = v.title, summary = v.summary, suggested_action = v.suggested_action, status = v.status
    FROM unnest(%s::bigint[], %s::integer[], %s::timestamptz[], %s::smallint[], %s::text[], %s::text[], %s::text[],
                %s::text[]) AS v(id, added, last_seen_at, severity, title, summary, suggested_action, status)
    WHERE a.id = v.id
"""


_EVIDENCE_SQL = """
    INSERT INTO monitoring_alertevidence (alert_id, evidence_key, occurred_at, description, access_event_id,
                                          audit_event_id)
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::text[], %s::bigint[], %s::bigint[])
    ON CONFLICT DO NOTHING
"""


def _evidence_insert(rows: dict) -> None:
    """Insert the new evidence, ``{(alert id, key): (occurred_at, description, access event id,
    audit event id)}``: one statement on PostgreSQL (no model instances: a batch has thousands)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        AlertEvidence.objects.bulk_create([
            AlertEvidence(alert_id=alert_id, evidence_key=key, occurred_at=at, description=text,
                          access_event_id=access_id, audit_event_id=audit_id)
            for (alert_id, key), (at, text, access_id, audit_id) in rows.items()
        ], ignore_conflicts=True)
        return
    columns = list(zip(*[(alert_id, key, *row) for (alert_id, key), row in rows.items()]))
    with connection.cursor() as cursor:
        cursor.execute(_EVIDENCE_SQL, [list(column) for column in columns])


def _count_up(changed: list, added: dict) -> None:
    """Count the new evidence in and keep the (possibly escalated) words: one statement on
    PostgreSQL, one per alert elsewhere (the embedded SQLite)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_COUNT_UP_SQL, [
                [a.pk for a in changed], [added[a.pk] for a in changed], [a.last_seen_at for a in changed],
                [int(a.severity) for a in changed], [a.title for a in changed], [a.summary for a in changed],
                [a.suggested_action for a in changed], [a.status for a in changed],
            ])
        return
    for alert in changed:
        Alert.objects.filter(pk=alert.pk).update(
            count=F("count") + added[alert.pk], last_seen_at=alert.last_seen_at, severity=alert.severity,
            title=alert.title, summary=alert.summary, suggested_action=alert.suggested_action, status=alert.status)


def alerts_raise(findings: list[Finding]) -> list[tuple[Alert, int]]:
    """``alert_raise`` for many findings, at most one per (rule, subject), in a constant number of
    queries (a detectors' batch raises its findings at once). Returns (alert, new evidence) per
    finding, in order. Must run inside the caller's transaction."""
    if not findings:
        return []
    if any(not finding.evidence for finding in findings):
        raise ValueError("a finding needs evidence")
    pairs = [(finding.rule, finding.subject_key) for finding in findings]
    if len(set(pairs)) != len(pairs):
        raise ValueError("one finding per (rule, subject): merge them first")
    alerts = _open_alerts(pairs)
    missing = [finding for finding in findings if (finding.rule, finding.subject_key) not in alerts]
    if missing:
        # count=0 marks the rows made here: an alert another transaction opened meanwhile is left
        # as it is (ON CONFLICT DO NOTHING on the one-unresolved-alert index) and counted up below.
        Alert.objects.bulk_create([
            Alert(rule=finding.rule, subject_key=finding.subject_key, severity=finding.severity,
                  title=finding.title[:300], summary=finding.summary, suggested_action=finding.suggested_action,
                  count=0, first_seen_at=min(item.occurred_at for item in finding.evidence),
                  last_seen_at=max(item.occurred_at for item in finding.evidence), user_id=finding.user_id,
                  database_role=finding.database_role[:128])
            for finding in missing
        ], ignore_conflicts=True)
        alerts.update(_open_alerts([(finding.rule, finding.subject_key) for finding in missing]))
    created = {pair for pair, alert in alerts.items() if alert.count == 0}
    rows = {}  # (alert id, key) -> (occurred_at, description, access event, audit event)
    for finding in findings:
        alert = alerts[(finding.rule, finding.subject_key)]
        for item in finding.evidence:
            rows.setdefault((alert.pk, item.key[:200]), (item.occurred_at, item.description[:500],
                                                          item.access_event_id, item.audit_event_id))
    known = set(AlertEvidence.objects.filter(alert_id__in={a.pk for a in alerts.values()},
                                             evidence_key__in={key for _, key in rows})
                .order_by().values_list("alert_id", "evidence_key"))
    new_rows = {pair: row for pair, row in rows.items() if pair not in known}
    _evidence_insert(new_rows)
    new_by_alert = {}
    for (alert_id, _), (occurred_at, *_) in new_rows.items():
        new_by_alert.setdefault(alert_id, []).append(occurred_at)
    changed, escalated, results = [], set(), []
    through = Alert.datasets.through
    links = []
    for finding in findings:
        pair = (finding.rule, finding.subject_key)
        alert = alerts[pair]
        new = new_by_alert.get(alert.pk, [])
        results.append((alert, len(new)))
        if not new:
            continue
        if pair not in created and finding.severity > alert.severity:
            escalated.add(alert.pk)
            if alert.status == AlertStatus.ACKNOWLEDGED:
                alert.status = AlertStatus.OPEN  # worse than what was acknowledged: back in the inbox
            alert.severity, alert.title = finding.severity, finding.title[:300]
            alert.summary, alert.suggested_action = finding.summary, finding.suggested_action
        alert.last_seen_at = max(alert.last_seen_at, max(new))
        changed.append(alert)
        links += [through(alert_id=alert.pk, dataset_id=pk) for pk in finding.dataset_ids]
    if changed:
        _count_up(changed, {pk: len(rows) for pk, rows in new_by_alert.items()})
    if links:
        through.objects.bulk_create(links, ignore_conflicts=True)
    fresh = Alert.objects.in_bulk([alert.pk for alert in changed]) if changed else {}
    final = []
    for alert, new in results:
        alert = fresh.get(alert.pk, alert)
        final.append((alert, new))
        if new and ((alert.rule, alert.subject_key) in created or alert.pk in escalated):
            is_escalated = alert.pk in escalated
            transaction.on_commit(
                lambda alert=alert, is_escalated=is_escalated: alert_raised.send(sender=Alert, alert=alert,
                                                                                 escalated=is_escalated))
    return final


def _checked(principal, alert: Alert) -> None:
    if not can_work_alerts(principal):
        raise ApplicationError("Only security engineers and admins work alerts.")
    if not can_work_alert(principal, alert):
        raise ApplicationError("This alert is about you: another security engineer or an admin works it.")


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
    if assignee is not None and not can_work_alert(assignee, alert):
        raise ApplicationError("This alert is about them: assign it to someone else.",
                               {"assignee": ["The alert is about this person."]})
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
