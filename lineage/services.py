"""Every write to the lineage graph: nodes, edges, originating sources and placeholders.

Registration calls ``lineage_dataset_registered`` in its own transaction; the OpenLineage
endpoint writes through ``lineage_edges_upsert``. Both end with an incremental
sensitivity refresh of what they touched.
"""

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from access import policies
from catalog.models import Column, Dataset, StoreKind
from lineage.models import REGISTRATION_EDGE_KINDS, Edge, EdgeKind, EdgeLevel, Job, Node, NodeKind
from lineage.sensitivity import sensitivity_refresh

# ``<kind>:<name>`` kinds that name a kind of store, so the source may be a registered dataset.
ORIGIN_KIND_TO_STORE_KIND = {
    "transactional": StoreKind.TRANSACTIONAL,
    "oltp": StoreKind.TRANSACTIONAL,
    "analytical": StoreKind.ANALYTICAL,
    "warehouse": StoreKind.ANALYTICAL,
    "object": StoreKind.OBJECT,
    "stream": StoreKind.STREAM,
    "mlmodel": StoreKind.ML_MODEL,
    "ml_model": StoreKind.ML_MODEL,
    "model": StoreKind.ML_MODEL,
}


@dataclass(frozen=True)
class EdgeSpec:
    source_id: int
    target_id: int
    level: str
    kind: str
    direct: bool = True
    masking: bool = False
    description: str = ""
    job_id: int | None = None


def dataset_nodes_ensure(datasets, *, effective=None) -> dict[int, Node]:
    """The lineage node of each dataset, created where missing; keyed by dataset id.

    ``effective``: the effective sensitivity of new nodes by dataset id, where the caller knows it
    (the highest of their column nodes'; ``lineage.sensitivity`` keeps it up to date after that)."""
    datasets = {dataset.pk: dataset for dataset in datasets}
    if not datasets:
        return {}
    effective = effective or {}
    found = {node.dataset_id: node for node in Node.objects.filter(kind=NodeKind.DATASET, dataset_id__in=datasets)}
    missing = [
        Node(kind=NodeKind.DATASET, dataset=dataset, name=dataset.qualified_name,
             effective_sensitivity=effective.get(pk))
        for pk, dataset in datasets.items()
        if pk not in found
    ]
    if missing:
        Node.objects.bulk_create(missing, ignore_conflicts=True)
        found = {node.dataset_id: node for node in Node.objects.filter(kind=NodeKind.DATASET, dataset_id__in=datasets)}
    return found


def column_nodes_ensure(dataset: Dataset, names=None, *, columns=None) -> dict[str, Node]:
    """Column nodes of a dataset keyed by lower-cased name, created where missing and
    linked to the catalog's column of that name where there is one.

    ``names`` limits the result (and creation) to those columns; by default every current
    column of the dataset gets a node. ``columns`` are the dataset's columns, if loaded.
    """
    columns = {column.name.lower(): column for column in (dataset.columns.all() if columns is None else columns)}
    wanted = {name.lower(): name for name in (names if names is not None else [c.name for c in columns.values()])}
    existing = Node.objects.filter(kind=NodeKind.COLUMN, dataset=dataset)
    nodes = {node.name.lower(): node for node in existing}
    missing = [
        Node(kind=NodeKind.COLUMN, dataset=dataset, name=columns[key].name if key in columns else name, column=columns.get(key))
        for key, name in wanted.items()
        if key not in nodes
    ]
    if missing:
        Node.objects.bulk_create(missing, ignore_conflicts=True)
        nodes = {node.name.lower(): node for node in Node.objects.filter(kind=NodeKind.COLUMN, dataset=dataset)}
    relinked = []
    for key, node in nodes.items():
        column = columns.get(key)
        column_id = column.pk if column else None
        if node.column_id != column_id:
            node.column_id = column_id
            relinked.append(node)
    if relinked:
        # A node gives up its column before another takes it (names differing only in case).
        Node.objects.filter(pk__in=[n.pk for n in relinked]).update(column=None)
        Node.objects.bulk_update([n for n in relinked if n.column_id], ["column"])
    return {key: node for key, node in nodes.items() if key in wanted}


