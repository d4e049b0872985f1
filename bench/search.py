"""Dataset search benchmark: full-text search with facets through the API on a large catalog.

    .venv/bin/python bench/search.py [--datasets 100000] [--columns 10] [--repeats 40] [--explain] [--markdown]

What it does, in order (it stops by itself and only talks to 127.0.0.1):

1. Drops and recreates its own PostgreSQL database (default ``catalog_bench_search``), migrates
   it, creates the default roles, 20 stores (three environments, five residencies), 500 owners
   and two service accounts: a data analyst (the role matrix lets analysts read the metadata of
   everything: no visibility filter) and an executive (aggregated datasets only: the search runs
   with a visibility filter).
2. Loads ``--datasets`` datasets with ``--columns`` columns each, 1-2 owners and 0-3 tags, with
   realistic names (``<store>.<domain>.<entity>_<suffix>_<n>``), descriptions and column names,
   in a few ``INSERT ... SELECT generate_series`` statements with the search triggers disabled,
   then builds every search document in one statement (``catalog_search_refresh``), timed.
3. Starts gunicorn on ``config.wsgi`` with the production settings (as bench/register.py does)
   and, for each user, sends each query of the mix ``--repeats`` times over one keep-alive
   connection after a warm-up, and reports p50/p95/max next to the goal (p95 <= 50 ms).
4. In-process, counts the SQL queries of each request, and with ``--explain`` prints
   EXPLAIN (ANALYZE, BUFFERS) of every query of a request slower than 5 ms.

The server is stopped at the end, also on errors and Ctrl-C; the database is left for
inspection (``--reuse`` runs again on it without reloading). Timings are recorded in
docs/benchmarks.md, never asserted in tests.
"""

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.register import (  # noqa: E402
    HOST,
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

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_search"
GOAL_P95_MS = 50.0
SLOW_QUERY_MS = 5.0
API = "/api/v1/datasets/"
# The fixed cost of an authenticated API request on this server under the same load: no search.
BASELINE, BASELINE_PATH = "baseline: own requests", "/api/v1/access/requests/?page_size=1"

# What people search for: the mix of the issue (single word, two words, a typo of a name, a facet
# filter, q and facets, nothing found), plus browsing without a search.
QUERIES = [
    ("one word, common", {"q": "customer"}),
    ("one word, rare", {"q": "refunds"}),
    ("two words", {"q": "customer email"}),
    ("typo of a name", {"q": "custmer"}),
    ("typo, rare name", {"q": "shipmnets"}),
    ("facet filter, no q", {"sensitivity": "Restricted"}),
    ("q + facets", {"q": "orders", "sensitivity": "Sensitive", "tag": "pii", "environment": "prod"}),
    ("q + owner facet", {"q": "payments", "owner": "owner_0007"}),
    ("no result", {"q": "zebrafish"}),
    ("no q, first page", {}),
]

DOMAINS = ["sales", "marketing", "finance", "hr", "ops", "product", "support", "risk", "logistics", "growth",
           "billing", "identity", "analytics", "crm", "fraud"]
ENTITIES = ["customers", "orders", "invoices", "payments", "sessions", "events", "reviews", "shipments", "tickets",
            "accounts", "subscriptions", "refunds", "campaigns", "leads", "employees", "transactions", "inventory",
            "products", "clicks", "devices", "addresses", "contracts", "suppliers", "returns", "carts"]
SUFFIXES = ["daily", "hourly", "raw", "clean", "agg", "snapshot", "v2", "history", "latest", "staging"]
COLUMNS = [
    ("id", "Surrogate key"), ("customer_id", "The customer who owns the row"), ("email", "Contact email address"),
    ("created_at", "When the row was created"), ("updated_at", "When the row last changed"),
    ("amount", "Amount in minor units"), ("currency", "ISO 4217 currency code"),
    ("country_code", "ISO 3166 country of the customer"), ("status", "Lifecycle status"),
    ("user_id", "The signed-in user"), ("order_id", "The order this belongs to"), ("phone", "Phone number, E.164"),
    ("full_name", "Name as the customer typed it"), ("street_address", "Postal address line"),
    ("ip_address", "Client IP address at the time"), ("session_id", "Web session"),
    ("product_id", "Catalog product"), ("unit_price", "Price per unit"), ("quantity", "How many"),
    ("birth_date", "Date of birth"), ("card_last4", "Last four digits of the payment card"),
    ("device_type", "Mobile, desktop or tablet"), ("campaign_code", "Marketing campaign tag"),
    ("risk_score", "Fraud model output between 0 and 1"), ("tax_id", "National tax identifier"),
]
TAGS = ["pii", "gdpr", "finance", "gold", "aggregated", "bronze", "ml-feature", "marketing", "sox", "daily-refresh"]
WORDS = ["daily", "extract", "of", "the", "customer", "orders", "for", "reporting", "joined", "with", "payments",
         "used", "by", "finance", "team", "marketing", "dashboards", "cleaned", "deduplicated", "events", "from",
         "web", "and", "mobile", "apps", "aggregated", "per", "country", "week", "refunds", "shipments", "support"]


def progress(message: str) -> None:
    print(f"[bench/search] {message}", file=sys.stderr, flush=True)


def _array(values) -> str:
    return "(ARRAY[" + ", ".join("'" + value.replace("'", "''") + "'" for value in values) + "])"


def catalog_load(*, datasets: int, columns: int) -> dict:
    """Roles, stores, owners, service accounts, then the datasets, columns, owners and documents."""
    from django.core.management import call_command
    from django.db import connection

    from access.models import User
    from access.services import role_ensure_defaults, service_account_create
    from catalog.models import DataStore

    call_command("migrate", interactive=False, verbosity=0)
    role_ensure_defaults()
    environments, residencies = ["prod", "prod", "staging", "dev"], ["CA", "US", "EU", "DE", "UK"]
    DataStore.objects.bulk_create([
        DataStore(name=f"store{n:02d}", kind="analytical", platform="postgresql",
                  environment=environments[n % len(environments)], residency=residencies[n % len(residencies)])
        for n in range(20)
    ])
    User.objects.bulk_create([
        User(username=f"owner_{n:04d}", first_name=f"First{n}", last_name=f"Last{n}", email=f"owner{n}@example.com")
        for n in range(500)
    ])
    _, analyst_key = service_account_create(name="bench-analyst", role_slug="data_analyst")
    _, executive_key = service_account_create(name="bench-executive", role_slug="executive")
    timings = {}
    with connection.cursor() as cursor:
        started = time.perf_counter()
        for table in ("catalog_dataset", "catalog_column", "catalog_dataset_owners"):
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        cursor.execute(f"""
            INSERT INTO catalog_dataset (store_id, schema, name, qualified_name, description, status, tags, needs_review,
                deprecated_by_sync, definition_fingerprint, sensitivity, classified, created_at, updated_at)
            SELECT s.id, d.domain, d.name, s.name || '.' || d.domain || '.' || d.name,
                initcap(w[1 + i % 32]) || ' ' || w[1 + (i * 7) % 32] || ' ' || w[1 + (i * 13) % 32] || ' '
                    || w[1 + (i * 17) % 32] || ' ' || w[1 + (i * 23) % 32] || ' ' || d.entity || ' for ' || d.domain,
                CASE WHEN i % 20 = 0 THEN 'deprecated' ELSE 'active' END,
                (SELECT coalesce(jsonb_agg(t[1 + (i * k) % 10]), '[]'::jsonb) FROM generate_series(1, i % 4) AS k),
                false, false, '', (i * 7) % 4, true, now(), now()
            FROM generate_series(1, {int(datasets)}) AS i
            CROSS JOIN LATERAL (SELECT {_array(DOMAINS)}[1 + i % {len(DOMAINS)}] AS domain,
                {_array(ENTITIES)}[1 + (i / 3) % {len(ENTITIES)}] AS entity,
                {_array(ENTITIES)}[1 + (i / 3) % {len(ENTITIES)}] || '_' || {_array(SUFFIXES)}[1 + (i / 7) % {len(SUFFIXES)}]
                    || '_' || i AS name) AS d
            CROSS JOIN LATERAL (SELECT id, name FROM catalog_datastore ORDER BY id OFFSET i % 20 LIMIT 1) AS s
            CROSS JOIN (SELECT {_array(WORDS)} AS w, {_array(TAGS)} AS t) AS vocabulary
        """)
        names = _array([name for name, _ in COLUMNS])
        descriptions = _array([description for _, description in COLUMNS])
        cursor.execute(f"""
            INSERT INTO catalog_column (dataset_id, position, name, description, mode, type,
                originating_source_kind, originating_source_name, sensitivity, protection)
            SELECT d.id, p, {names}[1 + (d.id * 3 + p * 7) % {len(COLUMNS)}] || CASE WHEN p >= {len(COLUMNS)} THEN '_' || p ELSE '' END,
                {descriptions}[1 + (d.id * 3 + p * 7) % {len(COLUMNS)}], 'NULLABLE', 'STRING', '', '',
                LEAST(d.sensitivity, (d.id + p) % 4),
                CASE WHEN LEAST(d.sensitivity, (d.id + p) % 4) = 3 THEN 'encrypted'
                     WHEN LEAST(d.sensitivity, (d.id + p) % 4) = 2 THEN (ARRAY['masked', 'hashed', 'tokenized', 'none'])[1 + p % 4]
                     ELSE 'none' END
            FROM catalog_dataset d CROSS JOIN generate_series(0, {int(columns) - 1}) AS p
        """)
        cursor.execute("""
            INSERT INTO catalog_dataset_owners (dataset_id, user_id)
            SELECT d.id, u.id FROM catalog_dataset d
            JOIN access_user u ON u.username = 'owner_' || lpad(((d.id * 31) % 500)::text, 4, '0')
            UNION
            SELECT d.id, u.id FROM catalog_dataset d
            JOIN access_user u ON u.username = 'owner_' || lpad(((d.id * 17 + 3) % 500)::text, 4, '0')
            WHERE d.id % 3 = 0
        """)
        for table in ("catalog_dataset", "catalog_column", "catalog_dataset_owners"):
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        timings["load_s"] = time.perf_counter() - started
        started = time.perf_counter()
        cursor.execute("SELECT catalog_search_refresh(ARRAY(SELECT id FROM catalog_dataset))")
        timings["documents_s"] = time.perf_counter() - started
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT count(*) FROM catalog_dataset")
        timings["datasets"] = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM catalog_column")
        timings["columns"] = cursor.fetchone()[0]
    return {"analyst": analyst_key, "executive": executive_key, **timings}


def keys_reuse() -> dict:
    """Fresh tokens for the existing service accounts of a previous run (``--reuse``), after
    migrating its database to the code's migrations (a new search migration fills its rows)."""
    from django.core.management import call_command
    from django.db import connection

    from access.models import User
    from access.services import service_token_create

    started = time.perf_counter()
    call_command("migrate", interactive=False, verbosity=0)
    keys = {"migrate_s": time.perf_counter() - started}
    for who in ("analyst", "executive"):
        user = User.objects.get(username=f"bench-{who}")
        _, keys[who] = service_token_create(user=user)
    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT count(*) FROM catalog_dataset), (SELECT count(*) FROM catalog_column)")
        keys["datasets"], keys["columns"] = cursor.fetchone()
    return keys


