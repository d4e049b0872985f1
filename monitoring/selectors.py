"""Reading access events: the event stream for security engineers, and a dataset's usage for
whoever may see the dataset (Restricted readers only for those who may see them)."""

import datetime as dt

from django.db import connection
from django.db.models import Count, Max, Prefetch, Q
from django.db.models.functions import TruncDate
from django.shortcuts import get_object_or_404
from django.utils import timezone

from access.decisions import dataset_visibility_filter
from access.models import User
from access.policies import can_manage_webhooks, can_read_audit, can_work_alerts, is_steward
from access.selectors import audit_list
from catalog.models import Dataset
from catalog.selectors import dataset_visible
from catalog.vocabulary import Sensitivity
from monitoring.filtersets import snoozed_condition
from monitoring.models import AccessAction, AccessEvent, Alert, AlertEvidence, AlertStatus, WebhookEndpoint

USAGE_DAYS = 30
NEVER_READ_DAYS = 90
TOP_READERS = 10


def can_read_access_events(user) -> bool:
    """Security engineers and admins read the access event stream (of the datasets they may see)."""
    return can_read_audit(user)


def can_see_restricted_readers(user, dataset) -> bool:
    """Who read a dataset's Restricted columns, and under which grant: security engineers, admins,
    and the dataset's owners and stewards."""
    return can_read_audit(user) or is_steward(user, dataset)


def access_event_list(*, user):
    """Access events, oldest first (an id-ordered stream), for security engineers and admins: those
    of the datasets they may see, and those the catalog could not tie to a dataset (an event names
    its dataset in its relation and statement too, so it is filtered like the dataset)."""
    if not can_read_access_events(user):
        return AccessEvent.objects.none()
    events = AccessEvent.objects.select_related("store", "user", "dataset").order_by("id")
    condition = dataset_visibility_filter(user)  # the rule ``dataset_visible`` applies; None: everything
    if condition is None:
        return events
    return events.filter(Q(dataset__isnull=True) | Q(dataset__in=Dataset.objects.filter(condition).values("pk")))


def _reader(row) -> str:
    return row["user__username"] or f"role:{row['database_role']}"


def dataset_usage(*, user, dataset: Dataset, now=None) -> dict:
    """Usage of one dataset the caller may see (``catalog.selectors.dataset_get`` checked that):
    reads and writes per day, top readers, last read, columns never read in 90 days and, for
    Restricted columns and callers who may see them, each reader with what allowed them.
    A constant number of queries."""
    now = now or timezone.now()
    events = AccessEvent.objects.filter(dataset=dataset)
    since = now - dt.timedelta(days=USAGE_DAYS)
    by_day = {}
    for row in (events.filter(occurred_at__gte=since).annotate(day=TruncDate("occurred_at"))
                .values("day", "action").annotate(count=Count("id")).order_by()):
        by_day.setdefault(row["day"], {"read": 0, "write": 0})[row["action"]] = row["count"]
    today = now.date()
    days = [today - dt.timedelta(days=offset) for offset in range(USAGE_DAYS - 1, -1, -1)]
    per_day = [{"date": day.isoformat(), **by_day.get(day, {"read": 0, "write": 0})} for day in days]

    reads = events.filter(action=AccessAction.READ)
    totals = reads.aggregate(last=Max("occurred_at"), count=Count("id"))
    top = list(
        reads.filter(occurred_at__gte=now - dt.timedelta(days=NEVER_READ_DAYS))
        .values("user__username", "database_role").annotate(count=Count("id"), last=Max("occurred_at"))
        .order_by("-count", "database_role")[:TOP_READERS]
    )
    read_lists = reads.filter(occurred_at__gte=now - dt.timedelta(days=NEVER_READ_DAYS)).values_list(
        "columns", flat=True).distinct()
    read_columns = {name.lower() for names in read_lists for name in (names or [])}
    columns = list(dataset.columns.order_by("position").values_list("name", "sensitivity"))
    never_read = [name for name, _ in columns if name.lower() not in read_columns]

    restricted = [name for name, tier in columns if tier == Sensitivity.RESTRICTED]
    restricted_readers = None
    if restricted and can_see_restricted_readers(user, dataset):
        restricted_readers = _restricted_readers(reads, restricted)
    return {
        "dataset": dataset.pk,
        "days": USAGE_DAYS,
        "perDay": per_day,
        "reads": totals["count"],
        "lastRead": totals["last"],
        "topReaders": [{"reader": _reader(r), "user": r["user__username"], "databaseRole": r["database_role"],
                        "reads": r["count"], "lastRead": r["last"]} for r in top],
        "neverReadColumns": never_read,
        "neverReadDays": NEVER_READ_DAYS,
        "restrictedColumns": restricted,
        "restrictedReaders": restricted_readers,
    }


def _restricted_readers(reads, restricted: list[str]) -> list[dict]:
    if connection.vendor == "postgresql":
        touching = reads.filter(columns__has_any_keys=restricted)  # jsonb ?| on the column array
        rows = (touching.values("user__username", "database_role", "allowed_by", "grant_id", "finding")
                .annotate(count=Count("id"), last=Max("occurred_at")).order_by("-last")[:200])
        return [{"reader": _reader(r), "user": r["user__username"], "databaseRole": r["database_role"],
                 "allowedBy": r["allowed_by"], "grant": r["grant_id"], "finding": r["finding"],
                 "reads": r["count"], "lastRead": r["last"]} for r in rows]
    # SQLite (the embedded demo) has no array containment: the latest reads, grouped here.
    wanted = {name.lower() for name in restricted}
    groups = {}
    for event in reads.select_related("user").order_by("-occurred_at")[:5000]:
        if not wanted & {name.lower() for name in event.columns or []}:
            continue
        key = (event.user.username if event.user else None, event.database_role, event.allowed_by,
               event.grant_id, event.finding)
        entry = groups.setdefault(key, {"count": 0, "last": event.occurred_at})
        entry["count"] += 1
    return [{"reader": username or f"role:{role}", "user": username, "databaseRole": role, "allowedBy": allowed,
             "grant": grant, "finding": finding, "reads": v["count"], "lastRead": v["last"]}
            for (username, role, allowed, grant, finding), v in groups.items()]


