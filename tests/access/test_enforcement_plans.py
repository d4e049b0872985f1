"""The enforcement plans of every store kind for one dataset covering every treatment and kind of value.

Snowflake and BigQuery cannot run here: their statements are parsed with sqlglot in their dialect
(no ParseError, and the statement generated back from the tree keeps every name of the original),
their JSON is loaded and checked, and the whole plans are compared with recorded expectations in
``tests/access/plans/`` (``UPDATE_PLANS=1`` rewrites them after a deliberate change; read the diff).
The MariaDB plan is also recorded; it runs for real in test_enforcement_mariadb.py.
"""

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlglot
from sqlglot import exp

from access.masking import Plan, Treatment, ValueKind, column_treatment, value_kind
from access.models import AccessLevel, RolePermission
from access.warehouses import bigquery, dataset_plan, kind_module, mariadb, snowflake, store_plan
from access.warehouses.keys import hmac_pads
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

PLANS = Path(__file__).parent / "plans"
KEY = bytes(range(32))
# Every treatment, and every kind of value under the partial mask.
COLUMNS = [
    column_payload("id", type_="INT"),
    column_payload("email", type_="VARCHAR(255)", sensitivity="Sensitive", protection="Masked"),
    column_payload("phone", type_="VARCHAR(32)", sensitivity="Sensitive", protection="Masked"),
    column_payload("balance", type_="NUMERIC(12,2)", sensitivity="Sensitive", protection="Masked"),
    column_payload("born", type_="DATE", sensitivity="Sensitive", protection="Masked"),
    column_payload("seen_at", type_="TIMESTAMP", sensitivity="Sensitive", protection="Masked"),
    column_payload("photo", type_="BYTES", sensitivity="Sensitive", protection="Masked"),
    column_payload("card", type_="VARCHAR(32)", sensitivity="Sensitive", protection="Tokenized"),
    column_payload("last_name", type_="VARCHAR(64)", sensitivity="Sensitive", protection="Hashed"),
    column_payload("score", type_="INT", sensitivity="Sensitive", protection="Hashed"),
    column_payload("notes", type_="TEXT", sensitivity="Sensitive", protection="Encrypted"),
    column_payload("ssn", type_="VARCHAR(11)", sensitivity="Restricted", protection="None"),
]
# Commands sqlglot keeps as text (it has no tree for them): their expression parts are parsed apart,
# and their shape is checked by a pattern.
COMMANDS = {
    "snowflake": {
        "CREATE MASKING POLICY": r"CREATE MASKING POLICY IF NOT EXISTS catalog_governance\.policies\.mask_\w+ AS \(val \w+\) "
                                 r"RETURNS \w+ -> CASE WHEN EXISTS \(.+\) THEN val ELSE .+ END$",
        "ALTER TABLE": r"ALTER TABLE [\w.]+ MODIFY COLUMN \w+ SET (TAG catalog_governance\.policies\.catalog_column = '[^']+'"
                       r"|MASKING POLICY catalog_governance\.policies\.mask_\w+ FORCE)$",
        "CREATE SECURE FUNCTION": r"CREATE SECURE FUNCTION IF NOT EXISTS catalog_governance\.policies\.hmac_sha256\w*\(.*\$\$$",
        "CREATE TAG": r"CREATE TAG IF NOT EXISTS catalog_governance\.policies\.catalog_column$",
    },
    "bigquery": {
        "CREATE OR REPLACE FUNCTION": r"CREATE OR REPLACE FUNCTION catalog_governance\.\w+\(val STRING\) RETURNS STRING "
                                      r"OPTIONS \(data_governance_type = 'DATA_MASKING'\) AS \(.+\)$",
    },
    "mysql": {
        "GRANT": r"GRANT [A-Z, ()`\w]+ ON `[^`]+`\.`[^`]+` TO '[^']+'(@'[^']+')?$",
    },
}
CANON = {"timestamp_ltz": "timestampltz", "number": "decimal"}
@pytest.fixture
def reader(db):
    """A data scientist whose standing permissions (changed here) read dev Restricted data."""
    RolePermission.objects.filter(role__slug="data_scientist", environment="dev", sensitivity=3).update(
        standing=AccessLevel.READ)
    return UserFactory(username="ada", roles=["data_scientist"], warehouse_role="ada_reader")


