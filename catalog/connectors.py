"""Reading a warehouse's schemas through SQLAlchemy 2 reflection.

One small class per platform, and only where behaviour differs: how the URL is built,
which schemas are the system's own, how schema names map to catalog names, and (DuckDB)
where the dialect's reflection does not work. Everything else is the SQLAlchemy
inspector. Error messages never contain the password: SQLAlchemy hides it in URLs, and
:func:`safe_message` removes it from anything a driver might echo back.
"""

import fnmatch
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from django.conf import settings
from sqlalchemy.engine import URL
from sqlalchemy.engine.reflection import ObjectKind
from sqlalchemy.pool import NullPool

from catalog.models import Connection, Platform

logger = logging.getLogger(__name__)


class WarehouseError(Exception):
    """The warehouse could not be reached or read; the message is safe to show."""


@dataclass(frozen=True)
class HarvestedColumn:
    name: str
    type: str
    nullable: bool = True
    repeated: bool = False
    comment: str = ""


@dataclass
class HarvestedTable:
    schema: str  # the warehouse's schema name
    catalog_schema: str  # the schema part of the catalog's qualified name ("" for SQLite's main)
    name: str
    kind: str  # "table" or "view"
    comment: str = ""
    columns: list[HarvestedColumn] = field(default_factory=list)
    view_definition: str = ""
    error: str = ""  # set when this object could not be read; the run goes on without it


