"""Grants made real in PostgreSQL warehouses: GRANT on approval, REVOKE at the end, and a
reconciler that makes the database match the catalog.

A grant of read access becomes ``GRANT SELECT ON <schema>.<table> TO <role>`` (with the column
list for a column grant), write access ``SELECT, INSERT, UPDATE, DELETE`` (for a column grant
``SELECT, INSERT, UPDATE`` on those columns: PostgreSQL has no column-level DELETE, and deleting
whole rows is more than the grant gave). ``<role>`` is the user's ``warehouse_role``. The role
also gets ``USAGE`` on the schema, which is left in place at revoke: it shows names, not data,
and the role may hold it for reasons the catalog does not know.

Each change runs in one catalog transaction that holds the grant's row lock while the warehouse
is changed, then records the new state and its audit event; the approvers are mailed after
commit when it fails. Revoking re-grants what the role's other live grants on the same table
still give (a table-level REVOKE also removes column privileges), with those grants' rows
locked, so two grants of one role never undo each other. Everything is idempotent: GRANT of a
held privilege and REVOKE of a missing one are no-ops, and a dropped table or role has nothing
left to revoke.

The reconciler (``grants_reconcile``) applies what is pending, revokes what ended, retries
failures up to ``ACCESS_ENFORCE_MAX_ATTEMPTS``, re-applies grants whose privileges someone
removed by hand, and reports (never revokes) privileges on catalog tables that the catalog did
not give to roles mapped to catalog users. It reads the ACLs from ``pg_class`` and
``pg_attribute`` rather than ``information_schema``, which only shows privileges the connected
role granted or holds.
"""

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.cache import cache
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from access.audit import audit_record
from access.warehouses import postgresql
from access.models import AccessLevel, AuditEvent, Enforcement, Grant, GrantStatus, User, warehouse_role_reserved
from catalog.connectors import WarehouseError, connector_for, safe_message
from catalog.models import Dataset, DataStore, Platform

logger = logging.getLogger(__name__)

READ_PRIVILEGES = ("SELECT",)
WRITE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
COLUMN_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")  # the ones PostgreSQL grants per column
LIVE = (GrantStatus.SCHEDULED, GrantStatus.ACTIVE)
NEEDS_APPLY = (Enforcement.PENDING, Enforcement.APPLY_FAILED)
NEEDS_REVOKE = (
    Enforcement.PENDING, Enforcement.APPLIED, Enforcement.APPLY_FAILED, Enforcement.REVOKE_PENDING,
    Enforcement.REVOKE_FAILED,
)
RECONCILE_LOCK = "access:grants_reconcile"
RECONCILE_LOCK_SECONDS = 30 * 60


def store_is_managed(store) -> bool:
    """A store whose grants are applied in the warehouse: PostgreSQL (here) or MariaDB/MySQL
    (``access/warehouses/mariadb.py``) with a connection."""
    return store.platform in (Platform.POSTGRESQL, Platform.MYSQL) and hasattr(store, "connection")


def _other_kind(store):
    """The module enforcing a managed store that is not PostgreSQL (whose enforcement is this module)."""
    if store.platform == Platform.MYSQL:
        from access.warehouses import mariadb

        return mariadb
    return None


class EnforcementError(Exception):
    """The warehouse could not be changed for a grant; the message is safe to show and mail."""


@dataclass(frozen=True)
class Outcome:
    """What one enforcement call did: ``action`` is applied, unapplied, failed or skipped."""

    grant_id: int
    action: str
    enforcement: str
    message: str = ""
    attempts: int = 0

    @property
    def retryable(self) -> bool:
        return self.action == "failed" and self.attempts < settings.ACCESS_ENFORCE_MAX_ATTEMPTS


# What a grant means in SQL ------------------------------------------------------------------


def grant_privileges(grant: Grant) -> tuple[str, ...]:
    """The privileges a grant gives: on the table, or (column grant) on each of its columns."""
    if grant.level >= AccessLevel.WRITE:
        return COLUMN_PRIVILEGES if grant.columns else WRITE_PRIVILEGES
    return READ_PRIVILEGES


