"""Enforcement benchmark (PostgreSQL): apply a 2,000-table store, apply one grant, and read a
1,000,000-row table through its protected view against the base table, in the same run.

    .venv/bin/python bench/enforcement.py [--tables 2000] [--rows 1000000] [--repeats 5] [--markdown]

A quick check: ``--tables 100 --rows 100000 --repeats 3``.

What it does (only 127.0.0.1; it drops nothing but its own two databases and its one role):

1. Recreates the catalog database (default ``catalog_bench_enfpg``) and the warehouse database
   ``bench_enfpg_wh``; migrates the catalog and creates the default roles and matrix.
2. In the warehouse: ``bench.t0001`` ... (N tables of 6 columns) and ``scan.reviews`` with M rows
   (id, rating, and 5 protected columns: e-mail Masked, phone Hashed, birth date Masked, card
   Tokenized, national id Restricted). Registers them all in the catalog (the services), and a
   data analyst whose warehouse role is ``bench_enfpg_analyst``.
3. Times ``store_enforce`` (every view, key, reader and the grants table, one transaction), then
   the approval and ``grant_enforce`` of one grant (``reviews.email``).
4. Scans: ``SELECT count(*), sum(length(col::text)) ...`` over every column, as the owner on the
   base table, as the analyst through the view (masked), and as the analyst with the grant
   through the view; alternated, median of R runs each, in wall time and in the CPU time of the
   PostgreSQL backend (from /proc: the server is local), which other processes on a shared
   machine do not inflate. The ratio view/base is printed next to
   the goal (1.3x): the read-time decision is made once per query, so what remains is the cost
   of the masking expressions themselves (two HMAC-SHA256 per row for the hashed and tokenized
   columns).

Timings are recorded in docs/benchmarks.md, never asserted in tests.
"""

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.register import (  # noqa: E402
    BenchmarkError,
    database_recreate,
    markdown_table,
    parse_database_url,
    plain_table,
    server_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_enfpg"
WAREHOUSE = "bench_enfpg_wh"
ANALYST_ROLE = "bench_enfpg_analyst"
GOAL_RATIO = 1.3


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def warehouse_build(config, tables: int, rows: int) -> None:
    import psycopg

    database_recreate({**config, "NAME": WAREHOUSE})
    with psycopg.connect(host=config["HOST"], port=config.get("PORT") or 5432, user=config.get("USER") or "postgres",
                         dbname=WAREHOUSE, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {ANALYST_ROLE}")
        conn.execute(f"CREATE ROLE {ANALYST_ROLE} LOGIN")
        conn.execute("CREATE SCHEMA bench")
        conn.execute("CREATE SCHEMA scan")
        conn.execute(f"""DO $$ BEGIN FOR i IN 1..{tables} LOOP
            EXECUTE format('CREATE TABLE bench.t%s (id int, email text, phone text, birth_date date, note text, '
                           'amount numeric)', lpad(i::text, 4, '0'));
        END LOOP; END $$""")
        conn.execute("""CREATE TABLE scan.reviews (id bigint, rating int, email text, phone text, birth_date date,
                        card_number text, national_id text)""")
        conn.execute(f"""INSERT INTO scan.reviews SELECT g, g % 5,
            'user' || g || '@example.org', '+1 555 ' || lpad((g % 10000000)::text, 7, '0'),
            date '1950-01-01' + (g % 20000), lpad((g::bigint * 7919)::text, 16, '4'), 'ID-' || g
            FROM generate_series(1, {rows}) g""")
        conn.execute("VACUUM (ANALYZE) scan.reviews")


def catalog_build(config, tables: int):
    from django.core.management import call_command

    from access.services import role_ensure_defaults, service_account_create
    from catalog.connections import connection_save
    from catalog.services import dataset_register
    from catalog.services import store_save

    call_command("migrate", interactive=False, verbosity=0)
    role_ensure_defaults()
    platform, _ = service_account_create(name="bench-platform", role_slug="platform_engineer")
    registrar, _ = service_account_create(name="bench-registrar", role_slug="data_engineer")
    store = store_save(principal=platform, name="wh", kind="analytical", platform="postgresql", environment="prod",
                       residency="CA", line_of_business="benchmarks", description="bench/enforcement.py")
    connection_save(principal=platform, store=store, host=config["HOST"], port=int(config.get("PORT") or 5432),
                    database=WAREHOUSE, username=config.get("USER") or "postgres", password="")

    def col(name, type_, sensitivity="Regular", protection="None"):
        return {"name": name, "type": type_, "sensitivity": sensitivity, "protection": protection}

    def register(name, columns):
        return dataset_register(principal=registrar, payload={
            "name": name, "store": store.name, "registrationTime": "1623167711", "registeredBy": "bench",
            "description": "bench", "version": "1", "columns": columns})[0]

    # The 2,000 tables go in with bulk inserts (the registration service costs seconds per dataset
    # on a loaded machine, and enforcement reads only datasets and their columns).
    from catalog.models import Column, Dataset

    kept = [("id", "INTEGER", 1, "none"), ("email", "TEXT", 2, "masked"), ("phone", "TEXT", 2, "hashed"),
            ("birth_date", "DATE", 2, "masked"), ("note", "TEXT", 1, "none"), ("amount", "NUMERIC", 1, "none")]
    datasets = Dataset.objects.bulk_create([
        Dataset(store=store, schema="bench", name=f"t{i:04d}", sensitivity=2, classified=True,
                qualified_name=Dataset.build_qualified_name(store.name, "bench", f"t{i:04d}"))
        for i in range(1, tables + 1)])
    Column.objects.bulk_create([
        Column(dataset=dataset, position=position, name=name, type=type_, sensitivity=sensitivity, protection=protection)
        for dataset in datasets for position, (name, type_, sensitivity, protection) in enumerate(kept)])
    reviews = register("scan.reviews", [
        col("id", "BIGINT"), col("rating", "INTEGER"), col("email", "TEXT", "Sensitive", "Masked"),
        col("phone", "TEXT", "Sensitive", "Hashed"), col("birth_date", "DATE", "Sensitive", "Masked"),
        col("card_number", "TEXT", "Sensitive", "Tokenized"), col("national_id", "TEXT", "Restricted", "None")])
    return store, reviews


def analyst_and_approver():
    from access.models import Role, User

    analyst = User.objects.create_user(username="bench-analyst", password=None, warehouse_role=ANALYST_ROLE)
    analyst.groups.add(Role.objects.get(slug="data_analyst").group)
    approver = User.objects.create_superuser(username="bench-approver", email="a@example.com", password=None)
    return analyst, approver


SCAN = ("SELECT count(*), sum(id), sum(rating), sum(length(email::text)), sum(length(phone::text)), "
        "sum(length(birth_date::text)), sum(length(card_number::text)), sum(length(national_id::text)) FROM {}")
# The same without the hashed and tokenized columns: what the read-time decision and the cheap masks cost.
SCAN_NO_HMAC = ("SELECT count(*), sum(id), sum(rating), sum(length(email::text)), sum(length(birth_date::text)), "
                "sum(length(national_id::text)) FROM {}")


def backend_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of a PostgreSQL backend on this machine, from /proc: unlike wall
    time it does not grow when other processes share the cores."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scan_seconds(config, role: str, table: str, scan: str = SCAN) -> tuple[float, float | None]:
    """``(wall seconds, backend CPU seconds or None)`` of one scan."""
    import psycopg

    with psycopg.connect(host=config["HOST"], port=config.get("PORT") or 5432, user=role, dbname=WAREHOUSE,
                         autocommit=True) as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")  # the same plan shape on a loaded machine
        conn.execute("EXPLAIN " + scan.format(table)).fetchall()  # the session's caches, as a pooled connection has
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        cpu_before, started = backend_cpu_seconds(pid), time.perf_counter()
        conn.execute(scan.format(table)).fetchall()
        wall, cpu_after = time.perf_counter() - started, backend_cpu_seconds(pid)
        return wall, (cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None)


def median_figure(runs) -> tuple[float, float | None]:
    walls = [wall for wall, _cpu in runs]
    cpus = [cpu for _wall, cpu in runs if cpu is not None]
    return statistics.median(walls), (statistics.median(cpus) if len(cpus) == len(runs) else None)


def ratio_cell(view, base) -> str:
    """``wall ms = ratio x base`` and, when known, the same by backend CPU time."""
    text = f"{view[0] * 1000:,.0f} ms = {view[0] / base[0]:.2f}x base"
    if view[1] is not None and base[1]:
        text += f"; CPU {view[1] * 1000:,.0f} ms vs {base[1] * 1000:,.0f} ms = **{view[1] / base[1]:.2f}x**"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_ENFORCEMENT_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    config = parse_database_url(args.database_url)
    with tempfile.TemporaryDirectory(prefix="catalog-bench-enforcement-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        os.environ.update(environment)
        os.environ.pop("REDIS_URL", None)
        progress(f"recreating {config['NAME']} and {WAREHOUSE} ({args.tables:,} tables, {args.rows:,} rows)")
        database_recreate(config)
        warehouse_build(config, args.tables, args.rows)

        import django

        django.setup()
        from access.enforcement import grant_enforce
        from access.grants import access_request_create, access_request_review
        from access.models import AccessLevel, Grant
        from access.warehouses import postgresql

        progress("registering the tables in the catalog")
        store, reviews = catalog_build(config, args.tables)
        analyst, approver = analyst_and_approver()

        progress("applying the store's enforcement")
        started = time.perf_counter()
        plan, failed = postgresql.store_enforce(store)
        store_seconds = time.perf_counter() - started
        if failed:
            raise BenchmarkError(f"{len(failed)} views could not be made: {next(iter(failed.values()))}")

        progress("scanning (masked)")
        base, masked, base_cheap, masked_cheap = [], [], [], []
        for _ in range(args.repeats):
            base.append(scan_seconds(config, "postgres", "scan.reviews"))
            masked.append(scan_seconds(config, ANALYST_ROLE, "governed.reviews"))
            base_cheap.append(scan_seconds(config, "postgres", "scan.reviews", SCAN_NO_HMAC))
            masked_cheap.append(scan_seconds(config, ANALYST_ROLE, "governed.reviews", SCAN_NO_HMAC))

        progress("applying one grant")
        request = access_request_create(principal=analyst, dataset=reviews, level=AccessLevel.READ, duration=4, columns=["email"],
                                        ticket="BENCH-1", justification="benchmark of one grant")
        access_request_review(principal=approver, request=request, approve=True)
        grant = Grant.objects.get(request=request)
        started = time.perf_counter()
        outcome = grant_enforce(grant.pk)
        grant_seconds = time.perf_counter() - started
        if outcome.action != "applied":
            raise BenchmarkError(f"The grant was not applied: {outcome.message}")

        progress("scanning (with the grant)")
        granted = []
        for _ in range(args.repeats):
            base.append(scan_seconds(config, "postgres", "scan.reviews"))
            granted.append(scan_seconds(config, ANALYST_ROLE, "governed.reviews"))

    base_s, masked_s, granted_s = (median_figure(v) for v in (base, masked, granted))
    base_cheap_s, masked_cheap_s = median_figure(base_cheap), median_figure(masked_cheap)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BASE_DIR).stdout.strip()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    headers = ["measure", "figure", "goal"]
    rows = [
        [f"apply enforcement of a {args.tables:,}-table store", f"{store_seconds:.1f} s ({len(plan.statements):,} statements)", "—"],
        ["apply one grant (grant_enforce)", f"{grant_seconds * 1000:.0f} ms", "—"],
        [f"scan base table, {args.rows:,} rows (median of {len(base)})",
         f"{base_s[0] * 1000:,.0f} ms" + (f"; CPU {base_s[1] * 1000:,.0f} ms" if base_s[1] is not None else ""), "—"],
        ["scan view, masked reader (5 protected columns)", ratio_cell(masked_s, base_s), f"≤ {GOAL_RATIO}x"],
        ["  the same 3 protected columns without HMAC (e-mail, date, hidden id)",
         ratio_cell(masked_cheap_s, base_cheap_s), f"≤ {GOAL_RATIO}x"],
        ["scan view, reader granted email", ratio_cell(granted_s, base_s), f"≤ {GOAL_RATIO}x"],
    ]
    table = markdown_table(headers, rows) if args.markdown else plain_table(headers, rows)
    print(f"bench/enforcement.py  {dt.date.today().isoformat()}  commit {commit}\nload: {load}\n\n{table}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"bench/enforcement.py: {error}", file=sys.stderr)
        sys.exit(2)
