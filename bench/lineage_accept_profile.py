"""Where the CPU of one accepted OpenLineage event goes: the server side (one ``POST
/api/v1/lineage`` through Django's WSGI handler with the production settings and middleware,
in-process) and the client side (the openlineage-python client's HTTP transport, against a
server that only answers 202).

    .venv/bin/python bench/lineage_accept_profile.py [--events 500] [--database-url ...] [--top 25]

1. Drops and recreates its own PostgreSQL database (default ``catalog_bench_accept``), migrates
   it and creates the roles and a data engineer's service account.
2. Server side: posts ``--events`` first-run events of bench/lineage.py (distinct, so each is
   an INSERT) through ``django.test.Client`` (the whole WSGI handler: every middleware, DRF,
   authentication, the permission check, the INSERT), untimed warm-up first; reports CPU
   (``time.process_time``) and wall time per request, queries per request, and with
   ``--top`` cProfile's most expensive functions in CPU time (cumulative and own).
3. Client side: the same events sent by openlineage-python's ``HttpTransport`` (1 thread) to a
   bare ``http.server`` in a child process that answers 202 at once; reports the client
   process's CPU per event.

CPU, not wall time, is what 500 events/s on 2 shared cores is bounded by: 2 cores give 4 ms of
CPU per event at 500/s, to share between the client, gunicorn, PostgreSQL and the worker.
"""

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.register import HOST, database_recreate, parse_database_url, server_environment  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/catalog_bench_accept"

BARE_SERVER = r"""
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"status": "pending"}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def server_side(events: int, top: int) -> dict:
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from access.services import role_ensure_defaults, service_account_create
    from bench.lineage import openlineage_event
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    role_ensure_defaults()
    _, key = service_account_create(name="bench-accept", role_slug="data_engineer")
    client = Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR="127.0.0.1")

    def post(index: int):
        response = client.post("/api/v1/lineage", openlineage_event(index, run=0), content_type="application/json")
        if response.status_code != 202:
            raise RuntimeError(f"answered {response.status_code}: {response.content[:300]!r}")

    for index in range(50):  # warm-up: imports, connection, caches
        post(10_000_000 + index)
    bodies = list(range(events))
    with CaptureQueriesContext(connection) as captured:
        post(20_000_000)
    queries = [query["sql"] for query in captured.captured_queries]
    reset_queries()
    cpu, wall = time.process_time(), time.perf_counter()
    for index in bodies:
        post(index)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    profile_text = ""
    if top:
        profiler = cProfile.Profile(time.process_time)  # CPU, not time waiting on PostgreSQL
        profiler.enable()
        for index in bodies:
            post(30_000_000 + index)
        profiler.disable()
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        profile_text = stream.getvalue()
    return {"cpu_ms": cpu / events * 1000, "wall_ms": wall / events * 1000, "queries": queries,
            "profile": profile_text}


def fold_side(events: int, key_prefix: int = 40_000_000, top: int = 0) -> list[dict]:
    """The worker's fold, in-process: ``events`` first runs accepted, drained in one call (queries
    counted and grouped, CPU timed), then the same jobs' next run."""
    import re
    from collections import Counter, deque

    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from access.services import service_account_create
    from bench.lineage import openlineage_event
    from lineage.ingestion import lineage_events_drain

    settings.LINEAGE_INGEST_INLINE = False
    _, key = service_account_create(name="bench-fold", role_slug="data_engineer")
    client = Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Token {key}", REMOTE_ADDR="127.0.0.1")
    lineage_events_drain()  # the events of the accept measurement, not counted
    results = []
    for phase, run in (("first run", 0), ("next run", 1)):
        for index in range(events):
            response = client.post("/api/v1/lineage", openlineage_event(key_prefix + index, run=run),
                                   content_type="application/json")
            assert response.status_code == 202, response.content[:300]
        connection.queries_log = deque(maxlen=10_000_000)  # Django keeps only the last 9,000 by default
        cpu, wall = time.process_time(), time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            outcome = lineage_events_drain()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        kinds = Counter()
        for query in captured.captured_queries:
            sql = re.sub(r"\s+", " ", query["sql"])
            verb = sql.split(" ", 1)[0].upper()
            table = re.search(r'(?:FROM|INTO|UPDATE) "?([a-z_]+)"?', sql)
            kinds[f"{verb} {table.group(1) if table else ''}"] += 1
        folded = max(1, outcome.applied + outcome.failed)
        results.append({"phase": phase, "applied": outcome.applied, "failed": outcome.failed,
                        "queries": len(captured.captured_queries), "cpu_ms": cpu / folded * 1000,
                        "wall_ms": wall / folded * 1000, "kinds": kinds.most_common(25), "profile": ""})
        if top:  # the same phase again with other jobs, under cProfile (CPU time)
            for index in range(events):
                response = client.post("/api/v1/lineage", openlineage_event(2 * key_prefix + index, run=run),
                                       content_type="application/json")
                assert response.status_code == 202, response.content[:300]
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            lineage_events_drain()
            profiler.disable()
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(top)
            results[-1]["profile"] = stream.getvalue()
    return results


def client_side(events: int) -> dict:
    from openlineage.client.transport.http import HttpConfig, HttpTransport

    from bench.lineage import openlineage_event

    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(bare.stdout.readline())
        transport = HttpTransport(HttpConfig(url=f"http://127.0.0.1:{port}", timeout=30))
        bodies = [openlineage_event(index, run=0) for index in range(events)]
        for body in bodies[:20]:
            transport.emit(body)
        cpu, wall = time.process_time(), time.perf_counter()
        for body in bodies:
            transport.emit(body)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        transport.close()
    finally:
        bare.terminate()
        bare.wait(timeout=10)
    return {"cpu_ms": cpu / events * 1000, "wall_ms": wall / events * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--top", type=int, default=0, help="print cProfile's N most expensive functions")
    parser.add_argument("--fold", type=int, default=0, metavar="EVENTS",
                        help="also fold EVENTS first runs then next runs in-process: queries and CPU per event")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="catalog-bench-accept-") as var_dir:
        environment = server_environment(args.database_url, var_dir)
        os.environ.update(environment)
        database_recreate(parse_database_url(args.database_url))
        import django

        django.setup()
        server = server_side(args.events, args.top)
        client = client_side(args.events)
        fold = fold_side(args.fold, top=args.top) if args.fold else []
    print(f"accept path, {args.events} events, production settings; load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"server (WSGI handler in-process): {server['cpu_ms']:.2f} ms CPU, {server['wall_ms']:.2f} ms wall per "
          f"request, {len(server['queries'])} queries")
    for sql in server["queries"]:
        print(f"  {sql[:160]}")
    print(f"openlineage-python client (HttpTransport to a bare 202 server): {client['cpu_ms']:.2f} ms CPU, "
          f"{client['wall_ms']:.2f} ms wall per event")
    for item in fold:
        print(f"fold, {item['phase']}: {item['applied']} applied, {item['failed']} failed; "
              f"{item['queries'] / max(1, item['applied'] + item['failed']):.1f} queries, {item['cpu_ms']:.2f} ms CPU, "
              f"{item['wall_ms']:.2f} ms wall per event (in-process, one drain)")
        for kind, count in item["kinds"]:
            print(f"  {count:6d}  {kind}")
        if item["profile"]:
            print(item["profile"])
    if server["profile"]:
        print(server["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
