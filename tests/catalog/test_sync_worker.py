"""The sync run by a real Celery worker process, against the real Redis broker and the
PostgreSQL test database, including a worker killed with SIGKILL in the middle of a run.

These tests need DATABASE_URL (PostgreSQL) and REDIS_URL. Without them they are skipped
locally; in CI (``CI=true``) they fail. Rows are committed (``transaction=True``) so the
worker sees them; the worker runs with short timeouts (visibility 5 s, stale heartbeat 3 s,
batches of 20) so a killed run is taken over within seconds.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection, connections
from django.db.models import Count
from django.utils import timezone

from catalog.connections import connection_save
from catalog.models import Dataset, DatasetVersion, SyncRun, SyncStatus
from catalog.sync import sync_run_request
from tests.catalog.warehouses import postgres_warehouse, sqlite_warehouse, synced_object_count
from tests.factories import StoreFactory

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).with_name("celery")
QUEUES = ("catalog", "sync")
FINISHED = (SyncStatus.SUCCEEDED, SyncStatus.PARTIAL, SyncStatus.FAILED)
SIGKILL_EXTRA_TABLES = 600


def _need(reason: str):
    """A real service is missing: fail (make test starts them; see scripts/ensure-services.sh)."""
    pytest.fail(reason, pytrace=False)


@pytest.fixture
def redis_client():
    """The broker's Redis; the tests need it (and PostgreSQL) for real."""
    if connection.vendor != "postgresql":
        _need("worker tests need the catalog on PostgreSQL (DATABASE_URL=postgres://...)")
    if not settings.REDIS_URL:
        _need("worker tests need Redis (REDIS_URL=redis://...)")
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        _need(f"Redis at REDIS_URL is not reachable ({exc})")
    yield client
    client.close()


def _purge(app, client) -> None:
    with app.connection_for_write() as broker_connection:
        for queue in QUEUES:
            broker_connection.default_channel.queue_purge(queue)
    # Messages a killed worker left unacknowledged would be handed to the next test's worker.
    client.delete("unacked", "unacked_index", "unacked_mutex")


@pytest.fixture
def broker(redis_client, settings):
    """Tasks go to the real broker (the test settings run them eagerly); queues start empty."""
    from config.celery import app

    assert app.conf.broker_url == settings.REDIS_URL and app.conf.broker_url.startswith("redis://")
    eager = app.conf.task_always_eager  # read before the settings change: the conf may read through to them
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False
    _purge(app, redis_client)
    yield app
    app.conf.task_always_eager = eager
    _purge(app, redis_client)


def _worker_env(tmp_path) -> dict:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "postgres") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return {
        **os.environ,
        # Not the test settings (they run tasks eagerly): the local ones, with a fast sweep of unacked messages.
        "DJANGO_SETTINGS_MODULE": "tests.catalog.worker_settings",
        "DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CATALOG_MASTER_KEYS": ",".join(settings.CATALOG_MASTER_KEYS),
        # A killed worker's message comes back this long after it was delivered.
        "CELERY_VISIBILITY_TIMEOUT": "5",
        "SYNC_STALE_SECONDS": "3",
        "SYNC_BATCH_SIZE": "20",
        "DB_CONN_MAX_AGE": "0",
        "DEBUG": "false",
        "CATALOG_VAR_DIR": str(tmp_path / "worker-var"),
        # The test's SQLite warehouses are in tmp_path: the worker may open files there, as the tests may.
        "CATALOG_FILE_STORES_DIRS": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }


class Worker:
    def __init__(self, name: str, tmp_path, concurrency: int):
        self.name = name
        self.log_path = tmp_path / f"worker-{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(CELERY), "-A", "config", "worker", "--queues", ",".join(QUEUES), "--concurrency", str(concurrency),
             "--pool", "prefork", "--loglevel", "INFO", "-n", f"{name}@%h",
             "--without-mingle", "--without-gossip", "--without-heartbeat"],
            cwd=REPO, env=_worker_env(tmp_path), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches the pool children too
        )

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as an OOM killer or a lost machine would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()

    @property
    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_worker(broker, transactional_db, tmp_path):
    """Starts workers; stops every one of them (and prints their logs) even when the test fails.

    It depends on ``transactional_db`` so the workers are gone before the tables are flushed.
    """
    started = []

    def start(name="w1", concurrency=1) -> Worker:
        worker = Worker(name, tmp_path, concurrency)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
        print(f"--- log of worker {worker.name} (exit {worker.process.returncode}) ---\n{worker.log[-6000:]}")


