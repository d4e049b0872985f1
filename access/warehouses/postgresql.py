"""PostgreSQL: masked reads by default, raw reads by grant, decided in the warehouse at read time.

For each dataset of a managed store the catalog keeps a protected view ``governed.<table>`` (the
schema is ``ACCESS_GOVERNED_SCHEMA``) that shows each column as ``access.masking`` says a reader
without raw access sees it. Which columns a reader sees raw is asked once per query of
``governed_admin.raw_columns(dataset, current_user)``, a ``SECURITY DEFINER`` function over the
grants table ``governed_admin.grants`` that the catalog writes when a grant is applied and deletes
when it ends: a grant unmasks as soon as its row is written and stops at its ``ends_at`` (the
function compares it with the statement's time) whether or not a worker ran. A reader is the role
itself or any role it inherits from (``pg_has_role(..., 'USAGE')``); the function answers only for
roles the session may become, so nobody learns another role's grants through it.

Keyed hashes and tokens use HMAC-SHA256 in plain SQL (``sha256()``, no extension): the catalog
makes a key per dataset, keeps it sealed (``access.models.DatasetKey``) and writes its inner and
outer pads into ``governed_admin.dataset_keys``, which only the catalog's role reads; the view
joins it, so the key is never in the view's text, in a plan, a log or the audit trail.

Everything here is a ``Plan`` of ``Statement`` objects (``access.masking``) made without a
connection, so the dataset page and the API preview exactly what the workers run.
"""

import hashlib
import hmac
import json
import logging
import re

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from access.warehouses import keys
from access.masking import NUMBER_MODULUS, Plan, Statement, Treatment, ValueKind, column_treatment, value_kind

logger = logging.getLogger(__name__)

PLATFORM = "postgresql"
DIALECT = "postgres"
FINGERPRINT_PREFIX = "governance-catalog view "
TOKEN_PREFIX = "tok_"


# Names and literals (no connection needed) -------------------------------------------------------


