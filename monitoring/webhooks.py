"""Outgoing webhook endpoints: where they may point, and adding, changing and removing them.

An endpoint is an integration a security engineer or an admin configures (docs/monitoring.md,
"Where alerts go"): it receives alerts at or above its ``min_severity`` and the catalog events it
subscribes to (``EVENT_TYPES``). Because the catalog's own workers make the request, where it may
point is checked when it is saved and again at every delivery (a name can resolve elsewhere
tomorrow): http or https only, never the catalog's own host, and never a loopback, private,
link-local, multicast, reserved or unspecified address (also inside a 6to4 address), unless the operator lists the host or its
network in ``MONITORING_WEBHOOK_ALLOWED_PRIVATE``. The delivery then connects to the address
that was vetted (``webhook_deliveries``), so a resolver that answers differently the second time
cannot swap it.

The signing secret is made by the catalog, returned once by ``webhook_endpoint_create`` and
sealed (``catalog.secrets``); it never appears in answers, logs or the audit trail. Nor does the
URL's path: Slack and Teams URLs are credentials themselves, so pages, answers and the audit trail
show ``url_redacted``.
"""

import ipaddress
import secrets as stdlib_secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from access.audit import audit_record
from access.policies import can_change_webhook, can_manage_webhooks
from catalog.secrets import secret_seal
from catalog.errors import ApplicationError
from monitoring.models import Severity, WebhookEndpoint, WebhookKind

# Catalog events an endpoint can subscribe to (alerts come through ``min_severity``; the
# ``alert.raised`` type is what their deliveries are called).
EVENT_TYPES = {
    "dataset.breaking_change": "A new version of a dataset removed a column or changed a column's type or mode.",
    "column.restricted_added": "A dataset gained a Restricted column (a new column, or one raised to Restricted).",
    "violation.created": "A column is declared less sensitive than what flows into it unprotected (lineage).",
    "grant.approved": "An access request was approved (a grant was made).",
    "alert.raised": "A monitoring alert opened or got worse (sent per the endpoint's minimum severity).",
}
TEST_EVENT = "webhook.test"
NAME_MAX = 100
URL_MAX = 1000
SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class VettedTarget:
    """Where one delivery goes: the URL's parts and the addresses its host resolved to, all allowed."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]


class TargetRefused(Exception):
    """A webhook URL the catalog will not call; the message names the reason, never the path."""


def _allowed_private() -> tuple[set[str], list]:
    names, networks = set(), []
    for entry in settings.MONITORING_WEBHOOK_ALLOWED_PRIVATE:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    return names, networks


def _catalog_hosts() -> set[str]:
    hosts = {h.lower().rstrip(".") for h in settings.ALLOWED_HOSTS if h and h != "*"}
    base = urlsplit(settings.CATALOG_BASE_URL).hostname
    if base:
        hosts.add(base.lower().rstrip("."))
    return hosts


def _is_catalog_host(host: str) -> bool:
    for entry in _catalog_hosts():
        if entry.startswith("."):  # Django's ".example.com": the domain and its subdomains
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def _address_problem(address) -> str:
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 6 and address.sixtofour is not None:
        # 6to4 (2002::/16) carries an IPv4 address that a relay or a local tunnel delivers to:
        # 2002:7f00:1:: is 127.0.0.1 (Python 3.11 counts 2002::/16 as global).
        if problem := _address_problem(address.sixtofour):
            return problem
    for test, word in (("is_loopback", "a loopback"), ("is_unspecified", "an unspecified"),
                       ("is_link_local", "a link-local"), ("is_multicast", "a multicast"),
                       ("is_private", "a private"), ("is_reserved", "a reserved")):
        if getattr(address, test):
            return word
    if not address.is_global:
        return "a non-public"
    return ""


def webhook_url_vet(url: str) -> VettedTarget:
    """Check ``url`` now (resolving its host) and say where to connect; raises TargetRefused."""
    url = (url or "").strip()
    if not url:
        raise TargetRefused("A URL is required.")
    if len(url) > URL_MAX:
        raise TargetRefused(f"At most {URL_MAX} characters.")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise TargetRefused("A URL has no spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("Not a valid URL (check the port).") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("Only http:// and https:// URLs are allowed.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("No user name or password in the URL: receivers verify the signature instead.")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise TargetRefused("The URL needs a host name.")
    if parts.fragment:
        raise TargetRefused("A webhook URL has no #fragment.")
    port = port or (443 if scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    names, networks = _allowed_private()
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    literal_listed = literal is not None and any(literal.version == n.version and literal in n for n in networks)
    if _is_catalog_host(host) and host not in names and not literal_listed:
        raise TargetRefused(f"{host} is the catalog's own host: a webhook cannot call the catalog itself.")
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            raise TargetRefused(f"{host} does not resolve to an address.") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise TargetRefused(f"{host} does not resolve to an address.")
    # The operator's list allows a host by name, or each address by a network holding it.
    for address in [] if host in names else addresses:
        problem = _address_problem(address)
        if problem and not any(address.version == n.version and address in n for n in networks):
            shown = host if literal is not None else f"{host} resolves to {address}, which"
            raise TargetRefused(
                f"{shown} is {problem} address; webhooks go to public addresses unless the operator "
                "lists it in MONITORING_WEBHOOK_ALLOWED_PRIVATE.")
    return VettedTarget(scheme=scheme, host=host, port=port, path=path, addresses=tuple(str(a) for a in addresses))


def url_redacted(url: str) -> str:
    """What pages, answers and the audit trail show of a URL: scheme, host, port and the first path
    segment (Slack's and Teams' URLs carry their credential in the rest)."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "(invalid URL)"
    segments = [segment for segment in parts.path.split("/") if segment]
    shown = f"{parts.scheme}://{netloc}/"
    if segments:
        shown += segments[0] + ("/…" if len(segments) > 1 or parts.query else "")
    elif parts.query:
        shown += "…"
    return shown


