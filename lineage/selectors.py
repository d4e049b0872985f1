"""Reads of the lineage graph: walks upstream and downstream, impact, violations and paths.

A walk is one recursive SQL query (PostgreSQL and SQLite both run it) over the edge
indexes on either end, never a query per hop. It stops at the depth asked for, visits
each node once whatever the cycles (``UNION`` drops a node already reached at the same
depth, and the depth bound ends every cycle), and stops early at a cap on nodes, saying
so with ``partial``.

Every walk shows what the reader may see: nodes of datasets whose metadata the role matrix
(``access.decisions``) keeps from them stay in the walk, so a path through them is not cut,
but are marked ``hidden`` and show no name, columns, owners or sensitivity. So are sources
(``vendor:...``, ``mlmodel:...``) that feed only datasets the reader may not see: a source's
name says what feeds a hidden dataset. Edges touching a hidden node show no job or description.
"""

import gc
import json
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, Q
from django.db.models.expressions import RawSQL
from django.http import Http404

from access import policies
from access.decisions import dataset_visibility_filter
from access.models import User
from catalog.models import Column, Dataset
from catalog.selectors import dataset_visible
from catalog.vocabulary import Sensitivity
from lineage.models import Edge, EdgeLevel, Job, LineageEvent, Node, NodeKind, Run

DEFAULT_DEPTH = 3
MAX_DEPTH = 20
DEFAULT_LIMIT = 300
MAX_LIMIT = 5000
UPSTREAM, DOWNSTREAM, BOTH = "upstream", "downstream", "both"
DIRECTIONS = (UPSTREAM, DOWNSTREAM, BOTH)

# A node reached at several depths yields several rows, so the recursion may produce a
# multiple of the node cap before it is cut off (PostgreSQL stops computing a WITH query
# once the outer LIMIT is met).
ROWS_PER_NODE = 4

_WALK = """
WITH RECURSIVE walk(node_id, depth) AS (
    SELECT id, 0 FROM {node} WHERE id IN ({starts})
    UNION
    SELECT e.{far}, w.depth + 1 FROM walk w JOIN {edge} e ON e.{near} = w.node_id
    WHERE e.level = %s AND w.depth < %s
)
SELECT node_id, depth FROM walk LIMIT %s
"""


def walk_sql(*, start_count: int, downstream: bool) -> str:
    """The recursive query behind every walk (shared with the benchmark)."""
    near, far = ("source_id", "target_id") if downstream else ("target_id", "source_id")
    return _WALK.format(
        node=Node._meta.db_table, edge=Edge._meta.db_table, near=near, far=far,
        starts=", ".join(["%s"] * start_count),
    )


@dataclass
class Walk:
    """Nodes reached, each with ``depth`` (negative upstream, positive downstream, 0 for a
    start), and the edges between them."""

    starts: list[Node]
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    partial: bool = False
    depth: int = DEFAULT_DEPTH
    level: str = EdgeLevel.DATASET


def _walk_ids(start_ids, *, downstream: bool, level: str, depth: int, limit: int) -> tuple[dict[int, int], bool]:
    row_cap = (limit + len(start_ids)) * ROWS_PER_NODE
    with connection.cursor() as cursor:
        cursor.execute(walk_sql(start_count=len(start_ids), downstream=downstream), [*start_ids, level, depth, row_cap + 1])
        rows = cursor.fetchall()
    partial = len(rows) > row_cap
    nearest = {}
    for node_id, node_depth in rows:
        if node_depth and (node_id not in nearest or node_depth < nearest[node_id]):
            nearest[node_id] = node_depth
    for start_id in start_ids:
        nearest.pop(start_id, None)
    ordered = sorted(nearest.items(), key=lambda item: (item[1], item[0]))
    if len(ordered) > limit:
        ordered, partial = ordered[:limit], True
    return dict(ordered), partial