def _table_parts(dataset: Dataset) -> tuple[str, ...]:
    if not dataset.schema:
        # Without a schema PostgreSQL's search path would pick the table: a dataset named "users"
        # could be granted on the catalog's "public.users" under another classification.
        raise EnforcementError(f"{dataset.qualified_name} names no schema; the catalog grants only on "
                               f"<schema>.<table> in PostgreSQL.")
    return (dataset.schema, dataset.name)


def _grant_is_live(grant: Grant, now) -> bool:
    return grant.status in LIVE and grant.starts_at <= now < grant.ends_at


def _grant_has_ended(grant: Grant, now) -> bool:
    return grant.status not in LIVE or grant.ends_at <= now


class _Warehouse:
    """One transaction on a store's PostgreSQL warehouse, with identifiers always quoted."""

    @sensitive_variables("password")
    def __init__(self, store: DataStore):
        from catalog.secrets import SecretUnavailable, secret_open

        connection = getattr(store, "connection", None) if store.platform == Platform.POSTGRESQL else None
        if connection is None:
            raise EnforcementError(f"The store {store.name} has no PostgreSQL connection any more.")
        try:
            password = secret_open(connection.secret) if connection.secret_id else ""
        except SecretUnavailable as exc:
            raise EnforcementError(str(exc)) from None
        self.store = store
        self._secrets = [password] if password else []
        self._engine = None
        self._raw = None
        try:
            self._engine = connector_for(connection, password).engine()
            self._raw = self._engine.raw_connection()
            self.pg = self._raw.driver_connection
            with self.pg.cursor() as cursor:  # never wait long on another session's locks
                cursor.execute("SET LOCAL lock_timeout = '10s'")
                cursor.execute("SET LOCAL statement_timeout = '60s'")
        except WarehouseError as exc:
            self.close()
            raise EnforcementError(str(exc)) from None
        except Exception as exc:
            self.close()
            raise EnforcementError(
                f"Could not connect to the warehouse of {store.name}: {safe_message(exc, self._secrets)}"
            ) from None

    def fail(self, doing: str, exc: BaseException) -> EnforcementError:
        return EnforcementError(f"Could not {doing} in {self.store.name}: {safe_message(exc, self._secrets)}")

    def execute(self, statement, params=None):
        with self.pg.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def commit(self) -> None:
        self.pg.commit()

    def close(self) -> None:
        if self._raw is not None:
            try:
                self._raw.close()  # rolls back whatever was not committed
            except Exception:
                logger.warning("Closing the warehouse connection of %s failed", self.store.name)
        if self._engine is not None:
            self._engine.dispose()

    # Statements -------------------------------------------------------------------------

    def lock_table(self, dataset: Dataset) -> None:
        """Serialize the catalog's own GRANTs on one table (PostgreSQL refuses concurrent ACL
        updates of one object with "tuple concurrently updated")."""
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                     ["governance-catalog grant " + ".".join(_table_parts(dataset))])

    def table_exists(self, dataset: Dataset) -> bool:
        from psycopg import sql

        name = sql.Identifier(*_table_parts(dataset)).as_string(self.pg)
        return self.execute("SELECT to_regclass(%s) IS NOT NULL", [name])[0][0]

    def role_exists(self, role: str) -> bool:
        return bool(self.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]))

    def role_shared(self, role: str) -> str:
        """Why a grant to ``role`` would reach more than its one person, or "" (a LOGIN role that
        no other role is a member of; a role that does not exist is left to the GRANT to say)."""
        rows = self.execute(
            "SELECT r.rolcanlogin, EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid) "
            "FROM pg_roles r WHERE r.rolname = %s", [role])
        if not rows:
            return ""
        can_login, has_members = rows[0]
        if has_members:
            return "other roles are members of it"
        return "" if can_login else "it cannot log in (a group role)"

    def sequences(self, dataset: Dataset) -> list[tuple[str, str]]:
        """The sequences that fill the table's serial and identity columns, as (schema, name):
        an INSERT that leaves such a column to its default needs USAGE on them."""
        from psycopg import sql

        table = sql.Identifier(*_table_parts(dataset)).as_string(self.pg)
        return [tuple(row) for row in self.execute(
            "SELECT n.nspname, s.relname FROM pg_depend d "
            "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace n ON n.oid = s.relnamespace "
            "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
            "AND d.refobjid = to_regclass(%s) AND d.deptype IN ('a', 'i') ORDER BY 1, 2", [table])]

    def grant(self, dataset: Dataset, role: str, privileges, columns=()) -> None:
        from psycopg import sql

        if dataset.schema:
            self.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(dataset.schema), sql.Identifier(role)))
        self.execute(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
            _privilege_list(privileges, columns), sql.Identifier(*_table_parts(dataset)), sql.Identifier(role)))
        if "INSERT" in privileges:
            for sequence in self.sequences(dataset):
                self.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(
                    sql.Identifier(*sequence), sql.Identifier(role)))

    def revoke(self, dataset: Dataset, role: str, privileges, columns=()) -> None:
        from psycopg import sql

        self.execute(sql.SQL("REVOKE {} ON TABLE {} FROM {}").format(
            _privilege_list(privileges, columns), sql.Identifier(*_table_parts(dataset)), sql.Identifier(role)))
        if "INSERT" in privileges:  # another live write grant of the role gives it back (_unapply)
            for sequence in self.sequences(dataset):
                self.execute(sql.SQL("REVOKE USAGE ON SEQUENCE {} FROM {}").format(
                    sql.Identifier(*sequence), sql.Identifier(role)))

    def acls(self, datasets, roles) -> tuple[list, list]:
        """Privileges held directly by ``roles``, or by everyone (``PUBLIC``), on the tables of
        ``datasets`` (not as the owner): ``[(schema, table, role, privilege)]`` and
        ``[(schema, table, column, role, privilege)]``."""
        schemas = [d.schema or "public" for d in datasets]
        names = [d.name for d in datasets]
        roles = sorted(roles)
        tables = self.execute(
            """
            SELECT n.nspname, c.relname, COALESCE(r.rolname, 'PUBLIC'), a.privilege_type
            FROM unnest(%s::text[], %s::text[]) AS t(schema_name, table_name)
            JOIN pg_namespace n ON n.nspname = t.schema_name
            JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
            CROSS JOIN LATERAL aclexplode(c.relacl) AS a
            LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE (a.grantee = 0 OR r.rolname = ANY(%s)) AND a.grantee <> c.relowner
            """,
            [schemas, names, roles],
        )
        columns = self.execute(
            """
            SELECT n.nspname, c.relname, att.attname, COALESCE(r.rolname, 'PUBLIC'), a.privilege_type
            FROM unnest(%s::text[], %s::text[]) AS t(schema_name, table_name)
            JOIN pg_namespace n ON n.nspname = t.schema_name
            JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
            JOIN pg_attribute att ON att.attrelid = c.oid AND att.attnum > 0 AND NOT att.attisdropped
            CROSS JOIN LATERAL aclexplode(att.attacl) AS a
            LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE (a.grantee = 0 OR r.rolname = ANY(%s)) AND a.grantee <> c.relowner
            """,
            [schemas, names, roles],
        )
        return tables, columns


