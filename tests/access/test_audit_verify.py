"""Verifying the audit chain from a checkpoint: the checkpoint is itself chained and announced in
the trail, an incremental check reads only the events after it, and tampering with events or
checkpoints is found by ``--full`` (and by the incremental check wherever it reads)."""

import json
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access.audit import (
    GENESIS,
    _canonical_text,
    audit_checkpoint_record,
    audit_record,
    audit_verify,
    checkpoint_hash,
    event_hash,
)
from access.models import AuditChainHead, AuditCheckpoint, AuditEvent
from tests.access.test_audit import busy_trail, tamper  # noqa: F401 - the trail of ordinary work
from tests.access.test_grants import (  # noqa: F401 - fixtures busy_trail uses
    owner,
    prod_store,
    scientist,
    second_owner,
    sensitive,
)


def record(count: int, action: str = "grant.expired"):
    with transaction.atomic():
        for n in range(count):
            audit_record(actor=None, action=action, reason=f"event {n}", details={"n": n})


def checkpoint_now() -> AuditCheckpoint:
    report = audit_verify(full=False)
    assert report.intact, report.problem
    return audit_checkpoint_record(report)


@contextmanager
def checkpoint_trigger_disabled():
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE access_auditcheckpoint DISABLE TRIGGER audit_checkpoint_append_only")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE access_auditcheckpoint ENABLE TRIGGER audit_checkpoint_append_only")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def tamper_checkpoints(sql, params=()):
    with checkpoint_trigger_disabled(), connection.cursor() as cursor:
        cursor.execute(sql, params)


# The canonical content --------------------------------------------------------------------------


@pytest.mark.parametrize("details", [
    {}, {"columns": ["ssn", "email"], "b": 1, "a": {"z": None, "y": [1.5, True]}},
    {"naïve": "Zoë \"quoted\" \\ back\nslash", "emoji": "\U0001F512"}, {"n": 10**20, "f": 1e-7},
])
def test_the_canonical_content_is_the_sorted_compact_json_of_the_event(details):
    at = timezone.now()
    content = {"id": 7, "at": at.isoformat(timespec="microseconds"), "actor": None, "actor_name": "Zoë",
               "action": "grant.revoked", "object_type": "grant", "object_id": "12", "dataset": 3,
               "remote_addr": "10.0.0.1", "reason": "line\nbreak \"and\" quotes", "details": details}
    expected = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    fields = (7, at, None, "Zoë", "grant.revoked", "grant", "12", 3, "10.0.0.1", "line\nbreak \"and\" quotes")
    assert _canonical_text(*fields, details) == expected
    assert _canonical_text(*fields, json.dumps(details)) == expected  # as the database returns it


# Checkpoints ------------------------------------------------------------------------------------


def test_a_checkpoint_is_chained_and_announced_in_the_trail(busy_trail):
    first = checkpoint_now()
    record(3)
    second = checkpoint_now()
    assert (first.pk, first.previous_hash, first.event_id) == (1, GENESIS, busy_trail[-1])
    assert second.previous_hash == first.hash and second.event_id == AuditChainHead.objects.get().last_id - 1
    assert second.hash == checkpoint_hash(first.hash, pk=2, at=second.at, event_id=second.event_id,
                                          event_hash=second.event_hash, checked=second.checked, full=False)
    announcements = list(AuditEvent.objects.filter(action="audit.verified").order_by("pk"))
    assert [a.details["checkpoint"] for a in announcements] == [1, 2]
    assert announcements[1].details == {"checkpoint": 2, "hash": second.hash, "through": second.event_id,
                                        "checked": 4, "full": False}
    assert first.full and first.checked == len(busy_trail)


def test_without_a_checkpoint_the_incremental_check_is_a_full_one(busy_trail):
    report = audit_verify(full=False)
    assert report.intact and report.full and report.checked == len(busy_trail) and report.from_id == 1


def test_the_incremental_check_reads_only_the_events_after_the_checkpoint(busy_trail):
    checkpoint = checkpoint_now()
    record(5)
    with CaptureQueriesContext(connection) as queries:
        report = audit_verify(full=False)
    assert report.intact and not report.full and report.checkpoint_id == checkpoint.pk
    # The five new events and the checkpoint's own audit.verified event, nothing before.
    assert report.checked == 6 and report.from_id == checkpoint.event_id + 1
    walk = [q["sql"] for q in queries.captured_queries if "details" in q["sql"] and "ORDER BY" in q["sql"]]
    assert len(walk) == 1 and walk[0].rstrip().endswith(f"WHERE id >= {checkpoint.event_id + 1} AND id <= {report.head_id} ORDER BY id")


