"""Warehouse sync benchmark: first and no-change sync of a 2,000-table PostgreSQL warehouse,
with DataHub's postgres source on the same warehouse as a yardstick.

    .venv/bin/python bench/sync.py [--rebuild] [--skip-datahub] [--markdown]

A quick check: ``--schemas 2 --tables 20 --warehouse bench_sync_small --skip-datahub`` (about
10 s). The full run takes about two minutes on 2 cores: the warehouse of 10 schemas of 200
tables of 15 columns is built in about 15 s the first time and reused after that, DataHub takes
about 30 s and the first sync about 45 s. ``--skip-sync`` leaves the catalog's sync out.

What it does, in order (it stops by itself and only talks to 127.0.0.1):

1. The warehouse: a PostgreSQL database (default ``bench_sync_warehouse``) with schemas
   ``s00``.. of tables ``t000``.. of 15 columns each: an integer primary key and a rotating
   mix of varchar(n), text, numeric(12,2), timestamptz, date, boolean, jsonb, uuid, bigint,
   smallint, double precision, char(2), inet and text[] columns, NOT NULL on some, comments
   on a third of the tables and on some columns (email, phone, birth_date among them), a few
   rows each, and one view ``v_summary`` per schema joining two of its tables. It is built by
   one generated SQL script (about 2 MB) executed in one transaction, then ``VACUUM (ANALYZE)``.
   The database is reused when it has the expected shape (a marker comment on the database
   and the counts of tables, views and columns); ``--rebuild`` drops and rebuilds it.
2. DataHub (unless ``--skip-datahub``): ``datahub ingest -c recipe.yml`` from its own venv
   (``--datahub-venv``, default ``bench/.venv-datahub``, created with
   ``acryl-datahub[postgres]==VERSION`` when missing, never in the project's venv), source
   ``postgres`` with tables and views, profiling off and every other option at its default,
   sink ``file`` under ``bench/out/``. Telemetry is off (``DATAHUB_TELEMETRY_ENABLED=false``)
   and so are its version checks (PyPI, GitHub, a server on localhost:8080; see
   ``DATAHUB_SHIM``): nothing it runs reaches beyond PostgreSQL on 127.0.0.1. The file it
   writes is read back to count the workunits and entities. That is extraction only: nothing
   is written to a catalog.
3. The catalog: drops and recreates its own database (default ``catalog_bench_sync``), runs
   ``manage.py migrate``, saves the warehouse's connection with ``manage.py connection_set``,
   then runs ``manage.py sync_store`` twice: the first sync into an empty catalog, then a
   second with nothing changed in the warehouse. Each sync runs synchronously in its own
   process (no Celery worker) with ``config.settings.local``, ``DEBUG=false`` (as in
   production: with DEBUG on, Django keeps the last 9,000 SQL statements in memory), no
   ``REDIS_URL`` and a throwaway ``CATALOG_VAR_DIR``.

Every measured run (DataHub, first sync, second sync) is its own process under GNU time,
``/usr/bin/time -f '%e %M'``: wall seconds and the process's peak resident set size (``%M``,
KiB, the largest of the process and any child it waited for). Each run's output goes to
``bench/out/<run>.log``. The goals checked at the end: the first sync, extraction and writing
included, is faster than DataHub's extraction alone and peaks lower in memory; the second sync
takes under a fifth of the first, judged by the runs' own durations (a worker is a long-lived
process, so interpreter and Django start-up are no part of a sync; the process wall times are
reported beside them). The script exits 1 if a goal is missed or a sync reports
something unexpected. Timings are only ever recorded here and in docs/benchmarks.md, never
asserted in tests.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Run as a script, bench/ comes first on sys.path; keep the project's packages first instead.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.register import (  # noqa: E402 - the shared setup and report helpers
    PROTECTED_DATABASES,
    BenchmarkError,
    database_recreate,
    markdown_table,
    memory_gib,
    parse_database_url,
    plain_table,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_sync"
DEFAULT_WAREHOUSE = "bench_sync_warehouse"
DEFAULT_DATAHUB_VENV = BASE_DIR / "bench" / ".venv-datahub"
DATAHUB_VERSION = "1.7.0.17"
OUT_DIR = BASE_DIR / "bench" / "out"
GNU_TIME = "/usr/bin/time"
STORE_NAME = "warehouse"
WAREHOUSE_HOST = "127.0.0.1"
WAREHOUSE_PORT = 5432
WAREHOUSE_USER = "postgres"
SCHEMAS = 10
TABLES = 200
COLUMNS = 15
ROWS = 3
VIEW_NAME = "v_summary"
SHAPE_VERSION = 1
RUN_TIMEOUT_SECONDS = 3600
# The goal: the second sync takes under this share of the first.
NO_CHANGE_SHARE = 0.2

# name, type, NOT NULL, comment, value of row g (an integer from generate_series)
COLUMN_POOL = (
    ("customer_id", "bigint", True, "Customer the row belongs to", "g * 1000003"),
    ("email", "varchar(255)", False, "Contact email address", "'user' || g || '@example.com'"),
    ("full_name", "varchar(200)", True, None, "'Person ' || g"),
    ("status", "varchar(20)", True, "Lifecycle status: active, paused, closed", "'active'"),
    ("amount", "numeric(12,2)", True, None, "g * 12.50"),
    ("created_at", "timestamp with time zone", True, "When the row was created (UTC)",
     "timestamptz '2026-01-01 00:00+00' + g * interval '1 hour'"),
    ("is_active", "boolean", True, None, "g % 2 = 0"),
    ("attributes", "jsonb", False, "Free-form attributes", "jsonb_build_object('k', g)"),
    ("external_id", "uuid", True, None, "md5(g::text)::uuid"),
    ("phone", "varchar(32)", False, "Phone number, E.164", "'+1555010' || g"),
    ("notes", "text", False, None, "'note ' || g"),
    ("quantity", "integer", False, None, "g * 7"),
    ("event_date", "date", True, None, "date '2026-01-01' + g"),
    ("price", "numeric(12,2)", False, "Unit price in the order currency", "g * 3.25"),
    ("birth_date", "date", False, "Date of birth", "date '1980-01-01' + g * 100"),
    ("country_code", "char(2)", False, "ISO 3166-1 alpha-2", "'CA'"),
    ("score", "double precision", False, None, "g * 0.5"),
    ("updated_at", "timestamp with time zone", False, None, "timestamptz '2026-02-01 00:00+00' + g * interval '1 day'"),
    ("description", "text", False, None, "'description ' || g"),
    ("tags", "text[]", False, None, "ARRAY['a', 'b']"),
    ("priority", "smallint", False, None, "g::smallint"),
    ("order_id", "bigint", False, None, "g * 31"),
    ("ip_address", "inet", False, "Client address at sign-up", "'10.0.0.1'::inet + g"),
    ("city", "varchar(100)", False, None, "'Montreal'"),
    ("postal_code", "varchar(16)", False, None, "'H2X 1Y' || g"),
    ("discount", "numeric(5,2)", False, None, "g * 0.05"),
    ("payload", "jsonb", False, None, "jsonb_build_object('id', g, 'ok', true)"),
    ("processed_at", "timestamp with time zone", False, None, "timestamptz '2026-03-01 00:00+00' + g * interval '1 minute'"),
    ("session_id", "uuid", False, None, "md5('s' || g)::uuid"),
    ("total_cents", "bigint", True, None, "g * 1250"),
)
DOMAINS = ("customers", "orders", "payments", "shipments", "events", "accounts", "invoices", "sessions")


class RunFailed(BenchmarkError):
    """A measured or setup subprocess exited non-zero."""


# --- the warehouse ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    schemas: int
    tables: int
    columns: int
    rows: int

    @property
    def marker(self) -> str:
        return (f"bench/sync.py warehouse v{SHAPE_VERSION}: {self.schemas} schemas x {self.tables} tables x "
                f"{self.columns} columns, {self.rows} rows, one view per schema")

    @property
    def table_count(self) -> int:
        return self.schemas * self.tables


def table_columns(schema: int, table: int, count: int) -> list[tuple]:
    """The table's columns after ``id``: ``count - 1`` consecutive ones of the pool, rotating."""
    start = (schema * 7 + table * 3) % len(COLUMN_POOL)
    return [COLUMN_POOL[(start + n) % len(COLUMN_POOL)] for n in range(count - 1)]


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def schema_sql(schema: int, shape: Shape) -> str:
    """CREATE SCHEMA, its tables with comments and rows, and its view, as one script."""
    name = f"s{schema:02d}"
    lines = [f"CREATE SCHEMA {name};", f"COMMENT ON SCHEMA {name} IS 'Benchmark schema {schema}';"]
    for table in range(shape.tables):
        qualified = f"{name}.t{table:03d}"
        columns = table_columns(schema, table, shape.columns)
        id_type = "bigint" if table % 4 == 3 else "integer"
        definitions = [f"id {id_type} PRIMARY KEY"] + [
            f"{column} {type_}{' NOT NULL' if not_null else ''}" for column, type_, not_null, _, _ in columns
        ]
        lines.append(f"CREATE TABLE {qualified} ({', '.join(definitions)});")
        if table % 3 == 0:
            domain = DOMAINS[(schema + table) % len(DOMAINS)]
            lines.append(f"COMMENT ON TABLE {qualified} IS "
                         f"{quote_literal(f'{domain.capitalize()} of region {schema}, one row per {domain[:-1]}')};")
        for n, (column, _, _, comment, _) in enumerate(columns):
            # The PII-looking ones always carry a comment; the others on every other table.
            if comment and (column in {"email", "phone", "birth_date"} or (table + n) % 2 == 0):
                lines.append(f"COMMENT ON COLUMN {qualified}.{column} IS {quote_literal(comment)};")
        if shape.rows:
            names = ", ".join(["id", *(column for column, *_ in columns)])
            values = ", ".join(["g", *(value for *_, value in columns)])
            lines.append(f"INSERT INTO {qualified} ({names}) SELECT {values} FROM generate_series(1, {shape.rows}) g;")
    first, second = table_columns(schema, 0, shape.columns), table_columns(schema, 1, shape.columns)
    selected = ["a.id"] + [f"a.{c[0]} AS a_{c[0]}" for c in first[:3]] + [f"b.{c[0]} AS b_{c[0]}" for c in second[:3]]
    lines.append(f"CREATE VIEW {name}.{VIEW_NAME} AS SELECT {', '.join(selected)} "
                 f"FROM {name}.t000 a JOIN {name}.t001 b ON b.id = a.id;")
    lines.append(f"COMMENT ON VIEW {name}.{VIEW_NAME} IS 'Summary of t000 and t001 of schema {name}';")
    return "\n".join(lines)


