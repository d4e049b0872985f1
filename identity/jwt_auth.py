"""OAuth 2.0 access tokens (JWT, RFC 9068) of the configured provider, for pipelines that get
their token with the client credentials grant: ``Authorization: Bearer <JWT>``.

The signature is checked with the provider's keys (its discovery document's ``jwks_uri``, kept
``OIDC_JWKS_CACHE_SECONDS`` and fetched again once when a token names a key id not among them,
so a key rotation at the provider needs nothing here). The client maps through
``OIDC_SERVICE_CLIENTS`` to a company role, held by a service account ``oauth:<client id>``
created on first use. A refused token is a 401 with the reason and a log warning; the token
itself is never logged.
"""

import json
import logging
import threading
import time
import urllib.error
import urllib.request

import jwt
from django.conf import settings
from django.db import transaction
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from access.audit import audit_record, client_address
from access.authentication import looks_like_jwt
from access.models import Role, User
from access.services import user_role_assign

logger = logging.getLogger(__name__)

# Asymmetric algorithms only: never "none", never HS* (a shared secret the provider would have to
# give every API, and the classic confusion where a public key is used as an HMAC secret).
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# RFC 9068 says "at+jwt"; many providers still send "JWT" or nothing. An ID token is no access token.
ALLOWED_TYPES = ("at+jwt", "application/at+jwt", "jwt")
# A token naming an unknown key fetches the keys again at most this often (a flood of made-up key
# ids must not become a flood of requests to the provider).
JWKS_REFETCH_MIN_SECONDS = 10
SERVICE_USERNAME_PREFIX = "oauth:"


class TokenRefused(Exception):
    """The access token is not accepted; the message says why and never holds the token."""


class ProviderKeys:
    """The provider's signing keys by key id, fetched through discovery and kept for a while."""

    def __init__(self):
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_for = ""
        self._fetched_at = None
        self._refetched_at = None

    def clear(self) -> None:
        with self._lock:
            self._keys, self._fetched_for, self._fetched_at, self._refetched_at = {}, "", None, None

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            issuer = settings.OIDC_ISSUER
            if (self._fetched_for != issuer or self._fetched_at is None
                    or now - self._fetched_at > settings.OIDC_JWKS_CACHE_SECONDS):
                self._fetch(issuer, now)
            key = self._pick(kid)
            if key is None and (self._refetched_at is None or now - self._refetched_at >= JWKS_REFETCH_MIN_SECONDS):
                # The provider may have rotated its keys since the last fetch: look once more.
                self._refetched_at = now
                self._fetch(issuer, now)
                key = self._pick(kid)
            if key is None:
                raise TokenRefused("The token is signed with a key the provider does not publish (unknown kid).")
            return key

    def _pick(self, kid):
        if kid is not None:
            return self._keys.get(kid)
        # No kid: acceptable only when the provider publishes one key.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    def _fetch(self, issuer: str, now: float) -> None:
        discovery = _get_json(f"{issuer}/.well-known/openid-configuration")
        jwks_uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise TokenRefused("The provider's discovery document has no jwks_uri.")
        document = _get_json(jwks_uri)
        keys = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue  # encryption keys and shared secrets are never signature keys here
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # a key type this library does not know, or a symmetric key: not for us
            keys[entry.get("kid", "")] = key
        self._keys, self._fetched_for, self._fetched_at = keys, issuer, now


def _get_json(url: str):
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=settings.OIDC_HTTP_TIMEOUT) as response:
            return json.loads(response.read(1024 * 1024))
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        logger.warning("Could not read %s from the identity provider: %s", url, exc)
        raise TokenRefused("The identity provider's keys could not be fetched; try again shortly.") from None


provider_keys = ProviderKeys()


def service_clients() -> dict[str, str]:
    """``OIDC_SERVICE_CLIENTS`` as {client id: role slug}."""
    clients = {}
    for entry in settings.OIDC_SERVICE_CLIENTS:
        client_id, _, role_slug = entry.partition("=")
        if client_id.strip() and role_slug.strip():
            clients[client_id.strip()] = role_slug.strip()
    return clients


