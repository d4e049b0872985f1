import datetime as dt

from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from access.models import ServiceToken, token_digest


LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


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
        # Record use at most once a minute, so a busy pipeline does not write on every call.
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ServiceToken.objects.filter(pk=token.pk).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
            ).update(last_used_at=now)
        return token.user, token
