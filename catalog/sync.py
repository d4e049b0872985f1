"""Warehouse sync: harvest a store's schemas and keep the catalog true.

A run goes through four phases:

1. connect, and fail the run with a clear message (writing nothing) if the warehouse is
   down or refuses the credentials;
2. extract every table and view of the chosen schemas through the connector;
3. write, in batches sorted by qualified name, each batch one transaction with the run's
   counters and cursor, so a worker killed mid-run leaves whole batches only and the run,
   taken over again, skips what was already written;
4. lineage from view definitions, then deprecate what a sync saw before and no longer does.

A new version is made only where a table's columns really changed; the catalog's own
metadata (sensitivity, protection, originating source, descriptions nobody commented in the
warehouse) is kept. New and changed columns get classification suggestions.
"""

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from access import policies
from catalog import classification
from catalog.connectors import HarvestedTable, WarehouseError, connector_for, safe_message
from catalog.diffs import schema_diff
from catalog.models import (
    Column,
    ColumnSuggestion,
    Dataset,
    DatasetStatus,
    DatasetVersion,
    DataStore,
    SyncOutcome,
    SyncRun,
    SyncRunEvent,
    SyncStatus,
    SyncTrigger,
)
from catalog.registration import ColumnSpec, schema_fingerprint
from catalog.secrets import SecretUnavailable, secret_open
from catalog.services import COLUMN_FIELDS, columns_delete
from catalog.vocabulary import ColumnMode, Protection, Sensitivity

logger = logging.getLogger(__name__)

SYNC_PRINCIPAL = "warehouse sync"
# Types whose values are worth sampling for personal data (numbers hold card numbers too).
SAMPLED_TYPE_HINTS = ("CHAR", "TEXT", "STRING", "CLOB", "INT", "NUMERIC", "DECIMAL", "INET", "CIDR", "DATE")
MAX_SAMPLED_COLUMNS = 40


class SyncCancelled(Exception):
    """The run was taken over by another worker (its heartbeat went stale); stop quietly."""


# Requesting a run -------------------------------------------------------------------------


def sync_run_request(
    *, principal, store: DataStore, trigger: str = SyncTrigger.MANUAL, enqueue: bool = True
) -> tuple[SyncRun, bool]:
    """Queue a sync of ``store``; returns ``(run, created)``.

    At most one run per store is queued or running (a partial unique constraint): asking
    while one is, returns that run with ``created=False``. ``principal`` is None for
    scheduled runs. The task is sent after commit (``enqueue=False``: the caller runs it itself).
    """
    if principal is not None and not policies.can_manage_stores(principal):
        raise PermissionDenied("Starting a sync needs the platform engineer role or an admin.")
    if not hasattr(store, "connection"):
        raise ValidationError({"connection": ["This store has no connection: add one before syncing."]})
    active = SyncRun.objects.filter(store=store, status__in=[SyncStatus.QUEUED, SyncStatus.RUNNING]).first()
    if active is not None:
        return active, False
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(
                store=store, trigger=trigger, requested_by=principal if getattr(principal, "pk", None) else None
            )
            if enqueue:
                transaction.on_commit(lambda: _enqueue(run.pk))
    except IntegrityError:  # another request queued one between our check and insert
        return SyncRun.objects.get(store=store, status__in=[SyncStatus.QUEUED, SyncStatus.RUNNING]), False
    return run, True


def _enqueue(run_id: int) -> None:
    from catalog.tasks import store_sync

    store_sync.delay(run_id)


# Running -------------------------------------------------------------------------------


def _stale_before():
    return timezone.now() - timedelta(seconds=settings.SYNC_STALE_SECONDS)


