"""REST endpoints for service accounts and their tokens (admins): list, make a new token (rotation:
the old one keeps working until it is revoked or expires), revoke one. A key is in the answer of
the request that made it, and nowhere else."""

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access import selectors, service_tokens
from access.audit import client_address
from access.models import ServiceToken, User
from access.serializers import RejectUnknownFieldsMixin
from catalog.errors import ApplicationError
from identity.stepup import StepUpFresh


class ServiceTokenSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="user.username")
    state = serializers.SerializerMethodField(help_text="active, expired or revoked, as of now.")
    createdAt = serializers.DateTimeField(source="created_at")
    createdBy = serializers.CharField(source="created_by.username", allow_null=True)
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)
    lastUsedAt = serializers.DateTimeField(source="last_used_at", allow_null=True)
    lastUsedAddress = serializers.IPAddressField(source="last_used_address", allow_null=True)
    revokedAt = serializers.DateTimeField(source="revoked_at", allow_null=True)
    revokedBy = serializers.CharField(source="revoked_by.username", allow_null=True)

    class Meta:
        model = ServiceToken
        fields = ["id", "account", "prefix", "state", "createdAt", "createdBy", "expiresAt", "lastUsedAt",
                  "lastUsedAddress", "revokedAt", "revokedBy"]

    def get_state(self, token) -> str:
        return token.state(timezone.now())


class ServiceTokenCreatedSerializer(ServiceTokenSerializer):
    key = serializers.CharField(help_text="The new key. Shown in this answer only; store it now.")

    class Meta(ServiceTokenSerializer.Meta):
        fields = [*ServiceTokenSerializer.Meta.fields, "key"]


class ServiceTokenCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    expiresInDays = serializers.IntegerField(
        required=False, min_value=1, help_text="Lifetime in days; SERVICE_TOKEN_TTL_DAYS at most (and by default).",
    )

    def validate_expiresInDays(self, value):
        if value > settings.SERVICE_TOKEN_TTL_DAYS:
            raise serializers.ValidationError(f"At most {settings.SERVICE_TOKEN_TTL_DAYS} days.")
        return value


class ServiceAccountSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()
    liveTokens = serializers.IntegerField(source="live_tokens", help_text="Tokens neither revoked nor expired.")
    lastUsedAt = serializers.DateTimeField(source="last_used_at", allow_null=True)
    isActive = serializers.BooleanField(source="is_active")

    class Meta:
        model = User
        fields = ["id", "username", "roles", "isActive", "liveTokens", "lastUsedAt"]

    def get_roles(self, user) -> list[str]:
        return sorted(group.company_role.slug for group in user.groups.all() if hasattr(group, "company_role"))


def _account(user, pk) -> User:
    return get_object_or_404(selectors.service_account_list(user=user), pk=pk)


class ServiceAccountListApi(APIView):
    @extend_schema(responses=ServiceAccountSerializer(many=True),
                   description="Service accounts and how many live tokens each has (admins).")
    def get(self, request):
        return Response(ServiceAccountSerializer(selectors.service_account_list(user=request.user), many=True).data)


class ServiceTokenListCreateApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]  # a new key is a new credential
    @extend_schema(responses=ServiceTokenSerializer(many=True),
                   description="The account's tokens, newest first: prefix, created, expires, last used, revoked.")
    def get(self, request, pk):
        account = _account(request.user, pk)
        tokens = selectors.service_token_list(user=request.user, account=account).select_related("user")
        return Response(ServiceTokenSerializer(tokens, many=True).data)

    @extend_schema(request=ServiceTokenCreateSerializer, responses={201: ServiceTokenCreatedSerializer},
                   description="A new token for the account (rotation): the other tokens keep working until "
                               "they are revoked or expire. The key is in this answer only.")
    def post(self, request, pk):
        account = _account(request.user, pk)
        serializer = ServiceTokenCreateSerializer(data=request.data if request.data is not None else {})
        serializer.is_valid(raise_exception=True)
        try:
            token, key = service_tokens.service_token_create(
                user=account, actor=request.user, days=serializer.validated_data.get("expiresInDays"),
                remote_addr=client_address(request),
            )
        except ApplicationError as error:  # the serializer already checks the range; kept for the service's rule
            raise serializers.ValidationError({"expiresInDays": [error.message]}) from None
        token.key = key
        return Response(ServiceTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)


class ServiceTokenRevokeApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]
    @extend_schema(request=None, responses=ServiceTokenSerializer,
                   description="Revoke the token at once; it is refused from the next request.")
    def post(self, request, pk, token_pk):
        account = _account(request.user, pk)
        token = get_object_or_404(selectors.service_token_list(user=request.user, account=account), pk=token_pk)
        token = service_tokens.service_token_revoke(token=token, actor=request.user, remote_addr=client_address(request))
        return Response(ServiceTokenSerializer(token).data)