def _privilege_list(privileges, columns):
    from psycopg import sql

    if not columns:
        return sql.SQL(", ").join(sql.SQL(p) for p in privileges)
    column_list = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return sql.SQL(", ").join(sql.SQL("{} ({})").format(sql.SQL(p), column_list) for p in privileges)


# Apply and revoke one grant --------------------------------------------------------------------


def _locked(grant_id: int) -> Grant:
    return Grant.objects.select_for_update(of=("self",)).select_related(
        "dataset__store__connection", "user", "request"
    ).get(pk=grant_id)


def _applied_roles(grant: Grant) -> set[str]:
    """Every role this grant was ever applied to (the user's mapping may have changed since)."""
    roles = AuditEvent.objects.filter(
        object_type="grant", object_id=str(grant.pk), action="grant.applied"
    ).values_list("details__role", flat=True)
    return {role for role in roles if role}


def _details(grant: Grant, role: str = "", **extra) -> dict:
    return {
        "user": grant.user.username, "role": role, "table": grant.dataset.qualified_name,
        "privileges": list(grant_privileges(grant)), "columns": grant.columns, **extra,
    }


def _notify_failure(grant: Grant) -> None:
    from access import tasks

    grant_id = grant.pk
    transaction.on_commit(lambda: tasks.access_notify.delay("enforcement_failed", grant_id=grant_id), robust=True)