def sync_run_claim(run_id: int) -> SyncRun | None:
    """Take the run if it is queued, or running with a stale heartbeat (its worker died).

    A conditional UPDATE, so of two workers handed the same run only one gets it.
    """
    now = timezone.now()
    claimed = SyncRun.objects.filter(
        Q(status=SyncStatus.QUEUED) | Q(status=SyncStatus.RUNNING, heartbeat_at__lt=_stale_before()), pk=run_id
    ).update(
        status=SyncStatus.RUNNING, attempts=F("attempts") + 1, heartbeat_at=now,
        started_at=Coalesce("started_at", now), phase="connecting",
    )
    if claimed != 1:
        return None
    return SyncRun.objects.select_related("store__connection__secret", "store__connection").get(pk=run_id)


def _heartbeat(run: SyncRun, **fields) -> None:
    """Record progress; stop if another worker has taken the run over meanwhile."""
    now = timezone.now()
    updated = SyncRun.objects.filter(pk=run.pk, status=SyncStatus.RUNNING, attempts=run.attempts).update(
        heartbeat_at=now, **fields
    )
    if updated != 1:
        raise SyncCancelled()
    run.heartbeat_at = now


class _Pulse:
    """Heartbeats at most every few seconds from inside long loops (one table, one sample, one view),
    so a run busy on a huge schema is never taken for dead."""

    def __init__(self, run: SyncRun, every: float = 5.0):
        self.run, self.every, self.last = run, every, time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last >= self.every:
            _heartbeat(self.run)
            self.last = time.monotonic()


def _finish(run: SyncRun, status: str, message: str = "", timings: dict | None = None) -> None:
    fields = {"status": status, "message": message, "finished_at": timezone.now(), "phase": ""}
    if timings is not None:
        fields["timings"] = timings
    SyncRun.objects.filter(pk=run.pk, attempts=run.attempts).update(**fields)


def sync_run_execute(run_id: int) -> SyncRun | None:
    """Run (or take over and finish) one sync. Safe to call twice: the second call finds the
    run claimed and returns None."""
    run = sync_run_claim(run_id)
    if run is None:
        return None
    if run.attempts > settings.SYNC_MAX_ATTEMPTS:
        _finish(run, SyncStatus.FAILED, f"Gave up after {settings.SYNC_MAX_ATTEMPTS} attempts (the worker kept dying).")
        return SyncRun.objects.get(pk=run_id)
    try:
        _execute(run)
    except SyncCancelled:
        logger.info("Sync run %s was taken over by another worker", run.pk)
    except WarehouseError as exc:
        _finish(run, SyncStatus.FAILED, str(exc))
    except SecretUnavailable as exc:
        _finish(run, SyncStatus.FAILED, str(exc))
    except Exception as exc:
        logger.exception("Sync run %s failed", run.pk)
        _finish(run, SyncStatus.FAILED, f"Internal error ({type(exc).__name__}); the worker log has the details.")
    return SyncRun.objects.get(pk=run_id)


@dataclass
class _Timer:
    timings: dict = field(default_factory=dict)

    def add(self, phase: str, started: float) -> None:
        self.timings[phase] = round(self.timings.get(phase, 0) + time.monotonic() - started, 3)