def measure_http(port: int, key: str, repeats: int) -> list[dict]:
    """Each query of the mix: one warm-up, then ``repeats`` timed requests over one connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=60)
    headers = {"Authorization": f"Token {key}", "Accept": "application/json"}
    rows = []
    try:
        for label, params in [(BASELINE, None), *QUERIES]:
            path = BASELINE_PATH if params is None else API + ("?" + urlencode(params) if params else "")
            latencies, body = [], b""
            for attempt in range(repeats + 1):
                started = time.perf_counter()
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                elapsed = (time.perf_counter() - started) * 1000
                if response.status != 200:
                    raise BenchmarkError(f"GET {path} answered {response.status}: {body[:300]!r}")
                if attempt:
                    latencies.append(elapsed)
            payload = json.loads(body)
            latencies.sort()
            rows.append({
                "query": label, "path": path, "results": len(payload["results"]),
                "matched": sum(entry["count"] for entry in payload["facets"]["status"]) if "facets" in payload else "-",
                "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "max": latencies[-1],
            })
    finally:
        connection.close()
    return rows


def query_counts_and_plans(key: str, explain: bool) -> dict[str, int]:
    """Queries per request (in-process, the Django test client with the token) and, with
    ``explain``, the plans of the slow ones."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Token {key}", HTTP_HOST=HOST)
    counts = {}
    for label, params in QUERIES:
        client.get(API, params)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(API, params)
        if response.status_code != 200:
            raise BenchmarkError(f"{label}: {response.status_code}")
        counts[label] = len(captured)
        if not explain:
            continue
        for query in captured.captured_queries:
            if float(query["time"]) * 1000 < SLOW_QUERY_MS:
                continue
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
                plan = "\n".join(row[0] for row in cursor.fetchall())
            print(f"\n--- {label}: {float(query['time']) * 1000:.1f} ms\n{query['sql'][:2000]}\n{plan}\n", flush=True)
    return counts


