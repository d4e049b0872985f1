"""The audit trail: append-only and hash-chained.

Every event is written by ``audit_record`` inside the caller's transaction, so if the audit
write fails the change fails with it. Appending locks the chain's head row: events get
their hashes in commit order and the chain has no forks. ``audit_verify`` recomputes the
chain and names the first event that does not fit (edited, deleted or inserted).
"""

import hashlib
import ipaddress
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Max, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from access.models import AuditChainHead, AuditCheckpoint, AuditEvent

GENESIS = "0" * 64


def client_address(request) -> str:
    """Where a request came from, for the audit trail: REMOTE_ADDR, or behind
    ``AUDIT_TRUSTED_PROXIES`` proxies the address the outermost one saw (each proxy appends the
    address it saw to X-Forwarded-For, so the entries a client wrote itself come earlier)."""
    trusted = settings.AUDIT_TRUSTED_PROXIES
    remote = request.META.get("REMOTE_ADDR", "")
    if trusted <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if len(hops) < trusted:
        return remote
    try:  # whatever the header says, only an address is written to the trail
        address = ipaddress.ip_address(hops[-trusted])
    except ValueError:
        return remote
    return remote if getattr(address, "scope_id", None) else str(address)


# The canonical content of an event is the compact JSON of its fields with sorted keys. It is
# built by hand in that key order (the encoder only escapes strings and writes ``details``), so
# that verifying a million events does not pay a dict, a sort and an encoder per event; the
# bytes are the same as ``json.dumps(content, sort_keys=True, separators=(",", ":"),
# default=str)`` (tests/access/test_audit_verify.py checks that).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
_string = json.encoder.encode_basestring_ascii


_CANONICAL = (
    '{"action":%s,"actor":%s,"actor_name":%s,"at":"%s","dataset":%s,"details":%s,"id":%d,"object_id":%s,'
    '"object_type":%s,"reason":%s,"remote_addr":%s}'
)


def _canonical_text(pk, at, actor_id, actor_name, action, object_type, object_id, dataset_id, remote_addr, reason,
                    details) -> str:
    """``at`` is an aware datetime in UTC or its ISO text (microseconds, ``+00:00``); ``details``
    a dict, or the JSON text the database returns for it."""
    if isinstance(details, str):
        details = "{}" if details == "{}" else _ENCODER.encode(json.loads(details))
    else:
        details = _ENCODER.encode(details)
    return _CANONICAL % (
        _string(action), "null" if actor_id is None else actor_id, _string(actor_name),
        at if isinstance(at, str) else at.isoformat(timespec="microseconds"),
        "null" if dataset_id is None else dataset_id, details, pk, _string(object_id), _string(object_type),
        _string(reason), _string(remote_addr),
    )


def _canonical(event: AuditEvent) -> bytes:
    return _canonical_text(
        event.pk, event.at, event.actor_id, event.actor_name, event.action, event.object_type, event.object_id,
        event.dataset_id, event.remote_addr, event.reason, event.details,
    ).encode()


