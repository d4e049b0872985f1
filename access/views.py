"""Browser pages of access: the role matrix, requests, approvals, grants, break-glass, audit
and the owners' access reviews.

Thin, like the catalog's views: they read through ``access.selectors``, write through the
services in ``access.grants`` and ask ``access.policies`` / ``access.decisions`` before showing
an action. An object outside the user's scope is a 404.
"""

import json
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from access import decisions, enforcement, grants, policies, proposals, requester, selectors
from access.audit import audit_verify, client_address
from access.exports import audit_export_response, grants_export_response
from access.filtersets import FAILED_ENFORCEMENT, GrantFilterSet
from access.audit_actions import USER_ID_DETAILS
from access.forms import (
    IMPOSSIBLE_RANGE,
    AccessRequestForm,
    AccessReviewConfirmForm,
    AuditFilterForm,
    BreakGlassForm,
    BreakGlassReviewForm,
    GrantExtendForm,
    GrantRevokeForm,
    ReviewForm,
    RolePermissionForm,
    StewardAddForm,
    StewardRemoveForm,
)
from access.models import AccessLevel, AuditEvent, ProposalStatus, RequestStatus, ReviewDecision, RolePermission
from access.roles import ENVIRONMENTS, TIERS
from access.serializers import grant_effective_status
from catalog import selectors as catalog_selectors
from catalog.models import Dataset, Platform
from catalog.vocabulary import Sensitivity
from identity.stepup import step_up_required
from lineage import selectors as lineage_selectors

QUEUE_PAGE_SIZE = 20
AUDIT_PAGE_SIZE = 50
DOWNSTREAM_SHOWN = 10
BREAK_GLASS_SHOWN = 50  # oldest first; GET /api/v1/access/grants/?awaitingReview=true lists them all
DOWNSTREAM_DEPTH = 5
LEVEL_NAMES = {AccessLevel.READ: "read", AccessLevel.WRITE: "write"}



