"""Browser pages of monitoring: the alert inbox and an alert's page with its workflow.

Thin, like the access views: reads through ``monitoring.selectors``, writes through the services
in ``monitoring.alerts`` (which ask ``access.policies.can_work_alerts``). For anyone who may not
work alerts the pages do not exist (404), as the grants page does.
"""

from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from access.audit import client_address
from access.policies import can_work_alert, can_work_alerts
from catalog.errors import ApplicationError
from monitoring import alerts, selectors
from monitoring.filtersets import DEFAULTS, AlertFilterSet
from monitoring.forms import AlertAssignForm, AlertReopenForm, AlertResolveForm, AlertSnoozeForm
from monitoring.models import AlertStatus

ALERTS_PAGE_SIZE = 50


def _require_alert_worker(request) -> None:
    if not can_work_alerts(request.user):
        raise Http404("No such page.")


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


@login_required
def alert_list(request):
    """The inbox: alerts filtered in the URL (default: open or acknowledged, not snoozed),
    newest activity first, paged; a constant number of queries."""
    _require_alert_worker(request)
    filterset = AlertFilterSet(request.GET, queryset=selectors.alert_list(user=request.user), request=request)
    valid = filterset.is_valid()
    found = filterset.qs if valid else selectors.alert_visible(user=request.user).none()
    paginator = Paginator(found, ALERTS_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    now = timezone.now()
    for alert in page.object_list:
        alert.is_snoozed = bool(alert.snoozed_until and alert.snoozed_until > now)
    query = request.GET.copy()
    query.pop("page", None)
    chosen = filterset.form.data
    return render(request, "monitoring/alert_list.html", {
        "form": filterset.form, "page": page, "alerts": page.object_list,
        "query_string": query.urlencode(),
        "filtered": any(chosen.get(name) not in ("", None, DEFAULTS.get(name)) for name in filterset.filters),
        "default_view": all(chosen.get(name) in ("", None, DEFAULTS.get(name)) for name in filterset.filters),
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
    }, status=200 if valid else 400)


@login_required
def alert_count(request):
    """The count for the nav link, fetched by htmx after the page loads: open alerts not snoozed."""
    return render(request, "monitoring/partials/alert_count.html",
                  {"open_alerts": selectors.alert_inbox_count(user=request.user)})


def _forms(request, bound=None) -> dict:
    assignees = selectors.alert_assignee_choices()
    made = {
        "assign_form": AlertAssignForm(prefix="assign", assignees=assignees),
        "resolve_form": AlertResolveForm(prefix="resolve"),
        "acknowledge_error": "",
        "snooze_form": AlertSnoozeForm(prefix="snooze"),
        "reopen_form": AlertReopenForm(prefix="reopen"),
    }
    if bound is not None:
        made.update(bound)
    return made


def _history(request, alert) -> list:
    events = list(selectors.alert_history(user=request.user, alert=alert))
    for event in events:
        try:
            event.snoozed_until = datetime.fromisoformat(event.details.get("until") or "")
        except (TypeError, ValueError):
            event.snoozed_until = None
    return events


@login_required
def alert_detail(request, pk, bound_forms=None, status=200):
    _require_alert_worker(request)
    alert = selectors.alert_get(user=request.user, pk=pk)
    evidence = selectors.alert_evidence_list(user=request.user, alert=alert)
    forms = _forms(request, bound_forms)
    if alert.assignee_id and "assign_form" not in (bound_forms or {}):
        forms["assign_form"] = AlertAssignForm(prefix="assign", assignees=forms["assign_form"].fields["assignee"].queryset,
                                               initial={"assignee": alert.assignee.username})
    snoozed = alert.is_snoozed = bool(alert.snoozed_until and alert.snoozed_until > timezone.now())
    return render(request, "monitoring/alert_detail.html", {
        "alert": alert,
        "datasets": alert.visible_datasets,
        "evidence": evidence,
        "access_evidence": [row for row in evidence if row.access_event_id],
        "other_evidence": [row for row in evidence if not row.access_event_id],
        "history": _history(request, alert),
        "snoozed": snoozed,
        "resolved": alert.status == AlertStatus.RESOLVED,
        "can_acknowledge": alert.status == AlertStatus.OPEN,
        "can_reopen": alert.status != AlertStatus.OPEN or snoozed,
        "is_htmx": _is_htmx(request),
        "about_you": not can_work_alert(request.user, alert),
        **forms,
    }, status=status)


def _done(request, pk, message: str):
    """After a step: the alert page (htmx swaps it in; the nav's count refreshes on the
    ``alerts-changed`` event), or a redirect to it for a plain form post."""
    messages.success(request, message)
    if _is_htmx(request):
        response = alert_detail(request, pk)
        response["HX-Trigger"] = "alerts-changed"
        return response
    return redirect("monitoring:alert-detail", pk=pk)


def _failed(request, pk, name: str, form):
    """The alert page again with the form's errors in place (htmx swaps it in, so 200 for htmx)."""
    return alert_detail(request, pk, bound_forms={name: form}, status=200 if _is_htmx(request) else 400)


def _step(request, pk, change, form_class=None, prefix: str = "", message=""):
    """Run one workflow service (monitoring.alerts) on the alert with the form's cleaned data, as
    the API's ``_workflow`` does with its serializer; a refusal lands on the field it names.
    ``message`` is the success text, or a function of the cleaned data."""
    _require_alert_worker(request)
    alert = selectors.alert_get(user=request.user, pk=pk)
    form, data = None, {}
    if form_class is not None:
        extra = {"assignees": selectors.alert_assignee_choices()} if form_class is AlertAssignForm else {}
        form = form_class(request.POST, prefix=prefix, **extra)
        if not form.is_valid():
            return _failed(request, pk, f"{prefix}_form", form)
        data = {name: value for name, value in form.cleaned_data.items() if name != "preset"}
    try:
        change(principal=request.user, alert=alert, remote_addr=client_address(request), **data)
    except ApplicationError as error:
        if form is None:
            return _failed(request, pk, "acknowledge_error", error.message)
        form.errors_from(error)
        return _failed(request, pk, f"{prefix}_form", form)
    return _done(request, pk, message(data) if callable(message) else message)


@login_required
@require_http_methods(["POST"])
def alert_acknowledge(request, pk):
    return _step(request, pk, alerts.alert_acknowledge,
                 message="Acknowledged: the alert stays in the inbox until it is resolved.")


@login_required
@require_http_methods(["POST"])
def alert_assign(request, pk):
    return _step(request, pk, alerts.alert_assign, AlertAssignForm, "assign",
                 lambda data: f"Assigned to {data['assignee'].username}." if data["assignee"] else "Unassigned.")


@login_required
@require_http_methods(["POST"])
def alert_resolve(request, pk):
    return _step(request, pk, alerts.alert_resolve, AlertResolveForm, "resolve",
                 "Resolved, with your note in the audit trail.")


@login_required
@require_http_methods(["POST"])
def alert_snooze(request, pk):
    return _step(request, pk, alerts.alert_snooze, AlertSnoozeForm, "snooze",
                 "Snoozed: hidden from the inbox until then; new evidence still counts.")


@login_required
@require_http_methods(["POST"])
def alert_reopen(request, pk):
    return _step(request, pk, alerts.alert_reopen, AlertReopenForm, "reopen", "Reopened: back in the inbox.")
