"""The bearer tokens of SCIM provisioning clients: made and revoked by ``manage.py scim_token``,
checked by ``ScimTokenAuthentication`` on ``/scim/v2/`` only."""

import secrets

from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from access.audit import audit_record
from access.service_tokens import LAST_USED_RESOLUTION
from access.models import token_digest
from access.policies import SystemPrincipal
from catalog.errors import ApplicationError
from identity.models import ScimToken

KEY_PREFIX = "scim_"  # tells a SCIM key from an API key at a glance (and in a secret scanner)


class ScimClient(SystemPrincipal):
    """Who acts when a provisioning client changes users and groups: the audit trail names it
    ``scim:<token name>``. Like the system principal it exists only in code, never as a login."""

    def __init__(self, name: str):
        self.name = name
        self.username = f"scim:{name}"

    def __str__(self) -> str:
        return self.username


def scim_token_create(*, name: str) -> tuple[ScimToken, str]:
    """A new token for the provisioning client ``name``; returns it and its key (shown once)."""
    name = (name or "").strip()
    if not name or len(name) > ScimToken._meta.get_field("name").max_length:
        raise ApplicationError("Name the provisioning client (1 to 100 characters).")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        if ScimToken.objects.filter(name=name).exists():
            raise ApplicationError(f"A SCIM token named '{name}' exists; revoke it first or pick another name.")
        token = ScimToken.objects.create(name=name, digest=token_digest(key), prefix=key[:8])
        audit_record(actor=None, action="identity.scim_token_created", obj=token, details={"client": name})
    return token, key


def scim_token_revoke(*, name: str) -> ScimToken:
    """Revoke the provisioning client's token at once; the row stays (name, dates) for the record."""
    with transaction.atomic():
        token = ScimToken.objects.select_for_update().filter(name=name, revoked_at__isnull=True).first()
        if token is None:
            raise ApplicationError(f"No live SCIM token named '{name}'.")
        token.revoked_at = timezone.now()
        # The name is free again for a new token; the revoked row keeps a distinct one.
        token.name = f"{name} (revoked {token.revoked_at:%Y-%m-%d %H:%M:%S} #{token.pk})"[:100]
        token.save(update_fields=["revoked_at", "name"])
        audit_record(actor=None, action="identity.scim_token_revoked", obj=token, details={"client": name})
    return token


class ScimTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>`` of a live SCIM token. Used by the SCIM views alone: the
    API's authentication knows only API tokens, and this knows only SCIM tokens."""

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() != b"bearer":
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Invalid authorization header: use 'Bearer <token>'.")
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid authorization header: the token has invalid characters.")
        token = ScimToken.objects.filter(digest=token_digest(key), revoked_at__isnull=True).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked SCIM token.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ScimToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return ScimClient(token.name), token

    def authenticate_header(self, request):
        return 'Bearer realm="scim"'
