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
    run_at_once,
    scientist,
    second_owner,
    security,
    sensitive,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until_another_session_waits_for_a_lock(timeout: float = 15) -> None:
    """Return once another session of this test database is blocked on a lock (it queued behind
    this one); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE NOT l.granted AND a.datname = current_database() AND l.pid <> pg_backend_pid())"
            )
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "the other transition never queued behind this one"


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
            wait_until_another_session_waits_for_a_lock()  # the worker ended the first and queued here
            audit_record(actor=None, action="grant.enforcement_retried", obj=grants[1])

    def worker():
        held.wait()
        return grants_end_outgrown(dataset_ids=[sensitive.pk])

    assert run_at_once(transition_on_the_second, worker) == [None, 2]
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
            wait_until_another_session_waits_for_a_lock()  # the revocation queued behind the approval
        return real_audit(**fields)

    monkeypatch.setattr(access.grants, "audit_record", slow_review_audit)

    def approve_extension():
        return access_request_review(principal=owner, request=AccessRequest(pk=extension.pk), approve=True).status

    def revoke():
        reviewing.wait()
        return grant_revoke(principal=security, grant=Grant(pk=grant.pk), reason="Misuse reported").status

    assert run_at_once(approve_extension, revoke) == [RequestStatus.APPROVED, GrantStatus.REVOKED]
    extension.refresh_from_db()
    assert extension.status == RequestStatus.APPROVED  # it won the grant's lock: approved first ...
    follow_up = Grant.objects.get(request=extension)
    assert follow_up.status == GrantStatus.REVOKED  # ... and ended with the grant it extends
    assert not Grant.objects.filter(user=scientist, status__in=["active", "scheduled"]).exists()
