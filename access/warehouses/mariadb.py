"""Enforcement in MariaDB and MySQL stores: protected views decided at read time, grants,
column privileges and a reconciler with a drift report.

Beside each catalog table ``<db>.<table>`` the catalog keeps a view ``governed.<table>`` showing each
column as ``access.masking`` says for a reader without raw access. Whether a reader has raw access is
decided *when the query runs*, by the view itself: it is ``SQL SECURITY DEFINER`` (it runs with the
catalog's connection user, so readers need no privilege on the base table) and joins, once per query,
a one-row derived table that reads the catalog's grants table ``governed_catalog.grants``::

    grant_id, grantee, dataset ('<db>.<table>'), column_name ('' = every column), ends_at (Unix seconds)

keeping the rows whose grantee is the invoker (``SUBSTRING_INDEX(USER(), '@', 1)``; inside a definer
view ``CURRENT_USER()`` is the definer and ``CURRENT_ROLE()`` is the definer's role, so neither can
say who reads) or a role granted to the invoker (``mysql.roles_mapping``), and whose ``ends_at``
(Unix seconds) is after ``UNIX_TIMESTAMP(SYSDATE(6))``: the server's clock. Not ``UTC_TIMESTAMP()`` or
``NOW()``, which follow the session's ``SET timestamp`` that any reader may change, nor a local time,
which follows the session's ``time_zone``. A grant unmasks as soon as its row is written and stops at ``ends_at`` to
the second, with no worker running; a revoke deletes the rows at once.

Keyed hashes are HMAC-SHA256 computed in SQL: MariaDB has ``SHA2`` but no ``HMAC`` and no XOR over
binary strings, so the catalog stores the padded keys ``K ^ ipad`` and ``K ^ opad`` in
``governed_catalog.dataset_keys`` (readable by the definer only) and the view computes
``SHA2(CONCAT(opad, UNHEX(SHA2(CONCAT(ipad, value), 256))), 256)``, which is exactly HMAC-SHA256
of the value's utf8mb4 text.

A read grant gives ``SELECT`` on the view (and a row in the grants table); a write grant also gives
``SELECT, INSERT, UPDATE, DELETE`` on the base table (``SELECT, INSERT, UPDATE`` per column for a
column grant: MariaDB has no column-level DELETE). Standing read of the role matrix gives ``SELECT``
on the view only. MariaDB runs DDL and GRANT outside transactions, so the order is chosen to fail
closed: privileges are granted before a grant's row unmasks, and a revoke deletes the rows first.
"""

import logging
from datetime import UTC

from django.views.decorators.debug import sensitive_variables

from access.masking import NUMBER_MODULUS, Plan, Statement, Treatment, ValueKind, column_treatment, value_kind
from access.warehouses import standing_readers
from catalog.models import Platform

logger = logging.getLogger(__name__)

DIALECT = "mysql"
GOVERNED = "governed"
CONTROL = "governed_catalog"
TOKEN_PREFIX = "tok_"
READ_PRIVILEGES = ("SELECT",)
WRITE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
COLUMN_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")
NO_SUCH_GRANT = (1141, 1147)  # REVOKE of a privilege the account does not hold


# Quoting --------------------------------------------------------------------------------------


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def literal(value: str) -> str:
    # Doubling both works whether or not NO_BACKSLASH_ESCAPES is on.
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def account(name: str, host: str | None) -> str:
    """An account (``'user'@'host'``) or a role (no host)."""
    return literal(name) if host is None else f"{literal(name)}@{literal(host)}"


def dataset_ref(dataset) -> str:
    """How the grants and keys tables name a dataset: ``<db>.<table>``."""
    return f"{dataset.schema}.{dataset.name}"


def base_table(dataset) -> str:
    return f"{ident(dataset.schema)}.{ident(dataset.name)}"


def view_table(dataset) -> str:
    return f"{ident(GOVERNED)}.{ident(dataset.name)}"


# The masks, by treatment and kind of value ------------------------------------------------------


def _hmac(value: str) -> str:
    text = f"CAST({value} AS CHAR CHARACTER SET utf8mb4)"
    return f"SHA2(CONCAT(k.outer_pad, UNHEX(SHA2(CONCAT(k.inner_pad, {text}), 256))), 256)"


