"""Audit verification benchmark: a full check of a million-event chain, and an incremental check
from a checkpoint over 10,000 new events.

    .venv/bin/python bench/audit_verify.py [--events 1000000] [--new 10000] [--baseline] [--markdown]

What it does, in order (in-process, PostgreSQL on 127.0.0.1 only):

1. Drops and recreates its database (default ``catalog_bench_audit``; the name must contain
   ``bench``), migrates it and creates 20 users.
2. Fills ``--events`` audit events with a valid hash chain: each hashed in Python with the
   catalog's own canonical form (``access.audit._canonical_text``) and loaded with ``COPY``;
   a mix of actions, actors, datasets (none), reasons and details (empty, flat, nested,
   non-ASCII). Sets the chain's head, then ``VACUUM (ANALYZE)``.
3. Times ``audit_verify(full=True)`` (every event and checkpoint) and records a checkpoint.
4. Appends ``--new`` events through the real ``audit_record_many`` (1,000 per transaction) and
   times ``audit_verify(full=False)``: the incremental check from that checkpoint.
5. With ``--baseline``, also times the check as it was before the server-side cursor (model
   instances in batches of 5,000, ``event_hash`` per instance) on the same chain.

Every check must say intact (and the incremental one must have read exactly the new events
and the checkpoint's announcement), or the run fails. Timings are only recorded in
docs/benchmarks.md, never asserted in tests.
"""

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
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
    plain_table,
    server_environment,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_audit"
FULL_GOAL_SECONDS_PER_MILLION = 10.0
INCREMENTAL_GOAL_SECONDS = 1.0
INCREMENTAL_GOAL_EVENTS = 10_000
USERS = 20
ACTIONS = ("request.created", "request.reviewed", "request.approved", "grant.activated", "grant.expired",
           "metadata.restricted_viewed", "grant.revoked", "request.denied")


def progress(message: str) -> None:
    print(f"[bench/audit_verify] {message}", file=sys.stderr, flush=True)


def details_for(number: int) -> dict:
    """Most events carry a few flat details; some none, some nested or non-ASCII."""
    kind = number % 10
    if kind < 2:
        return {}
    if kind == 7:
        return {"columns": ["ssn", "email", "birth_date"], "sensitivity": {"from": "Sensitive", "to": "Regular"}}
    if kind == 9:
        return {"reason": "Überprüfung für Zoë", "ticket": f"SEC-{number}"}
    return {"level": "Read", "duration_hours": 8, "environment": "prod"}


def fill(config: dict, *, events: int, user_ids: list[int]) -> float:
    """COPY ``events`` chained events; return the seconds it took (hashing included)."""
    import psycopg

    from access.audit import GENESIS, _canonical_text

    started = time.perf_counter()
    start_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=365)
    step = dt.timedelta(seconds=365 * 86400 / max(events, 1))
    previous = GENESIS
    sha256 = hashlib.sha256
    with psycopg.connect(host=config["HOST"], port=config.get("PORT") or 5432, user=config.get("USER") or None,
                         dbname=config["NAME"]) as conn, conn.cursor() as cursor:
        with cursor.copy("COPY access_auditevent (id, at, actor_id, actor_name, action, object_type, object_id, "
                         "dataset_id, remote_addr, reason, details, previous_hash, hash) FROM STDIN") as copy:
            for number in range(1, events + 1):
                at = start_at + step * number
                actor = user_ids[number % USERS] if number % 5 else None
                actor_name = f"user{number % USERS}" if actor else "system"
                action = ACTIONS[number % len(ACTIONS)]
                details = details_for(number)
                reason = "" if number % 3 else f"benchmark reason {number}"
                text = _canonical_text(number, at, actor, actor_name, action, "accessrequest", str(number), None,
                                       "10.0.0.1", reason, details)
                digest = sha256((previous + text).encode()).hexdigest()
                copy.write_row((number, at, actor, actor_name, action, "accessrequest", str(number), None,
                                "10.0.0.1", reason, json.dumps(details), previous, digest))
                previous = digest
        cursor.execute("INSERT INTO access_auditchainhead (id, last_id, last_hash) VALUES (1, %s, %s) "
                       "ON CONFLICT (id) DO UPDATE SET last_id = EXCLUDED.last_id, last_hash = EXCLUDED.last_hash",
                       (events, previous))
        conn.commit()
    seconds = time.perf_counter() - started
    with psycopg.connect(host=config["HOST"], port=config.get("PORT") or 5432, user=config.get("USER") or None,
                         dbname=config["NAME"], autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) access_auditevent")
    return seconds


def baseline_verify() -> tuple[bool, int]:
    """The check as it was before this benchmark (model instances in batches, event_hash each)."""
    from access.audit import GENESIS, event_hash
    from access.models import AuditChainHead, AuditEvent

    head = AuditChainHead.objects.get(pk=1)
    previous, expected, last_id, checked = GENESIS, 1, 0, 0
    while last_id < head.last_id:
        batch = list(AuditEvent.objects.filter(pk__gt=last_id, pk__lte=head.last_id).order_by("pk")[:5000])
        if not batch:
            break
        for event in batch:
            if event.pk != expected or event.previous_hash != previous or event_hash(previous, event) != event.hash:
                return False, checked
            previous, expected, checked = event.hash, expected + 1, checked + 1
        last_id = batch[-1].pk
    return previous == head.last_hash, checked


CPU = {}  # seconds of this process's CPU per timed check (PostgreSQL's own work not included)


