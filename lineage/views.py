"""Browser views of lineage: the lineage part of a dataset's page, a column's impact, the
violations list, and jobs and runs.

Like the catalog views they are thin: every read goes through ``lineage.selectors`` (which
decide who may see lineage) and the graph itself is drawn in the browser from the
lineage API (``static/js/lineage-graph.js``); the lists here show the same lineage
without JavaScript.
"""

from dataclasses import dataclass, field

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from access.audit import client_address
from access.decisions import dataset_tier
from access.grants import restricted_columns_viewed
from catalog.models import Dataset
from catalog.selectors import dataset_get
from catalog.vocabulary import sensitivity_label
from lineage import selectors
from lineage.models import Node, NodeKind

VIOLATIONS_PAGE_SIZE = 50
DEPTH_CHOICES = (1, 2, 3, 5, 10, selectors.MAX_DEPTH)
DIRECTION_CHOICES = (
    (selectors.BOTH, "Upstream and downstream"),
    (selectors.UPSTREAM, "Upstream only"),
    (selectors.DOWNSTREAM, "Downstream only"),
)


@dataclass
class LineageRow:
    """One dataset (or external source) upstream or downstream of the dataset on the page."""

    node: Node
    hops: int
    effective: str | None = None
    higher: bool = False  # the effective sensitivity is above the declared one
    owners: list = field(default_factory=list)


def _walk_options(query) -> tuple[str, int]:
    direction = query.get("direction") or selectors.BOTH
    if direction not in selectors.DIRECTIONS:
        direction = selectors.BOTH
    raw = query.get("depth") or ""
    depth = int(raw) if raw.isdigit() else selectors.DEFAULT_DEPTH
    return direction, max(1, min(selectors.MAX_DEPTH, depth))


def dataset_lineage_context(*, user, dataset: Dataset, query) -> dict:
    """What the dataset page needs for its lineage section and its columns' lineage badges.

    ``query`` is the page's GET parameters: ``direction`` and ``depth`` pick the walk, so
    the lists work without JavaScript and the graph starts from the same choice.
    """
    direction, depth = _walk_options(query)
    start = selectors.lineage_dataset_node(user=user, dataset=dataset)
    walk = selectors.lineage_walk(user=user, starts=[start], direction=direction, depth=depth)
    effective = selectors.dataset_effective_sensitivities(walk.nodes)
    upstream, downstream = [], []
    for node in walk.nodes:
        if node.depth == 0:
            continue
        row = LineageRow(node=node, hops=abs(node.depth))
        if node.kind == NodeKind.DATASET and not node.hidden:
            value = effective.get(node.dataset_id)
            row.effective = sensitivity_label(value)
            row.higher = value is not None and value > dataset_tier(node.dataset)
            row.owners = sorted(node.dataset.owner_list, key=lambda owner: owner.username)
        (upstream if node.depth < 0 else downstream).append(row)
    upstream.sort(key=lambda row: (row.hops, row.node.label.lower()))
    own_effective = effective.get(dataset.pk)
    return {
        "lineage_direction": direction,
        "lineage_depth": depth,
        "lineage_depth_choices": DEPTH_CHOICES,
        "lineage_direction_choices": DIRECTION_CHOICES,
        "lineage_upstream": upstream,
        "lineage_downstream": downstream,
        "lineage_partial": walk.partial,
        "lineage_edge_count": len(walk.edges),
        "effective_sensitivity": sensitivity_label(own_effective),
        "effective_is_higher": own_effective is not None and own_effective > dataset_tier(dataset),
    }


def columns_with_lineage(*, dataset: Dataset, columns) -> list[dict]:
    """The current version's columns (dicts, as the version stores them), each with
    ``lineage``: the catalog column's id (for the impact link), its effective sensitivity
    and whether it is a violation. One query."""
    rows = {
        column.name.lower(): column
        for column in dataset.columns.select_related("lineage_node")
    }
    enriched, tier = [], dataset_tier(dataset)
    for column in columns:
        row = rows.get(column["name"].lower())
        node = getattr(row, "lineage_node", None) if row is not None else None
        lineage = {"column_id": row.pk if row is not None else None}
        if node is not None and node.effective_sensitivity is not None:
            lineage.update(
                effective=sensitivity_label(node.effective_sensitivity),
                # Against what the decision uses: an unclassified dataset's columns are its default tier.
                higher=node.effective_sensitivity > (row.sensitivity if dataset.classified else tier),
                violation=node.is_violation,
                inflow=sensitivity_label(node.unprotected_inflow),
            )
        enriched.append({**column, "lineage": lineage})
    return enriched


