"""Enforcement in a real MariaDB: protected views decided at read time, grants and the reconciler,
checked by connecting as real accounts.

Each test makes its own database ``enfm_<random>`` and accounts ``enfm_<random>``@'%' (dropped at the
end); the catalog's store reaches the server as root. The views and control tables live in the
server-wide ``governed`` and ``governed_catalog`` databases; each test's rows and views there carry
its own random names and are removed at the end.
"""

import hashlib
import hmac
import os
import time
import uuid
from datetime import timedelta

import pymysql
import pytest
import sqlalchemy as sa
from django.utils import timezone

from access.enforcement import grant_apply, grant_enforce, grant_unapply, grants_reconcile
from access.grants import access_request_create, access_request_review, grant_revoke
from access.models import AccessLevel, AuditEvent, Enforcement, Grant
from access.warehouses import mariadb
from access.warehouses.keys import dataset_key
from catalog.connections import connection_save
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

MARIADB_URL = os.environ.get("MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")
SERVER = sa.engine.make_url(MARIADB_URL)
ROWS = [
    (1, "ada.lovelace@example.org", "4111111111111111", "1985-03-14", "12345.67", "secret-one", "ada", "lovelace"),
    (2, "grace.hopper@example.net", "5555555555554444", "1979-12-09", "99.00", "secret-two", "grace", "hopper"),
]
COLUMNS = [
    column_payload("id", type_="INT"),
    column_payload("email", type_="VARCHAR(255)", sensitivity="Sensitive", protection="Masked"),
    column_payload("card", type_="VARCHAR(32)", sensitivity="Sensitive", protection="Tokenized"),
    column_payload("born", type_="DATE", sensitivity="Sensitive", protection="Masked"),
    column_payload("balance", type_="DECIMAL(12,2)", sensitivity="Sensitive", protection="Masked"),
    column_payload("note", type_="VARCHAR(64)", sensitivity="Sensitive", protection="Encrypted"),
    column_payload("first_name", type_="VARCHAR(64)", sensitivity="Sensitive", protection="Masked"),
    column_payload("last_name", type_="VARCHAR(64)", sensitivity="Sensitive", protection="Hashed"),
]


def _server():
    return pymysql.connect(host=SERVER.host or "127.0.0.1", port=SERVER.port or 3306, user=SERVER.username or "root",
                           password=SERVER.password or "", autocommit=True)


def server_execute(*statements):
    conn = _server()
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        conn.close()


def server_rows(statement: str) -> list:
    conn = _server()
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
            return list(cursor.fetchall())
    finally:
        conn.close()


@pytest.fixture
def wh():
    """A database ``enfm_<random>`` with a ``customers`` table; everything of it removed at the end."""
    name = f"enfm_{uuid.uuid4().hex[:10]}"
    table = f"customers_{name[5:]}"  # the view governed.<table> is server-wide: keep it this test's own
    values = ", ".join("(" + ", ".join(f"'{v}'" for v in row) + ")" for row in ROWS)
    server_execute(
        f"CREATE DATABASE `{name}`",
        f"CREATE TABLE `{name}`.`{table}` (id INT PRIMARY KEY, email VARCHAR(255), card VARCHAR(32), born DATE, "
        "balance DECIMAL(12,2), note VARCHAR(64), first_name VARCHAR(64), last_name VARCHAR(64))",
        f"INSERT INTO `{name}`.`{table}` VALUES {values}",
    )
    yield name, table
    server_execute(f"DROP DATABASE IF EXISTS `{name}`", f"DROP VIEW IF EXISTS `governed`.`{table}`")
    for control in ("grants", "dataset_keys", "view_fingerprints"):
        server_execute(f"CREATE DATABASE IF NOT EXISTS governed_catalog")
        try:
            server_execute(f"DELETE FROM governed_catalog.`{control}` WHERE dataset = '{name}.{table}'")
        except Exception:
            pass


@pytest.fixture
def make_account():
    """Accounts ``enfm_<random>``@'%' with a password, dropped at the end."""
    made = []

    def make() -> str:
        name = f"enfm_{uuid.uuid4().hex[:10]}"
        server_execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY 'pw-{name}'")
        made.append(name)
        return name

    yield make
    for name in made:
        server_execute(f"DROP USER IF EXISTS '{name}'@'%'")