def _next_url(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return default


def _dataset(request, pk) -> Dataset:
    """A dataset the user may see, with its store (404 otherwise)."""
    return catalog_selectors.dataset_get(user=request.user, pk=pk)


def _tier_label(value) -> str:
    return Sensitivity(value).label


def _level_label(value) -> str:
    return AccessLevel(value).label


# The dataset page's access actions -----------------------------------------------------------


def dataset_access_actions(*, user, dataset) -> dict:
    """What the dataset page offers and tells: the reader's own access (``own_access``: standing,
    live grants, pending requests and who they wait for), "Request access" where the matrix lets
    them ask for more than they hold (never to an owner), "Break-glass" where the matrix allows it."""
    own = requester.dataset_own_access(user=user, dataset=dataset)
    return {
        "own_access": own,
        "can_request_access": own.can_request,
        "can_break_glass": bool(_break_glass_levels(user, dataset)),
        "can_review_access": policies.can_review_dataset_access(user, dataset),
        "can_see_enforcement": policies.can_manage_enforcement(user, dataset),
    }


def _break_glass_levels(user, dataset) -> list[str]:
    """The levels the user's matrix allows break-glass for on this whole dataset."""
    if getattr(user, "is_service_account", False):
        return []
    cells = [
        cell for cell in decisions.matrix_cells(user)
        if cell.break_glass and cell.environment == dataset.store.environment
        and cell.sensitivity == decisions.dataset_tier(dataset)
    ]
    most = max((cell.jit_level for cell in cells), default=AccessLevel.NONE)
    return [name for level, name in LEVEL_NAMES.items() if level <= most]


# Role matrix ---------------------------------------------------------------------------------


@login_required
def role_matrix(request):
    """The matrix: one table per environment, roles x sensitivity tiers."""
    cells = selectors.role_matrix(user=request.user)
    by_place = {(cell.role_id, cell.environment, cell.sensitivity): cell for cell in cells}
    roles = sorted({cell.role_id: cell.role for cell in cells}.values(), key=lambda role: role.name)
    environments = []
    for environment in ENVIRONMENTS:
        rows = [{"role": role, "cells": [
            {"cell": by_place.get((role.pk, environment, tier)), "tier": _tier_label(tier)} for tier in TIERS
        ]} for role in roles]
        environments.append({"name": environment, "rows": rows})
    return render(request, "access/role_matrix.html", {
        "environments": environments,
        "tiers": [_tier_label(tier) for tier in TIERS],
        "can_edit": policies.can_edit_role_matrix(request.user),
    })


@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def role_cell_edit(request, pk):
    """Edit one cell (admins); everyone else may only read the matrix."""
    if not policies.can_edit_role_matrix(request.user):
        raise PermissionDenied("Only an admin edits the role matrix.")
    cell = get_object_or_404(RolePermission.objects.select_related("role"), pk=pk)
    initial = {name: getattr(cell, name) for name in grants.MATRIX_FIELDS}
    form = RolePermissionForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            grants.role_permission_update(principal=request.user, cell=cell, remote_addr=client_address(request), **form.cleaned_data)
        except ValidationError as error:
            form.errors_apply(error)
        else:
            messages.success(request, f"Saved {cell.role.name} / {cell.environment} / {_tier_label(cell.sensitivity)}.")
            return redirect(f"{reverse('access:role-matrix')}#env-{cell.environment}")
    return render(request, "access/role_cell_form.html", {
        "cell": cell, "form": form, "tier": _tier_label(cell.sensitivity),
    })


# Requests ------------------------------------------------------------------------------------


def _request_options(user, dataset) -> list[dict]:
    """What the user may ask for on the whole dataset, per level (from their best matrix cell)."""
    options = []
    for level, name in LEVEL_NAMES.items():
        cell = decisions.cell_for_request(user, dataset.store.environment, decisions.dataset_tier(dataset), level)
        options.append({"level": name, "label": _level_label(level), "cell": cell})
    return options


@login_required
@require_http_methods(["GET", "POST"])
def request_create(request, dataset_pk):
    """The "Request access" form of one dataset."""
    dataset = _dataset(request, dataset_pk)
    columns = list(dataset.columns.order_by("position"))
    options = _request_options(request.user, dataset)
    allowed = [option for option in options if option["cell"]]
    chosen = request.POST.get("level") if request.method == "POST" else None
    cell = next((o["cell"] for o in allowed if o["level"] == chosen), allowed[0]["cell"] if allowed else None)
    max_hours = max((o["cell"].jit_max_hours for o in allowed), default=None)
    form = AccessRequestForm(
        request.POST or None, columns=columns, max_hours=max_hours,
        ticket_required=bool(cell and cell.ticket_required),
        initial={"level": allowed[0]["level"] if allowed else "read", "duration": min(max_hours or 8, 8)},
    )
    previewing = request.method == "POST" and "preview" in request.POST  # without JavaScript: show, do not send
    if request.method == "POST" and not previewing and form.is_valid():
        data = form.cleaned_data
        try:
            access_request = grants.access_request_create(
                principal=request.user, dataset=dataset, level=data["level"], columns=data["columns"],
                duration=data["duration"], justification=data["justification"], ticket=data["ticket"],
                remote_addr=client_address(request),
            )
        except ValidationError as error:
            form.errors_apply(error)
        except PermissionDenied as error:
            form.errors_apply(ValidationError(str(error)))
        else:
            messages.success(request, f"Asked for {data['level']} access to {dataset.qualified_name}. The approvers were told.")
            return redirect("access:request-detail", pk=access_request.pk)
    column_rows = [
        {"column": column, "widget": widget, "tier": _tier_label(column.sensitivity)}
        for column, widget in zip(columns, form["columns"], strict=False)
    ]
    # The form lists every column with its sensitivity: reading Restricted ones is audited, as on the dataset page.
    grants.restricted_metadata_viewed(principal=request.user, dataset=dataset, remote_addr=client_address(request),
                                      via="page:request")
    if previewing:
        form = AccessRequestForm(  # unbound again: a preview marks no field as wrong
            initial={**request.POST.dict(), "columns": request.POST.getlist("columns")}, columns=columns,
            max_hours=max_hours, ticket_required=bool(cell and cell.ticket_required),
        )
        column_rows = [{**row, "widget": widget} for row, widget in zip(column_rows, form["columns"], strict=False)]
    chosen_level = (request.POST.get("level") if request.method == "POST" else None) or form["level"].value()
    chosen_columns = request.POST.getlist("columns") if request.method == "POST" else []
    return render(request, "access/request_form.html", {
        "dataset": dataset, "form": form, "options": options, "allowed": allowed, "column_rows": column_rows,
        "max_hours": max_hours, "tier": dataset.sensitivity_label,
        "any_ticket": any(o["cell"].ticket_required for o in allowed),
        "rules": requester.request_rules(user=request.user, dataset=dataset, level=chosen_level, columns=chosen_columns),
    })


@login_required
@require_http_methods(["GET"])
def request_rules(request, dataset_pk):
    """The request form's "for your choice" summary of one scope (``?level=read&columns=email``):
    approvals, security approval, maximum duration, ticket and who decides. htmx swaps it in as
    columns are ticked; the form shows the same without JavaScript, and the service decides."""
    dataset = _dataset(request, dataset_pk)
    rules = requester.request_rules(
        user=request.user, dataset=dataset, level=request.GET.get("level", "read"), columns=request.GET.getlist("columns"),
    )
    # The duration's help follows the choice too (an out-of-band swap).
    return render(request, "access/partials/request_rules.html", {"dataset": dataset, "rules": rules, "oob": True})


def _present_request(access_request) -> None:
    """Labels and approval progress for templates (reviews must be prefetched as review_list)."""
    reviews = getattr(access_request, "review_list", None)
    if reviews is None:
        reviews = list(access_request.reviews.select_related("reviewer"))
    approvals = [r for r in reviews if r.decision == ReviewDecision.APPROVE and not r.superseded]
    access_request.approval_count = len(approvals)
    access_request.security_pending = access_request.security_approval_required and not any(
        r.as_security_engineer for r in approvals
    )
    access_request.tier = _tier_label(access_request.sensitivity)
    access_request.duration_hours = round(access_request.duration.total_seconds() / 3600, 2)
    access_request.reviews_shown = reviews


def _requester_roles(access_request) -> list:
    return [role for group in access_request.requester.groups.all() if (role := getattr(group, "company_role", None))]


def _object_events(*, dataset_id, objects):
    """Audit events of some objects (``[("accessrequest", 3), ("grant", 5)]``) on one dataset,
    oldest first; the dataset narrows the search to its index."""
    condition = Q(pk__in=[])
    for object_type, object_id in objects:
        condition |= Q(object_type=object_type, object_id=str(object_id))
    return list(AuditEvent.objects.filter(condition, dataset_id=dataset_id).order_by("id")[:200])


@login_required
def request_detail(request, pk, review_form=None):
    access_request = get_object_or_404(selectors.request_visible(user=request.user), pk=pk)
    _present_request(access_request)
    grant = getattr(access_request, "grant", None) if access_request.status == RequestStatus.APPROVED else None
    objects = [("accessrequest", access_request.pk)] + ([("grant", grant.pk)] if grant else [])
    pending = access_request.status == RequestStatus.PENDING
    reviewed = any(r.reviewer_id == request.user.pk and not r.superseded for r in access_request.reviews_shown)
    can_review = pending and not reviewed and policies.can_review_request(request.user, access_request)
    return render(request, "access/request_detail.html", {
        "req": access_request,
        "grant": grant,
        "roles": _requester_roles(access_request),
        "events": _object_events(dataset_id=access_request.dataset_id, objects=objects),
        "can_review": can_review,
        "review_form": review_form or (ReviewForm() if can_review else None),
        "can_cancel": pending and access_request.requester_id == request.user.pk,
        "waits_for": requester.request_waits_for(access_request) if pending else None,
    }, status=400 if review_form is not None else 200)


@login_required
@require_http_methods(["POST"])
@step_up_required
def request_review(request, pk):
    """Approve or deny (a denial needs a reason); back to the queue, or the request on errors."""
    access_request = get_object_or_404(selectors.request_visible(user=request.user), pk=pk)
    form = ReviewForm(request.POST)
    if form.is_valid():
        approve = form.cleaned_data["decision"] == "approve"
        try:
            decided = grants.access_request_review(
                principal=request.user, request=access_request, approve=approve,
                reason=form.cleaned_data["reason"], remote_addr=client_address(request),
            )
        except ValidationError as error:
            form.errors_apply(error)
        else:
            who = access_request.requester.username
            if decided.status == RequestStatus.APPROVED:
                messages.success(request, f"Approved: {who} now has access to {access_request.dataset.qualified_name}.")
            elif decided.status == RequestStatus.DENIED:
                messages.success(request, f"Denied the request of {who}.")
            else:
                messages.success(request, f"Your approval is recorded; the request of {who} waits for more approvals.")
            return redirect(_next_url(request, reverse("access:approval-queue")))
    return request_detail(request, pk, review_form=form)


@login_required
@require_http_methods(["POST"])
def request_cancel(request, pk):
    access_request = get_object_or_404(selectors.my_requests(user=request.user), pk=pk)
    try:
        grants.access_request_cancel(principal=request.user, request=access_request, remote_addr=client_address(request))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Cancelled your request for {access_request.dataset.qualified_name}.")
    return redirect(_next_url(request, reverse("access:my-access")))


@login_required
def my_access(request):
    """My requests and my live grants (end early, ask to extend, cancel)."""
    live = list(selectors.my_grants(user=request.user, live_only=True))
    pending_extensions = set(
        selectors.my_requests(user=request.user).filter(status=RequestStatus.PENDING, extends__in=live)
        .values_list("extends_id", flat=True)
    ) if live else set()
    for grant in live:
        grant.extension_pending = grant.pk in pending_extensions
    paginator = Paginator(selectors.my_requests(user=request.user), QUEUE_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    for access_request in page.object_list:
        _present_request(access_request)
    return render(request, "access/my_access.html", {
        "grants": live, "page": page, "requests": page.object_list,
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
        "revoke_form": GrantRevokeForm(), "extend_form": GrantExtendForm(),
    })


# Approvals -----------------------------------------------------------------------------------


@login_required
def approval_queue(request):
    """Pending requests this user may review, and break-glass grants waiting for their review."""
    paginator = Paginator(selectors.approval_queue(user=request.user), QUEUE_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    queue = list(page.object_list)
    downstream = lineage_selectors.lineage_downstream_of_each(
        user=request.user, dataset_ids={r.dataset_id for r in queue}, depth=DOWNSTREAM_DEPTH, shown=DOWNSTREAM_SHOWN
    )
    for entry in downstream.values():
        for item in entry["datasets"]:
            item["tier"] = item["dataset"].sensitivity_label
    for access_request in queue:
        _present_request(access_request)
        access_request.requester_roles = _requester_roles(access_request)
        access_request.downstream = downstream.get(access_request.dataset_id)
    waiting = selectors.break_glass_pending_review(user=request.user)
    break_glass = list(waiting[:BREAK_GLASS_SHOWN])
    break_glass_total = waiting.count() if len(break_glass) == BREAK_GLASS_SHOWN else len(break_glass)
    for grant in break_glass:
        grant.tier = _tier_label(grant.request.sensitivity)
    return render(request, "access/approval_queue.html", {
        "page": page, "queue": queue, "break_glass": break_glass, "break_glass_total": break_glass_total,
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
        "review_form": ReviewForm(), "break_glass_form": BreakGlassReviewForm(),
        "next_url": request.get_full_path(),
        "proposals_waiting": selectors.proposal_queue(user=request.user).count(),
    })


@login_required
def approval_count(request):
    """The count for the nav link, fetched by htmx after the page loads: pending requests and
    proposals, and break-glass use waiting for its review."""
    count = (selectors.approval_queue(user=request.user).count() + selectors.proposal_queue(user=request.user).count()
             + selectors.break_glass_pending_review(user=request.user).count())
    return render(request, "access/partials/approval_count.html", {"pending_count": count})


# Grants --------------------------------------------------------------------------------------


GRANTS_PAGE_SIZE = 50


def _grants_filtered(request) -> GrantFilterSet:
    """The grants list's filters over every grant (security engineers and admins; 404 for anyone else)."""
    if not policies.can_read_grants_everywhere(request.user):
        raise Http404("No such page.")
    return GrantFilterSet(request.GET, queryset=selectors.grant_visible(user=request.user), request=request)


@login_required
def grant_list(request):
    """Grants across all datasets, filtered in the URL (status, dataset, user, store, environment,
    end dates), newest first, paged: a constant number of queries."""
    filterset = _grants_filtered(request)
    valid = filterset.is_valid()
    grants_found = filterset.qs if valid else selectors.grant_visible(user=request.user).none()
    paginator = Paginator(grants_found.order_by("-starts_at", "-pk"), GRANTS_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    now = timezone.now()
    for grant in page.object_list:
        grant.effective_status = grant_effective_status(grant, now)
        grant.failed = grant.enforcement in FAILED_ENFORCEMENT
        grant.awaiting_review = grant.is_break_glass and grant.review_required and grant.reviewed_at is None
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "access/grant_list.html", {
        "filterset": filterset, "form": filterset.form, "page": page, "grants": page.object_list,
        "query_string": query.urlencode(), "filtered": any(value for key, value in query.items()),
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
    }, status=200 if valid else 400)


@login_required
def grant_export(request):
    """The filtered grants list as CSV, audited (``grant.exported``) like the audit trail's exports."""
    filterset = _grants_filtered(request)
    if not filterset.is_valid():
        return grant_list(request)
    grants.grants_exported(principal=request.user, filters=request.GET.dict(), remote_addr=client_address(request))
    return grants_export_response(filterset.qs)


@login_required
def grant_detail(request, pk, revoke_form=None, extend_form=None, break_glass_form=None, status=200):
    grant = get_object_or_404(selectors.grant_visible(user=request.user), pk=pk)
    live = grant.status in decisions.LIVE_STATUSES and grant.ends_at > timezone.now()
    holder = grant.user_id == request.user.pk
    can_review_break_glass = (
        grant.is_break_glass and grant.review_required and grant.reviewed_at is None
        and policies.can_review_break_glass(request.user, grant)
    )
    extension_pending = holder and grant.extension_requests.filter(status=RequestStatus.PENDING).exists()
    return render(request, "access/grant_detail.html", {
        "grant": grant,
        "live": live,
        "tier": _tier_label(grant.request.sensitivity),
        "failed": grant.enforcement in ("apply_failed", "revoke_failed"),
        "events": _object_events(dataset_id=grant.dataset_id, objects=[("accessrequest", grant.request_id), ("grant", grant.pk)]),
        "can_revoke": live and policies.can_revoke_grant(request.user, grant),
        "can_extend": live and holder and not extension_pending,
        "extension_pending": extension_pending,
        "can_review_break_glass": can_review_break_glass,
        "can_retry": grant.enforcement in ("apply_failed", "revoke_failed")
        and policies.can_retry_enforcement(request.user, grant),
        "revoke_form": revoke_form or GrantRevokeForm(),
        "extend_form": extend_form or GrantExtendForm(),
        "break_glass_form": break_glass_form or BreakGlassReviewForm(),
    }, status=status)


@login_required
@require_http_methods(["POST"])
def grant_revoke(request, pk):
    grant = get_object_or_404(selectors.grant_visible(user=request.user), pk=pk)
    form = GrantRevokeForm(request.POST)
    if form.is_valid():
        try:
            grants.grant_revoke(principal=request.user, grant=grant, reason=form.cleaned_data["reason"],
                                remote_addr=client_address(request))
        except ValidationError as error:
            form.errors_apply(error)
        else:
            messages.success(request, f"Ended the grant of {grant.user.username} on {grant.dataset.qualified_name}.")
            return redirect(_next_url(request, reverse("access:grant-detail", args=[grant.pk])))
    return grant_detail(request, pk, revoke_form=form, status=400)


@login_required
@require_http_methods(["POST"])
def grant_enforcement_retry(request, pk):
    """Start a failed warehouse change over (after its cause was fixed)."""
    grant = get_object_or_404(selectors.grant_visible(user=request.user), pk=pk)
    try:
        enforcement.grant_enforcement_retry(principal=request.user, grant=grant, remote_addr=client_address(request))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "Trying the warehouse again now; the grant's page shows the outcome.")
    return redirect("access:grant-detail", pk=grant.pk)


@login_required
@require_http_methods(["POST"])
def grant_extend(request, pk):
    grant = get_object_or_404(selectors.my_grants(user=request.user), pk=pk)
    form = GrantExtendForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            extension = grants.grant_extend(principal=request.user, grant=grant, duration=data["duration"],
                                            justification=data["justification"], ticket=data["ticket"],
                                            remote_addr=client_address(request))
        except ValidationError as error:
            form.errors_apply(error)
        except PermissionDenied as error:
            form.errors_apply(ValidationError(str(error)))
        else:
            messages.success(request, "Asked to extend the grant; the approvers were told.")
            return redirect("access:request-detail", pk=extension.pk)
    return grant_detail(request, pk, extend_form=form, status=400)


@login_required
@require_http_methods(["POST"])
def break_glass_review(request, pk):
    grant = get_object_or_404(selectors.grant_visible(user=request.user), pk=pk)
    form = BreakGlassReviewForm(request.POST)
    if form.is_valid():
        try:
            grants.break_glass_review(principal=request.user, grant=grant, note=form.cleaned_data["note"],
                                      remote_addr=client_address(request))
        except ValidationError as error:
            form.errors_apply(error)
        else:
            messages.success(request, f"Reviewed the break-glass access of {grant.user.username}.")
            return redirect(_next_url(request, reverse("access:grant-detail", args=[grant.pk])))
    return grant_detail(request, pk, break_glass_form=form, status=400)


@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def break_glass(request, dataset_pk):
    """Access at once in an emergency, where the user's matrix allows it."""
    dataset = _dataset(request, dataset_pk)
    levels = _break_glass_levels(request.user, dataset)
    if not levels:
        raise PermissionDenied("Your roles do not allow break-glass on this dataset; ask for access instead.")
    cap = settings.ACCESS_BREAK_GLASS_MAX_MINUTES
    form = BreakGlassForm(request.POST or None, cap=cap, levels=levels)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            grant = grants.break_glass_activate(principal=request.user, dataset=dataset, level=data["level"],
                                                reason=data["reason"], minutes=data["minutes"], remote_addr=client_address(request))
        except ValidationError as error:
            form.errors_apply(error)
        except PermissionDenied as error:
            form.errors_apply(ValidationError(str(error)))
        else:
            messages.success(request, f"Break-glass access is live for {data['minutes']} minute{pluralize(data['minutes'])}. Every approver was told.")
            return redirect("access:grant-detail", pk=grant.pk)
    return render(request, "access/break_glass_form.html", {
        "dataset": dataset, "form": form, "cap": cap, "tier": dataset.sensitivity_label,
    })


# Audit ---------------------------------------------------------------------------------------


def _require_audit_reader(request) -> None:
    if not policies.can_read_audit(request.user):
        raise Http404("No such page.")


def _audit_filtered(request, form: AuditFilterForm):
    """The audit trail with the URL's filters; usernames and datasets resolved to ids first,
    so the page query runs on the (actor, id) and (dataset, id) indexes."""
    events = selectors.audit_list(user=request.user)
    if not form.is_valid():
        return events.none()  # an impossible range or a bad date matches nothing (the page says why)
    data = form.cleaned_data
    if data["action"]:
        events = selectors.audit_action_filter(events, data["action"])
    if data["actor"]:
        name = data["actor"].strip()
        user = get_user_model().objects.filter(username=name).first()
        events = events.filter(actor=user) if user else events.filter(actor__isnull=True, actor_name=name)
    if data["dataset"]:
        ids = list(Dataset.objects.filter(qualified_name__iexact=data["dataset"].strip()).values_list("pk", flat=True))
        events = events.filter(dataset_id__in=ids)
    zone = timezone.get_current_timezone()
    if data["since"]:
        events = events.filter(at__gte=datetime.combine(data["since"], time.min, tzinfo=zone))
    if data["until"] and data["until"] < date.max:  # up to 9999-12-31: no upper bound at all
        events = events.filter(at__lt=datetime.combine(data["until"] + timedelta(days=1), time.min, tzinfo=zone))
    return events


def _int_param(request, name) -> int | None:
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() else None


OBJECT_NAMES = {"accessrequest": "request", "rolepermission": "matrix cell", "datastore": "store"}


def _usernames_in_details(events) -> dict[int, str]:
    """Usernames of the user ids that events' details hold (``approvals: [8, 3]``), in one query."""
    ids = {
        value for event in events for key in USER_ID_DETAILS if isinstance(event.details, dict)
        for value in (event.details.get(key) or []) if isinstance(value, int)
    }
    if not ids:
        return {}
    return dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))