@sensitive_variables("password")
def _execute(run: SyncRun) -> None:
    store = run.store
    connection = getattr(store, "connection", None)
    if connection is None:
        raise WarehouseError("The store has no connection any more.")
    password = secret_open(connection.secret) if connection.secret_id else ""
    connector = connector_for(connection, password)
    timer = _Timer(dict(run.timings or {}))
    engine = connector.engine()
    try:
        started = time.monotonic()
        try:
            conn = engine.connect()
        except Exception as exc:
            raise connector.fail(f"connect to the warehouse of {store.name}", exc) from exc
        with conn:
            try:
                inspector = sa.inspect(conn)
                present = {connector.catalog_schema(schema) for schema in connector.all_schema_names(inspector)}
                schemas = connector.schemas(inspector)
            except Exception as exc:
                raise connector.fail("list the warehouse's schemas", exc) from exc
            timer.add("connect", started)

            started = time.monotonic()
            _heartbeat(run, phase="extracting")
            pulse = _Pulse(run)
            harvested: list[HarvestedTable] = []
            for schema in schemas:
                try:
                    harvested.extend(connector.harvest_schema(conn, schema, progress=pulse))
                except Exception as exc:
                    raise connector.fail(f"read schema {schema}", exc) from exc
                _heartbeat(run)
            timer.add("extract", started)

            harvested.sort(key=lambda table: _qualified_name(store, table))
            _heartbeat(run, phase="writing", objects_total=len(harvested))
            started = time.monotonic()
            pending = [table for table in harvested if not run.cursor or _qualified_name(store, table) > run.cursor]
            writer = _Writer(run, store, connector, conn if connection.sampling_enabled else None, pulse)
            for offset in range(0, len(pending), settings.SYNC_BATCH_SIZE):
                writer.write(pending[offset:offset + settings.SYNC_BATCH_SIZE])
            timer.add("write", started)
            # The datasets this run changed, including batches of an earlier attempt of the same run
            # (a worker killed after writing them: their events committed with them).
            changed_ids = writer.changed_ids | set(
                run.events.filter(outcome__in=(SyncOutcome.CHANGED, SyncOutcome.BREAKING), dataset__isnull=False)
                .values_list("dataset_id", flat=True))
            if changed_ids:
                from access.warehouses import views_regenerate  # access builds on the catalog

                views_regenerate(store, changed_ids)  # same run; a failure is left to the reconciler

        started = time.monotonic()
        _heartbeat(run, phase="lineage")
        views = [table for table in harvested if table.kind == "view" and table.view_definition and not table.error]
        run.refresh_from_db(fields=["new_count"])
        # A new table may be what an unchanged view reads: parse every view again then.
        view_errors = _views_lineage(run, store, connector, views, force=run.new_count > 0, pulse=pulse)
        timer.add("lineage", started)

        started = time.monotonic()
        _heartbeat(run, phase="deprecating")
        # Schemas synced now, and schemas synced before that the warehouse no longer has at all.
        synced = {connector.catalog_schema(schema) for schema in schemas}
        vanished = {
            schema for schema in Dataset.objects.filter(store=store, last_synced_at__isnull=False)
            .order_by().values_list("schema", flat=True).distinct()
            if schema and schema not in present and connector.chooses(schema)
        }
        _deprecate_missing(run, store, synced | vanished)
        timer.add("deprecate", started)
    finally:
        engine.dispose()
    run.refresh_from_db()
    errors = run.failed_count + view_errors
    status = SyncStatus.PARTIAL if errors else SyncStatus.SUCCEEDED
    message = (f"{errors} object{'' if errors == 1 else 's'} could not be synced; see the errors below." if errors else "")
    _finish(run, status, message, timer.timings)


def _qualified_name(store: DataStore, table: HarvestedTable) -> str:
    return Dataset.build_qualified_name(store.name, table.catalog_schema, table.name)


# Writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Known:
    """What the catalog already says about a column, read from the current version's snapshot
    (which the Column rows always match), so an unchanged table costs no Column rows."""

    type: str
    description: str
    sensitivity: Sensitivity
    protection: Protection
    originating_source_kind: str
    originating_source_name: str


# Snapshots hold canonical labels; reading them back needs no synonym parsing.
SENSITIVITY_BY_LABEL = {label: Sensitivity(value) for value, label in Sensitivity.choices}
PROTECTION_BY_LABEL = {label: Protection(value) for value, label in Protection.choices}


def _known_columns(version) -> dict[str, _Known]:
    if version is None:
        return {}
    known = {}
    for snapshot in version.columns:
        known[snapshot["name"].lower()] = _known_of(snapshot)
    return known


def _known_of(snapshot: dict) -> _Known:
    kind, _, name = (snapshot.get("originatingSource") or "").partition(":")
    return _Known(
        type=snapshot["type"], description=snapshot.get("description") or "",
        sensitivity=SENSITIVITY_BY_LABEL[snapshot["sensitivity"]],
        protection=PROTECTION_BY_LABEL[snapshot["protection"]],
        originating_source_kind=kind, originating_source_name=name,
    )


