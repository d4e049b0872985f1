"""Shipper tokens: a log shipper's key for one store. A security engineer (or an admin) makes one
per store and log format; the key is shown once and only its SHA-256 digest is stored, as service
tokens are (access/service_tokens.py). The key opens /api/v1/monitoring/logs/ and nothing else."""

import secrets

from django.db import transaction
from django.utils import timezone

from access.audit import audit_record
from access.models import token_digest
from access.policies import can_read_audit
from catalog.errors import ApplicationError
from catalog.models import DataStore
from monitoring.models import LogFormat, ShipperToken

KEY_PREFIX = "shp_"


def can_manage_shipper_tokens(user) -> bool:
    """Security engineers and admins (who read the audit trail) manage shipper tokens; never a
    service account, so a leaked pipeline token cannot mint itself a log shipper."""
    return can_read_audit(user) and not getattr(user, "is_service_account", False)


def shipper_token_create(*, actor, store: DataStore, name: str, log_format: str = "",
                         remote_addr: str = "") -> tuple[ShipperToken, str]:
    """A new shipper token for ``store``; returns the row and the key (not stored)."""
    from monitoring.pull import PLATFORM_FORMATS

    if actor is not None and not can_manage_shipper_tokens(actor):
        raise ApplicationError("Only security engineers and admins make shipper tokens.")
    log_format = log_format or PLATFORM_FORMATS.get(store.platform, "")
    if log_format not in LogFormat.values:
        raise ApplicationError(f"'{log_format}' is not a log format the catalog reads; use one of "
                               f"{', '.join(LogFormat.values)}.")
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise ApplicationError("A shipper token needs a name of 1 to 64 characters.")
    key = KEY_PREFIX + secrets.token_hex(20)
    with transaction.atomic():
        token = ShipperToken.objects.create(
            store=store, log_format=log_format, name=name, digest=token_digest(key), prefix=key[:8],
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        audit_record(actor=actor, action="shipper_token.created", obj=token, remote_addr=remote_addr, details={
            "store": store.name, "name": name, "format": log_format, "prefix": token.prefix,
        })
    return token, key


def shipper_token_revoke(*, actor, token: ShipperToken, remote_addr: str = "") -> ShipperToken:
    """Revoke at once; revoking twice changes nothing."""
    with transaction.atomic():
        token = ShipperToken.objects.select_for_update().select_related("store").get(pk=token.pk)
        if token.revoked_at is not None:
            return token
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="shipper_token.revoked", obj=token, remote_addr=remote_addr,
                     details={"store": token.store.name, "name": token.name, "prefix": token.prefix})
    return token


def shipper_token_for_key(key: str) -> ShipperToken | None:
    """The live token of a key, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    token = ShipperToken.objects.select_related("store").filter(digest=token_digest(key)).first()
    if token is None or token.revoked_at is not None:
        return None
    return token
