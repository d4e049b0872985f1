"""Registration benchmark: datasets/s and latency through the API, and queries per registration.

    .venv/bin/python bench/register.py -n 1000 [--concurrency 1] [--markdown]

What it does, in order (it stops by itself and only talks to 127.0.0.1):

1. Drops and recreates its own PostgreSQL database (default ``catalog_bench``), migrates it,
   and, through the project's services, creates the default roles, a store and a service
   account with the ``data_engineer`` role.
2. Starts gunicorn on ``config.wsgi`` with the production settings (DEBUG off, SSL redirect
   off, ALLOWED_HOSTS=127.0.0.1, a generated SECRET_KEY), 2 workers, and waits for it.
3. POSTs N new datasets of 20 columns with ``Authorization: Token <key>`` over keep-alive
   HTTP, then sends each schema again (200, nothing changes), then a changed schema
   (201, a new version). Every status code and version number is checked; the run aborts
   on the first unexpected one. Reports datasets/s and p50/p95/max latency per phase.
4. In-process, counts the SQL queries of one registration with 5, 20, 100 and 500 columns
   (new dataset, same schema again, new version changing half the columns), both through
   the service ``dataset_register`` and through the whole API request (``APIClient`` with
   the token), and says whether the counts stay constant as the number of columns grows.

The server is stopped at the end, also on errors and Ctrl-C; the database is left for
inspection and dropped by the next run. gunicorn uses ``gthread`` workers because the
``sync`` worker closes every connection (``--worker-class sync`` to compare). Timings are
only ever recorded here and in docs/benchmarks.md, never asserted in tests.
"""

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Databases other people use on this machine; the benchmark drops its database, so never these.
PROTECTED_DATABASES = {"postgres", "template0", "template1", "catalog_main"}
HOST = "127.0.0.1"
API_PATH = "/api/v1/datasets/"
STORE_NAME = "bench"
HTTP_COLUMNS = 20
QUERY_COLUMN_COUNTS = (5, 20, 100, 500)
TIMING_REPEATS = 3
SERVER_START_SECONDS = 120
REQUEST_TIMEOUT_SECONDS = 60
GUNICORN_WORKERS = 2

TYPES = ("STRING", "INT64", "FLOAT64", "TIMESTAMP", "BOOL", "NUMERIC")
SENSITIVITIES = ("Public", "Regular", "Regular", "Sensitive", "Restricted")
SOURCES = ("transactional:Reviews", "transactional:Users", "mlmodel:Sentiment", "")


class BenchmarkError(Exception):
    """Something the benchmark did not expect: it stops and says what."""


# --- payloads ---------------------------------------------------------------------------------


def column(index: int) -> dict:
    """A deterministic column with a mix of types, sensitivities, protections and sources."""
    sensitivity = SENSITIVITIES[index % len(SENSITIVITIES)]
    protection = {"Sensitive": "Masked", "Restricted": "Hashed" if index % 2 else "Encrypted"}.get(
        sensitivity, "None"
    )
    spec = {
        "name": f"col_{index:04d}",
        "description": f"Column {index} of the benchmark schema",
        "mode": "REQUIRED" if index == 0 else "NULLABLE",
        "type": TYPES[index % len(TYPES)],
        "sensitivity": sensitivity,
        "protection": protection,
    }
    source = SOURCES[index % len(SOURCES)]
    if source:
        spec["originatingSource"] = source
    return spec


def columns_v1(count: int) -> list[dict]:
    return [column(index) for index in range(count)]


def columns_v2(count: int) -> list[dict]:
    """The v1 schema with its second half changed: a quarter retyped, a quarter replaced.

    That exercises every write of a new version: kept columns updated, removed ones
    deleted, new ones inserted.
    """
    columns = columns_v1(count)
    changed = count // 2
    first_changed = count - changed
    retyped = changed // 2
    for index in range(first_changed, first_changed + retyped):
        old = columns[index]
        columns[index] = {
            **old,
            "type": "INT64" if old["type"] == "STRING" else "STRING",
            "description": f"{old['description']} (retyped in v2)",
        }
    for index in range(first_changed + retyped, count):
        columns[index] = {**column(index), "name": f"col_{index:04d}_v2"}
    return columns


