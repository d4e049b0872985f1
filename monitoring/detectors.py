"""Detectors: read the access events and the audit trail as streams, raise alerts.

``detect_pending`` takes the next batch of each stream in id order from its ``DetectorCursor``
(locked, so two workers never take the same batch), runs every event detector on it, raises the
findings through ``alert_raise`` and moves the cursors, all in one transaction: a worker killed
mid-batch leaves the cursors where they were, and the batch is handled again. That is
at-least-once; evidence is keyed by event (``access:<id>``, ``audit:<id>``), so an event handled
twice counts once. Findings of a batch are merged per (rule, subject) and raised together, so a
batch costs the same few queries whatever its size and however many subjects it has.

``detect_periodic`` runs the detectors that look at state rather than at one event (a review
deadline passed, a standing permission unused, the audit chain), with keys of their own.

Thresholds: ``DEFAULTS`` below, overridden per detector by ``settings.MONITORING_DETECTORS``
(docs/monitoring.md, "Detectors"). Alert texts say what happened in words: never a value read
from a statement, and never a dataset's name (the datasets are linked to the alert, and whoever
reads it sees them through the visibility filter).
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from access.audit import audit_checkpoint_record, audit_verify
from access.decisions import AGGREGATED_TAG
from access.models import (AccessLevel, AccessRequest, AccessReview, AuditEvent, Grant, GrantStatus,
                           MetadataProposal, ReviewDecision, RolePermission)
from access.selectors import AWAITING_REVIEW
from catalog.models import Dataset
from catalog.vocabulary import Sensitivity, unclassified_tier
from monitoring.alerts import Evidence, Finding, alerts_raise
from monitoring.models import AccessAction, AccessEvent, Alert, AlertEvidence, AlertStatus, DetectorCursor, Severity

STREAMS = ("access", "audit")

# Every detector's thresholds; ``settings.MONITORING_DETECTORS = {"rule": {"key": value}}``
# overrides any of them (and ``"enabled": False`` turns a detector off).
DEFAULTS = {
    "volume_baseline": {
        "severity": Severity.HIGH,
        "min_sensitivity": "Sensitive",  # reads of datasets at this tier and above count
        "window_minutes": 60,  # the recent window ...
        "baseline_days": 14,  # ... against the principal's average per window over this many days before it
        "factor": 5.0,  # alert above factor x baseline ...
        "min_events": 50,  # ... and at least this many reads in the window (a first read is not an alert)
        "min_rows": 10_000,  # ... or at least this many rows (when the log says how many)
    },
    "read_not_allowed": {"severity": Severity.HIGH},
    "read_after_grant_end": {"severity": Severity.CRITICAL},
    "unusual_time_or_place": {
        "severity": Severity.MEDIUM,
        "time_zone": "UTC",
        "work_hours": [7, 20],  # from 07:00 to 19:59 local time
        "work_days": [0, 1, 2, 3, 4],  # Monday = 0
        "min_sensitivity": "Regular",  # off-hours reads of Public data do not count
        "new_address": True,
        "new_application": True,
        "memory_days": 90,  # an address or application seen within this many days is not new
    },
    "break_glass_repeat": {"severity": Severity.HIGH, "window_hours": 24},
    "break_glass_unreviewed": {"severity": Severity.HIGH, "review_hours": 24},
    "probing": {"severity": Severity.MEDIUM, "window_minutes": 15, "threshold": 5},
    "rubber_stamp": {"severity": Severity.MEDIUM, "window_days": 30, "pair_threshold": 5, "quick_seconds": 60},
    "service_account_new_address": {"severity": Severity.MEDIUM},
    "standing_unused": {"severity": Severity.LOW, "days": 90},
    "audit_chain_broken": {"severity": Severity.CRITICAL},
}

# What counts as a refused decision for ``probing`` (the audit trail records no refused page or
# API call; these are the refusals it does record).
REFUSALS = ("signin.failed", "mfa.verify_failed", "request.denied", "proposal.rejected")


def detector_settings(rule: str) -> dict:
    """The thresholds of one detector: its defaults with the operator's overrides."""
    overrides = getattr(settings, "MONITORING_DETECTORS", {}) or {}
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ImproperlyConfigured(f"MONITORING_DETECTORS names unknown detectors: {', '.join(sorted(unknown))}")
    mine = overrides.get(rule, {})
    bad = set(mine) - set(DEFAULTS[rule]) - {"enabled"}
    if bad:
        raise ImproperlyConfigured(f"MONITORING_DETECTORS['{rule}'] has unknown keys: {', '.join(sorted(bad))}")
    values = {"enabled": True, **DEFAULTS[rule], **mine}
    values["severity"] = Severity(values["severity"]) if isinstance(values["severity"], int) \
        else Severity[str(values["severity"]).upper()]
    for key in ("min_sensitivity",):
        if key in values and not isinstance(values[key], int):
            values[key] = Sensitivity[str(values[key]).upper()]
    return values


def _enabled(rule: str) -> dict | None:
    values = detector_settings(rule)
    return values if values["enabled"] else None


# --- Principals --------------------------------------------------------------------------------