def ident(*parts: str) -> str:
    """A quoted, dotted identifier: ``"sales"."customers"``."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def literal(value: str) -> str:
    """A string literal (standard_conforming_strings, PostgreSQL's default since 9.1)."""
    if "\x00" in value:
        raise ValueError("A PostgreSQL string cannot hold a NUL character.")
    return "'" + value.replace("'", "''") + "'"


def governed_schema() -> str:
    return settings.ACCESS_GOVERNED_SCHEMA


def admin_schema() -> str:
    return settings.ACCESS_GOVERNED_ADMIN_SCHEMA


def dataset_key_name(dataset) -> str:
    """How the store's grants and keys tables name a dataset: ``<schema>.<table>`` in that store."""
    return f"{dataset.schema}.{dataset.name}"


def view_name(dataset, same_named: int = 1) -> str:
    """The view's name in the governed schema: the table's own, or ``<schema>__<table>`` when the
    store has tables of that name in more than one schema."""
    return dataset.name if same_named <= 1 else f"{dataset.schema}__{dataset.name}"


def _same_named(datasets) -> dict[str, int]:
    counts: dict[str, int] = {}
    for dataset in datasets:
        counts[dataset.name] = counts.get(dataset.name, 0) + 1
    return counts


# The view ----------------------------------------------------------------------------------------


_INTEGER_TYPE = re.compile(r"^\s*(small|big)?(int|integer|serial)[248]?\s*$", re.IGNORECASE)


def _key_sql(dataset, pad: str) -> str:
    """One pad of the dataset's key, read once per query (an InitPlan: the scalar subquery does not
    depend on the row), so the scan does no join."""
    return (f"(SELECT {pad} FROM {ident(admin_schema(), 'dataset_keys')} "
            f"WHERE dataset = {literal(dataset_key_name(dataset))})")


def _hmac_sql(dataset, value_sql: str) -> str:
    return (f"encode(sha256({_key_sql(dataset, 'outer_pad')} || sha256({_key_sql(dataset, 'inner_pad')} || "
            f"convert_to(({value_sql})::text, 'UTF8'))), 'hex')")


def masked_expression(column, column_sql: str, dataset=None) -> str | None:
    """What a reader without raw access sees of ``column`` (None: as it is). Plain SQL expressions
    the planner inlines into the scan, chosen for their cost per row (measured in
    docs/benchmarks.md): no regular expressions, no time zone conversion, no numeric cast of
    integers."""
    treatment = column_treatment(column)
    if treatment == Treatment.AS_IS:
        return None
    if treatment == Treatment.NULL:
        return "NULL"
    dataset = dataset if dataset is not None else column.dataset
    if treatment == Treatment.HASH:
        return _hmac_sql(dataset, column_sql)
    if treatment == Treatment.TOKEN:
        return f"{literal(TOKEN_PREFIX)} || left({_hmac_sql(dataset, column_sql)}, 16)"
    kind = value_kind(column)
    declared = (column.type or "").lower()
    if kind == ValueKind.EMAIL:
        # what follows the last "@", as MariaDB's SUBSTRING_INDEX(x, '@', -1); no "@": all hidden
        text = f"({column_sql})::text"
        return f"CASE WHEN strpos({text}, '@') > 0 THEN '***@' || split_part({text}, '@', -1) ELSE '***' END"
    if kind == ValueKind.NUMBER:
        if _INTEGER_TYPE.match(declared):  # stays an integer: no numeric arithmetic per row
            return f"(({column_sql}) % {NUMBER_MODULUS})"
        return f"(({column_sql})::numeric % {NUMBER_MODULUS})"
    if kind == ValueKind.DATE:
        if "time" in declared:
            return f"date_trunc('year', {column_sql})"
        # through timestamp (not timestamptz, which date_trunc of a date picks): no time zone per row
        return f"(date_trunc('year', ({column_sql})::timestamp))::date"
    if kind == ValueKind.TEXT:
        return f"left(({column_sql})::text, 1) || '***'"
    return "NULL"  # a value the catalog cannot partly show (arrays, binary, ...) is hidden


def _raw_type_cast(column, masked: str) -> str:
    """The raw branch must have the masked branch's type (CASE needs one type): hashes, tokens and
    partial text are text, so the raw value is shown as text there."""
    treatment = column_treatment(column)
    if treatment in (Treatment.HASH, Treatment.TOKEN):
        return "::text"
    if treatment == Treatment.PARTIAL and value_kind(column) in (ValueKind.EMAIL, ValueKind.TEXT):
        return "::text"
    return ""


def view_sql(dataset, columns, name: str) -> str:
    """``CREATE VIEW`` of the dataset's protected view (columns in their catalog order)."""
    if not dataset.schema:
        raise ValueError(f"{dataset.qualified_name} names no schema; the catalog enforces only <schema>.<table>.")
    # The read-time decision is made once per query: ``g`` calls raw_columns() once (a MATERIALIZED
    # CTE), and each column's test ``(SELECT ... FROM g)`` is not correlated with the row, so it is an
    # InitPlan evaluated once; per row only ``CASE WHEN $n`` and the mask itself run. The view has
    # no row filter, so it needs no security_barrier: a reader's WHERE is pushed into the scan and
    # only ever sees the masked expressions.
    selected = []
    for column in columns:
        col = f"t.{ident(column.name)}"
        masked = masked_expression(column, col, dataset)
        if masked is None:
            selected.append(f"{col} AS {ident(column.name)}")
            continue
        raw = col + _raw_type_cast(column, masked)
        selected.append(
            f"CASE WHEN (SELECT g.raw && ARRAY['*', {literal(column.name)}]::text[] FROM g) THEN {raw} ELSE {masked} END"
            f" AS {ident(column.name)}"
        )
    if not selected:
        raise ValueError(f"{dataset.qualified_name} has no columns in the catalog; there is nothing to show.")
    key_name = literal(dataset_key_name(dataset))
    decision = f"g AS MATERIALIZED (SELECT {ident(admin_schema(), 'raw_columns')}({key_name}, current_user::text) AS raw)"
    select_list = ",\n       ".join(selected)
    return (f"CREATE VIEW {ident(governed_schema(), name)} AS\n"
            f"WITH {decision}\n"
            f"SELECT {select_list}\n"
            f"FROM {ident(dataset.schema, dataset.name)} t")


def view_fingerprint(create_sql: str) -> str:
    """What the view's comment carries: the reconciler remakes a view whose definition changed
    (its readers are compared with the view's privileges instead: grants change them every day)."""
    return hashlib.sha256(json.dumps([create_sql]).encode()).hexdigest()[:32]


# The grants table --------------------------------------------------------------------------------


def grant_row_sql(grant) -> str:
    """The grants-table row of a live grant (insert, or update when it is there)."""
    columns = "NULL" if not grant.columns else "ARRAY[" + ", ".join(literal(c) for c in grant.columns) + "]::text[]"
    return (
        f"INSERT INTO {ident(admin_schema(), 'grants')} (grant_id, role, dataset, columns, ends_at) "
        f"VALUES ({int(grant.pk)}, {literal(grant.user.warehouse_role)}, {literal(dataset_key_name(grant.dataset))}, "
        f"{columns}, {literal(grant.ends_at.isoformat())}::timestamptz) "
        "ON CONFLICT (grant_id) DO UPDATE SET role = EXCLUDED.role, dataset = EXCLUDED.dataset, "
        "columns = EXCLUDED.columns, ends_at = EXCLUDED.ends_at"
    )


def grant_row_delete_sql(grant) -> str:
    return f"DELETE FROM {ident(admin_schema(), 'grants')} WHERE grant_id = {int(grant.pk)}"


def reader_allow_sql(view: str, role: str, columns=None) -> str:
    """SELECT on the whole view, or (``columns``: a reader through column grants only) on those columns."""
    listed = "NULL" if columns is None else "ARRAY[" + ", ".join(literal(c) for c in columns) + "]::text[]"
    return (f"SELECT {ident(admin_schema(), 'reader_allow')}({literal(governed_schema())}, {literal(view)}, "
            f"{literal(role)}, {listed})")


def reader_remove_sql(view: str, role: str) -> str:
    return f"SELECT {ident(admin_schema(), 'reader_remove')}({literal(governed_schema())}, {literal(view)}, {literal(role)})"


# Keys ----------------------------------------------------------------------------------------------


def _pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer pads of a key (RFC 2104, SHA-256's block of 64 bytes)."""
    return keys.hmac_pads(key)


def hmac_hex(key: bytes, value: str) -> str:
    """What the view shows of a hashed value (for tests and for checking a store)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def dataset_key(dataset, *, create: bool = False) -> bytes | None:
    """The dataset's key (``access.warehouses.keys``, shared by every store kind); None when it has
    none yet and ``create`` is false (a preview never makes one)."""
    from access.models import DatasetKey

    if not create and not DatasetKey.objects.filter(dataset=dataset).exists():
        return None
    return keys.dataset_key(dataset)


def key_sql(dataset, key: bytes | None) -> Statement:
    """The statement that puts the dataset's key pads in the store; without the key (a preview),
    placeholders stand in for them. Always marked secret: shown and audited redacted."""
    if key is None:
        inner = outer = "'\\x...'::bytea"
    else:
        inner_pad, outer_pad = _pads(key)
        inner, outer = f"'\\x{inner_pad.hex()}'::bytea", f"'\\x{outer_pad.hex()}'::bytea"
    text = (f"INSERT INTO {ident(admin_schema(), 'dataset_keys')} (dataset, inner_pad, outer_pad) "
            f"VALUES ({literal(dataset_key_name(dataset))}, {inner}, {outer}) "
            "ON CONFLICT (dataset) DO UPDATE SET inner_pad = EXCLUDED.inner_pad, outer_pad = EXCLUDED.outer_pad")
    return Statement(text, f"Put the key of {dataset.qualified_name}'s hashes and tokens in the store", DIALECT,
                     secret=True)


# Who reads a view ----------------------------------------------------------------------------------


def view_tier(dataset, columns) -> int:
    """The tier of what the view shows to a reader without a grant: the highest of the columns it
    shows as they are (masked, hashed, tokenized and hidden columns no longer carry theirs)."""
    from access.decisions import dataset_tier
    from catalog.vocabulary import Sensitivity

    if not dataset.classified:
        return dataset_tier(dataset)
    shown = [c.sensitivity for c in columns if column_treatment(c) == Treatment.AS_IS]
    return max(shown, default=Sensitivity.PUBLIC)


def _mapped_users():
    from access.models import User
    from access.models import warehouse_role_reserved

    users = list(User.objects.filter(is_active=True).exclude(warehouse_role="").order_by("pk"))
    return [user for user in users if not warehouse_role_reserved(user.warehouse_role)]


def view_readers(dataset, columns, *, users=None, live_grants=None, now=None) -> dict:
    """``{warehouse role: None (the whole view) or (column, ...)}``: users whose standing permission
    (the role matrix) reads what the view shows unmasked read all of it; holders of live grants read
    what their grants cover (a column grant: those columns only)."""
    from access.decisions import is_aggregated, standing_level
    from access.models import AccessLevel

    now = now or timezone.now()
    users = _mapped_users() if users is None else users
    tier = view_tier(dataset, columns)
    aggregated = is_aggregated(dataset)
    environment = dataset.store.environment
    readers: dict = {user.warehouse_role: None for user in users
                     if standing_level(user, environment, tier, aggregated) >= AccessLevel.READ}
    if live_grants is None:
        live_grants = live_grants_of(dataset, now)
    for grant in live_grants:
        role = grant.user.warehouse_role
        if not role or (role in readers and readers[role] is None):
            continue
        if not grant.columns:
            readers[role] = None
        else:
            readers[role] = tuple(sorted(set(readers.get(role) or ()) | set(grant.columns)))
    return dict(sorted(readers.items()))


def live_grants_of(dataset, now=None):
    from access.enforcement import LIVE
    from access.models import Enforcement, Grant

    now = now or timezone.now()
    return list(Grant.objects.filter(dataset=dataset, status__in=LIVE, starts_at__lte=now, ends_at__gt=now)
                .exclude(enforcement=Enforcement.NOT_MANAGED).exclude(user__warehouse_role="")
                .select_related("user", "dataset").order_by("pk"))


# Plans -------------------------------------------------------------------------------------------


def infrastructure_statements() -> list[Statement]:
    """The schemas, tables and functions every enforced store holds (idempotent)."""
    admin, governed = admin_schema(), governed_schema()
    grants, keys = ident(admin, "grants"), ident(admin, "dataset_keys")

    def s(text, purpose):
        return Statement(text, purpose, DIALECT)

    return [
        s(f"CREATE SCHEMA IF NOT EXISTS {ident(admin)}", "The catalog's own schema: grants table, keys, functions"),
        s(f"REVOKE ALL ON SCHEMA {ident(admin)} FROM PUBLIC", "Nobody else reaches it"),
        s(f"CREATE TABLE IF NOT EXISTS {grants} (grant_id bigint PRIMARY KEY, role name NOT NULL, "
          "dataset text NOT NULL, columns text[], ends_at timestamptz NOT NULL)",
          "The grants table: who sees which columns raw, until when (NULL columns: all)"),
        s(f"CREATE INDEX IF NOT EXISTS grants_dataset ON {grants} (dataset)", "Read-time lookups by dataset"),
        s(f"CREATE TABLE IF NOT EXISTS {keys} (dataset text PRIMARY KEY, inner_pad bytea NOT NULL, "
          "outer_pad bytea NOT NULL)", "The keys of keyed hashes and tokens (HMAC-SHA256 pads)"),
        s(f"REVOKE ALL ON {grants}, {keys} FROM PUBLIC", "Only the catalog's role reads them"),
        s(f"""CREATE OR REPLACE FUNCTION {ident(admin, 'raw_columns')}(p_dataset text, p_reader text)
RETURNS text[] LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT coalesce(array_agg(DISTINCT c), '{{}}'::text[])
  FROM {grants} g
  JOIN pg_catalog.pg_roles granted ON granted.rolname = g.role
  JOIN pg_catalog.pg_roles reader ON reader.rolname = p_reader
  CROSS JOIN LATERAL unnest(coalesce(g.columns, ARRAY['*']::text[])) AS c
  WHERE g.dataset = p_dataset AND g.ends_at > pg_catalog.statement_timestamp()
    AND pg_catalog.pg_has_role(session_user, reader.oid, 'MEMBER')
    AND pg_catalog.pg_has_role(reader.oid, granted.oid, 'USAGE')
$fn$""", "The read-time decision: which columns the reader (or a role it inherits) sees raw now"),
        s(f"REVOKE ALL ON FUNCTION {ident(admin, 'raw_columns')}(text, text) FROM PUBLIC",
          "Only readers of a protected view call it"),
        s(f"""CREATE OR REPLACE FUNCTION {ident(admin, 'reader_allow')}(p_schema text, p_view text, p_role text,
                                                         p_columns text[] DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', p_schema, p_role);
    IF p_columns IS NULL THEN
      EXECUTE format('GRANT SELECT ON %I.%I TO %I', p_schema, p_view, p_role);
    ELSE
      EXECUTE format('GRANT SELECT (%s) ON %I.%I TO %I',
                     (SELECT string_agg(quote_ident(c), ', ') FROM unnest(p_columns) AS c), p_schema, p_view, p_role);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', {literal(admin)}, p_role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.raw_columns(text, text) TO %I', {literal(admin)}, p_role);
  END IF;
END
$fn$""", "Give a role SELECT on a view (a role the store does not have is skipped)"),
        s(f"""CREATE OR REPLACE FUNCTION {ident(admin, 'reader_remove')}(p_schema text, p_view text, p_role text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) AND to_regclass(format('%I.%I', p_schema, p_view)) IS NOT NULL THEN
    EXECUTE format('REVOKE SELECT ON %I.%I FROM %I', p_schema, p_view, p_role);
  END IF;
END
$fn$""", "Take SELECT on a view back"),
        s(f"REVOKE ALL ON FUNCTION {ident(admin, 'reader_allow')}(text, text, text, text[]), "
          f"{ident(admin, 'reader_remove')}(text, text, text) FROM PUBLIC", "Only the catalog changes readers"),
        s(f"CREATE SCHEMA IF NOT EXISTS {ident(governed)}", "The protected views' schema"),
        s(f"REVOKE ALL ON SCHEMA {ident(governed)} FROM PUBLIC", "Readers get USAGE one by one"),
    ]


def _view_statements(dataset, columns, name, readers, key) -> list[Statement]:
    create = view_sql(dataset, columns, name)
    fingerprint = view_fingerprint(create)
    view = ident(governed_schema(), name)
    statements = []
    if "dataset_keys" in create:
        statements.append(key_sql(dataset, key))
    statements += [
        # Dropped and made again in the one transaction of the plan: readers see the old view until
        # it commits, and a worker killed before that leaves the old view as it was.
        Statement(f"DROP VIEW IF EXISTS {view}", f"Replace the protected view of {dataset.qualified_name}", DIALECT),
        Statement(create, f"The protected view of {dataset.qualified_name}", DIALECT),
        Statement(f"COMMENT ON VIEW {view} IS {literal(FINGERPRINT_PREFIX + fingerprint)}",
                  "What the catalog made (the reconciler compares it)", DIALECT),
        Statement(f"REVOKE ALL ON {view} FROM PUBLIC", "Nobody reads it by default", DIALECT),
    ]
    statements += [Statement(reader_allow_sql(name, role, columns),
                             f"{role} reads the view" + (f" ({', '.join(columns)})" if columns else ""), DIALECT)
                   for role, columns in readers.items()]
    return statements


def dataset_plan(dataset, *, key: bytes | None = None, users=None, same_named: int | None = None,
                 live_grants=None, now=None) -> Plan:
    """What enforcing ``dataset`` in its PostgreSQL store runs: its protected view (made again),
    its readers and its grants-table rows. Needs no connection; ``key`` (only when applying) fills
    the key statement, which is redacted wherever it is shown."""
    from catalog.models import Dataset

    plan = Plan(PLATFORM)
    if not dataset.schema:
        plan.notes.append(f"{dataset.qualified_name} names no schema; the catalog enforces only <schema>.<table>.")
        return plan
    columns = list(dataset.columns.all())
    if not columns:
        plan.notes.append(f"{dataset.qualified_name} has no columns in the catalog yet; no view is made.")
        return plan
    if same_named is None:
        same_named = Dataset.objects.filter(store_id=dataset.store_id, name=dataset.name).exclude(schema="").count()
    name = view_name(dataset, same_named)
    now = now or timezone.now()
    live = live_grants_of(dataset, now) if live_grants is None else live_grants
    readers = view_readers(dataset, columns, users=users, live_grants=live, now=now)
    plan.statements += _view_statements(dataset, columns, name, readers, key)
    plan.statements.append(Statement(
        f"DELETE FROM {ident(admin_schema(), 'grants')} WHERE dataset = {literal(dataset_key_name(dataset))}"
        + (f" AND grant_id NOT IN ({', '.join(str(g.pk) for g in live)})" if live else ""),
        "Rows of grants that ended (or that the catalog did not write)", DIALECT))
    plan.statements += [Statement(grant_row_sql(grant), f"Grant #{grant.pk} of {grant.user.username}", DIALECT)
                        for grant in live]
    treated = [c for c in columns if column_treatment(c) != Treatment.AS_IS]
    plan.notes.append(
        f"Readers query {governed_schema()}.{name}; {len(treated)} of {len(columns)} columns are masked, hashed, "
        f"tokenized or hidden unless a grant unmasks them. Base table: no privilege for readers."
    )
    return plan


def store_units(store, *, keys: bool = False) -> list[tuple]:
    """Each dataset's plan in ``store``, as ``[(dataset, Plan), ...]``."""
    from catalog.models import Dataset

    datasets = list(Dataset.objects.filter(store=store).exclude(schema="").select_related("store")
                    .prefetch_related("columns").order_by("schema", "name"))
    same_named, users, now = _same_named(datasets), _mapped_users(), timezone.now()
    grants = _live_grants_by_dataset(datasets, now)
    units = []
    for dataset in datasets:
        key = dataset_key(dataset, create=True) if keys and _needs_key(dataset) else None
        units.append((dataset, dataset_plan(dataset, key=key, users=users, same_named=same_named[dataset.name],
                                            live_grants=grants.get(dataset.pk, []), now=now)))
    return units


def store_plan(store, *, keys: bool = False) -> Plan:
    """Everything enforcement keeps in ``store``: the catalog's schema, grants table and functions,
    and each dataset's plan. ``keys`` fills the key statements (only when applying)."""
    plan = Plan(PLATFORM, statements=infrastructure_statements())
    units = store_units(store, keys=keys)
    for _dataset, sub in units:
        plan.statements += sub.statements
        plan.notes += [n for n in sub.notes if "names no schema" in n or "no columns" in n]
    plan.notes.append(f"{len(units)} datasets; readers never get privileges on the base tables. Each dataset's "
                      "view is made in a savepoint: one that cannot be made (the table differs from the catalog) "
                      "is reported and leaves the others applied.")
    return plan


def _needs_key(dataset) -> bool:
    return any(column_treatment(c) in (Treatment.HASH, Treatment.TOKEN) for c in dataset.columns.all())


def _live_grants_by_dataset(datasets, now) -> dict:
    from access.enforcement import LIVE
    from access.models import Enforcement, Grant

    by_dataset: dict = {}
    grants = (Grant.objects.filter(dataset__in=[d.pk for d in datasets], status__in=LIVE, starts_at__lte=now,
                                   ends_at__gt=now)
              .exclude(enforcement=Enforcement.NOT_MANAGED).exclude(user__warehouse_role="")
              .select_related("user", "dataset").order_by("pk"))
    for grant in grants:
        by_dataset.setdefault(grant.dataset_id, []).append(grant)
    return by_dataset


# Applying ------------------------------------------------------------------------------------------

AUDITED_STATEMENTS = 200  # a store-wide plan lists its first statements; the digest covers them all


def _audit_details(store, plan: Plan, what: str) -> dict:
    shown = [s.shown() for s in plan.statements]
    return {
        "store": store.name, "what": what, "statement_count": len(shown),
        "statements": shown[:AUDITED_STATEMENTS],
        "statements_sha256": hashlib.sha256("\n".join(shown).encode()).hexdigest(),
    }


def plan_run(warehouse, plan: Plan) -> None:
    """Run a plan's statements on an open warehouse transaction (the caller commits)."""
    for statement in plan.statements:
        warehouse.execute(statement.text)


def plan_run_isolated(warehouse, plan: Plan) -> str:
    """Run a plan in a savepoint; on failure roll it back (the rest of the transaction stands) and
    return why (safe to show), else ""."""
    warehouse.execute("SAVEPOINT governance_catalog_unit")
    try:
        plan_run(warehouse, plan)
    except Exception as exc:
        warehouse.execute("ROLLBACK TO SAVEPOINT governance_catalog_unit")
        return warehouse.fail("make the view", exc).args[0]
    warehouse.execute("RELEASE SAVEPOINT governance_catalog_unit")
    return ""


def plan_apply(store, plan: Plan, *, what: str, actor=None, dataset=None) -> None:
    """Run ``plan`` in ``store`` in one transaction (all or nothing), then record it (redacted).
    Raises ``EnforcementError`` with a message safe to show."""
    from access.audit import audit_record
    from access.enforcement import _Warehouse

    warehouse = _Warehouse(store)
    try:
        try:
            warehouse.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ["governance-catalog views"])
            plan_run(warehouse, plan)
            warehouse.commit()
        except Exception as exc:
            raise warehouse.fail(what, exc) from None
    finally:
        warehouse.close()
    with transaction.atomic():
        audit_record(actor=actor, action="enforcement.applied", obj=dataset or store, dataset=dataset,
                     details=_audit_details(store, plan, what))


def store_enforce(store, *, actor=None) -> tuple[Plan, dict]:
    """Make ``store`` hold the catalog's protected views, grants table, keys and readers (one
    transaction; a dataset whose view cannot be made is skipped and named). Returns what ran and
    ``{qualified name: why}`` of the datasets skipped."""
    from access.audit import audit_record
    from access.enforcement import _Warehouse

    units = store_units(store, keys=True)
    ran, failed = Plan(PLATFORM, statements=infrastructure_statements()), {}
    warehouse = _Warehouse(store)
    try:
        try:
            warehouse.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ["governance-catalog views"])
            plan_run(warehouse, ran)
            for dataset, plan in units:
                why = plan_run_isolated(warehouse, plan)
                if why:
                    failed[dataset.qualified_name] = why
                else:
                    ran.statements += plan.statements
            warehouse.commit()
        except Exception as exc:
            raise warehouse.fail(f"enforce the protected views of {store.name}", exc) from None
    finally:
        warehouse.close()
    with transaction.atomic():
        details = _audit_details(store, ran, f"enforce the protected views of {store.name}")
        details["failed"] = failed
        audit_record(actor=actor, action="enforcement.applied", obj=store, details=details)
    return ran, failed