def _record_failure(grant: Grant, failed_state: str, message: str, now) -> Outcome:
    grant.enforcement = failed_state
    grant.enforcement_attempts += 1
    grant.enforcement_message = message
    grant.save(update_fields=["enforcement", "enforcement_attempts", "enforcement_message"])
    limit = settings.ACCESS_ENFORCE_MAX_ATTEMPTS
    action = "grant.apply_failed" if failed_state == Enforcement.APPLY_FAILED else "grant.unapply_failed"
    audit_record(actor=None, action=action, obj=grant, dataset=grant.dataset, reason=message,
                 details=_details(grant, grant.user.warehouse_role, attempts=grant.enforcement_attempts,
                                  gave_up=grant.enforcement_attempts >= limit))
    # Approvers hear of the first failure and of the last attempt, not of every retry between.
    if grant.enforcement_attempts in (1, limit):
        _notify_failure(grant)
    logger.warning("Grant %s: %s (attempt %s of %s)", grant.pk, message, grant.enforcement_attempts, limit)
    return Outcome(grant.pk, "failed", grant.enforcement, message, grant.enforcement_attempts)


def _apply(grant: Grant, now, *, reapply: bool = False) -> Outcome:
    role = grant.user.warehouse_role.strip()
    if not role:
        return _record_failure(grant, Enforcement.APPLY_FAILED, (
            f"{grant.user.username} has no warehouse role mapped in the profile; map one and the "
            "reconciler applies the grant."
        ), now)
    connection_user = grant.dataset.store.connection.username
    if warehouse_role_reserved(role) or role.lower() == connection_user.lower():
        return _record_failure(grant, Enforcement.APPLY_FAILED, (
            f"{grant.user.username}'s warehouse role '{role}' is not theirs alone (PUBLIC, a special name, "
            "a pg_* role or the catalog's own connection user); map their own role."
        ), now)
    kind = _other_kind(grant.dataset.store)
    if kind is not None:
        try:
            statements = kind.grant_apply(grant, role)
        except EnforcementError as exc:
            return _record_failure(grant, Enforcement.APPLY_FAILED, str(exc), now)
        return _applied(grant, role, now, reapply, statements=statements)
    warehouse = None
    try:
        warehouse = _Warehouse(grant.dataset.store)
        try:
            shared = warehouse.role_shared(role)
            if shared:
                raise EnforcementError(
                    f"{grant.user.username}'s warehouse role '{role}' is not theirs alone: {shared}. Map their own role."
                )
            warehouse.lock_table(grant.dataset)
            if grant.level >= AccessLevel.WRITE:  # reads go through the protected view only
                warehouse.grant(grant.dataset, role, grant_privileges(grant), grant.columns)
            ran = postgresql.grant_enter(warehouse, grant)
            warehouse.commit()
        except EnforcementError:
            raise
        except Exception as exc:
            raise warehouse.fail(f"grant {grant.dataset.qualified_name} to {role}", exc) from None
    except EnforcementError as exc:
        return _record_failure(grant, Enforcement.APPLY_FAILED, str(exc), now)
    finally:
        if warehouse is not None:
            warehouse.close()
    return _applied(grant, role, now, reapply, statements=[s.shown() for s in ran])


def _applied(grant: Grant, role: str, now, reapply: bool, **extra) -> Outcome:
    grant.enforcement, grant.enforced_at, grant.enforcement_message = Enforcement.APPLIED, now, ""
    grant.enforcement_attempts = 0
    grant.save(update_fields=["enforcement", "enforced_at", "enforcement_message", "enforcement_attempts"])
    audit_record(actor=None, action="grant.applied", obj=grant, dataset=grant.dataset,
                 reason="Privileges were missing in the warehouse." if reapply else "",
                 details=_details(grant, role, reapplied=reapply, **extra))
    return Outcome(grant.pk, "applied", grant.enforcement)


