"""OpenLineage ingestion benchmark: events/s accepted over HTTP from the real openlineage-python
client (1 and 8 client threads; a job's first run and the next run of a known job), queries per
accepted event, and how soon an event is in the graph after its 2xx, with a real Celery worker.

    .venv/bin/python bench/lineage.py --ingest [--events 2000] [--markdown]

(run through bench/lineage.py, which owns the OpenLineage events; ``--events`` per phase).

1. Drops and recreates its own PostgreSQL database (``catalog_bench_ingest``), migrates it and
   creates the roles, the stores and a data engineer's service account.
2. Starts gunicorn (production settings, 2 gthread workers of 4 threads) and one Celery worker
   (``--concurrency 1``, production settings) on the Redis given by ``--redis-url``.
3. For 1 then 8 client threads: sends ``--events`` first runs (new jobs: a new output of 10
   columns with 13 column edges; the first jobs also discover the input tables), waits until the
   worker applied them, then the same jobs' next run. Each event's 2xx time is kept; the
   event's ``applied_at`` minus that is "visible within".
4. Counts the SQL queries of one accepted event in-process (the whole API request).
5. Per phase, CPU per event (from /proc, user + system): the client (this process, while sending),
   gunicorn (its processes, while sending) and the worker (its processes, until the last event of
   the phase is applied). PostgreSQL's own CPU is not counted.

Goals (issue 17): >= 500 events/s first run, >= 1,000/s known job, visible within 2 s at p95.
"""

import datetime as dt
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

GOALS = {"first run": 500, "next run": 1000}
VISIBLE_GOAL_SECONDS = 2.0
DRAIN_WAIT_SECONDS = 900
CLIENT_THREADS = (1, 8)
GUNICORN_THREADS = 4


@dataclass
class IngestFigures:
    phase: str
    threads: int
    events: int
    seconds: float = 0.0
    accepted_at: dict = field(default_factory=dict)  # run id -> wall time of the 2xx
    visible: list = field(default_factory=list)  # seconds from 2xx to applied, sorted
    drain_seconds: float = 0.0  # from the first 2xx to the last event applied
    failed: int = 0
    # CPU seconds while sending (client: this process; server: gunicorn's processes) and until
    # the last event was applied (worker: the Celery worker's processes).
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    worker_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _clients(port: int, key: str, count: int):
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    clients = []
    for _ in range(count):
        transport = HttpTransport(HttpConfig(url=f"http://127.0.0.1:{port}", timeout=60,
                                             auth=ApiKeyTokenProvider({"apiKey": key})))
        clients.append((OpenLineageClient(transport=transport), transport))
    return clients


def group_cpu_seconds(pgid: int | None) -> float:
    """User and system CPU of the live processes of a process group (from /proc; 0 elsewhere)."""
    if pgid is None:
        return 0.0
    total, ticks = 0, os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...; utime, stime at 11, 12
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def send(figures: IngestFigures, bodies: list[dict], *, port: int, key: str):
    """POST every body with ``figures.threads`` openlineage-python clients; keep each 2xx's time."""
    work: queue.Queue = queue.Queue()
    for body in bodies:
        work.put(body)
    errors = []
    clients = _clients(port, key, figures.threads)

    def run(client):
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            try:
                client.emit(body)
            except Exception as exc:  # noqa: BLE001 - reported below, the run stops
                errors.append(exc)
                return
            figures.accepted_at[body["run"]["runId"]] = time.time()

    # The client's own HTTP transport (``OpenLineageClient.emit`` takes only its event classes; the
    # transport sends the same JSON, with the client's session, retries and auth).
    threads = [threading.Thread(target=run, args=(transport,)) for _, transport in clients]
    client_cpu = time.process_time()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures.seconds = time.perf_counter() - started
    figures.client_cpu = time.process_time() - client_cpu
    for _, transport in clients:
        transport.close()
    if errors:
        raise RuntimeError(f"{figures.phase}, {figures.threads} threads: {errors[0]}")