def _clamp(value, *, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    return max(low, min(high, int(value)))


def lineage_walk(*, user, starts, direction: str = BOTH, level: str = EdgeLevel.DATASET,
                 depth: int | None = None, limit: int | None = None) -> Walk:
    """Walk from ``starts`` (nodes) along edges of one level, upstream, downstream or both.

    ``depth`` defaults to 3 and is at most 20; ``limit`` caps the nodes returned on each
    side (default 300, at most 5000).
    """
    if not policies.can_read_metadata(user):
        raise Http404("No such lineage.")
    depth = _clamp(depth, low=1, high=MAX_DEPTH, default=DEFAULT_DEPTH)
    limit = _clamp(limit, low=1, high=MAX_LIMIT, default=DEFAULT_LIMIT)
    starts = list(starts)
    start_ids = [node.pk for node in starts]
    walk = Walk(starts=starts, depth=depth, level=level)
    reached: dict[int, int] = {}
    if start_ids:
        for downstream, sign in ((False, -1), (True, 1)):
            if direction == (DOWNSTREAM if not downstream else UPSTREAM):
                continue
            ids, partial = _walk_ids(start_ids, downstream=downstream, level=level, depth=depth, limit=limit)
            walk.partial |= partial
            for node_id, node_depth in ids.items():
                # A node both upstream and downstream (a cycle through a start) shows once, upstream first.
                reached.setdefault(node_id, sign * node_depth)
    nodes = {node.pk: node for node in _nodes_for_display(reached)}
    for node in starts:
        node.depth = 0
    for node_id, node_depth in reached.items():
        nodes[node_id].depth = node_depth
    lineage_hide_invisible(user=user, nodes=nodes.values())
    walk.nodes = [*starts, *sorted(nodes.values(), key=lambda node: (node.depth, node.hidden, node.label.lower()))]
    all_ids = [node.pk for node in walk.nodes]
    walk.edges = list(
        Edge.objects.filter(level=level, source_id__in=all_ids, target_id__in=all_ids).select_related("job")
    )
    hidden_ids = {node.pk for node in walk.nodes if node.hidden}
    for edge in walk.edges:
        edge.touches_hidden = edge.source_id in hidden_ids or edge.target_id in hidden_ids
    return walk


def _visible_or_none(user):
    """The datasets whose metadata the user may see, or None when that is every one (so there
    is nothing to filter and no query to make)."""
    condition = dataset_visibility_filter(user)
    return None if condition is None else Dataset.objects.filter(condition)


def lineage_hide_invisible(*, user, nodes) -> list[Node]:
    """Marks ``hidden`` the nodes (dataset and column) of datasets the user may not see, and the
    other nodes (external sources, ML models) that no edge connects to a dataset the user may see:
    their names say what feeds hidden datasets. A source that also feeds a visible dataset stays
    visible. At most two queries, whatever the number of nodes."""
    nodes = list(nodes)
    visible_query = _visible_or_none(user) if nodes else None
    if visible_query is None:  # everything is visible: nothing to ask
        for node in nodes:
            node.hidden = False
        return nodes
    dataset_ids = {node.dataset_id for node in nodes if node.dataset_id is not None}
    visible = set(visible_query.filter(pk__in=list(dataset_ids)).values_list("pk", flat=True)) if dataset_ids else set()
    shown_sources = _sources_shown(visible_query, [node.pk for node in nodes if node.dataset_id is None])
    for node in nodes:
        if node.dataset_id is None:
            node.hidden = node.pk not in shown_sources
        else:
            node.hidden = node.dataset_id not in visible
    return nodes


def _sources_shown(visible_query, node_ids) -> set[int]:
    """Which of these non-dataset nodes an edge (either way, any level) connects to a node of a
    dataset in ``visible_query``; one query."""
    if not node_ids:
        return set()
    visible = visible_query.values("pk")
    feeds_visible = Edge.objects.filter(source=OuterRef("pk"), target__dataset__in=visible)
    fed_by_visible = Edge.objects.filter(target=OuterRef("pk"), source__dataset__in=visible)
    return set(
        Node.objects.filter(pk__in=node_ids).filter(Exists(feeds_visible) | Exists(fed_by_visible))
        .values_list("pk", flat=True)
    )


def _nodes_for_display(ids):
    if not ids:
        return []
    return (
        Node.objects.filter(pk__in=list(ids))
        .select_related("dataset__store", "column")
        .prefetch_related(Prefetch("dataset__owners", to_attr="owner_list"))
    )


def lineage_dataset_node(*, user, dataset: Dataset) -> Node:
    """The lineage node of a dataset the user may see (a dataset with no lineage yet gets one)."""
    if not policies.can_read_metadata(user):
        raise Http404("No such dataset.")
    from lineage.services import dataset_nodes_ensure

    node = dataset_nodes_ensure([dataset])[dataset.pk]
    node.dataset = dataset
    return node


def lineage_restricted_columns(nodes) -> list[tuple[Dataset, list[str]]]:
    """The Restricted columns that ``nodes`` show the reader (column nodes not hidden, declared
    Restricted in the current version), by dataset: what reading them audits. Asks nothing of
    the database for nodes loaded with their column and dataset."""
    by_dataset: dict[int, tuple[Dataset, set[str]]] = {}
    for node in nodes:
        if node.kind != NodeKind.COLUMN or node.hidden or node.column_id is None:
            continue
        if node.column.sensitivity >= Sensitivity.RESTRICTED:
            by_dataset.setdefault(node.dataset_id, (node.dataset, set()))[1].add(node.column.name)
    return [(dataset, sorted(names)) for dataset, names in by_dataset.values()]


def lineage_column_node_get(*, user, dataset: Dataset, column_id) -> Node:
    """The lineage node of one current column of ``dataset``, by the column's id."""
    if not policies.can_read_metadata(user):
        raise Http404("No such column.")
    node = (
        Node.objects.filter(kind=NodeKind.COLUMN, dataset=dataset, column_id=column_id)
        .select_related("column", "dataset__store")
        .first()
    )
    if node is None:
        column = dataset.columns.filter(pk=column_id).first()
        if column is None:
            raise Http404("No such column.")
        from lineage.services import column_nodes_ensure

        node = column_nodes_ensure(dataset, [column.name])[column.name.lower()]
        node.column = column
    return node


def lineage_dataset_column_nodes(*, dataset: Dataset) -> list[Node]:
    """Every column node of a dataset, current columns first in their order."""
    nodes = Node.objects.filter(kind=NodeKind.COLUMN, dataset=dataset).select_related("column")
    return sorted(nodes, key=lambda node: (node.column is None, node.column.position if node.column else 0, node.name))


def lineage_impact(*, user, starts, depth: int | None = MAX_DEPTH, limit: int | None = MAX_LIMIT) -> dict:
    """Everything downstream of ``starts`` (column or dataset nodes), grouped by dataset with
    its owners: who a change or a leak reaches."""
    level = EdgeLevel.COLUMN if starts and starts[0].kind == NodeKind.COLUMN else EdgeLevel.DATASET
    walk = lineage_walk(user=user, starts=starts, direction=DOWNSTREAM, level=level, depth=depth, limit=limit)
    by_dataset: dict[int, dict] = {}
    hidden: set[int] = set()
    for node in walk.nodes:
        if node.depth <= 0 or node.dataset_id is None:
            continue
        if node.hidden:
            hidden.add(node.dataset_id)
            continue
        entry = by_dataset.setdefault(
            node.dataset_id, {"dataset": node.dataset, "owners": node.dataset.owner_list, "depth": node.depth, "columns": []}
        )
        entry["depth"] = min(entry["depth"], node.depth)
        if node.kind == NodeKind.COLUMN:
            entry["columns"].append(node)
    affected = sorted(by_dataset.values(), key=lambda entry: (entry["depth"], entry["dataset"].qualified_name))
    sources = [node for node in walk.nodes if node.depth > 0 and node.kind == NodeKind.SOURCE and not node.hidden]
    return {"walk": walk, "datasets": affected, "sources": sources, "hidden": len(hidden), "partial": walk.partial}


_DOWNSTREAM_OF_EACH = """
WITH RECURSIVE walk(origin, node_id, depth) AS (
    SELECT id, id, 0 FROM {node} WHERE id IN ({starts})
    UNION
    SELECT w.origin, e.target_id, w.depth + 1 FROM walk w JOIN {edge} e ON e.source_id = w.node_id
    WHERE e.level = %s AND w.depth < %s
)
SELECT w.origin, n.dataset_id, MIN(w.depth) FROM walk w JOIN {node} n ON n.id = w.node_id
WHERE w.depth > 0 AND n.dataset_id IS NOT NULL GROUP BY w.origin, n.dataset_id
"""


def lineage_downstream_of_each(*, user, dataset_ids, depth: int, shown: int) -> dict[int, dict]:
    """For each of ``dataset_ids``, the nearest ``shown`` datasets downstream of it (dataset
    level, up to ``depth`` hops) that the user may see, as ``{"datasets": [{"dataset",
    "depth"}], "more": n}`` where ``more`` counts the rest, hidden ones included.

    A list page (the approval queue) needs this for every row: the walk carries its start
    along, so the whole page costs three queries instead of a walk per row.
    """
    result = {pk: {"datasets": [], "more": 0} for pk in dataset_ids}
    starts = dict(Node.objects.filter(kind=NodeKind.DATASET, dataset_id__in=dataset_ids).values_list("pk", "dataset_id"))
    if not starts:
        return result
    sql = _DOWNSTREAM_OF_EACH.format(
        node=Node._meta.db_table, edge=Edge._meta.db_table, starts=", ".join(["%s"] * len(starts))
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*starts, EdgeLevel.DATASET, depth])
        rows = [(starts[origin], dataset_id, hops) for origin, dataset_id, hops in cursor.fetchall()
                if dataset_id != starts[origin]]
    reached = {dataset_id for _, dataset_id, _ in rows}
    visible = {dataset.pk: dataset for dataset in dataset_visible(user=user).filter(pk__in=reached).select_related("store")}
    for origin, dataset_id, hops in sorted(rows, key=lambda row: row[2]):
        entry = result[origin]
        if dataset_id in visible and len(entry["datasets"]) < shown:
            entry["datasets"].append({"dataset": visible[dataset_id], "depth": hops})
        else:
            entry["more"] += 1
    return result