def _unapplied(grant: Grant, roles, others, now, **extra) -> Outcome:
    grant.enforcement, grant.enforced_at, grant.enforcement_message = Enforcement.REVOKED, now, ""
    grant.enforcement_attempts = 0
    grant.save(update_fields=["enforcement", "enforced_at", "enforcement_message", "enforcement_attempts"])
    audit_record(actor=None, action="grant.unapplied", obj=grant, dataset=grant.dataset,
                 details=_details(grant, ", ".join(sorted(roles)), kept_for=[o.pk for o in others], **extra))
    return Outcome(grant.pk, "unapplied", grant.enforcement)


def _still_granted(grant: Grant, roles: set[str], now) -> list[Grant]:
    """The other live grants of these roles on the same table, locked, that are applied: what a
    REVOKE of this grant must give back."""
    others = list(
        Grant.objects.select_for_update(of=("self",)).select_related("user")
        .filter(dataset_id=grant.dataset_id, status__in=LIVE, starts_at__lte=now, ends_at__gt=now,
                user__warehouse_role__in=roles)
        .exclude(pk=grant.pk).order_by("pk")
    )
    return [other for other in others if other.enforcement == Enforcement.APPLIED]


def _unapply(grant: Grant, now) -> Outcome:
    roles = _applied_roles(grant) | ({grant.user.warehouse_role.strip()} - {""})
    kind = _other_kind(grant.dataset.store)
    if kind is not None:
        try:
            others = _still_granted(grant, roles, now)
            statements = kind.grant_unapply(grant, roles, others) if roles else []
        except EnforcementError as exc:
            return _record_failure(grant, Enforcement.REVOKE_FAILED, str(exc), now)
        return _unapplied(grant, roles, others, now, statements=statements)
    warehouse, ran = None, []
    try:
        others = _still_granted(grant, roles, now)
        if roles:
            warehouse = _Warehouse(grant.dataset.store)
            try:
                warehouse.lock_table(grant.dataset)
                ran = postgresql.grant_leave(warehouse, grant, roles, now)
                if warehouse.table_exists(grant.dataset):  # a dropped table holds no privileges
                    for role in sorted(roles):
                        if not warehouse.role_exists(role):
                            continue
                        warehouse.revoke(grant.dataset, role, grant_privileges(grant), grant.columns)
                        for other in others:
                            if other.user.warehouse_role == role and other.level >= AccessLevel.WRITE:
                                warehouse.grant(other.dataset, role, grant_privileges(other), other.columns)
                warehouse.commit()
            except Exception as exc:
                raise warehouse.fail(f"revoke {grant.dataset.qualified_name} from {', '.join(sorted(roles))}", exc) from None
    except EnforcementError as exc:
        return _record_failure(grant, Enforcement.REVOKE_FAILED, str(exc), now)
    finally:
        if warehouse is not None:
            warehouse.close()
    return _unapplied(grant, roles, others, now, statements=[s.shown() for s in ran])


def _skip(grant: Grant, why: str) -> Outcome:
    return Outcome(grant.pk, "skipped", grant.enforcement, why, grant.enforcement_attempts)


def grant_enforce(grant_id: int, *, reapply: bool = False) -> Outcome:
    """Make the warehouse match one grant: apply it while it is live, revoke it once it ended.

    Runs under the grant's row lock; safe to call any number of times. ``reapply`` applies an
    already applied live grant again (the reconciler found its privileges missing).
    """
    with transaction.atomic():
        grant = _locked(grant_id)
        now = timezone.now()
        if grant.enforcement == Enforcement.NOT_MANAGED:
            return _skip(grant, "The store is not managed.")
        if _grant_has_ended(grant, now):
            if grant.enforcement == Enforcement.REVOKED:
                return _skip(grant, "Already revoked.")
            return _unapply(grant, now)
        if not _grant_is_live(grant, now):
            return _skip(grant, "Not started yet.")
        from access.grants import grant_end_outgrown

        if grant_end_outgrown(grant, now):  # the data became more sensitive than was approved
            return _unapply(grant, now)
        if grant.enforcement in NEEDS_APPLY or (reapply and grant.enforcement == Enforcement.APPLIED):
            return _apply(grant, now, reapply=reapply and grant.enforcement == Enforcement.APPLIED)
        return _skip(grant, f"Nothing to do ({grant.get_enforcement_display().lower()}).")