def dataset_enforce(dataset, *, actor=None) -> Plan:
    """Make the dataset's view (again), its readers and its grants rows (after a schema change)."""
    key = dataset_key(dataset, create=True) if _needs_key(dataset) else None
    plan = dataset_plan(dataset, key=key)
    plan.statements[:0] = infrastructure_statements()
    plan_apply(dataset.store, plan, what=f"regenerate the protected view of {dataset.qualified_name}",
               actor=actor, dataset=dataset)
    return plan


def views_regenerate(store, dataset_ids) -> dict:
    """After a sync changed these datasets' schemas: make their views again in one warehouse
    transaction (DROP and CREATE commit together, so a worker killed midway leaves the old views
    working, and the redelivered task or the reconciler makes them). Never raises: what could not
    be made is logged and returned (``{qualified name: why}``), and the reconciler reports it."""
    from access.enforcement import EnforcementError, _Warehouse, store_is_managed
    from access.audit import audit_record
    from catalog.models import Dataset

    if not store_is_managed(store):
        return {}
    datasets = list(Dataset.objects.filter(pk__in=list(dataset_ids)).exclude(schema="").select_related("store")
                    .prefetch_related("columns").order_by("schema", "name"))
    if not datasets:
        return {}
    ran, failed = Plan(PLATFORM, statements=infrastructure_statements()), {}
    warehouse = None
    try:
        warehouse = _Warehouse(store)
        try:
            warehouse.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ["governance-catalog views"])
            plan_run(warehouse, ran)
            for dataset in datasets:
                key = dataset_key(dataset, create=True) if _needs_key(dataset) else None
                plan = dataset_plan(dataset, key=key)
                why = plan_run_isolated(warehouse, plan)
                if why:
                    failed[dataset.qualified_name] = why
                else:
                    ran.statements += plan.statements
            warehouse.commit()
        except Exception as exc:
            raise warehouse.fail("regenerate the protected views", exc) from None
    except EnforcementError as exc:
        logger.warning("Regenerating the views of %s after a sync: %s", store.name, exc)
        return {d.qualified_name: str(exc) for d in datasets}
    finally:
        if warehouse is not None:
            warehouse.close()
    with transaction.atomic():
        details = _audit_details(store, ran, f"regenerate {len(datasets) - len(failed)} protected views after a sync")
        details["failed"] = failed
        audit_record(actor=None, action="enforcement.applied", obj=store, details=details)
    return failed


