from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header

from access.audit import client_address
from access.models import ServiceToken, token_digest
from access.service_tokens import service_token_used


def looks_like_jwt(value: bytes) -> bool:
    """A JSON Web Token (three dot-separated parts); the catalog's own keys are hex, never dotted."""
    return value.count(b".") == 2


class ServiceTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>`` (or ``Bearer <key>``, as OpenLineage clients send it),
    checked against the stored digest of the key. A bearer JWT is left to the OAuth access
    token authentication (identity.jwt_auth)."""

    keyword = "Token"
    keywords = (b"token", b"bearer")

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in self.keywords:
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: use 'Token <key>'.")
        if auth[0].lower() == b"bearer" and looks_like_jwt(auth[1]):
            return None
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: the key has invalid characters.")
        user, token = self.authenticate_credentials(key)
        service_token_used(token=token, address=client_address(request))
        return user, token

    def authenticate_credentials(self, key):
        token = ServiceToken.objects.select_related("user").filter(digest=token_digest(key)).first()
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token was revoked; use the account's current token.")
        if token.is_expired(timezone.now()):
            raise exceptions.AuthenticationFailed(
                f"This token expired at {token.expires_at:%Y-%m-%d %H:%M} UTC; an admin makes a new one "
                "on the service account's page (or POST /api/v1/service-accounts/<id>/tokens/)."
            )
        return token.user, token