def grant_enforcement_retry(*, principal, grant: Grant, remote_addr: str = "") -> Grant:
    """Start over with a grant whose warehouse change failed (after the cause was fixed): the
    attempts go back to zero and the worker tries again at once. Approvers of the dataset,
    security engineers and admins may do it."""
    from access import policies, tasks

    with transaction.atomic():
        grant = _locked(grant.pk)
        if not policies.can_retry_enforcement(principal, grant):
            raise PermissionDenied("Only an approver of this dataset, a security engineer or an admin retries it.")
        if grant.enforcement not in (Enforcement.APPLY_FAILED, Enforcement.REVOKE_FAILED):
            raise ValidationError({"enforcement": [
                f"Nothing to retry: the warehouse is {grant.get_enforcement_display().lower()}."
            ]})
        previous = grant.enforcement_attempts
        grant.enforcement_attempts = 0
        grant.save(update_fields=["enforcement_attempts"])
        audit_record(actor=principal, action="grant.enforcement_retried", obj=grant, dataset=grant.dataset,
                     remote_addr=remote_addr, details={"state": grant.enforcement, "attempts_before": previous})
        grant_id = grant.pk
        transaction.on_commit(lambda: tasks.grant_enforce.delay(grant_id), robust=True)
    return grant


def grant_apply(grant_id: int) -> Outcome:
    """GRANT a live grant's privileges to its user's warehouse role. A grant that ended in the
    meantime is not applied: it is revoked instead."""
    return grant_enforce(grant_id)


def grant_unapply(grant_id: int) -> Outcome:
    """REVOKE an ended grant's privileges (a live grant is left alone: the catalog still gives it)."""
    with transaction.atomic():
        grant = _locked(grant_id)
        now = timezone.now()
        if grant.enforcement in (Enforcement.NOT_MANAGED, Enforcement.REVOKED):
            return _skip(grant, "Nothing to revoke.")
        if not _grant_has_ended(grant, now):
            return _skip(grant, "The grant is still live.")
        return _unapply(grant, now)


# The reconciler ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnexpectedPrivilege:
    """A privilege on a catalog table, held by a role mapped to a catalog user, that no live grant gives."""

    store: str
    table: str  # the dataset's qualified name
    role: str
    privileges: tuple[str, ...]
    column: str = ""  # empty: on the whole table


@dataclass
class ReconcileReport:
    """What one reconciliation did and found. Unexpected privileges are reported, never revoked."""

    stores: int = 0
    applied: list[int] = field(default_factory=list)
    reapplied: list[int] = field(default_factory=list)
    revoked: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)  # failed at the attempt limit; not retried
    unexpected: list[UnexpectedPrivilege] = field(default_factory=list)
    # (store, kind, subject, detail): views missing or outdated, grants-table rows the catalog did not
    # write, privileges held through another role, default privileges (access.warehouses.postgresql).
    drift: list[tuple[str, str, str, str]] = field(default_factory=list)
    store_errors: dict[str, str] = field(default_factory=dict)
    skipped: bool = False  # another reconciliation was running


def _expected(grants) -> dict:
    """``{(role, schema, table): (table privileges, {column: privileges})}`` that live grants give."""
    expected = {}
    for grant in grants:
        if grant.level < AccessLevel.WRITE:  # reads go through the protected view, not the table
            continue
        key = (grant.user.warehouse_role, grant.dataset.schema or "public", grant.dataset.name)
        table_privileges, column_privileges = expected.setdefault(key, (set(), {}))
        if grant.columns:
            for column in grant.columns:
                column_privileges.setdefault(column, set()).update(grant_privileges(grant))
        else:
            table_privileges.update(grant_privileges(grant))
    return expected


