"""Which events go to which webhook endpoints: alerts (from ``notify``) and catalog events.

Catalog events are found after the fact, never inside the services that cause them, so a slow or
unreachable receiver can never slow down or fail a registration, a sync or an approval:

- ``dataset.breaking_change`` and ``column.restricted_added``: new dataset versions (the
  registration service and the warehouse sync both write them), read in id order from a cursor
  (``DetectorCursor(stream="webhooks.versions")``) and, because a long sync batch may commit
  versions with smaller ids after larger ones, the last ``VERSION_LOOKBACK`` again;
- ``grant.approved``: the audit trail (``request.approved``), read from its own cursor
  (``"webhooks.audit"``); audit events are appended under the chain's lock, so ids are in commit order;
- ``violation.created``: the lineage columns flagged as violations, each sent once per endpoint
  (``violation:<node id>``); an endpoint that subscribes gets the open ones once.

Deliveries are unique per (endpoint, event id), so scanning something twice sends it once.

Visibility: an endpoint acts with the visibility of the security engineer or admin who created it.
An event about a dataset goes to an endpoint only if its creator may see that dataset
(``catalog.selectors.dataset_visible``); an alert only if its creator may work alerts, and the
alert names only the datasets its creator may see. An endpoint whose creator is gone, deactivated
or no longer manages webhooks (left the security team) receives no catalog events and no alerts
(tests are still sent). Payloads hold
metadata only: names, versions, tiers, never column values or secrets.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from access.models import AuditEvent, Grant
from access.policies import can_manage_webhooks, can_work_alerts
from catalog.models import Dataset, DatasetVersion
from catalog.selectors import dataset_visible
from monitoring.models import Alert, DetectorCursor, Severity, WebhookEndpoint
from monitoring.webhook_deliveries import event_envelope, webhook_deliveries_enqueue

VERSION_LOOKBACK = timedelta(minutes=10)
SCAN_BATCH = 1000
RESTRICTED = "Restricted"


def _link(path: str) -> str:
    return f"{settings.CATALOG_BASE_URL}{path}"


def _creator_ok(endpoint: WebhookEndpoint) -> bool:
    """The endpoint's creator may still manage webhooks: active, and still a security engineer or an
    admin (someone who left the security team keeps seeing datasets, not who was granted what)."""
    creator = endpoint.created_by
    return creator is not None and creator.is_active and can_manage_webhooks(creator)


def alert_url(alert: Alert) -> str:
    return _link(reverse("monitoring:alert-detail", args=[alert.pk]))


def alert_envelope(alert: Alert, *, dataset_names: list[str]) -> dict:
    """The ``alert.raised`` event (one per alert and severity: an escalation is a new event)."""
    return event_envelope(
        event_id=f"alert:{alert.pk}:{alert.severity}", event_type="alert.raised", occurred_at=alert.last_seen_at,
        data={"alert": alert.pk, "rule": alert.rule, "severity": Severity(alert.severity).label,
              "title": alert.title, "summary": alert.summary, "suggestedAction": alert.suggested_action,
              "count": alert.count, "status": alert.status,
              "firstSeenAt": alert.first_seen_at.isoformat(), "lastSeenAt": alert.last_seen_at.isoformat(),
              "user": alert.user.username if alert.user_id else None, "databaseRole": alert.database_role,
              "datasets": dataset_names, "url": alert_url(alert)})


def alert_webhooks_enqueue(alert: Alert) -> int:
    """Deliver ``alert`` to every active endpoint whose minimum severity it reaches."""
    endpoints = list(WebhookEndpoint.objects.filter(active=True, min_severity__isnull=False,
                                                    min_severity__lte=alert.severity).select_related("created_by"))
    alert_datasets = list(alert.datasets.all().only("pk", "qualified_name"))
    items = []
    for endpoint in endpoints:
        if not _creator_ok(endpoint) or not can_work_alerts(endpoint.created_by):
            continue
        visible = set(dataset_visible(user=endpoint.created_by).filter(
            pk__in=[d.pk for d in alert_datasets]).values_list("pk", flat=True)) if alert_datasets else set()
        names = sorted(d.qualified_name for d in alert_datasets if d.pk in visible)
        items.append((endpoint.pk, alert_envelope(alert, dataset_names=names)))
    return webhook_deliveries_enqueue(items)


# --- Catalog events --------------------------------------------------------------------------


def _subscribed(event_type: str) -> list[WebhookEndpoint]:
    return [endpoint for endpoint in WebhookEndpoint.objects.filter(active=True).select_related("created_by")
            if event_type in endpoint.event_types and _creator_ok(endpoint)]


def _fan_out(events: list[tuple[dict, int, object]], endpoints: list[WebhookEndpoint]) -> list[tuple[int, dict]]:
    """``events``: (envelope, dataset id, when); each goes to the endpoints created before it whose
    creator may see its dataset (one query per endpoint)."""
    if not events or not endpoints:
        return []
    dataset_ids = {dataset_id for _, dataset_id, _ in events}
    items = []
    for endpoint in endpoints:
        visible = set(dataset_visible(user=endpoint.created_by).filter(pk__in=dataset_ids).values_list("pk", flat=True))
        items += [(endpoint.pk, envelope) for envelope, dataset_id, when in events
                  if dataset_id in visible and when >= endpoint.created_at]
    return items


def _cursor(stream: str, start) -> DetectorCursor:
    cursor = DetectorCursor.objects.select_for_update().filter(stream=stream).first()
    if cursor is None:
        DetectorCursor.objects.get_or_create(stream=stream, defaults={"last_id": start()})
        cursor = DetectorCursor.objects.select_for_update().get(stream=stream)
    return cursor


def _version_events(version: DatasetVersion) -> list[tuple[str, dict]]:
    dataset = version.dataset
    base = {"dataset": dataset.qualified_name, "datasetId": dataset.pk, "store": dataset.store.name,
            "version": version.number, "registeredBy": version.registered_by}
    events = []
    diff = version.diff or {}
    if version.is_breaking:
        changed = [{"name": change["name"], "fields": sorted(change["fields"])}
                   for change in diff.get("changed", []) if change.get("breaking")]
        events.append(("dataset.breaking_change", {
            **base, "title": f"Breaking change in {dataset.qualified_name} (version {version.number})",
            "summary": (f"Removed columns: {', '.join(diff.get('removed', [])) or 'none'}; "
                        f"changed columns: {', '.join(c['name'] for c in changed) or 'none'}."),
            "removedColumns": diff.get("removed", []), "changedColumns": changed,
            "url": _link(reverse("catalog:dataset-diff", args=[dataset.pk]))}))
    by_name = {column["name"]: column for column in version.columns or []}
    restricted = [name for name in diff.get("added", []) if by_name.get(name, {}).get("sensitivity") == RESTRICTED]
    restricted += [change["name"] for change in diff.get("changed", [])
                   if change.get("fields", {}).get("sensitivity", {}).get("to") == RESTRICTED]
    if restricted:
        events.append(("column.restricted_added", {
            **base, "title": f"New Restricted column{'s' if len(restricted) > 1 else ''} in {dataset.qualified_name}",
            "summary": f"Restricted now: {', '.join(restricted)} (version {version.number}).",
            "columns": restricted, "url": _link(reverse("catalog:dataset-detail", args=[dataset.pk]))}))
    return events


def _scan_versions(now) -> list[tuple[int, dict]]:
    endpoints = {t: _subscribed(t) for t in ("dataset.breaking_change", "column.restricted_added")}
    if not any(endpoints.values()):
        return []
    oldest = min(e.created_at for group in endpoints.values() for e in group)
    cursor = _cursor("webhooks.versions", lambda: DatasetVersion.objects.filter(created_at__lt=oldest)
                     .aggregate(m=Max("id"))["m"] or 0)
    versions = list(DatasetVersion.objects.filter(Q(pk__gt=cursor.last_id) | Q(created_at__gte=now - VERSION_LOOKBACK))
                    .filter(created_at__gte=oldest).select_related("dataset__store")
                    .only("pk", "number", "diff", "columns", "is_breaking", "registered_by", "created_at",
                          "dataset__id", "dataset__qualified_name", "dataset__store__name")
                    .order_by("pk")[:SCAN_BATCH])
    grouped = {t: [] for t in endpoints}
    for version in versions:
        for event_type, data in _version_events(version):
            envelope = event_envelope(event_id=f"{event_type}:version:{version.pk}", event_type=event_type,
                                      occurred_at=version.created_at, data=data)
            grouped[event_type].append((envelope, version.dataset_id, version.created_at))
    if versions:
        cursor.last_id = max(cursor.last_id, versions[-1].pk)
        cursor.save(update_fields=["last_id", "updated_at"])
    return [item for t, events in grouped.items() for item in _fan_out(events, endpoints[t])]


def _scan_audit() -> list[tuple[int, dict]]:
    endpoints = _subscribed("grant.approved")
    if not endpoints:
        return []
    oldest = min(e.created_at for e in endpoints)
    cursor = _cursor("webhooks.audit", lambda: AuditEvent.objects.filter(at__lt=oldest)
                     .aggregate(m=Max("id"))["m"] or 0)
    batch = list(AuditEvent.objects.filter(pk__gt=cursor.last_id).order_by("pk")
                 .values("pk", "action", "object_id", "at")[:SCAN_BATCH])
    if not batch:
        return []
    cursor.last_id = batch[-1]["pk"]
    cursor.save(update_fields=["last_id", "updated_at"])
    approved = {int(row["object_id"]): row for row in batch if row["action"] == "request.approved"
                and row["object_id"].isdigit()}
    events = []
    for grant in (Grant.objects.filter(request_id__in=approved).select_related("user", "dataset", "request")):
        row = approved[grant.request_id]
        events.append((event_envelope(event_id=f"grant.approved:{grant.pk}", event_type="grant.approved",
                                      occurred_at=row["at"], data={
            "grant": grant.pk, "request": grant.request_id, "dataset": grant.dataset.qualified_name,
            "datasetId": grant.dataset_id, "user": grant.user.username, "level": grant.get_level_display(),
            "columns": grant.columns, "environment": grant.request.environment,
            "startsAt": grant.starts_at.isoformat(), "endsAt": grant.ends_at.isoformat(),
            "title": f"Access to {grant.dataset.qualified_name} approved for {grant.user.username}",
            "summary": f"{grant.get_level_display()} access until {grant.ends_at:%Y-%m-%d %H:%M} UTC.",
            "url": _link(reverse("access:grant-detail", args=[grant.pk]))}), grant.dataset_id, row["at"]))
    return _fan_out(events, endpoints)


def _scan_violations() -> list[tuple[int, dict]]:
    from lineage.models import Node, NodeKind  # lineage builds on the catalog; monitoring reads it

    endpoints = _subscribed("violation.created")
    if not endpoints:
        return []
    from monitoring.models import WebhookDelivery

    nodes = list(Node.objects.filter(is_violation=True, kind=NodeKind.COLUMN)
                 .select_related("dataset").only("pk", "name", "effective_sensitivity", "unprotected_inflow",
                                                 "column__sensitivity", "dataset__id", "dataset__qualified_name")
                 .order_by("pk")[:SCAN_BATCH * 5])
    items = []
    for endpoint in endpoints:
        sent = set(WebhookDelivery.objects.filter(endpoint=endpoint, event_type="violation.created")
                   .values_list("event_id", flat=True))
        fresh = [node for node in nodes if f"violation:{node.pk}" not in sent]
        if not fresh:
            continue
        now = timezone.now()
        events = []
        for node in fresh:
            inflow = node.unprotected_inflow
            declared = node.column.sensitivity if node.column_id else None
            events.append((event_envelope(event_id=f"violation:{node.pk}", event_type="violation.created",
                                          occurred_at=now, data={
                "dataset": node.dataset.qualified_name, "datasetId": node.dataset_id, "column": node.name,
                "declaredSensitivity": _tier(declared), "unprotectedInflow": _tier(inflow),
                "title": f"Lineage violation: {node.dataset.qualified_name}.{node.name}",
                "summary": (f"{node.name} is declared {_tier(declared) or 'unknown'} but {_tier(inflow)} data "
                            "flows into it unprotected."),
                "url": _link(reverse("lineage:violation-list"))}), node.dataset_id, endpoint.created_at))
        items += _fan_out(events, [endpoint])
    return items


def _tier(value) -> str | None:
    from catalog.vocabulary import Sensitivity

    return Sensitivity(value).label if value is not None else None


def webhook_events_scan() -> int:
    """Find new catalog events and record their deliveries (sent after commit). Returns how many
    deliveries are new. Safe to run twice at once: the cursors are taken under a row lock."""
    now = timezone.now()
    with transaction.atomic():
        items = _scan_versions(now) + _scan_audit() + _scan_violations()
        return webhook_deliveries_enqueue(items)