def access_event_filter(queryset, params) -> tuple:
    """Filters of the event list: ``after`` (id), ``dataset``, ``store``, ``user``, ``role``,
    ``finding``, ``action``. Returns (queryset, errors by parameter)."""
    errors = {}
    condition = Q()
    for name, field in (("after", "id__gt"), ("dataset", "dataset_id"), ("store", "store_id")):
        raw = params.get(name, "")
        if raw == "":
            continue
        if not raw.isdigit() or not 0 <= int(raw) <= 2**63 - 1:
            errors[name] = ["Must be a whole number from 0 to 9223372036854775807."]
            continue
        condition &= Q(**{field: int(raw)})
    if params.get("user"):
        condition &= Q(user__username=params["user"])
    if params.get("role"):
        condition &= Q(database_role=params["role"])
    if params.get("finding", "") != "":
        if params["finding"] not in ("true", "false"):
            errors["finding"] = ["Must be 'true' or 'false'."]
        else:
            condition &= Q(finding=params["finding"] == "true")
    if params.get("action", "") != "":
        if params["action"] not in AccessAction.values:
            errors["action"] = [f"Must be one of {', '.join(AccessAction.values)}."]
        else:
            condition &= Q(action=params["action"])
    return queryset.filter(condition), errors


# Alerts --------------------------------------------------------------------------------------


def alert_visible(*, user):
    """Alerts for those who work them (security engineers and admins), nobody else."""
    if not can_work_alerts(user):
        return Alert.objects.none()
    return Alert.objects.all()


def alert_list(*, user):
    """The inbox's alerts with what a row shows (person, assignee, the datasets the reader may
    see), newest activity first: a constant number of queries whatever the page holds."""
    return (
        alert_visible(user=user)
        .select_related("user", "assignee")
        .prefetch_related(Prefetch("datasets", queryset=dataset_visible(user=user).select_related("store")
                                   .order_by("qualified_name"), to_attr="visible_datasets"))
        .order_by("-last_seen_at", "-id")
    )


def alert_get(*, user, pk):
    """One alert the user may work (404 otherwise), with its people and visible datasets."""
    return get_object_or_404(alert_list(user=user).select_related("acknowledged_by", "resolved_by"), pk=pk)


def alert_evidence_list(*, user, alert, limit: int = 200) -> list:
    """An alert's evidence, newest first, with the access or audit event behind each piece; an
    event's dataset is shown only to readers who may see it (``event.visible_dataset``), and for
    the others an access event's relation, view, columns and statement, which name it too, are
    blanked (``event.dataset_hidden``; the rows are never saved from here)."""
    rows = list(
        AlertEvidence.objects.filter(alert=alert)
        .select_related("access_event__store", "access_event__user", "access_event__dataset",
                        "access_event__grant", "audit_event__dataset")
        .order_by("-occurred_at", "-id")[:limit]
    )
    dataset_ids = {row.access_event.dataset_id for row in rows if row.access_event and row.access_event.dataset_id}
    dataset_ids |= {row.audit_event.dataset_id for row in rows if row.audit_event and row.audit_event.dataset_id}
    visible = set(dataset_visible(user=user).filter(pk__in=dataset_ids).values_list("pk", flat=True)) if dataset_ids else set()
    for row in rows:
        for event in (row.access_event, row.audit_event):
            if event is not None:
                event.visible_dataset = event.dataset if event.dataset_id in visible else None
                event.dataset_hidden = bool(event.dataset_id) and event.visible_dataset is None
        event = row.access_event
        if event is not None and event.dataset_hidden:
            event.relation = event.via_view = event.fingerprint = event.statement = event.finding_reason = ""
            event.columns = []
    return rows


def alert_history(*, user, alert):
    """The audit events of one alert (acknowledged, assigned, snoozed, resolved, reopened), oldest first."""
    return audit_list(user=user).filter(object_type="alert", object_id=str(alert.pk)).order_by("id")


def alert_inbox_count(*, user) -> int:
    """Alerts waiting in the inbox: open (not acknowledged) and not snoozed; 0 for anyone else."""
    return alert_visible(user=user).filter(status=AlertStatus.OPEN).exclude(snoozed_condition()).count()


def alert_assignee_choices():
    """Who an alert can be assigned to: active security engineers and admins (people, not service accounts)."""
    return (User.objects.filter(Q(is_superuser=True) | Q(groups__company_role__slug="security_engineer"),
                                is_active=True, is_service_account=False)
            .distinct().order_by("username"))


# Webhook endpoints ---------------------------------------------------------------------------


def webhook_endpoint_visible(*, user):
    """The endpoints ``user`` reads and changes (``access.policies.can_change_webhook`` in SQL):
    an admin's are all of them; a security engineer's, those they created. An endpoint acts with
    its creator's visibility, so its deliveries are its creator's to read."""
    if not can_manage_webhooks(user):
        return WebhookEndpoint.objects.none()
    if user.is_superuser:
        return WebhookEndpoint.objects.all()
    return WebhookEndpoint.objects.filter(created_by=user)