def masked_expression(column, value: str) -> str:
    """What a reader without raw access sees of ``column`` (``value`` is its SQL expression)."""
    treatment = column_treatment(column)
    if treatment == Treatment.AS_IS:
        return value
    if treatment == Treatment.NULL:
        return "NULL"
    if treatment == Treatment.HASH:
        return _hmac(value)
    if treatment == Treatment.TOKEN:
        return f"CONCAT({literal(TOKEN_PREFIX)}, LEFT({_hmac(value)}, 16))"
    kind = value_kind(column)
    if kind == ValueKind.EMAIL:  # keeps the domain
        return (f"CASE WHEN {value} IS NULL THEN NULL WHEN {value} LIKE '%@%' "
                f"THEN CONCAT('***@', SUBSTRING_INDEX({value}, '@', -1)) ELSE '***' END")
    if kind == ValueKind.NUMBER:  # keeps the last digits (and the fraction), stays a number
        return f"MOD({value}, {NUMBER_MODULUS})"
    if kind == ValueKind.DATE:  # keeps the year: the first day of it
        return f"MAKEDATE(YEAR({value}), 1)"
    if kind == ValueKind.TEXT:  # keeps the first character
        return f"CASE WHEN {value} IS NULL THEN NULL ELSE CONCAT(LEFT({value}, 1), '***') END"
    return "NULL"  # binary and unknown types: nothing partial to show


# Plans ---------------------------------------------------------------------------------------------


def setup_statements() -> list[Statement]:
    """The store-wide part: the governed database, the catalog's control database and its tables."""
    return [
        Statement(f"CREATE DATABASE IF NOT EXISTS {ident(GOVERNED)}", "Database of the protected views", DIALECT),
        Statement(f"CREATE DATABASE IF NOT EXISTS {ident(CONTROL)}",
                  "The catalog's control database (grants and keys; no reader gets any privilege on it)", DIALECT),
        Statement(
            f"CREATE TABLE IF NOT EXISTS {ident(CONTROL)}.`grants` ("
            "grant_id BIGINT NOT NULL, grantee VARCHAR(128) NOT NULL, dataset VARCHAR(255) NOT NULL, "
            "column_name VARCHAR(255) NOT NULL DEFAULT '', ends_at DECIMAL(20,6) NOT NULL, "
            "PRIMARY KEY (grant_id, column_name), KEY grants_lookup (dataset, grantee, ends_at))",
            "Grants table the views read at query time (ends_at: Unix seconds)", DIALECT),
        Statement(
            f"CREATE TABLE IF NOT EXISTS {ident(CONTROL)}.`dataset_keys` ("
            "dataset VARCHAR(255) NOT NULL PRIMARY KEY, inner_pad VARBINARY(64) NOT NULL, "
            "outer_pad VARBINARY(64) NOT NULL)",
            "Padded HMAC keys of the datasets (HMAC-SHA256 from SHA2)", DIALECT),
    ]


def _columns(dataset) -> list:
    return list(dataset.columns.order_by("position"))


def view_statement(dataset, columns=None) -> Statement:
    """``CREATE OR REPLACE`` of the dataset's protected view: one decision per query (the derived
    table ``d`` has one row), the mask of every protected column unless that row says raw."""
    columns = _columns(dataset) if columns is None else columns
    ref = literal(dataset_ref(dataset))
    selected, flags, keyed = [], [], False
    for position, column in enumerate(columns, start=1):
        value = f"t.{ident(column.name)}"
        treatment = column_treatment(column)
        if treatment == Treatment.AS_IS:
            selected.append(f"{value} AS {ident(column.name)}")
            continue
        keyed = keyed or treatment in (Treatment.HASH, Treatment.TOKEN)
        flag = f"raw_{position}"
        flags.append(f"COALESCE(MAX(g.column_name IN ('', {literal(column.name)})), 0) AS {flag}")
        selected.append(f"CASE WHEN d.{flag} = 1 THEN {value} ELSE {masked_expression(column, value)} END "
                        f"AS {ident(column.name)}")
    text = (f"CREATE OR REPLACE SQL SECURITY DEFINER VIEW {view_table(dataset)} AS\nSELECT "
            + ",\n  ".join(selected) + f"\nFROM {base_table(dataset)} AS t")
    if flags:
        invoker = "SUBSTRING_INDEX(USER(), '@', 1)"
        text += (
            "\nCROSS JOIN (SELECT " + ", ".join(flags) + f" FROM {ident(CONTROL)}.`grants` AS g"
            f" WHERE g.dataset = {ref} AND g.ends_at > UNIX_TIMESTAMP(SYSDATE(6)) AND (g.grantee = {invoker}"
            f" OR g.grantee IN (SELECT m.Role FROM mysql.roles_mapping AS m WHERE m.User = {invoker}))) AS d"
        )
    if keyed:
        text += f"\nLEFT JOIN {ident(CONTROL)}.`dataset_keys` AS k ON k.dataset = {ref}"
    return Statement(text, f"Protected view of {dataset.qualified_name}: masked unless granted, decided per query",
                     DIALECT)


