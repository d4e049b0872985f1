"""Dataset list benchmark: the list endpoint and the list page on a large catalog.

    .venv/bin/python bench/dataset_list.py [--database-url URL] [--repeats 20] [--explain] [--markdown]

It needs a database built by bench/access.py (100,000 datasets of 10 columns and the user
"many-roles", who holds all nine roles). It migrates that database to the current code and
creates one user, "bench-executive", who holds only the executive role (the role matrix lets
executives see aggregated datasets only, so their list carries a visibility filter); it drops
nothing. To keep bench/access.py's database as it was, run it on a copy:

    psql postgres://postgres@127.0.0.1:5432/postgres \\
        -c "CREATE DATABASE catalog_bench_dataset_list TEMPLATE catalog_bench_access"
    .venv/bin/python bench/dataset_list.py \\
        --database-url postgres://postgres@127.0.0.1:5432/catalog_bench_dataset_list --explain

For each user it requests the first page of ``/api/v1/datasets/`` and of ``/`` (the list
page), a later page, and a filtered page through Django's test client with the production
settings (one warm-up, then ``--repeats`` requests), and reports p50/p95 and the query count.
``--explain`` also prints EXPLAIN (ANALYZE, BUFFERS) of every query of one request that takes
longer than 5 ms. Timings are recorded in docs/benchmarks.md, never asserted in tests.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.register import BenchmarkError, markdown_table, percentile, plain_table, server_environment  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_access"
EXECUTIVE = "bench-executive"
SLOW_QUERY_MS = 5.0


def progress(message: str) -> None:
    print(f"[bench/dataset_list] {message}", file=sys.stderr, flush=True)


def users_prepare():
    """The all-roles user from bench/access.py, and an executive-only user (created once)."""
    from access.models import Role, User
    from access.services import user_role_assign

    many = User.objects.filter(username="many-roles").first()
    if many is None:
        raise BenchmarkError("no user 'many-roles': build the database with bench/access.py first")
    executive, created = User.objects.get_or_create(username=EXECUTIVE, defaults={"email": "exec@example.com"})
    if created:
        user_role_assign(user=executive, role=Role.objects.get(slug="executive"))
    return [("many-roles", many), ("executive", executive)]


def explain(sql: str, params) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def measure(users, repeats: int, show_plans: bool) -> list[dict]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    api, page = reverse("api:dataset-list"), reverse("catalog:dataset-list")
    paths = [
        ("API, first page", api),
        ("API, sensitivity=Regular", api + "?sensitivity=Regular"),
        ("page, first page", page),
        ("page, page 1,000", page + "?page=1000"),
        ("page, sensitivity=Regular", page + "?sensitivity=Regular"),
    ]
    rows = []
    for who_label, user in users:
        client = Client()
        client.force_login(user)
        for label, path in paths:
            client.get(path)  # warm-up
            latencies, counts, status = [], [], None
            for _ in range(repeats):
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = client.get(path)
                    latencies.append(time.perf_counter() - started)
                counts.append(len(captured))
                status = response.status_code
            rows.append({"user": who_label, "page": label, "path": path, "status": status,
                         "latencies": sorted(latencies), "queries": counts})
            if show_plans:
                plans_print(client, path, f"{who_label}: {label}")
    return rows


def plans_print(client, path: str, title: str) -> None:
    """EXPLAIN ANALYZE every slow query of one request (re-run with the parameters Django used)."""
    from django.db import connection

    captured = []

    def record(execute, sql, params, many, context):
        started = time.perf_counter()
        result = execute(sql, params, many, context)
        captured.append((time.perf_counter() - started, sql, params))
        return result

    with connection.execute_wrapper(record):
        client.get(path)
    for seconds, sql, params in captured:
        if seconds * 1000 >= SLOW_QUERY_MS and sql.lstrip().upper().startswith("SELECT"):
            print(f"\n### {title} ({seconds * 1000:.1f} ms)\n{sql % tuple(repr(p) for p in params or ())}\n")
            print(explain(sql, params))


def report(rows: list[dict], markdown: bool) -> str:
    body = [
        [row["user"], f"{row['page']} `{row['path']}`", str(row["status"]),
         f"{statistics.median(row['latencies']) * 1000:.1f}", f"{percentile(row['latencies'], 95) * 1000:.1f}",
         f"{min(row['queries'])}-{max(row['queries'])}"]
        for row in rows
    ]
    headers = ["user", "request", "status", "p50 ms", "p95 ms", "queries"]
    return markdown_table(headers, body, text_columns=2) if markdown else plain_table(headers, body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_ACCESS_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--repeats", type=int, default=20, help="requests per page (default 20)")
    parser.add_argument("--explain", action="store_true", help="print the plans of slow queries")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="catalog-bench-dataset-list-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        Path(environment["STATIC_ROOT"]).mkdir()
        os.environ.update(environment)
        os.environ.pop("REDIS_URL", None)

        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        settings.ALLOWED_HOSTS = ["*"]
        progress("migrating")
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)  # pages render with the production manifest
        users = users_prepare()
        progress(f"timing {args.repeats} requests per page")
        rows = measure(users, args.repeats, args.explain)
    print(report(rows, args.markdown))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"bench/dataset_list.py: {error}", file=sys.stderr)
        sys.exit(2)