def warehouse_connect(name: str, *, autocommit: bool = False):
    import psycopg

    return psycopg.connect(host=WAREHOUSE_HOST, port=WAREHOUSE_PORT, user=WAREHOUSE_USER, dbname=name,
                           autocommit=autocommit, connect_timeout=10)


def warehouse_name_check(name: str):
    if name in PROTECTED_DATABASES or "bench" not in name or not name.replace("_", "").isalnum():
        raise BenchmarkError(f"Refusing to build the warehouse in {name!r}: its name must contain 'bench' "
                             "and only letters, digits and underscores.")


def warehouse_census(name: str) -> dict | None:
    """What the warehouse holds, or None when the database does not exist."""
    with warehouse_connect("postgres", autocommit=True) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
    if row is None:
        return None
    with warehouse_connect(name, autocommit=True) as connection:
        counts = connection.execute(
            """
            SELECT count(*) FILTER (WHERE c.relkind = 'r'),
                   count(*) FILTER (WHERE c.relkind = 'v'),
                   count(DISTINCT n.nspname)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname ~ '^s[0-9]+$' AND c.relkind IN ('r', 'v')
            """
        ).fetchone()
        columns = connection.execute(
            """
            SELECT count(*) FILTER (WHERE c.relkind = 'r'), count(*) FILTER (WHERE c.relkind = 'v')
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname ~ '^s[0-9]+$' AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
            """
        ).fetchone()
        size = connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"marker": row[0], "tables": counts[0], "views": counts[1], "schemas": counts[2],
            "table_columns": columns[0], "view_columns": columns[1], "bytes": size}