def safe_message(exc: BaseException, secrets=()) -> str:
    """A one-line description of a driver error, without the SQL, parameters or any secret."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:500]


def _type_name(sql_type, dialect) -> str:
    if isinstance(sql_type, sa.types.NullType):  # e.g. a SQLite view column computed without a declared type
        return "UNKNOWN"
    try:
        return sql_type.compile(dialect=dialect)
    except Exception:  # a type the dialect cannot render (NullType for unknown types)
        return str(getattr(sql_type, "__visit_name__", sql_type)).upper()


class Connector:
    """The generic connector: SQLAlchemy reflection, schema by schema."""

    platform: str = ""
    drivername: str = ""
    sqlglot_dialect: str = ""
    system_schemas: frozenset = frozenset({"information_schema"})
    extra: str = ""  # the pyproject extra that installs the driver, for cloud warehouses

    def __init__(self, connection: Connection, password: str = ""):
        self.connection = connection
        self.password = password

    # URL and engine -------------------------------------------------------------------

    def url(self) -> URL:
        c = self.connection
        return URL.create(
            self.drivername, username=c.username or None, password=self.password or None,
            host=c.host or None, port=c.port or None, database=c.database or None,
            query={str(k): str(v) for k, v in (c.options or {}).items()},
        )

    def connect_args(self) -> dict:
        return {}

    def engine(self) -> sa.Engine:
        try:
            return sa.create_engine(self.url(), poolclass=NullPool, connect_args=self.connect_args())
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            hint = f" Install it with: pip install 'governance-catalog[{self.extra}]'." if self.extra else ""
            raise WarehouseError(f"The {self.platform} driver is not installed.{hint}") from exc
        except Exception as exc:  # a bad URL or option: say so without the URL, which holds the password
            raise WarehouseError(f"The connection settings are not valid: {safe_message(exc, [self.password])}") from exc

    def fail(self, doing: str, exc: BaseException) -> WarehouseError:
        return WarehouseError(f"Could not {doing}: {safe_message(exc, [self.password])}")

    # Reading ----------------------------------------------------------------------------

    def server_version(self, conn) -> str:
        info = conn.dialect.server_version_info
        return ".".join(str(part) for part in info) if info else ""

    def test(self) -> str:
        """Connect and read the list of schemas; returns a short description of the server."""
        engine = None
        try:
            engine = self.engine()
            with engine.connect() as conn:
                version = self.server_version(conn)
                schemas = self.schemas(sa.inspect(conn))
        except WarehouseError:
            raise
        except Exception as exc:
            raise self.fail(f"connect to {self.connection.store.name}", exc) from exc
        finally:
            if engine is not None:
                engine.dispose()
        label = Platform(self.platform).label if self.platform in Platform.values else self.platform
        shown = ", ".join(schemas[:12]) + (f" and {len(schemas) - 12} more" if len(schemas) > 12 else "")
        return f"Connected to {label} {version}".strip() + f"; {len(schemas)} schema(s) to sync" + (
            f": {shown}." if schemas else " (check the include and exclude patterns)."
        )

    def all_schema_names(self, inspector) -> list[str]:
        return inspector.get_schema_names()

    def chooses(self, schema: str) -> bool:
        """Whether this connection syncs ``schema``: not the system's, included, not excluded."""
        include = self.connection.include_schemas or []
        exclude = self.connection.exclude_schemas or []
        if schema.lower() in self.system_schemas or schema.lower().startswith("pg_"):
            return False
        if include and not any(fnmatch.fnmatchcase(schema, pattern) for pattern in include):
            return False
        return not any(fnmatch.fnmatchcase(schema, pattern) for pattern in exclude)

    def schemas(self, inspector) -> list[str]:
        """The schemas this connection syncs."""
        return sorted(schema for schema in self.all_schema_names(inspector) if self.chooses(schema))

    def catalog_schema(self, schema: str) -> str:
        return schema

    def view_names(self, inspector, schema) -> list[str]:
        return inspector.get_view_names(schema=schema)

    def columns_by_table(self, conn, inspector, schema) -> dict[str, list[dict]]:
        """``{table name: [reflected column dicts]}`` for every table and view of a schema."""
        found = inspector.get_multi_columns(schema=schema, kind=ObjectKind.ANY)
        return {name: columns for (_, name), columns in found.items()}

    def comments_by_table(self, conn, inspector, schema) -> dict[str, str]:
        try:
            found = inspector.get_multi_table_comment(schema=schema, kind=ObjectKind.ANY)
        except NotImplementedError:
            return {}
        return {name: (comment or {}).get("text") or "" for (_, name), comment in found.items()}

    def harvest_schema(self, conn, schema: str, progress=None) -> list[HarvestedTable]:
        """Every table and view of one schema, with columns, comments and view definitions.

        A table or view that cannot be read comes back with ``error`` set; the others are unaffected.
        ``progress`` (no arguments) is called after each table, so a long harvest can show it is alive.
        """
        inspector = sa.inspect(conn)
        catalog_schema = self.catalog_schema(schema)
        tables = set(inspector.get_table_names(schema=schema))
        views = set(self.view_names(inspector, schema))
        try:
            columns = self.columns_by_table(conn, inspector, schema)
        except Exception:
            logger.warning("Bulk column reflection failed for schema %s; reading table by table", schema)
            conn.rollback()  # PostgreSQL refuses every further statement in a failed transaction
            columns = None
        try:
            comments = self.comments_by_table(conn, inspector, schema)
        except Exception:
            conn.rollback()
            comments = {}
        harvested = []
        for name in sorted(tables | views):
            table = HarvestedTable(
                schema=schema, catalog_schema=catalog_schema, name=name,
                kind="view" if name in views else "table", comment=comments.get(name, ""),
            )
            try:
                reflected = columns.get(name) if columns is not None else None
                if reflected is None:
                    reflected = inspector.get_columns(name, schema=schema)
                table.columns = [self.harvest_column(column, conn.dialect) for column in reflected]
                if table.kind == "view":
                    table.view_definition = self.view_definition(inspector, name, schema) or ""
            except Exception as exc:
                table.error = safe_message(exc, [self.password])
                conn.rollback()
            harvested.append(table)
            if progress is not None:
                progress()
        return harvested

    def harvest_column(self, column: dict, dialect) -> HarvestedColumn:
        sql_type = column["type"]
        return HarvestedColumn(
            name=column["name"],
            type=_type_name(sql_type, dialect),
            nullable=bool(column.get("nullable", True)),
            repeated=isinstance(sql_type, sa.ARRAY),
            comment=column.get("comment") or "",
        )

    def view_definition(self, inspector, name, schema) -> str:
        try:
            return inspector.get_view_definition(name, schema=schema)
        except NotImplementedError:
            return ""

    def sample(self, conn, table: HarvestedTable, column_names: list[str], size: int) -> dict[str, list]:
        """A few values of some columns, for classification only; callers never store them."""
        statement = (
            sa.select(*[sa.column(name) for name in column_names])
            .select_from(sa.table(table.name, schema=table.schema))
            .limit(size)
        )
        rows = conn.execute(statement).all()
        return {name: [row[index] for row in rows] for index, name in enumerate(column_names)}


