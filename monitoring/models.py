"""Who actually read what in the warehouses: access events taken from the stores' audit logs.

An ``AccessEvent`` is one relation read or written by one logged statement. Events form a stream
ordered by ``id`` (detectors read it from the last id they handled); each carries a ``record_key``
unique per store, taken from the log record itself, so the same log line pulled and pushed, or
read again after a crash, is recorded once.
"""

from django.conf import settings
from django.db import models


class LogFormat(models.TextChoices):
    PGAUDIT = "pgaudit", "PostgreSQL pgaudit (csvlog)"
    SERVER_AUDIT = "server_audit", "MariaDB server_audit"


class EventSource(models.TextChoices):
    PULL = "pull", "Pulled"
    PUSH = "push", "Pushed"


class AccessAction(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"


class AccessEvent(models.Model):
    store = models.ForeignKey("catalog.DataStore", on_delete=models.CASCADE, related_name="access_events")
    record_key = models.CharField(max_length=200, help_text="Unique per store: the log record it came from.")
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=8, choices=EventSource.choices)
    log_format = models.CharField(max_length=16, choices=LogFormat.choices)
    database_role = models.CharField(max_length=128, help_text="The role or user name the warehouse logged.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="access_events",
        help_text="The catalog user whose warehouse_role this is; empty for an unmapped role.",
    )
    client_address = models.GenericIPAddressField(null=True, blank=True)
    application = models.CharField(max_length=128, blank=True)
    dataset = models.ForeignKey(
        "catalog.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="access_events",
    )
    relation = models.CharField(max_length=600, help_text="The relation as logged (schema.table).")
    via_view = models.CharField(max_length=600, blank=True, help_text="The view read, when resolved to its base.")
    action = models.CharField(max_length=8, choices=AccessAction.choices)
    columns = models.JSONField(default=list, blank=True, help_text="Columns read or written, as the catalog names them.")
    rows = models.BigIntegerField(null=True, blank=True)
    sensitivity = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="The tier of what was accessed when it happened: the highest of the columns read, or the "
                  "dataset's tier when the log names no column; null for a relation the catalog does not know.",
    )
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the statement with its literals replaced.")
    statement = models.TextField(blank=True, help_text="The normalized statement: literals replaced by ?.")
    allowed_by = models.CharField(max_length=32, blank=True, help_text="'standing', 'owner', 'grant #N', ... or empty.")
    grant = models.ForeignKey("access.Grant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    finding = models.BooleanField(default=False, help_text="Nothing in the catalog allowed this access.")
    finding_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["store", "record_key"], name="uniq_access_event_record")]
        indexes = [
            models.Index(fields=["dataset", "occurred_at"], name="access_event_dataset_time"),
            models.Index(fields=["user", "occurred_at"], name="access_event_user_time"),
            # Detectors: an unmapped role's reads over time (volume baseline, places seen).
            models.Index(fields=["store", "database_role", "occurred_at"], name="access_event_role_time"),
            models.Index(fields=["finding", "id"], name="access_event_finding"),
        ]

    def __str__(self) -> str:
        return f"{self.database_role} {self.action} {self.relation} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class UnparsedStatement(models.Model):
    """A statement shape the parser could not read, kept as its fingerprint (never literal values)
    and counted, so nothing is silently dropped."""

    store = models.ForeignKey("catalog.DataStore", on_delete=models.CASCADE, related_name="unparsed_statements")
    fingerprint = models.CharField(max_length=64)
    statement = models.TextField(blank=True, help_text="The statement with literals scrubbed.")
    error = models.CharField(max_length=300, blank=True)
    count = models.PositiveBigIntegerField(default=0)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "fingerprint"], name="uniq_unparsed_statement")]


class UnparsedRecord(models.Model):
    """A log record whose statement could not be read and that names no relation (server_audit), so
    no access event carries its key: kept by key alone, so reading it again does not count it twice."""

    store = models.ForeignKey("catalog.DataStore", on_delete=models.CASCADE, related_name="+")
    record_key = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "record_key"], name="uniq_unparsed_record")]


class LogPosition(models.Model):
    """How far the pull has read a store's audit log: the file and the byte offset after the last
    complete record taken in. Advanced in the same transaction as the events it covers."""

    store = models.OneToOneField("catalog.DataStore", on_delete=models.CASCADE, related_name="log_position")
    log_format = models.CharField(max_length=16, choices=LogFormat.choices)
    pull_enabled = models.BooleanField(default=True, help_text="The periodic task pulls this store's log.")
    file = models.CharField(
        max_length=1024, blank=True,
        help_text="PostgreSQL: the csvlog file read last (relative to the data directory); MariaDB: the "
                  "server_audit file's path on the catalog's host.",
    )
    offset = models.BigIntegerField(default=0)
    pulled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)