def warehouse_has_shape(census: dict | None, shape: Shape) -> bool:
    return census is not None and census["marker"] == shape.marker and (
        census["schemas"], census["tables"], census["views"], census["table_columns"]
    ) == (shape.schemas, shape.table_count, shape.schemas, shape.table_count * shape.columns)


def warehouse_build(name: str, shape: Shape) -> float:
    """Drop, create and fill the warehouse with one generated script in one transaction. Returns seconds."""
    from psycopg import sql

    started = time.perf_counter()
    with warehouse_connect("postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    script = "\n".join(schema_sql(schema, shape) for schema in range(shape.schemas))
    with warehouse_connect(name) as connection:
        with connection.transaction():
            connection.execute(script)
            # The marker names the shape; a build cut short leaves no marker and is rebuilt by the next run.
            connection.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(shape.marker)))
    with warehouse_connect(name, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")
    return time.perf_counter() - started


# --- measured runs ----------------------------------------------------------------------------


@dataclass
class Measured:
    name: str
    command: list[str]
    wall: float = 0.0
    peak_kib: int = 0
    returncode: int = 0
    stdout: str = ""
    log: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


def measure(name: str, command: list[str], *, environment: dict, log_name: str) -> Measured:
    """Run ``command`` under GNU time in its own process; stdout kept, stderr to the log."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log = OUT_DIR / f"{log_name}.log"
    with tempfile.NamedTemporaryFile("r", prefix="bench-time-", suffix=".txt") as timing:
        full = [GNU_TIME, "-f", "%e %M", "-o", timing.name, *command]
        with open(log, "w") as log_file:
            completed = subprocess.run(full, cwd=BASE_DIR, env=environment, stdout=subprocess.PIPE,
                                       stderr=log_file, stdin=subprocess.DEVNULL, text=True,
                                       timeout=RUN_TIMEOUT_SECONDS)
        with open(log, "a") as log_file:
            log_file.write("\n--- stdout ---\n" + completed.stdout)
        lines = [line for line in Path(timing.name).read_text().splitlines() if line.strip()]
    # GNU time prefixes "Command exited with non-zero status N" when the command failed.
    wall, peak = lines[-1].split()
    return Measured(name, command, float(wall), int(peak), completed.returncode, completed.stdout, log)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def checked(run: Measured) -> Measured:
    if run.returncode != 0:
        raise RunFailed(f"{run.name} exited with {run.returncode}; {run.log}:\n{log_tail(run.log)}")
    return run


# --- DataHub ----------------------------------------------------------------------------------


# ``datahub ingest`` exactly as its console script runs it, less its two version checks (PyPI,
# GitHub and a DataHub server on localhost:8080): one as the pipeline starts (up to 2 s) and one
# on the command's way out (up to 3 s). No environment variable turns them off.
DATAHUB_SHIM = """\
import sys
import datahub.ingestion.run.pipeline as pipeline
import datahub.upgrade.upgrade as upgrade
pipeline.retrieve_version_stats = lambda *args, **kwargs: None
upgrade.check_upgrade_post = lambda *args, **kwargs: None
from datahub.entrypoints import main
sys.argv[0] = "datahub"
sys.exit(main())
"""


def datahub_environment() -> dict:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("DATAHUB_", "VIRTUAL_ENV"))}
    environment.update(
        DATAHUB_TELEMETRY_ENABLED="false",
    )
    return environment


def datahub_venv_ensure(venv: Path, version: str) -> str:
    """Create DataHub's own venv when it has no ``datahub``; return the installed version."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "datahub").exists():
        interpreter = shutil.which("python3.11") or sys.executable
        progress(f"creating {venv} with acryl-datahub[postgres]=={version} (a few minutes)")
        subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
        completed = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"acryl-datahub[postgres]=={version}"],
            capture_output=True, text=True,
        )
        if completed.returncode != 0:
            raise BenchmarkError(f"pip could not install acryl-datahub[postgres]=={version} in {venv}:\n"
                                 f"{completed.stderr[-3000:]}\n(pass --datahub-version with one that installs)")
    return subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('acryl-datahub'), "
                            "m.version('sqlalchemy'), m.version('psycopg2-binary'))"],
        capture_output=True, text=True, check=True, env=datahub_environment(),
    ).stdout.strip()


