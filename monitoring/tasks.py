"""Pulling audit logs: one task per store (safe to run twice: chunks are taken under the store's
position lock and records are unique per store), and the periodic fan-out (CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

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