def fixture_dataset(platform, registrar):
    store = StoreFactory(name=f"plans_{platform}", platform=platform, environment="dev")
    schema = "shop_project.sales" if platform == "bigquery" else "sales"
    return dataset_create(principal=registrar, store=store, name=f"{schema}.customers", columns=COLUMNS)


def words(text: str) -> set[str]:
    return {CANON.get(w, w) for w in re.findall(r"[a-z_][a-z0-9_$]*", text.lower())}


def assert_parses(text: str, dialect: str) -> None:
    """``text`` parses in ``dialect``; generated back from the tree it is the same tree and keeps every
    word of the original. For what sqlglot keeps as a command, the shape and the expressions inside."""
    tree = sqlglot.parse_one(text, read=dialect)
    if isinstance(tree, exp.Command) or (isinstance(tree, exp.Create) and tree.kind == "TAG"):
        shape = next((pattern for start, pattern in COMMANDS[dialect].items() if text.startswith(start)), None)
        assert shape, f"sqlglot has no tree for: {text[:80]}"
        assert re.match(shape, text, flags=re.S), text
        for body in re.findall(r"-> (.*)$", text, flags=re.S) + re.findall(r"AS \((.*)\)$", text, flags=re.S):
            expression = sqlglot.parse_one(f"SELECT {body}", read=dialect)
            assert sqlglot.parse_one(expression.sql(dialect=dialect), read=dialect) == expression
        return
    if isinstance(tree, exp.Create) and tree.kind == "FUNCTION" and "$$" in text:
        # sqlglot keeps a $$ body as a string and does not write UDF properties back in order: check
        # the shape, then the body itself (Python compiles; SQL parses and round-trips).
        assert re.match(COMMANDS[dialect]["CREATE SECURE FUNCTION"], text, flags=re.S), text
        body = text.split("$$")[1]
        if "LANGUAGE PYTHON" in text:
            compile(body, "udf", "exec")
        else:
            assert_parses(body.strip(), dialect)
        return
    if isinstance(tree, exp.Grant) and dialect == "bigquery":
        # sqlglot reads BigQuery's `roles/...` as an expression it does not write back: check the parts.
        assert tree.args["kind"] == "TABLE" and tree.find(exp.Table) is not None
        assert re.match(r"GRANT `roles/bigquery\.\w+` ON TABLE `[\w.]+` TO \"(user|group|serviceAccount):[^\"]+\"$", text)
        return
    generated = tree.sql(dialect=dialect)
    assert sqlglot.parse_one(generated, read=dialect) == tree, text
    lost = words(text) - words(generated) - ({"mod"} if " % " in generated else set())
    assert not lost, f"{lost} lost in {generated}"


def assert_plan_valid(plan: Plan) -> None:
    for statement in plan.statements:
        if statement.dialect == "json":
            assert isinstance(json.loads(statement.text), dict)
        else:
            assert_parses(statement.text, statement.dialect)