def _known_columns_with_history(dataset, table: HarvestedTable) -> dict[str, _Known]:
    """The dataset's current columns, and for a column the warehouse has again after a version
    dropped it, its last recorded metadata: a dropped column comes back as it was classified,
    never as a new Regular one (one query, only when such a column appears)."""
    known = _known_columns(dataset.current_version)
    missing = {column.name.lower() for column in table.columns} - set(known)
    if not missing or dataset.current_version is None or dataset.current_version.number == 1:
        return known
    for columns in dataset.versions.filter(number__lt=dataset.current_version.number).order_by("-number").values_list(
            "columns", flat=True).iterator(chunk_size=20):
        for snapshot in columns:
            key = snapshot["name"].lower()
            if key in missing and key not in known:
                known[key] = _known_of(snapshot)
        if missing <= set(known):
            break
    return known


def _column_specs(table: HarvestedTable, existing: dict[str, _Known]) -> list[ColumnSpec]:
    """The harvested columns with the catalog's own metadata kept where the column is known."""
    specs = []
    for harvested in table.columns:
        known = existing.get(harvested.name.lower())
        mode = ColumnMode.REPEATED if harvested.repeated else (
            ColumnMode.NULLABLE if harvested.nullable else ColumnMode.REQUIRED
        )
        specs.append(ColumnSpec(
            name=harvested.name,
            type=harvested.type,
            mode=mode,
            # A warehouse comment wins; without one, the catalog's description stays.
            description=harvested.comment or (known.description if known else ""),
            sensitivity=known.sensitivity if known else Sensitivity.REGULAR,
            protection=known.protection if known else Protection.NONE,
            originating_source_kind=known.originating_source_kind if known else "",
            originating_source_name=known.originating_source_name if known else "",
        ))
    return specs


def _validate(table: HarvestedTable) -> str:
    if table.error:
        return table.error
    if not table.columns:
        return "No columns could be read (no privilege on the table?)."
    seen = set()
    for column in table.columns:
        if column.name.lower() in seen:
            return f"Columns whose names differ only in case ('{column.name}') cannot be catalogued."
        seen.add(column.name.lower())
        if len(column.name) > 255 or len(column.type) > 128:
            return f"Column '{column.name[:60]}' has a name or type too long for the catalog."
    if len(table.name) > 255 or len(table.catalog_schema) > 255:
        return "The table's name is too long for the catalog."
    return ""


