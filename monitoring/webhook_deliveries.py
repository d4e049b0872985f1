"""Deliveries of outgoing webhooks: the body each kind of endpoint gets, the signature, the HTTP
request, and retries with backoff.

A delivery is one event for one endpoint, unique per (endpoint, event id), so an event enqueued
twice is sent once. An attempt is claimed with a conditional UPDATE (status pending and due; the
claim pushes ``next_attempt_at`` past the longest attempt), so two workers, or a task redelivered
after a worker died, never send it at the same time. A failed attempt waits ``BACKOFF`` before the
next one; after ``MONITORING_WEBHOOK_MAX_ATTEMPTS`` it is marked failed. Receivers may still see
an event twice (a worker that dies after sending and before recording); they deduplicate on ``id``.

The request: the URL is vetted again (``webhooks.webhook_url_vet``) and the connection goes to the
address that was vetted, with the URL's host name kept for the Host header and TLS (SNI and the
certificate check); no redirect is followed; connect and read time out after
``MONITORING_WEBHOOK_TIMEOUT`` seconds; at most ``MONITORING_WEBHOOK_RESPONSE_MAX_BYTES`` of the
answer are read. Errors recorded on the delivery never repeat the URL (its path can be a credential).
"""

import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
import time
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from access.policies import can_change_webhook, can_manage_webhooks
from catalog.errors import ApplicationError
from catalog.secrets import SecretUnavailable, secret_open
from monitoring.models import DeliveryStatus, Severity, WebhookDelivery, WebhookEndpoint, WebhookKind
from monitoring.webhooks import TEST_EVENT, TargetRefused, VettedTarget, webhook_url_vet

logger = logging.getLogger(__name__)

# Wait after the 1st, 2nd, ... failed attempt (the last one repeats if more attempts are allowed).
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(hours=1), timedelta(hours=6))
USER_AGENT = "governance-catalog-webhooks/1"
DUE_BATCH = 500
SIGNATURE_VERSION = "v1"
SEVERITY_COLOURS = {Severity.LOW: "#4a7bd0", Severity.MEDIUM: "#d0a000", Severity.HIGH: "#e06000",
                    Severity.CRITICAL: "#c00020"}


# --- Bodies ----------------------------------------------------------------------------------


def event_envelope(*, event_id: str, event_type: str, occurred_at: datetime, data: dict) -> dict:
    """The generic body: ``{id, type, occurredAt, data}`` (what is stored on the delivery)."""
    return {"id": event_id, "type": event_type, "occurredAt": occurred_at.isoformat().replace("+00:00", "Z"),
            "data": data}


def _headline(envelope: dict) -> str:
    data = envelope.get("data", {})
    return data.get("title") or data.get("summary") or envelope["type"]


