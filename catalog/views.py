"""Browser views of the catalog: thin, like the API views.

They read through ``catalog.selectors``, write through ``catalog.services`` and ask
``access.policies`` before showing an action; none of them decides a rule on its own.
"""

from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from access import grants as access_grants
from access.audit import client_address
from access import policies
from access import views as access_views
from catalog import selectors, services
from catalog.connections import FILE_PLATFORMS, connection_delete, connection_save, connection_test
from catalog.connectors import CONNECTORS
from catalog.diffs import field_change_is_breaking
from catalog.filtersets import NO_OWNER, DatasetFilterSet
from catalog.search import highlight_terms
from catalog.forms import (
    ColumnFormSet,
    ConnectionForm,
    DatasetForm,
    StoreForm,
    column_initial,
    registration_errors_apply,
)
from catalog.models import (
    ACTIVE_SYNC_STATUSES,
    ColumnSuggestion,
    Connection,
    Dataset,
    DataStore,
    SuggestionStatus,
    SyncOutcome,
    SyncRun,
    SyncTrigger,
)
from catalog.sync import sync_run_request
from catalog.vocabulary import Sensitivity, unclassified_tier
from identity.stepup import step_up_required
from lineage import selectors as lineage_selectors
from lineage import views as lineage_views

PAGE_SIZE = 25
COLUMN_PREFIX = "columns"


FACET_TITLES = {
    "sensitivity": "Sensitivity", "protection": "Protection", "store": "Store", "environment": "Environment",
    "residency": "Residency", "owner": "Owner", "tag": "Tag", "status": "Status",
}