def source_nodes_ensure(pairs) -> dict[tuple[str, str], Node]:
    """External source nodes for ``(kind, name)`` pairs, keyed by ``(kind, name.lower())``."""
    pairs = {(kind, name.lower()): (kind, name) for kind, name in pairs}
    if not pairs:
        return {}

    def load():
        query = Q()
        for kind, lowered in pairs:
            query |= Q(source_kind=kind, name__iexact=lowered)
        return {(node.source_kind, node.name.lower()): node for node in Node.objects.filter(query, kind=NodeKind.SOURCE)}

    found = load()
    missing = [
        Node(kind=NodeKind.SOURCE, source_kind=kind, name=name) for key, (kind, name) in pairs.items() if key not in found
    ]
    if missing:
        Node.objects.bulk_create(missing, ignore_conflicts=True)
        found = load()
    return found


def lineage_edges_upsert(specs, *, seen_at=None, new_targets: bool = False) -> set[int]:
    """Create edges, or move ``last_seen`` (never backwards) on those already known.

    ``new_targets``: every target node was created in this transaction, so no edge into it is
    known yet and none is looked for.

    Returns the ids of the target nodes of edges that are new or changed, for the
    sensitivity refresh.
    """
    seen_at = seen_at or timezone.now()
    return lineage_edges_fold([(spec, seen_at) for spec in specs], new_targets=new_targets)


def lineage_edges_fold(timed_specs, *, new_targets: bool = False) -> set[int]:
    """:func:`lineage_edges_upsert` for edges seen at different times (the events of a batch):
    ``(EdgeSpec, seen_at)`` pairs in the order they were seen. The result is that of applying
    them one by one: each edge keeps the attributes of its latest sighting, ``first_seen`` the
    earliest, ``last_seen`` the latest. A constant number of statements per 1,000 edges.
    """
    merged = {}  # key -> [spec of the latest sighting, first, last]
    for spec, seen_at in timed_specs:
        if spec.source_id == spec.target_id:
            continue
        key = (spec.source_id, spec.target_id, spec.kind)
        known = merged.get(key)
        if known is None:
            merged[key] = [spec, seen_at, seen_at]
            continue
        if seen_at >= known[2]:
            known[0], known[2] = spec, seen_at
        known[1] = min(known[1], seen_at)
    if not merged:
        return set()
    existing = {} if new_targets else _edges_by_key(sorted(merged))
    to_create, to_update, touched = [], [], set()
    for key in sorted(merged):
        spec, first, last = merged[key]
        edge = existing.get(key)
        if edge is None:
            to_create.append(
                Edge(
                    source_id=spec.source_id, target_id=spec.target_id, level=spec.level, kind=spec.kind,
                    direct=spec.direct, masking=spec.masking, description=spec.description[:500],
                    job_id=spec.job_id, first_seen=first, last_seen=last,
                )
            )
            touched.add(spec.target_id)
            continue
        before = (edge.direct, edge.masking, edge.description, edge.job_id, edge.first_seen, edge.last_seen)
        if last >= edge.last_seen:
            if edge.direct != spec.direct or edge.masking != spec.masking:
                touched.add(spec.target_id)
            edge.direct, edge.masking, edge.description = spec.direct, spec.masking, spec.description[:500]
            edge.job_id, edge.last_seen = spec.job_id or edge.job_id, last
        edge.first_seen = min(edge.first_seen, first)
        if before != (edge.direct, edge.masking, edge.description, edge.job_id, edge.first_seen, edge.last_seen):
            to_update.append(edge)
    if to_create:
        Edge.objects.bulk_create(to_create, ignore_conflicts=True, batch_size=1000)
    if to_update:
        _edges_write(to_update)
    return touched