def access_token_claims(token: str) -> dict:
    """The verified claims of an access token, or ``TokenRefused`` with the reason."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise TokenRefused("The bearer token is not a well-formed JWT.") from None
    algorithm = header.get("alg")
    if algorithm not in ALLOWED_ALGORITHMS:
        raise TokenRefused(f"Tokens signed with alg '{algorithm}' are not accepted (allowed: {', '.join(ALLOWED_ALGORITHMS)}).")
    token_type = header.get("typ")
    if token_type is not None and str(token_type).lower() not in ALLOWED_TYPES:
        raise TokenRefused(f"A token of type '{token_type}' is no access token.")
    kid = header.get("kid")
    key = provider_keys.key_for(kid if isinstance(kid, str) else None)
    key_algorithm = key._jwk_data.get("alg")  # the algorithm the provider published the key for, if any
    if key_algorithm and key_algorithm != algorithm:
        raise TokenRefused(f"The key {kid!r} is for {key_algorithm}, not {algorithm}.")
    try:
        return jwt.decode(
            token, key=key.key, algorithms=[algorithm], audience=settings.OIDC_API_AUDIENCE,
            # OIDC_ISSUER is kept without its trailing slash; some providers (Auth0) put one in iss.
            issuer=[settings.OIDC_ISSUER, f"{settings.OIDC_ISSUER}/"], leeway=settings.OIDC_JWT_LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRefused("The token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise TokenRefused("The token is not valid yet (nbf or iat in the future).") from None
    except jwt.InvalidAudienceError:
        raise TokenRefused(f"The token is not for this API (aud must be {settings.OIDC_API_AUDIENCE!r}).") from None
    except jwt.InvalidIssuerError:
        raise TokenRefused(f"The token is not from the configured provider (iss must be {settings.OIDC_ISSUER!r}).") from None
    except jwt.InvalidSignatureError:
        raise TokenRefused("The token's signature does not match the provider's key.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRefused(f"The token has no '{exc.claim}' claim.") from None
    except jwt.PyJWTError as exc:
        raise TokenRefused(f"The token is not valid: {exc}.") from None


def client_of(claims: dict) -> str:
    """The OAuth client the token was issued to: RFC 9068 ``client_id``, else ``azp``, else (client
    credentials tokens of some providers) ``sub``."""
    for claim in ("client_id", "azp", "sub"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    raise TokenRefused("The token names no client (client_id, azp or sub).")


def service_account_for_client(client_id: str, *, remote_addr: str = "") -> User:
    """The service account of a mapped OAuth client, created on first use, holding exactly the
    role ``OIDC_SERVICE_CLIENTS`` gives the client now."""
    role_slug = service_clients().get(client_id)
    if role_slug is None:
        raise TokenRefused(f"The client '{client_id}' is not mapped to a role (OIDC_SERVICE_CLIENTS).")
    role = Role.objects.select_related("group").filter(slug=role_slug).first()
    if role is None:
        raise TokenRefused(f"The client '{client_id}' is mapped to an unknown role '{role_slug}'.")
    username = f"{SERVICE_USERNAME_PREFIX}{client_id}"
    if len(username) > User._meta.get_field("username").max_length or not client_id.isprintable():
        raise TokenRefused("The token's client id is too long or has control characters.")
    user = User.objects.filter(username=username).first()
    if user is not None:
        if not user.is_active:
            raise TokenRefused(f"The service account '{username}' is disabled.")
        if not user.is_service_account:
            raise TokenRefused(f"'{username}' is a person's account, not a service account.")
        held = set(Role.objects.filter(group__user=user).values_list("pk", flat=True))
        if held != {role.pk}:
            with transaction.atomic():
                for other in Role.objects.filter(pk__in=held - {role.pk}).select_related("group"):
                    user.groups.remove(other.group)
                user_role_assign(user=user, role=role)
                audit_record(actor=None, action="service_account.role_changed", obj=user, remote_addr=remote_addr,
                             details={"account": username, "client_id": client_id, "role": role.slug})
        return user
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username, defaults={"is_service_account": True})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            user_role_assign(user=user, role=role)
            audit_record(actor=None, action="service_account.created", obj=user, remote_addr=remote_addr,
                         details={"account": username, "client_id": client_id, "role": role.slug, "via": "oauth"})
    return user


class OAuthAccessTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <JWT>``: an access token of the configured provider (when
    ``OIDC_ISSUER`` and ``OIDC_API_AUDIENCE`` are set)."""

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if len(auth) != 2 or auth[0].lower() != b"bearer" or not looks_like_jwt(auth[1]):
            return None
        remote_addr = client_address(request)
        try:
            if not (settings.OIDC_ISSUER and settings.OIDC_API_AUDIENCE):
                raise TokenRefused("OAuth access tokens are not accepted here (OIDC_ISSUER and OIDC_API_AUDIENCE are not set).")
            try:
                token = auth[1].decode("ascii")
            except UnicodeError:
                raise TokenRefused("The bearer token has invalid characters.") from None
            claims = access_token_claims(token)
            client_id = client_of(claims)
            user = service_account_for_client(client_id, remote_addr=remote_addr)
        except TokenRefused as exc:
            logger.warning("OAuth access token refused from %s: %s", remote_addr or "unknown address", exc)
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return user, claims

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class OAuthAccessTokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of the authentication above (a bearer JWT)."""

    target_class = "identity.jwt_auth.OAuthAccessTokenAuthentication"
    name = "oauthAccessToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "An OAuth 2.0 access token (client credentials grant) of the configured identity provider.",
        }
