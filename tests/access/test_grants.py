"""Requests, reviews, grants and break-glass: every transition allowed and refused.

The cast: Olga and Omar own the datasets; Sara (data scientist) asks for access; Sam is a
security engineer; Otto (data analyst) is an outsider to Sara's requests; Eve (software
engineer) is on call. The datasets live in a prod store without a warehouse connection.
Helpers at the top are shared with test_decisions.py and test_audit.py.
"""

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from access.grants import (
    access_request_cancel,
    access_request_create,
    access_request_review,
    access_requests_expire_stale,
    break_glass_activate,
    break_glass_review,
    grant_extend,
    grant_revoke,
    grants_expire_due,
)
from access.models import AccessRequest, AccessReview, AuditEvent, Grant, GrantStatus, RequestStatus
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

JUSTIFICATION = "Investigating churn for the Q3 review"
TICKET = "SEC-1234"


# Shared helpers and cast ------------------------------------------------------------------------


def make_dataset(registrar, store, name, columns, *, owners=(), tags=None):
    """A dataset with ``columns`` given as {name: sensitivity}, owned by ``owners``."""
    return dataset_create(
        principal=registrar, store=store, name=name,
        columns=[column_payload(column, sensitivity=tier) for column, tier in columns.items()],
        owners=[owner.username for owner in owners], tags=tags or [],
    )


def ask(user, dataset, *, duration=4, ticket=TICKET, **extra):
    """Sara-style request for read access with a valid justification and ticket."""
    return access_request_create(
        principal=user, dataset=dataset, level="read", duration=duration, justification=JUSTIFICATION,
        ticket=ticket, **extra,
    )


def approve(reviewer, request, reason="Looks right"):
    return access_request_review(principal=reviewer, request=request, approve=True, reason=reason)


def granted(user, dataset, **extra):
    """An approved request by ``user`` and its active grant (approved by the dataset's first owner)."""
    request = ask(user, dataset, **extra)
    approve(dataset.owners.order_by("username").first(), request)
    return Grant.objects.get(request=request)


def fresh(obj):
    obj.refresh_from_db()
    return obj


class Clock:
    """Moves ``django.utils.timezone.now`` (what the services and the decision read) forward."""

    def __init__(self, monkeypatch):
        self.monkeypatch = monkeypatch

    def move_to(self, when):
        self.monkeypatch.setattr(timezone, "now", lambda: when)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture
def prod_store(db):
    return StoreFactory(name="warehouse", environment="prod", platform="bigquery")


@pytest.fixture
def owner(db):
    return UserFactory(username="olga", roles=["data_engineer"])


@pytest.fixture
def second_owner(db):
    return UserFactory(username="omar", roles=["data_engineer"])


@pytest.fixture
def scientist(db):
    return UserFactory(username="sara", roles=["data_scientist"])


@pytest.fixture
def security(db):
    return UserFactory(username="sam", roles=["security_engineer"])


@pytest.fixture
def outsider(db):
    return UserFactory(username="otto", roles=["data_analyst"])


@pytest.fixture
def on_call(db):
    return UserFactory(username="eve", roles=["software_engineer"])


@pytest.fixture
def regular(registrar, prod_store, owner):
    return make_dataset(registrar, prod_store, "sales.orders", {"order_id": "Regular", "amount": "Regular"}, owners=[owner])


@pytest.fixture
def sensitive(registrar, prod_store, owner, second_owner):
    return make_dataset(
        registrar, prod_store, "crm.customers", {"customer_id": "Regular", "email": "Sensitive", "phone": "Sensitive"},
        owners=[owner, second_owner],
    )


@pytest.fixture
def restricted(registrar, prod_store, owner, second_owner):
    return make_dataset(
        registrar, prod_store, "hr.identities", {"person_id": "Regular", "national_id": "Restricted"},
        owners=[owner, second_owner],
    )


@pytest.fixture
def pending(scientist, sensitive):
    return ask(scientist, sensitive)


# Creating a request ---------------------------------------------------------------------------