def _edges_by_key(keys, chunk: int = 1000) -> dict:
    """Known edges for ``(source_id, target_id, kind)`` keys: one join to a VALUES list per chunk."""
    table = Edge._meta.db_table
    columns = "id, source_id, target_id, kind, direct, masking, description, job_id, first_seen, last_seen"
    found = {}
    for start in range(0, len(keys), chunk):
        part = keys[start:start + chunk]
        params = [value for key in part for value in key]
        values = ", ".join(["(%s, %s, %s)"] * len(part))
        query = (f"SELECT {', '.join('e.' + c.strip() for c in columns.split(','))} FROM {table} e "
                 f"JOIN (VALUES {values}) AS v ON e.source_id = v.column1 AND e.target_id = v.column2 "
                 f"AND e.kind = v.column3")
        for edge in Edge.objects.raw(query, params):
            found[(edge.source_id, edge.target_id, edge.kind)] = edge
    return found


def _edges_write(edges, chunk: int = 1000) -> None:
    """New attributes and times of known edges: one ``UPDATE ... FROM (VALUES ...)`` per chunk on
    PostgreSQL (``bulk_update`` builds a CASE per row and field); ``bulk_update`` elsewhere."""
    if connection.vendor != "postgresql":
        Edge.objects.bulk_update(edges, ["direct", "masking", "description", "job", "first_seen", "last_seen"],
                                 batch_size=chunk)
        return
    table = Edge._meta.db_table
    row = ("(CAST(%s AS bigint), CAST(%s AS boolean), CAST(%s AS boolean), CAST(%s AS varchar), "
           "CAST(%s AS bigint), CAST(%s AS timestamptz), CAST(%s AS timestamptz))")
    with connection.cursor() as cursor:
        for start in range(0, len(edges), chunk):
            part = edges[start:start + chunk]
            params = [value for edge in part for value in (
                edge.pk, edge.direct, edge.masking, edge.description, edge.job_id, edge.first_seen, edge.last_seen)]
            cursor.execute(
                f"""UPDATE {table} SET direct = v.direct, masking = v.masking, description = v.description,
                           job_id = v.job_id, first_seen = v.first_seen, last_seen = v.last_seen
                    FROM (VALUES {", ".join([row] * len(part))})
                         AS v(id, direct, masking, description, job_id, first_seen, last_seen)
                    WHERE {table}.id = v.id""",
                params,
            )


def _origin_candidates(pairs) -> dict[tuple[str, str], Dataset]:
    """The registered dataset each ``(kind, name)`` originating source names, where exactly one does.

    ``transactional:Reviews`` matches a dataset named ``Reviews`` (or ``schema.Reviews``, or
    its qualified name) in a store of kind transactional. Ambiguous names stay unmatched.
    """
    query = Q()
    for kind, name in pairs:
        store_kind = ORIGIN_KIND_TO_STORE_KIND.get(kind)
        if store_kind is None:
            continue
        by_name = Q(name__iexact=name) | Q(qualified_name__iexact=name)
        if "." in name:
            schema, _, short = name.rpartition(".")
            by_name |= Q(schema__iexact=schema, name__iexact=short)
        query |= Q(store__kind=store_kind) & by_name
    if not query:
        return {}
    candidates = list(Dataset.objects.filter(query).select_related("store").prefetch_related("columns"))
    matched = {}
    for kind, name in pairs:
        store_kind = ORIGIN_KIND_TO_STORE_KIND.get(kind)
        lowered = name.lower()
        hits = [
            dataset for dataset in candidates
            if dataset.store.kind == store_kind
            and lowered in {dataset.name.lower(), dataset.registration_name.lower(), dataset.qualified_name.lower()}
        ]
        exact = [dataset for dataset in hits if dataset.qualified_name.lower() == lowered]
        if len(exact) == 1 or len(hits) == 1:
            matched[(kind, lowered)] = (exact or hits)[0]
    return matched