@sensitive_variables("key", "inner", "outer")
def key_statement(dataset, key: bytes | None = None) -> Statement:
    """The dataset's padded HMAC keys (a secret statement: shown and audited redacted)."""
    from access.warehouses.keys import hmac_pads

    inner, outer = hmac_pads(key if key is not None else b"\0" * 32)
    text = (f"INSERT INTO {ident(CONTROL)}.`dataset_keys` (dataset, inner_pad, outer_pad) VALUES "
            f"({literal(dataset_ref(dataset))}, UNHEX('{inner.hex()}'), UNHEX('{outer.hex()}')) "
            "ON DUPLICATE KEY UPDATE inner_pad = VALUES(inner_pad), outer_pad = VALUES(outer_pad)")
    return Statement(text, f"HMAC key of {dataset.qualified_name}", DIALECT, secret=True)


def _accounts_of(name: str, accounts: dict | None) -> list[str]:
    if accounts is None:  # a preview: the apply resolves each name to its accounts
        return [account(name, "%")]
    return [account(name, host) for host in accounts.get(name, [])]


def dataset_plan(dataset, *, key: bytes | None = None, accounts: dict | None = None, readers=None) -> Plan:
    """What enforcing ``dataset`` does in its MariaDB/MySQL store. ``key``: the real HMAC key (the
    apply); ``accounts``: ``{user name: [hosts]}`` as the store has them (``None`` in a preview)."""
    plan = Plan(platform=Platform.MYSQL)
    if not dataset.schema:
        plan.notes.append(f"{dataset.qualified_name} names no database; only <database>.<table> is enforced.")
        return plan
    columns = _columns(dataset)
    if not columns:
        plan.notes.append(f"{dataset.qualified_name} has no columns in the catalog; there is no view to make.")
        return plan
    plan.statements.extend(setup_statements())
    if any(column_treatment(c) in (Treatment.HASH, Treatment.TOKEN) for c in columns):
        plan.statements.append(key_statement(dataset, key))
    plan.statements.append(view_statement(dataset, columns))
    for name in standing_readers(dataset) if readers is None else readers:
        for grantee in _accounts_of(name, accounts):
            plan.statements.append(Statement(f"GRANT SELECT ON {view_table(dataset)} TO {grantee}",
                                             f"Standing read of {name} (role matrix): the protected view", DIALECT))
    if accounts is None:
        plan.notes.append("Accounts are shown as 'name'@'%'; the apply grants every host of each user name.")
    plan.notes.append("Readers get no privilege on the base table; a write grant adds its privileges there.")
    return plan


def store_plan(store) -> Plan:
    """The plans of every dataset of ``store``, the store-wide statements once."""
    plan = Plan(platform=Platform.MYSQL)
    seen = set()
    for dataset in store.datasets.exclude(schema="").order_by("schema", "name"):
        if dataset.name in seen:
            plan.notes.append(f"{dataset.qualified_name}: another database has a table of this name; its view "
                              f"{GOVERNED}.{dataset.name} is the first one's.")
            continue
        seen.add(dataset.name)
        part = dataset_plan(dataset)
        for statement in part.statements:
            if statement not in plan.statements:
                plan.statements.append(statement)
        plan.notes.extend(note for note in part.notes if note not in plan.notes)
    return plan


def grant_privileges(grant) -> tuple[tuple[str, ...], bool]:
    """(privileges on the base table, whether per column) a grant gives; reads give none there."""
    from access.models import AccessLevel

    if grant.level >= AccessLevel.WRITE:
        return (COLUMN_PRIVILEGES, True) if grant.columns else (WRITE_PRIVILEGES, False)
    return ((), False)