def wait_for(predicate, *, timeout: float, what: str, workers):
    """Check ``predicate`` until it returns something truthy; fail after ``timeout`` seconds or if a
    worker exits meanwhile. Between checks it waits on the first worker's process, so an exit is
    seen at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(f"worker {worker.name} exited ({worker.process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout} s waiting for {what}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            workers[0].process.wait(timeout=0.05)


def finished_run(run_id: int, *, timeout: float = 40, workers) -> SyncRun:
    def finished():
        run = SyncRun.objects.get(pk=run_id)
        return run if run.status in FINISHED else None

    return wait_for(finished, timeout=timeout, what=f"sync run #{run_id} to finish", workers=workers)


@pytest.fixture
def engineer(platform_engineer):
    return platform_engineer


def connect(engineer, *, platform, password=None, **fields) -> object:
    store = StoreFactory(name=f"shop-{uuid.uuid4().hex[:6]}", platform=platform)
    connection_save(principal=engineer, store=store, password=password, **fields)
    return store


def test_requested_sync_is_run_by_the_worker(start_worker, engineer):
    with postgres_warehouse() as wh:
        store = connect(engineer, platform=wh.platform, **wh.connection_fields)
        worker = start_worker()

        run, created = sync_run_request(principal=engineer, store=store)
        run = finished_run(run.pk, workers=[worker])

    assert created
    assert run.status == SyncStatus.SUCCEEDED, run.message
    total = synced_object_count(wh)
    assert (run.new_count, run.objects_total, run.objects_done, run.attempts) == (total, total, total, 1)
    assert Dataset.objects.filter(store=store).count() == total
    assert "catalog.store_sync" in worker.log


def test_two_requests_at_once_make_one_run(start_worker, engineer, tmp_path):
    with sqlite_warehouse(tmp_path) as wh:
        store = connect(engineer, platform=wh.platform, **wh.connection_fields)
        worker = start_worker()
        barrier, answers = threading.Barrier(2), []

        def request():
            try:
                barrier.wait(timeout=10)
                answers.append(sync_run_request(principal=engineer, store=store))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=request) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        [run] = {run.pk for run, _ in answers}
        finished = finished_run(run, workers=[worker])

    assert sorted(created for _, created in answers) == [False, True]
    assert SyncRun.objects.filter(store=store).count() == 1
    assert finished.status == SyncStatus.SUCCEEDED, finished.message
    assert (finished.attempts, finished.new_count) == (1, synced_object_count(wh))


def test_task_sent_twice_runs_the_sync_once(start_worker, engineer, tmp_path, redis_client):
    from catalog.tasks import store_sync

    with sqlite_warehouse(tmp_path) as wh:
        store = connect(engineer, platform=wh.platform, **wh.connection_fields)
        run, _ = sync_run_request(principal=engineer, store=store, enqueue=False)
        store_sync.delay(run.pk)
        store_sync.delay(run.pk)
        worker = start_worker(concurrency=2)  # both copies are taken at once, one per pool process

        finished = finished_run(run.pk, workers=[worker])
        wait_for(
            lambda: redis_client.llen("sync") == 0 and redis_client.hlen("unacked") == 0,
            timeout=20, what="both copies of the task to be acknowledged", workers=[worker],
        )

    total = synced_object_count(wh)
    assert finished.status == SyncStatus.SUCCEEDED, finished.message
    assert SyncRun.objects.get(pk=run.pk).attempts == 1
    assert finished.new_count == total
    assert DatasetVersion.objects.filter(dataset__store=store).count() == total
    assert worker.log.count("catalog.store_sync") >= 2  # both were delivered; one found the run taken


def assert_no_half_written_version(store) -> int:
    """Every dataset written so far is whole: one version, whose columns match its Column rows."""
    datasets = list(
        Dataset.objects.filter(store=store).select_related("current_version")
        .annotate(column_rows=Count("columns", distinct=True), version_rows=Count("versions", distinct=True))
    )
    for dataset in datasets:
        assert dataset.current_version is not None, dataset.qualified_name
        assert len(dataset.current_version.columns) == dataset.column_rows, dataset.qualified_name
        assert dataset.version_rows == 1, dataset.qualified_name
    return len(datasets)


def kill_worker_mid_run(start_worker, engineer, wh) -> tuple[object, SyncRun]:
    """Start a sync on worker w1 and SIGKILL it once some batches are written; checks what it left."""
    store = connect(engineer, platform=wh.platform, **wh.connection_fields)
    first = start_worker("w1")
    run, _ = sync_run_request(principal=engineer, store=store)

    def writing():
        current = SyncRun.objects.get(pk=run.pk)
        return current.objects_done > 0 and current.status == SyncStatus.RUNNING

    wait_for(writing, timeout=30, what="the first batches to be written", workers=[first])
    first.kill()

    killed = SyncRun.objects.get(pk=run.pk)
    assert killed.status == SyncStatus.RUNNING
    assert 0 < killed.objects_done < synced_object_count(wh), "the run ended before the kill: make the warehouse bigger"
    assert assert_no_half_written_version(store) == killed.objects_done
    # A worker may take the run over once its heartbeat is stale; make it so before the next one
    # starts (the killed worker no longer beats: move its last beat back past SYNC_STALE_SECONDS, as
    # the clock would), so whenever that worker gets the message back, its claim cannot be refused.
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=3.5))
    return store, killed


def assert_finished_once(run: SyncRun, store, total: int) -> None:
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.attempts == 2
    assert (run.new_count, run.objects_done, run.objects_total) == (total, total, total)
    assert (run.unchanged_count, run.failed_count) == (0, 0)
    assert assert_no_half_written_version(store) == total


def test_worker_killed_mid_run_leaves_whole_batches_and_the_redelivered_task_finishes(start_worker, engineer, tmp_path):
    with sqlite_warehouse(tmp_path, extra_tables=SIGKILL_EXTRA_TABLES) as wh:
        store, killed = kill_worker_mid_run(start_worker, engineer, wh)

        # The message was never acknowledged: Redis hands it to the next worker after the visibility timeout.
        second = start_worker("w2")
        finished = finished_run(killed.pk, timeout=45, workers=[second])

    assert_finished_once(finished, store, synced_object_count(wh))


def test_killed_run_whose_message_was_lost_is_resent_by_sync_runs_resume(
    start_worker, engineer, tmp_path, redis_client
):
    from catalog.tasks import sync_runs_resume

    with sqlite_warehouse(tmp_path, extra_tables=SIGKILL_EXTRA_TABLES) as wh:
        store, killed = kill_worker_mid_run(start_worker, engineer, wh)
        redis_client.delete("unacked", "unacked_index")  # the broker lost the message (a Redis restart, say)
        second = start_worker("w2")

        sync_runs_resume.delay()  # what beat sends every minute
        finished = finished_run(killed.pk, timeout=45, workers=[second])

    assert_finished_once(finished, store, synced_object_count(wh))
    assert "catalog.sync_runs_resume" in second.log


def test_warehouse_down_fails_the_run_through_the_worker(start_worker, engineer):
    password = f"pw-{uuid.uuid4().hex}"
    store = connect(
        engineer, platform="postgresql", host="127.0.0.1", port=1, database="warehouse", username="reader",
        password=password,
    )
    worker = start_worker()

    run, _ = sync_run_request(principal=engineer, store=store)
    finished = finished_run(run.pk, workers=[worker])

    assert finished.status == SyncStatus.FAILED
    assert finished.message.startswith(f"Could not connect to the warehouse of {store.name}: ")
    assert "refused" in finished.message
    assert password not in finished.message
    assert password not in worker.log
    assert not Dataset.objects.filter(store=store).exists()
