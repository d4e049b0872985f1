"""Service tokens: the catalog's own API keys for pipelines. Create (and so rotate: a new token
for the same account while the old one keeps working), revoke, and record use."""

import datetime as dt
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from access.audit import audit_record
from access.models import ServiceToken, ServiceTokenAddress, User, token_digest
from catalog.errors import ApplicationError

# Use is written at most this often per token, so a busy pipeline does not write on every call.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def service_token_create(*, user: User, actor=None, days: int | None = None, remote_addr: str = "") -> tuple[ServiceToken, str]:
    """Create a token for a user, valid ``days`` (``SERVICE_TOKEN_TTL_DAYS`` by default). The
    account's other tokens keep working, so a pipeline can switch to the new key before the old
    one is revoked. Returns the token row and the key, which is not stored."""
    days = settings.SERVICE_TOKEN_TTL_DAYS if days is None else days
    if days < 1 or days > settings.SERVICE_TOKEN_TTL_DAYS:
        raise ApplicationError(f"A token lives from 1 to {settings.SERVICE_TOKEN_TTL_DAYS} days.")
    key = secrets.token_hex(20)
    with transaction.atomic():
        token = ServiceToken.objects.create(
            user=user, digest=token_digest(key), prefix=key[:8],
            created_by=actor if getattr(actor, "pk", None) else None,
            expires_at=timezone.now() + dt.timedelta(days=days),
        )
        audit_record(actor=actor, action="token.created", obj=token, remote_addr=remote_addr, details={
            "account": user.username, "prefix": token.prefix, "expires_at": token.expires_at.isoformat(),
        })
    return token, key


def service_token_revoke(*, token: ServiceToken, actor, remote_addr: str = "") -> ServiceToken:
    """Revoke a token at once (it is refused from the next request). Revoking twice changes nothing."""
    with transaction.atomic():
        token = ServiceToken.objects.select_for_update().select_related("user").get(pk=token.pk)
        if token.revoked_at is not None:
            return token
        token.revoked_at = timezone.now()
        token.revoked_by = actor if getattr(actor, "pk", None) else None
        token.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(actor=actor, action="token.revoked", obj=token, remote_addr=remote_addr,
                     details={"account": token.user.username, "prefix": token.prefix})
    return token


def service_token_used(*, token: ServiceToken, address: str) -> None:
    """Record a use of the token: the time (at most once a minute) and the address; the first use
    from an address the token has not been used from is an audit event (never with the key)."""
    now = timezone.now()
    address = address or None
    if address is not None and address != token.last_used_address:
        _address_seen(token, address)
    stale = token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION
    if stale or address != token.last_used_address:
        due = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        if address is not None:
            due |= ~Q(last_used_address=address)
        ServiceToken.objects.filter(due, pk=token.pk).update(last_used_at=now, last_used_address=address)


def _address_seen(token: ServiceToken, address: str) -> None:
    if ServiceTokenAddress.objects.filter(token=token, address=address).exists():
        return
    try:
        with transaction.atomic():
            ServiceTokenAddress.objects.create(token=token, address=address)
            audit_record(actor=token.user, action="token.new_address", obj=token, remote_addr=address, details={
                "account": token.user.username, "prefix": token.prefix,
                "first_use": token.last_used_at is None,
            })
    except IntegrityError:  # a concurrent request from the same address recorded it first
        pass