def recorded(name: str, plan: Plan) -> None:
    path = PLANS / f"{name}.json"
    shown = json.dumps(plan.as_dict(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_PLANS"):
        PLANS.mkdir(exist_ok=True)
        path.write_text(shown)
    assert shown == path.read_text(), f"{path} differs; UPDATE_PLANS=1 rewrites it after a deliberate change"


def a_grant(dataset, *, columns, level=AccessLevel.READ):
    return SimpleNamespace(pk=42, dataset=dataset, columns=columns, level=level,
                           ends_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))


def test_the_fixture_covers_every_treatment_and_kind_of_value(registrar):
    dataset = fixture_dataset("snowflake", registrar)
    columns = list(dataset.columns.all())
    assert {column_treatment(c) for c in columns} == set(Treatment.values)
    assert {value_kind(c) for c in columns if column_treatment(c) == Treatment.PARTIAL} == set(ValueKind.values)


@pytest.mark.parametrize("platform", ["mysql", "snowflake", "bigquery"])
def test_every_statement_of_the_plan_parses_in_its_dialect_and_matches_the_recording(platform, registrar, reader):
    dataset = fixture_dataset(platform, registrar)
    module = kind_module(platform)

    plan = module.dataset_plan(dataset, key=KEY)

    assert_plan_valid(plan)
    assert plan.statements and all(s.dialect in ("json", module.DIALECT) for s in plan.statements)
    recorded(f"{platform}_dataset", plan)
    assert dataset_plan(dataset).as_dict() == plan.as_dict()  # the registry; the key never shows


@pytest.mark.parametrize("platform", ["mysql", "snowflake", "bigquery"])
@pytest.mark.parametrize("level", [AccessLevel.READ, AccessLevel.WRITE])
def test_grant_plans_parse_and_match_the_recording(platform, level, registrar):
    dataset = fixture_dataset(platform, registrar)
    module = kind_module(platform)
    for columns, name in (([], "table"), (["email", "card"], "columns")):
        plan = module.grant_plan(a_grant(dataset, columns=columns, level=level), "ada_reader")
        assert_plan_valid(plan)
        recorded(f"{platform}_grant_{AccessLevel(level).name.lower()}_{name}", plan)


def test_the_key_is_in_the_statements_run_and_never_in_the_plan_shown(registrar):
    for platform in ("mysql", "snowflake", "bigquery"):
        dataset = fixture_dataset(platform, registrar)
        plan = kind_module(platform).dataset_plan(dataset, key=KEY)
        secret = [s for s in plan.statements if s.secret]
        inner = hmac_pads(KEY)[0].hex()
        assert secret and all(KEY.hex() in s.text or inner in s.text for s in secret)
        shown = json.dumps(plan.as_dict())
        assert KEY.hex() not in shown and "UNHEX('" not in shown and "FROM_HEX('" not in shown


def test_bigquery_time_limited_grants_are_iam_conditions(registrar):
    dataset = fixture_dataset("bigquery", registrar)
    plan = bigquery.grant_plan(a_grant(dataset, columns=["email"]), "ada@example.com")
    bindings = [json.loads(s.text)["binding"] for s in plan.statements]
    assert all(b["condition"]["expression"] == 'request.time < timestamp("2030-01-02T03:04:05Z")' for b in bindings)
    assert {b["role"] for b in bindings} == {"roles/bigquery.dataViewer", "roles/datacatalog.categoryFineGrainedReader"}
    assert bindings[0]["members"] == ["user:ada@example.com"]


def test_snowflake_policies_decide_by_role_in_session_and_end(registrar):
    dataset = fixture_dataset("snowflake", registrar)
    policies = [s.text for s in snowflake.dataset_plan(dataset).statements if "MASKING POLICY IF NOT EXISTS" in s.text]
    assert policies and all("IS_ROLE_IN_SESSION(g.role_name)" in p and "g.ends_at > CURRENT_TIMESTAMP()" in p
                            for p in policies)
    # A number cannot become a hex hash in Snowflake (a policy returns its input type): hidden, and said so.
    assert any(note.startswith("score:") for note in snowflake.dataset_plan(dataset).notes)


@pytest.mark.parametrize("module", [snowflake, bigquery])
def test_applying_without_the_client_library_fails_naming_what_is_missing(module, registrar):
    from access.enforcement import EnforcementError

    dataset = fixture_dataset(module.DIALECT, registrar)
    with pytest.raises(EnforcementError, match="not installed"):
        module.apply(module.dataset_plan(dataset), dataset.store)


def test_platforms_without_enforcement_have_no_plan(registrar):
    dataset = fixture_dataset("sqlite", registrar)
    assert dataset_plan(dataset) is None and store_plan(dataset.store) is None


def test_store_plan_states_shared_statements_once(registrar):
    dataset = fixture_dataset("mysql", registrar)
    dataset_create(principal=registrar, store=dataset.store, name="sales.orders", columns=COLUMNS[:3])
    plan = mariadb.store_plan(dataset.store)
    texts = [s.text for s in plan.statements]
    assert len(texts) == len(set(texts)) and sum("CREATE OR REPLACE SQL SECURITY DEFINER VIEW" in t for t in texts) == 2


def test_the_dry_run_command_prints_the_statements_with_the_key_redacted(registrar):
    from io import StringIO

    from django.core.management import call_command

    dataset = fixture_dataset("mysql", registrar)
    out = StringIO()
    call_command("enforcement_plan", dataset=dataset.pk, stdout=out)
    text = out.getvalue()
    assert "CREATE OR REPLACE SQL SECURITY DEFINER VIEW `governed`.`customers`" in text
    assert "-- (carries a key; not shown)" in text and "UNHEX('" not in text
