"""OpenLineage ingestion: accept an event in one INSERT, fold the queue into the graph in batches.

``lineage_event_accept`` (the ``POST /api/v1/lineage`` request) checks the event and the sender
and stores it ``pending`` with one ``INSERT ... ON CONFLICT (digest) DO NOTHING``: a resent event
writes nothing. After commit it asks for a drain (coalesced: one queued task at a time).

``lineage_events_drain`` (the ``lineage.events_drain`` task, and a periodic safety net) takes
pending events with ``FOR UPDATE SKIP LOCKED`` in event-time order, applies each in a savepoint
(a failing event is marked ``failed`` with its error and the others go on), writes the batch's
edges with multi-row statements, refreshes sensitivity once, and marks the events ``applied``,
all in one transaction: a worker killed mid-batch leaves the events pending and nothing written.

Events of one run are applied in event-time order, also across batches and workers: a batch
leaves out a run whose earlier events another worker holds (they wait for the next batch).
"""

import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from access import policies
from lineage.models import EventStatus, LineageEvent
from lineage.facets import runs_adopt_children
from lineage.openlineage import (
    FoldState,
    event_digest,
    fold_prefetch,
    kept_payload,
    openlineage_apply,
    openlineage_parse,
    openlineage_schema_check,
)
from lineage.sensitivity import sensitivity_refresh, sensitivity_refresh_deferred
from lineage.services import lineage_edges_fold

logger = logging.getLogger(__name__)

DRAIN_QUEUED_FLAG = "lineage:drain-queued"


@dataclass
class Accepted:
    event: LineageEvent
    created: bool


def _namespace(payload: dict) -> str:
    """The namespace the queue may be partitioned by: the job's, or a dataset event's dataset's."""
    for key in ("job", "dataset"):
        value = payload.get(key)
        if isinstance(value, dict) and isinstance(value.get("namespace"), str):
            return value["namespace"][:255]
    return ""


def lineage_event_accept(*, principal, payload) -> Accepted:
    """Check an OpenLineage event and store it for the fold: one INSERT, or nothing for a resend.

    What can be decided without the datasets is decided here: the sender may send lineage at
    all (``PermissionDenied``), the event is well formed and its schema facets could be
    registered (``ValidationError`` per field). What needs the datasets (may this sender
    register or change them) is decided by the fold, which records a refusal as the event's error.
    """
    if not policies.can_emit_lineage(principal):
        raise PermissionDenied("Sending lineage needs a registrar role (e.g. data engineer) or a service account with one.")
    event = openlineage_parse(payload)
    openlineage_schema_check(event)
    record = LineageEvent(
        digest=event_digest(payload), event_type=event.event_type, event_time=event.event_time,
        run_uuid=event.run_id, namespace=_namespace(payload), producer=event.producer[:500],
        payload=kept_payload(payload), received_by=principal if getattr(principal, "pk", None) else None,
        status=EventStatus.PENDING,
    )
    pk = _insert_unless_known(record)
    if pk is None:
        return Accepted(event=LineageEvent.objects.get(digest=record.digest), created=False)
    record.pk = pk
    if settings.LINEAGE_INGEST_INLINE:
        # Tests and a single-process demo: fold it now, in this request, as a worker would.
        lineage_events_drain(only_ids=[pk])
        record.refresh_from_db(fields=["status", "error", "applied_at", "job", "run"])
    else:
        transaction.on_commit(lineage_drain_request)
    return Accepted(event=record, created=True)


def _insert_unless_known(record: LineageEvent) -> int | None:
    """``INSERT ... ON CONFLICT (digest) DO NOTHING RETURNING id``: the new id, or None for a resend."""
    meta = LineageEvent._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(record, add=True), connection) for f in fields]
    sql = (f"INSERT INTO {meta.db_table} ({', '.join(connection.ops.quote_name(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT (digest) DO NOTHING RETURNING id")
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    return row[0] if row else None


def lineage_drain_request() -> None:
    """Ask a worker to drain the queue, unless a drain is queued already (a Redis flag, cleared
    by the task as it starts: an event accepted while it runs asks again)."""
    from lineage.tasks import lineage_events_drain_task

    if cache.add(DRAIN_QUEUED_FLAG, "1", timeout=settings.LINEAGE_DRAIN_FLAG_SECONDS):
        try:
            lineage_events_drain_task.apply_async(countdown=settings.LINEAGE_DRAIN_COUNTDOWN)
        except Exception:  # the broker is down: the event is stored, the periodic drain will fold it
            cache.delete(DRAIN_QUEUED_FLAG)
            logger.exception("Could not queue the lineage drain; the periodic drain will apply the events.")