def _privilege_list(privileges, columns) -> str:
    if not columns:
        return ", ".join(privileges)
    column_list = ", ".join(ident(c) for c in columns)
    return ", ".join(f"{p} ({column_list})" for p in privileges)


def grant_rows_statements(grant, role: str) -> list[Statement]:
    """Replace the grant's rows in the grants table (one per column, or one for every column)."""
    ends_at = f"{grant.ends_at.timestamp():.6f}"
    until = grant.ends_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    rows = ", ".join(
        f"({grant.pk}, {literal(role)}, {literal(dataset_ref(grant.dataset))}, {literal(column)}, {ends_at})"
        for column in (grant.columns or [""])
    )
    return [
        Statement(f"DELETE FROM {ident(CONTROL)}.`grants` WHERE grant_id = {grant.pk}", "Forget the grant's rows", DIALECT),
        Statement(f"INSERT INTO {ident(CONTROL)}.`grants` (grant_id, grantee, dataset, column_name, ends_at) "
                  f"VALUES {rows}", f"Unmask for {role} until {until} UTC", DIALECT),
    ]


def grant_plan(grant, role: str, accounts: dict | None = None) -> Plan:
    """What applying ``grant`` to ``role`` does (a preview when ``accounts`` is None)."""
    plan = Plan(platform=Platform.MYSQL)
    privileges, per_column = grant_privileges(grant)
    for grantee in _accounts_of(role, accounts):
        plan.statements.append(Statement(f"GRANT SELECT ON {view_table(grant.dataset)} TO {grantee}",
                                         "Read the protected view", DIALECT))
        if privileges:
            plan.statements.append(Statement(
                f"GRANT {_privilege_list(privileges, grant.columns if per_column else ())} "
                f"ON {base_table(grant.dataset)} TO {grantee}", "Write grant: privileges on the table", DIALECT))
    plan.statements.extend(grant_rows_statements(grant, role))
    return plan


# Running it ------------------------------------------------------------------------------------------


class Warehouse:
    """A connection to a store's MariaDB/MySQL as the catalog's connection user (the definer of the
    views), with the same secret handling as the PostgreSQL enforcement."""

    @sensitive_variables("password")
    def __init__(self, store):
        from access.enforcement import EnforcementError
        from catalog.connectors import WarehouseError, connector_for, safe_message
        from catalog.secrets import SecretUnavailable, secret_open

        connection = getattr(store, "connection", None) if store.platform == Platform.MYSQL else None
        if connection is None:
            raise EnforcementError(f"The store {store.name} has no MariaDB/MySQL connection any more.")
        try:
            password = secret_open(connection.secret) if connection.secret_id else ""
        except SecretUnavailable as exc:
            raise EnforcementError(str(exc)) from None
        self.store = store
        self._secrets = [password] if password else []
        self._engine = self._raw = None
        try:
            self._engine = connector_for(connection, password).engine()
            self._raw = self._engine.raw_connection()
            self.db = self._raw.driver_connection
            self.db.autocommit(False)
            self.execute("SET SESSION lock_wait_timeout = 10")
        except WarehouseError as exc:
            self.close()
            raise EnforcementError(str(exc)) from None
        except Exception as exc:
            self.close()
            raise EnforcementError(
                f"Could not connect to the warehouse of {store.name}: {safe_message(exc, self._secrets)}") from None

    def fail(self, doing: str, exc: BaseException):
        from access.enforcement import EnforcementError
        from catalog.connectors import safe_message

        return EnforcementError(f"Could not {doing} in {self.store.name}: {safe_message(exc, self._secrets)}")

    def execute(self, text: str, params=None) -> list:
        with self.db.cursor() as cursor:
            cursor.execute(text, params)
            return list(cursor.fetchall()) if cursor.description else []

    def run(self, statements) -> None:
        """Run statements in order and commit (DDL and GRANT commit by themselves in MariaDB)."""
        for statement in statements:
            self.execute(statement.text)
        self.db.commit()

    def revoke(self, text: str) -> None:
        """A REVOKE; one of a privilege the account does not hold is a no-op, as in PostgreSQL."""
        import pymysql

        try:
            self.execute(text)
        except pymysql.err.MySQLError as exc:
            if not exc.args or exc.args[0] not in NO_SUCH_GRANT:
                raise

    def close(self) -> None:
        if self._raw is not None:
            try:
                self._raw.close()
            except Exception:
                logger.warning("Closing the warehouse connection of %s failed", self.store.name)
        if self._engine is not None:
            self._engine.dispose()

    # Reading --------------------------------------------------------------------------------

    def accounts(self, names) -> dict:
        """``{name: [host, ...]}`` of the accounts with these user names (``[None]`` for a role)."""
        names = sorted(set(names))
        if not names:
            return {}
        marks = ", ".join(["%s"] * len(names))
        found = {}
        for user, host, is_role in self.execute(
                f"SELECT User, Host, is_role FROM mysql.user WHERE User IN ({marks}) ORDER BY User, Host", names):
            found.setdefault(user, []).append(None if is_role == "Y" else host)
        return found

    def table_exists(self, dataset) -> bool:
        return bool(self.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                                 [dataset.schema, dataset.name]))

    def fingerprints(self) -> dict:
        try:
            return dict(self.execute(f"SELECT dataset, fingerprint FROM {ident(CONTROL)}.`view_fingerprints`"))
        except Exception:
            self.db.rollback()
            return {}