def test_the_incremental_check_costs_the_same_queries_however_many_new_events(busy_trail):
    counts = []
    for new in (2, 40):
        checkpoint_now()
        record(new)
        with CaptureQueriesContext(connection) as queries:
            assert audit_verify(full=False, batch_size=7).intact
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_full_check_reads_every_event_and_every_checkpoint(busy_trail):
    checkpoint_now()
    record(3)
    checkpoint_now()
    report = audit_verify(full=True)
    assert report.intact and report.full and report.checked == len(busy_trail) + 1 + 3 + 1


# Tampering --------------------------------------------------------------------------------------


def test_an_edit_before_the_checkpoint_is_found_by_the_full_check_only(busy_trail):
    checkpoint_now()
    record(2)
    victim = busy_trail[4]
    tamper("UPDATE access_auditevent SET reason = 'nothing to see' WHERE id = %s", [victim])
    assert audit_verify(full=False).intact  # it trusts what the checkpoint verified
    report = audit_verify(full=True)
    assert not report.intact and report.first_bad_id == victim and "altered" in report.problem


def test_an_edit_after_the_checkpoint_is_found_by_the_incremental_check(busy_trail):
    checkpoint = checkpoint_now()
    record(4)
    victim = checkpoint.event_id + 3
    tamper("UPDATE access_auditevent SET details = '{\"n\": 99}' WHERE id = %s", [victim])
    report = audit_verify(full=False)
    assert not report.intact and report.first_bad_id == victim and "altered" in report.problem


def test_a_deleted_event_after_the_checkpoint_is_found_by_the_incremental_check(busy_trail):
    checkpoint = checkpoint_now()
    record(4)
    victim = checkpoint.event_id + 2
    tamper("DELETE FROM access_auditevent WHERE id = %s", [victim])
    report = audit_verify(full=False)
    assert not report.intact and report.first_bad_id == victim and "missing" in report.problem


def test_reordered_events_after_the_checkpoint_are_found_by_the_incremental_check(busy_trail):
    checkpoint = checkpoint_now()
    record(4)
    a, b = checkpoint.event_id + 2, checkpoint.event_id + 3
    tamper("UPDATE access_auditevent SET id = -1 WHERE id = %s", [a])
    tamper("UPDATE access_auditevent SET id = %s WHERE id = %s", [a, b])
    tamper("UPDATE access_auditevent SET id = %s WHERE id = -1", [b])
    for full in (False, True):
        report = audit_verify(full=full)
        assert not report.intact and report.first_bad_id == a


def test_a_chain_rewritten_under_the_checkpoint_is_found_by_the_incremental_check(busy_trail):
    """Someone rewrites an old event and re-hashes every later one, head included."""
    checkpoint = checkpoint_now()
    record(2)
    victim = busy_trail[10]
    tamper("UPDATE access_auditevent SET reason = 'rewritten' WHERE id = %s", [victim])
    previous = AuditEvent.objects.get(pk=victim - 1).hash
    for event in AuditEvent.objects.filter(pk__gte=victim).order_by("pk"):
        event.previous_hash = previous
        event.hash = previous = event_hash(previous, event)
        tamper("UPDATE access_auditevent SET previous_hash = %s, hash = %s WHERE id = %s",
               [event.previous_hash, event.hash, event.pk])
    AuditChainHead.objects.filter(pk=1).update(last_hash=previous)
    report = audit_verify(full=False)
    assert not report.intact and report.first_bad_id == checkpoint.event_id
    assert "no longer has the hash" in report.problem
    report = audit_verify(full=True)
    assert not report.intact and f"checkpoint #{checkpoint.pk}" in report.problem


def test_a_checkpoint_moved_forward_is_found(busy_trail):
    """Moving the checkpoint past events would skip them: its own hash no longer fits."""
    checkpoint_now()
    record(4)
    later = AuditEvent.objects.order_by("-pk").first()
    tamper_checkpoints("UPDATE access_auditcheckpoint SET event_id = %s, event_hash = %s", [later.pk, later.hash])
    for full in (False, True):
        report = audit_verify(full=full)
        assert not report.intact and "checkpoint #1 was altered" in report.problem