def _readable_time(value: str) -> str:
    """An ISO time from an event's details as "7 Dec 2026, 14:05 UTC" (as written when it is not one)."""
    try:
        at = timezone.localtime(datetime.fromisoformat(value))
    except (ValueError, TypeError):
        return value
    return f"{at.day} {at:%b %Y, %H:%M} {at.tzname() or ''}".strip()


def _detail_pairs(details: dict, usernames: dict[int, str] | None = None) -> list[tuple[str, str]]:
    """An event's details as readable ``key: value`` pairs (empty values left out; user ids as usernames)."""
    pairs = []
    usernames = usernames or {}
    for key, value in sorted(details.items()):
        if value in (None, "", [], {}):
            continue
        if key in USER_ID_DETAILS and isinstance(value, list):
            value = [usernames.get(item, f"user #{item}") if isinstance(item, int) else item for item in value]
        if key.endswith("_at") and isinstance(value, str):
            value = _readable_time(value)
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(item) for item in value)
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        pairs.append((key.replace("_", " "), str(value)))
    return pairs


def _link_of(event) -> str:
    if event.object_type == "accessrequest" and event.object_id.isdigit():
        return reverse("access:request-detail", args=[event.object_id])
    if event.object_type == "grant" and event.object_id.isdigit():
        return reverse("access:grant-detail", args=[event.object_id])
    if event.object_type == "alert" and event.object_id.isdigit():
        return reverse("monitoring:alert-detail", args=[event.object_id])
    return ""