class PostgreSQLConnector(Connector):
    platform = Platform.POSTGRESQL
    drivername = "postgresql+psycopg"
    sqlglot_dialect = "postgres"
    system_schemas = frozenset({"information_schema", "pg_catalog", "pg_toast"})

    def connect_args(self):
        return {"connect_timeout": settings.SYNC_CONNECT_TIMEOUT, "application_name": "governance-catalog sync"}

    def view_names(self, inspector, schema):
        return [*inspector.get_view_names(schema=schema), *inspector.get_materialized_view_names(schema=schema)]


class RedshiftConnector(PostgreSQLConnector):
    platform = Platform.REDSHIFT
    drivername = "redshift+psycopg2"
    sqlglot_dialect = "redshift"
    extra = "redshift"


class MySQLConnector(Connector):
    """MySQL and MariaDB: a schema is a database."""

    platform = Platform.MYSQL
    drivername = "mysql+pymysql"
    sqlglot_dialect = "mysql"
    system_schemas = frozenset({"information_schema", "mysql", "performance_schema", "sys"})

    def connect_args(self):
        return {"connect_timeout": settings.SYNC_CONNECT_TIMEOUT, "read_timeout": 600}


class SQLiteConnector(Connector):
    """A SQLite file, opened read-only; its one schema is ``main`` and has no name in the catalog."""

    platform = Platform.SQLITE
    drivername = "sqlite"
    sqlglot_dialect = "sqlite"

    def url(self) -> URL:
        path = self.connection.database
        return URL.create("sqlite", database=f"file:{path}?mode=ro", query={"uri": "true"})

    def all_schema_names(self, inspector):
        return ["main"]

    def catalog_schema(self, schema):
        return "" if schema == "main" else schema