def test_a_deleted_latest_checkpoint_is_found(busy_trail):
    checkpoint_now()
    record(2)
    checkpoint_now()
    record(2)
    tamper_checkpoints("DELETE FROM access_auditcheckpoint WHERE id = 2")
    for full in (False, True):
        report = audit_verify(full=full)
        assert not report.intact and "checkpoint #2, announced by an audit.verified event, is missing" in report.problem


def test_a_deleted_earlier_checkpoint_is_found(busy_trail):
    checkpoint_now()
    record(2)
    checkpoint_now()
    tamper_checkpoints("DELETE FROM access_auditcheckpoint WHERE id = 1")
    for full in (False, True):
        report = audit_verify(full=full)
        assert not report.intact and "checkpoint #1 is missing" in report.problem


def test_a_forged_checkpoint_without_its_announcement_is_found(busy_trail):
    """A well-chained checkpoint written behind the services' back has no audit.verified event."""
    real = checkpoint_now()
    record(6)
    later = AuditEvent.objects.order_by("-pk").first()
    at = timezone.now()
    forged = AuditCheckpoint(pk=2, at=at, event_id=later.pk, event_hash=later.hash, checked=6, full=False,
                             previous_hash=real.hash)
    forged.hash = checkpoint_hash(real.hash, pk=2, at=at, event_id=later.pk, event_hash=later.hash, checked=6,
                                  full=False)
    forged.save(force_insert=True)
    for full in (False, True):
        report = audit_verify(full=full)
        assert not report.intact and "checkpoint #2 has no audit.verified event" in report.problem


def test_the_database_refuses_to_update_or_delete_checkpoints(busy_trail):
    checkpoint = checkpoint_now()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditCheckpoint.objects.filter(pk=checkpoint.pk).update(event_id=1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditCheckpoint.objects.filter(pk=checkpoint.pk).delete()
    assert audit_verify(full=False).intact


def test_a_broken_chain_gets_no_checkpoint(busy_trail):
    tamper("UPDATE access_auditevent SET reason = 'x' WHERE id = %s", [busy_trail[3]])
    report = audit_verify()
    with pytest.raises(ValueError):
        audit_checkpoint_record(report)
    assert not AuditCheckpoint.objects.exists()


# manage.py audit_verify ------------------------------------------------------------------------


def test_the_command_checks_incrementally_by_default_and_records_a_checkpoint(busy_trail):
    out = StringIO()
    call_command("audit_verify", stdout=out)
    first = AuditCheckpoint.objects.get()
    assert out.getvalue().splitlines()[1] == f"checkpoint #1 through event #{busy_trail[-1]}: {first.hash}"
    record(3)
    out = StringIO()
    call_command("audit_verify", stdout=out)
    head = AuditChainHead.objects.get().last_id - 1  # the last line announced checkpoint #2
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(
        f"intact: 4 events (incremental check from checkpoint #1, #{busy_trail[-1] + 1}-#{head}); head #{head} ")
    assert lines[1].startswith(f"checkpoint #2 through event #{head}: ")


def test_the_command_full_checks_everything(busy_trail):
    call_command("audit_verify", stdout=StringIO())
    out = StringIO()
    call_command("audit_verify", "--full", "--no-checkpoint", stdout=out)
    total = AuditEvent.objects.count()
    assert out.getvalue().startswith(f"intact: {total} events (full check, #1-#{total}); ")
    assert AuditCheckpoint.objects.count() == 1


def test_the_command_fails_on_a_tampered_checkpoint_and_names_it(busy_trail):
    call_command("audit_verify", stdout=StringIO())
    tamper_checkpoints("UPDATE access_auditcheckpoint SET checked = 1")
    with pytest.raises(CommandError, match="incremental check from checkpoint #1.*checkpoint #1 was altered") as error:
        call_command("audit_verify", stdout=StringIO())
    assert error.value.returncode == 1
    with pytest.raises(CommandError, match=r"full check.*checkpoint #1 was altered"):
        call_command("audit_verify", "--full", stdout=StringIO())