def slack_escaped(text: str) -> str:
    """Text for Slack's mrkdwn (and the message's ``text``) as written: ``&``, ``<`` and ``>``
    escaped as Slack asks, so a string someone else controls (a sign-in name typed at the sign-in
    page, a warehouse role, an application name) can neither make a link (``<https://…|…>``) nor
    mention everyone (``<!channel>``) in the security team's channel."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(envelope: dict) -> dict:
    """A Slack incoming-webhook message: ``text`` (notifications, fallbacks) and Block Kit ``blocks``.
    The header is plain text; every mrkdwn field and ``text`` are escaped (``slack_escaped``)."""
    data = envelope.get("data", {})
    headline = _headline(envelope)
    severity = data.get("severity")
    text = f"[{severity}] {headline}" if severity else headline
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": text[:150]}}]
    if data.get("summary") and data.get("summary") != headline:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": slack_escaped(data["summary"][:2900])}})
    if data.get("suggestedAction"):
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"*Suggested action:* {slack_escaped(data['suggestedAction'][:2800])}"}})
    context = [{"type": "mrkdwn", "text": f"`{envelope['type']}` · {envelope['occurredAt']}"}]
    blocks.append({"type": "context", "elements": context})
    if data.get("url"):
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": "Open in the catalog"}, "url": data["url"]}]})
    return {"text": slack_escaped(text) + (f" <{data['url']}|Open>" if data.get("url") else ""), "blocks": blocks}


def teams_body(envelope: dict) -> dict:
    """A Microsoft Teams message with an Adaptive Card, as a Teams Workflows "when a webhook request is
    received" flow and the classic incoming webhook connector both accept."""
    data = envelope.get("data", {})
    headline = _headline(envelope)
    severity = data.get("severity")
    # Headline and summary as RichTextBlock text runs, which Teams shows as written: a TextBlock
    # renders Markdown, so a sign-in name like "[Reset your password](https://…)" would be a link.
    body = [{"type": "RichTextBlock", "inlines": [{
        "type": "TextRun", "size": "Medium", "weight": "Bolder", "text": f"[{severity}] {headline}" if severity else headline,
        **({"color": "Attention"} if severity in ("High", "Critical") else {})}]}]
    if data.get("summary") and data.get("summary") != headline:
        body.append({"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": data["summary"]}]})
    facts = [{"title": "Event", "value": envelope["type"]}, {"title": "When", "value": envelope["occurredAt"]}]
    if data.get("suggestedAction"):
        facts.append({"title": "Suggested action", "value": data["suggestedAction"]})
    if data.get("dataset"):
        facts.append({"title": "Dataset", "value": data["dataset"]})
    body.append({"type": "FactSet", "facts": facts})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": body}
    if data.get("url"):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in the catalog", "url": data["url"]}]
    return {"type": "message", "summary": headline[:150], "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def request_body(kind: str, envelope: dict) -> bytes:
    shaped = {WebhookKind.SLACK: slack_body, WebhookKind.TEAMS: teams_body}.get(kind, lambda e: e)(envelope)
    return json.dumps(shaped, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`` (docs/monitoring.md shows how to verify)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


# --- The request -----------------------------------------------------------------------------


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the vetted address; the Host header keeps the URL's host name."""

    def __init__(self, target: VettedTarget, address: str, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, with TLS for the URL's host name (SNI and certificate check), not for the address."""

    def __init__(self, target: VettedTarget, address: str, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class DeliveryFailed(Exception):
    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.message, self.status_code = message, status_code


def _post(target: VettedTarget, body: bytes, headers: dict) -> int:
    """POST to the first vetted address that accepts a connection; the answer's status (2xx) or
    DeliveryFailed. Never follows a redirect (a 3xx is a failure)."""
    timeout = settings.MONITORING_WEBHOOK_TIMEOUT
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    refused = "no address"
    for address in target.addresses:
        connection = connection_class(target, address, timeout)
        try:
            try:
                connection.connect()
            except (ConnectionError, socket.timeout, OSError) as error:
                if isinstance(error, ssl.SSLError):
                    raise DeliveryFailed(f"TLS failed: {error.reason or 'handshake error'}.") from None
                refused = "timed out" if isinstance(error, socket.timeout) else (error.strerror or type(error).__name__)
                continue  # the next address, if the name has several
            try:
                connection.request("POST", target.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read(settings.MONITORING_WEBHOOK_RESPONSE_MAX_BYTES)
            except socket.timeout:
                raise DeliveryFailed(f"No answer within {timeout} s.") from None
            except (http.client.HTTPException, OSError) as error:
                raise DeliveryFailed(f"The connection failed: {type(error).__name__}.") from None
        finally:
            connection.close()
        if 200 <= response.status < 300:
            return response.status
        if 300 <= response.status < 400:
            raise DeliveryFailed(f"HTTP {response.status}: redirects are not followed; use the final URL.",
                                 response.status)
        raise DeliveryFailed(f"HTTP {response.status} {response.reason}"[:200], response.status)
    raise DeliveryFailed(f"Could not connect to {target.host}:{target.port} ({refused}).")


def _send(delivery: WebhookDelivery) -> int:
    endpoint = delivery.endpoint
    try:
        target = webhook_url_vet(endpoint.url)
    except TargetRefused as refusal:
        raise DeliveryFailed(f"Refused: {refusal}") from None
    body = request_body(endpoint.kind, delivery.payload)
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Catalog-Event": delivery.event_type, "X-Catalog-Delivery": str(delivery.pk),
               "X-Catalog-Timestamp": str(timestamp)}
    if endpoint.secret_id:
        try:
            headers["X-Catalog-Signature"] = signature(secret_open(endpoint.secret), timestamp, body)
        except SecretUnavailable:
            raise DeliveryFailed("The signing secret cannot be opened (master key missing); nothing was sent.") from None
    return _post(target, body, headers)


# --- Attempts --------------------------------------------------------------------------------


def _lease() -> timedelta:
    return timedelta(seconds=settings.MONITORING_WEBHOOK_TIMEOUT * 3 + 60)


def webhook_delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery | None:
    """One attempt of a due delivery; None when it is not due or someone else holds it."""
    now = now or timezone.now()
    claimed = (WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
               .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
               .update(next_attempt_at=now + _lease(), attempts=F("attempts") + 1))
    if claimed != 1:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint__secret").get(pk=delivery_id)
    status_code, error = None, ""
    if not delivery.endpoint.active:
        error = "The endpoint is inactive."
    else:
        try:
            status_code = _send(delivery)
        except DeliveryFailed as failure:
            status_code, error = failure.status_code, failure.message
    if not error:
        fields = {"status": DeliveryStatus.DELIVERED, "delivered_at": timezone.now(), "next_attempt_at": None,
                  "last_status_code": status_code, "last_error": ""}
    elif delivery.attempts >= settings.MONITORING_WEBHOOK_MAX_ATTEMPTS or not delivery.endpoint.active:
        fields = {"status": DeliveryStatus.FAILED, "next_attempt_at": None, "last_status_code": status_code,
                  "last_error": error[:500]}
    else:
        wait = BACKOFF[min(delivery.attempts, len(BACKOFF)) - 1]
        fields = {"next_attempt_at": now + wait, "last_status_code": status_code, "last_error": error[:500]}
    if error:
        logger.warning("Webhook delivery %s to endpoint %s failed (attempt %s): %s", delivery.pk,
                       delivery.endpoint_id, delivery.attempts, error)
    WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(**fields)
    delivery.refresh_from_db()
    return delivery


def webhook_deliveries_due(*, now: datetime | None = None, limit: int = DUE_BATCH) -> list[int]:
    """The pending deliveries whose (next) attempt is due, oldest first."""
    now = now or timezone.now()
    return list(WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
                .order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit])


def _enqueue_after_commit(delivery_ids) -> None:
    from monitoring.webhook_tasks import webhook_deliver

    ids = list(delivery_ids)
    if ids:
        transaction.on_commit(lambda: [webhook_deliver.delay(pk) for pk in ids], robust=True)


def webhook_deliveries_enqueue(items: list[tuple[int, dict]]) -> int:
    """Record deliveries of events to endpoints (``[(endpoint_id, envelope), ...]``) and send each
    after commit; an (endpoint, event id) already recorded is not recorded again. Returns how many
    are new."""
    if not items:
        return 0
    now = timezone.now()
    rows = [WebhookDelivery(endpoint_id=endpoint_id, event_type=envelope["type"], event_id=envelope["id"][:64],
                            payload=envelope, next_attempt_at=now) for endpoint_id, envelope in items]
    with transaction.atomic():
        known = set(WebhookDelivery.objects.filter(
            endpoint_id__in={row.endpoint_id for row in rows}, event_id__in={row.event_id for row in rows},
        ).values_list("endpoint_id", "event_id"))
        fresh = [row for row in rows if (row.endpoint_id, row.event_id) not in known]
        WebhookDelivery.objects.bulk_create(fresh, ignore_conflicts=True)
        ids = list(WebhookDelivery.objects.filter(
            endpoint_id__in={row.endpoint_id for row in fresh}, event_id__in={row.event_id for row in fresh},
            attempts=0, status=DeliveryStatus.PENDING).values_list("pk", flat=True)) if fresh else []
        _enqueue_after_commit(ids)
    return len(fresh)


def webhook_delivery_retry(*, principal, delivery: WebhookDelivery, now: datetime | None = None) -> WebhookDelivery:
    """One more attempt now, for a failed or a waiting delivery (a manager's retry)."""
    if not can_manage_webhooks(principal):
        raise ApplicationError("Only security engineers and admins manage webhooks.")
    if not can_change_webhook(principal, delivery.endpoint):
        raise ApplicationError("Only the endpoint's creator or an admin retries its deliveries.")
    now = now or timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.status == DeliveryStatus.DELIVERED:
            raise ApplicationError("This delivery was delivered already.")
        delivery.status, delivery.next_attempt_at = DeliveryStatus.PENDING, now
        delivery.save(update_fields=["status", "next_attempt_at"])
        _enqueue_after_commit([delivery.pk])
    return delivery


def webhook_endpoint_test(*, principal, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Send a ``webhook.test`` event to ``endpoint`` now and return its delivery (with the outcome)."""
    if not can_manage_webhooks(principal):
        raise ApplicationError("Only security engineers and admins manage webhooks.")
    if not can_change_webhook(principal, endpoint):
        raise ApplicationError("Only the endpoint's creator or an admin tests it.")
    now = timezone.now()
    event_id = f"test:{uuid.uuid4().hex}"
    envelope = event_envelope(event_id=event_id, event_type=TEST_EVENT, occurred_at=now, data={
        "title": f"Test event from the catalog for {endpoint.name}",
        "summary": "If you can read this, the catalog reaches this endpoint.",
        "url": f"{settings.CATALOG_BASE_URL}/monitoring/webhooks/",
        "requestedBy": getattr(principal, "username", ""),
    })
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type=TEST_EVENT, event_id=event_id,
                                              payload=envelope, next_attempt_at=now)
    return webhook_delivery_attempt(delivery_id=delivery.pk, now=now) or delivery