@dataclass
class DrainResult:
    applied: int = 0
    failed: int = 0
    deferred: int = 0  # left for the next batch: another worker holds an earlier event of their run
    batches: int = 0


def lineage_events_drain(*, batch_size: int | None = None, max_seconds: float | None = None,
                         namespaces=None, only_ids=None) -> DrainResult:
    """Fold pending events into the graph, batch after batch, until none is left (or
    ``max_seconds`` have passed; the caller asks again). ``namespaces`` limits the drain to the
    events of those namespaces (a partition of the queue); ``only_ids`` to those events."""
    batch_size = batch_size or settings.LINEAGE_DRAIN_BATCH
    deadline = time.monotonic() + max_seconds if max_seconds else None
    result = DrainResult()
    while deadline is None or time.monotonic() < deadline:
        outcome = _drain_batch(batch_size, namespaces=namespaces, only_ids=only_ids)
        if outcome is None:
            break
        result.batches += 1
        result.applied += outcome.applied
        result.failed += outcome.failed
        result.deferred += outcome.deferred
        if outcome.applied + outcome.failed == 0:
            break  # everything left is held by other workers
    return result


def _drain_batch(batch_size, *, namespaces, only_ids) -> DrainResult | None:
    for attempt in range(3):
        try:
            with transaction.atomic():
                records, deferred = _claim(batch_size, namespaces=namespaces, only_ids=only_ids)
                if not records and not deferred:
                    return None
                result = _fold(records)
                result.deferred = deferred
                return result
        except OperationalError:
            # A deadlock or serialization failure against another worker: nothing was written.
            if attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))
        except DatabaseError:
            # Something in the batch-wide writes failed: apply the events one by one, so the one
            # that cannot be applied is marked failed and the rest go on.
            if batch_size == 1:
                return _fail_one(namespaces=namespaces, only_ids=only_ids)
            return _drain_batch(1, namespaces=namespaces, only_ids=only_ids)
    return None


def _claim(batch_size, *, namespaces, only_ids) -> tuple[list[LineageEvent], int]:
    """Lock the next pending events, in event-time order, skipping those other workers hold, and
    leave out runs with an earlier pending event this batch does not hold (held elsewhere)."""
    pending = LineageEvent.objects.filter(status=EventStatus.PENDING)
    if namespaces:
        pending = pending.filter(namespace__in=namespaces)
    if only_ids is not None:
        pending = pending.filter(pk__in=only_ids)
    records = list(
        pending.select_for_update(skip_locked=True, of=("self",)).select_related("received_by")
        .order_by("event_time", "id")[:batch_size]
    )
    runs = {record.run_uuid for record in records if record.run_uuid is not None}
    if not runs:
        return records, 0
    held = {record.pk for record in records}
    earlier = (
        LineageEvent.objects.filter(status=EventStatus.PENDING, run_uuid__in=list(runs))
        .exclude(pk__in=held).values_list("run_uuid", "event_time")
    )
    latest = {}
    for record in records:
        if record.run_uuid is not None:
            latest[record.run_uuid] = max(latest.get(record.run_uuid, record.event_time), record.event_time)
    blocked = {run for run, event_time in earlier if event_time <= latest[run]}
    kept = [record for record in records if record.run_uuid not in blocked]
    return kept, len(records) - len(kept)


def _fold(records) -> DrainResult:
    fold = FoldState()
    timed_edges, touched, outcomes, runs = [], set(), [], []
    parsed = _batch_prepare(records, fold)
    # One sensitivity refresh for the batch: the registrations of its datasets only collect nodes.
    with sensitivity_refresh_deferred():
        for record in records:
            applied, error = _apply_one(record, fold, parsed.get(record.pk))
            if applied is None:
                fold.reset()
                outcomes.append((record.pk, EventStatus.FAILED, error, None, None))
                continue
            timed_edges.extend((spec, record.event_time) for spec in applied.edges)
            touched |= applied.touched
            if applied.run is not None:
                runs.append(applied.run)
            outcomes.append((record.pk, EventStatus.APPLIED, None, applied.job_id, applied.run_id))
        runs_adopt_children(runs)
        touched |= lineage_edges_fold(timed_edges)
        sensitivity_refresh(node_ids=touched)
    _outcomes_write(outcomes)
    failed = sum(1 for outcome in outcomes if outcome[1] == EventStatus.FAILED)
    return DrainResult(applied=len(outcomes) - failed, failed=failed)