def _grant_present(grant: Grant, held_tables: dict, held_columns: dict) -> bool:
    if grant.level < AccessLevel.WRITE:  # its grants-table row is kept by postgresql.store_reconcile
        return True
    key = (grant.user.warehouse_role, grant.dataset.schema or "public", grant.dataset.name)
    on_table = held_tables.get(key, set())
    if not grant.columns:
        return set(grant_privileges(grant)) <= on_table
    return all(set(grant_privileges(grant)) <= on_table | held_columns.get(key + (column,), set())
               for column in grant.columns)


def _store_grants(store: DataStore):
    return Grant.objects.filter(dataset__store=store).exclude(enforcement=Enforcement.NOT_MANAGED)


def _enforce_into(report: ReconcileReport, grant_id: int, *, reapply: bool = False) -> None:
    try:
        outcome = grant_enforce(grant_id, reapply=reapply)
    except Exception:
        logger.exception("Reconciling grant %s failed", grant_id)
        report.failed.append(grant_id)
        return
    if outcome.action == "applied":
        (report.reapplied if reapply else report.applied).append(grant_id)
    elif outcome.action == "unapplied":
        report.revoked.append(grant_id)
    elif outcome.action == "failed":
        (report.failed if outcome.retryable else report.gave_up).append(grant_id)


def _reconcile_store(store: DataStore, report: ReconcileReport) -> None:
    from access.grants import grants_end_outgrown

    # Grants whose data became more sensitive than was approved end first, so they are revoked below.
    grants_end_outgrown(dataset_ids=Dataset.objects.filter(store=store).values("pk"))
    grants = _store_grants(store)
    now, limit = timezone.now(), settings.ACCESS_ENFORCE_MAX_ATTEMPTS
    retryable = Q(enforcement__in=[Enforcement.PENDING, Enforcement.REVOKE_PENDING]) | Q(
        enforcement__in=[Enforcement.APPLY_FAILED, Enforcement.REVOKE_FAILED], enforcement_attempts__lt=limit
    )
    ended = ~Q(status__in=LIVE) | Q(ends_at__lte=now)
    live = Q(status__in=LIVE, starts_at__lte=now, ends_at__gt=now)
    to_revoke = grants.filter(ended).filter(
        retryable | Q(enforcement=Enforcement.APPLIED)
    ).order_by("pk").values_list("pk", flat=True)
    for grant_id in to_revoke:
        _enforce_into(report, grant_id)
    for grant_id in grants.filter(live).filter(retryable).order_by("pk").values_list("pk", flat=True):
        _enforce_into(report, grant_id)
    report.gave_up.extend(
        grants.filter(enforcement__in=[Enforcement.APPLY_FAILED, Enforcement.REVOKE_FAILED],
                      enforcement_attempts__gte=limit).exclude(pk__in=report.gave_up).values_list("pk", flat=True)
    )

    # Read what the warehouse holds, then compare it with what the catalog gives.
    datasets = list(Dataset.objects.filter(store=store).exclude(schema="").order_by("pk"))  # see _table_parts
    roles = {role for role in User.objects.exclude(warehouse_role="").values_list("warehouse_role", flat=True)
             if not warehouse_role_reserved(role)}
    kind = _other_kind(store)
    if kind is not None:
        live = Q(status__in=LIVE, starts_at__lte=timezone.now(), ends_at__gt=timezone.now())
        kind.reconcile(store, report, roles=roles,
                       live_grants=list(grants.filter(live, user__warehouse_role__in=roles).select_related("user", "dataset")),
                       reapply=lambda grant_id: _enforce_into(report, grant_id, reapply=True))
        return
    # The protected views, their readers and the grants table; drift the catalog did not give.
    postgresql.store_reconcile(store, report)
    if not datasets:  # with no role mapped, grants to PUBLIC are still worth reporting
        return
    warehouse = None
    try:
        warehouse = _Warehouse(store)
        try:
            table_rows, column_rows = warehouse.acls(datasets, roles)
        except Exception as exc:
            raise warehouse.fail("read the privileges", exc) from None
    except EnforcementError as exc:
        report.store_errors[store.name] = str(exc)
        logger.warning("Reconciling store %s: %s", store.name, exc)
        return
    finally:
        if warehouse is not None:
            warehouse.close()
    held_tables, held_columns = {}, {}
    for schema, table, role, privilege in table_rows:
        held_tables.setdefault((role, schema, table), set()).add(privilege)
    for schema, table, column, role, privilege in column_rows:
        held_columns.setdefault((role, schema, table, column), set()).add(privilege)

    now = timezone.now()
    live_grants = list(grants.filter(live, user__warehouse_role__in=roles).select_related("user", "dataset__store"))
    for grant in live_grants:
        if grant.enforcement == Enforcement.APPLIED and not _grant_present(grant, held_tables, held_columns):
            _enforce_into(report, grant.pk, reapply=True)
    expected = _expected(live_grants)
    by_table = {(d.schema or "public", d.name): d for d in datasets}
    findings = []
    for (role, schema, table), privileges in sorted(held_tables.items()):
        extra = privileges - expected.get((role, schema, table), (set(), {}))[0]
        if extra:
            findings.append((by_table[(schema, table)], role, "", extra))
    for (role, schema, table, column), privileges in sorted(held_columns.items()):
        table_expected, columns_expected = expected.get((role, schema, table), (set(), {}))
        extra = privileges - table_expected - columns_expected.get(column, set())
        if extra:
            findings.append((by_table[(schema, table)], role, column, extra))
    if not findings:
        return
    with transaction.atomic():
        for dataset, role, column, privileges in findings:
            finding = UnexpectedPrivilege(store.name, dataset.qualified_name, role, tuple(sorted(privileges)), column)
            report.unexpected.append(finding)
            audit_record(
                actor=None, action="reconcile.unexpected_privilege", obj=dataset, dataset=dataset,
                reason="Not granted by the catalog; reported, not revoked.",
                details={"store": store.name, "table": dataset.qualified_name, "role": role,
                         "privileges": list(finding.privileges), "column": column},
            )


