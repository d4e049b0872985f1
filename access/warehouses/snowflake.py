"""The plan of enforcement in Snowflake stores: masking policies decided at read time, grants.

Snowflake cannot run here, so the catalog produces the statements it would run (shown on the
dataset's page and in the API, checked in tests by parsing them with sqlglot and comparing them with
recorded expectations) and runs them only where ``snowflake-connector-python`` and credentials are
present.

How it works in Snowflake:

- One masking policy per treatment and column type, in ``catalog_governance.policies`` (a masking
  policy returns the type it takes, so a keyed hash or token is only possible on text columns; other
  types get ``NULL`` for those treatments). Each protected column gets the tag ``catalog_column`` =
  ``'<schema>.<table>|<column>'`` and its policy (``ALTER TABLE ... MODIFY COLUMN ... SET MASKING
  POLICY``).
- The policy decides when the query runs: raw when a row of the mapping table
  ``catalog_governance.policies.grants`` (role, column, ``ends_at``) names the current column, or the
  whole table (``'<schema>.<table>|*'``), for a role in the session (``IS_ROLE_IN_SESSION``, which
  takes a mapping table's column) and ends after ``CURRENT_TIMESTAMP()``. A grant unmasks when its row
  is written and stops at ``ends_at`` with nothing running.
- Keyed hashes are HMAC-SHA256 by a secure Python UDF (``hmac_sha256``) with the dataset's key from
  ``dataset_keys`` (Snowflake has no HMAC function and its ``SHA2`` hashes text, not bytes).
- Standing readers get ``GRANT SELECT ON TABLE ... TO ROLE``; a grant adds the same (write: ``INSERT,
  UPDATE, DELETE`` too; Snowflake has no column privileges, the masking policy is what limits columns).
"""

import re

from access.masking import NUMBER_MODULUS, Plan, Statement, Treatment, ValueKind, column_treatment, value_kind
from catalog.models import Platform

DIALECT = "snowflake"
HOME = "catalog_governance.policies"
TAG = f"{HOME}.catalog_column"
TOKEN_PREFIX = "tok_"
_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def ident(name: str) -> str:
    """Unquoted when simple (Snowflake folds it, as the sync read it); quoted otherwise."""
    return name if _SIMPLE.match(name) else '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def table_name(dataset) -> str:
    return ".".join(ident(part) for part in dataset.schema.split(".") + [dataset.name])


def dataset_ref(dataset) -> str:
    return f"{dataset.schema}.{dataset.name}"


def snowflake_type(column) -> str:
    """The policy signature type of a column: VARCHAR, NUMBER, DATE, one of the TIMESTAMPs, or VARIANT."""
    declared = (column.type or "").upper()
    kind = value_kind(column)
    if kind == ValueKind.DATE:
        for variant in ("TIMESTAMP_LTZ", "TIMESTAMP_TZ", "TIMESTAMP_NTZ"):
            if variant in declared.replace("TIMESTAMPLTZ", "TIMESTAMP_LTZ").replace("TIMESTAMPTZ", "TIMESTAMP_TZ"):
                return variant
        return "TIMESTAMP_NTZ" if "TIME" in declared else "DATE"
    if kind == ValueKind.NUMBER:
        return "NUMBER" if not re.search(r"FLOAT|DOUBLE|REAL", declared) else "FLOAT"
    if kind in (ValueKind.EMAIL, ValueKind.TEXT):
        return "VARCHAR"
    return "VARIANT" if re.search(r"VARIANT|OBJECT|ARRAY", declared) else "BINARY"


def policy_key(column) -> tuple[str, str, str]:
    """(treatment, kind, type) of the policy protecting ``column``; hashes and tokens need text."""
    treatment, kind, sf_type = column_treatment(column), value_kind(column), snowflake_type(column)
    if treatment in (Treatment.HASH, Treatment.TOKEN) and sf_type != "VARCHAR":
        treatment = Treatment.NULL
    if treatment == Treatment.PARTIAL and kind == ValueKind.OTHER:
        treatment = Treatment.NULL
    if treatment != Treatment.PARTIAL:
        kind = "any"
    return str(treatment), str(kind), sf_type


def policy_name(key) -> str:
    treatment, kind, sf_type = key
    return f"{HOME}.mask_{treatment}_{kind}_{sf_type.lower()}"


