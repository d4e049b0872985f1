"""The webhooks page for security engineers and admins: endpoints, a form to add or change one
(with errors on the fields they name), and each endpoint's deliveries with status badges. Thin:
the services in ``monitoring.webhooks`` and ``monitoring.webhook_deliveries`` decide; saving and
removing ask for a fresh second factor (``step_up_required``)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from access.audit import client_address
from access.policies import can_manage_webhooks
from catalog.errors import ApplicationError
from identity.stepup import step_up_required
from monitoring.models import DeliveryStatus, Severity, WebhookDelivery
from monitoring.selectors import webhook_endpoint_visible
from monitoring.webhook_apis import endpoint_queryset
from monitoring.webhook_deliveries import webhook_delivery_retry, webhook_endpoint_test
from monitoring.webhook_forms import WebhookEndpointForm
from monitoring.webhooks import (EVENT_TYPES, url_redacted, webhook_endpoint_create, webhook_endpoint_remove,
                                 webhook_endpoint_update)

PAGE_SIZE = 25


def _manager(request) -> None:
    if not can_manage_webhooks(request.user):
        raise PermissionDenied("Only security engineers and admins manage webhooks.")


@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def webhook_list(request):
    """Every endpoint with its delivery counts, and the form to add one. The new endpoint's secret
    is shown on the answer to the POST, once (it is not kept in the session or a message)."""
    _manager(request)
    created, secret = None, ""
    if request.method == "POST":
        form = WebhookEndpointForm(request.POST)
        if form.is_valid():
            try:
                created, secret = webhook_endpoint_create(principal=request.user, remote_addr=client_address(request),
                                                          **form.service_fields())
            except ValidationError as error:
                form.errors_apply(error)
            else:
                form = WebhookEndpointForm()
        form.focus_problems()
    else:
        form = WebhookEndpointForm()
    endpoints = list(endpoint_queryset(request.user))
    for endpoint in endpoints:
        endpoint.url_shown = url_redacted(endpoint.url)
    return render(request, "monitoring/webhook_list.html", {
        "endpoints": endpoints, "form": form, "created": created, "secret": secret, "event_types": EVENT_TYPES,
    }, status=400 if request.method == "POST" and form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def webhook_detail(request, pk):
    """One endpoint: change it, send a test, and its deliveries (``?status=`` filters, in the URL)."""
    _manager(request)
    endpoint = get_object_or_404(endpoint_queryset(request.user), pk=pk)
    shown = url_redacted(endpoint.url)
    if request.method == "POST":
        form = WebhookEndpointForm(request.POST, url_hint=shown)
        if form.is_valid():
            try:
                webhook_endpoint_update(principal=request.user, endpoint=endpoint,
                                        remote_addr=client_address(request), **form.service_fields())
            except ValidationError as error:
                form.errors_apply(error)
            else:
                messages.success(request, f"Saved {form.cleaned_data['name']}.")
                return redirect("webhooks:detail", pk=endpoint.pk)
        form.focus_problems()
    else:
        form = WebhookEndpointForm(url_hint=shown, initial={
            "name": endpoint.name, "kind": endpoint.kind, "active": endpoint.active,
            "min_severity": Severity(endpoint.min_severity).label if endpoint.min_severity else "",
            "event_types": endpoint.event_types})
    status = request.GET.get("status", "")
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-id")
    if status in DeliveryStatus.values:
        deliveries = deliveries.filter(status=status)
    else:
        status = ""
    page = Paginator(deliveries.defer("payload"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "monitoring/webhook_detail.html", {
        "endpoint": endpoint, "url_shown": shown, "form": form, "page": page, "status": status,
        "statuses": DeliveryStatus.choices,
    }, status=400 if request.method == "POST" else 200)


@login_required
@require_POST
@step_up_required
def webhook_remove(request, pk):
    _manager(request)
    endpoint = get_object_or_404(endpoint_queryset(request.user), pk=pk)
    webhook_endpoint_remove(principal=request.user, endpoint=endpoint, remote_addr=client_address(request))
    messages.success(request, f"Removed {endpoint.name} and its deliveries.")
    return redirect("webhooks:list")


@login_required
@require_POST
def webhook_test(request, pk):
    _manager(request)
    endpoint = get_object_or_404(endpoint_queryset(request.user).select_related("secret"), pk=pk)
    delivery = webhook_endpoint_test(principal=request.user, endpoint=endpoint)
    if delivery.status == DeliveryStatus.DELIVERED:
        messages.success(request, f"The test event was delivered (HTTP {delivery.last_status_code}).")
    else:
        messages.error(request, f"The test event was not delivered: {delivery.last_error}")
    return redirect("webhooks:detail", pk=endpoint.pk)


@login_required
@require_POST
def delivery_retry(request, pk):
    _manager(request)
    delivery = get_object_or_404(WebhookDelivery.objects.select_related("endpoint").filter(
        endpoint__in=webhook_endpoint_visible(user=request.user)), pk=pk)
    try:
        webhook_delivery_retry(principal=request.user, delivery=delivery)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Delivery #{delivery.pk} is queued for another attempt.")
    return redirect("webhooks:detail", pk=delivery.endpoint_id)