def _origin_edges_sync(dataset: Dataset, *, columns=None, new: bool = False) -> tuple[set[int], list[int]]:
    """Make the edges that come from the dataset's originating sources match its columns.

    Returns the ids of nodes whose inflow may have changed, and of the dataset's column nodes.
    """
    all_columns = list(dataset.columns.all()) if columns is None else list(columns)
    if new:  # nothing can point at a dataset created in this transaction: insert its nodes at once
        dataset_node, *created = Node.objects.bulk_create(
            [Node(kind=NodeKind.DATASET, dataset=dataset, name=dataset.qualified_name)]
            + [Node(kind=NodeKind.COLUMN, dataset=dataset, name=column.name, column=column)
               for column in {column.name.lower(): column for column in all_columns}.values()]
        )
        column_nodes = {node.name.lower(): node for node in created}
    else:
        dataset_node = dataset_nodes_ensure([dataset])[dataset.pk]
        column_nodes = column_nodes_ensure(dataset, columns=all_columns)
    columns = [c for c in all_columns if c.originating_source_kind and c.originating_source_name]
    pairs = {(c.originating_source_kind, c.originating_source_name) for c in columns}
    matched = _origin_candidates(pairs)
    matched = {key: source for key, source in matched.items() if source.pk != dataset.pk}
    placeholders = source_nodes_ensure(
        {(kind, name) for kind, name in pairs if (kind, name.lower()) not in matched}
    )
    source_dataset_nodes = dataset_nodes_ensure(matched.values())
    source_column_nodes = {}
    for source in {source.pk: source for source in matched.values()}.values():
        names = [c.name for c in columns if matched.get((c.originating_source_kind, c.originating_source_name.lower())) == source]
        available = {column.name.lower() for column in source.columns.all()}
        source_column_nodes[source.pk] = column_nodes_ensure(source, [n for n in names if n.lower() in available])

    specs = []
    for column in columns:
        key = (column.originating_source_kind, column.originating_source_name.lower())
        kind = EdgeKind.MODEL_OUTPUT if ORIGIN_KIND_TO_STORE_KIND.get(key[0]) == StoreKind.ML_MODEL else EdgeKind.ORIGIN
        target = column_nodes[column.name.lower()]
        source = matched.get(key)
        if source is not None:
            upstream_dataset = source_dataset_nodes[source.pk]
            upstream_column = source_column_nodes[source.pk].get(column.name.lower())
            upstream = upstream_column or upstream_dataset
        else:
            upstream_dataset = upstream = placeholders[key]
        specs.append(EdgeSpec(upstream.pk, target.pk, EdgeLevel.COLUMN, kind))
        specs.append(EdgeSpec(upstream_dataset.pk, dataset_node.pk, EdgeLevel.DATASET, kind))

    wanted = {(spec.source_id, spec.target_id, spec.kind) for spec in specs}
    own_node_ids = [dataset_node.pk, *[node.pk for node in column_nodes.values()]]
    stale = [] if new else [
        edge for edge in Edge.objects.filter(target_id__in=own_node_ids, kind__in=REGISTRATION_EDGE_KINDS)
        if (edge.source_id, edge.target_id, edge.kind) not in wanted
    ]
    touched = {edge.target_id for edge in stale}
    if stale:
        Edge.objects.filter(pk__in=[edge.pk for edge in stale]).delete()
        # A placeholder nothing points from any more is dropped.
        Node.objects.filter(
            pk__in={edge.source_id for edge in stale}, kind=NodeKind.SOURCE, out_edges__isnull=True
        ).delete()
    touched |= lineage_edges_upsert(specs, new_targets=new)
    return touched, [node.pk for node in column_nodes.values()]


def _placeholders_resolve(dataset: Dataset) -> set[int]:
    """Replace placeholders that name ``dataset`` by the dataset itself.

    Returns the ids of nodes whose inflow may have changed.
    """
    kinds = [kind for kind, store_kind in ORIGIN_KIND_TO_STORE_KIND.items() if store_kind == dataset.store.kind]
    names = {dataset.name.lower(), dataset.registration_name.lower(), dataset.qualified_name.lower()}
    query = Q()
    for name in names:
        query |= Q(name__iexact=name)
    placeholders = list(Node.objects.filter(query, kind=NodeKind.SOURCE, source_kind__in=kinds))
    if not placeholders:
        return set()
    waiting = list(
Dataset.objects.filter(lineage_nodes__in_edges__source__in=placeholders).distinct()
    )
    Node.objects.filter(pk__in=[node.pk for node in placeholders]).delete()
    touched = set()
    for other in waiting:
        other_touched, other_columns = _origin_edges_sync(other)
        touched |= other_touched | set(other_columns)
    return touched


