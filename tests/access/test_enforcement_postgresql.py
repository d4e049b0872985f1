"""Masked reads by default, raw reads by grant, decided by PostgreSQL at read time.

A real warehouse database (``enfpg_<random>``) with the shop of ``tests/catalog/warehouses.py``;
readers are real LOGIN roles (``enfpg_role_<random>``) that connect as themselves. The catalog's
store connects as postgres (the views' owner).
"""

import uuid
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone

from access.enforcement import grant_enforce, grants_reconcile
from access.grants import access_request_create, access_request_review, grant_revoke
from access.masking import NUMBER_MODULUS, Plan
from access.models import AccessLevel, AuditEvent, DatasetKey, Enforcement, Grant
from access.warehouses import postgresql
from catalog.connections import connection_save
from tests.catalog import warehouses
from tests.catalog.warehouses import postgres_warehouse
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

PASSWORD = "Warehouse-pw-enfpg-77"
EMAILS = sorted(row[1] for row in warehouses.CUSTOMERS)


@pytest.fixture
def wh(monkeypatch):
    monkeypatch.setattr(warehouses, "unique_name", lambda: f"enfpg_{uuid.uuid4().hex[:10]}")
    with postgres_warehouse() as warehouse:
        yield warehouse


@pytest.fixture
def make_role(wh):
    made = []

    def make(login=True) -> str:
        name = f"enfpg_role_{uuid.uuid4().hex[:10]}"
        wh.execute(f'CREATE ROLE "{name}"' + (" LOGIN" if login else ""))
        made.append(name)
        return name

    yield make
    for name in reversed(made):
        wh.execute(f'DROP OWNED BY "{name}"', f'DROP ROLE IF EXISTS "{name}"')