def lineage_breaking_impact(*, user, dataset: Dataset, diff: dict) -> dict:
    """Datasets downstream of a breaking version: of the removed and changed columns where
    column lineage knows them, and of the dataset as a whole."""
    names = [*diff.get("removed", []), *(change["name"] for change in diff.get("changed", []) if change["breaking"])]
    starts = list(
        Node.objects.filter(kind=NodeKind.COLUMN, dataset=dataset, name__in=names)
    ) if names else []
    dataset_node = lineage_dataset_node(user=user, dataset=dataset)
    column_impact = lineage_impact(user=user, starts=starts) if starts else {"datasets": [], "hidden": 0, "partial": False}
    dataset_impact = lineage_impact(user=user, starts=[dataset_node])
    merged = {entry["dataset"].pk: dict(entry, via_columns=False) for entry in dataset_impact["datasets"]}
    for entry in column_impact["datasets"]:
        merged[entry["dataset"].pk] = dict(entry, via_columns=True)
    return {
        "datasets": sorted(merged.values(), key=lambda entry: (entry["depth"], entry["dataset"].qualified_name)),
        "hidden": max(dataset_impact["hidden"], column_impact["hidden"]),
        "partial": dataset_impact["partial"] or column_impact["partial"],
    }


def lineage_violation_list(*, user):
    """Columns declared lower than what flows into them unprotected, most severe first: those
    of the datasets the user may see."""
    if not policies.can_read_metadata(user):
        return Node.objects.none()
    violations = Node.objects.filter(is_violation=True, kind=NodeKind.COLUMN)
    if (visible := _visible_or_none(user)) is not None:
        violations = violations.filter(dataset__in=visible.values("pk"))
    return (
        violations
        .select_related("column", "dataset__store", "sensitivity_from__dataset", "sensitivity_from__column")
        .prefetch_related(Prefetch("dataset__owners", to_attr="owner_list"))
        .order_by("-unprotected_inflow", "dataset__qualified_name", "name")
    )