@login_required
def audit_list(request):
    """The audit trail, newest first, paged by id ("older"/"newer"): no COUNT over a million rows."""
    _require_audit_reader(request)
    form = AuditFilterForm(request.GET)
    events = _audit_filtered(request, form)
    before, after = _int_param(request, "before"), _int_param(request, "after")
    if after is not None:
        rows = list(events.filter(pk__gt=after).order_by("id")[:AUDIT_PAGE_SIZE + 1])
        has_newer = len(rows) > AUDIT_PAGE_SIZE
        rows = rows[:AUDIT_PAGE_SIZE][::-1]
        has_older = bool(rows)
    else:
        if before is not None:
            events = events.filter(pk__lt=before)
        rows = list(events[:AUDIT_PAGE_SIZE + 1])
        has_older = len(rows) > AUDIT_PAGE_SIZE
        rows = rows[:AUDIT_PAGE_SIZE]
        has_newer = before is not None and bool(rows)
    usernames = _usernames_in_details(rows)
    for event in rows:
        event.link = _link_of(event)
        event.object_name = OBJECT_NAMES.get(event.object_type, event.object_type)
        event.detail_pairs = _detail_pairs(event.details, usernames)
    query = request.GET.copy()
    for name in ("before", "after"):
        query.pop(name, None)
    return render(request, "access/audit_list.html", {
        "form": form, "events": rows, "query_string": query.urlencode(),
        "older": rows[-1].pk if rows and has_older else None,
        "newer": rows[0].pk if rows and has_newer else None,
        "filtered": any(value for key, value in query.items()),
        "impossible_range": IMPOSSIBLE_RANGE in form.errors.get("since", []),
    }, status=200 if form.is_valid() else 400)