def _principal(event: AccessEvent) -> tuple:
    return ("user", event.user_id) if event.user_id else ("role", event.store_id, event.database_role)


def _subject(principal: tuple) -> str:
    return f"user:{principal[1]}" if principal[0] == "user" else f"role:{principal[1]}:{principal[2]}"[:200]


def _principal_filter(principals) -> Q:
    users = sorted({p[1] for p in principals if p[0] == "user"})
    condition = Q(user_id__in=users) if users else Q(pk__in=[])
    for _, store_id, role in sorted(p for p in principals if p[0] == "role"):
        condition |= Q(user__isnull=True, store_id=store_id, database_role=role)
    return condition


def _who(event: AccessEvent) -> str:
    return event.user.username if event.user_id else f"the unmapped warehouse role '{event.database_role}'"


def _finding(rule: str, subject: str, values: dict, title: str, summary: str, action: str, evidence: list,
             *, event: AccessEvent | None = None, user_id=None, database_role="", dataset_ids=()) -> Finding:
    if event is not None:
        user_id = event.user_id
        database_role = "" if event.user_id else event.database_role
        dataset_ids = [event.dataset_id] if event.dataset_id else []
    return Finding(rule=rule, subject_key=subject, severity=values["severity"], title=title, summary=summary,
                   suggested_action=action, evidence=evidence, user_id=user_id, database_role=database_role,
                   dataset_ids=list(dataset_ids))


def _tier(dataset) -> int:
    if dataset is None:
        return unclassified_tier()
    return dataset.sensitivity if dataset.classified else unclassified_tier()


def _event_tier(event: AccessEvent) -> int:
    """The tier of what an event accessed: the columns read, as ingestion recorded it; for an event
    recorded before it did, its dataset's tier."""
    return event.sensitivity if event.sensitivity is not None else _tier(event.dataset)


def _access_evidence(event: AccessEvent, what: str = "") -> Evidence:
    verb = "wrote" if event.action == AccessAction.WRITE else "read"
    tier = Sensitivity(_event_tier(event)).label if event.dataset_id else "uncatalogued"
    parts = [f"{verb} {len(event.columns) or 'unknown'} column(s), {tier}"]
    if event.rows is not None:
        parts.append(f"{event.rows} row(s)")
    if event.client_address:
        parts.append(f"from {event.client_address}")
    if event.application:
        parts.append(f"with {event.application[:60]}")
    text = ", ".join(parts)
    return Evidence(key=f"access:{event.pk}", occurred_at=event.occurred_at,
                    description=f"{what}: {text}" if what else text, access_event_id=event.pk)


def _audit_evidence(event: AuditEvent, description: str = "") -> Evidence:
    return Evidence(key=f"audit:{event.pk}", occurred_at=event.at,
                    description=description or f"{event.action} by {event.actor_name}", audit_event_id=event.pk)


# --- Detectors on access events ------------------------------------------------------------------


def detect_reads_not_allowed(events: list[AccessEvent]) -> list[Finding]:
    """``read_not_allowed`` (nothing in the catalog allowed the access) and, when a grant of that
    user on that dataset had ended or been revoked before the access, ``read_after_grant_end``."""
    plain, after_end = _enabled("read_not_allowed"), _enabled("read_after_grant_end")
    findings_events = [e for e in events if e.finding]
    if not findings_events or not (plain or after_end):
        return []
    ended = _ended_grants(findings_events) if after_end else {}
    found = []
    for event in findings_events:
        grant = _grant_ended_before(ended.get((event.user_id, event.dataset_id), []), event.occurred_at)
        if grant is not None:
            how = "revoked" if grant.status == GrantStatus.REVOKED else "ended"
            found.append(_finding(
                "read_after_grant_end", f"grant:{grant.pk}", after_end,
                f"{_who(event)} used data after their grant #{grant.pk} {how}",
                f"{_who(event)} accessed a dataset after the grant that allowed it had {how}; nothing else in the "
                "catalog allowed it. The warehouse still let them in: the grant's privileges were not removed there "
                "in time, or the access came another way.",
                "Check that the warehouse revoked the grant's privileges (the grant's enforcement state, the "
                "reconciler), end any session still open, and ask the user why.",
                [_access_evidence(event, f"after grant #{grant.pk} {how}")], event=event,
            ))
        elif plain:
            found.append(_finding(
                "read_not_allowed", _subject(_principal(event)), plain,
                f"Access not allowed by the catalog: {_who(event)}",
                f"{_who(event)} accessed data that no standing permission or grant in the catalog allows "
                f"({(event.finding_reason or 'no reason recorded')[:200]}).",
                "Find out how the warehouse let them in (a privilege granted outside the catalog, a shared role) "
                "and remove it, or record the access they need as a role or a grant.",
                [_access_evidence(event)], event=event,
            ))
    return found


