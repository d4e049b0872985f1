"""``Authorization: Bearer <key>`` (or ``Token <key>``) with a shipper token, for the push endpoint
only: the endpoint names this class alone, and no other endpoint accepts a shipper key (service
token authentication looks keys up in its own table)."""

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from monitoring.models import ShipperToken
from monitoring.shippers import shipper_token_for_key


class ShipperPrincipal:
    """Who a pushed batch comes from: the shipper token of one store (not a catalog user)."""

    is_authenticated = True
    is_active = True
    is_superuser = False
    is_service_account = True
    pk = None

    def __init__(self, token: ShipperToken):
        self.token = token
        self.username = f"shipper:{token.name}"


class ShipperTokenAuthentication(BaseAuthentication):
    keywords = (b"bearer", b"token")

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in self.keywords:
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Invalid authorization header: use 'Bearer <shipper key>'.")
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid authorization header: the key has invalid characters.")
        token = shipper_token_for_key(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked shipper token.")
        ShipperToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return ShipperPrincipal(token), token

    def authenticate_header(self, request):
        return 'Bearer realm="monitoring"'


class ShipperTokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of the push endpoint: a shipper token as a bearer key."""

    target_class = "monitoring.authentication.ShipperTokenAuthentication"
    name = "shipperToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http", "scheme": "bearer",
            "description": "A log shipper's token (`shp_...`), made per store by a security engineer; it opens "
                           "POST /api/v1/monitoring/logs/ only.",
        }