class ShipperToken(models.Model):
    """A log shipper's key for one store: it may only POST that store's audit log lines to
    /api/v1/monitoring/logs/. Only the SHA-256 digest is stored (as service tokens)."""

    store = models.ForeignKey("catalog.DataStore", on_delete=models.CASCADE, related_name="shipper_tokens")
    log_format = models.CharField(max_length=16, choices=LogFormat.choices)
    name = models.CharField(max_length=64)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


# --- Alerts ------------------------------------------------------------------------------------
# Detectors (monitoring/detectors.py) read two streams in id order, the access events above and
# the catalog's own audit trail, and raise alerts. An alert is one (rule, subject) while it is not
# resolved: a detector that fires again for the same subject adds evidence and counts up instead of
# opening a second alert. Evidence is unique per (alert, event), so an event delivered twice
# (at-least-once consumption) counts once.


class Severity(models.IntegerChoices):
    LOW = 10, "Low"
    MEDIUM = 20, "Medium"
    HIGH = 30, "High"
    CRITICAL = 40, "Critical"


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    rule = models.CharField(max_length=64, help_text="The detector that raised it (monitoring/detectors.py).")
    subject_key = models.CharField(max_length=200, help_text="What the alert is about: 'user:12', 'grant:5', ...")
    severity = models.PositiveSmallIntegerField(choices=Severity.choices)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    title = models.CharField(max_length=300)
    summary = models.TextField(blank=True, help_text="What happened, in words, without literal values read.")
    suggested_action = models.TextField(blank=True)
    count = models.PositiveIntegerField(default=1, help_text="How many times the detector fired on this subject.")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="alerts_about", help_text="The person the alert is about, if any.")
    database_role = models.CharField(max_length=128, blank=True, help_text="The warehouse role, for unmapped ones.")
    datasets = models.ManyToManyField("catalog.Dataset", blank=True, related_name="alerts")
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="alerts_assigned")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    resolution_note = models.TextField(blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True, help_text="Hidden from the inbox until then.")

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "subject_key"], condition=~models.Q(status="resolved"),
                                    name="uniq_unresolved_alert_per_rule_subject"),
        ]
        indexes = [models.Index(fields=["status", "-last_seen_at"], name="alert_status_seen")]

    def __str__(self) -> str:
        return f"{self.get_severity_display()}: {self.title}"

    def concerned_user_ids(self) -> set[int]:
        """The people the alert is about: its person, and both of a rubber-stamp pair
        ('pair:<requester>:<approver>')."""
        ids = {self.user_id} if self.user_id else set()
        kind, _, rest = self.subject_key.partition(":")
        if kind == "pair":
            ids |= {int(part) for part in rest.split(":") if part.isdigit()}
        return ids


class AlertEvidence(models.Model):
    """One event behind an alert: an access event or an audit event (linked), or for detectors
    that look at state rather than an event (a deadline passed, a permission unused) a key of its own."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="evidence")
    access_event = models.ForeignKey(AccessEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    audit_event = models.ForeignKey("access.AuditEvent", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    evidence_key = models.CharField(max_length=200, help_text="'access:<id>', 'audit:<id>' or the detector's own key.")
    occurred_at = models.DateTimeField()
    description = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["alert", "evidence_key"], name="uniq_alert_evidence")]


class DetectorCursor(models.Model):
    """How far the detectors have read a stream ('access' events or the 'audit' trail): the last
    id handled. Advanced in the same transaction as the alerts raised from the batch."""

    stream = models.CharField(max_length=32, unique=True)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


# --- Outgoing webhooks ---------------------------------------------------------------------------


class WebhookKind(models.TextChoices):
    GENERIC = "generic", "Generic JSON (signed)"
    SLACK = "slack", "Slack"
    TEAMS = "teams", "Microsoft Teams"


class WebhookEndpoint(models.Model):
    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=1000)
    kind = models.CharField(max_length=16, choices=WebhookKind.choices, default=WebhookKind.GENERIC)
    secret = models.OneToOneField("catalog.Secret", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+", help_text="HMAC-SHA256 key of a generic webhook (sealed).")
    min_severity = models.PositiveSmallIntegerField(choices=Severity.choices, null=True, blank=True,
                                                    help_text="Alerts at or above this severity; empty: no alerts.")
    event_types = models.JSONField(default=list, blank=True,
                                   help_text="Catalog events it subscribes to (monitoring/webhooks.py EVENT_TYPES).")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    event_id = models.CharField(max_length=64, help_text="Unique per endpoint: the same event is delivered once.")
    payload = models.JSONField(help_text="The catalog's event body (before Slack/Teams shaping); no secrets.")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "event_id"], name="uniq_webhook_delivery_event")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]