class _Writer:
    """Writes batches of harvested tables: one transaction per batch, with the run's counters."""

    def __init__(self, run: SyncRun, store: DataStore, connector, sampling_conn, pulse):
        self.run, self.store, self.connector, self.sampling_conn = run, store, connector, sampling_conn
        self.pulse = pulse
        self.connection = store.connection
        self.changed_ids: set[int] = set()  # datasets whose schema changed: their protected views follow

    def write(self, batch: list[HarvestedTable]) -> None:
        samples = self._samples(batch)
        try:
            with transaction.atomic():
                self._write(batch, samples)
        except (DatabaseError, ValidationError):
            if len(batch) == 1:
                self._record_failure(batch[0], "The catalog could not store this object; the worker log has details.")
                logger.exception("Sync run %s could not write %s", self.run.pk, batch[0].name)
                return
            for table in batch:  # find the one that fails; the others still land
                self.write([table])

    def _record_failure(self, table: HarvestedTable, message: str) -> None:
        with transaction.atomic():
            qualified_name = _qualified_name(self.store, table)
            SyncRunEvent.objects.create(run=self.run, object_name=qualified_name, outcome=SyncOutcome.ERROR, message=message)
            Dataset.objects.filter(qualified_name=qualified_name).update(last_synced_at=timezone.now())
            self._advance(qualified_name, 1, {"failed_count": 1})

    def _advance(self, cursor: str, done: int, counts: dict) -> None:
        fields = {name: F(name) + value for name, value in counts.items() if value}
        _heartbeat(self.run, cursor=cursor, objects_done=F("objects_done") + done, **fields)

    def _samples(self, batch) -> dict[str, dict[str, list]]:
        """Values of the columns worth classifying, read before the write transaction opens.
        Held in memory for classification only, never stored."""
        if self.sampling_conn is None:
            return {}
        existing = {
            name: _known_columns(version)
            for name, version in self._current_versions([_qualified_name(self.store, t) for t in batch]).items()
        }
        samples = {}
        for table in batch:
            if table.error or table.kind != "table":
                continue
            known = existing.get(_qualified_name(self.store, table), {})
            names = [
                c.name for c in table.columns
                if (c.name.lower() not in known or known[c.name.lower()].type != c.type)
                and any(hint in c.type.upper() for hint in SAMPLED_TYPE_HINTS)
            ][:MAX_SAMPLED_COLUMNS]
            if not names:
                continue
            try:
                samples[_qualified_name(self.store, table)] = self.connector.sample(
                    self.sampling_conn, table, names, self.connection.sample_size
                )
            except Exception as exc:  # sampling is a bonus: a table we may not read is still catalogued
                logger.info("Sampling %s failed: %s", table.name, safe_message(exc, [self.connector.password]))
                self.sampling_conn.rollback()
            self.pulse()
        return samples

    @staticmethod
    def _current_versions(qualified_names) -> dict:
        return {
            dataset.qualified_name: dataset.current_version
            for dataset in Dataset.objects.filter(qualified_name__in=qualified_names).select_related("current_version")
        }

    def _write(self, batch: list[HarvestedTable], samples) -> None:
        run, store, now = self.run, self.store, timezone.now()
        names = [_qualified_name(store, table) for table in batch]
        datasets = {
            dataset.qualified_name: dataset
            for dataset in Dataset.objects.select_for_update(of=("self",))
            .select_related("current_version").filter(qualified_name__in=names)
        }
        for dataset in datasets.values():
            dataset.store = store  # names carry the store's, so it is this one: no query per dataset for it

        counts = defaultdict(int)
        events, new_datasets, changed, unchanged_ids, reactivated_ids, failed_names = [], [], [], [], [], []
        for table, qualified_name in zip(batch, names):
            problem = _validate(table)
            dataset = datasets.get(qualified_name)
            if problem:
                events.append(SyncRunEvent(run=run, object_name=qualified_name, outcome=SyncOutcome.ERROR,
                                           message=problem, dataset=dataset))
                failed_names.append(qualified_name)
                counts["failed_count"] += 1
                continue
            specs = _column_specs(table, _known_columns_with_history(dataset, table) if dataset else {})
            snapshots = [spec.snapshot() for spec in specs]
            fingerprint = schema_fingerprint(snapshots)
            if dataset is None:
                dataset = Dataset(
                    store=store, schema=table.catalog_schema, name=table.name, qualified_name=qualified_name,
                    description=table.comment, last_synced_at=now,
                    sensitivity=max((s.sensitivity for s in specs), default=Sensitivity.PUBLIC),
                )
                new_datasets.append((dataset, table, specs, snapshots, fingerprint))
                continue
            reactivated = dataset.status == DatasetStatus.DEPRECATED and dataset.deprecated_by_sync
            previous = dataset.current_version
            if previous is not None and previous.fingerprint == fingerprint:
                (reactivated_ids if reactivated else unchanged_ids).append(dataset.pk)
                if reactivated:
                    events.append(SyncRunEvent(run=run, object_name=qualified_name, dataset=dataset,
                                               outcome=SyncOutcome.REACTIVATED, message="Seen again in the warehouse."))
                    counts["reactivated_count"] += 1
                else:
                    counts["unchanged_count"] += 1
                continue
            changed.append([dataset, table, specs, snapshots, fingerprint, {}, reactivated])

        if changed:  # only changed tables need their Column rows
            rows = defaultdict(dict)
            for column in Column.objects.filter(dataset__in=[entry[0] for entry in changed]):
                rows[column.dataset_id][column.name.lower()] = column
            for entry in changed:
                entry[5] = rows[entry[0].pk]

        # New datasets: rows, versions, columns, in a handful of bulk statements.
        Dataset.objects.bulk_create([entry[0] for entry in new_datasets])
        versions = []
        for dataset, table, specs, snapshots, fingerprint in new_datasets:
            versions.append(self._version(dataset, 1, snapshots, fingerprint, schema_diff([], snapshots), now))
        for dataset, table, specs, snapshots, fingerprint, existing, reactivated in changed:
            previous = dataset.current_version
            diff = schema_diff(previous.columns if previous else [], snapshots)
            version = self._version(dataset, previous.number + 1 if previous else 1, snapshots, fingerprint, diff, now)
            version.is_breaking = bool(previous) and diff["breaking"]
            versions.append(version)
        DatasetVersion.objects.bulk_create(versions)
        version_of = {version.dataset_id: version for version in versions}

        to_create, to_update, removed_ids, suggestion_targets = [], [], [], []
        for dataset, table, specs, snapshots, fingerprint in new_datasets:
            for position, spec in enumerate(specs, start=1):
                column = self._column(Column(dataset=dataset, name=spec.name), spec, position)
                to_create.append(column)
                suggestion_targets.append((dataset, column, table))
        for dataset, table, specs, snapshots, fingerprint, existing, reactivated in changed:
            wanted = {spec.name.lower() for spec in specs}
            removed_ids += [c.pk for key, c in existing.items() if key not in wanted]
            for position, spec in enumerate(specs, start=1):
                column = existing.get(spec.name.lower())
                if column is not None and column.name != spec.name:  # renamed only in case: a new column
                    removed_ids.append(column.pk)
                    column = None
                is_new = column is None
                before = (column.type, column.mode) if column else None
                column = self._column(column or Column(dataset=dataset, name=spec.name), spec, position)
                (to_create if is_new else to_update).append(column)
                if is_new or before != (column.type, column.mode):
                    suggestion_targets.append((dataset, column, table))
        if removed_ids:
            columns_delete(removed_ids)
        if to_update:
            Column.objects.bulk_update(to_update, COLUMN_FIELDS)
        if to_create:
            Column.objects.bulk_create(to_create)

        touched = [entry[0] for entry in new_datasets]
        for dataset, table, specs, snapshots, fingerprint, existing, reactivated in changed:
            if reactivated:
                dataset.status, dataset.deprecated_by_sync = DatasetStatus.ACTIVE, False
            # A sync never lowers what the decision reads: a column gone from the warehouse leaves the
            # dataset's tier where it was (lowering it is a proposal someone reviews), and a dataset
            # nobody classified stays unclassified (the sync's Regular for new columns is a placeholder).
            dataset.sensitivity = max(max((s.sensitivity for s in specs), default=Sensitivity.PUBLIC),
                                      dataset.sensitivity)
            if table.comment and not dataset.description:
                dataset.description = table.comment
            touched.append(dataset)
        for dataset in touched:
            dataset.current_version = version_of[dataset.pk]
            dataset.last_synced_at = dataset.updated_at = now
        if new_datasets:  # one UPDATE: a CASE-based bulk update costs far more per row
            Dataset.objects.filter(pk__in=[entry[0].pk for entry in new_datasets]).update(
                current_version=Subquery(
                    DatasetVersion.objects.filter(dataset=OuterRef("pk"), number=1).values("pk")[:1]
                )
            )
        if changed:
            Dataset.objects.bulk_update(
                [entry[0] for entry in changed],
                ["current_version", "status", "deprecated_by_sync", "sensitivity", "classified", "description",
                 "last_synced_at", "updated_at"],
            )
        if unchanged_ids:
            Dataset.objects.filter(pk__in=unchanged_ids).update(last_synced_at=now)
        if reactivated_ids:
            Dataset.objects.filter(pk__in=reactivated_ids).update(
                last_synced_at=now, status=DatasetStatus.ACTIVE, deprecated_by_sync=False
            )
        if failed_names:  # it exists, even if we could not read it: not a candidate for deprecation
            Dataset.objects.filter(qualified_name__in=failed_names).update(last_synced_at=now)

        for dataset, *_ in new_datasets:
            events.append(SyncRunEvent(run=run, object_name=dataset.qualified_name, dataset=dataset,
                                       outcome=SyncOutcome.NEW, message=f"{len(version_of[dataset.pk].columns)} columns"))
        breaking = []
        self.changed_ids.update(entry[0].pk for entry in changed)
        for dataset, table, specs, snapshots, fingerprint, existing, reactivated in changed:
            version = version_of[dataset.pk]
            outcome = SyncOutcome.BREAKING if version.is_breaking else SyncOutcome.CHANGED
            events.append(SyncRunEvent(run=run, object_name=dataset.qualified_name, dataset=dataset, outcome=outcome,
                                       message=_describe_diff(version.diff, reactivated)))
            if version.is_breaking:
                breaking.append(dataset)
            if reactivated:
                counts["reactivated_count"] += 1
        counts["new_count"] += len(new_datasets)
        counts["changed_count"] += len(changed)
        SyncRunEvent.objects.bulk_create(events)

        from lineage.services import lineage_datasets_synced  # lineage builds on the catalog

        lineage_datasets_synced(datasets=touched, new_ids={entry[0].pk for entry in new_datasets})
        if changed:
            from access.grants import grants_end_outgrown_after_commit  # access builds on the catalog

            grants_end_outgrown_after_commit(entry[0].pk for entry in changed)
        counts["suggestion_count"] += _suggest(run, suggestion_targets, samples)
        if breaking:
            from catalog.notifications import breaking_changes_notify

            dataset_ids = [dataset.pk for dataset in breaking]
            # robust: a mail server that is down costs the mail (logged), never the sync.
            transaction.on_commit(lambda: breaking_changes_notify(run_id=run.pk, dataset_ids=dataset_ids), robust=True)
        self._advance(names[-1], len(batch), counts)

    def _version(self, dataset, number, snapshots, fingerprint, diff, now) -> DatasetVersion:
        return DatasetVersion(
            dataset=dataset, number=number, columns=snapshots, fingerprint=fingerprint, diff=diff,
            registered_by=f"{SYNC_PRINCIPAL} #{self.run.pk}", registration_time=now,
        )

    @staticmethod
    def _column(column: Column, spec: ColumnSpec, position: int) -> Column:
        column.position = position
        column.name = spec.name
        column.description = spec.description
        column.mode = spec.mode
        column.type = spec.type
        column.originating_source_kind = spec.originating_source_kind
        column.originating_source_name = spec.originating_source_name
        column.sensitivity = spec.sensitivity
        column.protection = spec.protection
        return column