def as_account(name: str, statement: str, *, before: str = "") -> list:
    conn = pymysql.connect(host=SERVER.host or "127.0.0.1", port=SERVER.port or 3306, user=name,
                           password=f"pw-{name}", autocommit=True)
    try:
        with conn.cursor() as cursor:
            if before:
                cursor.execute(before)
            cursor.execute(statement)
            return list(cursor.fetchall())
    finally:
        conn.close()


def denied(name: str, statement: str) -> bool:
    try:
        as_account(name, statement)
    except pymysql.err.OperationalError as exc:
        return exc.args[0] in (1142, 1143, 1044)
    return False


@pytest.fixture
def shop(db, wh, platform_engineer, registrar):
    """A prod MariaDB store connected as root, with the customers table registered."""
    database, table = wh
    store = StoreFactory(name="mshop", platform="mysql", environment="prod")
    connection_save(principal=platform_engineer, store=store, host=SERVER.host or "127.0.0.1",
                    port=SERVER.port or 3306, database=database, username=SERVER.username or "root")
    store.customers = dataset_create(principal=registrar, store=store, name=f"{database}.{table}", columns=COLUMNS)
    store.view = f"`governed`.`{table}`"
    store.base = f"`{database}`.`{table}`"
    return store


@pytest.fixture
def approver(db):
    return UserFactory(username="ana", email="ana@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def engineer(db, make_account):
    return UserFactory(username="sam", roles=["software_engineer"], warehouse_role=make_account())


def grant_for(requester, approver, dataset, *, level=AccessLevel.READ, columns=None, hours=4) -> Grant:
    request = access_request_create(principal=requester, dataset=dataset, level=level, duration=hours,
                                    columns=columns, justification="Investigating the refund bug INC-42",
                                    ticket="INC-42")
    access_request_review(principal=approver, request=request, approve=True)
    return Grant.objects.get(request=request)


def hmac_hex(dataset, value: str) -> str:
    return hmac.new(dataset_key(dataset), value.encode(), hashlib.sha256).hexdigest()


def by_id(rows):
    return {row[0]: row for row in rows}


def test_a_grant_unmasks_its_columns_and_the_rest_stays_masked(shop, engineer, approver):
    role = engineer.warehouse_role
    assert denied(role, f"SELECT * FROM {shop.view}")  # nothing before a grant

    grant = grant_for(engineer, approver, shop.customers, columns=["email"])
    assert grant_apply(grant.pk).action == "applied"

    rows = by_id(as_account(role, f"SELECT id, email, card, born, balance, note, first_name, last_name FROM {shop.view}"))
    ada = rows[1]
    assert ada[1] == "ada.lovelace@example.org"  # granted: raw
    assert ada[2] == "tok_" + hmac_hex(shop.customers, "4111111111111111")[:16]  # tokenized: stable token
    assert str(ada[3]) == "1985-01-01"  # masked date keeps the year
    assert str(ada[4]) == "45.67"  # masked number keeps its last digits
    assert ada[5] is None  # encrypted: hidden
    assert ada[6] == "a***"  # masked text keeps its first character
    assert ada[7] == hmac_hex(shop.customers, "lovelace")  # hashed: exactly HMAC-SHA256 with the dataset's key
    assert denied(role, f"SELECT * FROM {shop.base}")  # a read grant gives nothing on the base table
    assert denied(role, "SELECT * FROM governed_catalog.grants")


def test_without_a_grant_row_a_reader_of_the_view_sees_masked_values(shop, engineer, approver):
    grant = grant_for(engineer, approver, shop.customers, columns=["email"])
    grant_apply(grant.pk)
    server_execute(f"DELETE FROM governed_catalog.grants WHERE grant_id = {grant.pk}")

    rows = by_id(as_account(engineer.warehouse_role, f"SELECT id, email FROM {shop.view}"))

    assert rows[1][1] == "***@example.org" and rows[2][1] == "***@example.net"


def test_a_short_grant_masks_again_at_its_end_with_no_worker(shop, engineer, approver):
    role = engineer.warehouse_role
    grant = grant_for(engineer, approver, shop.customers, columns=["email"])
    grant_apply(grant.pk)
    assert by_id(as_account(role, f"SELECT id, email FROM {shop.view}"))[1][1] == "ada.lovelace@example.org"
    # The catalog shortens the grant to end in two seconds and writes its row; then nobody runs.
    Grant.objects.filter(pk=grant.pk).update(ends_at=timezone.now() + timedelta(seconds=2))
    assert grant_enforce(grant.pk, reapply=True).action == "applied"
    ends = Grant.objects.get(pk=grant.pk).ends_at.timestamp()

    # The store waits until its own clock is past ends_at (one statement, no polling), not for a worker.
    as_account(role, f"SELECT SLEEP(GREATEST(0, {ends:.6f} - UNIX_TIMESTAMP(SYSDATE(6))) + 0.01)")
    seen = by_id(as_account(role, f"SELECT id, email FROM {shop.view}"))[1][1]
    assert seen == "***@example.org" and time.time() >= ends
    # Moving the session's clock back does not bring it back.
    rows = as_account(role, f"SELECT id, email FROM {shop.view}", before="SET timestamp = UNIX_TIMESTAMP() - 86400")
    assert by_id(rows)[1][1] == "***@example.org"
    assert Grant.objects.get(pk=grant.pk).enforcement == Enforcement.APPLIED  # no worker ran


def test_a_revoke_masks_at_once_and_takes_the_view_back(shop, engineer, approver):
    role = engineer.warehouse_role
    grant = grant_for(engineer, approver, shop.customers, columns=["email"])
    grant_apply(grant.pk)

    grant_revoke(principal=approver, grant=grant, reason="Done")
    assert grant_unapply(grant.pk).action == "unapplied"

    assert denied(role, f"SELECT * FROM {shop.view}")
    assert not server_rows(f"SELECT 1 FROM governed_catalog.grants WHERE grant_id = {grant.pk}")
    shown = AuditEvent.objects.get(action="grant.unapplied", object_id=str(grant.pk)).details["statements"]
    assert any(text.startswith("DELETE FROM `governed_catalog`.`grants`") for text in shown)


def test_a_column_write_grant_gives_column_privileges_on_the_table(shop, engineer, approver):
    role = engineer.warehouse_role
    grant = grant_for(engineer, approver, shop.customers, level=AccessLevel.WRITE, columns=["email"], hours=2)
    grant_apply(grant.pk)

    as_account(role, f"UPDATE {shop.base} SET email = 'x@example.com' WHERE email = 'ada.lovelace@example.org'")
    assert denied(role, f"UPDATE {shop.base} SET note = 'x'")
    assert denied(role, f"SELECT note FROM {shop.base}")
    assert denied(role, f"DELETE FROM {shop.base}")

    Grant.objects.filter(pk=grant.pk).update(starts_at=timezone.now() - timedelta(seconds=2),
                                             ends_at=timezone.now() - timedelta(seconds=1))
    assert grant_unapply(grant.pk).action == "unapplied"
    assert denied(role, f"SELECT email FROM {shop.base}")


def test_the_key_never_reaches_the_audit_trail(shop, engineer, approver):
    grant = grant_for(engineer, approver, shop.customers, columns=["email"])
    grant_apply(grant.pk)
    key = dataset_key(shop.customers)
    inner, outer = (pad.hex() for pad in __import__("access.warehouses.keys", fromlist=["x"]).hmac_pads(key))

    for event in AuditEvent.objects.all():
        text = str(event.details) + event.reason
        assert key.hex() not in text and inner not in text.lower() and outer not in text.lower()
    shown = AuditEvent.objects.get(action="grant.applied", object_id=str(grant.pk)).details["statements"]
    assert "-- (carries a key; not shown)" in shown


def test_a_mariadb_role_is_never_granted(shop, approver, make_account):
    role = f"enfm_{uuid.uuid4().hex[:10]}"
    server_execute(f"CREATE ROLE `{role}`")
    try:
        user = UserFactory(username="rita", roles=["software_engineer"], warehouse_role=role)
        grant = grant_for(user, approver, shop.customers, columns=["email"])
        outcome = grant_apply(grant.pk)
        assert outcome.action == "failed" and "role" in outcome.message
    finally:
        server_execute(f"DROP ROLE IF EXISTS `{role}`")


def test_reconciler_reports_privileges_the_catalog_did_not_give_and_reapplies_missing_ones(
        shop, engineer, approver, make_account):
    role = engineer.warehouse_role
    grant = grant_for(engineer, approver, shop.customers, columns=["email"])
    grant_apply(grant.pk)
    # By hand: the grant's row is deleted, someone reads the base table, a role hands out the card column.
    group = f"enfm_{uuid.uuid4().hex[:10]}"
    server_execute(
        f"DELETE FROM governed_catalog.grants WHERE grant_id = {grant.pk}",
        f"GRANT SELECT ON {shop.base} TO '{role}'@'%'",
        f"CREATE ROLE `{group}`", f"GRANT SELECT (card) ON {shop.base} TO `{group}`", f"GRANT `{group}` TO '{role}'@'%'",
    )
    try:
        report = grants_reconcile()
    finally:
        server_execute(f"DROP ROLE IF EXISTS `{group}`")

    assert grant.pk in report.reapplied
    found = {(u.role, u.privileges, u.column) for u in report.unexpected}
    assert (role, ("SELECT",), "") in found
    assert (f"{role} (via role {group})", ("SELECT",), "card") in found
    assert by_id(as_account(role, f"SELECT id, email FROM {shop.view}"))[1][1] == "ada.lovelace@example.org"
    assert AuditEvent.objects.filter(action="reconcile.unexpected_privilege").count() == len(report.unexpected)


def test_the_reconciler_regenerates_a_view_after_a_schema_change(shop, engineer, approver, registrar):
    grant = grant_for(engineer, approver, shop.customers, columns=["email"])
    grant_apply(grant.pk)
    database, table = shop.customers.schema, shop.customers.name
    server_execute(f"ALTER TABLE {shop.base} ADD COLUMN phone VARCHAR(32)",
                   f"UPDATE {shop.base} SET phone = '+44 20 7946 0958'")
    dataset_create(principal=registrar, store=shop, name=f"{database}.{table}", columns=COLUMNS + [
        column_payload("phone", type_="VARCHAR(32)", sensitivity="Sensitive", protection="Masked")])

    report = grants_reconcile()

    assert not report.store_errors
    rows = by_id(as_account(engineer.warehouse_role, f"SELECT id, phone FROM {shop.view}"))
    assert rows[1][1] == "+***"
    assert AuditEvent.objects.filter(action="enforcement.plan_applied", dataset=shop.customers).exists()


def test_the_view_decides_once_per_query(shop, engineer, approver):
    """The grants table is read in a one-row derived table joined to the scan, not per row."""
    plan = mariadb.dataset_plan(shop.customers)
    view = next(s.text for s in plan.statements if "VIEW" in s.text)
    assert view.count("governed_catalog`.`grants`") == 1 and "CROSS JOIN (SELECT" in view


def test_applying_a_dataset_by_hand_is_audited_with_the_key_redacted(shop, engineer):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("enforcement_plan", dataset=shop.customers.pk, apply=True, stdout=out)

    assert "Applied" in out.getvalue()
    event = AuditEvent.objects.get(action="enforcement.plan_applied", dataset=shop.customers)
    assert "-- (carries a key; not shown)" in event.details["statements"]
    assert server_rows(f"SELECT COUNT(*) FROM {shop.view}")[0][0] == 2


def test_a_sync_that_changes_a_schema_regenerates_the_view_in_the_same_run(shop, engineer, approver,
                                                                           platform_engineer):
    from catalog.models import Dataset
    from catalog.sync import sync_run_execute, sync_run_request

    database, table = shop.customers.schema, shop.customers.name
    connection_save(principal=platform_engineer, store=shop, host=SERVER.host or "127.0.0.1",
                    port=SERVER.port or 3306, database=database, username=SERVER.username or "root",
                    include_schemas=[database, "governed", "governed_catalog"])
    grant_apply(grant_for(engineer, approver, shop.customers, columns=["email"]).pk)

    def sync():
        run, _ = sync_run_request(principal=platform_engineer, store=shop, enqueue=False)
        return sync_run_execute(run.pk)

    sync()
    server_execute(f"ALTER TABLE {shop.base} ADD COLUMN nickname VARCHAR(40)", f"UPDATE {shop.base} SET nickname = 'Ace'")
    before = AuditEvent.objects.filter(action="enforcement.plan_applied", dataset=shop.customers).count()

    run = sync()  # no reconciler runs: the sync itself makes the view again

    assert run.status == "succeeded", run.error
    rows = by_id(as_account(engineer.warehouse_role, f"SELECT id, nickname, email, card FROM {shop.view}"))
    assert rows[1][1] == "Ace"  # the new column is in the view
    assert rows[1][2] == "ada.lovelace@example.org"  # the grant still unmasks its column
    assert rows[1][3].startswith("tok_")  # and the rest stays protected
    event = AuditEvent.objects.filter(action="enforcement.plan_applied", dataset=shop.customers).latest("id")
    assert AuditEvent.objects.filter(action="enforcement.plan_applied", dataset=shop.customers).count() > before
    assert "after a sync" in event.reason
    # The catalog's own databases are its output, never datasets, even when a pattern includes them.
    assert not Dataset.objects.filter(store=shop, schema__in=["governed", "governed_catalog"]).exists()
