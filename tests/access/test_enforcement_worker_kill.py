"""A worker SIGKILLed in the middle of regenerating a protected view (PostgreSQL), with a real
Celery worker through the real Redis broker: the old view keeps working and the message, never
acknowledged (``acks_late``), makes the new view when it is delivered again.

Needs DATABASE_URL (PostgreSQL) and REDIS_URL, like tests/catalog/test_sync_worker.py.
"""

import psycopg
import pytest

from catalog.models import SyncRun
from catalog.sync import sync_run_execute, sync_run_request
from tests.access.test_enforcement_postgresql import (  # noqa: F401 (fixtures)
    analyst,
    as_role,
    emails,
    enforced,
    make_role,
    shop,
    wh,
)
from tests.catalog.test_sync_worker import (  # noqa: F401 (fixtures)
    broker,
    finished_run,
    redis_client,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_killed_while_regenerating_a_view_leaves_the_old_one_and_redelivery_makes_the_new(
        start_worker, wh, enforced, analyst, platform_engineer):
    """A sync changes a table's schema; its worker is SIGKILLed while its DROP VIEW waits on a lock
    the test holds (deterministic: the test sees the statement waiting in pg_stat_activity). The
    reader keeps reading the old view, during and after the kill; a new worker gets the message
    again (acks_late) and the view of the new schema is made."""

    store, role = enforced, analyst.warehouse_role
    run, _ = sync_run_request(principal=platform_engineer, store=store, enqueue=False)
    sync_run_execute(run.pk)  # the catalog and the views as the warehouse has them now
    wh.execute("ALTER TABLE sales.customers ADD COLUMN nickname VARCHAR(40)", "UPDATE sales.customers SET nickname = 'Ace'")
    fields = wh.connection_fields

    def connect(**options):
        return psycopg.connect(host=fields["host"], port=fields["port"], dbname=fields["database"], user="postgres",
                               **options)

    with connect() as holder, connect(autocommit=True) as watcher:
        holder.execute("LOCK TABLE governed.customers IN ACCESS SHARE MODE")  # a long read, as a report would hold
        run, _ = sync_run_request(principal=platform_engineer, store=store)  # queued to the broker
        worker = start_worker("w1")

        def regeneration_waiting():
            return watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND query LIKE 'DROP VIEW IF EXISTS \"governed\".\"customers\"%%'").fetchone()

        orphan = wait_for(regeneration_waiting, timeout=90, what="the worker's DROP VIEW to wait on the lock",
                          workers=[worker])[0]
        # The worker is inside the regeneration; a reader (here inside the lock's own transaction,
        # so it does not queue behind the DROP) still has the old view.
        holder.execute(f'SET LOCAL ROLE "{role}"')
        cursor = holder.execute("SELECT * FROM governed.customers ORDER BY id")
        assert "nickname" not in [c.name for c in cursor.description]
        assert all(row[1].startswith("***@") for row in cursor.fetchall())

        worker.kill()
        holder.rollback()  # the lock goes; the dead worker's backend finds nobody to commit for it
        # Wait on the condition itself: the regeneration holds the views' advisory lock until its
        # transaction ends, so taking it returns once the orphaned backend has rolled back.
        watcher.execute("SET statement_timeout = '60s'")
        with watcher.transaction():
            watcher.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ["governance-catalog views"])
        assert watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [orphan]).fetchone()[0] == 0

    with pytest.raises(psycopg.errors.UndefinedColumn):  # the old view, whole and working
        as_role(wh, role, "SELECT nickname FROM governed.customers")
    assert all(e.startswith("***@") for e in emails(wh, role))
    assert SyncRun.objects.get(pk=run.pk).status == "running"  # the message was never acknowledged

    second = start_worker("w2")
    finished = finished_run(run.pk, timeout=90, workers=[second])
    assert finished.status == "succeeded", finished.error
    assert finished.attempts >= 2
    assert as_role(wh, role, "SELECT nickname FROM governed.customers WHERE id = 1") == [("Ace",)]
    assert all(e.startswith("***@") for e in emails(wh, role))  # the protections stay
