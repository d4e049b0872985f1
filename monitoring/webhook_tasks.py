"""Celery tasks of outgoing webhooks (imported by ``MonitoringConfig.ready`` so workers register
them; queues in CELERY_TASK_ROUTES, schedules in CELERY_BEAT_SCHEDULE). Each takes ids, re-reads
the rows and is safe to run twice: an attempt is claimed with a conditional UPDATE."""

from celery import shared_task

from monitoring.webhook_deliveries import webhook_deliveries_due as deliveries_due
from monitoring.webhook_deliveries import webhook_delivery_attempt
from monitoring.webhook_events import webhook_events_scan as events_scan


@shared_task(name="monitoring.webhook_deliver", acks_late=True)
def webhook_deliver(delivery_id: int) -> dict:
    """One attempt of one delivery (nothing when it is not due or another worker holds it)."""
    delivery = webhook_delivery_attempt(delivery_id=delivery_id)
    if delivery is None:
        return {"skipped": True}
    return {"status": delivery.status, "attempts": delivery.attempts, "statusCode": delivery.last_status_code}


@shared_task(name="monitoring.webhook_deliveries_due")
def webhook_deliveries_due() -> int:
    """The periodic retry: queue an attempt of every pending delivery that is due."""
    ids = deliveries_due()
    for delivery_id in ids:
        webhook_deliver.delay(delivery_id)
    return len(ids)


@shared_task(name="monitoring.webhook_events_scan")
def webhook_events_scan() -> int:
    """The periodic scan for catalog events webhooks subscribe to."""
    return events_scan()
