"""Effective sensitivity: the classification that follows the data down column edges.

For a column node ``n`` with its own (declared) sensitivity and protection:

- what an upstream column ``u`` passes on is its effective sensitivity, at most ``Regular``
  when ``u`` itself is protected (masked, tokenized, hashed, encrypted);
- a masking edge lowers what arrives through it to at most ``Regular`` as well;
- ``inflow(n)`` is the highest of what arrives over direct column edges, and
  ``effective(n) = max(own(n), inflow(n))`` (the inflow counted at most ``Regular`` when
  ``n`` is itself protected);
- ``n`` is a violation when it is unprotected and declared lower than what arrives over
  edges that no protection step touched.

A column of a dataset nobody has classified (lineage discovered it; its columns, if any, came
from a schema facet, not from a person) has no declared level: its own level is the configured
default tier (``CATALOG_UNCLASSIFIED_TIER``), never Public, which is what the access decision
gives it; more flowing in unprotected is a violation like any other.

Indirect edges (filters, joins) shape rows, not values, so nothing flows over them.

The refresh is incremental: it takes the nodes a change touched, finds what lies
downstream of them with one recursive query, and recomputes only those, from their own
values and the stored values of their other upstream columns, in a constant number of
queries. Starting the closure from its own values (not the stored ones) means a lowered
classification also lowers everything downstream, cycles included.
"""

import contextlib
import threading
from collections import defaultdict, deque

from django.db import connection

from catalog.models import Column, Dataset
from catalog.vocabulary import Protection, Sensitivity, unclassified_tier
from lineage.models import Edge, EdgeLevel, Node, NodeKind

PROTECTED_CAP = Sensitivity.REGULAR

_CLOSURE = """
WITH RECURSIVE closure(id) AS (
    SELECT id FROM {node} WHERE id IN ({seeds}) AND kind = %s
    UNION
    SELECT e.target_id FROM {edge} e JOIN closure c ON e.source_id = c.id
    WHERE e.level = %s AND e.direct = %s
)
"""


def _closure_sql(seed_count: int) -> str:
    return _CLOSURE.format(
        node=Node._meta.db_table, edge=Edge._meta.db_table, seeds=", ".join(["%s"] * seed_count)
    )


_deferral = threading.local()


@contextlib.contextmanager
def sensitivity_refresh_deferred():
    """Inside this block ``sensitivity_refresh`` only collects its nodes; they are refreshed in one
    pass when the block ends without an error (the OpenLineage fold registers many datasets in a
    batch, each registration asking for a refresh). Nested blocks join the outer one."""
    if getattr(_deferral, "seeds", None) is not None:
        yield
        return
    _deferral.seeds = set()
    try:
        yield
        seeds, _deferral.seeds = _deferral.seeds, None
        sensitivity_refresh(node_ids=seeds)
    finally:
        _deferral.seeds = None


