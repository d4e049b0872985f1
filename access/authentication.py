import datetime as dt

from django.db.models import Q
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header

from access.models import ServiceToken, token_digest


LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class ServiceTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>`` (or ``Bearer <key>``, as OpenLineage clients send it),
    checked against the stored digest of the key."""

    keyword = "Token"
    keywords = (b"token", b"bearer")

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in self.keywords:
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: use 'Token <key>'.")
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: the key has invalid characters.")
        return self.authenticate_credentials(key)

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
