"""Access benchmark: the decision function over 100,000 datasets, and the approval queue and
audit trail at 1,000,000 audit events.

    .venv/bin/python bench/access.py [-n/--datasets 100000] [--events 1000000] [--decisions 2000] [--markdown]

A quick check: ``--datasets 5000 --events 50000 --decisions 300``.

What it does (it only talks to 127.0.0.1 and drops nothing but its own database):

1. Recreates its own PostgreSQL database (default ``catalog_bench_access``), migrates it and
   creates the default roles and role matrix through the project's services.
2. Builds with set-based SQL: three stores (dev, staging, prod), N datasets of 10 columns
   spread over them and over the four sensitivity tiers (a tenth tagged ``aggregated``),
   one user who holds all nine company roles and 2,000 grants (1,000 live, 1,000 expired or
   revoked), 5,000 pending requests on datasets that user owns, and E audit events with a
   valid hash chain (hashed in Python, loaded with COPY). Then ``VACUUM (ANALYZE)``.
3. Times ``access_decide`` for random datasets, actions and column scopes, as a fresh
   request would (the user's roles and matrix cells are read once per request, so each
   decision is timed on a fresh user object, and again with them cached), and counts its
   queries; then times the approval queue and the audit trail pages through Django's test
   client (first page, a filtered page, an old page) with their query counts, and
   ``audit_verify`` over the whole chain.

Timings are recorded here and in docs/benchmarks.md, never asserted in tests.
"""

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
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
    memory_gib,
    parse_database_url,
    percentile,
    plain_table,
    server_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_access"
SEED = 20261122
ENVIRONMENTS = ("dev", "staging", "prod")
COLUMNS = 10
LIVE_GRANTS = 1000
ENDED_GRANTS = 1000
PENDING_REQUESTS = 5000
ACTIONS = ("request.created", "request.reviewed", "request.approved", "grant.activated", "grant.expired",
           "metadata.restricted_viewed", "grant.revoked", "request.denied")


def progress(message: str) -> None:
    print(f"[bench/access] {message}", file=sys.stderr, flush=True)


def psycopg_connect(config: dict):
    import psycopg

    return psycopg.connect(host=config["HOST"], port=config.get("PORT") or 5432, user=config.get("USER") or None,
                           password=config.get("PASSWORD") or None, dbname=config["NAME"])


def prepare() -> dict:
    from django.core.management import call_command

    from access.models import Role, User
    from access.services import role_ensure_defaults, user_role_assign
    from catalog.models import DataStore

    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)  # pages render with the production manifest
    role_ensure_defaults()
    stores = {}
    for environment in ENVIRONMENTS:
        stores[environment] = DataStore.objects.create(
            name=f"bench-{environment}", kind="analytical", platform="snowflake", environment=environment,
        ).pk
    user = User.objects.create(username="many-roles", email="many@example.com")
    for role in Role.objects.all():
        user_role_assign(user=user, role=role)
    requesters = [User.objects.create(username=f"requester{i:02d}").pk for i in range(20)]
    return {"stores": stores, "user": user.pk, "requesters": requesters}


