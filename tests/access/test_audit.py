"""The audit trail: every transition writes its event in the same transaction, the chain
proves itself intact or names the first altered event, and PostgreSQL refuses edits."""

from contextlib import contextmanager
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

import access.grants
from access.audit import GENESIS, audit_verify, event_hash
from access.grants import (
    access_request_cancel,
    access_request_review,
    access_requests_expire_stale,
    break_glass_activate,
    break_glass_review,
    grant_extend,
    grant_revoke,
    grants_expire_due,
    restricted_metadata_viewed,
    role_permission_update,
)
from access.models import (
    AccessRequest,
    AccessReview,
    AuditChainHead,
    AuditEvent,
    Grant,
    GrantStatus,
    RequestStatus,
    RolePermission,
)
from tests.access.test_grants import (  # noqa: F401 - fixtures shared with the grant tests
    JUSTIFICATION,
    TICKET,
    approve,
    ask,
    clock,
    fresh,
    granted,
    on_call,
    outsider,
    owner,
    pending,
    prod_store,
    regular,
    restricted,
    run_at_once,
    scientist,
    second_owner,
    security,
    sensitive,
)
from tests.factories import UserFactory


def last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


@contextmanager
def new_events():
    """Collects the actions of the events written inside the block, oldest first."""
    mark, actions = last_event_id(), []
    yield actions
    actions.extend(AuditEvent.objects.filter(id__gt=mark).order_by("id").values_list("action", flat=True))


