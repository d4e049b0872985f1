"""The OpenLineage queue drained by a real Celery worker through the real Redis broker, including
a worker SIGKILLed in the middle of a batch: nothing is lost, nothing is applied twice, and the
result equals a clean run of the same events.

Needs DATABASE_URL (PostgreSQL) and REDIS_URL, like tests/catalog/test_sync_worker.py.
"""

import json
import uuid

import pytest
from django.core.cache import cache
from django.db import connection, transaction
from openlineage.client.serde import Serde

from catalog.models import Dataset, DatasetVersion
from lineage.ingestion import DRAIN_QUEUED_FLAG, lineage_event_accept, lineage_events_drain
from lineage.models import Edge, EventStatus, LineageEvent, Run
from tests.catalog.test_sync_worker import broker, redis_client, start_worker, wait_for  # noqa: F401 (fixtures)
from tests.factories import service_account_with_key
from tests.lineage.test_openlineage import run_event

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = 60
COLUMNS = [f"c{i}" for i in range(13)]


def first_run_event(index: int, namespace: str) -> dict:
    """A job's first run: a new output of 13 columns, each copied from the shared input."""
    body = json.loads(Serde.to_json(run_event(run_id=str(uuid.uuid4()))))
    body["job"]["name"] = f"job_{index}"
    fields = [{"name": name, "type": "VARCHAR"} for name in COLUMNS]
    body["inputs"] = [{"namespace": namespace, "name": "public.source", "facets": {"schema": {"fields": fields}}}]
    body["outputs"] = [{
        "namespace": namespace, "name": f"marts.out_{index}",
        "facets": {
            "schema": {"fields": fields},
            "columnLineage": {"fields": {
                name: {"inputFields": [{"namespace": namespace, "name": "public.source", "field": name}]}
                for name in COLUMNS
            }},
        },
    }]
    return body


def snapshot(store_prefix: str):
    """The folded graph of one namespace, with the store's name left out (comparable across namespaces)."""
    datasets = Dataset.objects.filter(store__name__startswith=store_prefix)
    edges = sorted(
        (e.source.name.split(".", 1)[-1], e.target.name.split(".", 1)[-1], e.kind, e.level)
        for e in Edge.objects.filter(target__dataset__in=datasets).select_related("source", "target")
    )
    versions = sorted(DatasetVersion.objects.filter(dataset__in=datasets).values_list("dataset__name", "number"))
    return edges, versions


def test_a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(start_worker, monkeypatch, settings):
    monkeypatch.setenv("LINEAGE_DRAIN_BATCH", str(EVENTS))  # one batch: the kill lands inside it
    settings.LINEAGE_INGEST_INLINE = False
    cache.delete(DRAIN_QUEUED_FLAG)
    sender, _ = service_account_with_key(username="airflow")
    with transaction.atomic():  # one commit, one queued drain
        for index in range(EVENTS):
            lineage_event_accept(principal=sender, payload=first_run_event(index, "postgres://killed:5432"))

    worker = start_worker("w1")

    def batch_writing():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_xid IS NOT NULL"
            )
            return cursor.fetchone()[0] > 0

    wait_for(batch_writing, timeout=60, what="the worker to write inside its batch", workers=[worker])
    worker.kill()

    assert LineageEvent.objects.filter(status=EventStatus.PENDING).count() == EVENTS
    assert Edge.objects.count() == 0 and Run.objects.count() == 0  # the batch was rolled back whole

    second = start_worker("w2")  # the killed worker's unacknowledged drain comes back to it
    wait_for(lambda: not LineageEvent.objects.filter(status=EventStatus.PENDING).exists(), timeout=120,
             what="the queue to be drained", workers=[second])
    assert LineageEvent.objects.filter(status=EventStatus.APPLIED).count() == EVENTS
    assert "lineage.events_drain" in second.log
    after_kill = snapshot("postgres-killed")

    second.stop()
    # A clean run of the same events (in another namespace, in this process) folds the same graph.
    settings.LINEAGE_INGEST_INLINE = False
    for index in range(EVENTS):
        lineage_event_accept(principal=sender, payload=first_run_event(index, "postgres://clean:5432"))
    lineage_events_drain()
    clean = snapshot("postgres-clean")
    assert after_kill == clean
    assert len(after_kill[0]) == EVENTS * (len(COLUMNS) + 1)  # 13 column edges and one dataset edge each
    assert [number for _, number in after_kill[1]] == [1] * (EVENTS + 1)  # each dataset registered once