FINGERPRINTS = Statement(
    f"CREATE TABLE IF NOT EXISTS {ident(CONTROL)}.`view_fingerprints` (dataset VARCHAR(255) NOT NULL PRIMARY KEY, "
    "fingerprint CHAR(64) NOT NULL)", "What each view was made from (the reconciler regenerates changed ones)", DIALECT)


def _fingerprint(plan: Plan) -> str:
    import hashlib

    return hashlib.sha256("\n".join(s.text for s in plan.statements if not s.secret).encode()).hexdigest()


def _apply_plan_of(warehouse: Warehouse, dataset, known: dict | None = None) -> Plan | None:
    """Apply the dataset's plan unless the store already has it (same fingerprint); the plan run, or None."""
    from access.warehouses.keys import dataset_key

    readers = standing_readers(dataset)
    preview = dataset_plan(dataset, readers=readers)
    if not preview.statements:
        return None
    fingerprint = _fingerprint(preview)
    if known is not None and known.get(dataset_ref(dataset)) == fingerprint:
        return None
    keyed = any(s.secret for s in preview.statements)
    plan = dataset_plan(dataset, key=dataset_key(dataset) if keyed else None,
                        accounts=warehouse.accounts(readers), readers=readers)
    plan.statements.append(FINGERPRINTS)
    plan.statements.append(Statement(
        f"INSERT INTO {ident(CONTROL)}.`view_fingerprints` (dataset, fingerprint) VALUES "
        f"({literal(dataset_ref(dataset))}, '{fingerprint}') ON DUPLICATE KEY UPDATE fingerprint = VALUES(fingerprint)",
        "Remember what the view was made from", DIALECT))
    warehouse.run(plan.statements)
    return plan


def _audit_plan(dataset, plan: Plan, *, actor=None, reason: str = "") -> None:
    from access.audit import audit_record

    audit_record(actor=actor, action="enforcement.plan_applied", obj=dataset, dataset=dataset, reason=reason,
                 details={"store": dataset.store.name, "platform": plan.platform,
                          "statements": [s.shown() for s in plan.statements]})


def dataset_apply(dataset, *, actor=None) -> Plan:
    """Make (or regenerate) the dataset's protected view and standing privileges now; audited with the
    statements, the key redacted. Raises ``EnforcementError``."""
    from django.db import transaction

    warehouse = Warehouse(dataset.store)
    try:
        try:
            plan = _apply_plan_of(warehouse, dataset)
        except Exception as exc:
            raise warehouse.fail(f"apply the enforcement of {dataset.qualified_name}", exc) from None
    finally:
        warehouse.close()
    plan = plan or Plan(platform=Platform.MYSQL)
    with transaction.atomic():
        _audit_plan(dataset, plan, actor=actor)
    return plan