@login_required
def dataset_list(request):
    """Search and filter datasets, with facet counts in the sidebar; every filter lives in the URL."""
    filterset = DatasetFilterSet(request.GET or None, queryset=selectors.dataset_list(user=request.user))
    results = filterset.qs
    if "search_score" in results.query.annotations:
        results = results.order_by("-search_score", "qualified_name")
    paginator = Paginator(results, PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    for name in ("store_kind",):
        field = filterset.form.fields[name]
        choices = [choice for choice in field.choices if choice[0] != ""]
        field.empty_label = "Any"
        field.choices = choices  # rebinds the widget's choices to this field's empty label
    active_filters = any(value for key, value in request.GET.lists() if key != "page" and any(value))
    valid = not filterset.is_bound or filterset.is_valid()
    search = (filterset.form.cleaned_data.get("q") or "").strip() if filterset.is_bound and valid else ""
    matches = selectors.dataset_search_matches(datasets=page.object_list, query=search)
    for dataset in page.object_list:
        dataset.matched = matches.get(dataset.pk)
    facets = selectors.dataset_search_facets(user=request.user, data=request.GET if valid else QueryDict())
    context = {
        "filterset": filterset,
        "page": page,
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
        "datasets": page.object_list,
        "search": search,
        "search_words": highlight_terms(search),
        "result_count": paginator.count,
        "query_string": query.urlencode(),
        "active_filters": active_filters,
        "facet_groups": _facet_groups(request.GET, facets),
    }
    if not paginator.count and not active_filters:
        context["catalog_empty"] = not selectors.dataset_visible(user=request.user).exists()
        # Registered datasets the reader may not see: say so, not "the catalog is empty".
        context["nothing_visible"] = context["catalog_empty"] and Dataset.objects.exists()
    # htmx live search asks for this same page and swaps in the sidebar and the results (hx-select).
    return render(request, "catalog/dataset_list.html", context)


def _facet_groups(params, facets) -> list[dict]:
    """The sidebar: each facet family with its values, counts, whether each is picked, and the URL
    that toggles it (sensitivity and protection take several values, the others one)."""
    groups = []
    for family, values in facets.items():
        picked = [value for value in params.getlist(family) if value]
        multiple = family in ("sensitivity", "protection")
        shown = list(values)
        for value in picked:  # a picked value stays listed (and can be unpicked) even with no result
            if family == "owner" and value == NO_OWNER:
                continue  # the sidebar lists "Nobody (no owner)" by itself
            if not any(entry["value"] == value for entry in shown):
                shown.append({"value": value, "label": value, "count": 0})
        entries = []
        for entry in shown:
            is_picked = entry["value"] in picked
            toggled = params.copy()
            toggled.pop("page", None)
            if multiple:
                rest = [value for value in picked if value != entry["value"]]
                toggled.setlist(family, rest if is_picked else [*picked, entry["value"]])
            else:
                toggled.setlist(family, [] if is_picked else [entry["value"]])
            entries.append({**entry, "picked": is_picked, "url": "?" + toggled.urlencode()})
        cleared = params.copy()
        cleared.pop("page", None)
        cleared.setlist(family, [])
        groups.append({
            "family": family, "title": FACET_TITLES[family], "multiple": multiple, "entries": entries,
            "picked": picked, "clear_url": "?" + cleared.urlencode(),
        })
    return groups


@login_required
def dataset_detail(request, pk):
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    current = dataset.current_version
    columns = lineage_views.columns_with_lineage(dataset=dataset, columns=current.columns if current else [])
    pending = _pending_suggestions_by_column(dataset)
    for column in columns:
        column["suggestions"] = pending.get(column["lineage"]["column_id"], [])
    access_grants.restricted_metadata_viewed(principal=request.user, dataset=dataset, remote_addr=client_address(request))
    return render(
        request,
        "catalog/dataset_detail.html",
        {
            "dataset": dataset,
            "current": current,
            "columns": columns,
            "pending_suggestion_count": sum(len(found) for found in pending.values()),
            "lineage_columns": True,
            "versions": selectors.dataset_version_list(dataset=dataset),
            "can_edit": policies.can_edit_dataset(request.user, dataset),
            "pending_proposals": _pending_proposals(dataset),
            "held_above": _held_above(dataset, current),
            **access_views.dataset_access_actions(user=request.user, dataset=dataset),
            **lineage_views.dataset_lineage_context(user=request.user, dataset=dataset, query=request.GET),
        },
    )


def _held_above(dataset: Dataset, current) -> str:
    """The tier its columns reach, when the dataset is held above it (columns of a higher tier were
    dropped; lowering the dataset waits for a reviewer), else ""."""
    if current is None or not dataset.classified:
        return ""
    reached = max((Sensitivity[column["sensitivity"].upper()] for column in current.columns), default=Sensitivity.PUBLIC)
    return Sensitivity(reached).label if reached < dataset.sensitivity else ""


def _pending_proposals(dataset: Dataset) -> list:
    """Changes proposed for this dataset that wait for review, each with a one-line summary (one query)."""
    from access.models import MetadataProposal, ProposalStatus  # access builds on the catalog
    from access.proposals import proposal_summary

    pending = list(MetadataProposal.objects.filter(dataset=dataset, status=ProposalStatus.PENDING)
                   .select_related("proposer").order_by("created_at"))
    for proposal in pending:
        proposal.summary = proposal_summary(proposal)
    return pending


def _pending_suggestions_by_column(dataset: Dataset) -> dict[int, list[ColumnSuggestion]]:
    """The dataset's pending classification suggestions by column id, in one query.

    Only warehouse syncs make suggestions, so a dataset no sync has seen costs no query.
    """
    by_column = {}
    if dataset.last_synced_at is None:
        return by_column
    for suggestion in dataset.suggestions.filter(status=SuggestionStatus.PENDING).order_by("-confidence", "id"):
        by_column.setdefault(suggestion.column_id, []).append(_suggestion_present(suggestion))
    return by_column


@login_required
def dataset_version_detail(request, pk, number):
    """The columns of a dataset as one version recorded them."""
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    version = selectors.dataset_version_get(dataset=dataset, number=number)
    access_grants.restricted_metadata_viewed(principal=request.user, dataset=dataset, remote_addr=client_address(request),
                                             via="page:version", versions=[version])
    return render(
        request,
        "catalog/dataset_version_detail.html",
        {"dataset": dataset, "version": version, "columns": version.columns},
    )


def _version_number(raw) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


@login_required
def dataset_diff(request, pk):
    """What changed between any two versions; defaults to the previous and the current one."""
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    versions = list(selectors.dataset_version_list(dataset=dataset))
    numbers = sorted(version.number for version in versions)
    context = {"dataset": dataset, "versions": versions, "problems": []}
    if len(numbers) < 2:
        context["single_version"] = True
        return render(request, "catalog/dataset_diff.html", context)

    default_from, default_to = numbers[-2], numbers[-1]
    chosen = {}
    for key, default in (("from", default_from), ("to", default_to)):
        raw = request.GET.get(key)
        number = _version_number(raw)
        if raw not in (None, "") and number not in numbers:
            context["problems"].append(
                f"There is no version “{raw}” of this dataset; showing version {default} instead."
            )
            number = None
        chosen[key] = default if number is None else number
    old, new = selectors.dataset_version_pair(dataset=dataset, from_number=chosen["from"], to_number=chosen["to"])
    access_grants.restricted_metadata_viewed(principal=request.user, dataset=dataset, remote_addr=client_address(request),
                                             via="page:diff", versions=[old, new])
    diff = selectors.dataset_version_diff(old=old, new=new)
    old_by_name = {column["name"]: column for column in old.columns}
    new_by_name = {column["name"]: column for column in new.columns}
    context.update(
        {
            "diff": diff,
            "old": old,
            "new": new,
            "added": [new_by_name[name] for name in diff["added"]],
            "removed": [old_by_name[name] for name in diff["removed"]],
            "changed": [_changed_column(change) for change in diff["changed"]],
            "no_differences": not (diff["added"] or diff["removed"] or diff["changed"]),
            # Who a breaking change reaches, through dataset and column lineage.
            "impact": lineage_selectors.lineage_breaking_impact(user=request.user, dataset=dataset, diff=diff)
            if diff["breaking"]
            else None,
        }
    )
    return render(request, "catalog/dataset_diff.html", context)


FIELD_LABELS = {
    "type": "Type",
    "mode": "Mode",
    "description": "Description",
    "originatingSource": "Originating source",
    "sensitivity": "Sensitivity",
    "protection": "Protection",
    "position": "Position",
}


def _changed_column(change: dict) -> dict:
    """A changed column of the diff, with its fields in a fixed order and readable names."""
    fields = [
        {
            "key": key,
            "label": FIELD_LABELS[key],
            "from": change["fields"][key]["from"],
            "to": change["fields"][key]["to"],
            "breaking": field_change_is_breaking(key, change["fields"][key]),
        }
        for key in FIELD_LABELS
        if key in change["fields"]
    ]
    return {"name": change["name"], "breaking": change["breaking"], "fields": fields}


@login_required
@require_http_methods(["GET", "POST"])
def dataset_create(request):
    if not policies.can_register_datasets(request.user):
        raise PermissionDenied("Registering datasets needs a registrar role (e.g. data engineer).")
    return _dataset_form(request, dataset=None)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_edit(request, pk):
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    if not policies.can_edit_dataset(request.user, dataset):
        raise PermissionDenied("Only the dataset's owners or a registrar may change it.")
    return _dataset_form(request, dataset=dataset)


def _dataset_form(request, *, dataset: Dataset | None):
    """Register a dataset (or a new version of it) through the same service as the API."""
    store_names = list(selectors.store_visible(user=request.user).values_list("name", flat=True))
    form_kwargs = {"store_choices": store_names, "fixed_identity": dataset is not None}
    initial = {}
    column_rows = []
    if dataset is not None:
        initial = {
            "store": dataset.store.name,
            "name": dataset.registration_name,
            "description": dataset.description,
            "owners": ", ".join(user.username for user in dataset.owner_list),
        }
        if dataset.current_version is not None:
            column_rows = [column_initial(column) for column in dataset.current_version.columns]
            if not dataset.classified:  # lineage's schema carries no declared tier: the person chooses each
                column_rows = [{**row, "sensitivity": ""} for row in column_rows]

    focus_new_row = False
    if request.method == "POST":
        data = request.POST.copy()
        if "add_column" in data:
            # Without JavaScript (and with htmx) "Add column" re-renders the form with one more row.
            total = _version_number(data.get(f"{COLUMN_PREFIX}-TOTAL_FORMS")) or 0
            data[f"{COLUMN_PREFIX}-TOTAL_FORMS"] = str(total + 1)
            data[f"{COLUMN_PREFIX}-{total}-mode"] = "NULLABLE"
            data[f"{COLUMN_PREFIX}-{total}-protection"] = "None"
            focus_new_row = True
        dataset_form = DatasetForm(data, initial=initial, **form_kwargs)
        formset = ColumnFormSet(data, prefix=COLUMN_PREFIX)
        if not focus_new_row and dataset_form.is_valid() and formset.is_valid():
            rows = formset.submitted_rows()
            payload = _registration_payload(dataset_form, rows, editing=dataset is not None)
            try:
                saved, created = services.dataset_register(
                    principal=request.user, payload=payload, remote_addr=client_address(request)
                )
            except ValidationError as error:
                registration_errors_apply(error, dataset_form=dataset_form, formset=formset, rows=rows)
            else:
                if created:
                    messages.success(
                        request, f"Registered version {saved.current_version.number} of {saved.qualified_name}."
                    )
                elif saved.pending_proposal is None:
                    messages.info(request, "No schema change; nothing new was versioned.")
                if saved.pending_proposal is not None:
                    _proposal_message(request, saved.pending_proposal)
                return redirect("catalog:dataset-detail", pk=saved.pk)
    else:
        dataset_form = DatasetForm(initial=initial, **form_kwargs)
        formset = ColumnFormSet(initial=column_rows, prefix=COLUMN_PREFIX)

    if focus_new_row:
        formset.forms[-1].fields["name"].widget.attrs["autofocus"] = True
    has_errors = dataset_form.is_bound and (
        bool(dataset_form.errors) or bool(formset.non_form_errors()) or any(form.errors for form in formset.forms)
    )
    return render(
        request,
        "catalog/dataset_form.html",
        {
            "dataset": dataset,
            "form": dataset_form,
            "formset": formset,
            "has_errors": has_errors and not focus_new_row,
            # Listed above the table too, by the row number and label the page shows.
            "rows_with_errors": [(number, row) for number, row in enumerate(formset.forms, start=1) if row.errors]
            if has_errors and not focus_new_row else [],
        },
    )


def _proposal_message(request, proposal) -> None:
    """Tell the user what was not applied because it would open access, and where it waits."""
    from access.proposals import proposal_summary  # access builds on the catalog

    messages.warning(request, (
        f"Not applied yet: {proposal_summary(proposal)}. This would open access, so it waits for "
        f"{'a security engineer' if proposal.security_approval_required else 'an owner, steward or security engineer'}"
        f"{' and one more approver' if proposal.approvals_required > 1 else ''} to approve "
        f"(proposal #{proposal.pk})."
    ))


def _registration_payload(dataset_form: DatasetForm, rows, *, editing: bool) -> dict:
    """The registration JSON, exactly as a pipeline would send it to ``POST /api/v1/datasets/``."""
    data = dataset_form.cleaned_data
    payload = {
        "name": (data.get("name") or "").strip(),
        "store": (data.get("store") or "").strip(),
        "description": (data.get("description") or "").strip(),
        "columns": [row.column_payload() for row in rows],
    }
    owners = dataset_form.owner_usernames()
    # A new dataset without owners gets its registrant; on edit an empty field clears the owners.
    if owners or editing:
        payload["owners"] = owners
    for key, field in (("registeredBy", "registered_by"), ("version", "version")):
        value = (data.get(field) or "").strip()
        if value:
            payload[key] = value
    return payload


@login_required
def store_list(request):
    return render(request, "catalog/store_list.html", {"stores": selectors.store_list(user=request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def store_create(request):
    return _store_form(request, store=None)


@login_required
@require_http_methods(["GET", "POST"])
def store_edit(request, pk):
    store = get_object_or_404(selectors.store_list(user=request.user), pk=pk)
    return _store_form(request, store=store)


def _store_form(request, *, store):
    if not policies.can_manage_stores(request.user):
        raise PermissionDenied("Managing stores needs the platform engineer role or an admin.")
    initial = {}
    store_name = store.name if store is not None else ""  # store_save may change the instance, then refuse
    if store is not None:
        initial = {name: getattr(store, name) for name in services.STORE_FIELDS}
    if request.method == "POST":
        form = StoreForm(request.POST, initial=initial)
        if form.is_valid():
            try:
                saved = services.store_save(principal=request.user, store=store, remote_addr=client_address(request),
                                            **form.cleaned_data)
            except ValidationError as error:
                form.errors_apply(error)
            else:
                messages.success(request, f"Saved store {saved.name}.")
                if saved.pending_proposal is not None:
                    _proposal_message(request, saved.pending_proposal)
                return redirect("catalog:store-detail", pk=saved.pk)
    else:
        form = StoreForm(initial=initial)
    return render(request, "catalog/store_form.html", {"form": form, "store": store, "store_name": store_name})


# Stores, connections and sync runs ------------------------------------------------------

RUNS_PAGE_SIZE = 20
EVENTS_PAGE_SIZE = 50
SUGGESTIONS_PAGE_SIZE = 50
UNCLASSIFIED_SHOWN = 10  # on the suggestions page; the rest through the dataset list's filter
PHASES = ("connect", "extract", "write", "lineage", "deprecate")
PHASE_NAMES = {
    "connecting": "Connecting to the warehouse",
    "extracting": "Reading schemas",
    "writing": "Writing datasets",
    "lineage": "Reading view lineage",
    "deprecating": "Deprecating what is gone",
}


def _page_context(paginator: Paginator, number, query=None, *, page_key: str = "page") -> dict:
    """A page of ``paginator`` and what ``partials/pagination.html`` needs, filters kept."""
    page = paginator.get_page(number)
    query = query.copy() if query is not None else None
    if query is not None:
        query.pop(page_key, None)
    return {
        "page": page,
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
        "query_string": query.urlencode() if query is not None else "",
    }


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _next_scheduled_run(schedule: str):
    """When a cron schedule (UTC, as ``connection_save`` registers it) fires next; None if unknown."""
    if not schedule:
        return None
    from celery.schedules import crontab

    parts = schedule.split()
    if len(parts) != 5:
        return None
    now = timezone.now()
    try:
        minute, hour, day_of_month, month_of_year, day_of_week = parts
        cron = crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                       day_of_week=day_of_week, nowfun=lambda: now)
        last_run_at, delta, _ = cron.remaining_delta(now)
        return last_run_at + delta
    except (ValueError, TypeError, KeyError):
        return None


def _store_get(request, pk) -> DataStore:
    return get_object_or_404(selectors.store_list(user=request.user).select_related("connection"), pk=pk)


def _require_store_manager(request) -> None:
    if not policies.can_manage_stores(request.user):
        raise PermissionDenied("Connections and syncs are managed by platform engineers and admins.")


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


@login_required
def store_detail(request, pk):
    """A store, its warehouse connection and its recent sync runs."""
    store = _store_get(request, pk)
    connection = getattr(store, "connection", None)
    runs = selectors.sync_run_visible(user=request.user).filter(store=store)
    context = _page_context(Paginator(runs, RUNS_PAGE_SIZE), request.GET.get("page"), request.GET)
    for run in context["page"].object_list:
        run.duration_text = _duration_text(run.duration_seconds)
    context.update({
        "store": store,
        "connection": connection,
        "syncable": store.platform in CONNECTORS,
        "is_file_platform": store.platform in FILE_PLATFORMS,
        "runs": context["page"].object_list,
        "active_run": selectors.sync_run_visible(user=request.user).filter(store=store, status__in=ACTIVE_SYNC_STATUSES).first()
        if connection is not None else None,
        "next_run_at": _next_scheduled_run(connection.schedule) if connection is not None else None,
    })
    return render(request, "catalog/store_detail.html", context)


@sensitive_post_parameters("password")
@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def connection_edit(request, pk):
    """Add or change a store's connection through ``connection_save``; the password is write-only."""
    _require_store_manager(request)
    store = _store_get(request, pk)
    connection = getattr(store, "connection", None)
    form_kwargs = {
        "platform": store.platform, "password_stored": bool(connection and connection.secret_id),
        "sealed_options": connection.sealed_options if connection else [],
    }
    if request.method == "POST":
        form = ConnectionForm(request.POST, **form_kwargs)
        if form.is_valid():
            try:
                connection_save(
                    principal=request.user, store=store, password=form.password_change(),
                    remote_addr=client_address(request), **form.connection_fields()
                )
            except ValidationError as error:
                form.errors_apply(error)
            else:
                messages.success(request, f"Saved the connection of {store.name}. Test it, then sync.")
                return redirect("catalog:store-detail", pk=store.pk)
        form.focus_problems()
    else:
        form = ConnectionForm(initial=ConnectionForm.initial_for(connection), **form_kwargs)
    return render(request, "catalog/connection_form.html", {
        "form": form, "store": store, "connection": connection, "syncable": store.platform in CONNECTORS,
    })


@login_required
@require_http_methods(["POST"])
@step_up_required
def connection_remove(request, pk):
    """Remove the connection, its sealed password and its schedule; datasets stay."""
    _require_store_manager(request)
    store = _store_get(request, pk)
    connection_delete(principal=request.user, store=store, remote_addr=client_address(request))
    messages.success(request, f"Removed the connection of {store.name}. Its datasets stay in the catalog.")
    target = reverse("catalog:store-detail", args=[store.pk])
    if _is_htmx(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


@login_required
@require_http_methods(["POST"])
def connection_check(request, pk):
    """Try the connection now; htmx gets the result in place, a plain POST a message."""
    _require_store_manager(request)
    store = _store_get(request, pk)
    try:
        ok, message = connection_test(principal=request.user, store=store, remote_addr=client_address(request))
    except ValidationError as error:
        ok, message = False, " ".join(error.messages)
    if _is_htmx(request):
        return render(request, "catalog/partials/connection_test_result.html", {
            "ok": ok, "message": message, "connection": Connection.objects.filter(store=store).first(),
        })
    (messages.success if ok else messages.error)(request, message if ok else f"Connection failed: {message}")
    return redirect("catalog:store-detail", pk=store.pk)


@login_required
@require_http_methods(["POST"])
def store_sync_now(request, pk):
    """Queue a sync (or find the one already queued or running) and go to its page."""
    _require_store_manager(request)
    store = _store_get(request, pk)
    try:
        run, created = sync_run_request(principal=request.user, store=store, trigger=SyncTrigger.MANUAL)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("catalog:store-detail", pk=store.pk)
    if created:
        messages.success(request, f"Sync #{run.pk} of {store.name} started.")
    else:
        messages.info(request, f"Sync #{run.pk} of {store.name} was already {run.get_status_display().lower()}: here it is.")
    return redirect("catalog:sync-run-detail", pk=run.pk)


def _run_get(request, pk) -> SyncRun:
    return get_object_or_404(selectors.sync_run_visible(user=request.user), pk=pk)


def _run_status_context(request, run: SyncRun) -> dict:
    """The part of the run page that changes while the run works (polled by htmx)."""
    poll_query = request.GET.copy()
    poll_query["polling"] = "1"
    timings = run.timings or {}
    phases = [(name, timings[name]) for name in PHASES if name in timings]
    phases += [(name, seconds) for name, seconds in timings.items() if name not in PHASES]
    return {
        "run": run,
        "poll_query": poll_query.urlencode(),
        "phase_name": PHASE_NAMES.get(run.phase, run.phase.capitalize()),
        "duration_text": _duration_text(run.duration_seconds),
        "phase_timings": [(name.capitalize(), _duration_text(seconds)) for name, seconds in phases],
        "counts": [
            ("New", run.new_count, "new"),
            ("Changed", run.changed_count, "changed"),
            ("Deprecated", run.deprecated_count, "deprecated"),
            ("Reactivated", run.reactivated_count, "reactivated"),
            ("Unchanged", run.unchanged_count, "unchanged"),
            ("Errors", run.failed_count, "error"),
            ("Suggestions", run.suggestion_count, "suggestions"),
        ],
    }


def _run_events_context(request, run: SyncRun) -> dict:
    """The run's events the user may see, filtered by ``?outcome=`` and paginated; one query for
    the tallies (of what the user sees) and the number left out."""
    tallies, left_out = selectors.sync_run_event_tallies(user=request.user, run=run)
    outcome = request.GET.get("outcome") or ""
    if outcome not in SyncOutcome.values:
        outcome = ""
    events = selectors.sync_run_event_visible(user=request.user, run=run).select_related("dataset").only(
        "object_name", "outcome", "message", "dataset__id", "dataset__qualified_name", "run_id"
    )
    if outcome:
        events = events.filter(outcome=outcome)
    query = request.GET.copy()
    query.pop("polling", None)
    context = _page_context(Paginator(events, EVENTS_PAGE_SIZE), request.GET.get("page"), query)
    context.update({
        "events": context["page"].object_list,
        "outcome": outcome,
        "outcome_choices": [
            (value, label, tallies.get(value, 0)) for value, label in SyncOutcome.choices
        ],
        "event_total": sum(tallies.values()),
        "events_left_out": left_out,
    })
    return context


@login_required
def sync_run_detail(request, pk):
    """A sync run: status, progress (polled while it works), counts, timings and events."""
    run = _run_get(request, pk)
    context = {**_run_status_context(request, run), **_run_events_context(request, run)}
    return render(request, "catalog/sync_run_detail.html", context)


@login_required
def sync_run_progress(request, pk):
    """The run's status section alone, for htmx polling. Once the run has finished it stops
    polling and sends the events along (out of band), so the table is reloaded once."""
    run = _run_get(request, pk)
    context = _run_status_context(request, run)
    if not run.is_active and request.GET.get("polling"):
        context.update(_run_events_context(request, run))
        context["events_oob"] = True
    return render(request, "catalog/partials/sync_run_status.html", context)


# Classification suggestions -------------------------------------------------------------

LABEL_NAMES = {
    "email": "email", "phone": "phone number", "national_id": "national ID", "credit_card": "card number",
    "person_name": "person name", "birth_date": "birth date", "address": "address", "ip_address": "IP address",
}
SUGGESTION_STATUS_CHOICES = [("", "Any status")] + list(SuggestionStatus.choices)


def evidence_text(evidence) -> str:
    """A suggestion's evidence as a sentence: “name matches 'email'; 48 of 50 sampled values
    match “email address””. Evidence holds counts and descriptions only, never values."""
    if not isinstance(evidence, dict):
        return ""
    parts = []
    if evidence.get("name"):
        parts.append(f"name {evidence['name']}")
    if evidence.get("type"):
        parts.append(str(evidence["type"]))
    sampled = evidence.get("sampled")
    if isinstance(sampled, int) and sampled:
        matched = evidence.get("matched") or 0
        pattern = evidence.get("pattern") or "the pattern"
        parts.append(f"{matched} of {sampled} sampled value{pluralize(sampled)} match “{pattern}”")
    known = {"name", "type", "sampled", "matched", "pattern"}
    for key, value in evidence.items():
        if key not in known and isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != "":
            parts.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts)


def _suggestion_present(suggestion: ColumnSuggestion) -> ColumnSuggestion:
    """Words for a suggestion's label, confidence and evidence, for the templates."""
    suggestion.label_text = LABEL_NAMES.get(suggestion.label, suggestion.label.replace("_", " "))
    suggestion.confidence_percent = round(100 * (suggestion.confidence or 0))
    suggestion.evidence_text = evidence_text(suggestion.evidence)
    return suggestion


def _suggestion_filters(query) -> tuple[str, str]:
    """The status (pending unless the URL says otherwise; "" for any) and store of the list's URL."""
    status = query.get("status", SuggestionStatus.PENDING)
    if status not in SuggestionStatus.values:
        status = ""
    return status, query.get("store") or ""


def _suggestions_filtered(*, user, status: str, store_name: str):
    suggestions = selectors.suggestion_visible(user=user)
    if status:
        suggestions = suggestions.filter(status=status)
    if store_name:
        suggestions = suggestions.filter(dataset__store__name=store_name)
    return suggestions


@login_required
def suggestion_list(request):
    """The queue of classification suggestions, filtered by store and status in the URL."""
    status, store_name = _suggestion_filters(request.GET)
    suggestions = (
        _suggestions_filtered(user=request.user, status=status, store_name=store_name)
        .select_related("dataset__store", "column", "decided_by", "run")
        .defer("dataset__description", "column__description")
        .prefetch_related(Prefetch("dataset__owners", to_attr="owner_list"))
        .order_by("-created_at", "dataset__qualified_name", "column__position", "-confidence", "id")
    )
    query = request.GET.copy()
    if "status" not in query:
        query["status"] = status
    context = _page_context(Paginator(suggestions, SUGGESTIONS_PAGE_SIZE), request.GET.get("page"), query)
    for suggestion in context["page"].object_list:
        _suggestion_present(suggestion)
        suggestion.can_decide = policies.can_edit_dataset(request.user, suggestion.dataset)
    # Datasets nobody has classified: decided as the default tier until someone does (one query, two
    # when there are more than are shown).
    unclassified = selectors.dataset_unclassified_list(user=request.user)
    if store_name:
        unclassified = unclassified.filter(store__name=store_name)
    unclassified_shown = list(unclassified[:UNCLASSIFIED_SHOWN])
    context.update({
        "unclassified": unclassified_shown,
        "unclassified_total": unclassified.count() if len(unclassified_shown) == UNCLASSIFIED_SHOWN else len(unclassified_shown),
        "unclassified_tier": unclassified_tier().label,
        "classifies_every_dataset": policies.classifies_every_dataset(request.user),
        # Restricted datasets nobody owns: only security engineers and admins decide their requests.
        "restricted_unowned": list(selectors.dataset_restricted_unowned_list(user=request.user)[:UNCLASSIFIED_SHOWN]),
    })
    context.update({
        "suggestions": context["page"].object_list,
        "status": status,
        "store_name": store_name,
        "status_choices": SUGGESTION_STATUS_CHOICES,
        "store_names": list(selectors.store_visible(user=request.user).values_list("name", flat=True)),
        "active_filters": bool(store_name) or status != SuggestionStatus.PENDING,
        "next_url": request.get_full_path(),
    })
    return render(request, "catalog/suggestion_list.html", context)


@login_required
def suggestion_count(request):
    """The pending count for the nav link, fetched by htmx after the page loads: pending suggestions
    and the datasets nobody has classified that the user is asked to classify."""
    count = selectors.suggestion_visible(user=request.user).filter(status=SuggestionStatus.PENDING).count()
    return render(request, "catalog/partials/suggestion_count.html", {
        "pending_count": count, "unclassified_count": selectors.dataset_unclassified_list(user=request.user).count(),
    })


@login_required
@require_http_methods(["POST"])
def suggestion_accept(request, pk):
    return _suggestion_decide(request, pk, accept=True)


@login_required
@require_http_methods(["POST"])
def suggestion_reject(request, pk):
    return _suggestion_decide(request, pk, accept=False)


def _suggestion_decide(request, pk, *, accept: bool):
    """Accept or reject through ``suggestion_decide``; htmx gets the row back, a plain POST a redirect."""
    suggestion = get_object_or_404(selectors.suggestion_visible(user=request.user).select_related("dataset"), pk=pk)
    if not policies.can_edit_dataset(request.user, suggestion.dataset):
        raise PermissionDenied("Only the dataset's owners or a registrar may classify its columns.")
    problem = ""
    try:
        services.suggestion_decide(principal=request.user, suggestion=suggestion, accept=accept)
    except ValidationError as error:
        problem = " ".join(error.messages)
    suggestion = (
        ColumnSuggestion.objects.select_related("dataset__store", "dataset__current_version", "column", "decided_by")
        .defer("dataset__current_version__columns", "dataset__current_version__diff")
        .get(pk=suggestion.pk)
    )
    _suggestion_present(suggestion)
    if _is_htmx(request):
        suggestion.can_decide = True
        pending_count = selectors.suggestion_visible(user=request.user).filter(status=SuggestionStatus.PENDING).count()
        context = {
            "suggestion": suggestion, "problem": problem, "decided_now": not problem, "pending_count": pending_count,
            "unclassified_count": selectors.dataset_unclassified_list(user=request.user).count(),
        }
        # The list's own count ("5 pending suggestions") changes with the nav's: both are swapped.
        listed_from = urlsplit(request.POST.get("next") or "")
        if listed_from.path == reverse("catalog:suggestion-list"):
            status, store_name = _suggestion_filters(QueryDict(listed_from.query))
            context.update({
                "status": status, "store_name": store_name, "result_count": _suggestions_filtered(
                    user=request.user, status=status, store_name=store_name).count(),
            })
        return render(request, "catalog/partials/suggestion_row.html", context)
    if problem:
        messages.error(request, problem)
    elif accept:
        messages.success(request, (
            f"Accepted: {suggestion.dataset.qualified_name}.{suggestion.column.name} is now "
            f"{suggestion.get_sensitivity_display()} (version {suggestion.dataset.current_version.number})."
        ))
    else:
        messages.info(request, f"Rejected: {suggestion.label_text} will not be suggested again for "
                               f"{suggestion.dataset.qualified_name}.{suggestion.column.name}.")
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = reverse("catalog:suggestion-list")
    return redirect(target)