def registration(name: str, columns: list[dict], *, version: str = "1") -> dict:
    """A registration body in the security guidance's format, plus name and store."""
    return {
        "name": f"perf.{name}",
        "store": STORE_NAME,
        "registrationTime": "1623167711",
        "registeredBy": "bench/register.py",
        "description": "Registered by the registration benchmark",
        "version": version,
        "columns": columns,
    }


# --- setup ------------------------------------------------------------------------------------


def parse_database_url(url: str) -> dict:
    import dj_database_url

    config = dj_database_url.parse(url)
    if "postgresql" not in config["ENGINE"]:
        raise BenchmarkError(f"The benchmark runs on PostgreSQL only, not {config['ENGINE']}.")
    if config.get("HOST") not in LOCAL_HOSTS:
        raise BenchmarkError(f"The benchmark only talks to 127.0.0.1; DATABASE_URL points at {config.get('HOST')!r}.")
    name = config["NAME"]
    if name in PROTECTED_DATABASES or name.startswith("catalog_ui") or "bench" not in name:
        raise BenchmarkError(
            f"Refusing to drop database {name!r}: the benchmark's database name must contain 'bench'."
        )
    return config


def database_recreate(config: dict) -> str:
    """Drop and create the benchmark database; return the server version."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=config["HOST"],
        port=config.get("PORT") or 5432,
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as admin:
        name = sql.Identifier(config["NAME"])
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
        return admin.execute("SHOW server_version").fetchone()[0]


def server_environment(database_url: str, var_dir: str) -> dict:
    """The environment both gunicorn and the in-process part run with."""
    environment = {
        key: value
        for key, value in os.environ.items()
        # Keep the run self-contained: no shared Redis, no settings from the caller's shell.
        if key not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"}
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_urlsafe(64),
        DEBUG="false",
        SECURE_SSL_REDIRECT="false",
        ALLOWED_HOSTS=HOST,
        CATALOG_VAR_DIR=var_dir,
        STATIC_ROOT=str(Path(var_dir) / "static"),
        LOG_LEVEL="WARNING",
        # Production settings need a master key for connection secrets; a throwaway one per run.
        CATALOG_MASTER_KEYS="bench:" + base64.b64encode(os.urandom(32)).decode(),
    )
    return environment


def catalog_prepare() -> tuple[int, str]:
    """Migrate, then create the roles, the store and the data engineer's service account."""
    from django.core.management import call_command

    from access.services import role_ensure_defaults, service_account_create
    from catalog.services import store_save

    call_command("migrate", interactive=False, verbosity=0)
    role_ensure_defaults()
    platform_account, _ = service_account_create(name="bench-platform", role_slug="platform_engineer")
    store_save(
        principal=platform_account,
        name=STORE_NAME,
        kind="analytical",
        platform="postgresql",
        environment="prod",
        residency="CA",
        line_of_business="benchmarks",
        description="Datasets registered by bench/register.py.",
    )
    engineer, key = service_account_create(name="bench-pipeline", role_slug="data_engineer")
    return engineer.pk, key


# --- the HTTP server --------------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((HOST, port)) != 0


def gunicorn_command(port: int, worker_class: str, workers: int = GUNICORN_WORKERS) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "config.wsgi:application",
        "--bind", f"{HOST}:{port}",
        "--workers", str(workers),
        "--worker-class", worker_class,
        "--threads", "1",
        # Longer than any pause between two requests of one connection.
        "--keep-alive", "30",
        "--timeout", "120",
        "--chdir", str(BASE_DIR),
        "--log-level", "warning",
        # The default control socket is shared per user ($HOME/.gunicorn); other servers may own it.
        "--no-control-socket",
    ]


