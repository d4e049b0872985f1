"""Real warehouses for the sync tests: a PostgreSQL database, MariaDB databases, a SQLite file
and a DuckDB file, each with the same shop in it, and helpers to change them between syncs.

The shop: ``sales.customers`` (personal data with plausible values, an array of tags where the
engine has arrays), ``sales.orders``, a view ``sales.customer_totals`` that joins and aggregates
them, ``staging.events`` and ``scratch.scratch_notes`` (a schema the include/exclude tests leave
out). Tables and columns carry comments where the engine keeps them. SQLite has one schema, so
there everything lives in ``main`` and ``scratch`` does not exist; DuckDB keeps ``sales`` in
``main`` (the catalog writes main's tables as ``<store>.<table>``) and has the other schemas.

Servers come from ``WAREHOUSE_POSTGRES_URL`` and ``MARIADB_URL`` (defaults: this machine). When
one cannot be reached the test fails; ``make test`` starts them first.
"""

import contextlib
import os
import sqlite3
import uuid
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from catalog.classification import luhn_valid

POSTGRES_URL = os.environ.get("WAREHOUSE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MARIADB_URL = os.environ.get("MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")

# Plausible personal data: the sync may sample these, and must never store or echo them.
CUSTOMERS = [
    (1, "ada.lovelace@example.org", "+44 20 7946 0958", "1985-03-14", "4111111111111111"),
    (2, "grace.hopper@example.net", "+1 415 555 0132", "1979-12-09", "5555555555554444"),
    (3, "alan.turing@example.com", "+44 161 496 0753", "1990-06-23", "378282246310005"),
    (4, "katherine.johnson@example.org", "+1 757 555 0199", "1968-08-26", "4012888888881881"),
    (5, "edsger.dijkstra@example.nl", "+31 20 555 0147", "1972-05-11", "6011111111111117"),
    (6, "barbara.liskov@example.edu", "+1 617 555 0100", "1981-11-07", "3530111333300000"),
]
assert all(luhn_valid(row[4]) for row in CUSTOMERS)
PERSONAL_VALUES = [value for row in CUSTOMERS for value in row[1:]]
ORDERS = [(1, 1, "12.50"), (2, 1, "7.25"), (3, 2, "99.00"), (4, 3, "3.10"), (5, 5, "40.00")]

TABLE_COMMENT = "Customers of the web shop"
COLUMN_COMMENTS = {"email": "Where receipts go", "card_number": "Card on file"}


@dataclass(frozen=True)
class ObjectSpec:
    schema: str  # logical schema: sales, staging or scratch
    name: str
    kind: str  # table or view


OBJECTS = [
    ObjectSpec("sales", "customers", "table"),
    ObjectSpec("sales", "orders", "table"),
    ObjectSpec("sales", "customer_totals", "view"),
    ObjectSpec("staging", "events", "table"),
    ObjectSpec("scratch", "scratch_notes", "table"),
]
CUSTOMER_COLUMNS = ["id", "email", "phone", "birth_date", "card_number", "tags"]
VIEW_COLUMNS = ["customer_id", "email", "order_count", "total_amount"]


def service_required(what: str, probe) -> None:
    """Run ``probe``; if the server is not there, fail (make test starts it: scripts/ensure-services.sh)."""
    try:
        probe()
    except Exception as exc:  # any driver error means the same: not reachable
        reason = f"{what} is not reachable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        pytest.fail(f"{reason}; the sync tests need it.", pytrace=False)


def unique_name() -> str:
    return f"test_wh_{uuid.uuid4().hex[:10]}"


@dataclass
class Warehouse:
    """A warehouse built for one test, and what the catalog should make of it."""

    platform: str
    schemas: dict  # logical schema -> the warehouse's own schema name
    connection_fields: dict  # for catalog.connections.connection_save
    engine: sa.Engine | None = None
    extra_tables: int = 0  # bulk tables in staging, besides the shop

    def catalog_schema(self, logical: str) -> str:
        schema = self.schemas[logical]
        return "" if schema == "main" else schema

    def qualified(self, store, logical: str, name: str) -> str:
        return ".".join(part for part in (store.name, self.catalog_schema(logical), name) if part)

    def schema_glob(self) -> str:
        """A pattern naming every schema of this warehouse (and, for MariaDB, nothing else on the server)."""
        return "*" if self.platform != "mysql" else self.schemas["sales"].rsplit("_", 1)[0] + "_*"

    def table(self, logical: str, name: str) -> str:
        schema = self.schemas[logical]
        quote = "`" if self.platform == "mysql" else '"'
        return f"{quote}{schema}{quote}.{quote}{name}{quote}" if self.platform != "sqlite" else f'"{name}"'

    def execute(self, *statements: str) -> None:
        if self.platform == "sqlite":
            with contextlib.closing(sqlite3.connect(self.connection_fields["database"])) as conn:
                for statement in statements:
                    conn.execute(statement)
                conn.commit()
            return
        with self.engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    # Changes between syncs --------------------------------------------------------------

    def add_column(self, logical, table, column, type_="VARCHAR(40)"):
        self.execute(f"ALTER TABLE {self.table(logical, table)} ADD COLUMN {column} {type_}")

    def drop_column(self, logical, table, column):
        self.execute(f"ALTER TABLE {self.table(logical, table)} DROP COLUMN {column}")

    def change_type(self, logical, table, column, type_):
        name = self.table(logical, table)
        if self.platform == "postgresql":
            self.execute(f"ALTER TABLE {name} ALTER COLUMN {column} TYPE {type_} USING {column}::{type_}")
        elif self.platform == "mysql":
            self.execute(f"ALTER TABLE {name} MODIFY {column} {type_}")
        elif self.platform == "duckdb":
            self.execute(f"ALTER TABLE {name} ALTER {column} TYPE {type_}")
        else:  # SQLite cannot alter a type: rebuild the table with the same columns
            with contextlib.closing(sqlite3.connect(self.connection_fields["database"])) as conn:
                info = conn.execute(f"PRAGMA table_info({table})").fetchall()
            columns = ", ".join(
                f"{col} {type_ if col == column else col_type}{' NOT NULL' if notnull else ''}"
                for _, col, col_type, notnull, _, _ in info
            )
            self.execute(
                f"CREATE TABLE {table}_rebuilt ({columns})",
                f"INSERT INTO {table}_rebuilt SELECT * FROM {table}",
                f"DROP TABLE {table}",
                f"ALTER TABLE {table}_rebuilt RENAME TO {table}",
            )

    def drop_table(self, logical, table):
        self.execute(f"DROP TABLE {self.table(logical, table)}")

    def create_events(self):
        """(Re-)create ``staging.events`` exactly as the builder made it."""
        self.execute(*_events_ddl(self))

    def drop_schema(self, logical):
        schema = self.schemas[logical]
        self.execute(f"DROP DATABASE `{schema}`" if self.platform == "mysql" else f'DROP SCHEMA "{schema}" CASCADE')

    def add_table(self, logical, table):
        self.execute(f"CREATE TABLE {self.table(logical, table)} (id INTEGER NOT NULL, note VARCHAR(100))")


# The shop, in each engine's SQL ------------------------------------------------------------


def _comment_statements(wh: Warehouse) -> list[str]:
    if wh.platform not in ("postgresql", "duckdb"):
        return []
    customers = wh.table("sales", "customers")
    return [
        f"COMMENT ON TABLE {customers} IS '{TABLE_COMMENT}'",
        *[f"COMMENT ON COLUMN {customers}.{column} IS '{text}'" for column, text in COLUMN_COMMENTS.items()],
        f"COMMENT ON TABLE {wh.table('sales', 'orders')} IS 'One row per order'",
    ]


def _customers_ddl(wh: Warehouse) -> list[str]:
    name = wh.table("sales", "customers")
    if wh.platform == "mysql":
        return [
            f"CREATE TABLE {name} (id INTEGER NOT NULL PRIMARY KEY, "
            f"email VARCHAR(255) NOT NULL COMMENT '{COLUMN_COMMENTS['email']}', phone VARCHAR(40), birth_date DATE, "
            f"card_number VARCHAR(19) COMMENT '{COLUMN_COMMENTS['card_number']}', tags TEXT) COMMENT '{TABLE_COMMENT}'"
        ]
    tags = {"postgresql": "TEXT[]", "duckdb": "VARCHAR[]", "sqlite": "TEXT"}[wh.platform]
    return [
        f"CREATE TABLE {name} (id INTEGER NOT NULL PRIMARY KEY, email VARCHAR(255) NOT NULL, phone VARCHAR(40), "
        f"birth_date DATE, card_number VARCHAR(19), tags {tags})"
    ]


def _events_ddl(wh: Warehouse) -> list[str]:
    name = wh.table("staging", "events")
    statements = [f"CREATE TABLE {name} (id BIGINT NOT NULL, kind VARCHAR(40) NOT NULL, score INTEGER, payload TEXT)"]
    if wh.platform in ("postgresql", "duckdb"):
        statements.append(f"COMMENT ON TABLE {name} IS 'Raw events'")
    return statements


def _shop_ddl(wh: Warehouse) -> list[str]:
    customers, orders = wh.table("sales", "customers"), wh.table("sales", "orders")
    totals = wh.table("sales", "customer_totals")
    tags = {"postgresql": "ARRAY['vip']", "duckdb": "['vip']"}.get(wh.platform, "'vip'")
    statements = [
        *_customers_ddl(wh),
        f"CREATE TABLE {orders} (id INTEGER NOT NULL, customer_id INTEGER NOT NULL, amount DECIMAL(10, 2), "
        "created_at TIMESTAMP)" + (" COMMENT 'One row per order'" if wh.platform == "mysql" else ""),
        f"CREATE VIEW {totals} AS SELECT c.id AS customer_id, c.email AS email, COUNT(o.id) AS order_count, "
        f"SUM(o.amount) AS total_amount FROM {customers} c JOIN {orders} o ON o.customer_id = c.id "
        "GROUP BY c.id, c.email",
        *_events_ddl(wh),
        *_comment_statements(wh),
    ]
    for id_, email, phone, birth_date, card in CUSTOMERS:
        statements.append(
            f"INSERT INTO {customers} (id, email, phone, birth_date, card_number, tags) "
            f"VALUES ({id_}, '{email}', '{phone}', '{birth_date}', '{card}', {tags})"
        )
    for id_, customer_id, amount in ORDERS:
        statements.append(
            f"INSERT INTO {orders} (id, customer_id, amount, created_at) "
            f"VALUES ({id_}, {customer_id}, {amount}, '2024-01-0{id_} 10:00:00')"
        )
    statements.append(f"INSERT INTO {wh.table('staging', 'events')} VALUES (1, 'signup', 3, 'x')")
    if "scratch" in wh.schemas:
        statements.append(f"CREATE TABLE {wh.table('scratch', 'scratch_notes')} (id INTEGER NOT NULL, note TEXT)")
    return statements


# Builders: each a context manager that drops what it made -----------------------------------


@contextlib.contextmanager
def postgres_warehouse(extra_tables: int = 0):
    """A PostgreSQL database ``test_wh_<random>`` with schemas sales, staging and scratch."""
    server_url = sa.engine.make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    server = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    service_required(f"PostgreSQL at {server_url.render_as_string(hide_password=True)}", lambda: server.connect().close())
    name = unique_name()
    with server.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = sa.create_engine(server_url.set(database=name), poolclass=sa.pool.NullPool)
    wh = Warehouse(
        platform="postgresql", schemas={"sales": "sales", "staging": "staging", "scratch": "scratch"},
        connection_fields={
            "host": server_url.host, "port": server_url.port or 5432, "database": name,
            "username": server_url.username or "postgres",
        },
        engine=engine, extra_tables=extra_tables,
    )
    try:
        wh.execute("CREATE SCHEMA sales", "CREATE SCHEMA staging", "CREATE SCHEMA scratch", *_shop_ddl(wh))
        wh.execute(*_many_tables(wh, extra_tables))
        yield wh
    finally:
        engine.dispose()
        with server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()


@contextlib.contextmanager
def mariadb_warehouse():
    """MariaDB databases ``test_wh_<random>_sales``, ``_staging`` and ``_scratch`` (a schema is a database)."""
    server = sa.create_engine(MARIADB_URL, poolclass=sa.pool.NullPool)
    service_required(f"MariaDB at {server.url.render_as_string(hide_password=True)}", lambda: server.connect().close())
    prefix = unique_name()
    schemas = {logical: f"{prefix}_{logical}" for logical in ("sales", "staging", "scratch")}
    wh = Warehouse(
        platform="mysql", schemas=schemas,
        connection_fields={
            "host": server.url.host or "127.0.0.1", "port": server.url.port or 3306, "database": schemas["sales"],
            "username": server.url.username or "root",
            # The server holds other databases (other tests'): sync only this warehouse's.
            "include_schemas": [f"{prefix}_*"],
        },
        engine=server,
    )
    try:
        wh.execute(*[f"CREATE DATABASE `{schema}`" for schema in schemas.values()], *_shop_ddl(wh))
        yield wh
    finally:
        with server.connect() as conn:
            for schema in schemas.values():
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{schema}`")
        server.dispose()


@contextlib.contextmanager
def sqlite_warehouse(directory, extra_tables: int = 0):
    """A SQLite file: one schema (main), no comments, no arrays."""
    path = directory / f"{unique_name()}.sqlite3"
    wh = Warehouse(
        platform="sqlite", schemas={"sales": "main", "staging": "main"}, connection_fields={"database": str(path)},
        extra_tables=extra_tables,
    )
    wh.execute(*_shop_ddl(wh), *_many_tables(wh, extra_tables))
    yield wh
    path.unlink(missing_ok=True)


@contextlib.contextmanager
def duckdb_warehouse(directory):
    """A DuckDB file: sales in main, staging and scratch as schemas; comments and a list column."""
    path = directory / f"{unique_name()}.duckdb"
    engine = sa.create_engine(f"duckdb:///{path}", poolclass=sa.pool.NullPool)
    wh = Warehouse(
        platform="duckdb", schemas={"sales": "main", "staging": "staging", "scratch": "scratch"},
        connection_fields={"database": str(path)}, engine=engine,
    )
    try:
        wh.execute("CREATE SCHEMA staging", "CREATE SCHEMA scratch", *_shop_ddl(wh))
        yield wh
    finally:
        engine.dispose()
        path.unlink(missing_ok=True)


def synced_object_count(wh: Warehouse) -> int:
    """How many datasets a sync of the whole warehouse makes."""
    return sum(1 for spec in OBJECTS if spec.schema in wh.schemas) + wh.extra_tables


def _many_tables(wh: Warehouse, count: int) -> list[str]:
    """``count`` more small tables in ``staging`` (a warehouse whose write phase takes a while)."""
    return [
        f"CREATE TABLE {wh.table('staging', f'bulk_{index:04d}')} "
        "(id INTEGER NOT NULL, code VARCHAR(20), amount DECIMAL(12, 2), created_at TIMESTAMP, note TEXT)"
        for index in range(count)
    ]


@contextlib.contextmanager
def warehouse(platform: str, directory):
    """The shop on ``platform`` (postgresql, mysql, sqlite or duckdb)."""
    builders = {
        "postgresql": postgres_warehouse,
        "mysql": mariadb_warehouse,
        "sqlite": lambda: sqlite_warehouse(directory),
        "duckdb": lambda: duckdb_warehouse(directory),
    }
    with builders[platform]() as wh:
        yield wh