def datahub_recipe(warehouse: str, output: Path) -> str:
    """The recipe: postgres source with tables and views, no profiling, file sink; else defaults."""
    return "\n".join([
        "source:",
        "  type: postgres",
        "  config:",
        f"    host_port: {WAREHOUSE_HOST}:{WAREHOUSE_PORT}",
        f"    database: {warehouse}",
        f"    username: {WAREHOUSE_USER}",
        "    include_tables: true",
        "    include_views: true",
        "    profiling:",
        "      enabled: false",
        "sink:",
        "  type: file",
        "  config:",
        f"    filename: {output}",
        "",
    ])


def datahub_output_census(path: Path) -> dict:
    """Workunits in DataHub's file sink (a JSON array of MCEs and MCPs), by entity and aspect."""
    items = json.loads(path.read_text())
    entities: dict[str, set] = {}
    aspects = Counter()
    for item in items:
        if "proposedSnapshot" in item:
            snapshot = next(iter(item["proposedSnapshot"].values()))
            urn = snapshot["urn"]
            for aspect in snapshot.get("aspects", []):
                aspects[next(iter(aspect)).rsplit(".", 1)[-1]] += 1
        else:
            urn = item.get("entityUrn", "")
            aspects[item.get("aspectName", "?")] += 1
        entities.setdefault(urn.split(":")[2] if urn.count(":") >= 2 else "?", set()).add(urn)
    return {"workunits": len(items), "entities": {kind: len(urns) for kind, urns in sorted(entities.items())},
            "aspects": dict(aspects.most_common()), "bytes": path.stat().st_size}


