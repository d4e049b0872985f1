"""Lineage benchmark: downstream walks over 100,000 datasets and 1,000,000 column edges, and
OpenLineage events/s.

    .venv/bin/python bench/lineage.py [-n/--datasets 100000] [--starts 200] [--events 500] [--markdown] [--explain]

A quick check: ``--datasets 2000 --starts 30 --events 30`` (under a minute); the full run
takes about six minutes on 2 cores, 35 seconds of it to build the graph.

What it does, in order (it stops by itself and only talks to 127.0.0.1):

1. Drops and recreates its own PostgreSQL database (default ``catalog_bench_lineage``),
   migrates it and, through the project's services, creates the default roles, four stores,
   a data engineer's service account and twenty owners.
2. Builds the graph with set-based SQL (COPY of a small plan, then ``INSERT ... SELECT`` over
   ``generate_series``), not the ORM: N datasets of 10 columns, each with a version, an
   owner and the job that builds it; a node per dataset and per column; about 10 column
   edges per dataset and the dataset edges they imply. Then ``VACUUM (ANALYZE)``, as
   autovacuum would leave a live database. The graph is a layered DAG (see ``graph_plan``).
3. Picks random start columns and datasets in the first half of the layers (so a depth-10
   walk has room to go ten hops) and, for depth 5 and 10, times the same downstream walk
   three ways, after an untimed warm-up pass: (a) one hand-written ``WITH RECURSIVE`` query
   returning the distinct nodes reached, (b) ``lineage_walk`` in-process, nodes and edges
   loaded as the API does, (c) the API over keep-alive HTTP, served by gunicorn with the
   production settings and a service token. Every walk's node count is checked against the
   hand-written query's (a walk the selector cut at its ``limit`` is counted as partial).
   Then counts the SQL queries of walks from the smallest to the largest (selector, and the
   whole API request in-process), and splits the time of the median and the largest walk
   between its queries and Python. ``--explain`` prints both walk queries' plans.
4. Sends N OpenLineage run events over HTTP (2 inputs with a schema facet, 1 output with a
   schema and a column lineage facet of 10 columns), then each job's next run, then the
   first events again (duplicates, nothing written); reports events/s per phase.

The server is stopped at the end, also on errors and Ctrl-C; the database is left for
inspection and dropped by the next run. Timings are only ever recorded here and in
docs/benchmarks.md, never asserted in tests.
"""

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Run as a script, bench/ comes first on sys.path and this file would shadow the lineage app.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.register import (  # noqa: E402 - the shared server and report helpers
    GUNICORN_WORKERS,
    HOST,
    REQUEST_TIMEOUT_SECONDS,
    BenchmarkError,
    Server,
    database_recreate,
    gunicorn_command,
    markdown_table,
    memory_gib,
    parse_database_url,
    percentile,
    plain_table,
    port_is_free,
    server_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_lineage"
DEFAULT_PORT = 8031
DEFAULT_INGEST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_ingest"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/1"

LAYERS = 20
# Each layer is this much larger than the one before: a few raw tables feed many derived ones.
LAYER_GROWTH = 1.2
# Share of each layer's datasets that others join (dimensions, reference tables): the fan-out.
SHARED_SHARE = 0.2
# A join partner comes from one of this many layers before.
JOIN_LOOKBACK = 4
COLUMN_EDGES_PER_DATASET = 10
DEPTHS = (5, 10)
SEED = 20261122

STORES = (  # name, kind, platform, first layer
    ("bench-raw", "transactional", "postgresql", 0),
    ("bench-lake", "object", "s3", 2),
    ("bench-warehouse", "analytical", "snowflake", 6),
    ("bench-marts", "analytical", "snowflake", 14),
)
OWNERS = 20
# name, type, sensitivity (0 Public .. 3 Restricted); every dataset has these ten columns.
COLUMNS = (
    ("customer_id", "INT64", 1),
    ("order_id", "INT64", 1),
    ("amount", "NUMERIC", 1),
    ("currency", "STRING", 0),
    ("status", "STRING", 0),
    ("created_at", "TIMESTAMP", 1),
    ("country", "STRING", 1),
    ("email", "STRING", 2),
    ("segment", "STRING", 1),
    ("loaded_at", "TIMESTAMP", 0),
)
SENSITIVITY_LABELS = ("Public", "Regular", "Sensitive", "Restricted")
# Column c of a dataset is fed by column c of its main parent for c < 9; the join key (0) and
# one looked-up attribute (8) also by the join partner, when there is one; loaded_at (9) by nothing.
MAIN_PARENT_COLUMNS = 9
JOINED_COLUMNS = (0, 8)

OL_SOURCE_NAMESPACE = "postgres://bench-oltp:5432"
OL_TARGET_NAMESPACE = "snowflake://bench-warehouse"
OL_JOB_NAMESPACE = "bench-pipelines"
OL_ORDER_TABLES = 50
OL_CUSTOMER_TABLES = 20
OL_START = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.timezone.utc)
OL_PATH = "/api/v1/lineage"


# --- the graph --------------------------------------------------------------------------------


def layer_sizes(count: int) -> list[int]:
    """Datasets per layer, growing by ``LAYER_GROWTH``, at least one each, summing to ``count``."""
    weights = [LAYER_GROWTH ** layer for layer in range(LAYERS)]
    sizes = [max(1, int(count * weight / sum(weights))) for weight in weights]
    sizes[-1] += count - sum(sizes)
    if sizes[-1] < 1:
        raise BenchmarkError(f"{count} datasets are too few for {LAYERS} layers.")
    return sizes


@dataclass
class GraphPlan:
    """Dataset ``i`` (0-based) is in ``layer[i]``; ``main[i]`` and ``join[i]`` are the indexes
    of the datasets it is built from (``None`` for none)."""

    sizes: list[int]
    firsts: list[int]
    layer: list[int]
    main: list[int | None]
    join: list[int | None]

    @property
    def count(self) -> int:
        return len(self.layer)

    def layer_range(self, layer: int) -> range:
        return range(self.firsts[layer], self.firsts[layer] + self.sizes[layer])


def graph_plan(count: int, rng: random.Random) -> GraphPlan:
    """A layered DAG shaped like a warehouse.

    Layer 0 holds raw tables. Every dataset of a later layer is built from one dataset of
    the layer just before, its main parent (columns 0-8 come from there); each dataset of
    that layer feeds at least one (a table nobody reads would end the pipeline), the rest
    pick one at random. About half of them also join a shared table: one of the first
    ``SHARED_SHARE`` datasets of one of the ``JOIN_LOOKBACK`` layers before (picked in
    proportion to their size), which brings the key and one attribute (columns 0 and 8).
    The share that joins is set so that the column edges come to 10 per dataset.
    """
    sizes = layer_sizes(count)
    firsts = [sum(sizes[:layer]) for layer in range(LAYERS)]
    non_roots = count - sizes[0]
    extra = COLUMN_EDGES_PER_DATASET * count - MAIN_PARENT_COLUMNS * non_roots
    join_share = min(1.0, max(0.0, extra / (len(JOINED_COLUMNS) * non_roots)))
    plan = GraphPlan(sizes=sizes, firsts=firsts, layer=[], main=[], join=[])
    for layer, size in enumerate(sizes):
        if layer == 0:
            plan.layer += [0] * size
            plan.main += [None] * size
            plan.join += [None] * size
            continue
        parents = plan.layer_range(layer - 1)
        unfed = list(parents)
        rng.shuffle(unfed)
        lookback = range(max(0, layer - JOIN_LOOKBACK), layer)
        for index in range(size):
            main = unfed[index] if index < len(unfed) else rng.randrange(parents.start, parents.stop)
            join = None
            if rng.random() < join_share:
                shared_layer = rng.choices(lookback, weights=[sizes[other] for other in lookback])[0]
                shared = plan.layer_range(shared_layer)
                join = rng.randrange(shared.start, shared.start + max(1, int(len(shared) * SHARED_SHARE)))
                if join == main:
                    join = None
            plan.layer.append(layer)
            plan.main.append(main)
            plan.join.append(join)
    return plan