# --- Managing endpoints ----------------------------------------------------------------------


def _fields_clean(*, name, url, kind, min_severity, event_types, active, instance=None) -> dict:
    """The endpoint's fields as stored, or ValidationError naming every bad field."""
    errors: dict[str, list[str]] = {}
    cleaned = {}
    if name is not None:
        name = str(name).strip()
        if not name or len(name) > NAME_MAX:
            errors["name"] = [f"A name of 1 to {NAME_MAX} characters."]
        elif WebhookEndpoint.objects.filter(name__iexact=name).exclude(pk=getattr(instance, "pk", None)).exists():
            errors["name"] = [f"An endpoint named '{name}' exists already."]
        else:
            cleaned["name"] = name
    if url is not None:
        try:
            webhook_url_vet(str(url))
        except TargetRefused as refusal:
            errors["url"] = [str(refusal)]
        else:
            cleaned["url"] = str(url).strip()
    if kind is not None:
        if kind not in WebhookKind.values:
            errors["kind"] = [f"One of: {', '.join(WebhookKind.values)}."]
        else:
            cleaned["kind"] = kind
    if min_severity is not ...:
        if min_severity in (None, ""):
            cleaned["min_severity"] = None
        else:
            severity = severity_parse(min_severity)
            if severity is None:
                errors["min_severity"] = ["One of: Low, Medium, High, Critical (or empty: no alerts)."]
            else:
                cleaned["min_severity"] = severity
    if event_types is not None:
        if not isinstance(event_types, (list, tuple)) or not all(isinstance(t, str) for t in event_types):
            errors["event_types"] = ["A list of event types."]
        else:
            unknown = sorted(set(event_types) - set(EVENT_TYPES) - {"alert.raised"})
            if unknown:
                errors["event_types"] = [f"Unknown event type '{unknown[0]}'; use: {', '.join(sorted(EVENT_TYPES))}."]
            else:
                # alert.raised is governed by min_severity, not by a subscription
                cleaned["event_types"] = sorted(set(event_types) - {"alert.raised"})
    if active is not None:
        if not isinstance(active, bool):
            errors["active"] = ["true or false."]
        else:
            cleaned["active"] = active
    if errors:
        raise ValidationError(errors)
    return cleaned