def event_hash(previous_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(previous_hash.encode() + _canonical(event)).hexdigest()


def _actor_name(actor) -> str:
    if actor is None:
        return "system"
    return getattr(actor, "username", "") or str(actor)


def audit_record(
    *, actor, action: str, obj=None, dataset=None, reason: str = "", details: dict | None = None,
    remote_addr: str = "",
) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it records."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    head = _head_locked()
    event = _chained(head, actor=actor, action=action, obj=obj, dataset=dataset, reason=reason, details=details,
                     remote_addr=remote_addr)
    event.save(force_insert=True)
    head.save(update_fields=["last_id", "last_hash"])
    return event


def audit_record_many(entries: list[dict]) -> list[AuditEvent]:
    """Append several events (each a dict of ``audit_record``'s arguments), chained in order, with
    one lock of the chain's head and one insert: a page that shows many things to audit costs
    the same few queries however many there are. Must run inside a transaction."""
    if not entries:
        return []
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record_many must run inside the transaction of the change it records")
    head = _head_locked()
    events = [_chained(head, **entry) for entry in entries]
    AuditEvent.objects.bulk_create(events)
    head.save(update_fields=["last_id", "last_hash"])
    return events


def _head_locked() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        head, _ = AuditChainHead.objects.get_or_create(pk=1)
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    return head


def _chained(head: AuditChainHead, *, actor, action: str, obj=None, dataset=None, reason: str = "",
             details: dict | None = None, remote_addr: str = "") -> AuditEvent:
    """The next event of the chain (not saved yet); moves ``head`` on to it."""
    event = AuditEvent(
        id=head.last_id + 1,
        at=timezone.now(),
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=_actor_name(actor),
        action=action,
        object_type=type(obj).__name__.lower() if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        dataset=dataset,
        remote_addr=remote_addr or "",
        reason=reason or "",
        details=details or {},
        previous_hash=head.last_hash,
    )
    # JSON round trip, so the hash is over what the database will give back.
    event.details = json.loads(json.dumps(event.details, default=str))
    event.hash = event_hash(head.last_hash, event)
    head.last_id, head.last_hash = event.pk, event.hash
    return event


@dataclass
class ChainReport:
    intact: bool
    checked: int
    first_bad_id: int | None = None
    problem: str = ""
    head_id: int = 0  # the chain's head as verified: keep its hash outside the database
    head_hash: str = GENESIS
    full: bool = True  # a full check (from the first event), else incremental from a checkpoint
    from_id: int = 1  # the first event this check read
    checkpoint_id: int | None = None  # the checkpoint an incremental check started from


# The columns a check reads, in _canonical_text's order, then the two hashes.
_EVENT_COLUMNS = (
    "id", "at", "actor_id", "actor_name", "action", "object_type", "object_id", "dataset_id", "remote_addr",
    "reason", "details_text", "previous_hash", "hash",
)
VERIFIED_ACTION = "audit.verified"


def audit_verify(*, full: bool = True, batch_size: int = 10_000) -> ChainReport:
    """Recompute the chain; stop at the first event that does not fit.

    ``full`` walks every event from the first and every checkpoint; otherwise the check starts
    at the latest checkpoint (after checking that checkpoint, its link to the one before, and
    that the event it names still has the hash it recorded) and reads only the events after it
    (a full check when there is no checkpoint yet). Events are streamed in one query (a
    server-side cursor on PostgreSQL, ``batch_size`` rows per fetch), as tuples.

    Safe while events are being written: the walk goes up to the head as it was when the walk
    began (an event and the head move in one transaction), and events past it count as inserted
    only if the head, read after them, still does not cover them.
    """
    # One transaction, so PostgreSQL's named cursor streams instead of being materialised
    # WITH HOLD first.
    with transaction.atomic():
        return _verify(full=full, batch_size=batch_size)


def _verify(*, full: bool, batch_size: int) -> ChainReport:
    head = AuditChainHead.objects.filter(pk=1).first()
    head_id, head_hash = (head.last_id, head.last_hash) if head is not None else (0, GENESIS)
    start = None if full else _checkpoint_start()
    if isinstance(start, ChainReport):
        return start
    checkpoint = start
    report = ChainReport(True, 0, head_id=head_id, head_hash=head_hash, full=checkpoint is None,
                         from_id=checkpoint.event_id + 1 if checkpoint else 1,
                         checkpoint_id=checkpoint.pk if checkpoint else None)
    announced = {}  # checkpoint id -> hash, from the audit.verified events walked
    rows = _event_rows(report.from_id, head_id, batch_size)
    try:
        broken = _walk(report, rows, checkpoint.event_hash if checkpoint else GENESIS, announced)
    finally:
        rows.close()
    if broken:
        return report
    beyond = AuditEvent.objects.filter(pk__gt=head_id).aggregate(last=Max("pk"))["last"]
    if beyond is not None:
        head = AuditChainHead.objects.filter(pk=1).first()  # read after the events: covers them if they are real
        covered = head.last_id if head is not None else 0
        if covered < beyond:
            first = AuditEvent.objects.filter(pk__gt=covered).order_by("pk").values_list("pk", flat=True).first()
            return _broken(report, report.checked, first,
                           f"event #{first} was added after the chain's last event #{covered} (inserted?)")
    problem = _checkpoints_problem(checkpoint, announced, head_id)
    if problem:
        report.intact, report.problem = False, problem
    return report


def _walk(report: ChainReport, rows, previous_hash: str, announced: dict) -> bool:
    """Check each row against the one before; True (and ``report`` says why) at the first that
    does not fit, or if the walk ends anywhere but at the head."""
    expected_id, checked, sha256, canonical = report.from_id, 0, hashlib.sha256, _canonical_text
    for pk, at, actor, actor_name, action, object_type, object_id, dataset, remote_addr, reason, details, \
            previous, stored in rows:
        if pk != expected_id:
            _broken(report, checked, expected_id if pk > expected_id else pk,
                    f"event #{expected_id} is missing (deleted?); the next one is #{pk}")
            return True
        if previous != previous_hash:
            _broken(report, checked, pk, f"event #{pk} does not follow #{pk - 1}")
            return True
        text = canonical(pk, at, actor, actor_name, action, object_type, object_id, dataset, remote_addr, reason,
                         details)
        if sha256((previous_hash + text).encode()).hexdigest() != stored:
            _broken(report, checked, pk, f"event #{pk} was altered after it was written")
            return True
        if action == VERIFIED_ACTION:
            announcement = json.loads(details)
            announced[announcement.get("checkpoint")] = announcement.get("hash")
        previous_hash, expected_id, checked = stored, expected_id + 1, checked + 1
    report.checked = checked
    # The head catches what the links cannot: events deleted from the end, and events added at
    # the end with well-forged hashes.
    last = expected_id - 1
    if last < report.head_id:
        _broken(report, checked, expected_id,
                f"the chain ends at #{last} but its head says #{report.head_id} (events deleted at the end?)")
        return True
    if report.head_hash != previous_hash:
        _broken(report, checked - 1, last, f"event #{last} does not match the chain's head (rewritten?)")
        return True
    return False


# On PostgreSQL the walk reads text where Python would parse and print again: the time as the ISO
# text the hash is over (Django's time zone loader parses in Python) and details as JSON text.
_EVENT_ROWS_SQL = """
    SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'), actor_id, actor_name, action,
           object_type, object_id, dataset_id, remote_addr, reason, details::text, previous_hash, hash
    FROM access_auditevent WHERE id >= %s AND id <= %s ORDER BY id
"""


def _event_rows(first_id: int, last_id: int, batch_size: int):
    """The events from ``first_id`` to ``last_id`` as tuples in _EVENT_COLUMNS' order, streamed
    (a server-side cursor on PostgreSQL, ``batch_size`` rows a fetch)."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        yield from (
            AuditEvent.objects.filter(pk__gte=first_id, pk__lte=last_id)
            .annotate(details_text=Cast("details", TextField()))
            .order_by("pk")
            .values_list(*_EVENT_COLUMNS)
            .iterator(chunk_size=batch_size)
        )
        return
    with connection.chunked_cursor() as cursor, ThreadPoolExecutor(1, thread_name_prefix="audit-verify") as fetcher:
        cursor.execute(_EVENT_ROWS_SQL, [first_id, last_id])
        # The next batch is fetched while this one is hashed, so PostgreSQL's work and Python's
        # overlap (psycopg releases the GIL while it waits, and serialises use of the connection).
        fetch = cursor.cursor.fetchmany
        pending = fetcher.submit(fetch, batch_size)
        while rows := pending.result():
            pending = fetcher.submit(fetch, batch_size)
            yield from rows


def _broken(report: ChainReport, checked: int, first_bad_id: int, problem: str) -> ChainReport:
    report.intact, report.checked, report.first_bad_id, report.problem = False, checked, first_bad_id, problem
    return report


def checkpoint_hash(previous_hash: str, *, pk: int, at, event_id: int, event_hash: str, checked: int,
                    full: bool) -> str:
    """SHA-256 over the previous checkpoint's hash and this checkpoint's canonical content."""
    content = {"id": pk, "at": at.isoformat(timespec="microseconds"), "event_id": event_id,
               "event_hash": event_hash, "checked": checked, "full": full}
    return hashlib.sha256((previous_hash + _ENCODER.encode(content)).encode()).hexdigest()


def _checkpoint_fits(checkpoint: AuditCheckpoint, previous: AuditCheckpoint | None) -> str:
    """Why this checkpoint does not fit after ``previous`` (empty if it does)."""
    expected_id, expected_link = (previous.pk + 1, previous.hash) if previous is not None else (1, GENESIS)
    if checkpoint.pk != expected_id:
        return f"checkpoint #{expected_id} is missing (deleted?); the next one is #{checkpoint.pk}"
    if checkpoint.previous_hash != expected_link:
        return f"checkpoint #{checkpoint.pk} does not follow checkpoint #{checkpoint.pk - 1}"
    recomputed = checkpoint_hash(checkpoint.previous_hash, pk=checkpoint.pk, at=checkpoint.at,
                                 event_id=checkpoint.event_id, event_hash=checkpoint.event_hash,
                                 checked=checkpoint.checked, full=checkpoint.full)
    if recomputed != checkpoint.hash:
        return f"checkpoint #{checkpoint.pk} was altered after it was recorded"
    return ""


def _checkpoint_start() -> "AuditCheckpoint | ChainReport | None":
    """The latest checkpoint if it holds (its hash, its link to the one before, the event it names
    still has the hash it recorded); a broken report if it does not; None if there is none."""
    latest = list(AuditCheckpoint.objects.order_by("-pk")[:2])
    if not latest:
        return None
    checkpoint, previous = latest[0], (latest[1] if len(latest) > 1 else None)
    if previous is None and checkpoint.pk != 1:
        problem = f"checkpoint #{checkpoint.pk - 1} is missing (deleted?); the next one is #{checkpoint.pk}"
    else:
        problem = _checkpoint_fits(checkpoint, previous)
    if not problem:
        stored = AuditEvent.objects.filter(pk=checkpoint.event_id).values_list("hash", flat=True).first()
        if stored != checkpoint.event_hash:
            return ChainReport(False, 0, checkpoint.event_id,
                               f"event #{checkpoint.event_id} no longer has the hash checkpoint #{checkpoint.pk} "
                               "verified (rewritten?); run audit_verify --full", full=False,
                               from_id=checkpoint.event_id, checkpoint_id=checkpoint.pk)
        return checkpoint
    return ChainReport(False, 0, None, problem + "; run audit_verify --full", full=False,
                       checkpoint_id=checkpoint.pk)


def _checkpoints_problem(start: AuditCheckpoint | None, announced: dict, head_id: int) -> str:
    """What is wrong with the checkpoints, given the audit.verified events the walk read.

    A full check reads every checkpoint: each must be chained to the one before, name an event
    whose hash it recorded, and be announced by its audit.verified event (and every announcement
    must name a checkpoint that exists with that hash). An incremental check has checked its
    starting checkpoint already; it needs that checkpoint's announcement (which comes after the
    events it covers) and the checkpoints the new events announce.
    """
    if start is None:
        checkpoints = list(AuditCheckpoint.objects.order_by("pk"))
        previous = None
        for checkpoint in checkpoints:
            problem = _checkpoint_fits(checkpoint, previous)
            if problem:
                return problem
            previous = checkpoint
        hashes = dict(
            AuditEvent.objects.filter(pk__in=[c.event_id for c in checkpoints]).values_list("pk", "hash")
        )
        for checkpoint in checkpoints:
            if hashes.get(checkpoint.event_id) != checkpoint.event_hash:
                return (f"checkpoint #{checkpoint.pk} recorded event #{checkpoint.event_id} with another hash "
                        "(the chain was rewritten after it?)")
    else:
        checkpoints = [start] + list(AuditCheckpoint.objects.filter(pk__in=[k for k in announced if k != start.pk]))
    recorded = {c.pk: c.hash for c in checkpoints}
    for pk, announced_hash in announced.items():
        if recorded.get(pk) != announced_hash:
            return f"checkpoint #{pk}, announced by an audit.verified event, is missing or altered"
    unannounced = {c.pk for c in checkpoints if c.pk not in announced}
    if unannounced:  # recorded after this check's head? Then its announcement is past the head.
        later = AuditEvent.objects.filter(pk__gt=head_id, action=VERIFIED_ACTION).values_list("details", flat=True)
        announced = {**announced, **{d.get("checkpoint"): d.get("hash") for d in later
                                     if d.get("checkpoint") in unannounced}}
    for checkpoint in checkpoints:
        if announced.get(checkpoint.pk) != checkpoint.hash:
            return f"checkpoint #{checkpoint.pk} has no audit.verified event that matches it (forged?)"
    return ""


def audit_checkpoint_record(report: ChainReport) -> AuditCheckpoint:
    """Record that the chain was verified up to ``report.head_id``: a checkpoint chained to the
    previous one, announced by an ``audit.verified`` event in the same transaction."""
    if not report.intact:
        raise ValueError("only an intact chain gets a checkpoint")
    with transaction.atomic():
        _head_locked()  # checkpoints get their ids and links in the same order as events
        previous = AuditCheckpoint.objects.order_by("-pk").first()
        pk, link = (previous.pk + 1, previous.hash) if previous is not None else (1, GENESIS)
        checkpoint = AuditCheckpoint(pk=pk, at=timezone.now(), event_id=report.head_id, event_hash=report.head_hash,
                                     checked=report.checked, full=report.full, previous_hash=link)
        checkpoint.hash = checkpoint_hash(link, pk=pk, at=checkpoint.at, event_id=checkpoint.event_id,
                                          event_hash=checkpoint.event_hash, checked=checkpoint.checked,
                                          full=checkpoint.full)
        checkpoint.save(force_insert=True)
        audit_record(actor=None, action="audit.verified", obj=checkpoint, details={
            "checkpoint": checkpoint.pk, "hash": checkpoint.hash, "through": checkpoint.event_id,
            "checked": checkpoint.checked, "full": checkpoint.full,
        })
    return checkpoint
