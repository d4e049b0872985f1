"""Celery tasks of access. Each takes ids, re-reads rows and calls a service; all are safe to run twice."""

from celery import shared_task
from django.conf import settings
from django.db import OperationalError


@shared_task(name="access.notify", max_retries=0)
def access_notify(kind: str, **ids) -> int:
    from access.notifications import access_notify as notify

    return notify(kind, **ids)


@shared_task(name="access.grants_expire", max_retries=0)
def grants_expire() -> int:
    from access.grants import grants_expire_due

    return grants_expire_due()


@shared_task(name="access.grants_end_outgrown", max_retries=0)
def grants_end_outgrown(dataset_ids: list[int]) -> int:
    """End the grants on these datasets whose data became more sensitive than was approved."""
    from access.grants import grants_end_outgrown as end

    return end(dataset_ids=dataset_ids)


@shared_task(name="access.requests_expire", max_retries=0)
def requests_expire() -> int:
    from access.grants import access_requests_expire_stale

    return access_requests_expire_stale()


@shared_task(
    name="access.grant_enforce", bind=True, acks_late=True, reject_on_worker_lost=True,
    autoretry_for=(OperationalError,), retry_backoff=30, retry_backoff_max=900,
    max_retries=settings.ACCESS_ENFORCE_MAX_ATTEMPTS,
)
def grant_enforce(self, grant_id: int) -> str:
    """Apply a live grant in the warehouse, or revoke an ended one (the grant's state decides).

    Idempotent, hence ``acks_late``. A warehouse failure is recorded on the grant and retried
    with backoff while the grant has attempts left (``ACCESS_ENFORCE_MAX_ATTEMPTS`` in all, the
    reconciler's included); after that it stays failed and the approvers have been told. Run
    eagerly or called directly it does not retry (an eager retry would run at once, without the
    backoff): the reconciler retries.
    """
    from access.enforcement import enforce_retry_delay
    from access.enforcement import grant_enforce as enforce

    outcome = enforce(grant_id)
    if outcome.retryable and not self.request.is_eager and self.request.id:
        raise self.retry(countdown=enforce_retry_delay(outcome.attempts).total_seconds())
    return outcome.action


@shared_task(name="access.grants_reconcile", max_retries=0)
def grants_reconcile() -> dict:
    """Make the managed warehouses match the catalog and report privileges it did not give."""
    from dataclasses import asdict

    from access.enforcement import grants_reconcile as reconcile

    return asdict(reconcile())
