"""Taking audit log records in: attribute each to a catalog dataset, its columns and a catalog user,
ask the one decision (access/decisions.py) what allowed it, and record it once.

Used by the pull task and the push endpoint alike. A batch is written in one transaction; records
whose key the store already has are left out, so a batch read twice (a retried pull, the same lines
pushed again, a worker killed before it moved the position) records nothing new. A batch that
records events asks for a detectors' run when it commits (``detect_request``).
"""

import json
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import F, Prefetch, Q
from django.utils import timezone

from access.decisions import access_decide, scope_sensitivity
from access.models import Grant, User
from access.policies import user_roles_prime
from catalog.models import Column, Dataset, DataStore
from lineage.models import Edge, EdgeKind, EdgeLevel
from monitoring.detectors import detect_request
from monitoring.models import AccessAction, AccessEvent, UnparsedRecord, UnparsedStatement
from monitoring.parsing import STAR, LogRecord, StatementAccess, scrub, statement_access

# Reads of the enforcement issue's protected views (schema ``governed``, same table name) count
# as reads of the base dataset.
GOVERNED_SCHEMA = "governed"


@dataclass
class IngestResult:
    records: int = 0
    recorded: int = 0
    duplicates: int = 0
    unparsed: int = 0
    findings: int = 0
    errors: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"records": self.records, "recorded": self.recorded, "duplicates": self.duplicates,
                "unparsed": self.unparsed, "findings": self.findings, "errors": self.errors[:20]}


@dataclass
class _Access:
    record: LogRecord
    parsed: StatementAccess
    schema: str
    table: str
    action: str
    columns: set
    row_refs: set = field(default_factory=set)  # whole-row references (parsing.RelationAccess.row_refs)


class _Catalog:
    """The store's datasets, columns and warehouse roles a batch needs, read once per batch."""

    def __init__(self, store: DataStore, relations: set, roles: set):
        names = {table.lower() for _, table in relations}
        self.by_relation: dict[tuple[str, str], Dataset] = {}
        self.by_name: dict[str, list[Dataset]] = {}
        if names:
            name_filter = Q()
            for name in names:
                name_filter |= Q(name__iexact=name)
            datasets = (
                Dataset.objects.filter(name_filter, store=store)
                .select_related("store")
                .prefetch_related(Prefetch("columns", queryset=Column.objects.order_by("position").only(
                    "id", "dataset_id", "name", "position", "sensitivity")))  # what attribution reads
            )
            for dataset in datasets:
                self.by_relation[(dataset.schema.lower(), dataset.name.lower())] = dataset
                self.by_name.setdefault(dataset.name.lower(), []).append(dataset)
        self.users: dict[str, User] = {}
        if roles:
            for user in User.objects.filter(warehouse_role__in=sorted(roles)):
                self.users[user.warehouse_role] = user
            user_roles_prime(self.users.values())  # one query for every reader's roles, not one each

    def dataset(self, schema: str, table: str, default_schema: str) -> tuple[Dataset | None, str]:
        """The catalog dataset of a relation, and the view it was read through (or "")."""
        schema = (schema or default_schema or "").lower()
        table = table.lower()
        if schema == GOVERNED_SCHEMA:
            bases = [d for d in self.by_name.get(table, []) if d.schema.lower() != GOVERNED_SCHEMA]
            if len(bases) == 1:
                return bases[0], f"{GOVERNED_SCHEMA}.{table}"
        found = self.by_relation.get((schema, table))
        if found is None and not schema:
            candidates = self.by_name.get(table, [])
            found = candidates[0] if len(candidates) == 1 else None
        return found, ""