class DuckDBConnector(Connector):
    """A DuckDB file, opened read-only.

    duckdb-engine borrows PostgreSQL's reflection queries, which DuckDB 2 no longer answers
    (``pg_collation``, ``regclass``), so columns and comments come from DuckDB's own
    ``duckdb_columns()`` and ``duckdb_tables()``. Tables, views and view definitions still come
    from the inspector.
    """

    platform = Platform.DUCKDB
    drivername = "duckdb"
    sqlglot_dialect = "duckdb"
    system_schemas = frozenset({"information_schema", "pg_catalog"})

    def server_version(self, conn):  # the dialect reports PostgreSQL's version it imitates
        return conn.exec_driver_sql("select version()").scalar() or ""

    def url(self) -> URL:
        return URL.create("duckdb", database=self.connection.database)

    def connect_args(self):
        return {"read_only": True}

    def all_schema_names(self, inspector):
        rows = inspector.bind.exec_driver_sql(
            # DuckDB flags a file's own main schema as internal, like the system's: keep it.
            "select schema_name from duckdb_schemas() where database_name = current_database() "
            "and (not internal or schema_name = 'main')"
        ).all()
        return [row[0] for row in rows] or ["main"]

    def catalog_schema(self, schema):
        return "" if schema == "main" else schema

    def columns_by_table(self, conn, inspector, schema):
        rows = conn.exec_driver_sql(
            "select table_name, column_name, data_type, is_nullable, comment from duckdb_columns() "
            "where database_name = current_database() and schema_name = ? order by table_name, column_index",
            (schema,),
        ).all()
        found: dict[str, list[dict]] = {}
        for table, name, data_type, nullable, comment in rows:
            found.setdefault(table, []).append(
                {"name": name, "type": sa.types.NullType(), "type_name": data_type, "nullable": nullable, "comment": comment}
            )
        return found

    def harvest_column(self, column, dialect):
        if "type_name" not in column:
            return super().harvest_column(column, dialect)
        return HarvestedColumn(
            name=column["name"], type=column["type_name"], nullable=bool(column["nullable"]),
            repeated=column["type_name"].endswith("[]"), comment=column["comment"] or "",
        )

    def comments_by_table(self, conn, inspector, schema):
        rows = conn.exec_driver_sql(
            "select table_name, comment from duckdb_tables() where database_name = current_database() "
            "and schema_name = ? union all select view_name, comment from duckdb_views() "
            "where database_name = current_database() and schema_name = ? and not internal",
            (schema, schema),
        ).all()
        return {name: comment or "" for name, comment in rows}

    def view_definition(self, inspector, name, schema):
        row = inspector.bind.exec_driver_sql(
            "select sql from duckdb_views() where database_name = current_database() and schema_name = ? and view_name = ?",
            (schema, name),
        ).first()
        return row[0] if row else ""


class SnowflakeConnector(Connector):
    """Snowflake through snowflake-sqlalchemy: ``host`` is the account identifier,
    ``database`` may be ``DB`` or ``DB/SCHEMA``, options carry warehouse and role."""

    platform = Platform.SNOWFLAKE
    drivername = "snowflake"
    sqlglot_dialect = "snowflake"
    extra = "snowflake"

    def url(self) -> URL:
        c = self.connection
        return URL.create(
            "snowflake", username=c.username or None, password=self.password or None, host=c.host or None,
            database=c.database or None, query={str(k): str(v) for k, v in (c.options or {}).items()},
        )


class BigQueryConnector(Connector):
    """BigQuery through sqlalchemy-bigquery: ``database`` is the project, datasets are schemas.
    The secret, when set, is a service-account JSON key passed as credentials_info."""

    platform = Platform.BIGQUERY
    drivername = "bigquery"
    sqlglot_dialect = "bigquery"
    extra = "bigquery"

    def url(self) -> URL:
        return URL.create("bigquery", host=self.connection.database or None)

    def connect_args(self):
        return {}

    def engine(self):
        import json

        if not self.password:
            return super().engine()
        try:
            return sa.create_engine(self.url(), poolclass=NullPool, credentials_info=json.loads(self.password))
        except ValueError as exc:
            raise WarehouseError("The BigQuery secret must be a service-account key in JSON.") from exc
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            raise WarehouseError("The bigquery driver is not installed. Install it with: "
                                 "pip install 'governance-catalog[bigquery]'.") from exc
        except Exception as exc:  # never let the key reach a traceback
            raise WarehouseError(f"The connection settings are not valid: {safe_message(exc, [self.password])}") from None


CONNECTORS = {
    cls.platform: cls
    for cls in (
        PostgreSQLConnector, RedshiftConnector, MySQLConnector, SQLiteConnector, DuckDBConnector,
        SnowflakeConnector, BigQueryConnector,
    )
}
SYNCABLE_PLATFORMS = tuple(CONNECTORS)


def connector_for(connection: Connection, password: str = "") -> Connector:
    """The connector of the connection's store platform; refuses platforms that cannot be synced."""
    platform = connection.store.platform
    cls = CONNECTORS.get(platform)
    if cls is None:
        raise WarehouseError(
            f"Stores on platform '{platform}' cannot be synced; supported: {', '.join(SYNCABLE_PLATFORMS)}."
        )
    return cls(connection, password)