def _ended_grants(events: list[AccessEvent]) -> dict:
    pairs = {(e.user_id, e.dataset_id) for e in events if e.user_id and e.dataset_id}
    if not pairs:
        return {}
    latest = max(e.occurred_at for e in events)
    grants = defaultdict(list)
    for grant in Grant.objects.filter(
        user_id__in={u for u, _ in pairs}, dataset_id__in={d for _, d in pairs}, starts_at__lte=latest,
    ).filter(Q(ends_at__lte=latest) | Q(status__in=[GrantStatus.REVOKED, GrantStatus.EXPIRED])).order_by("-ends_at"):
        if (grant.user_id, grant.dataset_id) in pairs:
            grants[(grant.user_id, grant.dataset_id)].append(grant)
    return grants


def _grant_ended_before(grants: list[Grant], moment: datetime) -> Grant | None:
    """The grant that ended last before ``moment`` (revoked: at its revocation)."""
    best, best_end = None, None
    for grant in grants:
        end = grant.ends_at
        if grant.status == GrantStatus.REVOKED and grant.ended_at:
            end = min(end, grant.ended_at)
        elif grant.status == GrantStatus.REVOKED and grant.revoked_at:
            end = min(end, grant.revoked_at)
        if grant.starts_at <= moment and end <= moment and (best_end is None or end > best_end):
            best, best_end = grant, end
    return best


def detect_volume_baseline(events: list[AccessEvent]) -> list[Finding]:
    """A principal reading far more Sensitive or Restricted data in the recent window than their
    own average per window over the baseline days: one aggregate query per batch."""
    values = _enabled("volume_baseline")
    if not values:
        return []
    reads = [e for e in events if e.action == AccessAction.READ and e.dataset_id
             and _event_tier(e) >= values["min_sensitivity"]]
    if not reads:
        return []
    window = timedelta(minutes=values["window_minutes"])
    baseline = timedelta(days=values["baseline_days"])
    latest: dict[tuple, AccessEvent] = {}
    for event in reads:
        principal = _principal(event)
        if principal not in latest or event.occurred_at > latest[principal].occurred_at:
            latest[principal] = event
    aggregates = _volumes(latest, window, baseline, values["min_sensitivity"])
    windows = baseline / window
    found = []
    for principal, (recent, recent_rows, base, base_rows) in aggregates.items():
        usual, usual_rows = base / windows, base_rows / windows
        by_reads = recent >= values["min_events"] and recent > values["factor"] * usual
        by_rows = recent_rows >= values["min_rows"] and recent_rows > values["factor"] * usual_rows
        if not (by_reads or by_rows):
            continue
        event = latest[principal]
        mine = [e for e in reads if _principal(e) == principal and e.occurred_at > event.occurred_at - window]
        minutes = values["window_minutes"]
        found.append(_finding(
            "volume_baseline", _subject(principal), values,
            f"{_who(event)} read far more sensitive data than usual",
            f"In {minutes} minutes {_who(event)} made {recent} read(s) of {Sensitivity(values['min_sensitivity']).label} "
            f"or more sensitive data ({recent_rows} row(s) where the log says), against a usual {usual:.1f} read(s) "
            f"and {usual_rows:.0f} row(s) per {minutes} minutes over the {values['baseline_days']} days before.",
            "Ask the person (or the role's owner) what the reads were for; if they are not expected, suspend the "
            "role's access in the warehouse and look for an export.",
            [_access_evidence(e) for e in mine], user_id=event.user_id,
            database_role="" if event.user_id else event.database_role,
            dataset_ids=sorted({e.dataset_id for e in mine}),
        ))
    return found


# Per principal: reads and rows in its window (ending at its latest read of the batch), and in the
# baseline before it. One statement per kind of principal; the time range is on the join so the
# (user, occurred_at) and (store, database_role, occurred_at) indexes serve it.
_VOLUME_SQL = """
    SELECT v.k,
           count(*) FILTER (WHERE e.occurred_at > v.end_at - %(window)s),
           coalesce(sum(e.rows) FILTER (WHERE e.occurred_at > v.end_at - %(window)s), 0),
           count(*) FILTER (WHERE e.occurred_at <= v.end_at - %(window)s),
           coalesce(sum(e.rows) FILTER (WHERE e.occurred_at <= v.end_at - %(window)s), 0)
    FROM unnest(%(users)s::bigint[], %(stores)s::bigint[], %(roles)s::text[], %(ends)s::timestamptz[])
         WITH ORDINALITY AS v(user_id, store_id, role, end_at, k)
    JOIN monitoring_accessevent e ON {principal}
         AND e.occurred_at > v.end_at - %(window)s - %(baseline)s AND e.occurred_at <= v.end_at
    JOIN catalog_dataset d ON d.id = e.dataset_id
    WHERE e.action = 'read'
      AND coalesce(e.sensitivity, CASE WHEN d.classified THEN d.sensitivity ELSE %(default_tier)s END) >= %(tier)s
    GROUP BY v.k
"""
_BY_USER = "e.user_id = v.user_id"
_BY_ROLE = "e.user_id IS NULL AND e.store_id = v.store_id AND e.database_role = v.role"