_PATH = """
WITH RECURSIVE path(root, node_id, step) AS (
    SELECT id, sensitivity_from_id, 1 FROM {node} WHERE id IN ({roots}) AND sensitivity_from_id IS NOT NULL
    UNION ALL
    SELECT p.root, n.sensitivity_from_id, p.step + 1 FROM path p JOIN {node} n ON n.id = p.node_id
    WHERE n.sensitivity_from_id IS NOT NULL AND p.step < %s
)
SELECT root, node_id, step FROM path ORDER BY root, step
"""


def lineage_sensitivity_paths(*, user, nodes) -> dict[int, list[Node]]:
    """For each node, the chain of upstream columns its effective sensitivity (or its
    violation) comes from, origin first and the node itself last; steps in datasets the user
    may not see are ``hidden``. One query for the chains, one for the nodes on them and at
    most one for their visibility, however many nodes are asked about."""
    nodes = list(nodes)
    if not nodes:
        return {}
    sql = _PATH.format(node=Node._meta.db_table, roots=", ".join(["%s"] * len(nodes)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*[node.pk for node in nodes], MAX_DEPTH * 2])
        rows = cursor.fetchall()
    chains = defaultdict(list)
    for root, node_id, _step in rows:
        if node_id not in chains[root] and node_id != root:
            chains[root].append(node_id)
    on_path = {pk for chain in chains.values() for pk in chain}
    loaded = {n.pk: n for n in Node.objects.filter(pk__in=on_path).select_related("dataset", "column")} if on_path else {}
    lineage_hide_invisible(user=user, nodes=loaded.values())
    return {node.pk: [*[loaded[pk] for pk in reversed(chains[node.pk]) if pk in loaded], node] for node in nodes}


def job_list(*, user):
    """Jobs that sent lineage, each with its latest run prefetched as ``latest_runs``."""
    if not policies.can_read_metadata(user):
        return Job.objects.none()
    jobs = Job.objects.all()
    if (visible := _visible_or_none(user)) is not None:
        # A job is named after what it reads and writes: listed only when it touches nothing hidden.
        visible = visible.values("pk")
        hidden_end = (Q(source__dataset__isnull=False) & ~Q(source__dataset__in=visible)) | (
            Q(target__dataset__isnull=False) & ~Q(target__dataset__in=visible))
        touches_hidden = Exists(Edge.objects.filter(hidden_end, job=OuterRef("pk")))
        shown = Job.objects.filter(Exists(Edge.objects.filter(job=OuterRef("pk")))).exclude(touches_hidden)
        # A job that reads and writes nothing itself (a dbt run, an Airflow DAG) is listed when it
        # ran a job the reader sees (the parent run facet): it is known by what it ran.
        runs_shown = Exists(Run.objects.filter(job=OuterRef("pk"), children__job__in=shown.values("pk")))
        jobs = jobs.filter(Q(Exists(Edge.objects.filter(job=OuterRef("pk")))) | Q(runs_shown)).exclude(touches_hidden)
    return jobs.prefetch_related(
        Prefetch("runs", queryset=Run.objects.order_by("-last_event_time")[:1], to_attr="latest_runs")
    ).order_by("namespace", "name")


def dataset_effective_sensitivities(nodes) -> dict[int, int]:
    """Highest effective sensitivity of each dataset among ``nodes`` (of its current columns), as
    its dataset node keeps it (``lineage.sensitivity``); asks nothing of the database."""
    return {
        node.dataset_id: node.effective_sensitivity
        for node in nodes if node.kind == NodeKind.DATASET and node.effective_sensitivity is not None
    }


# Jobs and runs: their pages and API (facets from lineage.facets) --------------------------------

RUNS_SHOWN = 20


def job_get(*, user, pk) -> Job:
    """One job the user may see (``job_list``'s rule), or 404."""
    job = job_list(user=user).filter(pk=pk).first()
    if job is None:
        raise Http404("No such job.")
    return job


def job_sql_visible(*, user, job: Job) -> bool:
    """Whether the reader may read the job's SQL. SQL names tables: it is shown only when the reader
    may see every dataset the job reads and writes (``job_list``'s rule, so ``job`` came from it)
    and no dataset they may not see has the name of a table the SQL mentions (a join the event did
    not list, a table in a subquery). SQL that cannot be parsed is shown to those who see everything."""
    if not job.sql:
        return False
    visible = _visible_or_none(user)
    if visible is None:
        return True
    from lineage.facets import sql_table_names  # sqlglot is loaded by lineage.sql anyway

    if job.sql_tables is None:  # SQL kept before its tables were
        names = sql_table_names(job.sql, job.sql_dialect)
    else:
        names = [tuple(name) for name in job.sql_tables] if job.sql_tables is not False else None
    if names is None:
        return False
    if not names:
        return True
    named = Q()
    for schema, table in names:
        suffix = f".{schema}.{table}" if schema else f".{table}"
        named |= Q(qualified_name__iendswith=suffix)
    return not Dataset.objects.filter(named).exclude(pk__in=visible.values("pk")).exists()