def _masked(key) -> str:
    treatment, kind, _ = key
    hashed = f"{HOME}.hmac_sha256(SPLIT_PART(SYSTEM$GET_TAG_ON_CURRENT_COLUMN('{TAG}'), '|', 1), val)"
    if treatment == Treatment.HASH:
        return hashed
    if treatment == Treatment.TOKEN:
        return f"'{TOKEN_PREFIX}' || LEFT({hashed}, 16)"
    if treatment == Treatment.NULL:
        return "NULL"
    return {
        ValueKind.EMAIL: "CASE WHEN val IS NULL THEN NULL WHEN CONTAINS(val, '@') "
                         "THEN '***@' || SPLIT_PART(val, '@', -1) ELSE '***' END",
        ValueKind.NUMBER: f"MOD(val, {NUMBER_MODULUS})",
        ValueKind.DATE: "DATE_TRUNC('YEAR', val)",
        ValueKind.TEXT: "CASE WHEN val IS NULL THEN NULL ELSE LEFT(val, 1) || '***' END",
    }[kind]


def policy_statement(key) -> Statement:
    granted = (
        f"EXISTS (SELECT 1 FROM {HOME}.grants AS g WHERE g.column_ref IN "
        f"(SYSTEM$GET_TAG_ON_CURRENT_COLUMN('{TAG}'), SPLIT_PART(SYSTEM$GET_TAG_ON_CURRENT_COLUMN('{TAG}'), '|', 1) || '|*') "
        "AND g.ends_at > CURRENT_TIMESTAMP() AND IS_ROLE_IN_SESSION(g.role_name))"
    )
    text = (f"CREATE MASKING POLICY IF NOT EXISTS {policy_name(key)} AS (val {key[2]}) RETURNS {key[2]} -> "
            f"CASE WHEN {granted} THEN val ELSE {_masked(key)} END")
    return Statement(text, f"Masking policy: {key[0]} of {key[1]} values ({key[2]}), raw for a granted role", DIALECT)


def setup_statements() -> list[Statement]:
    return [
        Statement("CREATE DATABASE IF NOT EXISTS catalog_governance", "The catalog's governance database", DIALECT),
        Statement(f"CREATE SCHEMA IF NOT EXISTS {HOME}", "Policies, tags, grants and keys", DIALECT),
        Statement(f"CREATE TAG IF NOT EXISTS {TAG}", "Names each protected column for its policy", DIALECT),
        Statement(f"CREATE TABLE IF NOT EXISTS {HOME}.grants (grant_id NUMBER NOT NULL, role_name VARCHAR NOT NULL, "
                  "column_ref VARCHAR NOT NULL, ends_at TIMESTAMP_LTZ NOT NULL)",
                  "Mapping table the policies read at query time", DIALECT),
        Statement(f"CREATE TABLE IF NOT EXISTS {HOME}.dataset_keys (dataset VARCHAR NOT NULL, hash_key BINARY NOT NULL)",
                  "Keys of the datasets' keyed hashes (no reader has any privilege on it)", DIALECT),
        Statement(
            f"CREATE SECURE FUNCTION IF NOT EXISTS {HOME}.hmac_sha256_bytes(hash_key BINARY, val VARCHAR) RETURNS VARCHAR "
            "LANGUAGE PYTHON RUNTIME_VERSION = '3.11' HANDLER = 'run' AS "
            "$$\nimport hashlib, hmac\ndef run(hash_key, val):\n    if val is None or hash_key is None:\n        return None\n"
            "    return hmac.new(hash_key, val.encode('utf-8'), hashlib.sha256).hexdigest()\n$$",
            "HMAC-SHA256 (Snowflake has no HMAC function)", DIALECT),
        Statement(
            f"CREATE SECURE FUNCTION IF NOT EXISTS {HOME}.hmac_sha256(dataset VARCHAR, val VARCHAR) RETURNS VARCHAR AS "
            f"$$ SELECT {HOME}.hmac_sha256_bytes(k.hash_key, val) FROM {HOME}.dataset_keys AS k WHERE k.dataset = dataset $$",
            "Keyed hash of a value with its dataset's key", DIALECT),
    ]


def key_statement(dataset, key: bytes | None = None) -> Statement:
    value = (key if key is not None else b"\0" * 32).hex()
    ref = literal(dataset_ref(dataset))
    text = (f"MERGE INTO {HOME}.dataset_keys AS k USING (SELECT {ref} AS dataset, TO_BINARY('{value}', 'HEX') AS hash_key) "
            "AS s ON k.dataset = s.dataset WHEN NOT MATCHED THEN INSERT (dataset, hash_key) VALUES (s.dataset, s.hash_key)")
    return Statement(text, f"Key of {dataset.qualified_name}", DIALECT, secret=True)