def sensitivity_refresh(*, node_ids) -> int:
    """Recompute effective sensitivity and violations for ``node_ids`` and everything
    downstream of them. Returns how many nodes changed (0 inside ``sensitivity_refresh_deferred``,
    which refreshes them when it ends)."""
    seeds = sorted({int(pk) for pk in node_ids if pk is not None})
    if not seeds:
        return 0
    if getattr(_deferral, "seeds", None) is not None:
        _deferral.seeds.update(seeds)
        return 0
    closure_params = [*seeds, NodeKind.COLUMN, EdgeLevel.COLUMN, True]
    node_table, column_table, edge_table = Node._meta.db_table, Column._meta.db_table, Edge._meta.db_table
    dataset_table = Dataset._meta.db_table
    with connection.cursor() as cursor:
        # Each row also carries its dataset's node and what that node stores, and the highest
        # effective sensitivity of the dataset's other current columns (those outside the closure
        # keep theirs): enough to keep the dataset node's own value, the highest of its columns',
        # up to date in the same write, without another query.
        cursor.execute(
            _closure_sql(len(seeds))
            + f""", closure_datasets(dataset_id) AS (
                      SELECT DISTINCT n.dataset_id FROM closure JOIN {node_table} n ON n.id = closure.id
                  ),
                  others(dataset_id, value) AS (
                      SELECT m.dataset_id, max(m.effective_sensitivity) FROM {node_table} m
                      WHERE m.dataset_id IN (SELECT dataset_id FROM closure_datasets) AND m.kind = %s
                        AND m.column_id IS NOT NULL AND m.id NOT IN (SELECT id FROM closure)
                      GROUP BY m.dataset_id
                  )
                  SELECT n.id, n.column_id, c.sensitivity, c.protection, n.effective_sensitivity,
                         n.unprotected_inflow, n.sensitivity_from_id, n.is_violation, d.classified,
                         n.dataset_id, dn.id, dn.effective_sensitivity, o.value
                  FROM closure JOIN {node_table} n ON n.id = closure.id
                  LEFT JOIN {column_table} c ON c.id = n.column_id
                  LEFT JOIN {dataset_table} d ON d.id = n.dataset_id
                  LEFT JOIN {node_table} dn ON dn.dataset_id = n.dataset_id AND dn.kind = %s
                  LEFT JOIN others o ON o.dataset_id = n.dataset_id
                  WHERE n.kind = %s""",
            [*closure_params, NodeKind.COLUMN, NodeKind.DATASET, NodeKind.COLUMN],
        )
        stored = {row[0]: row for row in cursor.fetchall()}
        cursor.execute(
            _closure_sql(len(seeds))
            + f"""SELECT e.source_id, e.target_id, e.masking, s.effective_sensitivity, sc.sensitivity, sc.protection,
                         sd.classified
                  FROM closure JOIN {edge_table} e ON e.target_id = closure.id
                  JOIN {node_table} s ON s.id = e.source_id
                  LEFT JOIN {column_table} sc ON sc.id = s.column_id
                  LEFT JOIN {dataset_table} sd ON sd.id = s.dataset_id
                  WHERE e.level = %s AND e.direct = %s AND s.kind = %s""",
            [*closure_params, EdgeLevel.COLUMN, True, NodeKind.COLUMN],
        )
        edge_rows = cursor.fetchall()

    default_tier = unclassified_tier()

    def declared(sensitivity, classified) -> int:
        # Nobody declared an unclassified dataset's columns: they count as the default tier.
        if classified is not None and not classified:
            return default_tier
        return sensitivity if sensitivity is not None else Sensitivity.PUBLIC

    own = {pk: declared(row[2], row[8]) for pk, row in stored.items()}
    protected = {pk: bool(row[3]) and row[3] != Protection.NONE for pk, row in stored.items()}
    outside = {}  # upstream columns not downstream of the change keep their stored values
    incoming = defaultdict(list)
    downstream = defaultdict(list)
    for source_id, target_id, masking, source_effective, source_own, source_protection, source_classified in edge_rows:
        incoming[target_id].append((source_id, bool(masking)))
        if source_id in stored:
            downstream[source_id].append(target_id)
        else:
            value = source_effective if source_effective is not None else declared(source_own, source_classified)
            outside[source_id] = (value, bool(source_protection) and source_protection != Protection.NONE)

    effective = dict(own)

    def arriving(target_id):
        for source_id, masking in incoming[target_id]:
            if source_id in stored:
                value, source_protected = effective[source_id], protected[source_id]
            else:
                value, source_protected = outside[source_id]
            if source_protected or masking:
                yield source_id, min(value, PROTECTED_CAP), True
            else:
                yield source_id, value, False

    def computed(pk):
        inflow = max((value for _, value, _ in arriving(pk)), default=None)
        if inflow is None:
            return own[pk]
        if protected[pk]:
            inflow = min(inflow, PROTECTED_CAP)
        return max(own[pk], inflow)

    # Values only rise from each node's own level, so this reaches the least fixpoint.
    queue, queued = deque(stored), set(stored)
    while queue:
        pk = queue.popleft()
        queued.discard(pk)
        value = computed(pk)
        if value != effective[pk]:
            effective[pk] = value
            for target_id in downstream[pk]:
                if target_id not in queued:
                    queue.append(target_id)
                    queued.add(target_id)

    changed = []
    for pk, row in stored.items():
        contributions = sorted(arriving(pk), key=lambda item: (-item[1], item[0]))
        unprotected = [item for item in contributions if not item[2]]
        unprotected_inflow = unprotected[0][1] if unprotected else None
        has_column = row[1] is not None
        is_violation = bool(
            has_column and not protected[pk] and unprotected_inflow is not None and unprotected_inflow > own[pk]
        )
        if is_violation:
            sensitivity_from = unprotected[0][0]
        elif contributions and contributions[0][1] >= effective[pk] > Sensitivity.PUBLIC:
            # Upstream brings at least this level: the path leads to where it came from.
            sensitivity_from = contributions[0][0]
        else:
            sensitivity_from = None
        new = (effective[pk], unprotected_inflow, sensitivity_from, is_violation)
        if new != tuple(row[4:8]):
            changed.append(
                Node(
                    pk=pk,
                    effective_sensitivity=new[0],
                    unprotected_inflow=new[1],
                    sensitivity_from_id=new[2],
                    is_violation=new[3],
                )
            )
    changed_datasets = _dataset_nodes_changed(stored, effective)
    _nodes_write(changed, changed_datasets)
    return len(changed)


