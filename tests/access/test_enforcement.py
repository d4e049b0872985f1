"""Grants enforced in a real PostgreSQL warehouse, checked by connecting as a real role.

Each test builds its own warehouse database (``tests/catalog/warehouses.py``) and LOGIN roles
with random names (dropped at the end); the catalog's store reaches the warehouse as user
postgres. The roles connect over trust authentication on 127.0.0.1, so a denied statement
means the privilege is missing, nothing else. The clock is moved by patching ``timezone.now``.
"""

import socket
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core import mail
from django.utils import timezone

from access import tasks
from access.enforcement import grant_apply, grant_enforce, grant_unapply, grants_reconcile
from access.warehouses import postgresql
from access.grants import access_request_create, access_request_review, grant_revoke, grants_expire_due
from access.models import AccessLevel, AuditEvent, Enforcement, Grant
from catalog.connections import connection_save
from tests.catalog.warehouses import postgres_warehouse
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

PASSWORD = "Warehouse-pw-4f9c2e"  # trust auth ignores it; it must never show anywhere
CUSTOMER_COLUMNS = ["id", "email", "phone", "birth_date", "card_number", "tags"]
ORDER_COLUMNS = ["id", "customer_id", "amount", "created_at"]


@pytest.fixture
def wh():
    with postgres_warehouse() as warehouse:
        yield warehouse


@pytest.fixture
def make_role(wh):
    """LOGIN roles with random names, dropped (with their privileges) at the end."""
    made = []

    def make() -> str:
        name = f"test_role_{uuid.uuid4().hex[:10]}"
        wh.execute(f'CREATE ROLE "{name}" LOGIN')
        made.append(name)
        return name

    yield make
    for name in made:
        wh.execute(f'DROP OWNED BY "{name}"', f'DROP ROLE IF EXISTS "{name}"')


def as_role(wh, role: str, statement: str) -> list:
    """Run one statement connected to the warehouse as ``role`` itself."""
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


@pytest.fixture
def clock(monkeypatch):
    """The catalog's clock, moved forward by the test."""

    class Clock:
        offset = timedelta(0)

        def advance(self, **delta):
            self.offset += timedelta(**delta)

    moved, real_now = Clock(), timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + moved.offset)
    return moved


@pytest.fixture
def shop(db, wh, platform_engineer, registrar):
    """A prod PostgreSQL store connected (as postgres) to the warehouse, with its two tables registered."""
    store = StoreFactory(name="shop", platform="postgresql", environment="prod")
    connection_save(principal=platform_engineer, store=store, password=PASSWORD, **wh.connection_fields)
    customers = dataset_create(principal=registrar, store=store, name="sales.customers",
                               columns=[column_payload(name) for name in CUSTOMER_COLUMNS])
    orders = dataset_create(principal=registrar, store=store, name="sales.orders",
                            columns=[column_payload(name) for name in ORDER_COLUMNS])
    store.customers, store.orders = customers, orders
    postgresql.store_enforce(store)  # the protected views readers query (access.warehouses.postgresql)
    return store


