"""Monitoring benchmark: audit log ingestion, statements per second parsed and attributed.

    .venv/bin/python bench/monitoring.py [--statements 20000] [--batch 1000] [--markdown]

Recreates its own PostgreSQL database (default ``catalog_bench_monitoring``), migrates it, makes a
prod PostgreSQL store with 200 datasets of 10 columns (one Restricted) and 50 analysts mapped to
warehouse roles (plus unmapped roles), then generates pgaudit csvlog records: 20 statement shapes
(SELECT of columns, SELECT *, joins, CTEs, INSERT, UPDATE, one unparseable) with fresh literals in
every statement, as real logs have; 90% of them on 20 hot tables, the rest on any of the 200. The
parser caches statement *shapes* (literals scrubbed), so the figure depends on how many distinct
shapes a log has: here about 2,500 per 20,000 statements. It times the whole
path the pull and push take, ``records_from_text`` then ``access_log_ingest`` (attribution to
datasets, columns and users, the one decision per access, the insert), in batches.

Goal: at least 2,000 statements/s on 2 cores. Timings are recorded in docs/benchmarks.md, never
asserted in tests.
"""

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.register import database_recreate, parse_database_url, server_environment  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_monitoring"
DATASETS = 200
USERS = 50
GOAL = 2000
HOT = 20

SHAPES = [
    "SELECT id, col1 FROM shop.t{t} WHERE col2 = '{s}'",
    "SELECT * FROM shop.t{t} WHERE id = {n}",
    "SELECT a.id, b.col3 FROM shop.t{t} a JOIN shop.t{u} b ON a.id = b.id WHERE a.col4 > {n}",
    "WITH recent AS (SELECT id, col5 FROM shop.t{t} WHERE col6 > '{s}') SELECT col5 FROM recent",
    "SELECT count(*) FROM shop.t{t} WHERE col7 IN ({n}, {m})",
    "INSERT INTO shop.t{t} (id, col1) VALUES ({n}, '{s}')",
    "UPDATE shop.t{t} SET col2 = '{s}' WHERE id = {n}",
    "SELECT secret FROM shop.t{t} WHERE id = {n}",
    "SELECT col1, col2, col3 FROM shop.t{t} ORDER BY col1 LIMIT {n}",
    "SELEC broken FROM shop.t{t} WHERE x = '{s}'",
]


def progress(message: str) -> None:
    print(f"[bench/monitoring] {message}", file=sys.stderr, flush=True)


def prepare():
    from django.core.management import call_command

    from access.models import Role, User
    from access.services import role_ensure_defaults, user_role_assign
    from catalog.models import Column, Dataset, DataStore

    call_command("migrate", interactive=False, verbosity=0)
    role_ensure_defaults()
    store = DataStore.objects.create(name="bench-audited", kind="transactional", platform="postgresql",
                                     environment="prod")
    analyst = Role.objects.get(slug="data_analyst")
    for i in range(USERS):
        user = User.objects.create(username=f"analyst{i:02d}", warehouse_role=f"analyst{i:02d}")
        user_role_assign(user=user, role=analyst)
    for t in range(DATASETS):
        dataset = Dataset.objects.create(store=store, schema="shop", name=f"t{t}", qualified_name=f"bench-audited.shop.t{t}",
                                         sensitivity=3)
        Column.objects.bulk_create(
            [Column(dataset=dataset, position=p, name=name, type="TEXT", sensitivity=3 if name == "secret" else 1)
             for p, name in enumerate(["id", "col1", "col2", "col3", "col4", "col5", "col6", "col7", "col8", "secret"])])
    return store


def csvlog(records: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    lines = []
    for i in range(records):
        shape = SHAPES[i % len(SHAPES)]
        # Most reads go to a few hot tables (as in a warehouse's day), the rest anywhere.
        t = rng.randrange(HOT) if rng.random() < 0.9 else rng.randrange(DATASETS)
        u = rng.randrange(HOT) if rng.random() < 0.9 else rng.randrange(DATASETS)
        statement = shape.format(t=t, u=u, n=rng.randrange(10**6), m=rng.randrange(10**6), s=f"v{rng.randrange(10**9)}")
        verb = statement.split()[0].upper()
        klass = "WRITE" if verb in ("INSERT", "UPDATE") else "READ"
        command = verb if verb in ("INSERT", "UPDATE", "SELECT") else "SELECT"
        role = f"analyst{rng.randrange(USERS):02d}" if i % 20 else "etl_unmapped"
        audit = f'AUDIT: SESSION,{i},1,{klass},{command},TABLE,shop.t{t},"{statement.replace(chr(34), chr(34) * 2)}",<not logged>,1'
        audit = audit.replace('"', '""')
        lines.append(
            f'2026-12-07 17:23:51.496 UTC,"{role}","postgres",1{i % 1000},"10.0.0.{i % 250}:5{i % 9999}",'
            f'bench.{i // 1000},{i},"{command}",2026-12-07 17:23:51 UTC,3/25,0,LOG,00000,"{audit}",,,,,,,,,"bench","client backend",,0'
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_MONITORING_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    config = parse_database_url(args.database_url)
    with tempfile.TemporaryDirectory(prefix="catalog-bench-monitoring-") as var_dir:
        os.environ.update(server_environment(args.database_url, var_dir))
        os.environ.pop("REDIS_URL", None)
        progress(f"recreating database {config['NAME']}")
        database_recreate(config)
        import django

        django.setup()
        from monitoring.ingestion import access_log_ingest
        from monitoring.models import AccessEvent
        from monitoring.parsing import records_from_text, statement_access

        store = prepare()
        text = csvlog(args.statements)
        lines = text.splitlines()
        progress(f"ingesting {len(lines):,} pgaudit records in batches of {args.batch:,}")
        statement_access.cache_clear()
        parse_seconds = ingest_seconds = 0.0
        recorded = findings = unparsed = 0
        for start in range(0, len(lines), args.batch):
            chunk = "\n".join(lines[start:start + args.batch]) + "\n"
            began = time.perf_counter()
            records, errors, _ = records_from_text(chunk, "pgaudit")
            parsed_at = time.perf_counter()
            for record in records:
                statement_access(record.statement, record.dialect)
            mid = time.perf_counter()
            result = access_log_ingest(store=store, records=records, source="push", log_format="pgaudit")
            ended = time.perf_counter()
            parse_seconds += mid - began
            ingest_seconds += ended - mid
            recorded, findings, unparsed = recorded + result.recorded, findings + result.findings, unparsed + result.unparsed
            assert not errors, errors[:3]
        total = parse_seconds + ingest_seconds
        rate = len(lines) / total
        assert AccessEvent.objects.count() == recorded
        rows = [
            ("statements parsed and attributed", f"{len(lines):,}", ""),
            ("parse (csvlog + sqlglot, fingerprints)", f"{parse_seconds:.2f} s", f"{len(lines) / parse_seconds:,.0f}/s"),
            ("attribute + record (decision, insert)", f"{ingest_seconds:.2f} s", f"{len(lines) / ingest_seconds:,.0f}/s"),
            ("end to end", f"{total:.2f} s", f"{rate:,.0f}/s (goal >= {GOAL:,}/s: {'met' if rate >= GOAL else 'NOT met'})"),
            ("events / findings / unparsed", f"{recorded:,} / {findings:,} / {unparsed:,}", ""),
        ]
        if args.markdown:
            print("| step | amount | rate |\n|---|---|---|")
            for row in rows:
                print(f"| {row[0]} | {row[1]} | {row[2]} |")
        else:
            for row in rows:
                print(f"{row[0]:<42} {row[1]:>22}  {row[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
