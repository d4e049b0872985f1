"""Detectors benchmark: events handled per second, and the lag from a warehouse read to its alert.

    .venv/bin/python bench/detectors.py [--events 20000] [--batch 500] [--reads 30] [--redis-url redis://127.0.0.1:6379/2]

Recreates its own PostgreSQL database (default ``catalog_bench_detectors``), migrates it and
reuses bench/monitoring.py's catalog (a prod PostgreSQL store, 200 datasets of 10 columns, 50
analysts mapped to warehouse roles, an unmapped ETL role).

1. **Throughput.** Ingests N pgaudit records (bench/monitoring.py's statement shapes, spread over
   two days of times, from 250 client addresses) through ``access_log_ingest``, plus some audit
   events, then times ``detect_all(batch_size=B)`` (every detector, the alerts raised, the cursors
   moved) over the backlog: events handled per second. Goal: at least 1,000/s.
2. **Read -> alert lag**, with a real Celery worker (concurrency 1, production settings, Redis
   broker): R times, one pgaudit line of a read nothing allows is taken in by ``access_log_ingest``
   (what the pull and the push endpoint call); its commit queues ``monitoring.detect``; the lag is
   from the commit to the moment the alert's evidence for that event exists. Goal: p95 under 5 s.

Timings are recorded in docs/benchmarks.md, never asserted in tests.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lineage_ingest import worker_start, worker_stop  # noqa: E402
from bench.register import database_recreate, parse_database_url, percentile, server_environment  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_detectors"
THROUGHPUT_GOAL = 1000
LAG_GOAL_SECONDS = 5.0


def progress(message: str) -> None:
    print(f"[bench/detectors] {message}", file=sys.stderr, flush=True)


def spread_log(count: int) -> str:
    """bench/monitoring.py's records, with times spread over two days (some off hours)."""
    from bench.monitoring import csvlog

    start = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    lines = csvlog(count).splitlines()
    out = []
    for i, line in enumerate(lines):
        moment = start + timedelta(seconds=i * 172_800 // max(count, 1))
        stamp = moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        out.append(line.replace("2026-12-07 17:23:51.496", stamp, 1).replace("2026-12-07 17:23:51 UTC", f"{stamp[:19]} UTC", 1))
    return "\n".join(out) + "\n"


def throughput(store, *, events: int, batch: int) -> dict:
    from django.db import connection

    from access.signin import signin_failure_record
    from monitoring.detectors import detect_all
    from monitoring.ingestion import access_log_ingest
    from monitoring.models import AccessEvent, Alert, AlertEvidence
    from monitoring.parsing import records_from_text

    lines = spread_log(events).splitlines()
    progress(f"ingesting {len(lines):,} records (not timed)")
    for start in range(0, len(lines), 1000):
        records, errors, _ = records_from_text("\n".join(lines[start:start + 1000]) + "\n", "pgaudit")
        assert not errors, errors[:3]
        access_log_ingest(store=store, records=records, source="push", log_format="pgaudit")
    for i in range(200):  # some refusals for the audit stream's detectors
        signin_failure_record(username=f"analyst{i % 50:02d}", remote_addr=f"198.51.100.{i % 20}")
    handled_events = AccessEvent.objects.count()
    progress(f"running the detectors over {handled_events:,} access events in batches of {batch}")
    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        began = time.perf_counter()
        handled = detect_all(batch_size=batch)
        seconds = time.perf_counter() - began
    return {"handled": handled, "seconds": seconds, "rate": handled / seconds, "queries": queries,
            "alerts": Alert.objects.count(), "evidence": AlertEvidence.objects.count()}


def lag(store, *, reads: int, environment: dict, var_dir: str) -> list[float]:
    from django.db import connections

    from monitoring.detectors import detect_all
    from monitoring.ingestion import access_log_ingest
    from monitoring.models import AccessEvent, AlertEvidence
    from monitoring.parsing import records_from_text

    detect_all()  # caught up before the worker starts
    worker = worker_start(environment, Path(var_dir) / "worker.log")
    delays = []
    try:
        time.sleep(3)  # the worker connects to the broker (not part of any figure)
        for i in range(reads + 1):  # the first read warms the worker up and is not counted
            now = datetime.now(UTC)
            stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            statement = f"SELECT secret FROM shop.t{i % 20} WHERE id = {i}"
            audit = f'AUDIT: SESSION,{i},1,READ,SELECT,TABLE,shop.t{i % 20},"{statement}",<not logged>,1'.replace('"', '""')
            line = (f'{stamp} UTC,"analyst{i % 50:02d}","postgres",99,"10.9.0.{i % 200}:5000",lag.{i},{i},"SELECT",'
                    f'{stamp[:19]} UTC,3/25,0,LOG,00000,"{audit}",,,,,,,,,"bench","client backend",,0')
            records, errors, _ = records_from_text(line + "\n", "pgaudit")
            assert records and not errors, errors
            access_log_ingest(store=store, records=records, source="push", log_format="pgaudit")
            committed = time.perf_counter()
            event_id = AccessEvent.objects.get(store=store, record_key=records[0].record_key).pk
            deadline = committed + 60
            while not AlertEvidence.objects.filter(evidence_key=f"access:{event_id}").exists():
                if worker.poll() is not None:
                    raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
                if time.perf_counter() > deadline:
                    raise RuntimeError("no alert within 60 s")
                time.sleep(0.02)  # a benchmark's clock, not a test
            if i:
                delays.append(time.perf_counter() - committed)
            time.sleep(0.2)  # reads arrive apart, as people's do
    finally:
        worker_stop(worker)
        connections.close_all()
    return sorted(delays)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--reads", type=int, default=30)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DETECTORS_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2"))
    parser.add_argument("--skip-lag", action="store_true")
    args = parser.parse_args()
    config = parse_database_url(args.database_url)
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="catalog-bench-detectors-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        environment["REDIS_URL"] = args.redis_url
        os.environ.update(environment)
        progress(f"recreating database {config['NAME']}")
        database_recreate(config)
        import django

        django.setup()
        from bench.monitoring import prepare

        store = prepare()
        figures = throughput(store, events=args.events, batch=args.batch)
        delays = [] if args.skip_lag else lag(store, reads=args.reads, environment=environment, var_dir=var_dir)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rate = figures["rate"]
    print(f"{os.cpu_count()} cores; load before: {load_before}")
    print(f"detectors over {figures['handled']:,} events (batches of {args.batch}): {figures['seconds']:.2f} s, "
          f"{rate:,.0f} events/s (goal >= {THROUGHPUT_GOAL:,}/s: {'met' if rate >= THROUGHPUT_GOAL else 'NOT met'}); "
          f"{figures['queries']:,} queries, {figures['alerts']:,} alerts, {figures['evidence']:,} pieces of evidence")
    if delays:
        p50, p95 = percentile(delays, 50), percentile(delays, 95)
        print(f"read -> alert lag over {len(delays)} reads, one worker: p50 {p50:.2f} s, p95 {p95:.2f} s, "
              f"max {delays[-1]:.2f} s (goal p95 < {LAG_GOAL_SECONDS:.0f} s: {'met' if p95 < LAG_GOAL_SECONDS else 'NOT met'})")
    print(f"load after: {load_after}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