def _volumes(latest: dict, window: timedelta, baseline: timedelta, tier: int) -> dict:
    """principal -> [reads in window, rows in window, reads in baseline, rows in baseline]."""
    if connection.vendor != "postgresql":
        return _volumes_orm(latest, window, baseline, tier)
    found = {}
    for kind, condition in (("user", _BY_USER), ("role", _BY_ROLE)):
        principals = [p for p in latest if p[0] == kind]
        if not principals:
            continue
        params = {
            "users": [p[1] if kind == "user" else 0 for p in principals],
            "stores": [p[1] if kind == "role" else 0 for p in principals],
            "roles": [p[2] if kind == "role" else "" for p in principals],
            "ends": [latest[p].occurred_at for p in principals],
            "window": window, "baseline": baseline, "tier": tier, "default_tier": unclassified_tier(),
        }
        with connection.cursor() as cursor:
            cursor.execute(_VOLUME_SQL.format(principal=condition), params)
            for k, recent, recent_rows, base, base_rows in cursor.fetchall():
                found[principals[k - 1]] = [recent, int(recent_rows), base, int(base_rows)]
    return found


def _volumes_orm(latest: dict, window: timedelta, baseline: timedelta, tier: int) -> dict:
    """``_volumes`` for the embedded SQLite: one OR term per principal."""
    recent_terms, base_terms = Q(pk__in=[]), Q(pk__in=[])
    for principal, event in latest.items():
        who = _principal_filter([principal])
        end = event.occurred_at
        recent_terms |= who & Q(occurred_at__gt=end - window, occurred_at__lte=end)
        base_terms |= who & Q(occurred_at__gt=end - window - baseline, occurred_at__lte=end - window)
    rows = (AccessEvent.objects.filter(Q(action=AccessAction.READ) & _tier_filter(tier) & (recent_terms | base_terms))
            .order_by().values("user_id", "store_id", "database_role")
            .annotate(recent=Count("pk", filter=recent_terms), recent_rows=Coalesce(Sum("rows", filter=recent_terms), 0),
                      base=Count("pk", filter=base_terms), base_rows=Coalesce(Sum("rows", filter=base_terms), 0)))
    found = {}
    for row in rows:
        principal = ("user", row["user_id"]) if row["user_id"] else ("role", row["store_id"], row["database_role"])
        totals = found.setdefault(principal, [0, 0, 0, 0])
        for index, key in enumerate(("recent", "recent_rows", "base", "base_rows")):
            totals[index] += row[key]
    return found


def _tier_filter(tier: int) -> Q:
    from access.decisions import tier_at_least_filter

    # As ``_event_tier``: the tier recorded with the event, else (events from before) the dataset's.
    return Q(sensitivity__gte=tier) | (Q(sensitivity__isnull=True) & tier_at_least_filter(tier, "dataset__"))


def detect_unusual_time_or_place(events: list[AccessEvent]) -> list[Finding]:
    """Access outside working hours, or from a client address or application not seen for that
    principal within ``memory_days`` (a principal's first event ever does not count as new)."""
    values = _enabled("unusual_time_or_place")
    if not values or not events:
        return []
    zone = ZoneInfo(values["time_zone"])
    start_hour, end_hour = values["work_hours"]
    relevant = [e for e in events if e.dataset_id is None or _event_tier(e) >= values["min_sensitivity"]]
    known_addresses, known_apps, seen = _earlier_places(relevant, values) if relevant else ({}, {}, set())
    found = []
    for event in relevant:
        principal = _principal(event)
        local = timezone.localtime(event.occurred_at, zone)
        reasons = []
        if local.weekday() not in values["work_days"] or not start_hour <= local.hour < end_hour:
            reasons.append(f"outside working hours ({local:%A %H:%M} {values['time_zone']})")
        addresses, apps = known_addresses.setdefault(principal, set()), known_apps.setdefault(principal, set())
        if principal in seen:
            if values["new_address"] and event.client_address and event.client_address not in addresses:
                reasons.append("from an address never seen for them")
            if values["new_application"] and event.application and event.application not in apps:
                reasons.append("with an application never seen for them")
        seen.add(principal)
        if event.client_address:
            addresses.add(event.client_address)
        if event.application:
            apps.add(event.application)
        if reasons:
            found.append(_finding(
                "unusual_time_or_place", _subject(principal), values,
                f"Unusual access by {_who(event)}",
                f"{_who(event)} accessed data {' and '.join(reasons)}.",
                "Confirm with the person that it was them (on call, travelling, a new tool); if not, treat the "
                "credentials as compromised: disable them and rotate the warehouse password.",
                [_access_evidence(event, "; ".join(reasons))], event=event,
            ))
    return found


