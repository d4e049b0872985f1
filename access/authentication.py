from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from access.models import ServiceToken, token_digest


class ServiceTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``, checked against the stored digest of the key."""

    keyword = "Token"

    def authenticate_credentials(self, key):
        token = (
            ServiceToken.objects.select_related("user")
            .filter(digest=token_digest(key), revoked_at__isnull=True)
            .first()
        )
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        ServiceToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token.user, token