def datahub_run(venv: Path, warehouse: str) -> Measured:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    output = OUT_DIR / "datahub_postgres.json"
    output.unlink(missing_ok=True)
    recipe = OUT_DIR / "datahub_recipe.yml"
    recipe.write_text(datahub_recipe(warehouse, output))
    run = checked(measure("DataHub postgres source (extraction only, file sink)",
                          [str(venv / "bin" / "python"), "-c", DATAHUB_SHIM, "ingest", "-c", str(recipe)],
                          environment=datahub_environment(), log_name="datahub"))
    if not output.exists():
        raise BenchmarkError(f"DataHub wrote no {output}; {run.log}:\n{log_tail(run.log)}")
    run.extra = datahub_output_census(output)
    return run


def datahub_counts_text(census: dict) -> str:
    entities = ", ".join(f"{count:,} {kind}" for kind, count in census["entities"].items())
    return f"{census['workunits']:,} workunits; entities: {entities}"


# --- the catalog ------------------------------------------------------------------------------


def catalog_environment(database_url: str, var_dir: str) -> dict:
    environment = {
        key: value for key, value in os.environ.items()
        if key not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DEBUG", "CATALOG_VAR_DIR"}
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=database_url,
        DEBUG="false",
        CATALOG_VAR_DIR=var_dir,
    )
    return environment


def manage(*arguments: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *arguments]


def sync_commands_exist() -> bool:
    commands = BASE_DIR / "catalog" / "management" / "commands"
    return (commands / "sync_store.py").exists() and (commands / "connection_set.py").exists()