def lineage_dataset_registered(*, dataset: Dataset, columns=None, new: bool = False) -> None:
    """Bring lineage up to date after a dataset got a new version: its column nodes, the
    edges from its columns' originating sources, placeholders that were waiting for it,
    and the effective sensitivity of everything downstream.

    ``columns``: the dataset's columns, if the caller has them. ``new``: the dataset was created
    in this transaction, so it has no nodes and no edges yet: they are inserted without looking
    for existing ones first.

    Runs inside the registration's transaction.
    """
    touched, own_columns = _origin_edges_sync(dataset, columns=columns, new=new)
    touched |= _placeholders_resolve(dataset)
    sensitivity_refresh(node_ids=touched | set(own_columns))


_UNREAD = object()


def job_ensure(*, principal=None, namespace: str, name: str, description: str | None = None,
               existing=_UNREAD) -> Job:
    """The job of a namespace and name, made for ``principal`` if new. Only its sender (or an admin)
    changes it: another account gets ``PermissionDenied`` and nothing is written.

    ``existing``: the job's row (or None: there is none) when the caller read it already (the
    OpenLineage fold reads a batch's jobs in one query)."""
    sender = principal if getattr(principal, "pk", None) else None
    defaults = {"description": description or "", "sent_by": sender}
    if existing is _UNREAD:
        job, created = Job.objects.get_or_create(namespace=namespace, name=name, defaults=defaults)
    elif existing is None:
        # A concurrent insert of the same job fails on the unique constraint: the caller retries.
        job, created = Job.objects.create(namespace=namespace, name=name, **defaults), True
    else:
        job, created = existing, False
    if not created and principal is not None:
        if not policies.can_send_lineage_for(principal, job.sent_by_id):
            raise PermissionDenied(f"Job {namespace}/{name} is sent by another account; only that account "
                                   "sends events for it.")
        if job.sent_by_id is None and sender is not None:
            job.sent_by = sender  # a job from before senders were kept: its next sender keeps it
            job.save(update_fields=["sent_by", "updated_at"])
    if not created and description is not None and job.description != description:
        job.description = description
        job.save(update_fields=["description", "updated_at"])
    return job



def lineage_datasets_synced(*, datasets, new_ids=frozenset()) -> None:
    """Batch counterpart of :func:`lineage_dataset_registered` for what a warehouse sync wrote.

    New datasets that nothing waits for (no placeholder names them, no originating source on
    their columns) get their dataset and column nodes in a few bulk statements; the others go
    through the per-dataset path, which also rewires placeholders and originating sources.
    """
    datasets = list(datasets)
    if not datasets:
        return
    columns = {}
    for column in Column.objects.filter(dataset__in=datasets):
        columns.setdefault(column.dataset_id, []).append(column)
    waiting_names = _placeholder_names(datasets)
    fast, slow = [], []
    for dataset in datasets:
        own = columns.get(dataset.pk, [])
        sourced = any(c.originating_source_kind for c in own)
        named = {dataset.name.lower(), dataset.registration_name.lower(), dataset.qualified_name.lower()} & waiting_names
        (fast if dataset.pk in new_ids and not sourced and not named else slow).append(dataset)
    # A fast dataset's node is new, and its effective sensitivity the highest of its columns' own.
    dataset_nodes_ensure(datasets, effective={
        dataset.pk: max((column.sensitivity for column in columns[dataset.pk]), default=None)
        for dataset in fast if dataset.pk in columns
    })
    # Nothing flows into a new dataset nobody waits for, so its columns' effective sensitivity
    # is their own and nothing downstream needs a refresh.
    new_nodes = [
        Node(kind=NodeKind.COLUMN, dataset=dataset, name=column.name, column=column,
             effective_sensitivity=column.sensitivity)
        for dataset in fast
        for column in columns.get(dataset.pk, [])
    ]
    Node.objects.bulk_create(new_nodes, ignore_conflicts=True, batch_size=1000)
    touched = set()
    for dataset in slow:
        other_touched, own_columns = _origin_edges_sync(dataset)
        touched |= other_touched | set(own_columns) | _placeholders_resolve(dataset)
    sensitivity_refresh(node_ids=touched)