def view_present(warehouse, dataset) -> bool:
    from catalog.models import Dataset

    same = Dataset.objects.filter(store_id=dataset.store_id, name=dataset.name).exclude(schema="").count()
    name = ident(governed_schema(), view_name(dataset, same))
    return warehouse.execute("SELECT to_regclass(%s) IS NOT NULL", [name])[0][0]


def grant_enter(warehouse, grant) -> list[Statement]:
    """On a warehouse transaction: make the grant's dataset enforced if it is not yet, write the
    grant's row and let its role read the view. Returns what it ran (for the audit)."""
    from access.enforcement import EnforcementError
    from access.models import AccessLevel

    dataset = grant.dataset
    if not view_present(warehouse, dataset):
        key = dataset_key(dataset, create=True) if _needs_key(dataset) else None
        infrastructure = Plan(PLATFORM, statements=infrastructure_statements())
        plan_run(warehouse, infrastructure)
        plan = dataset_plan(dataset, key=key)
        why = plan_run_isolated(warehouse, plan)
        if not why:
            return infrastructure.statements + plan.statements
        if grant.level < AccessLevel.WRITE:  # a read grant is nothing without its view
            raise EnforcementError(why)
        # A write grant's privileges on the table stand; the reconciler reports the missing view.
        row = Statement(grant_row_sql(grant), f"Grant #{grant.pk} in the grants table", DIALECT)
        warehouse.execute(row.text)
        return infrastructure.statements + [row]
    from catalog.models import Dataset

    same = Dataset.objects.filter(store_id=dataset.store_id, name=dataset.name).exclude(schema="").count()
    statements = [Statement(grant_row_sql(grant), f"Grant #{grant.pk} in the grants table", DIALECT),
                  Statement(reader_allow_sql(view_name(dataset, same), grant.user.warehouse_role, grant.columns or None),
                            "The grant's role reads the view", DIALECT)]
    for statement in statements:
        warehouse.execute(statement.text)
    return statements