def test_eligible_user_creates_a_pending_request(scientist, sensitive):
    before = timezone.now()
    request = ask(scientist, sensitive, duration=6)
    assert request.status == RequestStatus.PENDING
    assert (request.sensitivity, request.environment, request.level) == (2, "prod", 2)
    assert request.duration == timedelta(hours=6)
    assert request.approvals_required == 1 and not request.security_approval_required
    assert before + timedelta(hours=72) <= request.expires_at <= timezone.now() + timedelta(hours=72)


def test_role_without_just_in_time_right_is_refused(outsider, regular):
    # A data analyst reads prod Regular standing and may ask for nothing more there.
    with pytest.raises(PermissionDenied):
        access_request_create(principal=outsider, dataset=regular, level="write", duration=1,
                              justification=JUSTIFICATION)
    assert not AccessRequest.objects.exists()


def test_duration_over_the_cells_maximum_is_refused_naming_duration(scientist, sensitive):
    with pytest.raises(ValidationError) as error:
        ask(scientist, sensitive, duration=9)  # prod Sensitive allows 8 hours
    assert "duration" in error.value.message_dict
    assert "8 hours" in error.value.message_dict["duration"][0]
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize("justification", ["", "   ", "because"])
def test_missing_or_too_short_justification_is_refused(scientist, sensitive, justification):
    with pytest.raises(ValidationError) as error:
        access_request_create(principal=scientist, dataset=sensitive, level="read", duration=1,
                              justification=justification, ticket=TICKET)
    assert "justification" in error.value.message_dict
    assert not AccessRequest.objects.exists()


def test_ticket_is_required_for_prod_sensitive(scientist, sensitive):
    with pytest.raises(ValidationError) as error:
        ask(scientist, sensitive, ticket="")
    assert "ticket" in error.value.message_dict
    assert not AccessRequest.objects.exists()


def test_unknown_column_names_are_refused_and_named(scientist, sensitive):
    with pytest.raises(ValidationError) as error:
        ask(scientist, sensitive, columns=["email", "shoe_size"])
    assert "shoe_size" in error.value.message_dict["columns"][0]
    assert not AccessRequest.objects.exists()


def test_asking_for_what_standing_already_gives_is_refused(scientist, regular):
    with pytest.raises(ValidationError) as error:
        ask(scientist, regular)  # data scientists read prod Regular standing
    assert "level" in error.value.message_dict
    assert not AccessRequest.objects.exists()


def test_column_scope_asks_at_the_tier_of_its_highest_column(scientist, sensitive):
    request = ask(scientist, sensitive, columns=["EMAIL", "customer_id"])
    assert request.columns == ["customer_id", "email"]  # the columns' own spelling
    assert request.sensitivity == 2