class _ViewBases:
    """What reading a view reads underneath, from the lineage the catalog has of it (the column
    edges of kind ``view`` a sync draws from each view's definition, followed through views of
    views): for each view dataset read in a batch, its base datasets and which of their columns
    feed each view column. One query per level of views (at most ``MAX_DEPTH``) and one for the
    base datasets, whatever the batch's size."""

    MAX_DEPTH = 5

    def __init__(self, dataset_ids: set):
        self.feeds: dict[tuple[int, str], set[tuple[int, str]]] = {}  # (view, column) -> {(base, column)}
        self.tables: dict[int, set[int]] = {}  # view -> base datasets (dataset-level edges)
        self.datasets: dict[int, Dataset] = {}
        frontier, seen = set(dataset_ids), set()
        for _ in range(self.MAX_DEPTH):
            frontier -= seen
            if not frontier:
                break
            seen |= frontier
            found = set()
            for level, target, column, source, source_column in Edge.objects.filter(
                kind=EdgeKind.VIEW, target__dataset_id__in=sorted(frontier), source__dataset_id__isnull=False,
            ).values_list("level", "target__dataset_id", "target__name", "source__dataset_id", "source__name"):
                if level == EdgeLevel.COLUMN:
                    self.feeds.setdefault((target, column.lower()), set()).add((source, source_column))
                self.tables.setdefault(target, set()).add(source)
                found.add(source)
            frontier = found
        bases = {base for sources in self.tables.values() for base in sources}
        if bases:
            self.datasets = {d.pk: d for d in Dataset.objects.filter(pk__in=bases).select_related("store")}

    def reads(self, view_id: int, columns: list[str]) -> list[tuple[Dataset, list[str]]]:
        """The base datasets (not views themselves) a read of ``columns`` of ``view_id`` reads, each
        with its columns."""
        out: dict[int, set[str]] = {}
        pending, seen = [(view_id, name.lower()) for name in columns], set()
        while pending:
            node = pending.pop()
            if node in seen:
                continue
            seen.add(node)
            for base, name in self.feeds.get(node, ()):
                if base in self.tables:  # a view of a view: follow it down
                    pending.append((base, name.lower()))
                out.setdefault(base, set()).add(name)
        if not columns:  # count(*) and the like: the tables, no column
            stack, seen_tables = [view_id], set()
            while stack:
                current = stack.pop()
                for base in self.tables.get(current, ()):
                    if base in seen_tables:
                        continue
                    seen_tables.add(base)
                    if base in self.tables:
                        stack.append(base)
                    else:
                        out.setdefault(base, set())
        return [(self.datasets[base], sorted(names)) for base, names in sorted(out.items())
                if base in self.datasets and base not in self.tables]


class _Event:
    """An access event being built: the fields of ``AccessEvent`` without a model instance each
    (building ten thousand models and their bulk-insert preparation cost a third of a batch)."""

    __slots__ = ("store_id", "record_key", "occurred_at", "source", "log_format", "database_role", "user",
                 "client_address", "application", "dataset", "relation", "via_view", "action", "columns", "rows",
                 "fingerprint", "statement", "allowed_by", "grant", "finding", "finding_reason", "sensitivity")

    def __init__(self, **fields):
        self.allowed_by, self.grant, self.finding, self.finding_reason = "", None, False, ""
        self.sensitivity = None
        for name, value in fields.items():
            setattr(self, name, value)

    # Column order of ``monitoring_accessevent`` as written (the id and received_at are the table's).
    COLUMNS = ("store_id", "record_key", "occurred_at", "received_at", "source", "log_format", "database_role",
               "user_id", "client_address", "application", "dataset_id", "relation", "via_view", "action", "columns",
               "rows", "fingerprint", "statement", "allowed_by", "grant_id", "finding", "finding_reason", "sensitivity")

    def row(self, received_at) -> tuple:
        return (self.store_id, self.record_key, self.occurred_at, received_at, self.source, self.log_format,
                self.database_role, getattr(self.user, "pk", None), self.client_address, self.application,
                getattr(self.dataset, "pk", None), self.relation, self.via_view, self.action,
                json.dumps(self.columns), self.rows, self.fingerprint, self.statement, self.allowed_by,
                getattr(self.grant, "pk", None), self.finding, self.finding_reason, self.sensitivity)

    def model(self) -> AccessEvent:
        return AccessEvent(store_id=self.store_id, **{
            name: getattr(self, name) for name in self.__slots__ if name != "store_id"})


def _events_write(events: list[_Event]) -> None:
    """Insert ``events`` (none of them recorded yet; the caller holds the stream-order lock): with
    ``COPY`` on PostgreSQL, ``bulk_create`` elsewhere."""
    if not events:
        return
    if connection.vendor != "postgresql":
        AccessEvent.objects.bulk_create([e.model() for e in events], ignore_conflicts=True, batch_size=500)
        return
    now = timezone.now()
    table = AccessEvent._meta.db_table
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({', '.join(_Event.COLUMNS)}) FROM STDIN") as copy:
            for event in events:
                copy.write_row(event.row(now))


def _catalog_columns(dataset: Dataset, names: set, unresolved: set, row_refs: set = frozenset()) -> list[str]:
    """Column names as the catalog spells them, in position order; ``*`` is every current column, and
    so is a whole-row reference (``SELECT u FROM users u``) that is not the name of a column."""
    current = list(dataset.columns.all())
    known = {c.name.lower() for c in current}
    if STAR in names or any(name.lower() not in known for name in row_refs):
        return [c.name for c in current]
    wanted = {n.lower() for n in names} | {n.lower() for n in unresolved}
    return [c.name for c in current if c.name.lower() in wanted]