def timed(function):
    started, cpu = time.perf_counter(), time.process_time()
    result = function()
    CPU[function] = time.process_time() - cpu
    return result, time.perf_counter() - started


def measure(*, events: int, new: int, baseline: bool) -> list[dict]:
    from django.db import transaction

    from access.audit import audit_checkpoint_record, audit_record_many, audit_verify

    rows = []
    check = lambda: audit_verify(full=True)  # noqa: E731
    report, seconds = timed(check)
    if not report.intact or report.checked != events:
        raise BenchmarkError(f"full check: intact={report.intact} checked={report.checked}: {report.problem}")
    rows.append({"path": "audit_verify --full (server-side cursor, tuples)", "checked": report.checked,
                 "seconds": seconds, "cpu": CPU[check], "goal": f"<= {FULL_GOAL_SECONDS_PER_MILLION:g} s per million",
                 "met": seconds * 1_000_000 / events <= FULL_GOAL_SECONDS_PER_MILLION})
    if baseline:
        (intact, checked), seconds = timed(baseline_verify)
        cpu = CPU[baseline_verify]
        if not intact:
            raise BenchmarkError("the baseline check found the chain broken")
        rows.append({"path": "before: model instances in batches of 5,000", "checked": checked,
                     "seconds": seconds, "cpu": cpu, "goal": f"<= {FULL_GOAL_SECONDS_PER_MILLION:g} s per million",
                     "met": seconds * 1_000_000 / events <= FULL_GOAL_SECONDS_PER_MILLION})
    checkpoint = audit_checkpoint_record(report)
    progress(f"checkpoint #{checkpoint.pk} through event #{checkpoint.event_id}; appending {new:,} events")
    for offset in range(0, new, 1000):
        with transaction.atomic():
            audit_record_many([
                {"actor": None, "action": "grant.expired", "reason": f"new event {offset + n}",
                 "details": {"n": offset + n}}
                for n in range(min(1000, new - offset))
            ])
    check = lambda: audit_verify(full=False)  # noqa: E731
    report, seconds = timed(check)
    if not report.intact or report.full or report.checked != new + 1:
        raise BenchmarkError(f"incremental check: intact={report.intact} full={report.full} "
                             f"checked={report.checked}: {report.problem}")
    rows.append({"path": f"audit_verify (incremental from checkpoint #{checkpoint.pk})", "checked": report.checked,
                 "seconds": seconds, "cpu": CPU[check], "goal": f"< {INCREMENTAL_GOAL_SECONDS:g} s for {INCREMENTAL_GOAL_EVENTS:,} new",
                 "met": seconds * INCREMENTAL_GOAL_EVENTS / max(report.checked, 1) < INCREMENTAL_GOAL_SECONDS})
    return rows


HEADERS = ["check", "events read", "seconds", "s per million", "python CPU s", "goal", "met"]


def table_rows(rows: list[dict]) -> list[list[str]]:
    return [[r["path"], f"{r['checked']:,}", f"{r['seconds']:.2f}", f"{r['seconds'] * 1e6 / r['checked']:.1f}",
             f"{r['cpu']:.2f}", r["goal"], "yes" if r["met"] else "NO"] for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the chain (default 1,000,000)")
    parser.add_argument("--new", type=int, default=10_000, help="events after the checkpoint (default 10,000)")
    parser.add_argument("--baseline", action="store_true", help="also time the check as it was before")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.events <= 20_000_000 or not 1 <= args.new <= 1_000_000:
        parser.error("--events must be 1..20,000,000 and --new 1..1,000,000")

    config = parse_database_url(args.database_url)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="catalog-bench-audit-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        Path(environment["STATIC_ROOT"]).mkdir()
        os.environ.update(environment)
        os.environ.pop("REDIS_URL", None)
        progress(f"recreating database {config['NAME']}")
        postgres_version = database_recreate(config)

        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        from django.contrib.auth import get_user_model

        User = get_user_model()

        call_command("migrate", interactive=False, verbosity=0)
        user_ids = [User.objects.create(username=f"user{n}").pk for n in range(USERS)]
        connections.close_all()
        progress(f"filling {args.events:,} chained events (hashed in Python, COPY)")
        fill_seconds = fill(config, events=args.events, user_ids=user_ids)
        progress(f"  filled in {fill_seconds:.1f}s; verifying")
        rows = measure(events=args.events, new=args.new, baseline=args.baseline)
        connections.close_all()
    load_after = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=BASE_DIR).stdout.strip()
    header = [
        f"Audit verification benchmark, {dt.date.today().isoformat()} at commit {commit}: "
        f".venv/bin/python bench/audit_verify.py {' '.join(sys.argv[1:])}".rstrip(),
        f"Machine: {os.cpu_count()} cores, {memory_gib()} RAM, Python {platform.python_version()}, "
        f"PostgreSQL {postgres_version} on 127.0.0.1",
        f"Machine load (1/5/15 min): {' '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{' '.join(f'{x:.2f}' for x in load_after)} after",
        f"Chain: {args.events:,} events filled in {fill_seconds:.1f}s, then {args.new:,} appended after a checkpoint.",
    ]
    print("\n".join(header) + "\n\n" + plain_table(HEADERS, table_rows(rows)))
    if args.markdown:
        print("\n" + "\n".join(header) + "\n\n" + markdown_table(HEADERS, table_rows(rows)))
    return 0 if all(r["met"] for r in rows if not r["path"].startswith("before")) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"bench/audit_verify.py: {error}", file=sys.stderr)
        sys.exit(2)
