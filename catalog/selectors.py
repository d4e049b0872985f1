"""Every read of the catalog that has rules: who may see what, and how lists are loaded."""

from django.db.models import Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery
from django.http import Http404

from access import policies
from access.decisions import dataset_visibility_filter
from catalog.diffs import schema_diff
from catalog.models import Column, ColumnSuggestion, Dataset, DatasetVersion, DataStore, SyncRun


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
    """Stores the user may see, each with its number of datasets."""
    return store_visible(user=user).annotate(dataset_count=Count("datasets"))


def sync_run_visible(*, user) -> QuerySet[SyncRun]:
    """Sync runs of the stores the user may see, with what run pages and the API show."""
    stores = store_visible(user=user).values("pk")
    return SyncRun.objects.filter(store__in=stores).select_related("store", "requested_by")


def suggestion_visible(*, user) -> QuerySet[ColumnSuggestion]:
    """Classification suggestions on datasets the user may see."""
    return ColumnSuggestion.objects.filter(dataset__in=dataset_visible(user=user))
