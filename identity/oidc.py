"""Single sign-on with OpenID Connect: the catalog as a relying party of the company's provider.

The protocol is Authlib's Django client (authorization code with PKCE S256, state and nonce kept in
the session, discovery from ``<OIDC_ISSUER>/.well-known/openid-configuration``, the ID token's
signature checked against the provider's JWKS, cached with the discovery document and fetched again
once when a token names an unknown key, then ``iss``, ``aud``, ``exp`` and ``nonce`` checked). Every
call to the provider has ``OIDC_HTTP_TIMEOUT``. What the catalog does with a verified person is
``oidc_user_sign_in`` below.
"""

import re

from authlib.integrations.django_client import OAuth
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from access.audit import audit_record
from identity.directory import directory_roles_apply
from identity.models import DirectoryAccount, DirectoryGroup, ExternalIdentity

# Authlib keeps the discovery document and the JWKS on the client: one client per configuration.
_clients: dict[tuple, object] = {}


def oidc_enabled() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_CLIENT_ID)


def oidc_client():
    """The Authlib client for the configured provider (made once per issuer and client)."""
    key = (settings.OIDC_ISSUER, settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET, settings.OIDC_SCOPES,
           settings.OIDC_HTTP_TIMEOUT)
    client = _clients.get(key)
    if client is None:
        oauth = OAuth()
        client = oauth.register(
            name="catalog_oidc",
            client_id=settings.OIDC_CLIENT_ID,
            client_secret=settings.OIDC_CLIENT_SECRET,
            server_metadata_url=f"{settings.OIDC_ISSUER}/.well-known/openid-configuration",
            client_kwargs={
                "scope": settings.OIDC_SCOPES,
                "code_challenge_method": "S256",
                "default_timeout": settings.OIDC_HTTP_TIMEOUT,
            },
        )
        _clients.clear()
        _clients[key] = client
    return client


def second_factor_done_at_provider(claims) -> bool:
    """The ID token says the provider checked a second factor (``amr`` or ``acr``)."""
    amr = claims.get("amr") or []
    if isinstance(amr, str):
        amr = [amr]
    if set(amr) & set(settings.OIDC_MFA_AMR):
        return True
    return bool(claims.get("acr")) and claims.get("acr") in settings.OIDC_MFA_ACR


def _username_free(base: str) -> str:
    """``base`` cleaned to a username, suffixed (``-2``, ``-3``...) when someone holds it already."""
    User = get_user_model()
    base = re.sub(r"[^\w.@+-]", "", base)[:140] or "user"
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _groups_from(claims) -> list[str]:
    groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(groups, str):
        groups = [groups]
    return sorted({str(name).strip()[:255] for name in groups if str(name).strip()})


class SignInRefused(Exception):
    """The provider vouched for someone the catalog will not sign in (a service account, a disabled user)."""


@transaction.atomic
def oidc_user_sign_in(*, claims, remote_addr: str = ""):
    """The user a verified ID token names: found by ``(iss, sub)`` (never by e-mail), created on
    their first sign-in (with a directory account), their name, e-mail and directory groups set from
    the claims, their company roles re-evaluated; audited as ``signin.succeeded``."""
    User = get_user_model()
    issuer, subject = claims["iss"], claims["sub"]
    identity = ExternalIdentity.objects.select_related("user").select_for_update().filter(
        issuer=issuer, subject=subject).first()
    if identity is None:
        preferred = claims.get("preferred_username") or (claims.get("email") or "").split("@")[0] or subject
        user = User.objects.create_user(username=_username_free(preferred))
        user.set_unusable_password()
        identity = ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    user = identity.user
    if not user.is_active or user.is_service_account:
        raise SignInRefused("This account is disabled in the catalog.")
    DirectoryAccount.objects.get_or_create(user=user, defaults={"source": DirectoryAccount.Source.OIDC,
                                                                "external_id": subject})
    user.first_name = (claims.get("given_name") or "")[:150]
    user.last_name = (claims.get("family_name") or "")[:150]
    if not (user.first_name or user.last_name) and claims.get("name"):
        first, _, last = claims["name"].partition(" ")
        user.first_name, user.last_name = first[:150], last[:150]
    if claims.get("email"):
        user.email = claims["email"][:254]
    user.save()
    groups = [DirectoryGroup.objects.get_or_create(display_name=name)[0] for name in _groups_from(claims)]
    user.directory_groups.set(groups)
    identity.last_login_at = timezone.now()
    identity.save(update_fields=["last_login_at"])
    directory_roles_apply(user, actor=user, remote_addr=remote_addr, via="oidc")
    audit_record(actor=user, action="signin.succeeded", obj=user, remote_addr=remote_addr,
                 details={"via": "oidc", "issuer": issuer, "groups": [g.display_name for g in groups]})
    return user


def oidc_signin_failure_record(*, reason: str, remote_addr: str = "") -> None:
    """Audit a refused single sign-on with why (an error's name and description, never a token)."""
    with transaction.atomic():
        audit_record(actor=None, action="signin.failed", remote_addr=remote_addr,
                     details={"via": "oidc", "reason": reason[:300]})