@login_required
def audit_export(request, fmt):
    """The filtered trail as CSV or JSON, streamed oldest first (a million events never sit in memory)."""
    _require_audit_reader(request)
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return audit_list(request)  # the page, with the filters' errors (400)
    events = _audit_filtered(request, form)
    grants.audit_exported(principal=request.user, fmt=fmt, filters=request.GET.dict(), remote_addr=client_address(request))
    return audit_export_response(events, fmt)


@login_required
@require_http_methods(["GET", "POST"])
def audit_chain_verify(request):
    """Recompute the hash chain (on a button press: it reads every event)."""
    _require_audit_reader(request)
    report = audit_verify() if request.method == "POST" else None
    return render(request, "access/audit_verify.html", {"report": report})


# Periodic access review ----------------------------------------------------------------------

REVIEWS_PAGE_SIZE = 50


@login_required
def access_review_index(request):
    """The datasets whose access review the reader may run: due ones (never reviewed, or not within
    ``ACCESS_REVIEW_INTERVAL_DAYS``) by default, ``?show=all`` for every one; never reviewed first."""
    show_all = request.GET.get("show") == "all"
    datasets = selectors.access_review_list(user=request.user, due_only=not show_all)
    paginator = Paginator(datasets, REVIEWS_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    due_since = timezone.now() - timedelta(days=settings.ACCESS_REVIEW_INTERVAL_DAYS)
    for dataset in page.object_list:
        dataset.is_due = dataset.last_reviewed_at is None or dataset.last_reviewed_at < due_since
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "access/access_review_index.html", {
        "page": page, "datasets": page.object_list, "show_all": show_all,
        "as_security_engineer": decisions.is_security_engineer(request.user),
        "interval_days": settings.ACCESS_REVIEW_INTERVAL_DAYS, "query_string": query.urlencode(),
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
    })