def grant_leave(warehouse, grant, roles, now) -> list[Statement]:
    """On a warehouse transaction: delete the grant's row (the view masks again at once) and take
    the view back from roles that no longer read it (no standing permission, no other live grant)."""
    from catalog.models import Dataset

    dataset = grant.dataset
    statements = [Statement(grant_row_delete_sql(grant), f"Grant #{grant.pk} leaves the grants table", DIALECT)]
    if warehouse.execute("SELECT to_regclass(%s) IS NOT NULL", [ident(admin_schema(), "grants")])[0][0]:
        warehouse.execute(statements[0].text)
    else:
        statements = []
    columns = list(dataset.columns.all())
    readers = view_readers(dataset, columns, live_grants=[g for g in live_grants_of(dataset, now) if g.pk != grant.pk],
                           now=now)
    name = view_name(dataset, Dataset.objects.filter(store_id=dataset.store_id, name=dataset.name)
                     .exclude(schema="").count())
    if warehouse.execute("SELECT to_regproc(%s) IS NOT NULL", [ident(admin_schema(), "reader_remove")])[0][0]:
        for role in sorted(roles):
            if role in readers and readers[role] is None:
                continue  # still reads the whole view
            step = [Statement(reader_remove_sql(name, role), f"{role} no longer reads the view", DIALECT)]
            if role in readers:  # other column grants still give some columns
                step.append(Statement(reader_allow_sql(name, role, readers[role]), f"{role} keeps some columns",
                                      DIALECT))
            for statement in step:
                warehouse.execute(statement.text)
            statements += step
    return statements


