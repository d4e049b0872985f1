"""Outgoing webhooks through the API: endpoints, their deliveries, a test event and a retry.

For security engineers and admins (``access.policies.can_manage_webhooks``); anyone else gets a
403. Creating, changing and removing an endpoint need a fresh second factor (``StepUpFresh``: 403
``step_up_required``) and are audited. The signing secret is in the creation's answer only; the
URL is shown redacted (``webhooks.url_redacted``)."""

from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.audit import client_address
from access.policies import can_manage_webhooks
from catalog.api_support import CursorPagination
from identity.stepup import STEP_UP_OPENAPI, StepUpFresh
from monitoring.models import DeliveryStatus, Severity, WebhookDelivery, WebhookEndpoint, WebhookKind
from monitoring.selectors import webhook_endpoint_visible
from monitoring.webhook_deliveries import webhook_delivery_retry, webhook_endpoint_test
from monitoring.webhooks import (EVENT_TYPES, url_redacted, webhook_endpoint_create, webhook_endpoint_remove,
                                 webhook_endpoint_update)

# The services name fields as the model does; answers and errors use the API's names.
API_NAMES = {"min_severity": "minSeverity", "event_types": "eventTypes"}
SEVERITY_LABELS = [severity.label for severity in Severity]


def _manager(request) -> None:
    if not can_manage_webhooks(request.user):
        raise exceptions.PermissionDenied("Only security engineers and admins manage webhooks.")


def _service_errors(error) -> exceptions.ValidationError:
    return exceptions.ValidationError({API_NAMES.get(field, field): list(messages)
                                       for field, messages in error.message_dict.items()})


def endpoint_queryset(user):
    """The endpoints ``user`` may manage with their delivery counts: one query for the whole list."""
    return (webhook_endpoint_visible(user=user).select_related("created_by")
            .annotate(failed_count=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
                      pending_count=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING)),
                      delivered_count=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.DELIVERED))))


class WebhookEndpointSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Scheme, host and first path segment; the rest is hidden "
                                                      "(Slack's and Teams' URLs are credentials).")
    minSeverity = serializers.SerializerMethodField(help_text="Alerts at or above it are sent; null: no alerts.")
    eventTypes = serializers.ListField(source="event_types", child=serializers.CharField())
    createdBy = serializers.CharField(source="created_by.username", default=None)
    createdAt = serializers.DateTimeField(source="created_at")
    deliveries = serializers.SerializerMethodField()

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "name", "url", "kind", "minSeverity", "eventTypes", "active", "createdBy", "createdAt",
                  "deliveries"]

    def get_url(self, endpoint) -> str:
        return url_redacted(endpoint.url)

    def get_minSeverity(self, endpoint) -> str | None:
        return Severity(endpoint.min_severity).label if endpoint.min_severity else None

    def get_deliveries(self, endpoint) -> dict:
        return {"failed": getattr(endpoint, "failed_count", 0), "pending": getattr(endpoint, "pending_count", 0),
                "delivered": getattr(endpoint, "delivered_count", 0)}


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.SerializerMethodField(help_text="The signing secret: shown in this answer only (stored sealed).")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]

    def get_secret(self, endpoint) -> str:
        return self.context["secret"]


class WebhookEndpointInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    url = serializers.CharField(max_length=1000, help_text="http(s) URL of the receiver (public address, unless "
                                                           "MONITORING_WEBHOOK_ALLOWED_PRIVATE lists it).")
    kind = serializers.ChoiceField(choices=WebhookKind.choices, default=WebhookKind.GENERIC)
    minSeverity = serializers.ChoiceField(choices=SEVERITY_LABELS, allow_null=True, required=False,
                                          help_text="Send alerts at or above this severity; null: no alerts.")
    eventTypes = serializers.ListField(child=serializers.ChoiceField(choices=sorted(EVENT_TYPES)), required=False,
                                       help_text="Catalog events to receive.")
    active = serializers.BooleanField(default=True)


class WebhookEndpointChangeSerializer(WebhookEndpointInputSerializer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=True, **kwargs)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    endpoint = serializers.IntegerField(source="endpoint_id")
    eventType = serializers.CharField(source="event_type")
    eventId = serializers.CharField(source="event_id")
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at", allow_null=True)
    lastStatusCode = serializers.IntegerField(source="last_status_code", allow_null=True)
    lastError = serializers.CharField(source="last_error")
    createdAt = serializers.DateTimeField(source="created_at")
    deliveredAt = serializers.DateTimeField(source="delivered_at", allow_null=True)

    class Meta:
        model = WebhookDelivery
        fields = ["id", "endpoint", "eventType", "eventId", "status", "attempts", "nextAttemptAt", "lastStatusCode",
                  "lastError", "createdAt", "deliveredAt", "payload"]


def _changes(data: dict) -> dict:
    changes = {}
    for api_name, field in (("name", "name"), ("url", "url"), ("kind", "kind"), ("minSeverity", "min_severity"),
                            ("eventTypes", "event_types"), ("active", "active")):
        if api_name in data:
            changes[field] = data[api_name]
    return changes


class WebhookEndpointListCreateApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]

    @extend_schema(responses=WebhookEndpointSerializer(many=True), description="Webhook endpoints, by name.")
    def get(self, request):
        _manager(request)
        return Response(WebhookEndpointSerializer(endpoint_queryset(request.user), many=True).data)

    @extend_schema(request=WebhookEndpointInputSerializer,
                   responses={201: WebhookEndpointCreatedSerializer, 403: STEP_UP_OPENAPI},
                   description="Add an endpoint. The URL is vetted (resolved: no loopback, private or catalog "
                               "address unless the operator allows it). The answer holds the signing secret, once.")
    def post(self, request):
        _manager(request)
        serializer = WebhookEndpointInputSerializer(data=request.data if isinstance(request.data, dict) else {})
        serializer.is_valid(raise_exception=True)
        try:
            endpoint, secret = webhook_endpoint_create(principal=request.user, remote_addr=client_address(request),
                                                       **_changes(serializer.validated_data))
        except ValidationError as error:
            raise _service_errors(error) from None
        endpoint = endpoint_queryset(request.user).get(pk=endpoint.pk)
        return Response(WebhookEndpointCreatedSerializer(endpoint, context={"secret": secret}).data,
                        status=status.HTTP_201_CREATED)


class WebhookEndpointDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated, StepUpFresh]

    def _endpoint(self, request, pk):
        _manager(request)
        return get_object_or_404(endpoint_queryset(request.user), pk=pk)

    @extend_schema(responses=WebhookEndpointSerializer, description="One endpoint.")
    def get(self, request, pk):
        return Response(WebhookEndpointSerializer(self._endpoint(request, pk)).data)

    @extend_schema(request=WebhookEndpointChangeSerializer, responses={200: WebhookEndpointSerializer,
                                                                       403: STEP_UP_OPENAPI},
                   description="Change the fields given (the URL is vetted again). The secret does not change.")
    def patch(self, request, pk):
        endpoint = self._endpoint(request, pk)
        serializer = WebhookEndpointChangeSerializer(data=request.data if isinstance(request.data, dict) else {})
        serializer.is_valid(raise_exception=True)
        try:
            webhook_endpoint_update(principal=request.user, endpoint=endpoint, remote_addr=client_address(request),
                                    **_changes(serializer.validated_data))
        except ValidationError as error:
            raise _service_errors(error) from None
        return Response(WebhookEndpointSerializer(endpoint_queryset(request.user).get(pk=pk)).data)

    @extend_schema(responses={204: None, 403: STEP_UP_OPENAPI},
                   description="Remove the endpoint with its secret and its deliveries.")
    def delete(self, request, pk):
        endpoint = self._endpoint(request, pk)
        webhook_endpoint_remove(principal=request.user, endpoint=endpoint, remote_addr=client_address(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointTestApi(APIView):
    @extend_schema(request=None, responses=WebhookDeliverySerializer,
                   description="Send a `webhook.test` event now; the answer is its delivery with the outcome "
                               "(status, HTTP status code, error). A failed test is retried like any delivery.")
    def post(self, request, pk):
        _manager(request)
        endpoint = get_object_or_404(webhook_endpoint_visible(user=request.user).select_related("secret"), pk=pk)
        delivery = webhook_endpoint_test(principal=request.user, endpoint=endpoint)
        return Response(WebhookDeliverySerializer(delivery).data)


class DeliveryCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50


class WebhookDeliveryListApi(generics.ListAPIView):
    serializer_class = WebhookDeliverySerializer
    pagination_class = DeliveryCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reading the view for the schema
            return WebhookDelivery.objects.none()
        _manager(self.request)
        endpoint = get_object_or_404(webhook_endpoint_visible(user=self.request.user), pk=self.kwargs["pk"])
        deliveries = WebhookDelivery.objects.filter(endpoint=endpoint)
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in DeliveryStatus.values:
                raise exceptions.ValidationError({"status": [f"One of: {', '.join(DeliveryStatus.values)}."]})
            deliveries = deliveries.filter(status=wanted)
        return deliveries

    @extend_schema(description="The endpoint's deliveries, newest first, with attempts, the last HTTP status and "
                               "error. `?status=failed` lists those given up on.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class WebhookDeliveryRetryApi(APIView):
    @extend_schema(request=None, responses={202: WebhookDeliverySerializer,
                                            400: OpenApiResponse(description="Delivered already.")},
                   description="One more attempt now (of a failed or a waiting delivery), queued for a worker.")
    def post(self, request, pk):
        _manager(request)
        delivery = get_object_or_404(WebhookDelivery.objects.select_related("endpoint").filter(
            endpoint__in=webhook_endpoint_visible(user=request.user)), pk=pk)
        delivery = webhook_delivery_retry(principal=request.user, delivery=delivery)
        delivery.refresh_from_db()
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