def store_for_layer(layer: int) -> str:
    return [name for name, _kind, _platform, first in STORES if first <= layer][-1]


def version_columns() -> list[dict]:
    """The ten columns as a version stores them (canonical output form)."""
    return [
        {
            "name": name, "description": "", "mode": "REQUIRED" if position == 0 else "NULLABLE", "type": type_,
            "originatingSource": "", "sensitivity": SENSITIVITY_LABELS[sensitivity], "protection": "None",
        }
        for position, (name, type_, sensitivity) in enumerate(COLUMNS)
    ]


@dataclass
class BuildStep:
    name: str
    rows: int
    seconds: float


def psycopg_connect(config: dict, *, autocommit: bool = False):
    import psycopg

    return psycopg.connect(
        host=config["HOST"], port=config.get("PORT") or 5432, user=config.get("USER") or None,
        password=config.get("PASSWORD") or None, dbname=config["NAME"], autocommit=autocommit, connect_timeout=10,
    )


def graph_build(config: dict, plan: GraphPlan, *, store_ids: dict[str, int], owner_ids: list[int]) -> list[BuildStep]:
    """Write the plan with set-based SQL in one transaction; ids are derived from the plan index.

    Dataset ``i`` has id ``i + 1`` (so do its version, its job and its dataset node); its
    column ``c`` has id ``10 i + c + 1`` and node id ``N + 10 i + c + 1``.
    """
    from catalog.registration import schema_fingerprint

    n = plan.count
    width = len(COLUMNS)
    snapshots = version_columns()
    steps: list[BuildStep] = []
    now = dt.datetime.now(dt.timezone.utc)
    with psycopg_connect(config) as connection:
        cursor = connection.cursor()
        for table in ("catalog_dataset", "catalog_column", "lineage_node", "lineage_edge", "lineage_job"):
            if cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]:
                raise BenchmarkError(f"{table} is not empty after migrating: the ids of the build would clash.")
        # The rows are consistent by construction: skip the per-row foreign key triggers
        # (superuser only; the indexes and check constraints still apply).
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")

        def step(name: str, sql: str, params=None):
            started = time.perf_counter()
            cursor.execute(sql, params)
            steps.append(BuildStep(name, cursor.rowcount, time.perf_counter() - started))

        started = time.perf_counter()
        cursor.execute(
            "CREATE TEMP TABLE bench_plan (i int PRIMARY KEY, layer int NOT NULL, main int, joined int) ON COMMIT DROP"
        )
        with cursor.copy("COPY bench_plan (i, layer, main, joined) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((i, plan.layer[i], plan.main[i], plan.join[i]))
        cursor.execute(
            "CREATE TEMP TABLE bench_store (layer int PRIMARY KEY, store_id bigint, store_name text) ON COMMIT DROP"
        )
        with cursor.copy("COPY bench_store (layer, store_id, store_name) FROM STDIN") as copy:
            for layer in range(LAYERS):
                name = store_for_layer(layer)
                copy.write_row((layer, store_ids[name], name))
        cursor.execute("ANALYZE bench_plan")
        steps.append(BuildStep("plan (COPY)", n, time.perf_counter() - started))

        step("datasets", """
            INSERT INTO catalog_dataset (id, store_id, schema, name, qualified_name, description, status, tags,
                                         needs_review, sensitivity, current_version_id, created_at, updated_at,
                                         deprecated_by_sync, definition_fingerprint, classified)
            SELECT p.i + 1, s.store_id, format('layer%%s', lpad(p.layer::text, 2, '0')), format('t%%s', lpad(p.i::text, 6, '0')),
                   format('%%s.layer%%s.t%%s', s.store_name, lpad(p.layer::text, 2, '0'), lpad(p.i::text, 6, '0')),
                   '', 'active', '[]'::jsonb, false, %(sensitivity)s, p.i + 1, %(now)s, %(now)s, false, '', true
            FROM bench_plan p JOIN bench_store s ON s.layer = p.layer
        """, {"sensitivity": max(sensitivity for _, _, sensitivity in COLUMNS), "now": now})
        step("versions", """
            INSERT INTO catalog_datasetversion (id, dataset_id, number, declared_version, columns, fingerprint, diff,
                                                is_breaking, registered_by, registration_time, created_at)
            SELECT p.i + 1, p.i + 1, 1, '1', %(columns)s::jsonb, %(fingerprint)s, '{}'::jsonb, false,
                   'bench/lineage.py', %(now)s, %(now)s
            FROM bench_plan p
        """, {"columns": json.dumps(snapshots), "fingerprint": schema_fingerprint(snapshots), "now": now})
        cursor.execute("CREATE TEMP TABLE bench_column (c int PRIMARY KEY, name text, type text, sensitivity int) ON COMMIT DROP")
        with cursor.copy("COPY bench_column (c, name, type, sensitivity) FROM STDIN") as copy:
            for position, (name, type_, sensitivity) in enumerate(COLUMNS):
                copy.write_row((position, name, type_, sensitivity))
        step("columns", """
            INSERT INTO catalog_column (id, dataset_id, position, name, description, mode, type,
                                        originating_source_kind, originating_source_name, sensitivity, protection)
            SELECT %(width)s * p.i + k.c + 1, p.i + 1, k.c + 1, k.name, '', CASE WHEN k.c = 0 THEN 'REQUIRED' ELSE 'NULLABLE' END,
                   k.type, '', '', k.sensitivity, 'none'
            FROM bench_plan p CROSS JOIN bench_column k
        """, {"width": width})
        step("owners", """
            INSERT INTO catalog_dataset_owners (dataset_id, user_id)
            SELECT p.i + 1, (%(owners)s::bigint[])[1 + p.i %% %(count)s] FROM bench_plan p
        """, {"owners": owner_ids, "count": len(owner_ids)})
        step("jobs", """
            INSERT INTO lineage_job (id, namespace, name, description, processing_type, integration, job_type, sql,
                                     sql_dialect, created_at, updated_at)
            SELECT p.i + 1, 'bench-pipelines', format('build_t%%s', lpad(p.i::text, 6, '0')), '', '', '', '', '', '',
                   %(now)s, %(now)s
            FROM bench_plan p WHERE p.main IS NOT NULL
        """, {"now": now})
        step("dataset nodes", """
            INSERT INTO lineage_node (id, kind, dataset_id, source_kind, name, effective_sensitivity, is_violation,
                                      created_at)
            SELECT d.id, 'dataset', d.id, '', d.qualified_name, %(effective)s, false, %(now)s FROM catalog_dataset d
        """, {"now": now, "effective": max(sensitivity for _, _, sensitivity in COLUMNS)})
        step("column nodes", """
            INSERT INTO lineage_node (id, kind, dataset_id, column_id, source_kind, name, effective_sensitivity,
                                      is_violation, created_at)
            SELECT %(n)s + c.id, 'column', c.dataset_id, c.id, '', c.name, c.sensitivity, false, %(now)s
            FROM catalog_column c
        """, {"n": n, "now": now})
        step("column edges", """
            INSERT INTO lineage_edge (source_id, target_id, level, kind, direct, masking, description, job_id,
                                      first_seen, last_seen)
            SELECT %(n)s + %(width)s * f.parent + f.c + 1, %(n)s + %(width)s * f.i + f.c + 1, 'column',
                   CASE WHEN f.c = 0 THEN 'copy' ELSE 'transformation' END, true, false, '', f.i + 1, %(now)s, %(now)s
            FROM (
                SELECT p.i, p.main AS parent, c FROM bench_plan p CROSS JOIN generate_series(0, %(main_columns)s - 1) c
                WHERE p.main IS NOT NULL
                UNION ALL
                SELECT p.i, p.joined, c FROM bench_plan p CROSS JOIN unnest(%(joined_columns)s::int[]) c
                WHERE p.joined IS NOT NULL
            ) f
        """, {"n": n, "width": width, "main_columns": MAIN_PARENT_COLUMNS, "joined_columns": list(JOINED_COLUMNS), "now": now})
        step("dataset edges", """
            INSERT INTO lineage_edge (source_id, target_id, level, kind, direct, masking, description, job_id,
                                      first_seen, last_seen)
            SELECT f.parent + 1, f.i + 1, 'dataset', 'job', true, false, '', f.i + 1, %(now)s, %(now)s
            FROM (
                SELECT p.i, p.main AS parent FROM bench_plan p WHERE p.main IS NOT NULL
                UNION ALL
                SELECT p.i, p.joined FROM bench_plan p WHERE p.joined IS NOT NULL
            ) f
        """, {"now": now})
        for table in ("catalog_dataset", "catalog_datasetversion", "catalog_column", "catalog_dataset_owners",
                      "lineage_job", "lineage_node", "lineage_edge"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        started = time.perf_counter()
        connection.commit()
        steps.append(BuildStep("COMMIT", 0, time.perf_counter() - started))
    with psycopg_connect(config, autocommit=True) as connection:
        started = time.perf_counter()
        connection.execute("VACUUM (ANALYZE)")
        steps.append(BuildStep("VACUUM (ANALYZE)", 0, time.perf_counter() - started))
    return steps


def graph_sizes(config: dict) -> dict:
    with psycopg_connect(config, autocommit=True) as connection:
        counts = dict(connection.execute(
            "SELECT level, count(*) FROM lineage_edge GROUP BY level"
        ).fetchall())
        nodes = dict(connection.execute("SELECT kind, count(*) FROM lineage_node GROUP BY kind").fetchall())
        sizes = dict(connection.execute("""
            SELECT relname, pg_total_relation_size(oid) FROM pg_class
            WHERE relname IN ('lineage_edge', 'lineage_node', 'catalog_column', 'catalog_dataset', 'catalog_datasetversion')
        """).fetchall())
        database = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"edges": counts, "nodes": nodes, "bytes": sizes, "database": database}


# --- setup ------------------------------------------------------------------------------------


def catalog_prepare() -> tuple[int, str, dict[str, int], list[int], int]:
    """Migrate, then create the roles, the stores, the data engineer's service account, the owners
    and a product manager (who sees aggregated datasets only: none of the benchmark's)."""
    from django.core.management import call_command

    from access.models import User
    from access.services import role_ensure_defaults, service_account_create
    from catalog.services import store_save

    call_command("migrate", interactive=False, verbosity=0)
    role_ensure_defaults()
    platform_account, _ = service_account_create(name="bench-platform", role_slug="platform_engineer")
    store_ids = {}
    for name, kind, store_platform, _first_layer in STORES:
        store = store_save(
            principal=platform_account, name=name, kind=kind, platform=store_platform, environment="prod",
            residency="CA", line_of_business="benchmarks", description="Built by bench/lineage.py.",
        )
        store_ids[name] = store.pk
    engineer, key = service_account_create(name="bench-pipeline", role_slug="data_engineer")
    owner_ids = []
    for number in range(OWNERS):
        owner = User(username=f"owner{number:02d}", email=f"owner{number:02d}@example.com")
        owner.set_unusable_password()
        owner.save()
        owner_ids.append(owner.pk)
    from access.models import Role

    manager = User(username="bench-product-manager")
    manager.set_unusable_password()
    manager.save()
    Role.objects.get(slug="product_manager").group.user_set.add(manager)
    return engineer.pk, key, store_ids, owner_ids, manager.pk


# --- walks ------------------------------------------------------------------------------------

# The plainest correct downstream walk: follow edges of one level up to a depth, UNION so a
# (node, depth) pair is expanded once, and keep each node once at its nearest depth.
DOWNSTREAM_SQL = """
WITH RECURSIVE downstream(node_id, depth) AS (
    SELECT %(start)s::bigint, 0
    UNION
    SELECT e.target_id, d.depth + 1
    FROM downstream d JOIN lineage_edge e ON e.source_id = d.node_id
    WHERE e.level = %(level)s AND d.depth < %(depth)s
)
SELECT node_id, min(depth) FROM downstream WHERE depth > 0 GROUP BY node_id
"""

# The same walk returning what a reader needs of each node: its name, kind and sensitivity (the
# column's declared one for a column, the dataset's for a dataset). The goal of issue 17 is the
# selector within 2x and the API (less a no-op authenticated GET) within 3x of this query.
FULL_SQL = """
WITH RECURSIVE downstream(node_id, depth) AS (
    SELECT %(start)s::bigint, 0
    UNION
    SELECT e.target_id, d.depth + 1
    FROM downstream d JOIN lineage_edge e ON e.source_id = d.node_id
    WHERE e.level = %(level)s AND d.depth < %(depth)s
)
SELECT n.id, n.kind, n.name, CASE WHEN n.kind = 'column' THEN c.sensitivity ELSE d.sensitivity END, r.depth
FROM (SELECT node_id, min(depth) AS depth FROM downstream WHERE depth > 0 GROUP BY node_id) r
JOIN lineage_node n ON n.id = r.node_id
LEFT JOIN catalog_dataset d ON d.id = n.dataset_id
LEFT JOIN catalog_column c ON c.id = n.column_id
"""
# An authenticated request that does nothing: a GET on a POST-only endpoint answers 405 after
# the token is checked. Its time is the fixed cost of any API request on this server.
NOOP_PATH = "/api/v1/suggestions/1/accept/"
NOOP_STATUS = 405
SELECTOR_GOAL, API_GOAL = 2.0, 3.0


@dataclass
class Start:
    dataset_id: int
    column_id: int | None  # None for a dataset walk
    node_id: int

    def api_path(self, depth: int, limit: int) -> str:
        if self.column_id is None:
            return f"/api/v1/datasets/{self.dataset_id}/lineage/?direction=downstream&level=dataset&depth={depth}&limit={limit}"
        return f"/api/v1/datasets/{self.dataset_id}/columns/{self.column_id}/lineage/?direction=downstream&depth={depth}&limit={limit}"


def starts_pick(plan: GraphPlan, count: int, rng: random.Random) -> dict[str, list[Start]]:
    """``count`` datasets, and one random column of each, from the first half of the layers."""
    candidates = range(0, plan.firsts[LAYERS // 2])
    chosen = rng.sample(candidates, min(count, len(candidates)))
    width, n = len(COLUMNS), plan.count
    columns = []
    for i in chosen:
        c = rng.randrange(width)
        columns.append(Start(dataset_id=i + 1, column_id=width * i + c + 1, node_id=n + width * i + c + 1))
    return {"dataset": [Start(dataset_id=i + 1, column_id=None, node_id=i + 1) for i in chosen], "column": columns}


@dataclass
class WalkFigures:
    level: str
    depth: int
    reached: list[int] = field(default_factory=list)
    sql: list[float] = field(default_factory=list)
    full_sql: list[float] = field(default_factory=list)
    selector: list[float] = field(default_factory=list)
    api: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    partial: list[bool] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    selector_queries: Counter = field(default_factory=Counter)
    api_queries: Counter = field(default_factory=Counter)
    empty_selector_queries: Counter = field(default_factory=Counter)
    empty_api_queries: Counter = field(default_factory=Counter)
    breakdowns: list[dict] = field(default_factory=list)


def walk_sql_run(start: Start, level: str, depth: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(DOWNSTREAM_SQL, {"start": start.node_id, "level": level, "depth": depth})
        return len(cursor.fetchall())


def full_sql_run(start: Start, level: str, depth: int) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(FULL_SQL, {"start": start.node_id, "level": level, "depth": depth})
        return len(cursor.fetchall())


@dataclass
class HiddenFigures:
    """The same selector walks as a reader who may see none of the datasets they reach."""

    level: str
    depth: int
    reached: list[int] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)  # the engineer: everything visible
    hidden: list[float] = field(default_factory=list)  # the product manager: every node hidden
    seen_queries: Counter = field(default_factory=Counter)
    hidden_queries: Counter = field(default_factory=Counter)


def hidden_measure(figures: HiddenFigures, starts: list[Start], *, walker: "Walker", manager: "Walker"):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    level, depth = figures.level, figures.depth
    for start in starts:  # warm-up
        walker.walk(start, level, depth)
        manager.walk(start, level, depth)
    for start in starts:
        for who, times, counts in ((walker, figures.seen, figures.seen_queries),
                                   (manager, figures.hidden, figures.hidden_queries)):
            with CaptureQueriesContext(connection) as queries:
                began = time.perf_counter()
                walk = who.walk(start, level, depth)
                times.append(time.perf_counter() - began)
            counts[len(queries)] += 1
        hidden = sum(1 for node in walk.nodes if node["hidden"] and node["depth"])
        if hidden != len(walk.nodes) - 1:
            raise BenchmarkError(f"{level} walk from node {start.node_id}: {hidden} of {len(walk.nodes) - 1} hidden")
        figures.reached.append(len(walk.nodes) - 1)


class Walker:
    """The selector call the API makes (``lineage_graph``), with the start node loaded beforehand."""

    def __init__(self, engineer_pk: int, limit: int):
        from access.models import User

        self.user = User.objects.get(pk=engineer_pk)
        self.limit = limit
        self.nodes = {}

    def start_node(self, start: Start):
        from lineage.models import Node

        if start.node_id not in self.nodes:
            self.nodes[start.node_id] = Node.objects.select_related("column", "dataset__store").get(pk=start.node_id)
        return self.nodes[start.node_id]

    def walk(self, start: Start, level: str, depth: int):
        from lineage.selectors import lineage_graph

        return lineage_graph(
            user=self.user, starts=[self.start_node(start)], direction="downstream", level=level, depth=depth,
            limit=self.limit,
        )


class ApiReader:
    """One keep-alive connection for GETs with the service token."""

    def __init__(self, port: int, key: str):
        self.connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
        self.headers = {"Authorization": f"Token {key}", "Accept": "application/json"}
        self.connects = 0

    def get(self, path: str) -> tuple[int, bytes]:
        if self.connection.sock is None:
            self.connects += 1
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.connection.sock is None:
            self.connects += 1
        self.connection.request("POST", path, body=body, headers={**self.headers, "Content-Type": "application/json"})
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self):
        self.connection.close()


class QueryTimer:
    """A database execute wrapper that records each query and the time until its rows are in.

    psycopg's client-side cursors receive the whole result in ``execute``; what follows
    (turning rows into model instances) counts as Python.
    """

    def __init__(self):
        self.queries: list[tuple[str, float]] = []

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append((sql, time.perf_counter() - began))


def query_kind(sql: str) -> str:
    """Which part of a walk a query is, for the time breakdown."""
    if sql.lstrip().upper().startswith("WITH RECURSIVE"):
        return "walk statement"
    if sql.lstrip().upper().startswith("WITH"):  # lineage_graph's second statement
        return "graph statement"
    return "other SQL"


BREAKDOWN_PARTS = ("walk statement", "graph statement", "other SQL")


def walks_measure(figures: WalkFigures, starts: list[Start], *, walker: Walker, api: ApiReader, key: str,
                  limit: int, counted: int):
    """Warm up, then time each start by hand-written SQL, through the selector and over HTTP;
    then count queries and split the time of a few walks."""
    level, depth = figures.level, figures.depth
    expected = {}
    for start in starts:  # warm-up: every page the four ways will touch
        expected[start.node_id] = walk_sql_run(start, level, depth)
        full_sql_run(start, level, depth)
        walker.walk(start, level, depth)
    for start in starts:
        began = time.perf_counter()
        walk_sql_run(start, level, depth)
        figures.sql.append(time.perf_counter() - began)
        figures.reached.append(expected[start.node_id])
        began = time.perf_counter()
        full_sql_run(start, level, depth)
        figures.full_sql.append(time.perf_counter() - began)
    for start in starts:
        began = time.perf_counter()
        walk = walker.walk(start, level, depth)
        figures.selector.append(time.perf_counter() - began)
        figures.partial.append(walk.partial)
        if not walk.partial and len(walk.nodes) - 1 != expected[start.node_id]:
            figures.mismatches.append(
                f"{level} depth {depth} from node {start.node_id}: selector {len(walk.nodes) - 1} nodes, "
                f"hand-written SQL {expected[start.node_id]}"
            )
    # gunicorn closed the connection if it stayed idle longer than its keep-alive: open a fresh one.
    api.close()
    api.get(starts[0].api_path(depth, limit))
    for start in starts:
        # The no-op GET right before each walk's, on the same connection: the fixed cost of a request now.
        began = time.perf_counter()
        status, body = api.get(NOOP_PATH)
        figures.noop.append(time.perf_counter() - began)
        if status != NOOP_STATUS:
            raise BenchmarkError(f"GET {NOOP_PATH} answered {status}, not {NOOP_STATUS}: {body[:300]!r}")
        path = start.api_path(depth, limit)
        began = time.perf_counter()
        status, body = api.get(path)
        figures.api.append(time.perf_counter() - began)
        if status != 200:
            raise BenchmarkError(f"GET {path} answered {status}: {body[:500]!r}")
        answer = json.loads(body)
        if not answer["partial"] and len(answer["nodes"]) - 1 != expected[start.node_id]:
            figures.mismatches.append(
                f"{level} depth {depth} from node {start.node_id}: API {len(answer['nodes']) - 1} nodes, "
                f"hand-written SQL {expected[start.node_id]}"
            )

    # Queries per walk on walks spread from the smallest to the largest.
    by_reach = sorted(range(len(starts)), key=figures.reached.__getitem__)
    spread = sorted({by_reach[round(k * (len(by_reach) - 1) / max(1, counted - 1))] for k in range(counted)})
    for index in spread:
        empty = figures.reached[index] == 0
        selector_count, api_count = walk_query_counts(starts[index], level, depth, walker=walker, key=key, limit=limit)
        (figures.empty_selector_queries if empty else figures.selector_queries)[selector_count] += 1
        (figures.empty_api_queries if empty else figures.api_queries)[api_count] += 1

    # Where the time goes: the median walk and the largest one the selector did not cut.
    whole = [index for index in by_reach if not figures.partial[index]]
    for label, index in (("median", by_reach[len(by_reach) // 2]), ("largest", whole[-1] if whole else None)):
        if index is not None:
            figures.breakdowns.append(
                walk_breakdown(label, starts[index], figures.reached[index], level, depth, walker=walker, key=key,
                               limit=limit)
            )


def api_client(key: str):
    from rest_framework.test import APIClient

    client = APIClient(HTTP_HOST=HOST)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def walk_query_counts(start: Start, level: str, depth: int, *, walker: Walker, key: str, limit: int) -> tuple[int, int]:
    """SQL queries of one walk through the selector, and through the whole API request in-process."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as selector_queries:
        walker.walk(start, level, depth)
    with CaptureQueriesContext(connection) as api_queries:
        response = api_client(key).get(start.api_path(depth, limit))
    if response.status_code != 200:
        raise BenchmarkError(f"In-process API answered {response.status_code}: {response.content[:500]!r}")
    return len(selector_queries.captured_queries), len(api_queries.captured_queries)


def walk_breakdown(label: str, start: Start, reached: int, level: str, depth: int, *, walker: Walker, key: str,
                   limit: int, repeats: int = 5) -> dict:
    """The selector's time split between its queries and Python, and the in-process API
    request's, medians of a few runs."""
    from django.db import connection

    client = api_client(key)
    samples = {part: [] for part in (*BREAKDOWN_PARTS, "Python", "selector", "API in-process")}
    for _ in range(repeats):
        timer = QueryTimer()
        with connection.execute_wrapper(timer):
            began = time.perf_counter()
            walker.walk(start, level, depth)
            total = time.perf_counter() - began
        spent = dict.fromkeys(BREAKDOWN_PARTS, 0.0)
        for sql, seconds in timer.queries:
            spent[query_kind(sql)] += seconds
        for part, seconds in spent.items():
            samples[part].append(seconds)
        samples["Python"].append(total - sum(spent.values()))
        samples["selector"].append(total)
        began = time.perf_counter()
        response = client.get(start.api_path(depth, limit))
        samples["API in-process"].append(time.perf_counter() - began)
        if response.status_code != 200:
            raise BenchmarkError(f"In-process API answered {response.status_code}: {response.content[:500]!r}")
    return {"label": label, "reached": reached, **{part: p(values, 50) for part, values in samples.items()}}


def explain(start: Start, level: str, depth: int, limit: int) -> str:
    """EXPLAIN ANALYZE of the hand-written full query and of the selector's graph statement, from one start."""
    from django.db import connection

    from lineage.selectors import graph_sql

    plans = []
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + FULL_SQL, {"start": start.node_id, "level": level, "depth": depth})
        plans.append("-- hand-written (full SQL)\n" + "\n".join(row[0] for row in cursor.fetchall()))
        statement, params, _ = graph_sql(user=walker_user(), start_ids=[start.node_id], direction="downstream",
                                         level=level, depth=depth, limit=limit)
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        plans.append("-- lineage.selectors.graph_sql\n" + "\n".join(row[0] for row in cursor.fetchall()))
    return "\n\n".join(plans)


_WALKER_USER = []


def walker_user():
    """The data engineer the walks run as (set by ``main``)."""
    return _WALKER_USER[0]


# --- OpenLineage ------------------------------------------------------------------------------

ORDER_FIELDS = (
    ("order_id", "BIGINT"), ("customer_id", "BIGINT"), ("amount", "NUMERIC"), ("currency", "TEXT"),
    ("status", "TEXT"), ("created_at", "TIMESTAMP"), ("channel", "TEXT"), ("coupon", "TEXT"),
    ("shipped_at", "TIMESTAMP"), ("updated_at", "TIMESTAMP"),
)
CUSTOMER_FIELDS = (
    ("customer_id", "BIGINT"), ("email", "TEXT"), ("name", "TEXT"), ("country", "TEXT"), ("segment", "TEXT"),
    ("phone", "TEXT"), ("city", "TEXT"), ("postcode", "TEXT"), ("created_at", "TIMESTAMP"), ("updated_at", "TIMESTAMP"),
)
# Output column, type, and its inputs: (input 0 orders / 1 customers, field, type, subtype).
REPORT_FIELDS = (
    ("order_id", "BIGINT", [(0, "order_id", "DIRECT", "IDENTITY")]),
    ("customer_id", "BIGINT", [(0, "customer_id", "DIRECT", "IDENTITY")]),
    ("order_day", "DATE", [(0, "created_at", "DIRECT", "TRANSFORMATION")]),
    ("amount_eur", "NUMERIC", [(0, "amount", "DIRECT", "TRANSFORMATION"), (0, "currency", "DIRECT", "TRANSFORMATION"),
                               (0, "status", "INDIRECT", "FILTER")]),
    ("status", "TEXT", [(0, "status", "DIRECT", "IDENTITY")]),
    ("channel", "TEXT", [(0, "channel", "DIRECT", "IDENTITY")]),
    ("customer_email", "TEXT", [(1, "email", "DIRECT", "TRANSFORMATION")]),
    ("country", "TEXT", [(1, "country", "DIRECT", "IDENTITY")]),
    ("segment", "TEXT", [(1, "segment", "DIRECT", "IDENTITY"), (1, "customer_id", "INDIRECT", "JOIN")]),
    ("order_count", "BIGINT", [(0, "order_id", "DIRECT", "AGGREGATION")]),
)


def openlineage_event(index: int, *, run: int) -> dict:
    """Run ``run`` of job ``index``: orders and customers in, one report out, with column lineage."""
    inputs = [
        (OL_SOURCE_NAMESPACE, f"public.orders_{index % OL_ORDER_TABLES:02d}", ORDER_FIELDS),
        (OL_SOURCE_NAMESPACE, f"public.customers_{index % OL_CUSTOMER_TABLES:02d}", CUSTOMER_FIELDS),
    ]
    column_lineage = {
        name: {"inputFields": [
            {
                "namespace": inputs[source][0], "name": inputs[source][1], "field": field_name,
                "transformations": [{"type": kind, "subtype": subtype, "masking": field_name == "email"}],
            }
            for source, field_name, kind, subtype in sources
        ]}
        for name, _type, sources in REPORT_FIELDS
    }
    return {
        "eventType": "COMPLETE",
        "eventTime": (OL_START + dt.timedelta(days=run, seconds=index)).isoformat().replace("+00:00", "Z"),
        "producer": "https://github.com/example/catalog/bench/lineage.py",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-lineage/{index}/{run}"))},
        "job": {"namespace": OL_JOB_NAMESPACE, "name": f"build_report_{index:05d}"},
        "inputs": [
            {"namespace": namespace, "name": name,
             "facets": {"schema": {"fields": [{"name": f, "type": t} for f, t in fields]}}}
            for namespace, name, fields in inputs
        ],
        "outputs": [{
            "namespace": OL_TARGET_NAMESPACE, "name": f"marts.report_{index:05d}",
            "facets": {
                "schema": {"fields": [{"name": name, "type": type_} for name, type_, _ in REPORT_FIELDS]},
                "columnLineage": {"fields": column_lineage},
            },
        }],
    }


@dataclass
class IngestPhase:
    name: str
    description: str
    expected_status: int
    run: int
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    queries: int | None = None


def ingest_run(phase: IngestPhase, *, count: int, port: int, key: str):
    """POST ``count`` events in order over one keep-alive connection; stop at the first surprise."""
    api = ApiReader(port, key)
    bodies = [json.dumps(openlineage_event(index, run=phase.run)).encode() for index in range(count)]
    started = time.perf_counter()
    try:
        for index, body in enumerate(bodies):
            began = time.perf_counter()
            status, answer = api.post(OL_PATH, body)
            phase.latencies.append(time.perf_counter() - began)
            if status != phase.expected_status:
                raise BenchmarkError(
                    f"{phase.name}: event {index} answered {status}, expected {phase.expected_status}: {answer[:500]!r}"
                )
    finally:
        api.close()
    phase.seconds = time.perf_counter() - started


def ingest_queries(phases: list[IngestPhase], *, key: str, index: int):
    """The SQL queries of one event of each phase, through the whole API request, on a job not sent before."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api_client(key)
    for phase in phases:
        with CaptureQueriesContext(connection) as captured:
            response = client.post(OL_PATH, openlineage_event(index, run=phase.run), format="json")
        if response.status_code != phase.expected_status:
            raise BenchmarkError(f"In-process {phase.name}: {response.status_code}: {response.content[:500]!r}")
        phase.queries = len(captured.captured_queries)


# --- output -----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def p(values: list[float], percent: float) -> float:
    return percentile(sorted(values), percent)


def counts_text(regular: Counter, empty: Counter) -> str:
    text = "–".join(str(n) for n in sorted({min(regular), max(regular)})) if regular else "-"
    if empty:
        text += f" ({'–'.join(str(n) for n in sorted({min(empty), max(empty)}))} if nothing is reached)"
    return text


WALK_HEADERS = ["walk", "depth", "starts", "nodes mean", "nodes p50", "nodes p95", "partial", "ids SQL p50",
                "ids SQL p95", "full SQL p50", "full SQL p95", "selector p50", "selector p95", "API p50", "API p95",
                "no-op GET p50", "no-op GET p95"]


def walk_rows(walks: list[WalkFigures]) -> list[list[str]]:
    return [
        [w.level, w.depth, len(w.reached), f"{sum(w.reached) / len(w.reached):.0f}", p(w.reached, 50),
         p(w.reached, 95), sum(w.partial),
         ms(p(w.sql, 50)), ms(p(w.sql, 95)), ms(p(w.full_sql, 50)), ms(p(w.full_sql, 95)),
         ms(p(w.selector, 50)), ms(p(w.selector, 95)), ms(p(w.api, 50)), ms(p(w.api, 95)),
         ms(p(w.noop, 50)), ms(p(w.noop, 95))]
        for w in walks
    ]


RATIO_HEADERS = ["walk", "depth", "selector/full p50", "selector/full p95", f"goal <= {SELECTOR_GOAL:g}x",
                 "(API-no-op)/full p50", "(API-no-op)/full p95", f"goal <= {API_GOAL:g}x",
                 "selector/ids p50", "API/ids p50"]


def walk_ratios(w: WalkFigures) -> dict[str, float]:
    """The issue's ratios at p50 and p95: each percentile of the selector (and of the API less the
    no-op GET's same percentile, both measured in this run) over the full SQL's same percentile."""
    return {
        "selector p50": p(w.selector, 50) / p(w.full_sql, 50),
        "selector p95": p(w.selector, 95) / p(w.full_sql, 95),
        "api p50": (p(w.api, 50) - p(w.noop, 50)) / p(w.full_sql, 50),
        "api p95": (p(w.api, 95) - p(w.noop, 95)) / p(w.full_sql, 95),
    }


def goal_text(values: list[float], goal: float) -> str:
    return "holds" if all(value <= goal for value in values) else "MISSED"


def ratio_rows(walks: list[WalkFigures]) -> list[list[str]]:
    rows = []
    for w in walks:
        r = walk_ratios(w)
        rows.append([
            w.level, w.depth, f"{r['selector p50']:.2f}", f"{r['selector p95']:.2f}",
            goal_text([r["selector p50"], r["selector p95"]], SELECTOR_GOAL),
            f"{r['api p50']:.2f}", f"{r['api p95']:.2f}", goal_text([r["api p50"], r["api p95"]], API_GOAL),
            f"{p(w.selector, 50) / p(w.sql, 50):.1f}", f"{p(w.api, 50) / p(w.sql, 50):.1f}",
        ])
    return rows


QUERY_HEADERS = ["walk", "depth", "walks", "selector queries", "API queries"]


def query_rows(walks: list[WalkFigures]) -> list[list[str]]:
    return [
        [w.level, w.depth, sum(w.selector_queries.values()) + sum(w.empty_selector_queries.values()),
         counts_text(w.selector_queries, w.empty_selector_queries), counts_text(w.api_queries, w.empty_api_queries)]
        for w in walks
    ]


HIDDEN_HEADERS = ["walk", "depth", "walks", "nodes p50", "seen p50", "seen p95", "hidden p50", "hidden p95",
                  "seen queries", "hidden queries"]


def hidden_rows(hidden: list[HiddenFigures]) -> list[list[str]]:
    def queries(counter: Counter) -> str:
        return ", ".join(f"{count}" + (f" ({times}x)" if len(counter) > 1 else "") for count, times in sorted(counter.items()))

    return [
        [h.level, h.depth, len(h.reached), round(p(h.reached, 50)), ms(p(h.seen, 50)), ms(p(h.seen, 95)),
         ms(p(h.hidden, 50)), ms(p(h.hidden, 95)), queries(h.seen_queries), queries(h.hidden_queries)]
        for h in hidden
    ]


HIDDEN_TEXT = ("The same selector walks, as the data engineer (who may see every dataset) and as a product "
               "manager (who sees aggregated datasets only, so every node reached is hidden), ms:")


BREAKDOWN_HEADERS = ["walk", "depth", "which", "reached", "selector", *BREAKDOWN_PARTS, "Python", "API in-process"]


def breakdown_rows(walks: list[WalkFigures]) -> list[list[str]]:
    return [
        [w.level, w.depth, b["label"], b["reached"], ms(b["selector"]), *(ms(b[part]) for part in BREAKDOWN_PARTS),
         ms(b["Python"]), ms(b["API in-process"])]
        for w in walks for b in w.breakdowns
    ]


INGEST_HEADERS = ["phase", "events", "status", "events/s", "mean ms", "p50 ms", "p95 ms", "max ms", "queries/event"]


def ingest_rows(phases: list[IngestPhase]) -> list[list[str]]:
    return [
        [f.name, len(f.latencies), f.expected_status, f"{len(f.latencies) / f.seconds:.1f}",
         ms(sum(f.latencies) / len(f.latencies)), ms(p(f.latencies, 50)), ms(p(f.latencies, 95)),
         ms(max(f.latencies)), f.queries if f.queries is not None else "-"]
        for f in phases
    ]


BUILD_HEADERS = ["step", "rows", "seconds"]


def build_rows(steps: list[BuildStep]) -> list[list[str]]:
    return [[s.name, f"{s.rows:,}" if s.rows else "", f"{s.seconds:.1f}"] for s in steps] + [
        ["total", "", f"{sum(s.seconds for s in steps):.1f}"]
    ]


def graph_text(run: dict) -> str:
    sizes = run["sizes"]
    mib = {name: value / 2**20 for name, value in sizes["bytes"].items()}
    return (
        f"{run['datasets']:,} datasets in {LAYERS} layers ({run['layer_sizes'][0]:,} raw tables, growing "
        f"{LAYER_GROWTH}x a layer to {run['layer_sizes'][-1]:,}), {sizes['nodes'].get('column', 0):,} columns "
        f"with a node each, {sizes['edges'].get('column', 0):,} column edges and "
        f"{sizes['edges'].get('dataset', 0):,} dataset edges. lineage_edge {mib['lineage_edge']:.0f} MiB and "
        f"lineage_node {mib['lineage_node']:.0f} MiB with their indexes; database "
        f"{sizes['database'] / 2**20:.0f} MiB."
    )


def cut_under_limit(w: WalkFigures, limit: int) -> int:
    """Walks the selector cut although they reach no more nodes than its limit (its row cap)."""
    return sum(1 for reached, partial in zip(w.reached, w.partial) if partial and reached <= limit)


def walks_text(run: dict) -> str:
    cut_early = [
        f"{cut_under_limit(w, run['limit'])} {w.level} walks of depth {w.depth}"
        for w in run["walks"] if cut_under_limit(w, run["limit"])
    ]
    if cut_early:
        partial = f"; WARNING: {', '.join(cut_early)} were cut although they reach no more nodes than the limit."
    elif any(any(w.partial) for w in run["walks"]):
        partial = " (each of them reaches more nodes than the limit)."
    else:
        partial = "."
    return (
        f"{run['starts']} start datasets drawn from the first {LAYERS // 2} layers, and one random column of "
        f"each; limit={run['limit']} nodes for the selector and the API. Times in ms; `nodes` is the number "
        "of distinct nodes reached (start excluded); `partial` counts walks the selector cut at its cap" + partial
    )


def report_plain(run: dict) -> str:
    lines = [
        f"Lineage benchmark, {run['date']}, commit {run['commit']}: {run['command']}",
        f"Machine: {run['machine']}",
        f"Server: {run['server']}",
        f"Machine load (1 min): {run['load']}",
        "",
        "Graph: " + graph_text(run),
        plain_table(BUILD_HEADERS, build_rows(run["build"])),
        "",
        "Downstream walks: " + walks_text(run),
        plain_table(WALK_HEADERS, walk_rows(run["walks"])),
        "",
        "Ratios to the hand-written full query (name, kind and sensitivity of each node), against the goals of "
        "issue 17; the last two against the ids-only query, as recorded before:",
        plain_table(RATIO_HEADERS, ratio_rows(run["walks"])),
        "",
        f"SQL queries per walk ({run['counted']} walks from the smallest to the largest; selector, and whole API "
        "request in-process):",
        plain_table(QUERY_HEADERS, query_rows(run["walks"])),
        "",
        "Where the time goes, ms (in-process, median of 5 runs of the median walk and of the largest whole one;",
        "a query's time runs until its rows are received, Python is the rest of lineage_graph):",
        plain_table(BREAKDOWN_HEADERS, breakdown_rows(run["walks"])),
        "",
        HIDDEN_TEXT,
        plain_table(HIDDEN_HEADERS, hidden_rows(run["hidden"])),
        "",
        f"OpenLineage over HTTP, {run['events']} jobs, one keep-alive connection:",
        plain_table(INGEST_HEADERS, ingest_rows(run["ingest"])),
        *(f"  {f.name}: {f.description}" for f in run["ingest"]),
    ]
    if run["mismatches"]:
        lines += ["", "WARNING: node counts differ from the hand-written query:", *run["mismatches"][:20]]
    return "\n".join(lines)


def report_markdown(run: dict) -> str:
    lines = [
        "## Lineage (bench/lineage.py)",
        "",
        "```",
        run["command"],
        "```",
        "",
        f"Run on {run['date']} at commit {run['commit']}. {run['machine']}. {run['server']}. "
        f"Machine {run['load']} (1 min).",
        "",
        graph_text(run) + " Built with set-based SQL, then `VACUUM (ANALYZE)`, seconds:",
        "",
        markdown_table(BUILD_HEADERS, build_rows(run["build"])),
        "",
        "Downstream walks: " + walks_text(run) + " `ids SQL` is one hand-written `WITH RECURSIVE` query "
        "returning the distinct node ids; `full SQL` the same walk returning each node's name, kind and "
        "sensitivity; `selector` is `lineage_graph` in-process (nodes, datasets, columns, owners and edges); "
        "`API` is the whole `GET` over HTTP; `no-op GET` an authenticated GET that does nothing "
        f"(`{NOOP_PATH}`, 405 after the token is checked), sent before each walk's on the same connection.",
        "",
        markdown_table(WALK_HEADERS, walk_rows(run["walks"]), text_columns=2),
        "",
        "Ratios: each percentile of the selector, and of the API less the no-op GET's same percentile, over "
        "the full SQL's; the goals are issue 17's. The last two columns are against the ids-only query:",
        "",
        markdown_table(RATIO_HEADERS, ratio_rows(run["walks"]), text_columns=2),
        "",
        f"SQL queries per walk, on {run['counted']} walks of each kind spread from the smallest to the largest "
        "(`selector` is `lineage_graph`; `API` is the whole request in-process, token authentication included):",
        "",
        markdown_table(QUERY_HEADERS, query_rows(run["walks"]), text_columns=2),
        "",
        "Where the time goes, ms: the median walk and the largest one the selector did not cut, in-process, "
        "median of 5 runs. A query's time runs until its rows are received; `Python` is the rest of `lineage_graph`; "
        "`API in-process` is the whole request through Django's test client (no HTTP):",
        "",
        markdown_table(BREAKDOWN_HEADERS, breakdown_rows(run["walks"]), text_columns=3),
        "",
        HIDDEN_TEXT,
        "",
        markdown_table(HIDDEN_HEADERS, hidden_rows(run["hidden"])),
        "",
        f"OpenLineage events over HTTP, {run['events']} jobs, one keep-alive connection "
        "(`queries/event` from one more event of each kind, whole API request in-process):",
        "",
        markdown_table(INGEST_HEADERS, ingest_rows(run["ingest"])),
        "",
        *(f"- *{f.name}*: {f.description}" for f in run["ingest"]),
    ]
    if run["mismatches"]:
        lines += ["", "WARNING: node counts differ from the hand-written query:", "",
                  *(f"- {line}" for line in run["mismatches"][:20])]
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--datasets", type=int, default=100_000, help="datasets in the graph (default 100000)")
    parser.add_argument("--starts", type=int, default=200, help="start datasets and columns per walk (default 200)")
    parser.add_argument("--events", type=int, default=500, help="OpenLineage jobs to send (default 500)")
    parser.add_argument("--limit", type=int, default=5000,
                        help="node cap of the selector and the API (default 5000, the API's maximum)")
    parser.add_argument("--counted", type=int, default=20,
                        help="walks whose queries are counted, spread from the smallest to the largest (default 20)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help=f"PostgreSQL database to drop and recreate (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port for gunicorn (default {DEFAULT_PORT})")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the graph and the starts")
    parser.add_argument("--markdown", action="store_true", help="also print the results as a markdown section")
    parser.add_argument("--ingest", action="store_true",
                        help="only the OpenLineage ingestion benchmark (bench/lineage_ingest.py): --events per phase "
                             "with the openlineage-python client, 1 and 8 threads, and a real Celery worker")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL,
                        help=f"Redis of the worker's broker with --ingest (default {DEFAULT_REDIS_URL})")
    parser.add_argument("--no-ingest", action="store_true", help="walks only: skip the OpenLineage phases")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN ANALYZE of both walk queries from the largest depth-10 walk")
    args = parser.parse_args()
    if not 2 * LAYERS <= args.datasets <= 1_000_000:
        parser.error(f"--datasets must be between {2 * LAYERS} and 1000000")
    if not 1 <= args.starts <= 10_000 or not 1 <= args.events <= 100_000:
        parser.error("--starts must be between 1 and 10000, --events between 1 and 100000")
    if not 1 <= args.limit <= 5000:
        parser.error("--limit must be between 1 and 5000")
    if args.port == 8000 or not 1024 <= args.port <= 65535:
        parser.error("--port must be between 1024 and 65535, and not 8000")
    return args


def git_commit() -> str:
    """The commit the code under test is at (``+`` when the tree has changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=BASE_DIR,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def progress(message: str):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def ingest_main(args) -> int:
    """``--ingest``: the OpenLineage ingestion benchmark, printed next to the goals of issue 17."""
    from bench import lineage_ingest

    database_url = args.database_url if args.database_url != DEFAULT_DATABASE_URL else DEFAULT_INGEST_DATABASE_URL
    config = parse_database_url(database_url)
    load_before = os.getloadavg()[0]
    if not port_is_free(args.port):
        raise BenchmarkError(f"Port {args.port} on {HOST} is already in use.")
    with tempfile.TemporaryDirectory(prefix="catalog-bench-ingest-") as var_dir:
        environment = server_environment(database_url, var_dir)
        environment["REDIS_URL"] = args.redis_url
        Path(environment["STATIC_ROOT"]).mkdir()
        os.environ.update(environment)
        progress(f"recreating database {config['NAME']}")
        postgres_version = database_recreate(config)
        import django

        django.setup()
        from django.db import connections

        _, key, _, _, _ = catalog_prepare()
        connections.close_all()
        command = gunicorn_command(args.port, "gthread")
        command[command.index("--threads") + 1] = str(lineage_ingest.GUNICORN_THREADS)
        server = Server(command, environment, Path(var_dir) / "gunicorn.log")
        try:
            server.start()
            server.wait_until_ready(args.port, key)
            result = lineage_ingest.ingest_benchmark(
                events=args.events, port=args.port, key=key, environment=environment, var_dir=var_dir,
                event_for=openlineage_event, server_pgid=server.process.pid,
            )
        except BaseException:
            progress(f"gunicorn log (last lines):\n{server.log_tail()}")
            worker_log = Path(var_dir) / "worker.log"
            if worker_log.exists():
                progress(f"worker log (end):\n{worker_log.read_text(errors='replace')[-3000:]}")
            raise
        finally:
            server.stop()
    table = lineage_ingest.rows(result["figures"], result["queries"])
    print(f"OpenLineage ingestion, {args.events} events per phase; {result['date']}, commit {git_commit()}")
    print(f"{os.cpu_count()} cores, PostgreSQL {postgres_version}; gunicorn {GUNICORN_WORKERS} gthread workers x "
          f"{lineage_ingest.GUNICORN_THREADS} threads, one Celery worker (concurrency 1), production settings")
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(plain_table(lineage_ingest.HEADERS, table))
    if args.markdown:
        print("\n" + markdown_table(lineage_ingest.HEADERS, table, text_columns=1))
    return 0


def main() -> int:
    args = arguments()
    if args.ingest:
        return ingest_main(args)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))

    config = parse_database_url(args.database_url)
    load_before = os.getloadavg()[0]
    if not port_is_free(args.port):
        raise BenchmarkError(f"Port {args.port} on {HOST} is already in use.")
    rng = random.Random(args.seed)
    commit = git_commit()
    with tempfile.TemporaryDirectory(prefix="catalog-bench-lineage-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        Path(environment["STATIC_ROOT"]).mkdir()
        os.environ.update(environment)
        os.environ.pop("REDIS_URL", None)

        progress(f"recreating database {config['NAME']}")
        postgres_version = database_recreate(config)

        import django
        import gunicorn

        django.setup()
        from django.db import connections

        progress("migrating and creating the stores, the service account and the owners")
        engineer_pk, key, store_ids, owner_ids, manager_pk = catalog_prepare()
        connections.close_all()

        progress(f"planning {args.datasets:,} datasets")
        plan = graph_plan(args.datasets, rng)
        progress("building the graph with set-based SQL")
        build = graph_build(config, plan, store_ids=store_ids, owner_ids=owner_ids)
        for item in build:
            progress(f"  {item.name}: {item.rows:,} rows in {item.seconds:.1f}s")
        sizes = graph_sizes(config)
        starts = starts_pick(plan, args.starts, rng)

        server = Server(gunicorn_command(args.port, "gthread"), environment, Path(var_dir) / "gunicorn.log")
        walks: list[WalkFigures] = []
        hidden_walks: list[HiddenFigures] = []
        phases = [
            IngestPhase("first run", "each job's first event: a new output dataset and its column edges; "
                        f"the first {min(args.events, OL_ORDER_TABLES)} also discover their input tables (202)", 202, 0),
            IngestPhase("next run", "the same jobs' next run: a new run id and event time, edges already known, "
                        "their last_seen moved (202)", 202, 1),
            IngestPhase("resend", "the first-run events sent again: recognised by their digest, nothing written (200)",
                        200, 0),
        ]
        plans = ""
        try:
            progress(f"starting gunicorn on {HOST}:{args.port}")
            server.start()
            server.wait_until_ready(args.port, key)
            walker = Walker(engineer_pk, args.limit)
            _WALKER_USER[:] = [walker.user]
            api = ApiReader(args.port, key)
            try:
                for level in ("column", "dataset"):
                    for depth in DEPTHS:
                        progress(f"walks: {level}, depth {depth}, {len(starts[level])} starts")
                        figures = WalkFigures(level=level, depth=depth)
                        walks_measure(figures, starts[level], walker=walker, api=api, key=key, limit=args.limit,
                                      counted=args.counted)
                        walks.append(figures)
            finally:
                api.close()
            manager = Walker(manager_pk, args.limit)
            for level in ("column", "dataset"):
                progress(f"walks as a product manager (every node hidden): {level}, depth {max(DEPTHS)}")
                figures = HiddenFigures(level=level, depth=max(DEPTHS))
                hidden_measure(figures, starts[level], walker=walker, manager=manager)
                hidden_walks.append(figures)
            if args.explain:
                level_walks = [w for w in walks if w.depth == max(DEPTHS)]
                for figures in level_walks:
                    largest = max(range(len(figures.reached)), key=figures.reached.__getitem__)
                    start = starts[figures.level][largest]
                    plans += (f"\n-- {figures.level} walk, depth {figures.depth}, from node {start.node_id} "
                              f"({figures.reached[largest]} nodes)\n" + explain(start, figures.level, figures.depth, args.limit) + "\n")
            for phase in [] if args.no_ingest else phases:
                progress(f"OpenLineage phase '{phase.name}': {args.events} events")
                ingest_run(phase, count=args.events, port=args.port, key=key)
        except BaseException:
            tail = server.log_tail()
            if tail:
                progress(f"gunicorn log (last lines):\n{tail}")
            raise
        finally:
            server.stop()
            progress("gunicorn stopped")

        if args.no_ingest:
            phases = []
        else:
            progress("counting queries per OpenLineage event in-process")
            ingest_queries(phases, key=key, index=args.events)
        connections.close_all()

    mismatches = [line for w in walks for line in w.mismatches]
    run = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/lineage.py", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} cores, {memory_gib()} RAM, Python {platform.python_version()}, "
                   f"Django {django.get_version()}, PostgreSQL {postgres_version} on 127.0.0.1",
        "server": f"gunicorn {gunicorn.__version__}, {GUNICORN_WORKERS} gthread workers (1 thread each), "
                  "config.settings.production with DEBUG off",
        "load": f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
        "commit": commit,
        "datasets": plan.count,
        "layer_sizes": plan.sizes,
        "sizes": sizes,
        "build": build,
        "starts": len(starts["dataset"]),
        "limit": args.limit,
        "counted": min(args.counted, len(starts["dataset"])),
        "walks": walks,
        "hidden": hidden_walks,
        "events": args.events,
        "ingest": phases,
        "mismatches": mismatches,
    }
    print(report_plain(run))
    if args.markdown:
        print("\n" + report_markdown(run))
    if plans:
        print(plans)
    return 1 if mismatches else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as exc:
        print(f"bench/lineage.py: {exc}", file=sys.stderr)
        sys.exit(2)