@contextmanager
def trigger_disabled():
    """What someone with the table owner's rights could do: switch the append-only trigger off."""
    with connection.cursor() as cursor:
        # Django's foreign keys are checked at commit; ALTER TABLE wants those checks done first.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE access_auditevent DISABLE TRIGGER audit_append_only")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE access_auditevent ENABLE TRIGGER audit_append_only")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def tamper(sql, params=()):
    with trigger_disabled(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def audit_fails(monkeypatch):
    """Makes the audit write fail, for every action or only for the one named."""

    def fail(on_action=None):
        real = access.grants.audit_record

        def audit_record(**kwargs):
            if on_action is None or kwargs["action"] == on_action:
                raise RuntimeError("audit store unavailable")
            return real(**kwargs)

        monkeypatch.setattr(access.grants, "audit_record", audit_record)

    return fail


# Every transition writes its event ------------------------------------------------------------


def test_a_request_writes_request_created_with_actor_and_scope(scientist, sensitive):
    with new_events() as actions:
        request = ask(scientist, sensitive, columns=["email"], remote_addr="10.0.0.7")
    assert actions == ["request.created"]
    event = AuditEvent.objects.get(action="request.created")
    assert (event.actor, event.object_type, event.object_id) == (scientist, "accessrequest", str(request.pk))
    assert event.dataset == sensitive and event.reason == JUSTIFICATION and event.remote_addr == "10.0.0.7"
    assert event.details["columns"] == ["email"] and event.details["ticket"] == TICKET


def test_an_approval_writes_the_review_the_approval_and_the_grant(pending, owner):
    with new_events() as actions:
        approve(owner, pending)
    assert actions == ["request.reviewed", "request.approved", "grant.activated"]


def test_a_first_of_two_approvals_writes_only_the_review(scientist, restricted, owner):
    request = ask(scientist, restricted)
    with new_events() as actions:
        approve(owner, request)
    assert actions == ["request.reviewed"]


def test_a_denial_writes_the_review_and_the_denial(pending, owner):
    with new_events() as actions:
        access_request_review(principal=owner, request=pending, approve=False, reason="Use the aggregate")
    assert actions == ["request.reviewed", "request.denied"]
    assert AuditEvent.objects.get(action="request.denied").reason == "Use the aggregate"


def test_a_cancellation_writes_request_cancelled(pending, scientist):
    with new_events() as actions:
        access_request_cancel(principal=scientist, request=pending)
    assert actions == ["request.cancelled"]


def test_expiring_a_stale_request_writes_request_expired_by_the_system(pending, clock):
    clock.move_to(pending.expires_at + timedelta(seconds=1))
    with new_events() as actions:
        access_requests_expire_stale()
    assert actions == ["request.expired"]
    assert AuditEvent.objects.get(action="request.expired").actor_name == "system"


def test_reviewing_past_the_ttl_writes_only_the_expiry(pending, owner, clock):
    clock.move_to(pending.expires_at + timedelta(seconds=1))
    with new_events() as actions, pytest.raises(ValidationError):
        approve(owner, pending)
    assert actions == ["request.expired"]


def test_refused_transitions_write_nothing(pending, owner, outsider, scientist):
    with new_events() as actions:
        with pytest.raises(PermissionDenied):
            approve(outsider, pending)
        with pytest.raises(PermissionDenied):
            approve(scientist, pending)
        with pytest.raises(ValidationError):
            access_request_review(principal=owner, request=pending, approve=False)
    assert actions == []


def test_revoke_and_expiry_of_grants_are_written(scientist, sensitive, regular, owner, clock):
    revoked = granted(scientist, sensitive)
    with new_events() as actions:
        grant_revoke(principal=owner, grant=revoked, reason="Project ended")
    assert actions == ["grant.revoked"]

    analyst = UserFactory(username="ana", roles=["data_analyst"])
    expiring = granted(analyst, sensitive)
    clock.move_to(expiring.ends_at + timedelta(seconds=1))
    with new_events() as actions:
        grants_expire_due()
    assert actions == ["grant.expired"]


def test_an_extension_writes_a_scheduled_grant_then_its_activation(scientist, sensitive, owner, clock):
    grant = granted(scientist, sensitive)
    with new_events() as actions:
        extension = grant_extend(principal=scientist, grant=grant, duration=1, justification=JUSTIFICATION,
                                 ticket=TICKET)
        approve(owner, extension)
    assert actions == ["request.created", "request.reviewed", "request.approved", "grant.scheduled"]
    clock.move_to(grant.ends_at + timedelta(seconds=1))
    with new_events() as actions:
        grants_expire_due()
    assert actions == ["grant.expired", "grant.activated"]


def test_break_glass_and_its_review_are_written(on_call, regular, owner):
    with new_events() as actions:
        grant = break_glass_activate(principal=on_call, dataset=regular, level="read", reason="Pager: orders stuck")
    assert actions == ["break_glass.activated", "grant.activated"]
    with new_events() as actions:
        break_glass_review(principal=owner, grant=grant, note="Incident INC-7")
    assert actions == ["break_glass.reviewed"]


def test_a_matrix_change_is_written_with_before_and_after(admin_user, scientist):
    cell = RolePermission.objects.get(role__slug="data_scientist", environment="prod", sensitivity=2)
    with new_events() as actions:
        role_permission_update(principal=admin_user, cell=cell, jit_max_hours=4)
    assert actions == ["matrix.changed"]
    details = AuditEvent.objects.get(action="matrix.changed").details
    assert details["before"] == {"jit_max_hours": 8} and details["after"] == {"jit_max_hours": 4}


def test_viewing_restricted_metadata_is_written(security, restricted, sensitive):
    with new_events() as actions:
        restricted_metadata_viewed(principal=security, dataset=restricted)
        restricted_metadata_viewed(principal=security, dataset=sensitive)  # not Restricted: not written
    assert actions == ["metadata.restricted_viewed"]


# If the audit write fails, the change fails -------------------------------------------------------


def test_a_request_is_not_made_when_its_audit_fails(scientist, sensitive, audit_fails):
    audit_fails()
    with pytest.raises(RuntimeError):
        ask(scientist, sensitive)
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize("failing_action", ["request.reviewed", "request.approved", "grant.activated"])
def test_an_approval_is_not_made_when_any_of_its_audit_events_fails(pending, owner, audit_fails, failing_action):
    audit_fails(failing_action)
    with pytest.raises(RuntimeError):
        approve(owner, pending)
    assert fresh(pending).status == RequestStatus.PENDING
    assert not AccessReview.objects.exists() and not Grant.objects.exists()
    assert not AuditEvent.objects.filter(object_id=str(pending.pk), action__startswith="request.r").exists()


def test_a_cancellation_is_not_made_when_its_audit_fails(pending, scientist, audit_fails):
    audit_fails()
    with pytest.raises(RuntimeError):
        access_request_cancel(principal=scientist, request=pending)
    assert fresh(pending).status == RequestStatus.PENDING


def test_a_revocation_is_not_made_when_its_audit_fails(scientist, sensitive, owner, audit_fails):
    grant = granted(scientist, sensitive)
    audit_fails()
    with pytest.raises(RuntimeError):
        grant_revoke(principal=owner, grant=grant, reason="Project ended")
    grant = fresh(grant)
    assert grant.status == GrantStatus.ACTIVE and grant.revoked_by is None and grant.revoke_reason == ""


def test_an_expiry_is_not_made_when_its_audit_fails(scientist, sensitive, audit_fails, clock):
    grant = granted(scientist, sensitive)
    audit_fails()
    clock.move_to(grant.ends_at + timedelta(seconds=1))
    with pytest.raises(RuntimeError):
        grants_expire_due()
    assert fresh(grant).status == GrantStatus.ACTIVE


def test_break_glass_is_not_activated_when_its_audit_fails(on_call, regular, audit_fails):
    audit_fails("grant.activated")
    with pytest.raises(RuntimeError):
        break_glass_activate(principal=on_call, dataset=regular, level="read", reason="Pager: orders stuck")
    assert not Grant.objects.exists() and not AccessRequest.objects.exists()


def test_a_matrix_change_is_not_made_when_its_audit_fails(admin_user, scientist, audit_fails):
    cell = RolePermission.objects.get(role__slug="data_scientist", environment="prod", sensitivity=2)
    audit_fails()
    with pytest.raises(RuntimeError):
        role_permission_update(principal=admin_user, cell=cell, jit_max_hours=4)
    assert fresh(cell).jit_max_hours == 8


# Verifying the chain --------------------------------------------------------------------------------


@pytest.fixture
def busy_trail(scientist, sensitive, owner, admin_user):
    """Forty-odd events from ordinary work: requests, approvals, denials, revocations."""
    for round_ in range(8):
        request = ask(scientist, sensitive)
        if round_ % 2:
            access_request_review(principal=owner, request=request, approve=False, reason=f"Not now ({round_})")
        else:
            approve(owner, request)
            grant_revoke(principal=admin_user, grant=request.grant, reason=f"Round {round_} over")
    return list(AuditEvent.objects.order_by("id").values_list("id", flat=True))


def test_the_chain_is_intact_after_many_events(busy_trail):
    assert len(busy_trail) > 30
    report = audit_verify(batch_size=7)  # several batches
    assert report.intact and report.checked == len(busy_trail)
    assert (report.first_bad_id, report.problem) == (None, "")


@pytest.mark.parametrize("when", ["during the walk", "after the walk"])
def test_events_written_while_verifying_do_not_look_like_tampering(busy_trail, monkeypatch, when):
    """The expiry job and Restricted page views write events all the time; verify runs meanwhile."""
    import access.audit as audit

    def write_one():
        with transaction.atomic():
            audit.audit_record(actor=None, action="grant.expired", reason="written meanwhile")

    written = []
    real_canonical, real_filter = audit._canonical_text, audit.AuditEvent.objects.filter

    def hash_and_write(pk, *fields):
        if when == "during the walk" and not written:
            written.append(pk)
            write_one()
        return real_canonical(pk, *fields)

    def filter_and_write(*args, **kwargs):  # the walk is over when verify looks past the head
        if when == "after the walk" and "pk__gt" in kwargs and "pk__lte" not in kwargs and not written:
            written.append(kwargs["pk__gt"])
            write_one()
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(audit, "_canonical_text", hash_and_write)
    monkeypatch.setattr(audit.AuditEvent.objects, "filter", filter_and_write)
    report = audit.audit_verify(batch_size=7)
    assert written and report.intact, report.problem
    assert AuditEvent.objects.count() == len(busy_trail) + 1


def test_an_empty_trail_is_intact(db):
    assert audit_verify().intact and audit_verify().checked == 0


def test_an_edited_event_is_named(busy_trail):
    victim = busy_trail[10]
    tamper("UPDATE access_auditevent SET details = details || '{\"columns\": [\"ssn\"]}' WHERE id = %s", [victim])
    report = audit_verify(batch_size=7)
    assert not report.intact and report.first_bad_id == victim and report.checked == victim - 1
    assert "altered" in report.problem


def test_an_edited_reason_is_named(busy_trail):
    victim = busy_trail[-3]
    tamper("UPDATE access_auditevent SET reason = 'routine' WHERE id = %s", [victim])
    assert audit_verify().first_bad_id == victim


def test_a_deleted_event_is_named(busy_trail):
    victim = busy_trail[5]
    tamper("DELETE FROM access_auditevent WHERE id = %s", [victim])
    report = audit_verify()
    assert not report.intact and report.first_bad_id == victim
    assert "missing" in report.problem


def test_a_deleted_last_event_is_named(busy_trail):
    tamper("DELETE FROM access_auditevent WHERE id = %s", [busy_trail[-1]])
    report = audit_verify()
    assert not report.intact and report.first_bad_id == busy_trail[-1]


def forge_after_last(*, chained: bool) -> AuditEvent:
    """Insert an event behind the services' back, with a hash that fits the chain (or not)."""
    last = AuditEvent.objects.order_by("-id").first()
    event = AuditEvent(
        id=last.pk + 1, at=timezone.now(), actor_name="mallory", action="grant.revoked", object_type="grant",
        object_id="1", details={}, previous_hash=last.hash if chained else GENESIS,
    )
    event.hash = event_hash(event.previous_hash, event)
    event.save(force_insert=True)  # the trigger allows inserts: only the services' head update is skipped
    return event


def test_an_inserted_event_with_a_forged_hash_is_named(busy_trail):
    forged = forge_after_last(chained=True)
    report = audit_verify()
    assert not report.intact and report.first_bad_id == forged.pk
    assert report.checked == len(busy_trail)
    assert "inserted" in report.problem


def test_a_forged_tail_is_named_even_when_real_events_are_written_during_the_walk(busy_trail, monkeypatch):
    import access.audit as audit

    last = AuditEvent.objects.order_by("-id").first()
    forged = AuditEvent(id=last.pk + 5, at=timezone.now(), actor_name="mallory", action="grant.activated",
                        previous_hash=last.hash)
    forged.hash = event_hash(last.hash, forged)
    forged.save(force_insert=True)  # well past the head, which it does not move
    written, real_canonical = [], audit._canonical_text

    def hash_and_write(*fields):
        if not written:  # a real event, written while verify walks
            written.append(True)
            with transaction.atomic():
                audit.audit_record(actor=None, action="grant.expired", reason="written meanwhile")
        return real_canonical(*fields)

    monkeypatch.setattr(audit, "_canonical_text", hash_and_write)
    report = audit.audit_verify(batch_size=7)
    assert written and not report.intact and report.first_bad_id == forged.pk and "inserted" in report.problem


def test_an_inserted_event_that_does_not_link_is_named(busy_trail):
    forged = forge_after_last(chained=False)
    report = audit_verify()
    assert not report.intact and report.first_bad_id == forged.pk


def test_an_event_inserted_in_the_middle_is_named(busy_trail):
    # Make room by moving the later events up one id, then put the forged event into the gap.
    room_at = busy_trail[20]
    tamper("UPDATE access_auditevent SET id = -id WHERE id >= %s", [room_at])
    tamper("UPDATE access_auditevent SET id = 1 - id WHERE id < 0")
    previous = AuditEvent.objects.get(pk=room_at - 1)
    event = AuditEvent(id=room_at, at=timezone.now(), actor_name="mallory", action="request.approved",
                       previous_hash=previous.hash)
    event.hash = event_hash(previous.hash, event)
    event.save(force_insert=True)
    report = audit_verify()
    # The forged event fits its predecessor; the event after it no longer fits (its id and link changed).
    assert not report.intact and report.first_bad_id == room_at + 1


def test_the_database_refuses_to_update_audit_events(busy_trail):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=busy_trail[0]).update(reason="nothing happened")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE access_auditevent SET details = '{}' WHERE id = %s", [busy_trail[1]])
    assert audit_verify().intact