def _earlier_places(events: list[AccessEvent], values: dict) -> tuple[dict, dict, set]:
    """Addresses and applications each principal was seen with before this batch (two queries)."""
    principals = {_principal(e) for e in events}
    first_id = min(e.pk for e in events)
    since = min(e.occurred_at for e in events) - timedelta(days=values["memory_days"])
    earlier = AccessEvent.objects.filter(_principal_filter(principals), pk__lt=first_id, occurred_at__gte=since)
    addresses, apps, seen = defaultdict(set), defaultdict(set), set()
    for user_id, store_id, role, address, application in (
        earlier.order_by().values_list("user_id", "store_id", "database_role", "client_address", "application")
        .distinct()
    ):
        principal = ("user", user_id) if user_id else ("role", store_id, role)
        seen.add(principal)
        if address:
            addresses[principal].add(address)
        if application:
            apps[principal].add(application)
    # Seen before the memory window: not a first event, though nothing recent is known.
    unknown = [p for p in principals if p not in seen]
    if unknown:
        older = AccessEvent.objects.filter(_principal_filter(unknown), pk__lt=first_id)
        for user_id, store_id, role in older.order_by().values_list("user_id", "store_id", "database_role").distinct():
            seen.add(("user", user_id) if user_id else ("role", store_id, role))
    return addresses, apps, seen


# --- Detectors on the audit trail ---------------------------------------------------------------


def detect_break_glass_repeat(events: list[AuditEvent]) -> list[Finding]:
    """Break-glass activated twice or more by one person within ``window_hours``."""
    values = _enabled("break_glass_repeat")
    batch = [e for e in events if e.action == "break_glass.activated" and e.actor_id]
    if not values or not batch:
        return []
    window = timedelta(hours=values["window_hours"])
    earlier = list(AuditEvent.objects.filter(
        action="break_glass.activated", actor_id__in={e.actor_id for e in batch},
        at__gte=min(e.at for e in batch) - window, pk__lte=max(e.pk for e in batch),
    ).order_by("pk"))
    found = []
    for event in batch:
        before = [e for e in earlier if e.actor_id == event.actor_id and e.pk < event.pk and e.at >= event.at - window]
        if not before:
            continue
        uses = before + [event]
        found.append(_finding(
            "break_glass_repeat", f"user:{event.actor_id}", values,
            f"{event.actor_name} used break-glass {len(uses)} times within {values['window_hours']} hours",
            f"{event.actor_name} activated emergency access {len(uses)} times within {values['window_hours']} hours. "
            "Break-glass is for emergencies; repeated use suggests a missing role or grant, or misuse.",
            "Review each use with the person; if the access is needed routinely, give it through the role matrix "
            "or a grant with approval instead.",
            [_audit_evidence(e, "break-glass activated") for e in uses], user_id=event.actor_id,
            dataset_ids=sorted({e.dataset_id for e in uses if e.dataset_id}),
        ))
    return found


def detect_probing(events: list[AuditEvent]) -> list[Finding]:
    """Repeated refusals (failed sign-ins, failed second factors, denied requests, rejected
    proposals) for one person or sign-in name within ``window_minutes``."""
    values = _enabled("probing")
    batch = [e for e in events if e.action in REFUSALS]
    if not values or not batch:
        return []
    window = timedelta(minutes=values["window_minutes"])
    earlier = list(AuditEvent.objects.filter(action__in=REFUSALS, at__gte=min(e.at for e in batch) - window,
                                             pk__lte=max(e.pk for e in batch)).order_by("pk"))
    subjects = _refusal_subjects(earlier)
    by_subject = defaultdict(list)
    for event in earlier:
        if subjects.get(event.pk):
            by_subject[subjects[event.pk][0]].append(event)
    found = []
    for event in batch:
        subject = subjects.get(event.pk)
        if not subject:
            continue
        key, label, user_id = subject
        recent = [e for e in by_subject[key] if e.pk <= event.pk and e.at >= event.at - window]
        if len(recent) < values["threshold"]:
            continue
        kinds = sorted({e.action for e in recent})
        found.append(_finding(
            "probing", key, values,
            f"Repeated refusals for {label}",
            f"{len(recent)} refused attempts for {label} within {values['window_minutes']} minutes "
            f"({', '.join(kinds)}).",
            "Look at where the attempts came from; lock the account or block the address if they are not the "
            "person's own mistakes, and talk to them if they are.",
            [_audit_evidence(e) for e in recent], user_id=user_id,
        ))
    return found


def _refusal_subjects(events: list[AuditEvent]) -> dict:
    """Audit event id -> (subject key, words, user id): the person refused."""
    request_ids = [int(e.object_id) for e in events if e.action == "request.denied" and e.object_id.isdigit()]
    proposal_ids = [int(e.object_id) for e in events if e.action == "proposal.rejected" and e.object_id.isdigit()]
    requesters = dict(AccessRequest.objects.filter(pk__in=request_ids).values_list("pk", "requester__id")) \
        if request_ids else {}
    proposers = dict(MetadataProposal.objects.filter(pk__in=proposal_ids).values_list("pk", "proposer__id")) \
        if proposal_ids else {}
    names = {}
    people = set(requesters.values()) | set(proposers.values())
    people |= {int(e.object_id) for e in events if e.object_type == "user" and e.object_id.isdigit()}
    people |= {e.actor_id for e in events if e.action == "mfa.verify_failed" and e.actor_id}
    if people:
        from access.models import User

        names = dict(User.objects.filter(pk__in=people).values_list("pk", "username"))
    subjects = {}
    for event in events:
        user_id = None
        if event.action == "request.denied":
            user_id = requesters.get(int(event.object_id) if event.object_id.isdigit() else None)
        elif event.action == "proposal.rejected":
            user_id = proposers.get(int(event.object_id) if event.object_id.isdigit() else None)
        elif event.action == "mfa.verify_failed":
            user_id = event.actor_id
        elif event.object_type == "user" and event.object_id.isdigit():
            user_id = int(event.object_id)
        if user_id:
            subjects[event.pk] = (f"user:{user_id}", names.get(user_id, f"user #{user_id}"), user_id)
        elif event.action == "signin.failed" and (event.details or {}).get("username"):
            name = str(event.details["username"])[:150].lower()
            subjects[event.pk] = (f"signin:{name}", f"the unknown sign-in name '{name}'", None)
        elif event.remote_addr:
            subjects[event.pk] = (f"address:{event.remote_addr}", f"the address {event.remote_addr}", None)
    return subjects


