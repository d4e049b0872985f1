"""Log lines crafted by someone who knows how the catalog reads them: comments that hide part of a
statement from the parser (and so a read from the usage and the findings), and literal values that
slip past the scrubbing into stored statements."""

import pytest
from rest_framework.test import APIClient

from monitoring.models import AccessEvent
from monitoring.parsing import statement_access
from monitoring.shippers import shipper_token_create
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create
from tests.monitoring.test_push import pg_line, pg_store, security, shipper  # noqa: F401 (fixtures)

PUSH = "/api/v1/monitoring/logs/"


@pytest.mark.parametrize("statement", [
    "SELECT id -- just the ids\n, email FROM shop.customers",
    "SELECT id /* just the ids */, email FROM shop.customers",
])
def test_a_comment_does_not_hide_a_column_read(shipper, statement):
    response = shipper.post(PUSH, [pg_line(21, statement)], format="json")
    assert response.status_code == 200 and response.json()["recorded"] == 1, response.content
    event = AccessEvent.objects.get(record_key__endswith=":21")
    assert sorted(event.columns) == ["email", "id"]
    assert "just the ids" not in event.statement


def test_a_line_comment_does_not_hide_a_table_read():
    access = statement_access("SELECT c.id FROM shop.customers c -- nothing else\nJOIN shop.cards k ON k.customer_id = c.id",
                              "postgres")
    assert {relation.table for relation in access.relations.values()} == {"customers", "cards"}
    mysql = statement_access("SELECT c.id FROM shop.customers c # nothing else\nJOIN shop.cards k ON k.customer_id = c.id",
                             "mysql")
    assert {relation.table for relation in mysql.relations.values()} == {"customers", "cards"}


@pytest.mark.parametrize("statement, dialect", [
    ("SELECT email FROM users WHERE id = 5 /* for ann@example.com */", "postgres"),
    ("SELECT email FROM users -- ann@example.com\nWHERE id = 5", "postgres"),
    ('SELEC email FRM users WHERE email = "ann@example.com"', "mysql"),  # MariaDB's "..." is a string
    ("SELECT email FROM users WHERE email = 'ann@example.com", "postgres"),  # cut off in the log
    ("SELECT email FROM users WHERE email = 'ann@example.com' # ann@example.com", "mysql"),
])
def test_literals_and_comments_never_reach_the_stored_statement(statement, dialect):
    access = statement_access(statement, dialect)
    assert "ann@example.com" not in access.normalized


@pytest.mark.parametrize("statement, dialect, secret", [
    # Statements the parser cannot read are kept as scrubbed text only: every literal must go.
    ("SELECT * FROM users WHERE email = $$ann@example.com$$ )( broken", "postgres", "ann@example.com"),
    ("SELECT * FROM users WHERE email = $$ann@example.com", "postgres", "ann@example.com"),  # cut off
    ("SELECT * FROM users WHERE ssn = 0x313233343536 INTO OUTFILE '/tmp/x'", "mysql", "313233343536"),
    ("SELECT * FROM users WHERE flags = 0b1011011101 )( broken", "mysql", "1011011101"),
    ("SELECT * FROM users WHERE salary = .9475 )( broken", "postgres", "9475"),
    ("SELECT * FROM users WHERE card = 4111_1111_1111_1111 )( broken", "postgres", "1111"),
])
def test_no_literal_of_an_unparsed_statement_is_kept(statement, dialect, secret):
    access = statement_access(statement, dialect)
    assert secret not in access.normalized, access.normalized


def test_a_mysql_executable_comment_is_read_as_the_statement_it_holds():
    # MariaDB runs what /*! ... */ holds: SELECT id, email FROM users.
    access = statement_access("SELECT id /*!50000 , email */ /*M!, phone */ FROM shop.users WHERE id = 7", "mysql")
    [relation] = access.relations.values()
    assert relation.reads == {"id", "email", "phone"} and "7" not in access.normalized


@pytest.mark.parametrize("statement", [
    "WITH customers AS (SELECT * FROM shop.customers) SELECT id FROM customers",  # the CTE shadows the table
    "WITH c AS (SELECT id FROM shop.customers) SELECT email FROM shop.customers WHERE id IN (SELECT id FROM c)",
    "SELECT email FROM shop.customers WHERE id IN (WITH customers AS (SELECT 1) SELECT 1)",
])
def test_a_cte_named_like_a_table_does_not_hide_the_table_read(statement):
    for dialect in ("postgres", "mysql"):
        access = statement_access(statement, dialect)
        [relation] = access.relations.values()
        assert (relation.schema, relation.table) == ("shop", "customers") and relation.read
        assert relation.reads & {"*", "email"}, (dialect, relation.reads)


def test_a_cte_reference_is_still_not_a_table_read():
    access = statement_access("WITH RECURSIVE t AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM t) SELECT n FROM t",
                              "postgres")
    assert access.relations == {}
    earlier = statement_access("WITH a AS (SELECT id FROM shop.customers), b AS (SELECT id FROM a) SELECT id FROM b",
                               "postgres")
    assert {key for key in earlier.relations} == {("shop", "customers")}


@pytest.mark.parametrize("number, statement", [
    (31, "WITH customers AS (SELECT * FROM shop.customers) SELECT id FROM customers"),
    (32, "SELECT c FROM shop.customers c"),  # a whole-row reference reads every column
    (33, "SELECT row_to_json(c) FROM shop.customers c"),
])
def test_a_pushed_read_hidden_from_the_parser_is_attributed_to_every_column(shipper, number, statement):
    response = shipper.post(PUSH, [pg_line(number, statement)], format="json")
    assert response.status_code == 200 and response.json()["recorded"] == 1, response.content
    event = AccessEvent.objects.get(record_key__endswith=f":{number}")
    assert event.columns == ["id", "email"] and event.finding  # mia may not read the Sensitive email