def _access_review_page(request, dataset, *, form=None, steward_form=None, status=200):
    review = selectors.dataset_access_review(user=request.user, dataset=dataset)
    for grant in review["grants"]:
        grant.long_running = grant.ends_at - grant.starts_at > timedelta(days=1)
    last = AuditEvent.objects.filter(dataset=dataset, action="access_review.confirmed").order_by("-id").first()
    can_change_stewards = policies.can_change_stewards(request.user, dataset)
    return render(request, "access/access_review.html", {
        "dataset": dataset, "review": review, "form": form or AccessReviewConfirmForm(), "last_review": last,
        "tier": dataset.sensitivity_label, "revoke_form": GrantRevokeForm(),
        "next_url": request.get_full_path(), "stewards": selectors.dataset_stewards(dataset=dataset),
        "can_change_stewards": can_change_stewards,
        "steward_form": steward_form or (StewardAddForm() if can_change_stewards else None),
    }, status=status)


def _reviewed_dataset(request, dataset_pk) -> Dataset:
    """The dataset of an access review page: one the user sees and reviews (404 otherwise)."""
    dataset = _dataset(request, dataset_pk)
    if not policies.can_review_dataset_access(request.user, dataset):
        raise Http404("No such review.")
    return dataset


@login_required
@require_http_methods(["GET", "POST"])
def access_review(request, dataset_pk):
    """An owner's or steward's periodic review: standing access by role, live grants to confirm
    or end, and the dataset's stewards."""
    dataset = _reviewed_dataset(request, dataset_pk)
    form = AccessReviewConfirmForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        grants.dataset_access_review_confirm(principal=request.user, dataset=dataset, note=form.cleaned_data["note"],
                                             remote_addr=client_address(request))
        messages.success(request, f"Recorded your access review of {dataset.qualified_name}.")
        return redirect("access:access-review", dataset_pk=dataset.pk)
    return _access_review_page(request, dataset, form=form)