def _batch_prepare(records, fold: FoldState) -> dict:
    """What the batch's events share, read once: each sender (one user object and one roles query
    per sender, not per event) and, through ``fold_prefetch``, the stores, datasets, nodes, jobs
    and runs the events name. Returns the events parsed, by record id (an event that does not
    parse is left out: ``_apply_one`` parses it again and records the error)."""
    senders = {}
    for record in records:
        if record.received_by is not None:
            record.received_by = senders.setdefault(record.received_by_id, record.received_by)
    policies.user_roles_prime(list(senders.values()))
    parsed = {}
    for record in records:
        try:
            parsed[record.pk] = openlineage_parse(record.payload)
        except ValidationError:
            pass
    fold_prefetch(list(parsed.values()), fold)
    return parsed


def _apply_one(record: LineageEvent, fold: FoldState, event=None):
    """Apply one event in a savepoint: ``(AppliedEvent, None)`` or ``(None, error)`` with nothing
    of it written. A conflict with a concurrent writer (the same store or dataset discovered at
    once) is tried again once (``event``: the event parsed already, for the first attempt)."""
    for attempt in range(2):
        try:
            with transaction.atomic():
                if record.received_by is None:
                    raise PermissionDenied("The account that sent this event no longer exists.")
                if event is None or attempt:
                    event = openlineage_parse(record.payload)
                return openlineage_apply(principal=record.received_by, event=event, fold=fold), None
        except ValidationError as exc:
            return None, getattr(exc, "message_dict", None) or {"non_field_errors": exc.messages}
        except PermissionDenied as exc:
            return None, {"non_field_errors": [str(exc) or "Not allowed."]}
        except IntegrityError:
            fold.reset()
            if attempt:
                logger.exception("Lineage event #%s conflicts with the catalog", record.pk)
                return None, {"non_field_errors": ["The event conflicts with what the catalog holds."]}
        except OperationalError:
            raise  # a deadlock: the whole batch is tried again
        except DatabaseError:
            raise
        except Exception:
            logger.exception("Lineage event #%s could not be applied", record.pk)
            return None, {"non_field_errors": ["The event could not be applied (an internal error, logged)."]}
    raise AssertionError("unreachable")


def _outcomes_write(outcomes) -> None:
    """Mark the batch's events applied or failed: one UPDATE per status (few distinct values)."""
    now = timezone.now()
    applied = [o for o in outcomes if o[1] == EventStatus.APPLIED]
    if applied:
        by_target = {}
        for pk, _, _, job_id, run_id in applied:
            by_target.setdefault((job_id, run_id), []).append(pk)
        if len(by_target) <= 8:
            for (job_id, run_id), pks in by_target.items():
                LineageEvent.objects.filter(pk__in=pks).update(
                    status=EventStatus.APPLIED, error=None, applied_at=now, job_id=job_id, run_id=run_id)
        elif connection.vendor == "postgresql":
            # One UPDATE ... FROM unnest(arrays): bulk_update's CASE per row cost more CPU than the fold.
            table = LineageEvent._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} AS e SET status = %s, error = NULL, applied_at = %s, job_id = v.job_id, "
                    "run_id = v.run_id FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(id, job_id, run_id) "
                    "WHERE e.id = v.id",
                    [EventStatus.APPLIED, now, [o[0] for o in applied], [o[3] for o in applied], [o[4] for o in applied]],
                )
        else:
            rows = [LineageEvent(pk=pk, status=EventStatus.APPLIED, error=None, applied_at=now, job_id=job_id,
                                 run_id=run_id) for pk, _, _, job_id, run_id in applied]
            LineageEvent.objects.bulk_update(rows, ["status", "error", "applied_at", "job", "run"], batch_size=1000)
    for pk, status, error, _, _ in outcomes:
        if status == EventStatus.FAILED:
            LineageEvent.objects.filter(pk=pk).update(status=EventStatus.FAILED, error=error, applied_at=now)


def _fail_one(*, namespaces, only_ids) -> DrainResult | None:
    """The next event failed even alone in its batch, in the batch-wide writes: mark it failed."""
    with transaction.atomic():
        records, _ = _claim(1, namespaces=namespaces, only_ids=only_ids)
        if not records:
            return None
        logger.error("Lineage event #%s failed in the batch writes; marked failed", records[0].pk)
        LineageEvent.objects.filter(pk=records[0].pk).update(
            status=EventStatus.FAILED, applied_at=timezone.now(),
            error={"non_field_errors": ["The event could not be applied (an internal error, logged)."]},
        )
    return DrainResult(failed=1)


def lineage_event_status_url(run_uuid: uuid.UUID | None) -> str | None:
    from django.urls import reverse

    return reverse("api:lineage-run-events", args=[run_uuid]) if run_uuid else None
