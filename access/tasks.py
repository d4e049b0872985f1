"""Celery tasks of access. Each takes ids, re-reads rows and calls a service; all are safe to run twice."""

from celery import shared_task


@shared_task(name="access.notify", max_retries=0)
def access_notify(kind: str, **ids) -> int:
    from access.notifications import access_notify as notify

    return notify(kind, **ids)


@shared_task(name="access.grants_expire", max_retries=0)
def grants_expire() -> int:
    from access.grants import grants_expire_due

    return grants_expire_due()


@shared_task(name="access.requests_expire", max_retries=0)
def requests_expire() -> int:
    from access.grants import access_requests_expire_stale

    return access_requests_expire_stale()