def wait_applied(figures: IngestFigures, *, worker: subprocess.Popen):
    """Wait until the worker applied every event of the phase; record each one's delay."""
    from django.db import connections

    from lineage.models import EventStatus, LineageEvent

    deadline = time.monotonic() + DRAIN_WAIT_SECONDS
    run_ids = list(figures.accepted_at)
    while LineageEvent.objects.filter(status=EventStatus.PENDING).exists():
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"events still pending after {DRAIN_WAIT_SECONDS}s")
        time.sleep(0.05)
    rows = LineageEvent.objects.filter(run_uuid__in=run_ids).values_list("run_uuid", "applied_at", "status")
    first = min(figures.accepted_at.values())
    last = first
    for run_uuid, applied_at, status in rows:
        if status == EventStatus.FAILED:
            figures.failed += 1
        applied = applied_at.timestamp()
        last = max(last, applied)
        figures.visible.append(max(0.0, applied - figures.accepted_at[str(run_uuid)]))
    figures.visible.sort()
    figures.drain_seconds = last - first
    connections.close_all()


def worker_start(environment: dict, log_path: Path) -> subprocess.Popen:
    celery = Path(sys.executable).with_name("celery")
    log = log_path.open("wb")
    return subprocess.Popen(
        [str(celery), "-A", "config", "worker", "--queues", "catalog", "--concurrency", "1", "--pool", "prefork",
         "--loglevel", "WARNING", "--without-mingle", "--without-gossip", "-n", "bench-ingest@%h"],
        cwd=BASE_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def worker_stop(process: subprocess.Popen):
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def accept_queries(key: str, body: dict) -> int:
    """Queries of one accepted event through the whole API request, in-process."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    client = APIClient(HTTP_HOST="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    client.post("/api/v1/lineage", {**body, "eventType": "OTHER"}, format="json")  # warm-up
    with CaptureQueriesContext(connection) as captured:
        response = client.post("/api/v1/lineage", body, format="json")
    if response.status_code != 202:
        raise RuntimeError(f"in-process accept answered {response.status_code}: {response.content[:300]!r}")
    return len(captured.captured_queries)


def p(values: list[float], percent: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(percent / 100 * (len(values) - 1))))]


def rows(figures: list[IngestFigures], queries: int) -> list[list[str]]:
    table = []
    for item in figures:
        goal = GOALS[item.phase]
        table.append([
            item.phase, str(item.threads), f"{item.events:,}", f"{item.rate:,.0f}/s", f">= {goal:,}/s",
            "met" if item.rate >= goal else "not met",
            f"{p(item.visible, 50):.2f} s", f"{p(item.visible, 95):.2f} s", f"<= {VISIBLE_GOAL_SECONDS:.0f} s",
            f"{item.events / item.drain_seconds:,.0f}/s" if item.drain_seconds else "-", str(item.failed),
            *(f"{cpu / item.events * 1000:.1f} ms" for cpu in (item.client_cpu, item.server_cpu, item.worker_cpu)),
        ])
    table.append(["queries per accepted event", "", "", str(queries), "constant", "", "", "", "", "", "", "", "", ""])
    return table


HEADERS = ["phase", "client threads", "events", "accepted", "goal", "", "visible p50", "visible p95", "goal",
           "applied (worker)", "failed", "CPU/event client", "gunicorn", "worker"]


def ingest_benchmark(*, events: int, port: int, key: str, environment: dict, var_dir: str, event_for,
                     server_pgid: int | None = None) -> dict:
    """Run the phases against a started gunicorn; ``event_for(index, run)`` builds an event."""
    worker = worker_start(environment, Path(var_dir) / "worker.log")
    figures = []
    try:
        offset = 0
        for threads in CLIENT_THREADS:
            for phase, run in (("first run", 0), ("next run", 1)):
                item = IngestFigures(phase=phase, threads=threads, events=events)
                bodies = [event_for(offset + index, run=run) for index in range(events)]
                print(f"[bench] OpenLineage {phase}, {threads} client threads: {events} events", file=sys.stderr,
                      flush=True)
                server_cpu, worker_cpu = group_cpu_seconds(server_pgid), group_cpu_seconds(worker.pid)
                send(item, bodies, port=port, key=key)
                item.server_cpu = group_cpu_seconds(server_pgid) - server_cpu
                wait_applied(item, worker=worker)
                item.worker_cpu = group_cpu_seconds(worker.pid) - worker_cpu
                figures.append(item)
            offset += events
        queries = accept_queries(key, event_for(offset, run=0))
    finally:
        worker_stop(worker)
    return {"figures": figures, "queries": queries, "date": dt.date.today().isoformat()}