# Drift and the reconciler --------------------------------------------------------------------------

MEMBERSHIP_PRIVILEGES_SQL = """
WITH RECURSIVE held(member, roleid) AS (
    SELECT member, roleid FROM pg_auth_members
    UNION SELECT held.member, a.roleid FROM held JOIN pg_auth_members a ON a.member = held.roleid
)
SELECT DISTINCT mapped.rolname, via.rolname, n.nspname, c.relname, acl.privilege_type
FROM held
JOIN pg_roles mapped ON mapped.oid = held.member
JOIN pg_roles via ON via.oid = held.roleid
JOIN pg_class c ON c.relacl IS NOT NULL AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(c.relacl) acl
WHERE acl.grantee = held.roleid AND mapped.rolname = ANY(%s) AND n.nspname = ANY(%s)
ORDER BY 1, 2, 3, 4, 5
"""

DEFAULT_PRIVILEGES_SQL = """
SELECT owner.rolname, coalesce(n.nspname, ''), d.defaclobjtype,
       CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE grantee.rolname END, acl.privilege_type
FROM pg_default_acl d
JOIN pg_roles owner ON owner.oid = d.defaclrole
LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
CROSS JOIN LATERAL aclexplode(d.defaclacl) acl
LEFT JOIN pg_roles grantee ON grantee.oid = acl.grantee
WHERE d.defaclobjtype = 'r' AND acl.grantee <> d.defaclrole AND (n.nspname IS NULL OR n.nspname = ANY(%s))
ORDER BY 1, 2, 4, 5
"""