def test_approvers_are_mailed_about_a_new_request(scientist, sensitive, owner, second_owner,
                                                  django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        ask(scientist, sensitive)
    recipients = {address for message in mail.outbox for address in message.to}
    assert recipients == {owner.email, second_owner.email}


# Reviewing ----------------------------------------------------------------------------------------


def test_one_owner_approval_approves_and_makes_an_active_grant(pending, owner, scientist):
    request = approve(owner, pending)
    assert request.status == RequestStatus.APPROVED
    grant = Grant.objects.get(request=request)
    assert grant.status == GrantStatus.ACTIVE and grant.user == scientist
    assert grant.starts_at == request.decided_at
    assert grant.ends_at == grant.starts_at + timedelta(hours=4)
    assert grant.columns == [] and grant.level == 2


def test_restricted_in_prod_is_not_approved_by_two_plain_owners(scientist, restricted, owner, second_owner):
    request = ask(scientist, restricted)
    assert (request.approvals_required, request.security_approval_required) == (2, True)
    approve(owner, request)
    approve(second_owner, request)
    assert fresh(request).status == RequestStatus.PENDING
    assert not Grant.objects.exists()


def test_restricted_in_prod_is_approved_by_an_owner_and_a_security_engineer(scientist, restricted, owner, security):
    request = ask(scientist, restricted)
    approve(security, request)
    assert fresh(request).status == RequestStatus.PENDING  # one approval of two
    approve(owner, request)
    assert fresh(request).status == RequestStatus.APPROVED
    assert Grant.objects.get(request=request).status == GrantStatus.ACTIVE


def test_security_engineer_may_not_review_below_restricted(pending, security):
    with pytest.raises(PermissionDenied):
        approve(security, pending)
    assert not AccessReview.objects.exists()


def test_outsider_may_not_review(pending, outsider):
    with pytest.raises(PermissionDenied):
        approve(outsider, pending)
    assert fresh(pending).status == RequestStatus.PENDING


def test_outsider_denying_without_a_reason_is_refused_for_permission_not_for_the_reason(pending, outsider):
    with pytest.raises(PermissionDenied):
        access_request_review(principal=outsider, request=pending, approve=False, reason="")
    assert fresh(pending).status == RequestStatus.PENDING


def test_a_second_pending_request_for_the_same_dataset_is_refused(pending, scientist, sensitive):
    with pytest.raises(ValidationError) as error:
        ask(scientist, sensitive, columns=["email"])
    assert "dataset" in error.value.message_dict
    assert AccessRequest.objects.count() == 1


def test_the_database_keeps_one_pending_request_per_user_and_dataset(pending):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        AccessRequest.objects.create(
            requester=pending.requester, dataset=pending.dataset, level=2, environment="prod", sensitivity=2,
            justification=JUSTIFICATION, duration=timedelta(hours=1), expires_at=timezone.now() + timedelta(hours=1),
        )


def test_asking_again_for_what_a_live_grant_gives_is_refused(scientist, sensitive, owner):
    grant = granted(scientist, sensitive)
    with pytest.raises(ValidationError) as error:
        ask(scientist, sensitive)
    assert f"grant #{grant.pk}" in error.value.message_dict["level"][0]


def test_denial_needs_a_reason(pending, owner):
    with pytest.raises(ValidationError) as error:
        access_request_review(principal=owner, request=pending, approve=False, reason=" ")
    assert "reason" in error.value.message_dict
    assert fresh(pending).status == RequestStatus.PENDING


def test_one_denial_denies_without_a_grant(pending, owner):
    request = access_request_review(principal=owner, request=pending, approve=False, reason="Use the aggregate")
    assert request.status == RequestStatus.DENIED
    assert not Grant.objects.exists()


def test_reviewing_twice_is_refused(scientist, restricted, owner):
    request = ask(scientist, restricted)
    approve(owner, request)
    with pytest.raises(ValidationError) as error:
        approve(owner, request)
    assert "review" in error.value.message_dict
    assert AccessReview.objects.filter(request=request).count() == 1


@pytest.mark.parametrize("decide", ["approve", "deny"])
def test_a_decided_request_is_refused(pending, owner, second_owner, decide):
    access_request_review(principal=owner, request=pending, approve=decide == "approve", reason="Decided")
    with pytest.raises(ValidationError) as error:
        approve(second_owner, pending)
    assert "status" in error.value.message_dict
    assert Grant.objects.count() == (1 if decide == "approve" else 0)


def test_self_approval_is_refused_for_an_owner(registrar, prod_store):
    owner_scientist = UserFactory(username="olivia", roles=["data_scientist"])
    dataset = make_dataset(registrar, prod_store, "crm.leads", {"email": "Sensitive"}, owners=[owner_scientist])
    request = ask(owner_scientist, dataset)
    with pytest.raises(PermissionDenied):
        approve(owner_scientist, request)
    assert fresh(request).status == RequestStatus.PENDING
    assert not AccessReview.objects.exists()


def test_self_approval_is_refused_for_an_admin(sensitive):
    admin_scientist = UserFactory(username="root", is_superuser=True, roles=["data_scientist"])
    request = ask(admin_scientist, sensitive)
    with pytest.raises(PermissionDenied):
        approve(admin_scientist, request)
    assert fresh(request).status == RequestStatus.PENDING
    assert not AccessReview.objects.exists()


# Cancelling and expiring ------------------------------------------------------------------------


def test_requester_cancels_a_pending_request(pending, scientist):
    assert access_request_cancel(principal=scientist, request=pending).status == RequestStatus.CANCELLED
    assert fresh(pending).status == RequestStatus.CANCELLED


@pytest.mark.parametrize("who", ["owner", "outsider", "admin_user"])
def test_only_the_requester_cancels(pending, who, request):
    with pytest.raises(PermissionDenied):
        access_request_cancel(principal=request.getfixturevalue(who), request=pending)
    assert fresh(pending).status == RequestStatus.PENDING


def test_only_a_pending_request_is_cancelled(pending, scientist, owner):
    approve(owner, pending)
    with pytest.raises(ValidationError):
        access_request_cancel(principal=scientist, request=pending)
    assert fresh(pending).status == RequestStatus.APPROVED


def test_stale_pending_requests_expire(pending, clock):
    assert access_requests_expire_stale() == 0
    clock.move_to(pending.expires_at + timedelta(seconds=1))
    assert access_requests_expire_stale() == 1
    assert fresh(pending).status == RequestStatus.EXPIRED
    assert access_requests_expire_stale() == 0  # safe to run twice


def test_reviewing_an_expired_request_is_refused_after_the_worker_ran(pending, owner, clock):
    clock.move_to(pending.expires_at + timedelta(minutes=1))
    access_requests_expire_stale()
    with pytest.raises(ValidationError):
        approve(owner, pending)
    assert fresh(pending).status == RequestStatus.EXPIRED
    assert not Grant.objects.exists()


def test_reviewing_a_request_past_its_ttl_is_refused_and_it_stays_expired_without_the_worker(pending, owner, clock):
    clock.move_to(pending.expires_at + timedelta(minutes=1))
    with pytest.raises(ValidationError) as error:
        approve(owner, pending)
    assert "expired" in error.value.message_dict["status"][0]
    assert fresh(pending).status == RequestStatus.EXPIRED
    assert not Grant.objects.exists() and not AccessReview.objects.exists()


# Grants: revoke, expire, extend ---------------------------------------------------------------------


@pytest.fixture
def grant(scientist, sensitive):
    return granted(scientist, sensitive)


@pytest.mark.parametrize("who", ["scientist", "owner", "security", "admin_user"])
def test_holder_owner_security_engineer_and_admin_revoke(grant, who, request):
    principal = request.getfixturevalue(who)
    grant_revoke(principal=principal, grant=grant, reason="No longer needed")
    grant = fresh(grant)
    assert grant.status == GrantStatus.REVOKED
    assert grant.revoked_by == principal and grant.revoke_reason == "No longer needed"
    assert grant.ended_at is not None


def test_another_user_may_not_revoke(grant, outsider):
    with pytest.raises(PermissionDenied):
        grant_revoke(principal=outsider, grant=grant, reason="Mischief")
    assert fresh(grant).status == GrantStatus.ACTIVE


def test_revoke_needs_a_reason(grant, owner):
    with pytest.raises(ValidationError) as error:
        grant_revoke(principal=owner, grant=grant, reason="")
    assert "reason" in error.value.message_dict
    assert fresh(grant).status == GrantStatus.ACTIVE


def test_revoking_twice_is_refused(grant, owner):
    grant_revoke(principal=owner, grant=grant, reason="Done")
    with pytest.raises(ValidationError) as error:
        grant_revoke(principal=owner, grant=grant, reason="Again")
    assert "status" in error.value.message_dict
    assert fresh(grant).revoke_reason == "Done"


def test_grants_past_their_end_expire(grant, clock):
    assert grants_expire_due() == 0
    clock.move_to(grant.ends_at + timedelta(seconds=1))
    assert grants_expire_due() == 1
    assert fresh(grant).status == GrantStatus.EXPIRED
    assert grants_expire_due() == 0  # safe to run twice


def test_an_approved_extension_is_scheduled_at_the_old_end_and_activated_when_due(grant, scientist, owner, clock):
    extension = grant_extend(principal=scientist, grant=grant, duration=2, justification=JUSTIFICATION, ticket=TICKET)
    assert extension.extends == grant and extension.status == RequestStatus.PENDING
    approve(owner, extension)
    follow_up = Grant.objects.get(request=extension)
    assert follow_up.status == GrantStatus.SCHEDULED
    assert follow_up.starts_at == grant.ends_at
    assert follow_up.ends_at == grant.ends_at + timedelta(hours=2)

    clock.move_to(grant.ends_at + timedelta(minutes=1))
    assert grants_expire_due() == 2
    assert fresh(grant).status == GrantStatus.EXPIRED
    assert fresh(follow_up).status == GrantStatus.ACTIVE


def test_only_the_holder_extends_a_grant(grant, owner):
    with pytest.raises(PermissionDenied):
        grant_extend(principal=owner, grant=grant, duration=2, justification=JUSTIFICATION, ticket=TICKET)


def test_an_ended_grant_is_not_extended(grant, scientist, owner):
    grant_revoke(principal=owner, grant=grant, reason="Done")
    with pytest.raises(ValidationError) as error:
        grant_extend(principal=scientist, grant=grant, duration=2, justification=JUSTIFICATION, ticket=TICKET)
    assert "grant" in error.value.message_dict


def test_an_extension_is_asked_only_once_at_a_time(grant, scientist):
    grant_extend(principal=scientist, grant=grant, duration=2, justification=JUSTIFICATION, ticket=TICKET)
    with pytest.raises(ValidationError):
        grant_extend(principal=scientist, grant=grant, duration=2, justification=JUSTIFICATION, ticket=TICKET)
    assert AccessRequest.objects.filter(extends=grant).count() == 1


# Break-glass -------------------------------------------------------------------------------------


def break_glass(user, dataset, **extra):
    return break_glass_activate(principal=user, dataset=dataset, level="read", reason="Pager: orders stuck", **extra)


def test_on_call_software_engineer_breaks_glass_on_prod_regular(on_call, regular):
    grant = break_glass(on_call, regular)
    assert grant.status == GrantStatus.ACTIVE and grant.user == on_call
    assert grant.is_break_glass and grant.review_required and grant.reviewed_at is None
    assert grant.ends_at - grant.starts_at == timedelta(minutes=60)
    assert grant.request.status == RequestStatus.APPROVED and grant.request.is_break_glass


@pytest.mark.parametrize("dataset", ["regular", "sensitive"])
def test_data_analyst_may_not_break_glass(outsider, dataset, request):
    with pytest.raises(PermissionDenied):
        break_glass(outsider, request.getfixturevalue(dataset))
    assert not Grant.objects.exists()


def test_break_glass_on_prod_restricted_is_refused_even_for_on_call(on_call, restricted):
    with pytest.raises(PermissionDenied):
        break_glass(on_call, restricted)
    assert not Grant.objects.exists()


def test_break_glass_is_capped(on_call, regular, settings):
    with pytest.raises(ValidationError) as error:
        break_glass(on_call, regular, minutes=61)
    assert "minutes" in error.value.message_dict
    settings.ACCESS_BREAK_GLASS_MAX_MINUTES = 15
    grant = break_glass(on_call, regular, minutes=15)
    assert grant.ends_at - grant.starts_at == timedelta(minutes=15)


def test_break_glass_needs_a_reason(on_call, regular):
    with pytest.raises(ValidationError) as error:
        break_glass_activate(principal=on_call, dataset=regular, level="read", reason="")
    assert "reason" in error.value.message_dict
    assert not Grant.objects.exists()


def test_every_approver_is_mailed_about_break_glass(on_call, regular, owner, admin_user,
                                                    django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        break_glass(on_call, regular)
    recipients = {address for message in mail.outbox for address in message.to}
    assert {owner.email, admin_user.email} <= recipients
    assert on_call.email not in recipients
    assert any("Break-glass" in message.subject for message in mail.outbox)


def test_break_glass_review_by_an_approver_is_recorded(on_call, regular, owner):
    grant = break_glass(on_call, regular)
    break_glass_review(principal=owner, grant=grant, note="Incident INC-7, access was needed")
    grant = fresh(grant)
    assert grant.reviewed_by == owner and grant.reviewed_at is not None
    assert grant.review_note == "Incident INC-7, access was needed"


def test_break_glass_user_may_not_review_their_own(on_call, regular):
    grant = break_glass(on_call, regular)
    with pytest.raises(PermissionDenied):
        break_glass_review(principal=on_call, grant=grant, note="All fine, trust me")
    assert fresh(grant).reviewed_at is None


def test_break_glass_is_reviewed_once(on_call, regular, owner, admin_user):
    grant = break_glass(on_call, regular)
    break_glass_review(principal=owner, grant=grant, note="Checked")
    with pytest.raises(ValidationError):
        break_glass_review(principal=admin_user, grant=grant, note="Checked again")
    assert fresh(grant).reviewed_by == owner


def test_an_ordinary_grant_needs_no_break_glass_review(grant, owner):
    with pytest.raises(ValidationError):
        break_glass_review(principal=owner, grant=grant, note="Nothing to review")


# Race --------------------------------------------------------------------------------------------


def run_at_once(*calls):
    """Run each call in its own thread with its own database connection, released together."""
    barrier = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            outcomes[index] = call()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_approvers_racing_make_one_grant(scientist, sensitive, owner, second_owner):
    request = ask(scientist, sensitive)
    outcomes = run_at_once(
        lambda: approve(owner, AccessRequest(pk=request.pk)),
        lambda: approve(second_owner, AccessRequest(pk=request.pk)),
    )
    winners = [o for o in outcomes if isinstance(o, AccessRequest)]
    losers = [o for o in outcomes if isinstance(o, Exception)]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0], ValidationError) and "status" in losers[0].message_dict
    assert Grant.objects.filter(request=request).count() == 1
    assert AuditEvent.objects.filter(action="request.approved", object_id=str(request.pk)).count() == 1
    assert fresh(request).status == RequestStatus.APPROVED