def as_role(wh, role: str, statement: str) -> list:
    fields = wh.connection_fields
    with psycopg.connect(host=fields["host"], port=fields["port"], dbname=fields["database"], user=role,
                         autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchall() if cursor.description else []


def denied(wh, role: str, statement: str) -> bool:
    try:
        as_role(wh, role, statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def emails(wh, role) -> list:
    return sorted(row[0] for row in as_role(wh, role, "SELECT email FROM governed.customers"))


@pytest.fixture
def shop(db, wh, platform_engineer, registrar):
    store = StoreFactory(name="shop", platform="postgresql", environment="prod")
    connection_save(principal=platform_engineer, store=store, password=PASSWORD, **wh.connection_fields)
    store.customers = dataset_create(principal=registrar, store=store, name="sales.customers", columns=[
        column_payload("id", type_="INTEGER"),
        column_payload("email", type_="VARCHAR", sensitivity="Sensitive", protection="Masked"),
        column_payload("phone", type_="VARCHAR", sensitivity="Sensitive", protection="Hashed"),
        column_payload("birth_date", type_="DATE", sensitivity="Sensitive", protection="Masked"),
        column_payload("card_number", type_="VARCHAR", sensitivity="Restricted", protection="Encrypted"),
        column_payload("tags", type_="TEXT[]", sensitivity="Sensitive", protection="Tokenized"),
    ])
    return store


@pytest.fixture
def approver(db):
    return UserFactory(username="ana", email="ana@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def analyst(db, make_role):
    """A data analyst: standing read of prod Regular data, so of the view; asks for Sensitive columns."""
    return UserFactory(username="dana", roles=["data_analyst"], warehouse_role=make_role())


def grant_for(requester, approver, dataset, *, columns=None, hours=4, level=AccessLevel.READ) -> Grant:
    request = access_request_create(principal=requester, dataset=dataset, level=level, duration=hours,
                                    columns=columns, ticket="INC-42", justification="Checking the refund bug INC-42")
    access_request_review(principal=approver, request=request, approve=True)
    return Grant.objects.get(request=request)


@pytest.fixture
def enforced(shop, analyst):
    postgresql.store_enforce(shop)
    return shop


def test_plan_needs_no_connection_and_never_shows_the_key(shop):
    plan = postgresql.dataset_plan(shop.customers, key=b"k" * 32)
    assert isinstance(plan, Plan) and plan.platform == "postgresql"
    texts = [s["text"] for s in plan.as_dict()["statements"]]
    assert any(t.startswith('CREATE VIEW "governed"."customers"') for t in texts)
    key_statement = next(s for s in plan.statements if s.secret)
    assert _pad_hex(b"k" * 32) in key_statement.text  # what runs
    assert all(_pad_hex(b"k" * 32) not in t for t in texts)  # what is shown
    assert not DatasetKey.objects.exists()  # a preview makes no key


def _pad_hex(key: bytes) -> str:
    return postgresql._pads(key)[0].hex()


def test_analyst_without_grant_reads_masked_values_and_not_the_base_table(wh, enforced, analyst):
    role = analyst.warehouse_role
    rows = as_role(wh, role, "SELECT id, email, phone, birth_date, card_number, tags FROM governed.customers ORDER BY id")
    key = postgresql.dataset_key(enforced.customers)
    first = rows[0]
    assert first[0] == 1
    assert first[1] == "***@example.org"  # the domain is kept
    assert first[2] == postgresql.hmac_hex(key, "+44 20 7946 0958")  # HMAC-SHA256 with the dataset's key
    assert str(first[3]) == "1985-01-01"  # the year is kept
    assert first[4] is None  # Encrypted and Restricted: hidden
    assert first[5].startswith("tok_") and len(first[5]) == 20
    assert first[5] == as_role(wh, role, "SELECT tags FROM governed.customers WHERE id = 1")[0][0]  # stable
    assert denied(wh, role, "SELECT email FROM sales.customers")
    assert denied(wh, role, "SELECT * FROM governed_admin.grants")
    assert denied(wh, role, "SELECT * FROM governed_admin.dataset_keys")
    view_text = as_role(wh, "postgres", "SELECT pg_get_viewdef('governed.customers'::regclass)")[0][0]
    assert key.hex() not in view_text and _pad_hex(key) not in view_text


def test_grant_unmasks_at_once_and_revoke_masks_at_once(wh, enforced, analyst, approver,
                                                         django_capture_on_commit_callbacks):
    role = analyst.warehouse_role
    assert all(e.startswith("***@") for e in emails(wh, role))
    with django_capture_on_commit_callbacks(execute=True):
        grant = grant_for(analyst, approver, enforced.customers, columns=["email"])
    grant.refresh_from_db()
    assert grant.enforcement == Enforcement.APPLIED
    assert emails(wh, role) == EMAILS
    assert as_role(wh, role, "SELECT card_number FROM governed.customers WHERE id = 1") == [(None,)]  # not granted
    assert denied(wh, role, "SELECT email FROM sales.customers")  # still only through the view
    applied = AuditEvent.objects.get(action="grant.applied", object_id=str(grant.pk))
    assert any("governed_admin" in s for s in applied.details["statements"])

    with django_capture_on_commit_callbacks(execute=True):
        grant_revoke(principal=approver, grant=grant, reason="Done")
    assert all(e.startswith("***@") for e in emails(wh, role))


def test_grant_stops_unmasking_at_its_end_with_no_worker(wh, enforced, analyst, approver):
    role = analyst.warehouse_role
    grant = grant_for(analyst, approver, enforced.customers, columns=["email"])
    ends_at = timezone.now() + timedelta(seconds=2)
    Grant.objects.filter(pk=grant.pk).update(ends_at=ends_at)
    assert grant_enforce(grant.pk).action == "applied"
    assert emails(wh, role) == EMAILS
    # Nothing of the catalog runs from here on: the store's own clock passes ends_at.
    # The store waits until its own clock is past ends_at (one statement, no polling).
    as_role(wh, role, f"SELECT pg_sleep_until(timestamptz '{ends_at.isoformat()}' + interval '10 milliseconds')")
    assert as_role(wh, role, "SELECT statement_timestamp()")[0][0] > ends_at
    assert all(e.startswith("***@") for e in emails(wh, role))
    assert Grant.objects.get(pk=grant.pk).enforcement == Enforcement.APPLIED  # no worker revoked it


def test_member_of_a_granted_role_sees_raw_values(wh, enforced, analyst, approver, make_role):
    grant = grant_for(analyst, approver, enforced.customers, columns=["email"])
    assert grant_enforce(grant.pk).action == "applied"
    member = make_role()  # made a member by hand later (the catalog refuses to grant to shared roles)
    wh.execute(f'GRANT "{analyst.warehouse_role}" TO "{member}"')  # inherits the analyst's privileges
    assert emails(wh, member) == EMAILS
    outsider = make_role()
    assert denied(wh, outsider, "SELECT email FROM governed.customers")


def test_nobody_learns_another_roles_grants_through_the_function(wh, enforced, analyst, approver, make_role):
    grant = grant_for(analyst, approver, enforced.customers, columns=["email"])
    grant_enforce(grant.pk)
    other = make_role()
    wh.execute(f'GRANT USAGE ON SCHEMA governed_admin TO "{other}"',
               f'GRANT EXECUTE ON FUNCTION governed_admin.raw_columns(text, text) TO "{other}"')
    asked = f"SELECT governed_admin.raw_columns('sales.customers', '{analyst.warehouse_role}')"
    assert as_role(wh, other, asked) == [([],)]
    assert as_role(wh, analyst.warehouse_role, asked) == [(["email"],)]


def test_write_grant_still_grants_on_the_base_table(wh, enforced, analyst, approver, make_role):
    engineer = UserFactory(username="sam", roles=["software_engineer"], warehouse_role=make_role())
    grant = grant_for(engineer, approver, enforced.customers, columns=["email"], level=AccessLevel.WRITE, hours=2)
    assert grant_enforce(grant.pk).action == "applied"
    as_role(wh, engineer.warehouse_role, "UPDATE sales.customers SET email = email WHERE false")
    assert sorted(r[0] for r in as_role(wh, engineer.warehouse_role, "SELECT email FROM governed.customers")) == EMAILS


def test_reconciler_remakes_views_deletes_foreign_rows_and_reports_drift(wh, enforced, analyst, make_role):
    group = make_role(login=False)
    wh.execute(
        'DROP VIEW governed.customers',
        "INSERT INTO governed_admin.grants VALUES (999999, '%s', 'sales.customers', NULL, now() + interval '1 day')"
        % analyst.warehouse_role,
        f'GRANT SELECT ON sales.orders TO "{group}"', f'GRANT "{group}" TO "{analyst.warehouse_role}"',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA sales GRANT SELECT ON TABLES TO "{group}"',
    )
    report = grants_reconcile()
    kinds = {(kind, subject) for _store, kind, subject, _detail in report.drift}
    assert ("view_missing", "governed.customers") in kinds
    assert ("grant_row_unknown", "governed_admin.grants #999999") in kinds
    assert ("privilege_via_membership", "sales.orders") in kinds
    assert ("default_privilege", "schema sales") in kinds
    assert all(e.startswith("***@") for e in emails(wh, analyst.warehouse_role))  # remade, row gone
    drift = AuditEvent.objects.get(action="reconcile.drift")
    assert drift.details["count"] == len(report.drift)
    wh.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA sales REVOKE SELECT ON TABLES FROM "{group}"')


def test_reconciler_leaves_a_true_store_alone(wh, enforced, analyst):
    grants_reconcile()
    before = AuditEvent.objects.filter(action="enforcement.applied").count()
    report = grants_reconcile()
    assert report.drift == [] and report.store_errors == {}
    assert AuditEvent.objects.filter(action="enforcement.applied").count() == before


def test_applied_statements_are_audited_without_the_key(enforced):
    event = AuditEvent.objects.filter(action="enforcement.applied").latest("id")
    key = postgresql.dataset_key(enforced.customers)
    text = str(event.details)
    assert event.details["statement_count"] > 10
    assert key.hex() not in text and _pad_hex(key) not in text
    assert "-- (carries a key; not shown)" in event.details["statements"]


def test_schema_change_regenerates_the_view_in_one_transaction(wh, enforced, analyst, registrar):
    from tests.factories import dataset_create as register

    wh.execute("ALTER TABLE sales.customers ADD COLUMN nickname VARCHAR(40)", "UPDATE sales.customers SET nickname = 'Ace'")
    register(principal=registrar, store=enforced, name="sales.customers", columns=[
        column_payload("id", type_="INTEGER"),
        column_payload("email", type_="VARCHAR", sensitivity="Sensitive", protection="Masked"),
        column_payload("nickname", type_="VARCHAR", sensitivity="Sensitive", protection="Masked"),
    ])
    postgresql.dataset_enforce(enforced.customers)
    assert as_role(wh, analyst.warehouse_role, "SELECT nickname FROM governed.customers WHERE id = 1") == [("A***",)]



def test_a_sync_that_changes_a_schema_regenerates_the_view_in_the_same_run(wh, enforced, analyst, platform_engineer):
    from catalog.sync import sync_run_execute, sync_run_request

    def sync():
        run, _ = sync_run_request(principal=platform_engineer, store=enforced, enqueue=False)
        return sync_run_execute(run.pk)

    sync()
    wh.execute("ALTER TABLE sales.customers ADD COLUMN nickname VARCHAR(40)", "UPDATE sales.customers SET nickname = 'Ace'")
    before = AuditEvent.objects.filter(action="enforcement.applied").count()
    run = sync()
    assert not run.events.filter(object_name__startswith="shop.governed").exists()  # the catalog's output is no dataset
    assert as_role(wh, analyst.warehouse_role, "SELECT nickname FROM governed.customers WHERE id = 1") == [("Ace",)]
    assert all(e.startswith("***@") for e in emails(wh, analyst.warehouse_role))  # the protections stay
    event = AuditEvent.objects.filter(action="enforcement.applied").latest("id")
    assert AuditEvent.objects.filter(action="enforcement.applied").count() > before
    assert "after a sync" in event.details["what"] and event.details["failed"] == {}


def test_the_application_role_cannot_rewrite_the_audit_trail(db, enforced, make_role):
    """The catalog's own database: a role with every table privilege still cannot UPDATE, DELETE or
    TRUNCATE audit events; one trigger refuses each (access/migrations/0002, 0012, 0013)."""
    from django.db import connection, transaction

    assert AuditEvent.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname, (tgtype & 8) <> 0, (tgtype & 16) <> 0, (tgtype & 32) <> 0 FROM pg_trigger "
            "WHERE tgrelid = 'access_auditevent'::regclass AND NOT tgisinternal ORDER BY tgname")
        # (name, DELETE, UPDATE, TRUNCATE): nothing refused twice
        triggers = [row for row in cursor.fetchall() if row[1] or row[2] or row[3]]
    assert triggers == [("access_auditevent_no_truncate", False, False, True),
                        ("audit_append_only", True, True, False)]
    app_role = f"enfpg_app_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{app_role}"')
        cursor.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{app_role}"')
    try:
        for statement in ("UPDATE access_auditevent SET reason = 'rewritten'", "DELETE FROM access_auditevent",
                          "TRUNCATE access_auditevent CASCADE"):
            with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending checks of the test's own rows
                cursor.execute(f'SET LOCAL ROLE "{app_role}"')
                cursor.execute(statement)
        assert not AuditEvent.objects.filter(reason="rewritten").exists()
        with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE access_auditevent SET reason = 'rewritten'")  # a row is not rewritten by anyone
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{app_role}"')
            cursor.execute(f'DROP ROLE "{app_role}"')


def _plan_nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def test_the_read_time_decision_runs_once_per_query_not_per_row(wh, enforced, analyst, approver,
                                                                django_capture_on_commit_callbacks):
    """EXPLAIN ANALYZE as the reader: raw_columns() is one CTE evaluated once, each column's test and
    the key pads are InitPlans (run once), and the table scan joins nothing; granted or not."""
    role = analyst.warehouse_role
    for granted in (False, True):
        if granted:
            with django_capture_on_commit_callbacks(execute=True):
                grant_for(analyst, approver, enforced.customers, columns=["email"])
        plan = as_role(wh, role, "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM governed.customers")[0][0][0]["Plan"]
        nodes = list(_plan_nodes(plan))
        assert plan["Node Type"] == "Seq Scan" and plan["Relation Name"] == "customers"
        assert plan["Actual Rows"] == len(warehouses.CUSTOMERS) and plan["Actual Loops"] == 1
        assert not [n for n in nodes if "Join" in n["Node Type"] or n["Node Type"] == "Nested Loop"]
        decisions = [n for n in nodes if n.get("Subplan Name") == "CTE g"]
        assert len(decisions) == 1 and decisions[0]["Actual Loops"] == 1
        init_plans = [n for n in nodes if n.get("Parent Relationship") == "InitPlan" and n is not decisions[0]]
        assert init_plans and all(n["Actual Loops"] == 1 for n in init_plans)
        assert not [n for n in nodes if n.get("Parent Relationship") == "SubPlan"]  # nothing per row
        assert (emails(wh, role) == EMAILS) is granted


def test_masked_numbers_keep_the_same_last_digits_as_every_store_kind(wh, shop, analyst, registrar):
    wh.execute("CREATE TABLE sales.balances (id INTEGER, cents BIGINT, amount NUMERIC(10, 2), ratio DOUBLE PRECISION)",
               "INSERT INTO sales.balances VALUES (1, 123456, 9876.54, 1234.5), (2, -4321, -17.25, NULL)")
    dataset_create(principal=registrar, store=shop, name="sales.balances", columns=[
        column_payload("id", type_="INTEGER"),
        column_payload("cents", type_="BIGINT", sensitivity="Sensitive", protection="Masked"),
        column_payload("amount", type_="NUMERIC", sensitivity="Sensitive", protection="Masked"),
        column_payload("ratio", type_="DOUBLE PRECISION", sensitivity="Sensitive", protection="Masked"),
    ])
    postgresql.store_enforce(shop)
    rows = as_role(wh, analyst.warehouse_role, "SELECT cents, amount, ratio FROM governed.balances ORDER BY id")
    assert NUMBER_MODULUS == 100
    assert [(int(c), str(a), float(r) if r is not None else None) for c, a, r in rows] == [
        (56, "76.54", 34.5), (-21, "-17.25", None)]
    assert isinstance(rows[0][0], int)  # an integer column stays an integer