def _view_comments(warehouse) -> dict[str, str]:
    rows = warehouse.execute(
        "SELECT c.relname, coalesce(obj_description(c.oid, 'pg_class'), '') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'v'", [governed_schema()])
    return dict(rows)


def _view_readers_held(warehouse) -> dict[str, set]:
    """``{view: {role, ...}}``: who holds SELECT on each whole governed view."""
    rows = warehouse.execute(
        "SELECT c.relname, r.rolname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN LATERAL aclexplode(c.relacl) acl JOIN pg_roles r ON r.oid = acl.grantee "
        "WHERE n.nspname = %s AND c.relkind = 'v' AND acl.privilege_type = 'SELECT' AND acl.grantee <> c.relowner",
        [governed_schema()])
    held: dict[str, set] = {}
    for view, role in rows:
        held.setdefault(view, set()).add(role)
    return held


def _grant_rows(warehouse) -> dict[int, tuple]:
    if not warehouse.execute("SELECT to_regclass(%s) IS NOT NULL", [ident(admin_schema(), "grants")])[0][0]:
        return {}
    rows = warehouse.execute(f"SELECT grant_id, role, dataset, columns, ends_at FROM {ident(admin_schema(), 'grants')}")
    return {row[0]: (row[1], row[2], tuple(row[3]) if row[3] is not None else None, row[4]) for row in rows}