def _placeholder_names(datasets) -> set[str]:
    """Lower-cased names of placeholders that could stand for any of these datasets (one query)."""
    store_kinds = {dataset.store.kind for dataset in datasets}
    kinds = [kind for kind, store_kind in ORIGIN_KIND_TO_STORE_KIND.items() if store_kind in store_kinds]
    if not kinds:
        return set()
    names = set()
    for dataset in datasets:
        names |= {dataset.name.lower(), dataset.registration_name.lower(), dataset.qualified_name.lower()}
    found = Node.objects.filter(kind=NodeKind.SOURCE, source_kind__in=kinds).values_list("name", flat=True)
    return {name.lower() for name in found if name.lower() in names}


def lineage_view_edges_sync(*, view: Dataset, lineage, resolve_schema=lambda schema: schema) -> None:
    """Make the view edges into ``view`` match its parsed definition (``lineage.sql.ViewLineage``).

    Tables are looked up in the view's store (``resolve_schema`` maps a warehouse schema to
    the catalog's); tables the catalog does not know are skipped. Edges of kind ``view``
    into the view or any of its column nodes that the definition no longer gives are removed,
    those into a column the view no longer has included; edges of other kinds (OpenLineage,
    originating sources) are left as they are.
    """
    store = view.store
    wanted_tables = {
        Dataset.build_qualified_name(store.name, resolve_schema(schema), table).lower(): (schema, table)
        for schema, table in lineage.tables
    }
    query = Q()
    for name in wanted_tables:
        query |= Q(qualified_name__iexact=name)
    sources = {
        d.qualified_name.lower(): d for d in Dataset.objects.filter(query, store=store).prefetch_related("columns")
    } if wanted_tables else {}
    by_table = {key: sources[name] for name, key in wanted_tables.items() if name in sources}
    by_table = {key: dataset for key, dataset in by_table.items() if dataset.pk != view.pk}

    nodes = dataset_nodes_ensure([view, *by_table.values()])
    view_node = nodes[view.pk]
    specs = [EdgeSpec(nodes[d.pk].pk, view_node.pk, EdgeLevel.DATASET, EdgeKind.VIEW) for d in by_table.values()]
    view_columns = column_nodes_ensure(view)
    for dataset in {d.pk: d for d in by_table.values()}.values():
        names = {
            source.column for sources_of in lineage.columns.values() for source in sources_of
            if by_table.get((source.schema, source.table)) == dataset
        }
        available = {column.name.lower(): column.name for column in dataset.columns.all()}
        upstream = column_nodes_ensure(dataset, [available[n.lower()] for n in names if n.lower() in available])
        for view_column, sources_of in lineage.columns.items():
            target = view_columns.get(view_column.lower())
            if target is None:
                continue
            for source in sources_of:
                if by_table.get((source.schema, source.table)) != dataset or source.column.lower() not in upstream:
                    continue
                specs.append(EdgeSpec(
                    upstream[source.column.lower()].pk, target.pk, EdgeLevel.COLUMN, EdgeKind.VIEW,
                    description=f"{EdgeKind(source.kind).label} in the view definition",
                ))
    wanted = {(spec.source_id, spec.target_id) for spec in specs}
    # Into every column node of the view, not only its current columns': a column the view was
    # redefined without keeps its node (its history), but no longer an edge from the definition.
    into_view = Q(target_id=view_node.pk) | Q(target__kind=NodeKind.COLUMN, target__dataset=view)
    stale = [
        edge.pk for edge in Edge.objects.filter(into_view, kind=EdgeKind.VIEW)
        if (edge.source_id, edge.target_id) not in wanted
    ]
    touched = set()
    if stale:
        touched |= set(Edge.objects.filter(pk__in=stale).values_list("target_id", flat=True))
        Edge.objects.filter(pk__in=stale).delete()
    touched |= lineage_edges_upsert(specs)
    sensitivity_refresh(node_ids=touched)