@login_required
@require_http_methods(["POST"])
def steward_add(request, dataset_pk):
    """Add a steward (a username or a group name) from the access review page."""
    dataset = _reviewed_dataset(request, dataset_pk)
    if not policies.can_change_stewards(request.user, dataset):
        raise PermissionDenied("Only the dataset's owners, registrars or an admin change its stewards.")
    form = StewardAddForm(request.POST)
    if form.is_valid():
        try:
            user, group = grants.steward_target_find(username=form.cleaned_data["user"],
                                                     group_name=form.cleaned_data["group"])
            proposal = grants.dataset_steward_add(principal=request.user, dataset=dataset, user=user, group=group,
                                                  remote_addr=client_address(request))
        except ValidationError as error:
            form.errors_apply(error)
        else:
            named = user.username if user else f"the group {group.name}"
            if proposal is not None:
                messages.info(request, f"Proposed {named} as a steward of {dataset.qualified_name}: it waits for an "
                                       f"owner's or a security engineer's approval (proposal #{proposal.pk}).")
                return redirect("access:proposal-detail", pk=proposal.pk)
            messages.success(request, f"{named} now stewards {dataset.qualified_name}.")
            return redirect("access:access-review", dataset_pk=dataset.pk)
    return _access_review_page(request, dataset, steward_form=form, status=400)


@login_required
@require_http_methods(["POST"])
def steward_remove(request, dataset_pk):
    """Remove a steward (a user or a group) from the access review page."""
    dataset = _reviewed_dataset(request, dataset_pk)
    if not policies.can_change_stewards(request.user, dataset):
        raise PermissionDenied("Only the dataset's owners, registrars or an admin change its stewards.")
    form = StewardRemoveForm(request.POST)
    if form.is_valid():
        kind, name = form.cleaned_data["kind"], form.cleaned_data["name"]
        user, group = selectors.dataset_steward_find(dataset=dataset, kind=kind, name=name)
        if user is None and group is None:
            messages.error(request, f"{name} is not a steward of {dataset.qualified_name}.")
            return _access_review_page(request, dataset, status=400)
        grants.dataset_steward_remove(principal=request.user, dataset=dataset, user=user, group=group,
                                      remote_addr=client_address(request))
        messages.success(request, f"{name} no longer stewards {dataset.qualified_name}.")
        return redirect("access:access-review", dataset_pk=dataset.pk)
    messages.error(request, "Say which steward to remove.")
    return _access_review_page(request, dataset, status=400)


# Proposals: changes to what the decision reads ---------------------------------------------------

PROPOSALS_PAGE_SIZE = 25
PROPOSAL_STATUS_CHOICES = [("", "Any status")] + list(ProposalStatus.choices)