def _describe_diff(diff: dict, reactivated: bool) -> str:
    parts = []
    if reactivated:
        parts.append("seen again")
    if diff.get("added"):
        parts.append("added " + ", ".join(diff["added"][:10]))
    if diff.get("removed"):
        parts.append("removed " + ", ".join(diff["removed"][:10]))
    for change in diff.get("changed", [])[:10]:
        fields = ", ".join(
            f"{name} {values['from']} → {values['to']}" for name, values in change["fields"].items() if name != "position"
        ) or "moved"
        parts.append(f"{change['name']}: {fields}")
    return "; ".join(parts)[:2000]


def _suggest(run: SyncRun, targets, samples) -> int:
    """Suggestions for new and changed columns, from names and (when sampled) values.

    A suggestion is made only when it would raise the column's sensitivity; a label
    once rejected for a column is never suggested again (unique constraint).
    """
    suggestions = []
    known = set(
        ColumnSuggestion.objects.filter(column__in=[column for _, column, _ in targets]).values_list("column_id", "label")
    ) if targets else set()
    for dataset, column, table in targets:
        values = samples.get(dataset.qualified_name, {}).get(column.name)
        for found in classification.classify_column(name=column.name, type=column.type, values=values):
            if found.sensitivity <= column.sensitivity or (column.pk, found.label) in known:
                continue
            suggestions.append(ColumnSuggestion(
                dataset=dataset, column=column, label=found.label, sensitivity=found.sensitivity,
                confidence=found.confidence, evidence=found.evidence, run=run,
            ))
    if not suggestions:
        return 0
    created = ColumnSuggestion.objects.bulk_create(suggestions, ignore_conflicts=True)
    return len(created)