def views_regenerate(store, dataset_ids) -> dict:
    """After a sync changed these datasets' schemas: make their views again now, in the same run
    (``CREATE OR REPLACE VIEW`` is atomic: readers see the old view until the new one is there, and
    a worker killed midway leaves the old one working). Views already made from the same catalog
    side are left (fingerprints). Never raises: what could not be made is logged and returned
    (``{qualified name: why}``); the reconciler tries again."""
    from django.db import transaction

    from access.enforcement import EnforcementError, store_is_managed
    from catalog.connectors import safe_message
    from catalog.models import Dataset

    if not store_is_managed(store):
        return {}
    datasets = list(Dataset.objects.filter(store=store, pk__in=list(dataset_ids)).exclude(schema="")
                    .select_related("store").order_by("schema", "name"))
    if not datasets:
        return {}
    made, failed, warehouse = [], {}, None
    try:
        warehouse = Warehouse(store)
        known = warehouse.fingerprints()
        for dataset in datasets:
            try:
                plan = _apply_plan_of(warehouse, dataset, known)
            except Exception as exc:
                warehouse.db.rollback()
                failed[dataset.qualified_name] = (
                    f"Could not make the protected view: {safe_message(exc, warehouse._secrets)}")
                continue
            if plan is not None:
                made.append((dataset, plan))
    except EnforcementError as exc:
        logger.warning("Regenerating the views of %s after a sync: %s", store.name, exc)
        return {d.qualified_name: str(exc) for d in datasets}
    finally:
        if warehouse is not None:
            warehouse.close()
    for name, why in failed.items():
        logger.warning("Regenerating the view of %s after a sync: %s", name, why)
    if made:
        with transaction.atomic():
            for dataset, plan in made:
                _audit_plan(dataset, plan, reason="Regenerated after a sync changed its schema.")
    return failed


def _grant_accounts(warehouse: Warehouse, role: str) -> dict:
    from access.enforcement import EnforcementError

    accounts = warehouse.accounts([role])
    if not accounts.get(role):
        raise EnforcementError(f"The store {warehouse.store.name} has no account named '{role}'.")
    if None in accounts[role]:
        raise EnforcementError(f"'{role}' is a MariaDB role, which other accounts may hold, not one person's "
                               "account. Map their own account.")
    return accounts


def grant_apply(grant, role: str) -> list[str]:
    """Apply ``grant`` for ``role``: the view (made if missing), its privileges, then its rows (which
    unmask). Returns the statements run, as shown in the audit trail. Raises ``EnforcementError``."""
    from access.enforcement import EnforcementError

    dataset = grant.dataset
    if not dataset.schema:
        raise EnforcementError(f"{dataset.qualified_name} names no database; the catalog grants only on "
                               "<database>.<table> in MariaDB/MySQL.")
    warehouse = Warehouse(dataset.store)
    shown = []
    try:
        accounts = _grant_accounts(warehouse, role)
        try:
            made = _apply_plan_of(warehouse, dataset, warehouse.fingerprints())
            if made is not None:
                shown += [s.shown() for s in made.statements]
            plan = grant_plan(grant, role, accounts)
            warehouse.run(plan.statements)
            shown += [s.shown() for s in plan.statements]
        except Exception as exc:
            raise warehouse.fail(f"grant {dataset.qualified_name} to {role}", exc) from None
    finally:
        warehouse.close()
    return shown


def grant_unapply(grant, roles, others) -> list[str]:
    """Take ``grant`` back: its rows first (masked again at once), then its privileges, giving back what
    ``others`` (live applied grants of these roles on the table) still give, and keeping ``SELECT`` on
    the view for standing readers. Raises ``EnforcementError``."""
    dataset = grant.dataset
    warehouse = Warehouse(dataset.store)
    shown = []
    try:
        try:
            forget = Statement(f"DELETE FROM {ident(CONTROL)}.`grants` WHERE grant_id = {grant.pk}",
                               "Mask again: forget the grant's rows", DIALECT)
            if warehouse.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'grants'",
                                 [CONTROL]):
                warehouse.run([forget])
                shown.append(forget.text)
            standing = set(standing_readers(dataset))
            privileges, per_column = grant_privileges(grant)
            accounts = warehouse.accounts(roles)
            for role in sorted(roles):
                for host in accounts.get(role, []):
                    grantee = account(role, host)
                    texts = []
                    if privileges and warehouse.table_exists(dataset):
                        texts.append(f"REVOKE {_privilege_list(privileges, grant.columns if per_column else ())} "
                                     f"ON {base_table(dataset)} FROM {grantee}")
                    mine = [o for o in others if o.user.warehouse_role == role]
                    if role not in standing and not mine:
                        texts.append(f"REVOKE SELECT ON {view_table(dataset)} FROM {grantee}")
                    for text in texts:
                        warehouse.revoke(text)
                        shown.append(text)
                    for other in mine:  # a table-level REVOKE also took what another grant gives
                        again = grant_plan(other, role, {role: [host]})
                        warehouse.run([s for s in again.statements if s.text.startswith("GRANT")])
                        shown += [s.text for s in again.statements if s.text.startswith("GRANT")]
            warehouse.db.commit()
        except Exception as exc:
            raise warehouse.fail(f"revoke {dataset.qualified_name} from {', '.join(sorted(roles))}", exc) from None
    finally:
        warehouse.close()
    return shown