def test_a_column_named_like_its_table_is_that_column_only(shipper, pg_store):
    response = shipper.post(PUSH, [pg_line(34, "SELECT id FROM shop.customers id")], format="json")
    assert response.status_code == 200 and response.json()["recorded"] == 1, response.content
    assert AccessEvent.objects.get(record_key__endswith=":34").columns == ["id"]


def test_a_server_audit_read_through_a_shadowing_cte_is_recorded(security):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    store = StoreFactory(name="maria-audited", kind="transactional", platform="mysql", environment="prod")
    dataset_create(principal=registrar, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive")])
    _, key = shipper_token_create(actor=security, store=store, name="maria-1", log_format="server_audit")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    line = ("20261207 17:23:51,db1,mia_role,10.1.2.3,77,1,QUERY,shop,"
            "'WITH customers AS (SELECT * FROM customers) SELECT email FROM customers',0")
    response = client.post(PUSH, line, content_type="text/plain")
    assert response.status_code == 200 and response.json()["recorded"] == 1, response.content
    event = AccessEvent.objects.get(store=store)
    assert event.dataset.qualified_name == "maria-audited.shop.customers" and event.columns == ["id", "email"]


def test_a_statement_padded_past_the_csv_field_limit_is_still_recorded(shipper):
    # 200 KiB of comment: more than the csv module's default field limit (128 KiB).
    statement = "SELECT email FROM shop.customers /* " + "x" * 200_000 + " */"
    response = shipper.post(PUSH, [pg_line(41, statement)], format="json")
    assert response.status_code == 200 and response.json()["recorded"] == 1, response.content
    event = AccessEvent.objects.get(record_key__endswith=":41")
    assert event.columns == ["email"] and "xxx" not in event.statement


def test_a_byte_that_is_not_utf8_does_not_shift_the_pull_into_the_next_line(tmp_path, pg_store):
    # MariaDB writes a latin1 client's bytes as they came: \xe9 is one byte in the file but three
    # once decoded with replacement, which moved the position two bytes into the next line.
    from monitoring.pull import access_log_pull, access_log_pull_enable

    registrar = UserFactory(username="dora", roles=["data_engineer"])
    store = StoreFactory(name="maria-pulled", kind="transactional", platform="mysql", environment="prod")
    dataset_create(principal=registrar, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive")])
    log = tmp_path / "server_audit.log"
    log.write_bytes(b"")
    access_log_pull_enable(store=store, file=str(log))
    first = b"20261207 17:23:51,db1,mia_role,10.1.2.3,77,1,QUERY,shop,'SELECT id FROM customers WHERE name = \\'\xe9\\'',0\n"
    second = b"20261207 17:23:52,db1,mia_role,10.1.2.3,77,2,QUERY,shop,'SELECT email FROM customers',0\n"
    log.write_bytes(first + second[:20])  # the second line is still being written
    access_log_pull(store=store)
    with log.open("ab") as handle:
        handle.write(second[20:])
    result = access_log_pull(store=store)
    assert result.errors == []
    assert sorted(tuple(e.columns) for e in AccessEvent.objects.filter(store=store)) == [("email",), ("id",)]


def test_a_mariadb_read_padded_past_the_default_query_log_limit_is_recorded(security):
    # server_audit cuts a query's text at server_audit_query_log_limit (1024 by default): a long
    # literal first would leave only "SELECT '...'" in the log and hide the table. The audited
    # warehouse is set up as docs/monitoring.md says (scripts/ensure-audited-warehouse.sh).
    import sqlalchemy as sa

    from tests.monitoring.warehouses import MARIADB_AUDIT_FILE, mariadb_engine, unique

    registrar = UserFactory(username="dave", roles=["data_engineer"])
    database, user = unique("shop"), unique("mia")
    store = StoreFactory(name=unique("maria"), kind="transactional", platform="mysql", environment="prod")
    dataset_create(principal=registrar, store=store, name=f"{database}.orders", columns=[
        column_payload("id", type_="INTEGER"), column_payload("card", sensitivity="Restricted")])
    root = mariadb_engine()
    with root.connect() as conn:
        for statement in (f"CREATE DATABASE {database}", f"CREATE TABLE {database}.orders (id int, card text)",
                          f"CREATE USER '{user}'@'%'", f"GRANT SELECT ON {database}.* TO '{user}'@'%'"):
            conn.execute(sa.text(statement))
    start = open(MARIADB_AUDIT_FILE, "rb").seek(0, 2)
    try:
        url = sa.engine.make_url(str(root.url)).set(username=user, database=database)
        with sa.create_engine(url, poolclass=sa.pool.NullPool).connect() as conn:
            conn.execute(sa.text(f"SELECT '{'y' * 1100}' AS pad, card FROM orders")).fetchall()
        with open(MARIADB_AUDIT_FILE, "rb") as log:
            log.seek(start)
            lines = [line for line in log.read().decode().splitlines() if f",{user}," in line and "yyyy" in line]
        _, key = shipper_token_create(actor=security, store=store, name="maria-1 vector")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        response = client.post(PUSH, lines, format="json")
        assert response.status_code == 200 and response.json()["recorded"] == 1, (response.content, lines)
        assert AccessEvent.objects.get(store=store).columns == ["card"]
    finally:
        with root.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database}"))
            conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'%'"))