def _dataset_nodes_changed(stored: dict, effective: dict) -> list[tuple[int, int | None]]:
    """``(dataset node id, new effective sensitivity)`` for the datasets of the closure whose
    highest current-column value moved: the new values of their columns in the closure, the stored
    ones of the others (``stored`` rows carry them)."""
    highest: dict[int, tuple[int, int | None, int | None]] = {}  # dataset node -> (stored, others, new)
    for pk, row in stored.items():
        column_id, dataset_node_id, dataset_stored, others = row[1], row[10], row[11], row[12]
        if dataset_node_id is None:
            continue
        _, _, value = highest.setdefault(dataset_node_id, (dataset_stored, others, others))
        if column_id is not None and (value is None or effective[pk] > value):
            highest[dataset_node_id] = (dataset_stored, others, effective[pk])
    return [(pk, new) for pk, (old, _others, new) in highest.items() if new != old]


def _nodes_write(changed: list[Node], datasets: list[tuple[int, int | None]] = (), chunk: int = 500) -> None:
    """Write new values, one ``WITH v AS (VALUES ...) UPDATE ... FROM v`` per chunk of nodes (PostgreSQL, and
    SQLite since 3.33). Django's ``bulk_update`` builds a CASE per row and field, which costs
    seconds of Python for a few thousand nodes. ``datasets``: ``(dataset node id, effective)`` pairs,
    written in the same statements (only their effective sensitivity: ``whole`` is false)."""
    table = Node._meta.db_table
    row = ("(CAST(%s AS integer), CAST(%s AS integer), CAST(%s AS integer), CAST(%s AS integer), CAST(%s AS boolean),"
           " CAST(%s AS boolean))")
    values = [
        (node.pk, node.effective_sensitivity, node.unprotected_inflow, node.sensitivity_from_id, node.is_violation, True)
        for node in changed
    ]
    chunks = [values[start:start + chunk] for start in range(0, len(values), chunk)] or [[]]
    # The datasets ride with the last chunk: as many statements as the column nodes alone need.
    chunks[-1] += [(pk, value, None, None, False, False) for pk, value in datasets]
    with connection.cursor() as cursor:
        for rows in chunks:
            if not rows:
                continue
            cursor.execute(
                f"""WITH v(id, effective, inflow, source, violation, whole) AS (VALUES {", ".join([row] * len(rows))})
                    UPDATE {table} SET effective_sensitivity = v.effective,
                           unprotected_inflow = CASE WHEN v.whole THEN v.inflow ELSE {table}.unprotected_inflow END,
                           sensitivity_from_id = CASE WHEN v.whole THEN v.source ELSE {table}.sensitivity_from_id END,
                           is_violation = CASE WHEN v.whole THEN v.violation ELSE {table}.is_violation END
                    FROM v WHERE {table}.id = v.id""",
                [value for row_values in rows for value in row_values],
            )


def dataset_nodes_effective_fill() -> int:
    """Set every dataset node's effective sensitivity to the highest of its current columns' nodes,
    in one statement (``manage.py lineage_rebuild``; migration ``0005`` runs the same). The refresh
    keeps it so afterwards. Returns how many dataset nodes it wrote."""
    table = Node._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {table} SET effective_sensitivity = (
                    SELECT max(m.effective_sensitivity) FROM {table} m
                    WHERE m.dataset_id = {table}.dataset_id AND m.kind = %s AND m.column_id IS NOT NULL
                ) WHERE kind = %s""",
            [NodeKind.COLUMN, NodeKind.DATASET],
        )
        return cursor.rowcount