class Server:
    """gunicorn in its own process group, stopped by its pid however the run ends."""

    def __init__(self, command: list[str], environment: dict, log_path: Path):
        self.command = command
        self.environment = environment
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self):
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command, cwd=BASE_DIR, env=self.environment, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_until_ready(self, port: int, key: str):
        """Wait for an authenticated answer, then warm the workers up (imports, DB connections)."""
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchmarkError(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.get(port, key, "/api/v1/stores/")
            except (ConnectionError, socket.timeout, http.client.HTTPException):
                time.sleep(0.2)
                continue
            # Each new connection may land on either worker; a few of them reach both.
            for _ in range(16):
                self.get(port, key, "/api/v1/datasets/?page_size=1")
            return
        raise BenchmarkError(f"gunicorn did not answer within {SERVER_START_SECONDS}s:\n{self.log_tail()}")

    @staticmethod
    def get(port: int, key: str, path: str):
        connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
        try:
            connection.request("GET", path, headers={"Authorization": f"Token {key}"})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise BenchmarkError(f"GET {path} answered {response.status}: {body[:500]!r}")

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # gunicorn's master stops its workers on SIGTERM
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


# --- the HTTP phases --------------------------------------------------------------------------


class ApiConnection:
    """One keep-alive connection; http.client reconnects by itself if the server closes it."""

    def __init__(self, port: int, key: str):
        self.connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
        self.headers = {
            "Authorization": f"Token {key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.connects = 0

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.connection.sock is None:
            self.connects += 1
        self.connection.request("POST", path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self):
        self.connection.close()


@dataclass
class Phase:
    name: str
    description: str
    expected_status: int
    expected_version: int
    body_for: Callable[[int], dict]  # index -> registration body
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    connections: int = 0


def phase_run(phase: Phase, *, count: int, concurrency: int, port: int, key: str):
    """Send ``count`` registrations from ``concurrency`` threads; stop at the first surprise."""
    latencies: list[float | None] = [None] * count
    failures: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()
    next_index = iter(range(count))
    connections = []

    def worker():
        api = ApiConnection(port, key)
        connections.append(api)
        try:
            while not stop.is_set():
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                body = json.dumps(phase.body_for(index)).encode()
                started = time.perf_counter()
                status, answer = api.post(API_PATH, body)
                latencies[index] = time.perf_counter() - started
                if status != phase.expected_status:
                    raise BenchmarkError(
                        f"{phase.name}: request {index} answered {status}, expected "
                        f"{phase.expected_status}: {answer[:500]!r}"
                    )
                version = json.loads(answer).get("versionNumber")
                if version != phase.expected_version:
                    raise BenchmarkError(
                        f"{phase.name}: request {index} returned version {version}, expected {phase.expected_version}."
                    )
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failures.append(exc)
            stop.set()
        finally:
            api.close()

    threads = [threading.Thread(target=worker, name=f"{phase.name}-{n}", daemon=True) for n in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.seconds = time.perf_counter() - started
    if failures:
        raise failures[0]
    phase.latencies = [latency for latency in latencies if latency is not None]
    if len(phase.latencies) != count:
        raise BenchmarkError(f"{phase.name}: {count - len(phase.latencies)} requests were not sent.")
    phase.connections = sum(api.connects for api in connections)


def percentile(sorted_values: list[float], percent: float) -> float:
    """Nearest-rank percentile (no interpolation), so a figure is always a measured latency."""
    rank = max(1, -(-len(sorted_values) * percent // 100))
    return sorted_values[int(rank) - 1]


def phase_figures(phase: Phase) -> dict:
    values = sorted(phase.latencies)
    return {
        "phase": phase.name,
        "description": phase.description,
        "requests": len(values),
        "status": phase.expected_status,
        "per_second": len(values) / phase.seconds,
        "mean_ms": 1000 * sum(values) / len(values),
        "p50_ms": 1000 * percentile(values, 50),
        "p95_ms": 1000 * percentile(values, 95),
        "max_ms": 1000 * values[-1],
        "connections": phase.connections,
    }


# --- queries per registration -----------------------------------------------------------------


@dataclass
class QueryCount:
    path: str
    case: str
    columns: int
    queries: list[str]


def query_counts(engineer_pk: int, key: str) -> list[QueryCount]:
    """Count the SQL of one registration per (path, case, number of columns)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from access.models import User
    from catalog.models import Dataset
    from catalog.services import dataset_register

    def via_service(payload):
        principal = User.objects.get(pk=engineer_pk)  # fresh, so its roles are read as in a request
        with CaptureQueriesContext(connection) as captured:
            dataset, created = dataset_register(principal=principal, payload=payload)
        return captured, (201 if created else 200), dataset.pk

    client = APIClient(HTTP_HOST=HOST)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    def via_api(payload):
        # The token's "last used" time is written at most once a minute: let a cheap request take
        # that write, so a slow run does not count it against whichever case comes a minute later.
        client.get("/api/v1/stores/")
        with CaptureQueriesContext(connection) as captured:
            response = client.post(API_PATH, payload, format="json")
        if response.status_code not in (200, 201):
            raise BenchmarkError(f"In-process API answered {response.status_code}: {response.content[:500]!r}")
        return captured, response.status_code, response.json()["id"]

    results = []
    for path, register in (("service", via_service), ("api", via_api)):
        for count in QUERY_COLUMN_COUNTS:
            name = f"queries_{path}_{count:04d}"
            cases = (
                ("new dataset", registration(name, columns_v1(count)), 201, 1),
                ("same schema", registration(name, columns_v1(count)), 200, 1),
                ("new version", registration(name, columns_v2(count), version="2"), 201, 2),
            )
            for case, payload, expected_status, expected_version in cases:
                captured, status, dataset_pk = register(payload)
                dataset = Dataset.objects.select_related("current_version").get(pk=dataset_pk)
                if (
                    status != expected_status
                    or dataset.current_version.number != expected_version
                    or dataset.columns.count() != count
                ):
                    raise BenchmarkError(
                        f"{path} {case} with {count} columns: status {status}, version "
                        f"{dataset.current_version.number}, {dataset.columns.count()} columns."
                    )
                results.append(QueryCount(path, case, count, [query["sql"] for query in captured.captured_queries]))
    return results


def service_timings(engineer_pk: int) -> list[dict]:
    """Wall time of ``dataset_register`` in-process (no query capture), median of a few runs."""
    from access.models import User
    from catalog.services import dataset_register

    samples: dict[tuple[str, int], list[float]] = {}
    for count in QUERY_COLUMN_COUNTS:
        for repeat in range(TIMING_REPEATS):
            name = f"timing_{count:04d}_{repeat}"
            cases = (
                ("new dataset", registration(name, columns_v1(count))),
                ("same schema", registration(name, columns_v1(count))),
                ("new version", registration(name, columns_v2(count), version="2")),
            )
            for case, payload in cases:
                principal = User.objects.get(pk=engineer_pk)
                started = time.perf_counter()
                dataset_register(principal=principal, payload=payload)
                samples.setdefault((case, count), []).append(time.perf_counter() - started)
    rows = {}
    for (case, count), values in samples.items():
        rows.setdefault(case, {"case": case, "ms": {}})["ms"][count] = 1000 * sorted(values)[len(values) // 2]
    return list(rows.values())


def query_table(counts: list[QueryCount]) -> list[dict]:
    """One row per (path, case): the count for each number of columns, and whether it is constant."""
    rows = {}
    for item in counts:
        row = rows.setdefault((item.path, item.case), {"path": item.path, "case": item.case, "counts": {}})
        row["counts"][item.columns] = len(item.queries)
    for row in rows.values():
        row["constant"] = len(set(row["counts"].values())) == 1
    return list(rows.values())


def growing_queries(counts: list[QueryCount], table: list[dict]) -> str:
    """The query lists, smallest and largest schema, of every case whose count grows."""
    lines = []
    for row in table:
        if row["constant"]:
            continue
        for count in (min(QUERY_COLUMN_COUNTS), max(QUERY_COLUMN_COUNTS)):
            item = next(i for i in counts if (i.path, i.case, i.columns) == (row["path"], row["case"], count))
            lines.append(f"-- {row['path']} / {row['case']} / {count} columns: {len(item.queries)} queries")
            lines.extend(f"{n:3d}. {sql[:300]}" for n, sql in enumerate(item.queries, start=1))
    return "\n".join(lines)


# --- output -----------------------------------------------------------------------------------


def memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "?"


def plain_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    def line(cells):
        return "  ".join(str(cell).rjust(width) if n else str(cell).ljust(width)
                         for n, (cell, width) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def markdown_table(headers: list[str], rows: list[list[str]], *, text_columns: int = 1) -> str:
    align = ["---"] * text_columns + ["---:"] * (len(headers) - text_columns)
    return "\n".join(
        "| " + " | ".join(str(cell) for cell in cells) + " |" for cells in [headers, align, *rows]
    )


HTTP_HEADERS = ["phase", "requests", "status", "datasets/s", "mean ms", "p50 ms", "p95 ms", "max ms", "connections"]


def http_rows(figures: list[dict]) -> list[list[str]]:
    return [
        [f["phase"], f["requests"], f["status"], f"{f['per_second']:.1f}", f"{f['mean_ms']:.1f}",
         f"{f['p50_ms']:.1f}", f"{f['p95_ms']:.1f}", f"{f['max_ms']:.1f}", f["connections"]]
        for f in figures
    ]


def query_headers() -> list[str]:
    return ["path", "case", *(f"{count} cols" for count in QUERY_COLUMN_COUNTS), "constant"]


def query_rows(table: list[dict]) -> list[list[str]]:
    return [
        [row["path"], row["case"], *(row["counts"][count] for count in QUERY_COLUMN_COUNTS),
         "yes" if row["constant"] else "NO"]
        for row in table
    ]


def timing_headers() -> list[str]:
    return ["case", *(f"{count} cols" for count in QUERY_COLUMN_COUNTS)]


def timing_rows(rows: list[dict]) -> list[list[str]]:
    return [[row["case"], *(f"{row['ms'][count]:.1f}" for count in QUERY_COLUMN_COUNTS)] for row in rows]


def report_plain(run: dict) -> str:
    return "\n".join([
        f"Registration benchmark, {run['date']}: {run['command']}",
        f"Machine: {run['machine']}",
        f"Server: {run['server']}",
        f"Machine load (1 min): {run['load']}",
        "",
        f"HTTP: {run['count']} datasets of {HTTP_COLUMNS} columns, concurrency {run['concurrency']}",
        plain_table(HTTP_HEADERS, http_rows(run["http"])),
        "",
        *(f"  {f['phase']}: {f['description']}" for f in run["http"]),
        "",
        "SQL queries per registration (in-process, one registration each):",
        plain_table(query_headers(), query_rows(run["queries"])),
        "",
        run["verdict"],
        "",
        f"dataset_register wall time in-process, ms (median of {TIMING_REPEATS}, no HTTP):",
        plain_table(timing_headers(), timing_rows(run["timings"])),
    ])


def report_markdown(run: dict) -> str:
    return "\n".join([
        "## Registration (bench/register.py)",
        "",
        "```",
        run["command"],
        "```",
        "",
        f"Run on {run['date']}. {run['machine']}. {run['server']}. Machine {run['load']} (1 min).",
        "",
        f"{run['count']} datasets of {HTTP_COLUMNS} columns registered over HTTP with a service token, "
        f"concurrency {run['concurrency']}:",
        "",
        markdown_table(HTTP_HEADERS, http_rows(run["http"])),
        "",
        *(f"- *{f['phase']}*: {f['description']}" for f in run["http"]),
        "",
        "SQL queries of one registration, by number of columns (`service` is `dataset_register`; "
        "`api` is the whole `POST /api/v1/datasets/` request, token authentication and response included):",
        "",
        markdown_table(query_headers(), query_rows(run["queries"]), text_columns=2),
        "",
        run["verdict"],
        "",
        f"Wall time of `dataset_register` in-process, ms (median of {TIMING_REPEATS}, no HTTP, no query capture):",
        "",
        markdown_table(timing_headers(), timing_rows(run["timings"])),
    ])


# --- main -------------------------------------------------------------------------------------


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="datasets to register over HTTP (default 1000)")
    parser.add_argument("--concurrency", type=int, default=1, help="parallel keep-alive connections (default 1)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help=f"PostgreSQL database to drop and recreate (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--port", type=int, default=8021, help="port for gunicorn on 127.0.0.1 (default 8021)")
    parser.add_argument("--workers", type=int, default=GUNICORN_WORKERS,
                        help=f"gunicorn workers (default {GUNICORN_WORKERS}; production runs 3, docs/operations.md; "
                             "concurrency N needs N workers to run N registrations at once)")
    parser.add_argument("--worker-class", choices=["gthread", "sync"], default="gthread",
                        help="gunicorn worker class (default gthread; sync closes every connection)")
    parser.add_argument("--markdown", action="store_true", help="also print the results as a markdown section")
    parser.add_argument("--show-queries", action="store_true", help="print the SQL of the 20-column cases")
    args = parser.parse_args()
    if not 1 <= args.n <= 100_000:
        parser.error("-n must be between 1 and 100000")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    if not 1 <= args.workers <= 32:
        parser.error("--workers must be between 1 and 32")
    if args.port == 8000 or not 1024 <= args.port <= 65535:
        parser.error("--port must be between 1024 and 65535, and not 8000")
    return args


def progress(message: str):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def main() -> int:
    args = arguments()
    # SIGTERM and SIGHUP unwind like Ctrl-C, so the server is stopped on the way out.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))

    config = parse_database_url(args.database_url)
    load_before = os.getloadavg()[0]
    if not port_is_free(args.port):
        raise BenchmarkError(f"Port {args.port} on {HOST} is already in use.")
    with tempfile.TemporaryDirectory(prefix="catalog-bench-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        Path(environment["STATIC_ROOT"]).mkdir()
        os.environ.update(environment)
        for name in ("REDIS_URL",):
            os.environ.pop(name, None)

        progress(f"recreating database {config['NAME']}")
        postgres_version = database_recreate(config)

        import django
        import gunicorn

        django.setup()
        from django.db import connections

        progress("migrating and creating the store and the service account")
        engineer_pk, key = catalog_prepare()
        connections.close_all()

        command = gunicorn_command(args.port, args.worker_class, args.workers)
        server = Server(command, environment, Path(var_dir) / "gunicorn.log")
        try:
            progress(f"starting gunicorn on {HOST}:{args.port}")
            server.start()
            server.wait_until_ready(args.port, key)
            count = args.n
            phases = [
                Phase("new dataset", f"a new dataset of {HTTP_COLUMNS} columns (201)", 201, 1,
                      lambda i: registration(f"http_{i:06d}", columns_v1(HTTP_COLUMNS))),
                Phase("same schema", "the same registration sent again (200, nothing written but the dataset row)",
                      200, 1, lambda i: registration(f"http_{i:06d}", columns_v1(HTTP_COLUMNS))),
                Phase("new version", f"half of the {HTTP_COLUMNS} columns changed: {HTTP_COLUMNS // 4} retyped, "
                      f"{HTTP_COLUMNS // 2 - HTTP_COLUMNS // 4} replaced by new ones (201)",
                      201, 2, lambda i: registration(f"http_{i:06d}", columns_v2(HTTP_COLUMNS), version="2")),
            ]
            for phase in phases:
                progress(f"HTTP phase '{phase.name}': {count} requests, concurrency {args.concurrency}")
                phase_run(phase, count=count, concurrency=args.concurrency, port=args.port, key=key)
        except BaseException:
            tail = server.log_tail()
            if tail:
                progress(f"gunicorn log (last lines):\n{tail}")
            raise
        finally:
            server.stop()
            progress("gunicorn stopped")

        from catalog.models import Dataset, DatasetVersion

        registered = Dataset.objects.filter(store__name=STORE_NAME).count()
        versions = DatasetVersion.objects.filter(dataset__store__name=STORE_NAME).count()
        if (registered, versions) != (count, 2 * count):
            raise BenchmarkError(f"Expected {count} datasets and {2 * count} versions, found {registered} and {versions}.")

        progress("counting queries per registration in-process")
        counts = query_counts(engineer_pk, key)
        table = query_table(counts)
        progress("timing dataset_register in-process")
        timings = service_timings(engineer_pk)
        connections.close_all()

    constant = all(row["constant"] for row in table)
    verdict = (
        "Queries per registration are constant from "
        f"{min(QUERY_COLUMN_COUNTS)} to {max(QUERY_COLUMN_COUNTS)} columns in every case."
        if constant
        else "WARNING: queries per registration grow with the number of columns (see the query lists)."
    )
    run = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/register.py", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} cores, {memory_gib()} RAM, Python {platform.python_version()}, "
                   f"Django {django.get_version()}, PostgreSQL {postgres_version} on 127.0.0.1",
        "server": f"gunicorn {gunicorn.__version__}, {args.workers} {args.worker_class} workers "
                  "(1 thread each), config.settings.production with DEBUG off",
        "count": count,
        "concurrency": args.concurrency,
        "http": [phase_figures(phase) for phase in phases],
        "load": f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
        "queries": table,
        "verdict": verdict,
        "timings": timings,
    }
    print(report_plain(run))
    if args.markdown:
        print("\n" + report_markdown(run))
    if args.show_queries:
        for item in counts:
            if item.columns == HTTP_COLUMNS:
                print(f"\n-- {item.path} / {item.case} / {item.columns} columns: {len(item.queries)} queries")
                print("\n".join(f"{n:3d}. {sql[:300]}" for n, sql in enumerate(item.queries, start=1)))
    if not constant:
        print("\n" + growing_queries(counts, table))
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as exc:
        print(f"bench/register.py: {exc}", file=sys.stderr)
        sys.exit(2)