def _present_proposal(proposal) -> None:
    proposal.summary = proposals.proposal_summary(proposal)
    proposal.tier = _tier_label(proposal.sensitivity)
    proposal.column_rows = [
        {"name": column["name"], "field": key, "from": column[key]["from"], "to": column[key]["to"]}
        for column in proposal.changes.get("columns", []) for key in ("sensitivity", "protection") if key in column
    ]
    proposal.approval_count = sum(1 for review in proposal.review_list if review.decision == ReviewDecision.APPROVE)


@login_required
def proposal_list(request):
    """Proposed changes to decision inputs: those waiting for me first, then all I may see, filtered in the URL."""
    status = request.GET.get("status", ProposalStatus.PENDING)
    if status not in ProposalStatus.values:
        status = ""
    visible = selectors.proposal_visible(user=request.user)
    if status:
        visible = visible.filter(status=status)
    paginator = Paginator(visible.order_by("-created_at", "-pk"), PROPOSALS_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    waiting = list(selectors.proposal_queue(user=request.user)[:PROPOSALS_PAGE_SIZE])
    for proposal in [*page.object_list, *waiting]:
        _present_proposal(proposal)
    proposals.proposals_viewed(principal=request.user, proposals=[*page.object_list, *waiting],
                               remote_addr=client_address(request), via="page:proposals")
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "access/proposal_list.html", {
        "page": page, "proposals": page.object_list, "waiting": waiting, "status": status,
        "status_choices": PROPOSAL_STATUS_CHOICES, "query_string": query.urlencode(),
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
    })


@login_required
def proposal_detail(request, pk, review_form=None):
    """A proposal: the diff, the access it would open, its reviews, and the reviewer's decision."""
    proposal = get_object_or_404(selectors.proposal_visible(user=request.user), pk=pk)
    _present_proposal(proposal)
    pending = proposal.status == ProposalStatus.PENDING
    reviewed = any(review.reviewer_id == request.user.pk for review in proposal.review_list)
    can_review = pending and not reviewed and policies.can_review_proposal(request.user, proposal)
    # The diff names columns with their tiers: reading Restricted ones is audited, as on the dataset page.
    proposals.proposals_viewed(principal=request.user, proposals=[proposal], remote_addr=client_address(request),
                               via="page:proposal")
    return render(request, "access/proposal_detail.html", {
        "proposal": proposal,
        "events": AuditEvent.objects.filter(object_type="metadataproposal", object_id=str(proposal.pk)).order_by("id")
        if policies.can_read_audit(request.user) else [],
        "can_review": can_review,
        "review_form": review_form or (ReviewForm() if can_review else None),
        "can_cancel": pending and proposal.proposer_id == request.user.pk,
        "own": proposal.proposer_id == request.user.pk,
    }, status=400 if review_form is not None else 200)


@login_required
@require_http_methods(["POST"])
@step_up_required
def proposal_review(request, pk):
    """Approve or reject a proposal (a rejection needs a reason)."""
    proposal = get_object_or_404(selectors.proposal_visible(user=request.user), pk=pk)
    form = ReviewForm(request.POST)
    if form.is_valid():
        try:
            decided = proposals.proposal_review(
                principal=request.user, proposal=proposal, approve=form.cleaned_data["decision"] == "approve",
                reason=form.cleaned_data["reason"], remote_addr=client_address(request),
            )
        except ValidationError as error:
            form.errors_apply(error)
        else:
            outcome = {
                ProposalStatus.APPLIED: f"Approved and applied: {proposals.proposal_summary(decided)}.",
                ProposalStatus.REJECTED: "Rejected the proposal.",
                ProposalStatus.STALE: decided.outcome,
            }.get(decided.status, "Your approval is recorded; the proposal waits for more approvals.")
            (messages.warning if decided.status == ProposalStatus.STALE else messages.success)(request, outcome)
            return redirect("access:proposal-detail", pk=proposal.pk)
    return proposal_detail(request, pk, review_form=form)


@login_required
@require_http_methods(["POST"])
def proposal_cancel(request, pk):
    proposal = get_object_or_404(selectors.proposal_visible(user=request.user), pk=pk)
    try:
        proposals.proposal_cancel(principal=request.user, proposal=proposal, remote_addr=client_address(request))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "Cancelled your proposal.")
    return redirect("access:proposal-detail", pk=proposal.pk)


@login_required
def enforcement_plan(request, dataset_pk):
    """The dataset's Enforcement tab: the statements that make its protection true in the store."""
    from access.warehouses import enforcement_plan_get

    dataset = catalog_selectors.dataset_get(user=request.user, pk=dataset_pk)
    plan = enforcement_plan_get(user=request.user, dataset=dataset)
    dialect = request.GET.get("dialect", "")
    dialects = sorted({s["dialect"] for s in plan["statements"]})
    shown = [s for s in plan["statements"] if not dialect or s["dialect"] == dialect]
    return render(request, "access/enforcement_plan.html", {
        "dataset": dataset, "plan": plan, "statements": shown, "dialects": dialects, "dialect": dialect,
        "platform_label": dict(Platform.choices).get(dataset.store.platform, dataset.store.platform),
    })