def _views_lineage(run: SyncRun, store: DataStore, connector, views: list[HarvestedTable], force=False, pulse=None) -> int:
    """Dataset and column edges from each view's definition. Returns how many views failed to parse."""
    if not views:
        return 0
    datasets = {d.qualified_name: d for d in Dataset.objects.filter(qualified_name__in=[_qualified_name(store, v) for v in views])}
    pending = []
    for view in views:
        dataset = datasets.get(_qualified_name(store, view))
        fingerprint = hashlib.sha256(view.view_definition.encode()).hexdigest()
        if dataset is not None and (force or dataset.definition_fingerprint != fingerprint):
            pending.append((view, dataset, fingerprint))
    if not pending:
        return 0
    from lineage.services import lineage_view_edges_sync
    from lineage.sql import SQLLineageError, view_lineage

    failures = 0
    for view, dataset, fingerprint in pending:
        qualified_name = dataset.qualified_name
        try:
            parsed = view_lineage(
                view.view_definition, dialect=connector.sqlglot_dialect, default_schema=view.schema,
                columns=[column.name for column in view.columns],
            )
            with transaction.atomic():
                lineage_view_edges_sync(
                    view=dataset, lineage=parsed, resolve_schema=connector.catalog_schema,
                )
                Dataset.objects.filter(pk=dataset.pk).update(definition_fingerprint=fingerprint)
        except SQLLineageError as exc:
            failures += 1
            SyncRunEvent.objects.create(run=run, object_name=qualified_name, outcome=SyncOutcome.ERROR, dataset=dataset,
                                        message=f"View definition not understood, no lineage from it: {exc}")
        if pulse is not None:
            pulse()
    return failures