def detect_rubber_stamp(events: list[AuditEvent]) -> list[Finding]:
    """A grant approved by the same (requester, approver) pair ``pair_threshold`` times within
    ``window_days``, or approved within ``quick_seconds`` of being asked."""
    values = _enabled("rubber_stamp")
    batch = [e for e in events if e.action == "request.approved" and e.object_id.isdigit() and e.actor_id]
    if not values or not batch:
        return []
    requests = {r.pk: r for r in AccessRequest.objects.filter(pk__in=[int(e.object_id) for e in batch])
                .select_related("requester").only("pk", "created_at", "dataset_id", "requester__username")}
    window = timedelta(days=values["window_days"])
    pairs = {(requests[int(e.object_id)].requester_id, e.actor_id) for e in batch if int(e.object_id) in requests}
    approvals = list(AccessReview.objects.filter(
        decision=ReviewDecision.APPROVE, reviewer_id__in={a for _, a in pairs},
        request__requester_id__in={r for r, _ in pairs}, created_at__gte=min(e.at for e in batch) - window,
        created_at__lte=max(e.at for e in batch),
    ).values_list("request__requester_id", "reviewer_id", "created_at"))
    found = []
    for event in batch:
        request = requests.get(int(event.object_id))
        if request is None:
            continue
        pair = (request.requester_id, event.actor_id)
        count = sum(1 for r, a, at in approvals if (r, a) == pair and event.at - window <= at <= event.at)
        asked_for = (event.at - request.created_at).total_seconds()
        reasons = []
        if count >= values["pair_threshold"]:
            reasons.append(f"{event.actor_name} approved {count} of {request.requester.username}'s requests within "
                           f"{values['window_days']} days")
        if asked_for <= values["quick_seconds"]:
            reasons.append(f"approved {asked_for:.0f} seconds after it was asked")
        if not reasons:
            continue
        found.append(_finding(
            "rubber_stamp", f"pair:{request.requester_id}:{event.actor_id}", values,
            f"Approvals that look automatic: {request.requester.username} by {event.actor_name}",
            f"Request #{request.pk}: {'; '.join(reasons)}. Approvals given without reading are no control.",
            "Talk to the approver; if the requester needs this access routinely, give it through the role matrix. "
            "Consider requiring a second approver for this scope.",
            [_audit_evidence(event, "; ".join(reasons))], user_id=request.requester_id,
            dataset_ids=[request.dataset_id],
        ))
    return found


def detect_service_account_new_address(events: list[AuditEvent]) -> list[Finding]:
    """A service token used from an address it was never used from (``token.new_address``)."""
    values = _enabled("service_account_new_address")
    batch = [e for e in events if e.action == "token.new_address" and not (e.details or {}).get("first_use")]
    if not values or not batch:
        return []
    return [_finding(
        "service_account_new_address", f"user:{event.actor_id}" if event.actor_id else f"token:{event.object_id}",
        values, f"Service account {event.actor_name} used from a new address",
        f"A token of the service account {event.actor_name} (prefix {str((event.details or {}).get('prefix', ''))[:8]}) "
        f"was used from {event.remote_addr or 'an unknown address'}, where it had never been used before.",
        "Check that the pipeline moved (a new runner, a new network); if not, revoke the token and make a new one.",
        [_audit_evidence(event, f"used from {event.remote_addr}")], user_id=event.actor_id,
    ) for event in batch]


ACCESS_DETECTORS = (detect_reads_not_allowed, detect_volume_baseline, detect_unusual_time_or_place)
AUDIT_DETECTORS = (detect_break_glass_repeat, detect_probing, detect_rubber_stamp, detect_service_account_new_address)


# --- Consuming the streams -----------------------------------------------------------------------


# What the detectors read of an access event (a batch loads hundreds: no more than this).
EVENT_FIELDS = (
    "id", "store_id", "user_id", "user__username", "database_role", "client_address", "application", "dataset_id",
    "dataset__sensitivity", "dataset__classified", "sensitivity", "action", "columns", "rows", "occurred_at", "finding",
    "finding_reason",
)