# Eligibility is checked again at approval ---------------------------------------------------------


def test_approval_is_refused_when_the_matrix_has_since_lowered_the_maximum(pending, owner, admin_user):
    from access.grants import role_permission_update
    from access.models import RolePermission

    cell = RolePermission.objects.get(role__slug="data_scientist", environment="prod", sensitivity=2)
    role_permission_update(principal=admin_user, cell=cell, jit_max_hours=2)  # the request asked for 4
    with pytest.raises(ValidationError) as error:
        approve(owner, pending)
    assert "duration" in error.value.message_dict
    assert fresh(pending).status == RequestStatus.PENDING
    assert not Grant.objects.exists() and not AccessReview.objects.exists()


def test_approval_is_refused_when_the_requester_has_since_lost_the_role(pending, owner, scientist):
    scientist.groups.clear()
    with pytest.raises(PermissionDenied):
        approve(owner, pending)
    assert fresh(pending).status == RequestStatus.PENDING
    assert not Grant.objects.exists()


def test_revoking_a_grant_also_ends_its_scheduled_extension(grant, scientist, owner, security, clock):
    extension = grant_extend(principal=scientist, grant=grant, duration=2, justification=JUSTIFICATION, ticket=TICKET)
    approve(owner, extension)
    follow_up = Grant.objects.get(request=extension)
    grant_revoke(principal=security, grant=grant, reason="Misuse reported")
    follow_up = fresh(follow_up)
    assert follow_up.status == GrantStatus.REVOKED and follow_up.revoked_by == security
    clock.move_to(grant.ends_at + timedelta(minutes=1))
    assert grants_expire_due() == 0  # nothing comes back to life
    assert fresh(follow_up).status == GrantStatus.REVOKED