def _deprecate_missing(run: SyncRun, store: DataStore, catalog_schemas: set[str]) -> None:
    """Deprecate datasets a sync saw before in these schemas and that this run did not see."""
    with transaction.atomic():
        gone = list(
            Dataset.objects.select_for_update().filter(
                store=store, status=DatasetStatus.ACTIVE, last_synced_at__isnull=False,
                last_synced_at__lt=run.started_at, schema__in=catalog_schemas,
            )
        )
        if not gone:
            return
        Dataset.objects.filter(pk__in=[d.pk for d in gone]).update(
            status=DatasetStatus.DEPRECATED, deprecated_by_sync=True
        )
        SyncRunEvent.objects.bulk_create([
            SyncRunEvent(run=run, object_name=d.qualified_name, dataset=d, outcome=SyncOutcome.DEPRECATED,
                         message="No longer in the warehouse; kept, marked deprecated.")
            for d in gone
        ])
        SyncRun.objects.filter(pk=run.pk).update(deprecated_count=F("deprecated_count") + len(gone))


# Resuming --------------------------------------------------------------------------------


def sync_runs_resume() -> list[int]:
    """Send again the runs whose worker died (queued or running with a stale heartbeat).

    Runs queued but never picked up (a broker restart lost the message) count as well
    once they are older than the stale limit.
    """
    stale = _stale_before()
    run_ids = list(
        SyncRun.objects.filter(
            Q(status=SyncStatus.RUNNING, heartbeat_at__lt=stale) | Q(status=SyncStatus.QUEUED, created_at__lt=stale),
            Q(resent_at__isnull=True) | Q(resent_at__lt=stale),  # a message sent once gets a stale period to land
        ).values_list("pk", flat=True)
    )
    SyncRun.objects.filter(pk__in=run_ids).update(resent_at=timezone.now())
    for run_id in run_ids:
        _enqueue(run_id)
    return run_ids