def report(run: dict, markdown: bool) -> str:
    headers = ["user", "query", "results", "matched", "queries", "p50 ms", "p95 ms", "max ms", "goal p95", "met"]
    rows = []
    for who, figures in run["figures"].items():
        for row in figures:
            rows.append([who, row["query"], str(row["results"]), str(row["matched"]), str(run["queries"][who].get(row["query"], "-")),
                         f"{row['p50']:.1f}", f"{row['p95']:.1f}", f"{row['max']:.1f}", f"<= {GOAL_P95_MS:.0f}",
                         "yes" if row["p95"] <= GOAL_P95_MS else "NO"])
    table = markdown_table(headers, rows, text_columns=2) if markdown else plain_table(headers, rows)
    lines = [
        f"Date: {run['date']}",
        f"Command: {run['command']}",
        f"Machine: {run['machine']}",
        f"Load average before / after: {run['load_before']:.2f} / {run['load_after']:.2f}",
        f"Catalog: {run['datasets']:,} datasets, {run['columns']:,} columns"
        + (f"; loaded in {run['load_s']:.1f} s, search documents built in {run['documents_s']:.1f} s" if "load_s" in run else "")
        + (f"; migrated in {run['migrate_s']:.1f} s" if "migrate_s" in run else ""),
        f"Server: gunicorn, 2 gthread workers, config.settings.production; {run['repeats']} requests per query after a warm-up",
        "",
        table,
        "",
        "matched = datasets the search found that the user may see (the facet total); results = rows on the first page.",
    ]
    return "\n".join(lines)


def arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--datasets", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=10, help="columns per dataset")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--port", type=int, default=8142)
    parser.add_argument("--reuse", action="store_true", help="search the database of the previous run again")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    return parser.parse_args()


def main() -> int:
    args = arguments()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))
    config = parse_database_url(args.database_url)
    load_before = os.getloadavg()[0]
    if not port_is_free(args.port):
        raise BenchmarkError(f"Port {args.port} on {HOST} is already in use.")
    with tempfile.TemporaryDirectory(prefix="catalog-bench-search-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        Path(environment["STATIC_ROOT"]).mkdir()
        os.environ.update(environment)
        os.environ.pop("REDIS_URL", None)
        postgres_version = "?"
        if not args.reuse:
            progress(f"recreating database {config['NAME']}")
            postgres_version = database_recreate(config)

        import django
        import gunicorn

        django.setup()
        from django.db import connection, connections

        if args.reuse:
            progress("reusing the catalog of the previous run")
            loaded = keys_reuse()
        else:
            progress(f"loading {args.datasets:,} datasets of {args.columns} columns")
            loaded = catalog_load(datasets=args.datasets, columns=args.columns)
            progress(f"loaded in {loaded['load_s']:.1f} s; search documents in {loaded['documents_s']:.1f} s")
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            postgres_version = cursor.fetchone()[0]
        connections.close_all()

        server = Server(gunicorn_command(args.port, "gthread"), environment, Path(var_dir) / "gunicorn.log")
        figures = {}
        try:
            progress(f"starting gunicorn on {HOST}:{args.port}")
            server.start()
            server.wait_until_ready(args.port, loaded["analyst"])
            for who in ("analyst", "executive"):
                progress(f"measuring the mix as the {who}")
                figures[who] = measure_http(args.port, loaded[who], args.repeats)
        except BaseException:
            tail = server.log_tail()
            if tail:
                progress(f"gunicorn log (last lines):\n{tail}")
            raise
        finally:
            server.stop()
            progress("gunicorn stopped")
        queries = {who: query_counts_and_plans(loaded[who], args.explain) for who in ("analyst", "executive")}
        connections.close_all()

    run = {
        "date": dt.date.today().isoformat(),
        "command": " ".join([".venv/bin/python", "bench/search.py", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} cores, {memory_gib()} RAM, Python {platform.python_version()}, "
                   f"Django {django.get_version()}, gunicorn {gunicorn.__version__}, PostgreSQL {postgres_version}",
        "load_before": load_before, "load_after": os.getloadavg()[0], "repeats": args.repeats,
        "figures": figures, "queries": queries,
        **{key: value for key, value in loaded.items() if key not in ("analyst", "executive")},
    }
    print(report(run, args.markdown))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"bench/search.py: {error}", file=sys.stderr)
        sys.exit(1)
