"""Log lines crafted by someone who knows how the catalog reads them: comments that hide part of a
statement from the parser (and so a read from the usage and the findings), and literal values that
slip past the scrubbing into stored statements."""

import pytest

from monitoring.models import AccessEvent
from monitoring.parsing import statement_access
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


def test_a_mysql_executable_comment_is_read_as_the_statement_it_holds():
    # MariaDB runs what /*! ... */ holds: SELECT id, email FROM users.
    access = statement_access("SELECT id /*!50000 , email */ /*M!, phone */ FROM shop.users WHERE id = 7", "mysql")
    [relation] = access.relations.values()
    assert relation.reads == {"id", "email", "phone"} and "7" not in access.normalized