def test_the_database_refuses_to_delete_audit_events(busy_trail):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=busy_trail[-1]).delete()
    assert AuditEvent.objects.count() == len(busy_trail)
    assert audit_verify().intact


@pytest.mark.django_db(transaction=True)
def test_the_chain_stays_linear_with_concurrent_writers(sensitive):
    requesters = [UserFactory(username=f"scientist{i}", roles=["data_scientist"]) for i in range(4)]

    def work(user):
        def run():
            for _ in range(3):
                request = ask(user, sensitive)
                access_request_cancel(principal=user, request=request)
        return run

    outcomes = run_at_once(*(work(user) for user in requesters))
    assert outcomes == [None] * 4
    ids = list(AuditEvent.objects.order_by("id").values_list("id", flat=True))
    assert ids == list(range(1, 4 * 3 * 2 + 1))
    hashes = list(AuditEvent.objects.order_by("id").values_list("previous_hash", "hash"))
    assert all(later[0] == earlier[1] for earlier, later in zip(hashes, hashes[1:]))
    report = audit_verify()
    assert report.intact and report.checked == 24
    assert AuditChainHead.objects.get().last_id == 24


# manage.py audit_verify ----------------------------------------------------------------------------


def test_audit_verify_command_prints_intact_and_the_count(busy_trail):
    out = StringIO()
    head = AuditEvent.objects.order_by("-id").first()
    call_command("audit_verify", stdout=out)
    assert out.getvalue().splitlines()[0] == (
        f"intact: {len(busy_trail)} events (full check, #1-#{head.pk}); head #{head.pk} {head.hash}"
    )


def test_audit_verify_command_names_the_first_altered_event_and_fails(busy_trail):
    victim = busy_trail[7]
    tamper("UPDATE access_auditevent SET actor_name = 'someone else' WHERE id = %s", [victim])
    with pytest.raises(CommandError, match=f"#{victim}") as error:
        call_command("audit_verify", stdout=StringIO())
    assert error.value.returncode == 1