def job_datasets(*, user, job: Job) -> dict[str, list[Dataset]]:
    """The datasets a job reads and writes (its dataset edges), by name; only those the user may
    see (a job the user sees touches no other). Two queries."""
    pairs = list(Edge.objects.filter(job=job, level=EdgeLevel.DATASET).values_list(
        "source__dataset_id", "target__dataset_id"))
    sources = {source for source, _ in pairs if source}
    targets = {target for _, target in pairs if target}
    found = {dataset.pk: dataset for dataset in dataset_visible(user=user).filter(pk__in=sources | targets)
             .select_related("store")}
    return {
        "inputs": sorted((found[pk] for pk in sources if pk in found), key=lambda d: d.qualified_name),
        "outputs": sorted((found[pk] for pk in targets if pk in found), key=lambda d: d.qualified_name),
    }


def job_runs(*, job: Job, limit: int = RUNS_SHOWN):
    """The job's latest runs, each with its parent run (and the parent's job) and its number of
    child runs, in one query."""
    return (
        Run.objects.filter(job=job).select_related("parent__job")
        .annotate(child_count=Count("children")).order_by("-last_event_time")[:limit]
    )


def run_get(*, user, run_id) -> Run:
    """One run of a job the user may see, or 404."""
    run = Run.objects.filter(run_id=run_id, job__in=job_list(user=user).values("pk")).select_related("job").first()
    if run is None:
        raise Http404("No such run.")
    return run


def run_family(*, user, run: Run) -> dict:
    """The run's parent and children as the user may see them: ``{"parent": Run | None,
    "parent_hidden": bool, "children": [Run], "hidden_children": n}``. A run of a job the user may
    not see is counted, never named (its job's name may name a hidden dataset). Three queries."""
    jobs = job_list(user=user).values("pk")
    parent = None
    if run.parent_id:
        parent = Run.objects.filter(pk=run.parent_id, job__in=jobs).select_related("job").first()
    children = list(Run.objects.filter(parent=run).select_related("job").order_by("started_at", "last_event_time"))
    shown = set(Job.objects.filter(pk__in={child.job_id for child in children}).filter(pk__in=jobs)
                .values_list("pk", flat=True)) if children else set()
    return {
        "parent": parent,
        "parent_hidden": bool(run.parent_id) and parent is None,
        "children": [child for child in children if child.job_id in shown],
        "hidden_children": sum(1 for child in children if child.job_id not in shown),
    }


def lineage_event_list(*, user, run_uuid=None, status=None):
    """OpenLineage events the user may follow: those they sent (a pipeline sees its own events,
    pending, applied or failed with the error), every event for an admin. An event names the
    datasets and the error of its sender, so nobody else sees it."""
    if not policies.can_read_metadata(user):
        return LineageEvent.objects.none()
    events = LineageEvent.objects.all()
    if not user.is_superuser:
        events = events.filter(received_by=user)
    if run_uuid is not None:
        events = events.filter(run_uuid=run_uuid)
    if status:
        events = events.filter(status=status)
    return events.defer("payload").order_by("-received_at", "-id")


def lineage_run_state(*, user, run_uuid) -> str | None:
    """The state of a run as its sender follows it (``GET .../runs/{runId}/events/``): only to the
    account that sent the run (or an admin). Someone who sent an event naming another account's run
    (refused) sees their own event, not how that run is going."""
    runs = Run.objects.filter(run_id=run_uuid)
    if not user.is_superuser:
        runs = runs.filter(sent_by=user)
    return runs.values_list("state", flat=True).first()


# --- the graph: two statements per walk -------------------------------------------------------
#
# ``lineage_graph`` is what the lineage API (and so the graph on a dataset's page) draws. Whatever
# the size of the walk it makes two statements: the walk itself (ids and depths, cut at the caps
# in SQL), then everything the graph shows of those nodes (node, dataset, column, owners, the
# datasets' effective sensitivity, whether the reader may see each) and the edges between them,
# built as JSON in the database. The ids go as one array parameter each. Rows come back as plain
# dicts: no model instance per node or edge.
#
# Why two and not one: PostgreSQL cannot estimate how many rows a recursive CTE yields (it guesses
# a handful), so a single statement that joins the walk to nodes, owners and edges is planned as
# nested loops over the whole walk, or as a sub-plan per node (measured: 4-5x the walk alone at
# 1,600 nodes). Handed the ids as an array constant, the planner knows their number and hashes.
# The embedded SQLite demo runs the same statements, reading the arrays with json_each.


@contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector while a graph's rows become objects (and the API's
    dicts are built from them). A graph of 5,000 nodes is some 150,000 new lists, dicts and strings,
    none of them in a cycle; each 700 allocations start a collection, and the older generations'
    collections walk every object the process holds (Django's included): measured, decoding the
    JSON of a 5,000-node graph took 103 ms with the collector on and 10 ms with it paused.
    Reference counting still frees everything; the collector runs again afterwards."""
    if not gc.isenabled():  # already paused by a caller
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass
class Graph:
    """A walk as the graph shows it: ``nodes`` and ``edges`` are dicts (see ``lineage_graph``),
    starts first, then by depth (upstream negative), visible before hidden, by label."""

    starts: list[int]
    nodes: list[dict] = field(default_factory=list)
    edges: list[dict] = field(default_factory=list)
    partial: bool = False
    depth: int = DEFAULT_DEPTH
    level: str = EdgeLevel.DATASET


@dataclass(frozen=True)
class _Dialect:
    in_list: str  # "x {in_list}": x is one of the ids in one parameter
    not_in_list: str
    pairs: str  # (node_id, depth) rows from two parameters (PostgreSQL) or one (SQLite)
    aggregate: str  # rows -> one JSON array
    array: str  # a row as a JSON array
    nested: str  # a JSON value built by ``aggregate`` placed inside ``array``
    postgresql: bool

    def ids(self, ids) -> object:
        return list(ids) if self.postgresql else json.dumps(list(ids))

    def pair_params(self, reached: dict[int, int]) -> list:
        if self.postgresql:
            return [list(reached), list(reached.values())]
        return [json.dumps(list(reached.items()))]


_POSTGRESQL = _Dialect(
    "= ANY(%s)", "<> ALL(%s)", "SELECT * FROM unnest(%s::bigint[], %s::int[])",
    "json_agg", "json_build_array", "{}", True,
)
_SQLITE = _Dialect(
    "IN (SELECT value FROM json_each(%s))", "NOT IN (SELECT value FROM json_each(%s))",
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(%s)",
    "json_group_array", "json_array", "json({})", False,
)


def _dialect() -> _Dialect:
    return _POSTGRESQL if connection.vendor == "postgresql" else _SQLITE


def _side_ctes(name: str, *, downstream: bool, dialect: _Dialect, start_ids, level, depth, row_cap):
    """The recursive walk of one direction, cut at ``row_cap`` rows, each node once at its nearest
    depth, ranked by (depth, id)."""
    near, far = ("source_id", "target_id") if downstream else ("target_id", "source_id")
    sql = f"""
{name}_walk(node_id, depth) AS (
    SELECT id, 0 FROM {Node._meta.db_table} WHERE id {dialect.in_list}
    UNION
    SELECT e.{far}, w.depth + 1 FROM {name}_walk w JOIN {Edge._meta.db_table} e ON e.{near} = w.node_id
    WHERE e.level = %s AND w.depth < %s
),
{name}_rows AS (SELECT node_id, depth FROM {name}_walk LIMIT %s),
{name}_ranked AS (
    SELECT node_id, depth, row_number() OVER (ORDER BY depth, node_id) AS rank FROM (
        SELECT node_id, min(depth) AS depth FROM {name}_rows
        WHERE depth > 0 AND node_id {dialect.not_in_list} GROUP BY node_id
    ) nearest
)"""
    return sql, [dialect.ids(start_ids), level, depth, row_cap + 1, dialect.ids(start_ids)]


def walk_sql_for(*, start_ids, direction, level, depth, limit, dialect: _Dialect | None = None):
    """The walk statement: ``(node_id, depth, partial)`` rows, the starts at depth 0, upstream
    depths negative, at most ``limit`` nodes a side (nearest first); ``partial`` says a cap cut it."""
    dialect = dialect or _dialect()
    row_cap = (limit + len(start_ids)) * ROWS_PER_NODE
    ctes, params, partials, partial_params = [], [], [], []
    sides = [name for name, downstream in (("up", False), ("down", True))
             if direction == BOTH or direction == (DOWNSTREAM if downstream else UPSTREAM)]
    for name in sides:
        sql, side_params = _side_ctes(name, downstream=name == "down", dialect=dialect, start_ids=start_ids,
                                      level=level, depth=depth, row_cap=row_cap)
        ctes.append(sql)
        params += side_params
        partials.append(f"(SELECT count(*) FROM {name}_rows) > %s OR (SELECT count(*) FROM {name}_ranked) > %s")
        partial_params += [row_cap, limit]
    params += partial_params  # the SELECT list comes before the FROM
    reached = [f"SELECT id AS node_id, 0 AS depth FROM {Node._meta.db_table} WHERE id {dialect.in_list}"]
    params.append(dialect.ids(start_ids))
    if "up" in sides:
        reached.append("SELECT node_id, -depth FROM up_ranked WHERE rank <= %s")
        params.append(limit)
    if "down" in sides:
        # A node both upstream and downstream (a cycle through a start) shows once, upstream first.
        also_up = " AND node_id NOT IN (SELECT node_id FROM up_ranked WHERE rank <= %s)" if "up" in sides else ""
        reached.append("SELECT node_id, depth FROM down_ranked WHERE rank <= %s" + also_up)
        params += [limit, limit] if also_up else [limit]
    statement = (
        f"WITH RECURSIVE {','.join(ctes)}\nSELECT node_id, depth, ({' OR '.join(partials)}) AS partial FROM (\n    "
        + "\n    UNION ALL ".join(reached) + "\n) reached"
    )
    return statement, params


def _visibility_sql(user, *, reached: str):
    """The reader's visibility as SQL over the nodes of the CTE ``reached(node_id, depth)``:
    ``(ctes, params, hidden_expression)``, or None when the reader may see every dataset.

    The rule is ``lineage_hide_invisible``'s: a dataset or column node is hidden when the reader
    may not see its dataset (``access.decisions.dataset_visibility_filter``, compiled here rather
    than written again), any other node when no edge connects it to a node of a dataset the
    reader may see. Only the datasets that rule can touch are checked."""
    condition = dataset_visibility_filter(user)
    if condition is None:
        return None
    node, edge = Node._meta.db_table, Edge._meta.db_table
    visible = Dataset.objects.filter(condition).filter(
        pk__in=RawSQL("SELECT dataset_id FROM visibility_candidates", [])
    ).values("pk")
    visible_sql, visible_params = visible.query.sql_with_params()
    ctes = f"""
visibility_candidates(dataset_id) AS (
    SELECT n.dataset_id FROM {reached} r JOIN {node} n ON n.id = r.node_id WHERE n.dataset_id IS NOT NULL
    UNION
    SELECT m.dataset_id FROM {reached} r JOIN {node} n ON n.id = r.node_id AND n.dataset_id IS NULL
    JOIN {edge} e ON e.source_id = n.id JOIN {node} m ON m.id = e.target_id WHERE m.dataset_id IS NOT NULL
    UNION
    SELECT m.dataset_id FROM {reached} r JOIN {node} n ON n.id = r.node_id AND n.dataset_id IS NULL
    JOIN {edge} e ON e.target_id = n.id JOIN {node} m ON m.id = e.source_id WHERE m.dataset_id IS NOT NULL
),
visible_datasets(id) AS ({visible_sql})"""
    hidden = f"""CASE WHEN n.dataset_id IS NOT NULL THEN n.dataset_id NOT IN (SELECT id FROM visible_datasets)
    ELSE NOT EXISTS (
        SELECT 1 FROM {edge} e JOIN {node} m ON m.id = e.target_id
        WHERE e.source_id = n.id AND m.dataset_id IN (SELECT id FROM visible_datasets)
    ) AND NOT EXISTS (
        SELECT 1 FROM {edge} e JOIN {node} m ON m.id = e.source_id
        WHERE e.target_id = n.id AND m.dataset_id IN (SELECT id FROM visible_datasets)
    ) END"""
    return ctes, list(visible_params), hidden


def graph_sql_for(*, user, reached: dict[int, int], level, dialect: _Dialect | None = None):
    """The statement that loads what the graph shows of the nodes ``reached`` ({id: depth}) and
    the edges of ``level`` between them: one row of two JSON arrays (nodes, edges)."""
    dialect = dialect or _dialect()
    node, edge = Node._meta.db_table, Edge._meta.db_table
    ctes = [f"reached(node_id, depth) AS ({dialect.pairs})"]
    params = dialect.pair_params(reached)
    hidden = "0 = 1"
    visibility = _visibility_sql(user, reached="reached")
    if visibility is not None:
        visibility_ctes, visibility_params, hidden = visibility
        ctes.append(visibility_ctes)
        params += visibility_params
    # Each node's owners by a probe of the owners' index: a grouped aggregate of every reached
    # dataset's owners first was planned as a hash aggregate that spilled to disk at a few thousand
    # datasets (its estimate of the groups is a guess), and cost more than the nodes themselves.
    owners = f"""(SELECT {dialect.aggregate}(u.username) FROM catalog_dataset_owners o
        JOIN {User._meta.db_table} u ON u.id = o.user_id WHERE o.dataset_id = n.dataset_id)"""
    statement = f"""WITH {",".join(ctes)}
SELECT (
    SELECT {dialect.aggregate}({dialect.array}(
        n.id, n.kind, n.name, n.source_kind, n.dataset_id, n.column_id, n.effective_sensitivity, n.is_violation,
        r.depth, {hidden}, d.qualified_name, d.status, d.needs_review, d.classified, d.sensitivity,
        c.type, c.sensitivity, c.protection,
        CASE WHEN n.dataset_id IS NOT NULL THEN {dialect.nested.format(owners)} END
    ))
    FROM reached r JOIN {node} n ON n.id = r.node_id
    LEFT JOIN {Dataset._meta.db_table} d ON d.id = n.dataset_id
    LEFT JOIN {Column._meta.db_table} c ON c.id = n.column_id
), (
    SELECT {dialect.aggregate}({dialect.array}(
        e.id, e.source_id, e.target_id, e.kind, e.direct, e.masking, e.description, j.namespace, j.name,
        e.first_seen, e.last_seen
    ))
    FROM reached s JOIN {edge} e ON e.source_id = s.node_id AND e.level = %s
    JOIN reached t ON t.node_id = e.target_id
    LEFT JOIN {Job._meta.db_table} j ON j.id = e.job_id
)"""
    params.append(level)
    return statement, params


def _json(value, dialect: _Dialect):
    if value is None:
        return []
    return value if dialect.postgresql else json.loads(value)


def _timestamp(value, dialect: _Dialect) -> str:
    """ISO 8601 in UTC as the API writes datetimes (``Z`` for ``+00:00``)."""
    if not dialect.postgresql:  # SQLite keeps "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC
        return value.replace(" ", "T") + "Z"
    return value[:-6] + "Z" if value.endswith("+00:00") else value


def lineage_graph(*, user, starts, direction: str = BOTH, level: str = EdgeLevel.DATASET,
                  depth: int | None = None, limit: int | None = None) -> Graph:
    """The walk ``lineage_walk`` makes, loaded as the graph shows it: two statements whatever the
    number of nodes, and dicts rather than model instances.

    Each node: ``id, kind, name, label, source_kind, dataset_id, column_id, effective_sensitivity,
    is_violation, depth, hidden, dataset`` (``qualified_name, status, needs_review, classified,
    sensitivity, effective_sensitivity, owners``, or None) and ``column`` (``type, sensitivity,
    protection``, or None). Each edge: ``id, source, target, level, kind, direct, masking,
    description, job, first_seen, last_seen, touches_hidden``. A hidden node keeps its place and
    kind; the API shows nothing else of it.
    """
    if not policies.can_read_metadata(user):
        raise Http404("No such lineage.")
    depth = _clamp(depth, low=1, high=MAX_DEPTH, default=DEFAULT_DEPTH)
    limit = _clamp(limit, low=1, high=MAX_LIMIT, default=DEFAULT_LIMIT)
    start_ids = [getattr(start, "pk", start) for start in starts]
    graph = Graph(starts=start_ids, depth=depth, level=level)
    if not start_ids:
        return graph
    with gc_paused():
        _graph_load(graph, user=user, start_ids=start_ids, direction=direction, level=level, depth=depth, limit=limit)
    return graph


def _graph_load(graph: Graph, *, user, start_ids, direction, level, depth, limit) -> None:
    """The two statements of ``lineage_graph`` and the nodes and edges built from their rows."""
    dialect = _dialect()
    with connection.cursor() as cursor:
        cursor.execute(*walk_sql_for(start_ids=start_ids, direction=direction, level=level, depth=depth,
                                     limit=limit, dialect=dialect))
        reached = {}
        for node_id, node_depth, partial in cursor.fetchall():
            reached[node_id] = node_depth
            graph.partial = graph.partial or bool(partial)
        cursor.execute(*graph_sql_for(user=user, reached=reached, level=level, dialect=dialect))
        node_rows, edge_rows = cursor.fetchone()
    nodes, hidden_ids = [], set()
    for (pk, kind, name, source_kind, dataset_id, column_id, effective, violation, node_depth, hidden,
         qualified_name, status, needs_review, classified, dataset_sensitivity,
         column_type, column_sensitivity, protection, owners) in _json(node_rows, dialect):
        if hidden:
            hidden_ids.add(pk)
        nodes.append({
            "id": pk, "kind": kind, "name": name, "source_kind": source_kind, "dataset_id": dataset_id,
            "column_id": column_id, "effective_sensitivity": effective, "is_violation": bool(violation),
            "depth": node_depth, "hidden": bool(hidden),
            "label": (Node.HIDDEN_SOURCE_LABEL if kind == NodeKind.SOURCE else Node.HIDDEN_LABEL) if hidden
            else f"{source_kind}:{name}" if kind == NodeKind.SOURCE else name,
            "dataset": None if dataset_id is None else {
                "qualified_name": qualified_name, "status": status, "needs_review": bool(needs_review),
                "classified": bool(classified), "sensitivity": dataset_sensitivity,
                "effective_sensitivity": effective if kind == NodeKind.DATASET else None, "owners": sorted(owners or ()),
            },
            "column": None if column_id is None else {
                "type": column_type, "sensitivity": column_sensitivity, "protection": protection,
            },
        })
    order = {pk: index for index, pk in enumerate(start_ids)}
    nodes.sort(key=lambda node: (node["depth"] != 0, order.get(node["id"], 0), node["depth"], node["hidden"],
                                 node["label"].lower()))
    graph.nodes = nodes
    graph.edges = [
        {
            "id": edge_id, "source": source, "target": target, "level": level, "kind": kind,
            "direct": bool(direct), "masking": bool(masking), "description": description,
            "job": None if job_name is None else f"{job_namespace}/{job_name}",
            "first_seen": _timestamp(first, dialect), "last_seen": _timestamp(last, dialect),
            "touches_hidden": source in hidden_ids or target in hidden_ids,
        }
        for edge_id, source, target, kind, direct, masking, description, job_namespace, job_name, first, last
        in _json(edge_rows, dialect)
    ]


def lineage_graph_restricted_columns(graph: Graph) -> list[tuple[Dataset, list[str]]]:
    """``lineage_restricted_columns`` for a graph: the Restricted columns it shows the reader, by
    dataset (loaded in one query, and only when there are some)."""
    names: dict[int, set[str]] = {}
    for node in graph.nodes:
        column = node["column"]
        if node["kind"] == NodeKind.COLUMN and not node["hidden"] and column is not None \
                and column["sensitivity"] >= Sensitivity.RESTRICTED:
            names.setdefault(node["dataset_id"], set()).add(node["name"])
    if not names:
        return []
    datasets = Dataset.objects.in_bulk(list(names))
    return [(datasets[pk], sorted(columns)) for pk, columns in names.items() if pk in datasets]