def _standing(dataset, readers):
    from access.warehouses import standing_readers

    return standing_readers(dataset) if readers is None else readers


def dataset_plan(dataset, *, key: bytes | None = None, readers=None) -> Plan:
    """What enforcing ``dataset`` does in its Snowflake store."""
    plan = Plan(platform=Platform.SNOWFLAKE)
    columns = list(dataset.columns.order_by("position"))
    protected = [c for c in columns if column_treatment(c) != Treatment.AS_IS]
    plan.statements.extend(setup_statements())
    keys = sorted({policy_key(c) for c in protected})
    if any(k[0] in (Treatment.HASH, Treatment.TOKEN) for k in keys):
        plan.statements.append(key_statement(dataset, key))
    plan.statements.extend(policy_statement(k) for k in keys)
    for column in protected:
        target = f"ALTER TABLE {table_name(dataset)} MODIFY COLUMN {ident(column.name)}"
        plan.statements.append(Statement(
            f"{target} SET TAG {TAG} = {literal(dataset_ref(dataset) + '|' + column.name)}",
            f"Name {column.name} for its policy", DIALECT))
        plan.statements.append(Statement(f"{target} SET MASKING POLICY {policy_name(policy_key(column))} FORCE",
                                         f"Protect {column.name} ({column_treatment(column)})", DIALECT))
        if policy_key(column)[0] != column_treatment(column):
            plan.notes.append(f"{column.name}: a {column_treatment(column)} needs a text column in Snowflake; "
                              f"its {snowflake_type(column)} values are hidden (NULL) instead.")
    for role in _standing(dataset, readers):
        plan.statements.append(Statement(f"GRANT SELECT ON TABLE {table_name(dataset)} TO ROLE {ident(role)}",
                                         f"Standing read of {role} (role matrix): masked columns stay masked", DIALECT))
    plan.notes.append("Generated, not run here: Snowflake statements are checked with sqlglot, never against Snowflake.")
    return plan


def store_plan(store) -> Plan:
    plan = Plan(platform=Platform.SNOWFLAKE)
    for dataset in store.datasets.order_by("schema", "name"):
        for statement in dataset_plan(dataset).statements:
            if statement not in plan.statements:
                plan.statements.append(statement)
    plan.notes.append("Generated, not run here: Snowflake statements are checked with sqlglot, never against Snowflake.")
    return plan


def grant_plan(grant, role: str) -> Plan:
    """What applying ``grant`` to ``role`` does."""
    from access.models import AccessLevel

    dataset = grant.dataset
    privileges = "SELECT, INSERT, UPDATE, DELETE" if grant.level >= AccessLevel.WRITE else "SELECT"
    refs = [f"{dataset_ref(dataset)}|{column}" for column in grant.columns] or [f"{dataset_ref(dataset)}|*"]
    ends_at = grant.ends_at.strftime("%Y-%m-%d %H:%M:%S.%f +00:00")
    rows = ", ".join(f"({grant.pk}, {literal(role)}, {literal(ref)}, '{ends_at}'::TIMESTAMP_LTZ)" for ref in refs)
    return Plan(platform=Platform.SNOWFLAKE, statements=[
        Statement(f"GRANT {privileges} ON TABLE {table_name(dataset)} TO ROLE {ident(role)}", "The table", DIALECT),
        Statement(f"DELETE FROM {HOME}.grants WHERE grant_id = {grant.pk}", "Forget the grant's rows", DIALECT),
        Statement(f"INSERT INTO {HOME}.grants (grant_id, role_name, column_ref, ends_at) VALUES {rows}",
                  "Unmask for the role until the grant ends", DIALECT),
    ])


def apply(plan: Plan, store) -> None:
    """Run ``plan`` in the store; here it fails clearly, naming what is missing."""
    from access.enforcement import EnforcementError

    try:
        import snowflake.connector  # noqa: F401
    except ImportError:
        raise EnforcementError(
            "Applying Snowflake plans needs the snowflake-connector-python package, which is not installed, and "
            f"a connection with credentials for {store.name}; the plan can be copied and run by hand.") from None
    raise EnforcementError(f"The store {store.name} has no Snowflake connection with credentials.")