def restricted_columns_audit(request, nodes, *, via: str) -> None:
    """Audit the Restricted column metadata that ``nodes`` show the reader (pages and API alike),
    one event per dataset naming its Restricted columns shown."""
    shown = selectors.lineage_restricted_columns(nodes)
    if shown:
        restricted_columns_viewed(principal=request.user, shown=shown, remote_addr=client_address(request), via=via)


@login_required
def column_impact(request, pk, column_id):
    """Everything downstream of one column, grouped by dataset: who a change or a leak reaches."""
    dataset = dataset_get(user=request.user, pk=pk)
    node = selectors.lineage_column_node_get(user=request.user, dataset=dataset, column_id=column_id)
    node.dataset = dataset
    impact = selectors.lineage_impact(user=request.user, starts=[node], depth=selectors.MAX_DEPTH)
    restricted_columns_audit(request, impact["walk"].nodes, via="page:column-impact")
    affected_columns = sum(len(entry["columns"]) for entry in impact["datasets"])
    for entry in impact["datasets"]:
        entry["owners"] = sorted(entry["owners"], key=lambda owner: owner.username)
        entry["columns"] = sorted(entry["columns"], key=lambda column: (column.depth, column.name.lower()))
    # What the page measures is column-level lineage; the dataset-level downstream beside it (edges
    # that say a job read the dataset, not which columns) keeps "nothing downstream" from misleading.
    dataset_node = selectors.lineage_dataset_node(user=request.user, dataset=dataset)
    dataset_impact = selectors.lineage_impact(user=request.user, starts=[dataset_node], depth=selectors.MAX_DEPTH)
    return render(
        request,
        "lineage/column_impact.html",
        {
            "dataset": dataset,
            "node": node,
            "column": node.column,
            "effective": sensitivity_label(node.effective_sensitivity),
            "impact": impact,
            "affected_columns": affected_columns,
            "dataset_impact": dataset_impact,
            "max_depth": selectors.MAX_DEPTH,
        },
    )


@login_required
def violation_list(request):
    """Columns declared lower than what flows into them unprotected, each with its path."""
    paginator = Paginator(selectors.lineage_violation_list(user=request.user), VIOLATIONS_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    paths = selectors.lineage_sensitivity_paths(user=request.user, nodes=page.object_list)
    restricted_columns_audit(request, [step for path in paths.values() for step in path], via="page:violations")
    violations = [
        {
            "node": node,
            "owners": sorted(node.dataset.owner_list, key=lambda owner: owner.username),
            "path": paths.get(node.pk, [node]),
        }
        for node in page.object_list
    ]
    return render(
        request,
        "lineage/violation_list.html",
        {
            "page": page,
            "violations": violations,
            "result_count": paginator.count,
            "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
            "ellipsis": Paginator.ELLIPSIS,
        },
    )


JOBS_PAGE_SIZE = 50


@login_required
def job_list(request):
    """Jobs that sent lineage, filtered by their type (the jobType facet) in the URL."""
    from lineage.filtersets import JobFilterSet

    jobs = selectors.job_list(user=request.user)
    filterset = JobFilterSet(request.GET or None, queryset=jobs)
    paginator = Paginator(filterset.qs, JOBS_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    # The choices offered are the types of the jobs the reader may see: one query.
    types = set(jobs.order_by().values_list("processing_type", "integration", "job_type").distinct())
    return render(request, "lineage/job_list.html", {
        "filterset": filterset,
        "page": page,
        "jobs": page.object_list,
        "result_count": paginator.count,
        "page_numbers": list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)),
        "ellipsis": Paginator.ELLIPSIS,
        "query_string": query.urlencode(),
        "active_filters": any(value for key, value in request.GET.lists() if key != "page" and any(value)),
        "job_types": sorted({row[2] for row in types if row[2]}),
        "integrations": sorted({row[1] for row in types if row[1]}),
        "processing_types": sorted({row[0] for row in types if row[0]}),
    })


@login_required
def job_detail(request, pk):
    """A job: its type, its SQL (to readers who may see every dataset it names), what it reads
    and writes, and its latest runs with their parent runs."""
    job = selectors.job_get(user=request.user, pk=pk)
    return render(request, "lineage/job_detail.html", {
        "job": job,
        "sql_visible": selectors.job_sql_visible(user=request.user, job=job),
        "datasets": selectors.job_datasets(user=request.user, job=job),
        "runs": selectors.job_runs(job=job),
        "runs_shown": selectors.RUNS_SHOWN,
    })


@login_required
def run_detail(request, run_id):
    """A run: its state, what the catalog could not use of its events, its parent run and its
    child runs (a dbt run and its model runs)."""
    run = selectors.run_get(user=request.user, run_id=run_id)
    return render(request, "lineage/run_detail.html", {"run": run, **selectors.run_family(user=request.user, run=run)})
