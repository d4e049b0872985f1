"""Transitions racing each other on PostgreSQL, with real threads: the lock order is one (a grant,
then its extension requests, then the audit head), so they queue instead of deadlocking, and
what one ends the other cannot bring back."""

import threading
import time

import pytest
from django.db import connection, transaction

import access.grants
from access.audit import audit_record
from access.grants import access_request_review, grant_extend, grant_revoke, grants_end_outgrown
from access.models import AccessRequest, Grant, GrantStatus, RequestStatus
from catalog.models import Column, Dataset
from tests.access.test_grants import (  # noqa: F401 - fixtures shared with the grant tests
    granted,
    owner,
    prod_store,
    scientist,
    second_owner,
    security,
    sensitive,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def in_threads(*calls, timeout=30):
    """Run each call in its own thread and connection; returns what each raised (or None)."""
    errors = [None] * len(calls)

    def run(index, call):
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            errors[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors


def test_ending_outgrown_grants_queues_behind_a_transition_holding_one_of_them(scientist, sensitive):
    grants = sorted([granted(scientist, sensitive), granted(UserFactory(username="sid", roles=["data_scientist"]), sensitive)],
                    key=lambda grant: grant.pk)
    Column.objects.filter(dataset=sensitive, name="phone").update(sensitivity=3)  # behind the services' back
    Dataset.objects.filter(pk=sensitive.pk).update(sensitivity=3)
    held = threading.Event()

    def transition_on_the_second():  # as grant_enforce or grant_revoke: the grant, then the audit head
        with transaction.atomic():
            Grant.objects.select_for_update().get(pk=grants[1].pk)
            held.set()
            time.sleep(1.0)  # meanwhile the worker ends the first grant and waits for this one
            audit_record(actor=None, action="grant.enforcement_retried", obj=grants[1])

    def worker():
        held.wait()
        grants_end_outgrown(dataset_ids=[sensitive.pk])

    assert in_threads(transition_on_the_second, worker) == [None, None]
    assert {grant.status for grant in Grant.objects.filter(pk__in=[g.pk for g in grants])} == {GrantStatus.REVOKED}


def test_revoking_a_grant_while_its_extension_is_approved_leaves_no_access(scientist, sensitive, owner, security,
                                                                           monkeypatch):
    grant = granted(scientist, sensitive)
    extension = grant_extend(principal=scientist, grant=grant, duration=2, justification="Still investigating the churn",
                             ticket="SEC-1234")
    reviewing = threading.Event()
    real_audit = access.grants.audit_record

    def slow_review_audit(**fields):  # the approval has its locks and is about to write its events
        if fields["action"] == "request.reviewed":
            reviewing.set()
            time.sleep(1.0)
        return real_audit(**fields)

    monkeypatch.setattr(access.grants, "audit_record", slow_review_audit)

    def approve_extension():
        access_request_review(principal=owner, request=AccessRequest(pk=extension.pk), approve=True)

    def revoke():
        reviewing.wait()
        grant_revoke(principal=security, grant=Grant(pk=grant.pk), reason="Misuse reported")

    assert in_threads(approve_extension, revoke) == [None, None]
    extension.refresh_from_db()
    assert extension.status == RequestStatus.APPROVED  # it won the grant's lock: approved first ...
    follow_up = Grant.objects.get(request=extension)
    assert follow_up.status == GrantStatus.REVOKED  # ... and ended with the grant it extends
    assert not Grant.objects.filter(user=scientist, status__in=["active", "scheduled"]).exists()