def store_reconcile(store, report) -> None:
    """Make the store's views, readers and grants rows what the catalog says (one transaction), and
    report (never change) privileges held through membership in another role and default
    privileges that would hand new tables in catalog schemas to someone."""
    from access.audit import audit_record
    from access.enforcement import EnforcementError, _Warehouse
    from catalog.models import Dataset

    datasets = list(Dataset.objects.filter(store=store).exclude(schema="").select_related("store")
                    .prefetch_related("columns").order_by("schema", "name"))
    if not datasets:
        return
    same_named, users, now = _same_named(datasets), _mapped_users(), timezone.now()
    grants = _live_grants_by_dataset(datasets, now)
    mapped_roles = sorted({user.warehouse_role for user in users})
    schemas = sorted({d.schema for d in datasets})
    drift, applied = [], []
    warehouse = None
    try:
        warehouse = _Warehouse(store)
        try:
            warehouse.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ["governance-catalog views"])
            comments, rows = _view_comments(warehouse), _grant_rows(warehouse)
            held = _view_readers_held(warehouse)
            existing_roles = {r[0] for r in warehouse.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [mapped_roles + sorted(
                    {g.user.warehouse_role for gs in grants.values() for g in gs})])}
            plan, units = Plan(PLATFORM), []
            expected_rows = set()
            for dataset in datasets:
                columns = list(dataset.columns.all())
                if not columns:
                    continue
                name = view_name(dataset, same_named[dataset.name])
                live = grants.get(dataset.pk, [])
                expected_rows |= {g.pk for g in live}
                readers = view_readers(dataset, columns, users=users, live_grants=live, now=now)
                wanted = FINGERPRINT_PREFIX + view_fingerprint(view_sql(dataset, columns, name))
                rows_true = True
                for g in live:
                    if rows.get(g.pk) != (g.user.warehouse_role, dataset_key_name(dataset),
                                          tuple(g.columns) if g.columns else None, g.ends_at):
                        rows_true = False
                        drift.append(("grant_row_missing", f"{admin_schema()}.grants #{g.pk}",
                                      f"grant #{g.pk} of {g.user.username} on {dataset.qualified_name}; written again"))
                whole = {role for role, cols in readers.items() if cols is None and role in existing_roles}
                readers_true = held.get(name, set()) == whole
                if name not in comments:
                    drift.append(("view_missing", f"{governed_schema()}.{name}", dataset.qualified_name))
                elif comments[name] != wanted:
                    drift.append(("view_outdated", f"{governed_schema()}.{name}", dataset.qualified_name))
                elif not readers_true:
                    drift.append(("view_readers", f"{governed_schema()}.{name}",
                                  f"SELECT held by {', '.join(sorted(held.get(name, set()))) or 'nobody'}; "
                                  f"the catalog gives it to {', '.join(sorted(whole)) or 'nobody'}"))
                if name in comments and comments[name] == wanted and rows_true and readers_true:
                    continue
                key = dataset_key(dataset, create=True) if _needs_key(dataset) else None
                units.append((dataset, dataset_plan(dataset, key=key, users=users, same_named=same_named[dataset.name],
                                                    live_grants=live, now=now)))
            for grant_id, (role, dataset_name, columns, ends_at) in sorted(rows.items()):
                if grant_id not in expected_rows:
                    drift.append(("grant_row_unknown", f"{admin_schema()}.grants #{grant_id}",
                                  f"role {role} on {dataset_name} until {ends_at.isoformat()}; deleted"))
                    plan.statements.append(Statement(f"DELETE FROM {ident(admin_schema(), 'grants')} "
                                                     f"WHERE grant_id = {int(grant_id)}", "Not the catalog's", DIALECT))
            if plan.statements or units:
                plan.statements[:0] = infrastructure_statements()
                plan_run(warehouse, plan)
            for dataset, unit in units:
                why = plan_run_isolated(warehouse, unit)
                if why:
                    drift.append(("view_failed", dataset.qualified_name, why))
                else:
                    plan.statements += unit.statements
                    applied.append(dataset.qualified_name)
            for mapped, via, schema, table, privilege in warehouse.execute(
                    MEMBERSHIP_PRIVILEGES_SQL, [mapped_roles, schemas]):
                drift.append(("privilege_via_membership", f"{schema}.{table}",
                              f"{mapped} holds {privilege} as a member of {via}"))
            for owner, schema, _kind, grantee, privilege in warehouse.execute(DEFAULT_PRIVILEGES_SQL, [schemas]):
                where = f"schema {schema}" if schema else "every schema"
                drift.append(("default_privilege", where,
                              f"new tables {owner} makes in {where} give {privilege} to {grantee}"))
            warehouse.commit()
        except EnforcementError:
            raise
        except Exception as exc:
            raise warehouse.fail("reconcile the protected views", exc) from None
    except EnforcementError as exc:
        report.store_errors[store.name] = str(exc)
        logger.warning("Reconciling the views of %s: %s", store.name, exc)
        return
    finally:
        if warehouse is not None:
            warehouse.close()
    report.drift += [(store.name, *entry) for entry in drift]
    if not drift and not applied:
        return
    with transaction.atomic():
        if applied:
            audit_record(actor=None, action="enforcement.applied", obj=store,
                         details=_audit_details(store, plan, f"reconcile {len(applied)} protected views"))
        if drift:
            audit_record(actor=None, action="reconcile.drift", obj=store,
                         reason="What the store holds that the catalog did not give (views are made again).",
                         details={"store": store.name, "count": len(drift),
                                  "findings": [{"kind": k, "subject": s, "detail": d} for k, s, d in drift[:500]]})