@pytest.fixture
def approver(db):
    return UserFactory(username="ana", email="ana@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def engineer(db, make_role):
    """A software engineer whose profile maps to a real warehouse role; may ask for prod read or write."""
    return UserFactory(username="sam", roles=["software_engineer"], warehouse_role=make_role())


def grant_for(requester, approver, dataset, *, level=AccessLevel.READ, columns=None, hours=4) -> Grant:
    """An approved grant; the enforcement the approval queues after commit is not run."""
    request = access_request_create(principal=requester, dataset=dataset, level=level, duration=hours,
                                    columns=columns, justification="Investigating the refund bug INC-42")
    access_request_review(principal=approver, request=request, approve=True)
    return Grant.objects.get(request=request)


def actions(grant: Grant) -> list[str]:
    return list(AuditEvent.objects.filter(object_type="grant", object_id=str(grant.pk)).order_by("id")
                .values_list("action", flat=True))


def test_approved_grant_lets_the_role_select_the_table(wh, shop, engineer, approver, django_capture_on_commit_callbacks):
    role = engineer.warehouse_role
    assert denied(wh, role, "SELECT email FROM governed.customers")

    with django_capture_on_commit_callbacks(execute=True):  # the approval queues access.grant_enforce
        grant = grant_for(engineer, approver, shop.customers)

    grant.refresh_from_db()
    assert grant.enforcement == Enforcement.APPLIED and grant.enforced_at is not None
    assert len(as_role(wh, role, "SELECT email FROM governed.customers")) == 6
    assert denied(wh, role, "SELECT id FROM sales.orders")  # only the granted table
    assert denied(wh, role, "INSERT INTO sales.customers (id, email) VALUES (99, 'x@example.com')")  # read only
    applied = AuditEvent.objects.get(action="grant.applied", object_id=str(grant.pk))
    assert applied.details["role"] == role and applied.details["privileges"] == ["SELECT"]


def test_expired_grant_is_revoked_in_the_warehouse(wh, shop, engineer, approver, clock):
    grant = grant_for(engineer, approver, shop.customers, hours=2)
    assert grant_apply(grant.pk).action == "applied"
    assert as_role(wh, engineer.warehouse_role, "SELECT count(*) FROM governed.customers") == [(6,)]

    clock.advance(hours=2, minutes=1)
    assert grants_expire_due() == 1
    grant.refresh_from_db()
    assert grant.enforcement == Enforcement.REVOKE_PENDING
    assert tasks.grant_enforce(grant.pk) == "unapplied"

    grant.refresh_from_db()
    assert grant.enforcement == Enforcement.REVOKED
    assert denied(wh, engineer.warehouse_role, "SELECT count(*) FROM governed.customers")
    assert actions(grant)[-3:] == ["grant.applied", "grant.expired", "grant.unapplied"]


def test_revoked_grant_is_revoked_in_the_warehouse(wh, shop, engineer, approver):
    grant = grant_for(engineer, approver, shop.customers)
    tasks.grant_enforce(grant.pk)
    assert not denied(wh, engineer.warehouse_role, "SELECT email FROM governed.customers")

    grant_revoke(principal=approver, grant=grant, reason="Incident closed")
    assert tasks.grant_enforce(grant.pk) == "unapplied"

    grant.refresh_from_db()
    assert grant.enforcement == Enforcement.REVOKED
    assert denied(wh, engineer.warehouse_role, "SELECT email FROM governed.customers")
    assert "grant.unapplied" in actions(grant)


def test_column_grant_lets_the_role_select_only_those_columns(wh, shop, engineer, approver):
    grant = grant_for(engineer, approver, shop.customers, columns=["id", "email"])
    grant_apply(grant.pk)
    role = engineer.warehouse_role

    assert len(as_role(wh, role, "SELECT id, email FROM governed.customers")) == 6
    assert denied(wh, role, "SELECT card_number FROM governed.customers")
    assert denied(wh, role, "SELECT * FROM governed.customers")

    grant_revoke(principal=engineer, grant=grant, reason="Done with it")
    grant_unapply(grant.pk)
    assert denied(wh, role, "SELECT id FROM governed.customers")


def test_write_grant_allows_insert_update_and_delete(wh, shop, engineer, approver):
    grant = grant_for(engineer, approver, shop.orders, level=AccessLevel.WRITE)
    grant_apply(grant.pk)
    role = engineer.warehouse_role

    as_role(wh, role, "INSERT INTO sales.orders (id, customer_id, amount) VALUES (100, 1, 5.00)")
    as_role(wh, role, "UPDATE sales.orders SET amount = 6.00 WHERE id = 100")
    assert as_role(wh, role, "SELECT amount FROM sales.orders WHERE id = 100")[0][0] == 6
    as_role(wh, role, "DELETE FROM sales.orders WHERE id = 100")
    assert denied(wh, role, "TRUNCATE sales.orders")  # nothing beyond what write means
    assert AuditEvent.objects.get(action="grant.applied", object_id=str(grant.pk)).details["privileges"] == [
        "SELECT", "INSERT", "UPDATE", "DELETE"]


def test_user_without_warehouse_role_fails_clearly_and_the_reconciler_applies_once_mapped(
    wh, shop, make_role, approver, django_capture_on_commit_callbacks
):
    unmapped = UserFactory(username="noor", roles=["software_engineer"])
    grant = grant_for(unmapped, approver, shop.customers)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        outcome = grant_apply(grant.pk)

    grant.refresh_from_db()
    assert outcome.action == "failed"
    assert grant.enforcement == Enforcement.APPLY_FAILED and grant.enforcement_attempts == 1
    assert "no warehouse role mapped in the profile" in grant.enforcement_message
    # The approvers: the dataset's owner (the registrar) and the admin.
    assert sorted(m.to[0] for m in mail.outbox) == ["ana@example.com", "dave@example.com"]
    assert "no warehouse role mapped in the profile" in mail.outbox[0].body
    assert actions(grant)[-1] == "grant.apply_failed"

    unmapped.warehouse_role = make_role()
    unmapped.save(update_fields=["warehouse_role"])
    report = grants_reconcile()

    grant.refresh_from_db()
    assert report.applied == [grant.pk]
    assert grant.enforcement == Enforcement.APPLIED and grant.enforcement_message == ""
    assert len(as_role(wh, unmapped.warehouse_role, "SELECT id FROM governed.customers")) == 6


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_warehouse_down_fails_without_the_password_and_the_reconciler_retries(
    wh, shop, engineer, approver, platform_engineer, django_capture_on_commit_callbacks
):
    grant = grant_for(engineer, approver, shop.customers)
    connection_save(principal=platform_engineer, store=shop, password=PASSWORD, port=_closed_port())
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        grant_enforce(grant.pk)

    grant.refresh_from_db()
    assert grant.enforcement == Enforcement.APPLY_FAILED
    assert grant.enforcement_message.startswith("Could not connect to the warehouse of shop")
    assert len(mail.outbox) == 2  # the owner and the admin
    failure = AuditEvent.objects.get(action="grant.apply_failed", object_id=str(grant.pk))
    for text in (grant.enforcement_message, mail.outbox[0].body, str(failure.details), failure.reason):
        assert PASSWORD not in text

    assert grants_reconcile().failed == [grant.pk]  # still down: retried, counted, not given up
    grant.refresh_from_db()
    assert grant.enforcement_attempts == 2

    connection_save(principal=platform_engineer, store=shop, password=PASSWORD, port=wh.connection_fields["port"])
    assert grants_reconcile().applied == [grant.pk]
    assert not denied(wh, engineer.warehouse_role, "SELECT id FROM governed.customers")


def test_reconciler_stops_retrying_at_the_attempt_limit_and_alerts_once_more(
    shop, approver, settings, django_capture_on_commit_callbacks
):
    settings.ACCESS_ENFORCE_MAX_ATTEMPTS = 3
    unmapped = UserFactory(username="noor", roles=["software_engineer"])
    grant = grant_for(unmapped, approver, shop.customers)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        grant_apply(grant.pk)
        assert grants_reconcile().failed == [grant.pk]
        last = grants_reconcile()
        after_limit = grants_reconcile()

    grant.refresh_from_db()
    assert last.gave_up == [grant.pk] and after_limit.gave_up == [grant.pk]
    assert grant.enforcement == Enforcement.APPLY_FAILED and grant.enforcement_attempts == 3
    assert len(mail.outbox) == 2 * 2  # to both approvers: the first failure and the last attempt


def test_an_approver_retries_a_grant_that_gave_up_once_the_cause_is_fixed(
    wh, shop, approver, settings, make_role, django_capture_on_commit_callbacks
):
    from access.enforcement import grant_enforcement_retry

    settings.ACCESS_ENFORCE_MAX_ATTEMPTS = 2
    unmapped = UserFactory(username="noor", roles=["software_engineer"])
    grant = grant_for(unmapped, approver, shop.customers)
    with django_capture_on_commit_callbacks(execute=True):
        grant_apply(grant.pk)
        grants_reconcile()
    assert grants_reconcile().gave_up == [grant.pk]
    with pytest.raises(PermissionDenied):
        grant_enforcement_retry(principal=unmapped, grant=grant)  # not the holder
    unmapped.warehouse_role = make_role()
    unmapped.save(update_fields=["warehouse_role"])

    with django_capture_on_commit_callbacks(execute=True):
        grant_enforcement_retry(principal=approver, grant=grant)

    grant.refresh_from_db()
    assert grant.enforcement == Enforcement.APPLIED
    assert len(as_role(wh, unmapped.warehouse_role, "SELECT id FROM governed.customers")) == 6
    assert "grant.enforcement_retried" in actions(grant)
    with pytest.raises(ValidationError):
        grant_enforcement_retry(principal=approver, grant=grant)  # nothing left to retry


def test_reconciler_reports_privileges_granted_by_hand_and_keeps_them(wh, shop, engineer, approver, make_role):
    grant = grant_for(engineer, approver, shop.customers)
    grant_apply(grant.pk)
    role, stranger = engineer.warehouse_role, make_role()  # the stranger maps to no catalog user
    wh.execute(
        f'GRANT USAGE ON SCHEMA sales TO "{role}"',
        f'GRANT UPDATE ON sales.orders TO "{role}"',
        f'GRANT INSERT ON sales.customers TO "{role}"',
        f'GRANT SELECT (amount) ON sales.orders TO "{role}"',
        f'GRANT SELECT ON sales.orders TO "{stranger}"',
        f'GRANT SELECT ON staging.events TO "{role}"',  # not a catalog table
    )

    report = grants_reconcile()

    found = {(u.table, u.column, u.privileges, u.role) for u in report.unexpected}
    assert found == {
        ("shop.sales.customers", "", ("INSERT",), role),
        ("shop.sales.orders", "", ("UPDATE",), role),
        ("shop.sales.orders", "amount", ("SELECT",), role),
    }
    events = AuditEvent.objects.filter(action="reconcile.unexpected_privilege")
    assert events.count() == 3
    assert {e.details["table"] for e in events} == {"shop.sales.customers", "shop.sales.orders"}
    # Reported, not revoked; and what the catalog gave is untouched.
    as_role(wh, role, "UPDATE sales.orders SET amount = amount WHERE false")
    assert len(as_role(wh, role, "SELECT email FROM governed.customers")) == 6


def test_applying_twice_is_harmless(wh, shop, engineer, approver):
    grant = grant_for(engineer, approver, shop.customers)
    assert grant_apply(grant.pk).action == "applied"
    assert grant_apply(grant.pk).action == "skipped"
    Grant.objects.filter(pk=grant.pk).update(enforcement=Enforcement.PENDING)  # a redelivered task
    assert grant_apply(grant.pk).action == "applied"

    assert len(as_role(wh, engineer.warehouse_role, "SELECT id FROM governed.customers")) == 6
    assert grants_reconcile().unexpected == []
    grant_revoke(principal=engineer, grant=grant, reason="Done with it")
    assert grant_unapply(grant.pk).action == "unapplied"
    Grant.objects.filter(pk=grant.pk).update(enforcement=Enforcement.REVOKE_PENDING)
    assert grant_unapply(grant.pk).action == "unapplied"  # revoking what is gone is fine
    assert denied(wh, engineer.warehouse_role, "SELECT id FROM governed.customers")


def test_grant_that_ended_before_apply_ran_is_not_applied(wh, shop, engineer, approver, clock):
    grant = grant_for(engineer, approver, shop.customers, hours=1)
    clock.advance(hours=2)  # the worker was down until after the grant's end

    outcome = grant_apply(grant.pk)

    grant.refresh_from_db()
    assert outcome.action == "unapplied" and grant.enforcement == Enforcement.REVOKED
    assert denied(wh, engineer.warehouse_role, "SELECT id FROM governed.customers")
    assert "grant.applied" not in actions(grant)


def test_revoking_one_grant_keeps_what_another_live_grant_gives(wh, shop, engineer, approver):
    some = grant_for(engineer, approver, shop.customers, columns=["id"])
    grant_apply(some.pk)
    whole = grant_for(engineer, approver, shop.customers)  # asked later, for more than the first gives
    grant_apply(whole.pk)

    grant_revoke(principal=engineer, grant=whole, reason="Only need the ids now")
    grant_unapply(whole.pk)

    role = engineer.warehouse_role
    assert len(as_role(wh, role, "SELECT id FROM governed.customers")) == 6
    assert denied(wh, role, "SELECT email FROM governed.customers")
    assert grants_reconcile().unexpected == []


def test_reconciler_reapplies_a_grant_revoked_by_hand(wh, shop, engineer, approver):
    grant = grant_for(engineer, approver, shop.customers)
    grant_apply(grant.pk)
    wh.execute(f'REVOKE SELECT ON governed.customers FROM "{engineer.warehouse_role}"',
               "DELETE FROM governed_admin.grants")
    assert denied(wh, engineer.warehouse_role, "SELECT id FROM governed.customers")

    report = grants_reconcile()

    assert {kind for _store, kind, _subject, _detail in report.drift} == {"view_readers", "grant_row_missing"}
    assert len(as_role(wh, engineer.warehouse_role, "SELECT id FROM governed.customers")) == 6
    assert as_role(wh, "postgres", "SELECT grant_id FROM governed_admin.grants") == [(grant.pk,)]


def test_identifiers_are_quoted(wh, shop, approver, registrar):
    """Names are never pasted into SQL: a table and a role with odd characters work, and inject nothing."""
    odd_role = f'test_role_{uuid.uuid4().hex[:8]} "; DROP TABLE sales.orders; --'
    quoted_role = '"' + odd_role.replace('"', '""') + '"'
    wh.execute(f"CREATE ROLE {quoted_role} LOGIN",
               'CREATE TABLE sales."Odd-Name$1" (id INTEGER)', 'INSERT INTO sales."Odd-Name$1" VALUES (1)')
    try:
        dataset = dataset_create(principal=registrar, store=shop, name="sales.Odd-Name$1", columns=[column_payload("id")])
        user = UserFactory(username="odd", roles=["software_engineer"], warehouse_role=odd_role)
        grant = grant_for(user, approver, dataset)
        assert grant_apply(grant.pk).action == "applied"
        assert as_role(wh, odd_role, 'SELECT id FROM governed."Odd-Name$1"') == [(1,)]
        assert as_role(wh, "postgres", "SELECT count(*) FROM sales.orders") == [(5,)]  # still there
    finally:
        wh.execute(f"DROP OWNED BY {quoted_role}", f"DROP ROLE {quoted_role}")


def test_revoke_with_the_warehouse_down_fails_and_the_reconciler_revokes_later(
    wh, shop, engineer, approver, platform_engineer
):
    grant = grant_for(engineer, approver, shop.customers)
    grant_apply(grant.pk)
    grant_revoke(principal=approver, grant=grant, reason="Incident closed")
    connection_save(principal=platform_engineer, store=shop, password=PASSWORD, port=_closed_port())

    assert tasks.grant_enforce(grant.pk) == "failed"
    grant.refresh_from_db()
    assert grant.enforcement == Enforcement.REVOKE_FAILED and grant.enforcement_attempts == 1
    assert actions(grant)[-1] == "grant.unapply_failed"
    assert not denied(wh, engineer.warehouse_role, "SELECT id FROM governed.customers")  # still there: failed loudly

    connection_save(principal=platform_engineer, store=shop, password=PASSWORD, port=wh.connection_fields["port"])
    report = tasks.grants_reconcile()  # the periodic task

    grant.refresh_from_db()
    assert report["revoked"] == [grant.pk] and report["unexpected"] == []
    assert grant.enforcement == Enforcement.REVOKED
    assert denied(wh, engineer.warehouse_role, "SELECT id FROM governed.customers")


def test_a_grant_ends_and_is_revoked_when_its_table_becomes_more_sensitive(
    wh, shop, engineer, approver, registrar, django_capture_on_commit_callbacks
):
    grant = grant_for(engineer, approver, shop.customers)
    tasks.grant_enforce(grant.pk)
    assert not denied(wh, engineer.warehouse_role, "SELECT email FROM governed.customers")

    # A re-registration classes email Restricted: the grant was approved for Regular data. Once it
    # commits, the end-outgrown task revokes the grant, whose revocation queues the warehouse change.
    with django_capture_on_commit_callbacks(execute=True):
        dataset_create(principal=registrar, store=shop, name="sales.customers", columns=[
            column_payload(name, sensitivity="Restricted" if name == "email" else "Regular") for name in CUSTOMER_COLUMNS
        ])

    grant.refresh_from_db()
    assert grant.status == "revoked" and grant.revoked_by is None
    assert grant.revoke_reason == "The data became Restricted; this grant was approved for Regular. Ask again."
    assert grant.enforcement == Enforcement.REVOKED
    assert denied(wh, engineer.warehouse_role, "SELECT email FROM governed.customers")
    assert actions(grant)[-3:] == ["grant.applied", "grant.revoked", "grant.unapplied"]


def test_the_reconciler_ends_a_grant_whose_data_became_more_sensitive_behind_the_catalogs_back(
    wh, shop, engineer, approver
):
    grant = grant_for(engineer, approver, shop.customers)
    tasks.grant_enforce(grant.pk)
    # Changed without the catalog's services (a data migration, an admin's SQL): only the reconciler sees it.
    shop.customers.columns.filter(name="email").update(sensitivity=3)
    type(shop.customers).objects.filter(pk=shop.customers.pk).update(sensitivity=3)

    report = grants_reconcile()

    grant.refresh_from_db()
    assert grant.status == "revoked" and grant.enforcement == Enforcement.REVOKED
    assert grant.pk in report.revoked
    assert denied(wh, engineer.warehouse_role, "SELECT email FROM governed.customers")


def test_apply_refuses_a_grant_whose_data_became_more_sensitive_before_it_ran(wh, shop, engineer, approver):
    grant = grant_for(engineer, approver, shop.customers)  # approved; its apply has not run yet
    shop.customers.columns.filter(name="email").update(sensitivity=3)
    type(shop.customers).objects.filter(pk=shop.customers.pk).update(sensitivity=3)

    assert grant_enforce(grant.pk).action == "unapplied"

    grant.refresh_from_db()
    assert grant.status == "revoked" and grant.enforcement == Enforcement.REVOKED
    assert denied(wh, engineer.warehouse_role, "SELECT email FROM governed.customers")


@pytest.mark.parametrize("mapped", ["public", "PUBLIC", "pg_read_all_data", "postgres"])
def test_a_role_that_is_not_the_users_own_is_never_granted(wh, shop, approver, make_role, mapped):
    """PUBLIC would give every role the table; postgres is the catalog's own connection user."""
    user = UserFactory(username="pia", roles=["software_engineer"], warehouse_role=mapped)
    bystander = make_role()
    grant = grant_for(user, approver, shop.customers)

    outcome = grant_apply(grant.pk)

    assert outcome.action == "failed"
    grant.refresh_from_db()
    assert grant.enforcement == Enforcement.APPLY_FAILED and "not theirs alone" in grant.enforcement_message
    assert denied(wh, bystander, "SELECT email FROM governed.customers")


def test_the_profile_refuses_a_reserved_warehouse_role(db):
    user = UserFactory(username="pia", warehouse_role="public")
    with pytest.raises(ValidationError) as error:
        user.full_clean()
    assert list(error.value.message_dict) == ["warehouse_role"]


def test_a_group_role_or_one_with_members_is_never_granted(wh, shop, approver, make_role):
    """A grant reaches one person: not a role others log in through."""
    member, shared = make_role(), make_role()
    group = f"test_group_{uuid.uuid4().hex[:8]}"
    wh.execute(f'CREATE ROLE "{group}" NOLOGIN', f'GRANT "{group}" TO "{member}"', f'GRANT "{shared}" TO "{member}"')
    try:
        for username, role in (("gus", group), ("lou", shared)):
            user = UserFactory(username=username, roles=["software_engineer"], warehouse_role=role)
            grant = grant_for(user, approver, shop.customers)
            assert grant_apply(grant.pk).action == "failed"
            grant.refresh_from_db()
            assert "is not theirs alone" in grant.enforcement_message
        assert denied(wh, member, "SELECT email FROM governed.customers")
    finally:
        wh.execute(f'DROP OWNED BY "{group}"', f'DROP ROLE IF EXISTS "{group}"')


def test_two_people_cannot_share_a_warehouse_role(db):
    from django.db import IntegrityError, transaction

    UserFactory(username="a1", warehouse_role="analyst_one")
    with pytest.raises(IntegrityError), transaction.atomic():
        UserFactory(username="a2", warehouse_role="analyst_one")
    UserFactory(username="a3", warehouse_role="")  # unmapped users are many
    UserFactory(username="a4", warehouse_role="")


def test_a_write_grant_covers_the_tables_identity_sequence_and_takes_it_back(wh, shop, engineer, approver,
                                                                              registrar):
    wh.execute("CREATE TABLE sales.tickets (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note TEXT)",
               "CREATE TABLE sales.notes (id SERIAL PRIMARY KEY, body TEXT)")
    role = engineer.warehouse_role
    for table in ("tickets", "notes"):
        dataset = dataset_create(principal=registrar, store=shop, name=f"sales.{table}",
                                 columns=[column_payload("id", type_="INTEGER"), column_payload("x")])
        grant = grant_for(engineer, approver, dataset, level=AccessLevel.WRITE)
        assert grant_apply(grant.pk).action == "applied"
        column = "note" if table == "tickets" else "body"
        as_role(wh, role, f"INSERT INTO sales.{table} ({column}) VALUES ('from the grant')")  # the id from its sequence
        assert as_role(wh, role, f"SELECT count(*) FROM sales.{table}") == [(1,)]

        grant_revoke(principal=approver, grant=grant, reason="Done")
        assert grant_unapply(grant.pk).action == "unapplied"
        assert denied(wh, role, f"SELECT nextval(pg_get_serial_sequence('sales.{table}', 'id'))")
        assert denied(wh, role, f"INSERT INTO sales.{table} ({column}) VALUES ('after')")


def test_reconciler_reports_what_everyone_may_read_on_a_managed_table(wh, shop, approver):
    wh.execute("GRANT SELECT ON sales.customers TO PUBLIC", "GRANT UPDATE (amount) ON sales.orders TO PUBLIC")
    try:
        report = grants_reconcile()  # no user has a warehouse role mapped: PUBLIC is still checked
        found = {(u.table, u.column, u.privileges, u.role) for u in report.unexpected}
        assert found == {("shop.sales.customers", "", ("SELECT",), "PUBLIC"), ("shop.sales.orders", "amount", ("UPDATE",), "PUBLIC")}
    finally:
        wh.execute("REVOKE SELECT ON sales.customers FROM PUBLIC", "REVOKE UPDATE (amount) ON sales.orders FROM PUBLIC")