def grants_reconcile() -> ReconcileReport:
    """Make every managed warehouse match the catalog: apply live grants that are not applied,
    revoke ended ones, retry failures up to ``ACCESS_ENFORCE_MAX_ATTEMPTS`` (then they stay
    failed; the approvers were alerted at the last attempt), re-apply grants whose privileges
    went missing, and report privileges on catalog tables that the catalog did not give to roles
    mapped to catalog users (one audit event each; they are not revoked, a person decides).

    One reconciliation at a time (an advisory lock); a second call meanwhile returns ``skipped``.
    """
    report = ReconcileReport()
    with _reconcile_lock() as locked:
        if not locked:
            report.skipped = True
            return report
        stores = DataStore.objects.filter(platform__in=[Platform.POSTGRESQL, Platform.MYSQL],
                                          connection__isnull=False).select_related(
            "connection").order_by("name")
        for store in stores:
            report.stores += 1
            try:
                _reconcile_store(store, report)
            except Exception as exc:
                logger.exception("Reconciling store %s failed", store.name)
                report.store_errors[store.name] = f"Internal error ({type(exc).__name__}); the worker log has the details."
    return report


@contextmanager
def _reconcile_lock():
    """A session advisory lock on the catalog's PostgreSQL (released even if the worker dies,
    with its connection); elsewhere (the embedded SQLite default) a cache key."""
    if db_connection.vendor == "postgresql":
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [RECONCILE_LOCK])
            locked = cursor.fetchone()[0]
        try:
            yield locked
        finally:
            if locked:
                with db_connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [RECONCILE_LOCK])
        return
    locked = cache.add(RECONCILE_LOCK, timezone.now().isoformat(), RECONCILE_LOCK_SECONDS)
    try:
        yield locked
    finally:
        if locked:
            cache.delete(RECONCILE_LOCK)


def enforce_retry_delay(attempts: int) -> timedelta:
    """How long the task waits before retrying after ``attempts`` failures: 1, 2, 4, 8 ... minutes, at most 15."""
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 900))