def _cursors_locked() -> dict[str, DetectorCursor]:
    cursors = list(DetectorCursor.objects.select_for_update().filter(stream__in=STREAMS).order_by("stream"))
    if len(cursors) < len(STREAMS):
        DetectorCursor.objects.bulk_create([DetectorCursor(stream=s) for s in STREAMS], ignore_conflicts=True)
        cursors = list(DetectorCursor.objects.select_for_update().filter(stream__in=STREAMS).order_by("stream"))
    return {cursor.stream: cursor for cursor in cursors}


def _merged(findings: list[Finding]) -> list[Finding]:
    """One finding per (rule, subject): the most severe one's words, every piece of evidence."""
    merged: dict[tuple, Finding] = {}
    for finding in findings:
        key = (finding.rule, finding.subject_key)
        known = merged.get(key)
        if known is None:
            merged[key] = Finding(**{**finding.__dict__, "evidence": list(finding.evidence),
                                     "dataset_ids": list(finding.dataset_ids)})
            continue
        if finding.severity > known.severity:
            known.severity, known.title = finding.severity, finding.title
            known.summary, known.suggested_action = finding.summary, finding.suggested_action
        keys = {item.key for item in known.evidence}
        known.evidence += [item for item in finding.evidence if item.key not in keys]
        known.dataset_ids = sorted(set(known.dataset_ids) | set(finding.dataset_ids))
    return list(merged.values())


def _raise_all(findings: list[Finding]) -> int:
    return sum(new for _, new in alerts_raise(_merged(findings)))


def detect_pending(*, batch_size: int = 500) -> int:
    """Handle the next batch of access events and of audit events (up to ``batch_size`` each):
    run every detector, raise the alerts, move the cursors, in one transaction. Returns how
    many events were handled (0: caught up)."""
    with transaction.atomic():
        cursors = _cursors_locked()
        access = list(AccessEvent.objects.filter(pk__gt=cursors["access"].last_id)
                      .select_related("dataset", "user").only(*EVENT_FIELDS).order_by("pk")[:batch_size])
        audit = list(AuditEvent.objects.filter(pk__gt=cursors["audit"].last_id).order_by("pk")[:batch_size])
        if not access and not audit:
            return 0
        findings = []
        if access:
            for detector in ACCESS_DETECTORS:
                findings += detector(access)
        if audit:
            for detector in AUDIT_DETECTORS:
                findings += detector(audit)
        _raise_all(findings)
        for stream, batch in (("access", access), ("audit", audit)):
            if batch:
                DetectorCursor.objects.filter(pk=cursors[stream].pk).update(last_id=batch[-1].pk,
                                                                             updated_at=timezone.now())
    return len(access) + len(audit)


def detect_all(*, batch_size: int = 500, max_batches: int | None = None) -> int:
    """``detect_pending`` until caught up (or ``max_batches``); how many events were handled."""
    handled, batches = 0, 0
    while max_batches is None or batches < max_batches:
        count = detect_pending(batch_size=batch_size)
        handled, batches = handled + count, batches + 1
        if not count:
            break
    return handled


# --- Periodic detectors --------------------------------------------------------------------------


@dataclass
class PeriodicResult:
    break_glass_unreviewed: int = 0
    standing_unused: int = 0
    audit_chain_intact: bool | None = None


def detect_break_glass_unreviewed(now: datetime) -> list[Finding]:
    """Break-glass grants still waiting for their after-the-fact review ``review_hours`` after
    they were activated. Raised once per grant (resolving the alert does not raise it again)."""
    values = _enabled("break_glass_unreviewed")
    if not values:
        return []
    overdue = list(Grant.objects.filter(AWAITING_REVIEW, starts_at__lte=now - timedelta(hours=values["review_hours"]))
                   .select_related("user").order_by("pk"))
    if not overdue:
        return []
    raised = set(Alert.objects.filter(rule="break_glass_unreviewed", subject_key__in=[f"grant:{g.pk}" for g in overdue])
                 .values_list("subject_key", flat=True))
    return [_finding(
        "break_glass_unreviewed", f"grant:{grant.pk}", values,
        f"Break-glass grant #{grant.pk} of {grant.user.username} not reviewed in time",
        f"{grant.user.username} used break-glass; its after-the-fact review was due {values['review_hours']} hours "
        "after activation and has not been done.",
        "An approver of the dataset, a security engineer or an admin reviews the grant (Approvals, "
        "'Break-glass waiting for review').",
        [Evidence(key=f"deadline:grant:{grant.pk}", occurred_at=grant.starts_at + timedelta(hours=values["review_hours"]),
                  description="review deadline passed")],
        user_id=grant.user_id, dataset_ids=[grant.dataset_id],
    ) for grant in overdue if f"grant:{grant.pk}" not in raised]


