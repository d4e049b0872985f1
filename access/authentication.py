import functools

from django.db import connection
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header

from access.audit import client_address
from access.models import Role, ServiceToken, User, token_digest
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
        token = service_token_lookup(token_digest(key))
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


@functools.cache
def _lookup_sql() -> tuple[str, int, int]:
    """The token, its user and the user's roles in one statement (one row per role, or one row
    with empty role columns), written once from the models' own columns."""
    quote = connection.ops.quote_name
    token_meta, user_meta, role_meta = ServiceToken._meta, User._meta, Role._meta
    membership = User.groups.through._meta
    columns = [f"t.{quote(f.column)}" for f in token_meta.concrete_fields]
    columns += [f"u.{quote(f.column)}" for f in user_meta.concrete_fields]
    columns += [f"r.{quote(f.column)}" for f in role_meta.concrete_fields]
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(token_meta.db_table)} t "
        f"JOIN {quote(user_meta.db_table)} u ON u.{quote(user_meta.pk.column)} = t.{quote(token_meta.get_field('user').column)} "
        f"LEFT JOIN {quote(membership.db_table)} m ON m.{quote('user_id')} = u.{quote(user_meta.pk.column)} "
        f"LEFT JOIN {quote(role_meta.db_table)} r ON r.{quote(role_meta.get_field('group').column)} = m.{quote('group_id')} "
        f"WHERE t.{quote(token_meta.get_field('digest').column)} = %s"
    )
    return sql, len(token_meta.concrete_fields), len(user_meta.concrete_fields)


def service_token_lookup(digest: str) -> ServiceToken | None:
    """The token with this digest, its user (``token.user``) and the user's roles, read in one
    query: the roles are kept on the user as ``access.policies.user_roles`` keeps them, so a
    decision that needs only roles (may this account register, send lineage) asks nothing more;
    the role-matrix cells are read when a decision needs them (``access.decisions.matrix_cells``).

    PostgreSQL only (the production database, whose driver returns typed values); elsewhere the
    token and its user are read through the ORM and the roles on first use."""
    if connection.vendor != "postgresql":
        return ServiceToken.objects.select_related("user").filter(digest=digest).first()
    sql, token_count, user_count = _lookup_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        rows = cursor.fetchall()
    if not rows:
        return None
    db = connection.alias
    first = rows[0]
    token = ServiceToken.from_db(db, [f.attname for f in ServiceToken._meta.concrete_fields], first[:token_count])
    user = User.from_db(db, [f.attname for f in User._meta.concrete_fields],
                        first[token_count:token_count + user_count])
    role_names = [f.attname for f in Role._meta.concrete_fields]
    roles = [Role.from_db(db, role_names, row[token_count + user_count:]) for row in rows
             if row[token_count + user_count] is not None]
    user._catalog_roles = sorted(roles, key=lambda role: role.name)
    user._matrix_cells = None  # read with the roles on first use (access.decisions.matrix_cells)
    token.user = user
    return token
