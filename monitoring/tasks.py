"""Monitoring tasks. Pulling audit logs: one task per store (safe to run twice: chunks are taken under the store's
position lock and records are unique per store), and the periodic fan-out (CELERY_BEAT_SCHEDULE);
the detectors (monitoring/detectors.py)."""

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from catalog.errors import ApplicationError
from catalog.models import DataStore
from monitoring.models import LogPosition
from monitoring.pull import access_log_pull


@shared_task(name="monitoring.access_logs_pull", acks_late=True)
def access_logs_pull(store_id: int) -> dict:
    store = DataStore.objects.filter(pk=store_id).select_related("connection").first()
    if store is None or not LogPosition.objects.filter(store=store, pull_enabled=True).exists():
        return {"skipped": True}
    try:
        return access_log_pull(store=store).as_dict()
    except ApplicationError as error:  # recorded on the position (last_error); the next beat retries
        return {"error": error.message}


@shared_task(name="monitoring.access_logs_pull_all")
def access_logs_pull_all() -> int:
    store_ids = list(LogPosition.objects.filter(pull_enabled=True).values_list("store_id", flat=True))
    for store_id in store_ids:
        access_logs_pull.delay(store_id)
    return len(store_ids)


@shared_task(name="monitoring.detect", acks_late=True, reject_on_worker_lost=True, max_retries=3,
             autoretry_for=(OperationalError,), retry_backoff=5, retry_backoff_max=60)
def detect() -> int:
    """Run the detectors over the access events and the audit trail until caught up (after
    ingestion, and every MONITORING_DETECT_POLL_SECONDS by beat). Safe to run twice and on
    several workers at once: batches are taken under the cursors' row lock, and an event handled
    twice adds nothing (``acks_late``: a worker killed mid-batch hands the task to another)."""
    from django.core.cache import cache

    from monitoring.detectors import DETECT_QUEUED_FLAG, detect_all

    cache.delete(DETECT_QUEUED_FLAG)  # events ingested from now on ask for another run
    return detect_all(batch_size=settings.MONITORING_DETECT_BATCH)


@shared_task(name="monitoring.detect_periodic", max_retries=0)
def detect_periodic() -> dict:
    """The detectors of state: break-glass reviews overdue, standing read unused, the audit chain."""
    from dataclasses import asdict

    from monitoring.detectors import detect_periodic as run

    return asdict(run())
