"""Every read of the catalog that has rules: who may see what, and how lists are loaded."""

from django.db.models import Case, CharField, Count, Exists, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When
from django.http import Http404

from access import policies
from access.decisions import dataset_visibility_filter, stewarded_filter
from catalog import search
from catalog.diffs import schema_diff
from catalog.models import (
    Column,
    ColumnSuggestion,
    Dataset,
    DatasetVersion,
    DataStore,
    SyncRun,
    SyncRunEvent,
    SyncStatus,
)
from catalog.vocabulary import Sensitivity


class SubqueryCount(Subquery):
    """The number of rows a (correlated) subquery returns: 0, never NULL, when it has none."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS counted)"
    output_field = IntegerField()


def dataset_visible(*, user) -> QuerySet[Dataset]:
    """Datasets whose metadata the user may read: what the role matrix lets their roles see
    (environment and sensitivity tier), and what they hold an active grant on."""
    if not policies.can_read_metadata(user):
        return Dataset.objects.none()
    condition = dataset_visibility_filter(user)
    return Dataset.objects.all() if condition is None else Dataset.objects.filter(condition)


def dataset_list(*, user) -> QuerySet[Dataset]:
    """Datasets for list pages and the list endpoint, loaded in a constant number of queries."""
    # Columns are counted per row in a correlated subquery (an index-only scan of the column
    # table's dataset index), run for the rows of the page and left out of the paginator's
    # COUNT(*). A join with GROUP BY aggregated every column of every visible dataset before
    # the page was cut: about 1 s at 100,000 datasets of 10 columns (docs/benchmarks.md).
    columns = Column.objects.filter(dataset=OuterRef("pk")).order_by().values("dataset")
    return (
        dataset_visible(user=user)
        .select_related("store", "current_version")
        .defer("current_version__columns", "current_version__diff")
        .prefetch_related(Prefetch("owners", to_attr="owner_list"))
        .annotate(column_count=SubqueryCount(columns))
        .order_by("qualified_name")
    )


def dataset_search_matches(*, datasets, query: str) -> dict[int, dict]:
    """Why each of ``datasets`` (a page of them) matched the search ``query``:
    ``{"name": bool, "description": bool, "columns": [names]}`` by dataset id, in one query."""
    return search.dataset_search_matches(datasets=datasets, query=query)


def dataset_search_name_tiers(*, user, data) -> QuerySet[Dataset] | None:
    """The results of the search ``data["q"]`` (with the request's other filters) in its name tiers
    only, ranked as in the full results, whose top they are when they hold a page: or None when
    there is no search or it has no tiers (``catalog.search.dataset_search_name_tiers``)."""
    from catalog.filtersets import DatasetFilterSet  # the filterset builds on these selectors' module

    query = data.get("q")
    if not query:
        return None
    rest = data.copy()
    rest.pop("q", None)
    return search.dataset_search_name_tiers(DatasetFilterSet(rest, queryset=dataset_list(user=user)).qs, query)


def dataset_search_facets(*, user, data) -> dict[str, list[dict]]:
    """Facet counts for a search (``data``: the request's query parameters) over the datasets the
    user may see: for each family, the results with every other filter applied. One query."""
    from catalog.filtersets import DatasetFilterSet  # the filterset builds on these selectors' module

    querysets = search.facet_querysets(filterset_class=DatasetFilterSet, data=data, queryset=dataset_visible(user=user))
    return search.dataset_facets(querysets=querysets)


def dataset_get(*, user, pk) -> Dataset:
    """One dataset with what its detail page needs; 404 if the user may not see it."""
    dataset = (
        dataset_visible(user=user)
        .select_related("store", "current_version", "current_version__registered_by_user")
        .prefetch_related(Prefetch("owners", to_attr="owner_list"))
        .filter(pk=pk)
        .first()
    )
    if dataset is None:
        raise Http404("No such dataset.")
    return dataset


def dataset_visible_get(*, user, pk) -> Dataset:
    """One dataset the user may see, alone (no store, version or owners: for reads that only need
    it to be visible, such as its lineage graph); 404 otherwise. One query."""
    dataset = dataset_visible(user=user).filter(pk=pk).first()
    if dataset is None:
        raise Http404("No such dataset.")
    return dataset


def dataset_version_list(*, dataset: Dataset) -> QuerySet[DatasetVersion]:
    return dataset.versions.select_related("registered_by_user").defer("columns").order_by("-number")


def dataset_version_get(*, dataset: Dataset, number) -> DatasetVersion:
    version = dataset.versions.select_related("registered_by_user").filter(number=number).first()
    if version is None:
        raise Http404(f"Dataset {dataset.qualified_name} has no version {number}.")
    return version


def dataset_version_pair(*, dataset: Dataset, from_number, to_number) -> tuple[DatasetVersion, DatasetVersion]:
    """Two versions of a dataset, loaded in one query; 404 if either does not exist."""
    versions = {v.number: v for v in dataset.versions.filter(number__in=[from_number, to_number])}
    for number in (from_number, to_number):
        if number not in versions:
            raise Http404(f"Dataset {dataset.qualified_name} has no version {number}.")
    return versions[from_number], versions[to_number]


def dataset_version_diff(*, old: DatasetVersion, new: DatasetVersion) -> dict:
    """The diff between any two versions of a dataset (either order)."""
    return {"from": old.number, "to": new.number, **schema_diff(old.columns, new.columns)}


def store_visible(*, user) -> QuerySet[DataStore]:
    """Stores the user may see, by name, without counting their datasets (for choices and filters)."""
    if not policies.can_read_metadata(user):
        return DataStore.objects.none()
    return DataStore.objects.order_by("name")


def store_list(*, user) -> QuerySet[DataStore]:
    """Stores the user may see, each with its number of datasets the user may see (a correlated
    subquery over ``dataset_visible``: hidden datasets are not counted, and the count costs no
    query of its own)."""
    visible = dataset_visible(user=user).filter(store=OuterRef("pk")).order_by().values("pk")
    return store_visible(user=user).annotate(dataset_count=SubqueryCount(visible))


# What a run's ``message`` says to those who do not manage stores: the message itself can name
# any warehouse object (a driver error quotes the table it choked on), hidden datasets included.
RUN_FAILED_TEXT = "Store managers (platform engineers and admins) see why on this page."
RUN_PROBLEMS_TEXT = "Some objects could not be synced; those you may see are listed below."


def sync_run_visible(*, user) -> QuerySet[SyncRun]:
    """Sync runs of the stores the user may see, with what run pages and the API show.

    ``message_shown`` is the run's message as this user may read it: in full for store managers;
    for everyone else a sentence without names, since the message may name hidden objects.
    """
    stores = store_visible(user=user).values("pk")
    runs = SyncRun.objects.filter(store__in=stores).select_related("store", "requested_by")
    if policies.can_manage_stores(user):
        return runs.annotate(message_shown=F("message"))
    return runs.annotate(message_shown=Case(
        When(message="", then=Value("")),
        When(status=SyncStatus.FAILED, then=Value(RUN_FAILED_TEXT)),
        default=Value(RUN_PROBLEMS_TEXT),
        output_field=CharField(),
    ))


def sync_run_event_visible(*, user, run: SyncRun) -> QuerySet[SyncRunEvent]:
    """The events of ``run`` the user may see: those of datasets the user may see
    (``dataset_visible``, the one visibility rule), and those that name no catalog dataset (errors
    about a warehouse object) only for store managers."""
    if not policies.can_read_metadata(user):
        return SyncRunEvent.objects.none()
    return run.events.filter(_event_visible(user))


def _event_visible(user) -> Q:
    condition = dataset_visibility_filter(user)
    if condition is None:
        shown = Q(dataset__isnull=False)
    else:
        shown = Q(dataset__in=Dataset.objects.filter(condition).values("pk"))
    if policies.can_manage_stores(user):
        shown |= Q(dataset__isnull=True)
    return shown


def sync_run_event_tallies(*, user, run: SyncRun) -> tuple[dict[str, int], int]:
    """The run's events the user may see counted by outcome, and how many others it has (left
    out for this user), in one query."""
    if not policies.can_read_metadata(user):
        return {}, 0
    rows = run.events.order_by().values("outcome").annotate(
        total=Count("id"), shown=Count("id", filter=_event_visible(user))
    )
    tallies = {row["outcome"]: row["shown"] for row in rows if row["shown"]}
    return tallies, sum(row["total"] - row["shown"] for row in rows)


def suggestion_visible(*, user) -> QuerySet[ColumnSuggestion]:
    """Classification suggestions on datasets the user may see."""
    return ColumnSuggestion.objects.filter(dataset__in=dataset_visible(user=user))


def dataset_unowned_condition() -> Q:
    """Datasets nobody owns or stewards: requests to them only security engineers and admins may
    approve (``access.grants.approvers_for``)."""
    from access.models import STEWARD_PERMISSION, DatasetGroupObjectPermission, DatasetUserObjectPermission

    owned = Dataset.owners.through.objects.filter(dataset=OuterRef("pk"))
    stewarded = DatasetUserObjectPermission.objects.filter(content_object=OuterRef("pk"), permission__codename=STEWARD_PERMISSION)
    team = DatasetGroupObjectPermission.objects.filter(content_object=OuterRef("pk"), permission__codename=STEWARD_PERMISSION)
    return ~Exists(owned) & ~Exists(stewarded) & ~Exists(team)


def dataset_restricted_unowned_list(*, user) -> QuerySet[Dataset]:
    """Restricted datasets nobody owns or stewards, for security engineers and admins (the only
    ones who may decide their access requests) to give them an owner; nothing for anyone else."""
    if not policies.classifies_every_dataset(user):
        return Dataset.objects.none()
    return (
        dataset_visible(user=user).filter(dataset_unowned_condition(), classified=True, sensitivity__gte=Sensitivity.RESTRICTED)
        .select_related("store").order_by("qualified_name")
    )


def dataset_unclassified_list(*, user) -> QuerySet[Dataset]:
    """Datasets nobody has classified yet (lineage discovered them), for the user to classify or have
    classified: every one they may see for security engineers and admins, else those they own or
    steward. Newest first, with their store."""
    datasets = dataset_visible(user=user).filter(classified=False)
    if not policies.classifies_every_dataset(user):
        datasets = datasets.filter(stewarded_filter(user))
    return datasets.select_related("store").order_by("-created_at", "qualified_name")
