"""Celery tasks of the catalog. Each takes ids, re-reads the rows and calls a service.

``store_sync`` is idempotent (the run is claimed with a conditional UPDATE and resumes from
its cursor), so it runs with ``acks_late``: a worker killed mid-run leaves the message
unacknowledged and the broker hands it to another worker after the visibility timeout,
while ``sync_runs_resume`` re-sends runs whose heartbeat went stale sooner than that.
"""

import logging

from celery import shared_task
from django.db import OperationalError

from catalog.models import DataStore, SyncTrigger

logger = logging.getLogger(__name__)


@shared_task(
    name="catalog.store_sync", acks_late=True, reject_on_worker_lost=True,
    autoretry_for=(OperationalError,), retry_backoff=10, retry_backoff_max=300, max_retries=3,
)
def store_sync(run_id: int) -> str | None:
    """Run one sync (or take over one whose worker died)."""
    from catalog.sync import sync_run_execute

    run = sync_run_execute(run_id)
    return run.status if run else None


@shared_task(name="catalog.store_sync_scheduled", max_retries=0)
def store_sync_scheduled(store_id: int) -> int | None:
    """What django-celery-beat calls for a store's schedule: queue a run (or find the one running)."""
    from catalog.sync import sync_run_request

    store = DataStore.objects.filter(pk=store_id).first()
    if store is None:
        logger.warning("Scheduled sync of store %s: the store no longer exists", store_id)
        return None
    run, _ = sync_run_request(principal=None, store=store, trigger=SyncTrigger.SCHEDULE)
    return run.pk


@shared_task(name="catalog.sync_runs_resume", max_retries=0)
def sync_runs_resume() -> list[int]:
    """Re-send runs whose worker died (stale heartbeat); the claim makes duplicates harmless."""
    from catalog.sync import sync_runs_resume as resume

    return resume()


@shared_task(name="catalog.search_counts_compact", max_retries=0)
def search_counts_compact() -> int:
    """Fold the browsing facet counts' deltas into one row per value (``catalog.search``); safe to
    run twice or concurrently. Returns how many rows it removed."""
    from catalog.search import facet_counts_compact

    return facet_counts_compact()