def severity_parse(value) -> int | None:
    """A severity from its label (case-insensitive) or number; None when it is neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value in Severity.values else None
    text = str(value).strip().lower()
    for severity in Severity:
        if text in (severity.label.lower(), str(severity.value)):
            return severity.value
    return None


def _checked(principal, endpoint: WebhookEndpoint | None = None) -> None:
    if not can_manage_webhooks(principal):
        raise ApplicationError("Only security engineers and admins manage webhooks.")
    if endpoint is not None and not can_change_webhook(principal, endpoint):
        raise ApplicationError("Only the endpoint's creator or an admin changes it.")


def _audit_details(endpoint: WebhookEndpoint) -> dict:
    # Never the secret nor the URL's path (Slack's and Teams' URLs are credentials).
    return {"name": endpoint.name, "kind": endpoint.kind, "url": url_redacted(endpoint.url),
            "min_severity": endpoint.get_min_severity_display() if endpoint.min_severity else "",
            "event_types": list(endpoint.event_types), "active": endpoint.active}


@sensitive_variables("secret")
def webhook_endpoint_create(*, principal, name: str, url: str, kind: str = WebhookKind.GENERIC,
                            min_severity=None, event_types=(), active: bool = True,
                            remote_addr: str = "") -> tuple[WebhookEndpoint, str]:
    """A new endpoint; returns it and its signing secret (shown once, stored sealed)."""
    _checked(principal)
    cleaned = _fields_clean(name=name, url=url, kind=kind, min_severity=min_severity,
                            event_types=list(event_types or []), active=active)
    if "min_severity" not in cleaned:
        cleaned["min_severity"] = None
    if cleaned["min_severity"] is None and not cleaned["event_types"]:
        raise ValidationError({"event_types": ["Choose a minimum alert severity or at least one event type: "
                                               "otherwise nothing would be sent."]})
    secret = SECRET_PREFIX + stdlib_secrets.token_urlsafe(32)
    with transaction.atomic():
        endpoint = WebhookEndpoint(created_by=principal if getattr(principal, "pk", None) else None, **cleaned)
        endpoint.secret = secret_seal(secret)
        endpoint.full_clean(exclude=["url", "secret"])  # the URL was vetted above (URLField refuses some hosts)
        endpoint.save()
        audit_record(actor=principal, action="webhook.created", obj=endpoint, remote_addr=remote_addr,
                     details=_audit_details(endpoint))
    return endpoint, secret


def webhook_endpoint_update(*, principal, endpoint: WebhookEndpoint, remote_addr: str = "", **changes) -> WebhookEndpoint:
    """Change name, url, kind, min_severity, event_types or active (only the keys given)."""
    _checked(principal, endpoint)
    known = {"name", "url", "kind", "min_severity", "event_types", "active"}
    if unknown := sorted(set(changes) - known):
        raise ValidationError({unknown[0]: ["This field cannot be changed."]})
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        cleaned = _fields_clean(
            name=changes.get("name"), url=changes.get("url"), kind=changes.get("kind"),
            min_severity=changes["min_severity"] if "min_severity" in changes else ...,
            event_types=changes.get("event_types"), active=changes.get("active"), instance=endpoint)
        before, old_url = _audit_details(endpoint), endpoint.url
        for field, value in cleaned.items():
            setattr(endpoint, field, value)
        if endpoint.min_severity is None and not endpoint.event_types:
            raise ValidationError({"event_types": ["Choose a minimum alert severity or at least one event type: "
                                                   "otherwise nothing would be sent."]})
        after = _audit_details(endpoint)
        changed = {key: {"from": before[key], "to": after[key]} for key in after if before[key] != after[key]}
        if endpoint.url != old_url:  # also when only the (redacted) path changed
            changed.setdefault("url", {"from": before["url"], "to": after["url"]})
        if not changed:
            return endpoint
        endpoint.save()
        audit_record(actor=principal, action="webhook.changed", obj=endpoint, remote_addr=remote_addr,
                     details={"name": endpoint.name, "changes": changed})
    return endpoint


def webhook_endpoint_remove(*, principal, endpoint: WebhookEndpoint, remote_addr: str = "") -> None:
    """Remove an endpoint, its secret and its deliveries."""
    _checked(principal, endpoint)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        details = _audit_details(endpoint)
        audit_record(actor=principal, action="webhook.removed", obj=endpoint, remote_addr=remote_addr, details=details)
        secret = endpoint.secret
        endpoint.delete()
        if secret is not None:
            secret.delete()