def sync_result(run: Measured) -> dict:
    """The JSON line ``sync_store`` prints at the end."""
    for line in reversed(run.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                continue
            if "status" in result:
                return result
    raise BenchmarkError(f"{run.name}: sync_store printed no JSON line with a status; {run.log}:\n{log_tail(run.log)}")


def catalog_census(config: dict) -> dict:
    """Datasets of the store, their current columns and their versions, read straight from the catalog's tables."""
    import psycopg

    with psycopg.connect(host=config["HOST"], port=config.get("PORT") or 5432, user=config.get("USER") or None,
                         dbname=config["NAME"], autocommit=True, connect_timeout=10) as connection:
        datasets, columns, versions = connection.execute(
            """
            SELECT count(*),
                   (SELECT count(*) FROM catalog_column c WHERE c.dataset_id IN (
                        SELECT d.id FROM catalog_dataset d WHERE d.store_id = s.id)),
                   (SELECT count(*) FROM catalog_datasetversion v WHERE v.dataset_id IN (
                        SELECT d.id FROM catalog_dataset d WHERE d.store_id = s.id))
              FROM catalog_datastore s JOIN catalog_dataset d ON d.store_id = s.id
             WHERE s.name = %s
             GROUP BY s.id
            """,
            [STORE_NAME],
        ).fetchone() or (0, 0, 0)
    return {"datasets": datasets, "columns": columns, "versions": versions}


COUNT_KEYS = ("new", "changed", "deprecated", "unchanged", "failed")
PHASE_ORDER = ("connect", "extract", "write", "lineage", "deprecate")


def sync_counts_text(result: dict) -> str:
    counts = result.get("counts", {})
    parts = [f"{key} {counts[key]:,}" for key in COUNT_KEYS if key in counts]
    parts += [f"{key} {value:,}" for key, value in counts.items() if key not in COUNT_KEYS and value]
    return f"{result.get('status')}: " + ", ".join(parts)


def sync_surprises(first: dict, second: dict, objects: int) -> list[str]:
    """What a correct sync of an unchanged warehouse would not report."""
    surprises = []
    for label, result in (("first", first), ("second", second)):
        counts = result.get("counts", {})
        if result.get("status") != "succeeded":
            surprises.append(f"the {label} sync ended {result.get('status')!r}")
        if counts.get("failed"):
            surprises.append(f"the {label} sync failed on {counts['failed']} objects")
    if first.get("counts", {}).get("new") != objects:
        surprises.append(f"the first sync created {first.get('counts', {}).get('new')} datasets, "
                         f"not the warehouse's {objects} tables and views")
    second_counts = second.get("counts", {})
    if second_counts.get("unchanged") != objects or any(second_counts.get(k) for k in ("new", "changed", "deprecated")):
        surprises.append(f"the second sync found changes in an unchanged warehouse: {sync_counts_text(second)}")
    return surprises


# --- output -----------------------------------------------------------------------------------


RUN_HEADERS = ["run", "wall s", "peak RSS MiB", "counts"]


def run_rows(run: dict) -> list[list[str]]:
    rows = []
    for item in run["runs"]:
        if item.name.startswith("DataHub"):
            counts = datahub_counts_text(item.extra)
        else:
            counts = sync_counts_text(item.extra)
            if "seconds" in item.extra:
                counts += f"; {float(item.extra['seconds']):.1f} s by its own clock"
        rows.append([item.name, f"{item.wall:.1f}", f"{item.peak_mib:.0f}", counts])
    return rows


def goal_checks(runs: dict[str, Measured]) -> list[tuple[bool, str]]:
    """(holds, sentence) for each goal that this run can judge."""
    checks = []
    first, second, datahub = runs.get("first"), runs.get("second"), runs.get("datahub")
    if first and datahub:
        checks.append((first.wall < datahub.wall,
                       f"first sync faster than DataHub's extraction alone: {first.wall:.1f} s vs {datahub.wall:.1f} s "
                       f"({first.wall / datahub.wall:.2f}x)"))
        checks.append((first.peak_kib < datahub.peak_kib,
                       f"first sync peaks lower in memory than DataHub: {first.peak_mib:.0f} MiB vs "
                       f"{datahub.peak_mib:.0f} MiB ({first.peak_kib / datahub.peak_kib:.2f}x)"))
    if first and second:
        # A sync's duration is the run's own (what the run page and the API report): syncs run in
        # a long-lived worker, so starting Python and Django is not part of one. The process's
        # wall time, start-up included, is shown beside it.
        share_process = second.wall / first.wall
        own = [item.extra.get("seconds") for item in (first, second)]
        if all(isinstance(value, (int, float)) and value for value in own):
            checks.append((own[1] / own[0] < NO_CHANGE_SHARE,
                           f"no-change sync under a fifth of the first, by the runs' own durations: "
                           f"{own[1]:.1f} s / {own[0]:.1f} s = {own[1] / own[0]:.2f}"))
        checks.append((share_process < NO_CHANGE_SHARE,
                       f"no-change sync under a fifth of the first, by process wall time (Python and Django "
                       f"start-up included): {second.wall:.1f} s / {first.wall:.1f} s = {share_process:.2f}"))
    return checks


def checks_lines(run: dict, bullet: str) -> list[str]:
    lines = [f"{bullet}{'holds' if holds else 'MISSED'}: {sentence}" for holds, sentence in run["checks"]]
    if not run["checks"]:
        lines.append(f"{bullet}no goal could be checked in this run")
    lines += [f"{bullet}WARNING: {surprise}" for surprise in run["surprises"]]
    return lines


def warehouse_text(run: dict) -> str:
    census, shape = run["warehouse"], run["shape"]
    built = (f"built in {run['build_seconds']:.1f} s" if run["build_seconds"] is not None
             else "reused from an earlier run")
    return (f"{run['warehouse_name']}: {census['schemas']} schemas, {census['tables']:,} tables of "
            f"{shape.columns} columns ({census['table_columns']:,} columns), {census['views']} views "
            f"({census['view_columns']} columns), {shape.rows} rows a table, "
            f"{census['bytes'] / 2**20:.0f} MiB; {built}")


def report_plain(run: dict) -> str:
    lines = [
        f"Warehouse sync benchmark, {run['date']}, commit {run['commit']}: {run['command']}",
        f"Machine: {run['machine']}",
        f"Machine load (1 min): {run['load']}",
        f"DataHub: {run['datahub']}",
        f"Measured with: {run['measured_with']}",
        "",
        "Warehouse " + warehouse_text(run),
        "",
        plain_table(RUN_HEADERS, run_rows(run)),
        "",
        "Goals:",
        *checks_lines(run, "  "),
    ]
    if run["notes"]:
        lines += ["", *run["notes"]]
    return "\n".join(lines)


def report_markdown(run: dict) -> str:
    lines = [
        "## Warehouse sync (bench/sync.py)",
        "",
        "```",
        run["command"],
        "```",
        "",
        f"Run on {run['date']} at commit {run['commit']}. {run['machine']}. Machine {run['load']} (1 min). "
        f"DataHub: {run['datahub']}.",
        "",
        "Warehouse " + warehouse_text(run) + ". " + run["measured_with"][0].upper() + run["measured_with"][1:] + ":",
        "",
        # The counts are text: left-aligned like the run's name.
        markdown_table(RUN_HEADERS, run_rows(run)).replace("| ---: |\n", "| --- |\n", 1),
        "",
        *checks_lines(run, "- "),
    ]
    if run["notes"]:
        lines += ["", *(f"- {note}" for note in run["notes"])]
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemas", type=int, default=SCHEMAS, help=f"schemas in the warehouse (default {SCHEMAS})")
    parser.add_argument("--tables", type=int, default=TABLES, help=f"tables per schema (default {TABLES})")
    parser.add_argument("--columns", type=int, default=COLUMNS, help=f"columns per table (default {COLUMNS})")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows per table (default {ROWS})")
    parser.add_argument("--warehouse", default=DEFAULT_WAREHOUSE,
                        help=f"warehouse database on 127.0.0.1 (default {DEFAULT_WAREHOUSE})")
    parser.add_argument("--rebuild", action="store_true", help="drop and rebuild the warehouse even if it has the shape")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help=f"catalog database to drop and recreate (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--datahub-venv", type=Path, default=DEFAULT_DATAHUB_VENV,
                        help="DataHub's own venv, created when missing (default bench/.venv-datahub)")
    parser.add_argument("--datahub-version", default=DATAHUB_VERSION,
                        help=f"acryl-datahub version to install in a new venv (default {DATAHUB_VERSION})")
    parser.add_argument("--skip-datahub", action="store_true", help="leave DataHub out")
    parser.add_argument("--skip-sync", action="store_true", help="leave the catalog's sync out")
    parser.add_argument("--markdown", action="store_true", help="also print the results as a markdown section")
    args = parser.parse_args()
    if not 1 <= args.schemas <= 100 or not 2 <= args.tables <= 1000:
        parser.error("--schemas must be between 1 and 100, --tables between 2 and 1000")
    if not 7 <= args.columns <= len(COLUMN_POOL) + 1:
        parser.error(f"--columns must be between 7 and {len(COLUMN_POOL) + 1}")
    if not 0 <= args.rows <= 1000:
        parser.error("--rows must be between 0 and 1000")
    args.datahub_venv = args.datahub_venv.resolve()
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