def _accesses(records: list[LogRecord], result: IngestResult) -> list[_Access]:
    accesses = []
    for record in records:
        parsed = statement_access(record.statement, record.dialect)
        if record.relation is not None:  # pgaudit names the relation and whether it was read or written
            schema, table = record.relation
            found = parsed.relations.get((schema.lower(), table.lower())) or parsed.relations.get(("", table.lower()))
            if found is None:
                for (s, t), relation in parsed.relations.items():
                    if t == table.lower():
                        found = relation
                        break
            columns, row_refs = set(), set()
            if found is not None:
                columns = found.writes if record.action == AccessAction.WRITE else (found.reads | set())
                if record.action == AccessAction.WRITE and not columns:
                    columns = found.reads
                if record.action != AccessAction.WRITE or columns is found.reads:
                    row_refs = set(found.row_refs)
            accesses.append(_Access(record, parsed, schema, table, record.action, set(columns), row_refs))
            continue
        for relation in parsed.relations.values():
            if relation.read:
                accesses.append(_Access(record, parsed, relation.schema, relation.table, AccessAction.READ,
                                        set(relation.reads), set(relation.row_refs)))
            if relation.written:
                accesses.append(_Access(record, parsed, relation.schema, relation.table, AccessAction.WRITE,
                                        set(relation.writes)))
    return accesses


def _key(access: _Access, per_relation: bool) -> str:
    if not per_relation:
        return access.record.record_key
    return f"{access.record.record_key}:{access.action}:{access.schema}.{access.table}"[:200]


def access_log_ingest(*, store: DataStore, records: list[LogRecord], source: str, log_format: str,
                      on_written=None) -> IngestResult:
    """Record the access events of ``records`` (parsed log records of ``store``), once each.
    Must be called inside a transaction when the caller moves a pull position with it."""
    result = IngestResult(records=len(records))
    accesses = _accesses(records, result)
    relations = {(a.schema or a.record.default_schema, a.table) for a in accesses}
    roles = {r.database_role for r in records if r.database_role}
    catalog = _Catalog(store, relations, roles)
    decisions: dict = {}
    events: list[_Event] = []
    # Pairs (user, dataset) with a grant overlapping the batch's time span: only their decisions
    # depend on the moment of each event; every other decision holds for the whole batch.
    timed, grants = set(), {}
    read_datasets = {catalog.dataset(a.schema, a.table, a.record.default_schema)[0] for a in accesses
                     if a.action == AccessAction.READ}
    view_bases = _ViewBases({d.pk for d in read_datasets if d is not None})
    if records and catalog.users and (catalog.by_relation or view_bases.datasets):
        first, last = min(r.occurred_at for r in records), max(r.occurred_at for r in records)
        for grant in Grant.objects.filter(
            user__in=list(catalog.users.values()),
            dataset__in=[*catalog.by_relation.values(), *view_bases.datasets.values()],
            starts_at__lte=last, ends_at__gt=first,
        ).select_related("request"):
            grants.setdefault((grant.user_id, grant.dataset_id), []).append(grant)
        timed = set(grants)
    seen_keys: set = set()
    for access in accesses:
        record = access.record
        key = _key(access, per_relation=record.relation is None)
        if key in seen_keys:
            continue
        seen_keys.add(key)
        dataset, via_view = catalog.dataset(access.schema, access.table, record.default_schema)
        columns = (
            _catalog_columns(dataset, access.columns, access.parsed.unresolved, access.row_refs)
            if dataset is not None else sorted(access.columns - {STAR})
        )
        user = catalog.users.get(record.database_role)
        event = _Event(
            store_id=store.pk, record_key=key, occurred_at=record.occurred_at, source=source, log_format=log_format,
            database_role=record.database_role[:128], user=user, client_address=record.client_address,
            application=record.application, dataset=dataset,
            relation=f"{access.schema or record.default_schema}.{access.table}".strip(".")[:600],
            via_view=via_view, action=access.action, columns=columns, rows=record.rows,
            fingerprint=access.parsed.fingerprint, statement=access.parsed.normalized,
        )
        if dataset is not None:
            _attribute(event, user, dataset, columns, decisions, timed, grants)
        events.append(event)
        if dataset is not None and access.action == AccessAction.READ:
            for base, base_columns in view_bases.reads(dataset.pk, columns):
                # A view runs with its owner's rights: reading it reads the tables it selects from.
                derived = _Event(
                    store_id=store.pk, record_key=f"{key}>{base.pk}"[:200], occurred_at=record.occurred_at, source=source,
                    log_format=log_format, database_role=event.database_role, user=user,
                    client_address=record.client_address, application=record.application, dataset=base,
                    relation=event.relation, via_view=dataset.qualified_name[:600], action=access.action,
                    columns=base_columns, rows=record.rows, fingerprint=event.fingerprint, statement=event.statement,
                )
                _attribute(derived, user, base, base_columns, decisions, timed, grants)
                events.append(derived)
    unparsed = {}
    for record in records:
        parsed = statement_access(record.statement, record.dialect)
        if parsed.error:
            entry = unparsed.setdefault(parsed.fingerprint, [parsed, 0, record.occurred_at, record.occurred_at, set()])
            entry[4].add(record.record_key)
    with transaction.atomic():
        keys = [e.record_key for e in events]
        if keys:
            # Taken before looking for known keys: whoever records the same records concurrently
            # waits until this commits and then finds them, so the COPY below meets no duplicate.
            _stream_order_lock()
        existing = set()
        for start in range(0, len(keys), 1000):
            existing.update(AccessEvent.objects.filter(store=store, record_key__in=keys[start:start + 1000])
                            .values_list("record_key", flat=True))
        fresh = [e for e in events if e.record_key not in existing]
        if fresh:
            transaction.on_commit(detect_request)
        _events_write(fresh)
        result.recorded = len(fresh)
        result.duplicates = len(events) - len(fresh)
        result.findings = sum(1 for e in fresh if e.finding)
        _count_unparsed(store, unparsed, existing, result)
        if on_written is not None:
            on_written()
    return result


