"""Grant enforcement done by a real Celery worker process through the real Redis broker: the
approval's after-commit ``access.grant_enforce`` reaches the worker, which changes the
warehouse; the revoke's does the reverse.

Needs DATABASE_URL (PostgreSQL) and REDIS_URL (skipped locally without them, failed in CI).
Rows are committed (``transaction=True``) so the worker sees them.
"""

import pytest

from access.grants import grant_revoke
from access.models import Enforcement, Grant
from tests.access.test_enforcement import (  # noqa: F401 (fixtures)
    approver,
    as_role,
    denied,
    engineer,
    grant_for,
    make_role,
    shop,
    wh,
)
from tests.catalog.test_sync_worker import broker, redis_client, start_worker, wait_for  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def enforcement_reaches(grant: Grant, state: str, worker) -> Grant:
    return wait_for(lambda: Grant.objects.filter(pk=grant.pk, enforcement=state).first(), timeout=30,
                    what=f"grant #{grant.pk} to be {state}", workers=[worker])


def test_worker_applies_an_approved_grant_and_revokes_it(start_worker, wh, shop, engineer, approver):
    worker = start_worker()
    role = engineer.warehouse_role

    grant = grant_for(engineer, approver, shop.customers)  # commits; the task goes to the broker
    enforcement_reaches(grant, Enforcement.APPLIED, worker)
    assert len(as_role(wh, role, "SELECT email FROM governed.customers")) == 6

    grant_revoke(principal=approver, grant=grant, reason="Incident closed")
    enforcement_reaches(grant, Enforcement.REVOKED, worker)
    assert denied(wh, role, "SELECT email FROM governed.customers")
    assert "access.grant_enforce" in worker.log
