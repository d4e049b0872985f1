"""Browser views of the catalog: thin, like the API views.

They read through ``catalog.selectors``, write through ``catalog.services`` and ask
``access.policies`` before showing an action; none of them decides a rule on its own.
"""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from access import policies
from catalog import selectors, services
from catalog.diffs import BREAKING_FIELDS
from catalog.filtersets import DatasetFilterSet
from catalog.forms import (
    ColumnFormSet,
    DatasetForm,
    StoreForm,
    column_initial,
    registration_errors_apply,
)
from catalog.models import Dataset
from catalog.vocabulary import Protection, Sensitivity
from lineage import selectors as lineage_selectors
from lineage import views as lineage_views

PAGE_SIZE = 25
COLUMN_PREFIX = "columns"


@login_required
def dataset_list(request):
    """Search and filter datasets; every filter lives in the URL."""
    filterset = DatasetFilterSet(request.GET or None, queryset=selectors.dataset_list(user=request.user))
    paginator = Paginator(filterset.qs, PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    for name in ("environment", "store_kind", "status"):
        field = filterset.form.fields[name]
        choices = [choice for choice in field.choices if choice[0] != ""]
        field.empty_label = "Any"
        field.choices = choices  # rebinds the widget's choices to this field's empty label
    active_filters = any(value for key, value in request.GET.lists() if key != "page" and any(value))
    context = {
        "filterset": filterset,
        "page": page,
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
        "datasets": page.object_list,
        "result_count": paginator.count,
        "query_string": query.urlencode(),
        "active_filters": active_filters,
        "store_names": list(selectors.store_list(user=request.user).values_list("name", flat=True)),
        "owner_names": _owner_usernames(),
        "sensitivity_labels": Sensitivity.labels,
        "protection_labels": Protection.labels,
    }
    if not paginator.count and not active_filters:
        context["catalog_empty"] = not selectors.dataset_visible(user=request.user).exists()
    # htmx live search asks for this same page and swaps in only #results (hx-select).
    return render(request, "catalog/dataset_list.html", context)


def _owner_usernames() -> list[str]:
    """Usernames that own at least one dataset, for the owner filter."""
    return list(
        get_user_model()
        .objects.filter(owned_datasets__isnull=False)
        .distinct()
        .order_by("username")
        .values_list("username", flat=True)
    )


@login_required
def dataset_detail(request, pk):
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    current = dataset.current_version
    columns = current.columns if current else []
    return render(
        request,
        "catalog/dataset_detail.html",
        {
            "dataset": dataset,
            "current": current,
            "columns": lineage_views.columns_with_lineage(dataset=dataset, columns=columns),
            "lineage_columns": True,
            "versions": selectors.dataset_version_list(dataset=dataset),
            "can_edit": policies.can_edit_dataset(request.user, dataset),
            **lineage_views.dataset_lineage_context(user=request.user, dataset=dataset, query=request.GET),
        },
    )


@login_required
def dataset_version_detail(request, pk, number):
    """The columns of a dataset as one version recorded them."""
    dataset = selectors.dataset_get(user=request.user, pk=pk)
    version = selectors.dataset_version_get(dataset=dataset, number=number)
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
            "breaking": key in BREAKING_FIELDS,
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
    store_names = list(selectors.store_list(user=request.user).values_list("name", flat=True))
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
                saved, created = services.dataset_register(principal=request.user, payload=payload)
            except ValidationError as error:
                registration_errors_apply(error, dataset_form=dataset_form, formset=formset, rows=rows)
            else:
                if created:
                    messages.success(
                        request, f"Registered version {saved.current_version.number} of {saved.qualified_name}."
                    )
                else:
                    messages.info(request, "No schema change; nothing new was versioned.")
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
        },
    )


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
                saved = services.store_save(principal=request.user, store=store, **form.cleaned_data)
            except ValidationError as error:
                form.errors_apply(error)
            else:
                messages.success(request, f"Saved store {saved.name}.")
                return redirect(reverse("catalog:store-list"))
    else:
        form = StoreForm(initial=initial)
    return render(request, "catalog/store_form.html", {"form": form, "store": store, "store_name": store_name})