def main() -> int:
    args = arguments()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))
    if not Path(GNU_TIME).exists():
        raise BenchmarkError(f"{GNU_TIME} (GNU time) is needed to measure peak memory.")
    warehouse_name_check(args.warehouse)
    config = parse_database_url(args.database_url)
    if config["NAME"] == args.warehouse:
        raise BenchmarkError("The catalog and the warehouse must be different databases.")
    shape = Shape(args.schemas, args.tables, args.columns, args.rows)
    load_before = os.getloadavg()[0]
    commit = git_commit()

    census = warehouse_census(args.warehouse)
    build_seconds = None
    if args.rebuild or not warehouse_has_shape(census, shape):
        reason = "--rebuild" if args.rebuild else ("missing" if census is None else "not of the expected shape")
        progress(f"building warehouse {args.warehouse} ({reason}): {shape.marker}")
        build_seconds = warehouse_build(args.warehouse, shape)
        census = warehouse_census(args.warehouse)
        if not warehouse_has_shape(census, shape):
            raise BenchmarkError(f"The warehouse built does not have the expected shape: {census}")
    else:
        progress(f"reusing warehouse {args.warehouse}: {shape.marker}")
    objects = census["tables"] + census["views"]

    runs: dict[str, Measured] = {}
    notes: list[str] = []
    datahub_versions = "left out (--skip-datahub)"
    if not args.skip_datahub:
        versions = datahub_venv_ensure(args.datahub_venv, args.datahub_version)
        datahub, sqlalchemy, psycopg2 = versions.split()
        datahub_versions = (f"acryl-datahub[postgres] {datahub} in its own venv (SQLAlchemy {sqlalchemy}, "
                            f"psycopg2-binary {psycopg2}), `datahub ingest` with a file sink")
        progress(f"running DataHub {datahub}: datahub ingest (postgres source, file sink)")
        runs["datahub"] = datahub_run(args.datahub_venv, args.warehouse)
        progress(f"  {runs['datahub'].wall:.1f} s, {runs['datahub'].peak_mib:.0f} MiB, "
                 f"{datahub_counts_text(runs['datahub'].extra)}")
        if datahub != DATAHUB_VERSION:
            notes.append(f"DataHub {datahub} was measured, not {DATAHUB_VERSION}.")

    surprises: list[str] = []
    if args.skip_sync:
        notes.append("The catalog's sync was left out (--skip-sync).")
    elif not sync_commands_exist():
        notes.append("The catalog's sync was not measured: catalog/management/commands/sync_store.py and "
                     "connection_set.py do not exist yet.")
    else:
        with tempfile.TemporaryDirectory(prefix="catalog-bench-sync-") as var_dir:
            environment = catalog_environment(args.database_url, var_dir)
            progress(f"recreating catalog database {config['NAME']} and migrating it")
            database_recreate(config)
            for name, command in (
                ("migrate", manage("migrate", "--noinput")),
                ("connection_set", manage(
                    "connection_set", STORE_NAME, "--platform", "postgresql", "--kind", "analytical",
                    "--host", WAREHOUSE_HOST, "--port", str(WAREHOUSE_PORT), "--database", args.warehouse,
                    "--username", WAREHOUSE_USER)),
            ):
                completed = subprocess.run(command, cwd=BASE_DIR, env=environment, capture_output=True, text=True)
                if completed.returncode != 0:
                    raise RunFailed(f"manage.py {name} exited with {completed.returncode}:\n"
                                    f"{(completed.stdout + completed.stderr)[-3000:]}")
            for key, label in (("first", "catalog first sync (extract + write)"),
                               ("second", "catalog second sync (no change)")):
                progress(f"running the {key} sync: manage.py sync_store {STORE_NAME}")
                run = checked(measure(label, manage("sync_store", STORE_NAME), environment=environment,
                                      log_name=f"sync_{key}"))
                run.extra = sync_result(run)
                runs[key] = run
                progress(f"  {run.wall:.1f} s, {run.peak_mib:.0f} MiB, {sync_counts_text(run.extra)}")
            catalog = catalog_census(config)
        surprises = sync_surprises(runs["first"].extra, runs["second"].extra, objects)
        if catalog["datasets"] != objects:
            surprises.append(f"the catalog holds {catalog['datasets']:,} datasets of the store, "
                             f"not the warehouse's {objects:,} tables and views")
        for key in ("first", "second"):
            timings = runs[key].extra.get("timings") or {}
            if timings:
                ordered = sorted(timings, key=lambda name: (PHASE_ORDER.index(name) if name in PHASE_ORDER
                                                            else len(PHASE_ORDER), name))
                notes.append(f"Phases of the {key} sync by its own timings, s: "
                             + ", ".join(f"{name} {float(timings[name]):.1f}" for name in ordered) + ".")
        if catalog["versions"] != catalog["datasets"]:
            surprises.append(f"the store's {catalog['datasets']:,} datasets have {catalog['versions']:,} versions "
                             "after a first sync and a sync with nothing changed, not one each")
        notes.append(f"After both syncs the catalog holds {catalog['datasets']:,} datasets of the store with "
                     f"{catalog['columns']:,} current columns and {catalog['versions']:,} versions.")

    import django

    with warehouse_connect("postgres", autocommit=True) as admin:
        postgres_version = admin.execute("SHOW server_version").fetchone()[0]
    order = [key for key in ("datahub", "first", "second") if key in runs]
    run = {
        "date": dt.date.today().isoformat(),
        "commit": commit,
        "command": " ".join([".venv/bin/python", "bench/sync.py", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} cores, {memory_gib()} RAM, Python {platform.python_version()}, "
                   f"Django {django.get_version()}, PostgreSQL {postgres_version} on 127.0.0.1",
        "load": f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
        "datahub": datahub_versions,
        "measured_with": "each run is its own process under GNU time (`/usr/bin/time -f '%e %M'`): wall seconds "
                         "and peak resident set size of that process; the catalog's syncs run `manage.py "
                         "sync_store` with config.settings.local, DEBUG off, no Redis",
        "warehouse_name": args.warehouse,
        "warehouse": census,
        "shape": shape,
        "build_seconds": build_seconds,
        "runs": [runs[key] for key in order],
        "checks": goal_checks(runs),
        "surprises": surprises,
        "notes": notes,
    }
    if "datahub" in runs:
        aspects = ", ".join(f"{name} {count:,}" for name, count in runs["datahub"].extra["aspects"].items())
        notes.insert(0, f"DataHub wrote {runs['datahub'].extra['bytes'] / 2**20:.1f} MiB of workunits; "
                        f"aspects: {aspects}.")
    print(report_plain(run))
    if args.markdown:
        print("\n" + report_markdown(run))
    missed = any(not holds for holds, _ in run["checks"])
    return 1 if missed or surprises else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as exc:
        print(f"bench/sync.py: {exc}", file=sys.stderr)
        sys.exit(2)
