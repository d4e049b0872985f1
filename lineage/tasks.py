"""Background work of lineage: folding accepted OpenLineage events into the graph."""

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from lineage.ingestion import DRAIN_QUEUED_FLAG, lineage_drain_request, lineage_events_drain


@shared_task(name="lineage.events_drain", acks_late=True, max_retries=5, autoretry_for=(Exception,),
             retry_backoff=True, retry_backoff_max=60)
def lineage_events_drain_task(namespaces=None) -> dict:
    """Drain pending OpenLineage events (after an accept, and periodically as a safety net).

    Safe to run twice and at once on several workers: events are claimed with
    ``SKIP LOCKED`` and a batch's writes and its events' new status commit together, so a
    redelivered task (``acks_late``: a worker killed mid-batch) finds only what is still pending.
    """
    cache.delete(DRAIN_QUEUED_FLAG)  # an event accepted from now on asks for another drain
    result = lineage_events_drain(namespaces=namespaces, max_seconds=settings.LINEAGE_DRAIN_MAX_SECONDS)
    if result.deferred or (result.batches and result.applied + result.failed and _more_pending(namespaces)):
        lineage_drain_request()
    return {"applied": result.applied, "failed": result.failed, "deferred": result.deferred}


def _more_pending(namespaces) -> bool:
    from lineage.models import EventStatus, LineageEvent

    pending = LineageEvent.objects.filter(status=EventStatus.PENDING)
    if namespaces:
        pending = pending.filter(namespace__in=namespaces)
    return pending.exists()