def detect_standing_unused(now: datetime) -> list[Finding]:
    """For each person with a warehouse role whose roles give standing read on a dataset of a
    monitored store (one that has sent access events for ``days`` at least) and who has not
    accessed it in ``days``: suggest removing it. One alert per person; four queries in all."""
    values = _enabled("standing_unused")
    if not values:
        return []
    since = now - timedelta(days=values["days"])
    stores = list(AccessEvent.objects.order_by().values("store_id").annotate(first=Min("occurred_at"))
                  .filter(first__lte=since).values_list("store_id", flat=True))
    if not stores:
        return []
    cells = defaultdict(dict)  # user -> (environment, tier) -> aggregated only
    for user_id, username, environment, tier, aggregated_only in RolePermission.objects.filter(
        standing__gte=AccessLevel.READ, role__group__user__warehouse_role__gt="", role__group__user__is_active=True,
    ).values_list("role__group__user", "role__group__user__username", "environment", "sensitivity", "aggregated_only"):
        place = cells[(user_id, username)]
        place[(environment, tier)] = place.get((environment, tier), True) and aggregated_only
    if not cells:
        return []
    default_tier = unclassified_tier()
    datasets = [(pk, environment, sensitivity if classified else default_tier, AGGREGATED_TAG in (tags or []))
                for pk, environment, sensitivity, classified, tags in Dataset.objects.filter(store_id__in=stores)
                .values_list("pk", "store__environment", "sensitivity", "classified", "tags")]
    used = set(AccessEvent.objects.filter(occurred_at__gte=since, user__isnull=False, store_id__in=stores)
               .order_by().values_list("user_id", "dataset_id").distinct())
    suggested = set(AlertEvidence.objects.filter(
        alert__rule="standing_unused", evidence_key__startswith="unused:",
    ).filter(Q(alert__resolved_at__isnull=True) | Q(alert__resolved_at__gte=since)).values_list("evidence_key", flat=True))
    found = []
    for (user_id, username), places in sorted(cells.items()):
        unused = [pk for pk, environment, tier, aggregated in datasets
                  if (environment, tier) in places and (aggregated or not places[(environment, tier)])
                  and (user_id, pk) not in used and f"unused:{user_id}:{pk}" not in suggested]
        if not unused:
            continue
        found.append(_finding(
            "standing_unused", f"user:{user_id}", values,
            f"{username} has standing read access unused for {values['days']} days",
            f"{username}'s roles give standing read on {len(unused)} dataset(s) they have not accessed in "
            f"{values['days']} days.",
            "Least privilege: if they do not need it, move them to a role without standing read there (they can "
            "still ask for a grant when they need it).",
            [Evidence(key=f"unused:{user_id}:{pk}", occurred_at=now, description=f"no access in {values['days']} days")
             for pk in unused], user_id=user_id, dataset_ids=unused,
        ))
    return found


def detect_audit_chain(now: datetime) -> tuple[list[Finding], bool | None]:
    """Verify the audit chain from the latest checkpoint; broken -> a critical alert. An intact
    check with new events records a checkpoint (so the next check starts there)."""
    values = _enabled("audit_chain_broken")
    if not values:
        return [], None
    report = audit_verify(full=False)
    if report.intact:
        if report.checked:
            audit_checkpoint_record(report)
        return [], True
    where = f"event #{report.first_bad_id}" if report.first_bad_id else "a checkpoint"
    return [Finding(
        rule="audit_chain_broken", subject_key="audit_chain", severity=values["severity"],
        title="The audit trail failed verification",
        summary=f"The hash chain of the audit trail does not verify at {where}: {report.problem[:400]}. "
                "Someone may have edited, deleted or inserted audit events in the database.",
        suggested_action="Run `manage.py audit_verify --full`, compare with the last exported copy of the trail "
                         "and a database backup, and find who had write access to the catalog's database.",
        evidence=[Evidence(key=f"chain:{report.first_bad_id or 0}:{report.problem[:120]}", occurred_at=now,
                           description=report.problem[:500])],
    )], False


def detect_periodic(*, now: datetime | None = None) -> PeriodicResult:
    """Run the detectors that look at state: break-glass reviews overdue, standing permissions
    unused, the audit chain. Each raises once per subject and key."""
    now = now or timezone.now()
    result = PeriodicResult()
    chain_findings, result.audit_chain_intact = detect_audit_chain(now)
    with transaction.atomic():
        if connection.vendor == "postgresql":  # one periodic run at a time
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('monitoring.detect_periodic'))")
        unreviewed = detect_break_glass_unreviewed(now)
        unused = detect_standing_unused(now)
        result.break_glass_unreviewed, result.standing_unused = len(unreviewed), len(unused)
        _raise_all(unreviewed + unused + chain_findings)
    return result


# --- Asking a worker to run them ---------------------------------------------------------------

DETECT_QUEUED_FLAG = "monitoring:detect-queued"


def detect_request() -> None:
    """Queue ``monitoring.detect`` unless one is queued already (a burst of ingested batches asks
    once; the task clears the flag when it starts, so what arrives meanwhile asks again). Called
    on commit of the events; if the broker is down, the periodic task catches up."""
    import logging

    from django.core.cache import cache

    from monitoring.tasks import detect

    if cache.add(DETECT_QUEUED_FLAG, "1", timeout=settings.MONITORING_DETECT_FLAG_SECONDS):
        try:
            detect.delay()
        except Exception:  # the events are stored: the beat's run handles them
            cache.delete(DETECT_QUEUED_FLAG)
            logging.getLogger(__name__).exception("Could not queue the detectors; the periodic run will catch up.")