# The reconciler ----------------------------------------------------------------------------------------

BASIC = ("SELECT", "INSERT", "UPDATE", "DELETE")


def _pattern_matches(pattern: str, name: str) -> bool:
    """A ``mysql.db`` database name, where ``%`` and ``_`` are wildcards unless escaped."""
    import re

    regex, escaped = "", False
    for char in pattern:
        if escaped:
            regex, escaped = regex + re.escape(char), False
        elif char == "\\":
            escaped = True
        elif char == "%":
            regex += ".*"
        elif char == "_":
            regex += "."
        else:
            regex += re.escape(char)
    return re.fullmatch(regex, name) is not None


def privileges_held(warehouse: Warehouse, datasets, names) -> dict:
    """What the store gives on the datasets' tables and views, to ``names`` (user names), to roles
    they hold and to PUBLIC, directly, per column, per database or globally:
    ``{(holder, object, column, via): {privilege}}`` where object is ``table:<db>.<t>`` or
    ``view:<t>``, holder a user name or PUBLIC and via '' (directly), 'role R', 'database' or 'global'."""
    names = sorted(set(names))
    marks = lambda values: ", ".join(["%s"] * len(values))  # noqa: E731
    role_of = {}
    if names:
        for user, role in warehouse.execute(
                f"SELECT DISTINCT User, Role FROM mysql.roles_mapping WHERE User IN ({marks(names)})", names):
            role_of.setdefault(role, set()).add(user)
    subjects = names + sorted(role_of) + ["PUBLIC"]

    def holders(subject):
        if subject in role_of and subject not in names:
            return [(user, f"role {subject}") for user in sorted(role_of[subject])]
        return [(subject, "")]

    tables = {(d.schema, d.name): f"table:{d.schema}.{d.name}" for d in datasets}
    views = {(GOVERNED, d.name): f"view:{d.name}" for d in datasets}
    objects = {**tables, **views}
    held = {}

    def add(subject, obj, column, privileges, via=""):
        for holder, through in holders(subject):
            key = (holder, obj, column, via or through)
            held.setdefault(key, set()).update(privileges)

    for user, db, table, privs in warehouse.execute(
            f"SELECT User, Db, Table_name, Table_priv FROM mysql.tables_priv WHERE User IN ({marks(subjects)})", subjects):
        obj = objects.get((db, table))
        if obj and privs:
            add(user, obj, "", {p.upper() for p in str(privs).split(",")})
    for user, db, table, column, privs in warehouse.execute(
            "SELECT User, Db, Table_name, Column_name, Column_priv FROM mysql.columns_priv "
            f"WHERE User IN ({marks(subjects)})", subjects):
        obj = objects.get((db, table))
        if obj and privs:
            add(user, obj, column, {p.upper() for p in str(privs).split(",")})
    for user, db, *flags in warehouse.execute(
            "SELECT User, Db, Select_priv, Insert_priv, Update_priv, Delete_priv FROM mysql.db "
            f"WHERE User IN ({marks(subjects)})", subjects):
        given = {p for p, flag in zip(BASIC, flags) if flag == "Y"}
        for (schema, _), obj in objects.items():
            if given and _pattern_matches(db, schema):
                add(user, obj, "", given, "database")
    for user, *flags in warehouse.execute(
            "SELECT User, Select_priv, Insert_priv, Update_priv, Delete_priv FROM mysql.user "
            f"WHERE User IN ({marks(subjects)})", subjects):
        given = {p for p, flag in zip(BASIC, flags) if flag == "Y"}
        if given:
            for obj in objects.values():
                add(user, obj, "", given, "global")
    return held