def _stream_order_lock() -> None:
    """Events get their ids and commit in the same order: the detectors read the stream by id from
    their cursor, and an event with a lower id committed after a higher one would be skipped. Held
    until the caller's transaction commits (a pull's, which moves its position in it)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('monitoring.access_events'))")


def _count_unparsed(store, unparsed: dict, existing: set, result: IngestResult) -> None:
    now = timezone.now()
    # A pgaudit record read again was counted the first time (its event has the record's key); a
    # server_audit statement names no relation and has no event: its key is kept on its own.
    keys = sorted({k for entry in unparsed.values() for k in entry[4]} - existing)
    if keys:
        before = set(UnparsedRecord.objects.filter(store=store, record_key__in=keys).values_list("record_key", flat=True))
        UnparsedRecord.objects.bulk_create([UnparsedRecord(store=store, record_key=k) for k in keys if k not in before],
                                           ignore_conflicts=True, batch_size=500)
        existing = existing | before
    counted = []
    for fingerprint, (parsed, _, first, last, record_keys) in unparsed.items():
        new = [k for k in record_keys if k not in existing]
        if new:
            result.unparsed += len(new)
            counted.append((fingerprint, parsed, len(new), first, last))
    if connection.vendor == "postgresql" and counted:
        # Every shape of the batch in one statement: a new one inserted, a known one counted up.
        table = UnparsedStatement._meta.db_table
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(counted))
        params = []
        for fingerprint, parsed, count, first, last in counted:
            params += [store.pk, fingerprint, scrub(parsed.normalized)[:4000], parsed.error[:300], count, first,
                       max(last, now) if last else now]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} AS u (store_id, fingerprint, statement, error, count, first_seen_at, last_seen_at) "
                f"VALUES {rows} ON CONFLICT (store_id, fingerprint) DO UPDATE SET count = u.count + EXCLUDED.count, "
                f"last_seen_at = GREATEST(u.last_seen_at, EXCLUDED.last_seen_at)", params)
        return
    for fingerprint, parsed, count, first, last in counted:
        updated = UnparsedStatement.objects.filter(store=store, fingerprint=fingerprint).update(
            count=F("count") + count, last_seen_at=max(last, now) if last else now,
        )
        if not updated:
            UnparsedStatement.objects.create(
                store=store, fingerprint=fingerprint, statement=scrub(parsed.normalized)[:4000],
                error=parsed.error[:300], count=count, first_seen_at=first, last_seen_at=last,
            )


def _attribute(event: _Event, user, dataset: Dataset, columns: list[str], decisions: dict, timed: set,
               grants: dict) -> None:
    """Which standing permission or grant allowed the access (the one decision), or a finding; and
    the tier of what was accessed (the columns read, as the decision weighs them)."""
    event.sensitivity = scope_sensitivity(dataset, columns or None)
    if user is None:
        event.finding = True
        event.finding_reason = f"The warehouse role '{event.database_role}' is not mapped to a catalog user."[:300]
        return
    action = "write" if event.action == AccessAction.WRITE else "read"
    cache_key = (user.pk, dataset.pk, action, tuple(columns))
    decision = decisions.get(cache_key)
    grant = getattr(decision, "grant", None)
    if decision is None:
        reusable = False
    elif (user.pk, dataset.pk) not in timed:
        reusable = True  # no grant in the batch's span: standing permissions alone decide
    else:
        reusable = decision.allowed and grant is not None and grant.starts_at <= event.occurred_at < grant.ends_at
    if not reusable:
        decision = access_decide(user, action, dataset, columns=columns or None, at=event.occurred_at,
                                 live_grants=grants.get((user.pk, dataset.pk), []))
        decisions[cache_key] = decision
    if decision.allowed:
        event.allowed_by = decision.via[:32]
        event.grant = decision.grant
    else:
        event.finding = True
        event.finding_reason = (decision.reason or "Nothing in the catalog allowed this access.")[:300]
