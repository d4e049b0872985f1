"""The audit trail: append-only and hash-chained.

Every event is written by ``audit_record`` inside the caller's transaction, so if the audit
write fails the change fails with it. Appending locks the chain's head row: events get
their hashes in commit order and the chain has no forks. ``audit_verify`` recomputes the
chain and names the first event that does not fit (edited, deleted or inserted).
"""

import hashlib
import ipaddress
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from access.models import AuditChainHead, AuditEvent

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


def _canonical(event: AuditEvent) -> bytes:
    content = {
        "id": event.pk,
        "at": event.at.isoformat(timespec="microseconds"),
        "actor": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "dataset": event.dataset_id,
        "remote_addr": event.remote_addr,
        "reason": event.reason,
        "details": event.details,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()


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


def audit_verify(*, batch_size: int = 5000) -> ChainReport:
    """Walk the chain from the first event; stop at the first one that does not fit.

    Safe while events are being written: the walk goes up to the head as it was when the walk
    began (an event and the head move in one transaction), and events past it count as inserted
    only if the head, read after them, still does not cover them.
    """
    head = AuditChainHead.objects.filter(pk=1).first()
    head_id, head_hash = (head.last_id, head.last_hash) if head is not None else (0, GENESIS)
    previous_hash, expected_id, checked = GENESIS, 1, 0
    last_id = 0
    while last_id < head_id:
        events = list(AuditEvent.objects.filter(pk__gt=last_id, pk__lte=head_id).order_by("pk")[:batch_size])
        if not events:
            break
        for event in events:
            if event.pk != expected_id:
                return ChainReport(False, checked, expected_id if event.pk > expected_id else event.pk,
                                   f"event #{expected_id} is missing (deleted?); the next one is #{event.pk}")
            if event.previous_hash != previous_hash:
                return ChainReport(False, checked, event.pk, f"event #{event.pk} does not follow #{event.pk - 1}")
            if event_hash(previous_hash, event) != event.hash:
                return ChainReport(False, checked, event.pk, f"event #{event.pk} was altered after it was written")
            previous_hash, expected_id, checked = event.hash, expected_id + 1, checked + 1
        last_id = events[-1].pk
    # The head catches what the links cannot: events deleted from the end, and events added at
    # the end with well-forged hashes.
    last = expected_id - 1
    if last < head_id:
        return ChainReport(False, checked, expected_id,
                           f"the chain ends at #{last} but its head says #{head_id} (events deleted at the end?)")
    if head_hash != previous_hash:
        return ChainReport(False, checked - 1, last, f"event #{last} does not match the chain's head (rewritten?)")
    beyond = AuditEvent.objects.filter(pk__gt=head_id).aggregate(last=Max("pk"))["last"]
    if beyond is not None:
        head = AuditChainHead.objects.filter(pk=1).first()  # read after the events: covers them if they are real
        covered = head.last_id if head is not None else 0
        if covered < beyond:
            first = AuditEvent.objects.filter(pk__gt=covered).order_by("pk").values_list("pk", flat=True).first()
            return ChainReport(False, checked, first,
                               f"event #{first} was added after the chain's last event #{covered} (inserted?)")
    return ChainReport(True, checked, head_id=head_id, head_hash=head_hash)
