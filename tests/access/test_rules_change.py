"""When the data or the matrix changes under a request or a grant.

A pending request is approved under the rules of its scope as they are at approval, never
looser than those it was asked under; a live grant whose data became more sensitive than its
approvers saw ends; revoking a grant cancels the extension waiting for it.
"""

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from access.decisions import access_decide
from access.grants import access_request_review, grant_extend, grant_revoke
from access.models import AuditEvent, GrantStatus, RequestStatus
from tests.access.test_grants import (  # noqa: F401 - fixtures shared with the grant tests
    approve,
    ask,
    fresh,
    granted,
    make_dataset,
    owner,
    prod_store,
    scientist,
    second_owner,
    security,
    sensitive,
)

pytestmark = pytest.mark.django_db

CUSTOMERS = {"customer_id": "Regular", "email": "Sensitive", "phone": "Sensitive"}


def reclassify(registrar, dataset, **tiers):
    """Register ``dataset`` again with some columns' sensitivity changed (a new version)."""
    columns = {**CUSTOMERS, **tiers}
    return make_dataset(registrar, dataset.store, f"{dataset.schema}.{dataset.name}", columns,
                        owners=list(dataset.owners.all()))


def test_a_request_whose_data_became_restricted_needs_the_restricted_approvals(
    registrar, scientist, sensitive, owner, second_owner, security, django_capture_on_commit_callbacks
):
    request = ask(scientist, sensitive)
    assert (request.sensitivity, request.approvals_required, request.security_approval_required) == (2, 1, False)
    reclassify(registrar, sensitive, email="Restricted")
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        approve(owner, request)  # was enough for Sensitive data

    request = fresh(request)
    assert request.status == RequestStatus.PENDING
    assert (request.sensitivity, request.approvals_required, request.security_approval_required) == (3, 2, True)
    tightened = AuditEvent.objects.get(action="request.rules_tightened", object_id=str(request.pk))
    assert tightened.details == {
        "sensitivity": ["Sensitive", "Restricted"], "approvals_required": [1, 2], "security_approval_required": [False, True],
        "approvals_superseded": 1,
    }
    assert "sam@example.com" in {address for message in mail.outbox for address in message.to}  # now an approver
    # Olga approved Sensitive data: her approval does not count for Restricted, and she may approve again.
    assert request.reviews.get(reviewer=owner).superseded

    approve(second_owner, request)
    assert fresh(request).status == RequestStatus.PENDING  # one approval that counts, and no security engineer
    approve(owner, request)  # Olga again, now seeing Restricted
    assert fresh(request).status == RequestStatus.PENDING  # two that count, still no security engineer
    approve(security, request)
    assert fresh(request).status == RequestStatus.APPROVED
    assert request.reviews.filter(superseded=False).count() == 3


def test_looser_rules_since_the_request_do_not_apply_to_it(registrar, scientist, sensitive, owner):
    request = ask(scientist, sensitive, columns=["email"])
    reclassify(registrar, sensitive, phone="Regular")  # other columns got less sensitive
    approve(owner, request)
    request = fresh(request)
    assert request.status == RequestStatus.APPROVED and request.sensitivity == 2
    assert not AuditEvent.objects.filter(action="request.rules_tightened").exists()


def test_a_live_grant_ends_when_its_data_becomes_more_sensitive(
    registrar, scientist, sensitive, django_capture_on_commit_callbacks
):
    grant = granted(scientist, sensitive)
    assert access_decide(scientist, "read", sensitive)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        reclassify(registrar, sensitive, phone="Restricted")

    grant = fresh(grant)
    assert grant.status == GrantStatus.REVOKED and grant.revoked_by is None
    assert grant.revoke_reason == "The data became Restricted; this grant was approved for Sensitive. Ask again."
    event = AuditEvent.objects.filter(action="grant.revoked", object_id=str(grant.pk)).get()
    assert event.actor is None and event.details["now"] == "Restricted"
    assert [message.to for message in mail.outbox] == [[scientist.email]]
    assert not access_decide(scientist, "read", fresh(sensitive))


def test_a_column_grant_outside_the_change_keeps_going(
    registrar, scientist, sensitive, django_capture_on_commit_callbacks
):
    grant = granted(scientist, sensitive, columns=["email"])
    with django_capture_on_commit_callbacks(execute=True):
        reclassify(registrar, sensitive, phone="Restricted")
    assert fresh(grant).status == GrantStatus.ACTIVE
    with django_capture_on_commit_callbacks(execute=True):
        reclassify(registrar, sensitive, phone="Restricted", email="Restricted")
    assert fresh(grant).status == GrantStatus.REVOKED


def test_the_grant_ends_after_the_change_commits_and_the_decision_refuses_it_meanwhile(
    registrar, scientist, sensitive, django_capture_on_commit_callbacks
):
    grant = granted(scientist, sensitive)
    with django_capture_on_commit_callbacks() as callbacks:  # the change, not yet committed
        reclassify(registrar, sensitive, phone="Restricted")
    assert fresh(grant).status == GrantStatus.ACTIVE
    assert not access_decide(scientist, "read", fresh(sensitive))  # nothing is exposed while it waits
    for callback in callbacks:
        callback()
    assert fresh(grant).status == GrantStatus.REVOKED


def test_revoking_a_grant_cancels_its_pending_extension(scientist, sensitive, owner, second_owner, security):
    grant = granted(scientist, sensitive)
    extension = grant_extend(principal=scientist, grant=grant, duration=2, justification="Still investigating the churn",
                             ticket="SEC-1234")

    grant_revoke(principal=security, grant=grant, reason="Misuse reported")

    extension = fresh(extension)
    assert extension.status == RequestStatus.CANCELLED
    cancelled = AuditEvent.objects.get(action="request.cancelled", object_id=str(extension.pk))
    assert cancelled.actor == security and cancelled.reason == f"The grant it extends (#{grant.pk}) was revoked."
    with pytest.raises(ValidationError, match="already cancelled"):
        access_request_review(principal=second_owner, request=extension, approve=True)


@pytest.mark.parametrize("hours", ["1e308", "inf", "nan", 1e308])
def test_an_absurd_duration_is_a_clear_error(scientist, sensitive, hours):
    with pytest.raises(ValidationError) as error:
        ask(scientist, sensitive, duration=hours)
    assert list(error.value.message_dict) == ["duration"]