def build(config: dict, *, datasets: int, events: int, ids: dict) -> list[tuple[str, int, float]]:
    from access.audit import GENESIS

    steps = []
    now = dt.datetime.now(dt.timezone.utc)
    with psycopg_connect(config) as conn, conn.cursor() as cursor:
        def step(name, sql, params=None):
            started = time.perf_counter()
            cursor.execute(sql, params or {})
            steps.append((name, cursor.rowcount, time.perf_counter() - started))

        store_ids = [ids["stores"][e] for e in ENVIRONMENTS]
        step("datasets", """
            INSERT INTO catalog_dataset (id, store_id, schema, name, qualified_name, description, status, tags,
                                         needs_review, sensitivity, deprecated_by_sync, definition_fingerprint,
                                         created_at, updated_at)
            SELECT i, (%(stores)s::bigint[])[1 + i %% 3], 's', format('t%%s', i),
                   format('bench-%%s.s.t%%s', (ARRAY['dev','staging','prod'])[1 + i %% 3], i), '', 'active',
                   CASE WHEN i %% 10 = 0 THEN '["aggregated"]'::jsonb ELSE '[]'::jsonb END,
                   false, (i / 3) %% 4, false, '', %(now)s, %(now)s
            FROM generate_series(1, %(n)s) i
        """, {"stores": store_ids, "n": datasets, "now": now})
        step("columns", """
            INSERT INTO catalog_column (dataset_id, position, name, description, mode, type,
                                        originating_source_kind, originating_source_name, sensitivity, protection)
            SELECT d.id, c, format('c%%s', c), '', 'NULLABLE', 'STRING', '', '', LEAST(c %% 4, d.sensitivity), 'none'
            FROM catalog_dataset d CROSS JOIN generate_series(1, %(width)s) c
        """, {"width": COLUMNS})
        step("owners of the pending requests' datasets", """
            INSERT INTO catalog_dataset_owners (dataset_id, user_id)
            SELECT i, %(user)s FROM generate_series(1, %(n)s) i WHERE i %% 17 = 0
        """, {"user": ids["user"], "n": datasets})
        step("requests (granted)", """
            INSERT INTO access_accessrequest (requester_id, dataset_id, columns, level, environment, sensitivity,
                justification, ticket, duration, status, approvals_required, security_approval_required,
                is_break_glass, created_at, expires_at, decided_at)
            SELECT %(user)s, 1 + (g * 7919) %% %(n)s, '[]'::jsonb, 2, 'prod', 2, 'benchmark', '', interval '8 hours',
                   'approved', 1, false, false, %(now)s, %(now)s, %(now)s
            FROM generate_series(1, %(grants)s) g
        """, {"user": ids["user"], "n": datasets, "grants": LIVE_GRANTS + ENDED_GRANTS, "now": now})
        step("grants", """
            INSERT INTO access_grant (request_id, user_id, dataset_id, columns, level, status, starts_at, ends_at,
                is_break_glass, review_required, review_note, revoke_reason, enforcement, enforcement_attempts,
                enforcement_message, created_at)
            SELECT r.id, r.requester_id, r.dataset_id, '[]'::jsonb, 2,
                   CASE WHEN row_number() OVER (ORDER BY r.id) <= %(live)s THEN 'active' ELSE 'expired' END,
                   %(now)s - interval '1 hour',
                   CASE WHEN row_number() OVER (ORDER BY r.id) <= %(live)s THEN %(now)s + interval '7 hours'
                        ELSE %(now)s - interval '1 minute' END,
                   false, false, '', '', 'not_managed', 0, '', %(now)s
            FROM access_accessrequest r
        """, {"live": LIVE_GRANTS, "now": now})
        step("pending requests", """
            INSERT INTO access_accessrequest (requester_id, dataset_id, columns, level, environment, sensitivity,
                justification, ticket, duration, status, approvals_required, security_approval_required,
                is_break_glass, created_at, expires_at)
            SELECT (%(requesters)s::bigint[])[1 + g %% 20], 17 * (1 + g %% (%(n)s / 17)), '[]'::jsonb, 2, 'prod', 2,
                   'benchmark justification', 'SEC-1', interval '8 hours', 'pending', 1, false, false,
                   %(now)s - (g || ' seconds')::interval, %(now)s + interval '3 days'
            FROM generate_series(1, %(pending)s) g
        """, {"requesters": ids["requesters"], "n": datasets, "pending": PENDING_REQUESTS, "now": now})

        started = time.perf_counter()
        previous = GENESIS
        start_at = now - dt.timedelta(days=365)
        rng = random.Random(SEED)
        with cursor.copy("COPY access_auditevent (id, at, actor_id, actor_name, action, object_type, object_id, "
                         "dataset_id, remote_addr, reason, details, previous_hash, hash) FROM STDIN") as copy:
            for number in range(1, events + 1):
                at = start_at + dt.timedelta(seconds=number * 365 * 86400 / max(events, 1))
                action = ACTIONS[number % len(ACTIONS)]
                actor = ids["requesters"][number % 20] if number % 3 else ids["user"]
                dataset = 1 + rng.randrange(datasets)
                details = {"level": "Read", "duration_hours": 8}
                content = json.dumps({
                    "id": number, "at": at.isoformat(timespec="microseconds"), "actor": actor,
                    "actor_name": f"user{actor}", "action": action, "object_type": "accessrequest",
                    "object_id": str(number), "dataset": dataset, "remote_addr": "10.0.0.1",
                    "reason": "benchmark", "details": details,
                }, sort_keys=True, separators=(",", ":")).encode()
                digest = hashlib.sha256(previous.encode() + content).hexdigest()
                copy.write_row((number, at, actor, f"user{actor}", action, "accessrequest", str(number), dataset,
                                "10.0.0.1", "benchmark", json.dumps(details), previous, digest))
                previous = digest
        cursor.execute("INSERT INTO access_auditchainhead (id, last_id, last_hash) VALUES (1, %s, %s) "
                       "ON CONFLICT (id) DO UPDATE SET last_id = EXCLUDED.last_id, last_hash = EXCLUDED.last_hash",
                       (events, previous))
        cursor.execute("SELECT setval(pg_get_serial_sequence('access_auditevent', 'id'), %s)", (max(events, 1),))
        steps.append(("audit events (hashed + COPY)", events, time.perf_counter() - started))
        conn.commit()
    import psycopg

    with psycopg.connect(host=config["HOST"], port=config.get("PORT") or 5432, user=config.get("USER") or None,
                         dbname=config["NAME"], autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")
        steps.append(("VACUUM (ANALYZE)", 0, time.perf_counter() - started))
    return steps


def decisions_measure(count: int, datasets: int, user_id: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from access.decisions import access_decide
    from access.models import User
    from catalog.models import Dataset

    rng = random.Random(SEED)
    fresh, cached, queries, outcomes = [], [], [], {"allowed": 0, "refused": 0}
    warm = User.objects.get(pk=user_id)
    for _ in range(count):
        dataset = Dataset.objects.select_related("store").get(pk=1 + rng.randrange(datasets))
        action = rng.choice(("metadata", "read", "read", "write"))
        columns = [f"c{c}" for c in rng.sample(range(1, COLUMNS + 1), 3)] if rng.random() < 0.3 else None
        user = User.objects.get(pk=user_id)
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            decision = access_decide(user, action, dataset, columns)
            fresh.append(time.perf_counter() - started)
        queries.append(len(captured))
        started = time.perf_counter()
        access_decide(warm, action, dataset, columns)
        cached.append(time.perf_counter() - started)
        outcomes["allowed" if decision.allowed else "refused"] += 1
    return {"fresh": sorted(fresh), "cached": sorted(cached), "queries": queries, "outcomes": outcomes}


def pages_measure(user_id: int, repeats: int) -> list[dict]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import NoReverseMatch, reverse

    from access.models import User

    admin = User.objects.create(username="bench-admin", is_superuser=True, is_staff=True)
    user = User.objects.get(pk=user_id)
    pages = []
    candidates = [
        ("approval queue, first page (owner of 5,000 pending)", user, "access:approval-queue", ""),
        ("approval queue API, first page", user, "access-api:approval-queue", ""),
        ("audit trail, first page", admin, "access:audit-list", ""),
        ("audit trail, filtered by action", admin, "access:audit-list", "?action=grant.revoked"),
        ("audit trail, filtered by actor", admin, "access:audit-list", "?actor=many-roles"),
        ("audit trail, filtered by dataset", admin, "access:audit-list", "?dataset=bench-dev.s.t4242"),
        ("audit API, first page", admin, "access-api:audit-list", ""),
        ("audit API, filtered by action", admin, "access-api:audit-list", "?action=grant.revoked"),
        ("dataset list API (many-roles user)", user, "api:dataset-list", ""),
    ]
    for label, who, name, query in candidates:
        try:
            path = reverse(name) + query
        except NoReverseMatch:
            pages.append({"page": label, "missing": name})
            continue
        client = Client()
        client.force_login(who)
        client.get(path)  # warm-up
        latencies, counts, status = [], [], None
        for _ in range(repeats):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(path)
                latencies.append(time.perf_counter() - started)
            counts.append(len(captured))
            status = response.status_code
        pages.append({"page": label, "path": path, "status": status, "latencies": sorted(latencies),
                      "queries": counts})
    return pages


def verify_measure() -> dict:
    from access.audit import audit_verify

    started = time.perf_counter()
    report = audit_verify()
    return {"seconds": time.perf_counter() - started, "intact": report.intact, "checked": report.checked}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def report(run: dict, markdown: bool) -> str:
    table = markdown_table if markdown else plain_table
    d = run["decisions"]
    lines = [
        f"Run on {run['date']} at commit {run['commit']}. {os.cpu_count()} cores, {memory_gib()} RAM, "
        f"Python {platform.python_version()}, PostgreSQL on 127.0.0.1; settings config.settings.production, DEBUG off.",
        "",
        f"Data: {run['datasets']:,} datasets of {COLUMNS} columns in dev/staging/prod, one user holding all nine "
        f"roles with {LIVE_GRANTS:,} live and {ENDED_GRANTS:,} ended grants, {PENDING_REQUESTS:,} pending requests on "
        f"datasets they own, {run['events']:,} audit events.",
        "",
        "Build: " + "; ".join(f"{name} {rows:,} rows {seconds:.1f} s" for name, rows, seconds in run["build"]),
        "",
    ]
    rows = [
        ["access_decide, fresh user (roles + matrix read)", len(d["fresh"]), ms(statistics.mean(d["fresh"])),
         ms(percentile(d["fresh"], 50)), ms(percentile(d["fresh"], 95)), ms(d["fresh"][-1]),
         f"{min(d['queries'])}-{max(d['queries'])}"],
        ["access_decide, roles cached (same request)", len(d["cached"]), ms(statistics.mean(d["cached"])),
         ms(percentile(d["cached"], 50)), ms(percentile(d["cached"], 95)), ms(d["cached"][-1]), ""],
    ]
    lines.append(table(["decision", "n", "mean ms", "p50 ms", "p95 ms", "max ms", "queries"], rows))
    lines.append("")
    lines.append(f"Outcomes: {d['outcomes']['allowed']:,} allowed, {d['outcomes']['refused']:,} refused.")
    lines.append("")
    page_rows = []
    for page in run["pages"]:
        if "missing" in page:
            page_rows.append([page["page"], "-", "not built", "", "", ""])
            continue
        page_rows.append([f"{page['page']} `{page['path']}`" if markdown else f"{page['page']} {page['path']}",
                          page["status"], ms(percentile(page["latencies"], 50)), ms(percentile(page["latencies"], 95)),
                          ms(page["latencies"][-1]), f"{min(page['queries'])}-{max(page['queries'])}"])
    lines.append(table(["page", "status", "p50 ms", "p95 ms", "max ms", "queries"], page_rows))
    lines.append("")
    v = run["verify"]
    lines.append(f"audit_verify over {v['checked']:,} events: {v['seconds']:.1f} s, intact={v['intact']}.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--datasets", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=20, help="requests per page (default 20)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_ACCESS_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    config = parse_database_url(args.database_url)
    with tempfile.TemporaryDirectory(prefix="catalog-bench-access-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        Path(environment["STATIC_ROOT"]).mkdir()
        os.environ.update(environment)
        os.environ.pop("REDIS_URL", None)
        progress(f"recreating database {config['NAME']}")
        database_recreate(config)

        import django

        django.setup()
        from django.conf import settings
        from django.db import connections

        settings.ALLOWED_HOSTS = ["*"]
        progress("migrating; roles and matrix")
        ids = prepare()
        connections.close_all()
        progress(f"building {args.datasets:,} datasets and {args.events:,} audit events")
        steps = build(config, datasets=args.datasets, events=args.events, ids=ids)
        for name, rows, seconds in steps:
            progress(f"  {name}: {rows:,} rows in {seconds:.1f}s")
        progress(f"timing {args.decisions:,} decisions")
        decisions = decisions_measure(args.decisions, args.datasets, ids["user"])
        progress("timing pages")
        pages = pages_measure(ids["user"], args.repeats)
        progress("verifying the audit chain")
        verify = verify_measure()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BASE_DIR).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=BASE_DIR).stdout.strip()
    run = {"date": dt.date.today().isoformat(), "commit": commit + ("+" if dirty else ""), "datasets": args.datasets,
           "events": args.events, "build": steps, "decisions": decisions, "pages": pages, "verify": verify}
    print(report(run, args.markdown))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"bench/access.py: {error}", file=sys.stderr)
        sys.exit(2)
