"""The detectors run by a real Celery worker through the real Redis broker, queued when ingested
events commit; a worker SIGKILLed in the middle of a batch leaves nothing half-written, and the
redelivered task raises every alert once with every piece of evidence once.

Needs DATABASE_URL (PostgreSQL) and REDIS_URL, like tests/catalog/test_sync_worker.py.
"""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.core.cache import cache
from django.db import connection

from monitoring.detectors import DETECT_QUEUED_FLAG, detect_all
from monitoring.models import AccessEvent, Alert, AlertEvidence, DetectorCursor
from tests.catalog.test_sync_worker import broker, redis_client, start_worker, wait_for  # noqa: F401 (fixtures)
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create
from tests.monitoring.test_detectors import ingest, pg_line

pytestmark = pytest.mark.django_db(transaction=True)

AT = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday morning: no off-hours alerts
OTHERS = 40  # unmapped roles, each a subject of its own, in the batch before the blocked one


def _dsn() -> str:
    db = connection.settings_dict
    return (f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} dbname={db['NAME']} "
            f"user={db['USER'] or 'postgres'}" + (f" password={db['PASSWORD']}" if db["PASSWORD"] else ""))


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(start_worker):
    cache.delete(DETECT_QUEUED_FLAG)
    dave = UserFactory(username="dave", roles=["data_engineer"])
    store = StoreFactory(name="pg-worker-a", kind="transactional", platform="postgresql", environment="prod")
    dataset_create(principal=dave, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive")])
    UserFactory(username="mia", roles=["data_analyst"], warehouse_role="mia_role")

    ingest(store, pg_line("SELECT email FROM shop.customers", at=AT))
    detect_all()  # here: mia's alert is open, the cursor past her first read
    mias = Alert.objects.get(rule="read_not_allowed", subject_key__startswith="user:")
    before = DetectorCursor.objects.get(stream="access").last_id

    # Another session holds mia's alert: the worker's batch opens the other alerts, then waits on it.
    blocker = psycopg.connect(_dsn(), autocommit=False)
    blocker.execute("SELECT id FROM monitoring_alert WHERE id = %s FOR UPDATE", [mias.pk])
    try:
        ingest(store, *[pg_line("SELECT email FROM shop.customers", at=AT + timedelta(seconds=i), role=f"etl_{i}")
                        for i in range(OTHERS)],
               *[pg_line("SELECT email FROM shop.customers", at=AT + timedelta(minutes=5, seconds=i)) for i in range(3)])
        # The commit queued monitoring.detect on the real broker.
        worker = start_worker("w1")

        def batch_waiting_after_writing():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND backend_xid IS NOT NULL AND wait_event_type = 'Lock'"
                )
                return cursor.fetchone()[0] > 0

        wait_for(batch_waiting_after_writing, timeout=60, what="the worker's batch to wait on the held alert",
                 workers=[worker])
        worker.kill()
    finally:
        blocker.rollback()
        blocker.close()

    assert DetectorCursor.objects.get(stream="access").last_id == before  # the batch was rolled back whole
    assert Alert.objects.count() == 1 and AlertEvidence.objects.count() == 1

    second = start_worker("w2")  # the killed worker's unacknowledged task comes back to it
    last = AccessEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    wait_for(lambda: DetectorCursor.objects.get(stream="access").last_id == last, timeout=120,
             what="the detectors to catch up", workers=[second])
    assert "monitoring.detect" in second.log

    def state():
        return sorted(Alert.objects.values_list("rule", "subject_key", "count")), AlertEvidence.objects.count()

    alerts, evidence = state()
    not_allowed = [a for a in alerts if a[0] == "read_not_allowed"]
    assert len(not_allowed) == OTHERS + 1
    assert {count for _, subject, count in not_allowed if subject.startswith("role:")} == {1}
    assert [count for _, subject, count in not_allowed if subject.startswith("user:")] == [4]
    second.stop()
    # Handled once more from the start (a cursor lost): nothing doubles.
    DetectorCursor.objects.update(last_id=0)
    detect_all()
    assert state() == (alerts, evidence)