def _expected(dataset, live_grants, standing) -> dict:
    """``{(holder, object, column): {privilege}}`` that the catalog gives on the dataset."""
    expected = {}
    table, view = f"table:{dataset.schema}.{dataset.name}", f"view:{dataset.name}"
    for name in standing:
        expected.setdefault((name, view, ""), set()).add("SELECT")
    for grant in live_grants:
        if grant.dataset_id != dataset.pk:
            continue
        role = grant.user.warehouse_role
        expected.setdefault((role, view, ""), set()).add("SELECT")
        privileges, per_column = grant_privileges(grant)
        for column in (grant.columns if per_column else [""]):
            if privileges:
                expected.setdefault((role, table, column), set()).update(privileges)
    return expected


def _grant_present(grant, held: dict, rows: set) -> bool:
    role, dataset = grant.user.warehouse_role, grant.dataset
    if grant.pk not in rows or "SELECT" not in held.get((role, f"view:{dataset.name}", "", ""), set()):
        return False
    privileges, per_column = grant_privileges(grant)
    table = f"table:{dataset.schema}.{dataset.name}"
    on_table = held.get((role, table, "", ""), set())
    if not per_column:
        return set(privileges) <= on_table
    return all(set(privileges) <= on_table | held.get((role, table, column, ""), set()) for column in grant.columns)


def reconcile(store, report, *, live_grants, roles, reapply) -> None:
    """Regenerate the views whose catalog side changed, re-apply live grants whose privileges or rows
    went missing (``reapply(grant_id)``) and report, never revoke, what the store gives that the
    catalog did not (one ``reconcile.unexpected_privilege`` event each)."""
    from django.db import transaction

    from access.audit import audit_record
    from access.enforcement import EnforcementError, UnexpectedPrivilege
    from catalog.connectors import safe_message

    datasets = list(store.datasets.exclude(schema="").order_by("pk"))
    if not datasets:
        return
    made, warehouse = [], None
    try:
        warehouse = Warehouse(store)
        known = warehouse.fingerprints()
        for dataset in datasets:
            try:
                plan = _apply_plan_of(warehouse, dataset, known)
            except Exception as exc:
                warehouse.db.rollback()
                report.store_errors[f"{store.name}: {dataset.qualified_name}"] = (
                    f"Could not apply the protected view: {safe_message(exc, warehouse._secrets)}")
                continue
            if plan is not None:
                made.append((dataset, plan))
        try:
            held = privileges_held(warehouse, datasets, roles)
            rows = {row[0] for row in warehouse.execute(f"SELECT DISTINCT grant_id FROM {ident(CONTROL)}.`grants`")}
        except Exception as exc:
            raise warehouse.fail("read the privileges", exc) from None
    except EnforcementError as exc:
        report.store_errors[store.name] = str(exc)
        logger.warning("Reconciling store %s: %s", store.name, exc)
        return
    finally:
        if warehouse is not None:
            warehouse.close()
    if made:
        with transaction.atomic():
            for dataset, plan in made:
                _audit_plan(dataset, plan, reason="Regenerated by the reconciler.")
    from access.models import Enforcement

    for grant in live_grants:
        if grant.enforcement == Enforcement.APPLIED and not _grant_present(grant, held, rows):
            reapply(grant.pk)
    findings = []
    for dataset in datasets:
        expected = _expected(dataset, live_grants, standing_readers(dataset))
        mine = {f"table:{dataset.schema}.{dataset.name}", f"view:{dataset.name}"}
        for (holder, obj, column, via), privileges in sorted(held.items()):
            if obj not in mine:
                continue
            allowed = set() if via else expected.get((holder, obj, ""), set()) | expected.get((holder, obj, column), set())
            extra = privileges - allowed
            if extra:
                findings.append((dataset, holder, obj, column, via, extra))
    if not findings:
        return
    with transaction.atomic():
        for dataset, holder, obj, column, via, privileges in findings:
            on = f"{GOVERNED}.{dataset.name} (view)" if obj.startswith("view:") else dataset.qualified_name
            role = f"{holder} (via {via})" if via else holder
            finding = UnexpectedPrivilege(store.name, dataset.qualified_name, role, tuple(sorted(privileges)), column)
            report.unexpected.append(finding)
            audit_record(
                actor=None, action="reconcile.unexpected_privilege", obj=dataset, dataset=dataset,
                reason="Not granted by the catalog; reported, not revoked.",
                details={"store": store.name, "table": on, "role": role, "privileges": list(finding.privileges),
                         "column": column},
            )
