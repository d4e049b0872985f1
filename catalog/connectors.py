"""Reading a warehouse's schemas through SQLAlchemy 2 reflection.

One small class per platform, and only where behaviour differs: how the URL is built,
which schemas are the system's own, how schema names map to catalog names, and (DuckDB)
where the dialect's reflection does not work. Everything else is the SQLAlchemy
inspector. Error messages never contain the password: SQLAlchemy hides it in URLs, and
:func:`safe_message` removes it from anything a driver might echo back.

A connection can only connect (``catalog/connection_rules.py``): each class lists the driver
options it allows (``options_allowed``) and passes them, checked, as connect arguments after
which come the catalog's own hard settings (timeouts, no LOCAL INFILE, no file access from
DuckDB), so nothing a connection stores can override them. :meth:`Connector.engine` checks
the stored connection again before it opens anything: rows saved before a rule existed, or
written around the service, are refused there.
"""

import fnmatch
import json
import logging
import os
from dataclasses import dataclass, field
from urllib.parse import quote

import sqlalchemy as sa
from django.conf import settings
from sqlalchemy.engine import URL
from sqlalchemy.engine.reflection import ObjectKind
from sqlalchemy.pool import NullPool

from catalog import connection_rules as rules
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
    # The driver options a connection may set, with their values' rules; anything else is refused.
    options_allowed: dict[str, rules.Option] = {}
    file_based = False  # SQLite and DuckDB: ``database`` is a file path, there is no host
    uses_host = True

    def __init__(self, connection: Connection, password: str = "", *, sealed_options: dict | None = None,
                 timeout: int | None = None):
        self.connection = connection
        self.password = password
        self.sealed_options = dict(sealed_options or {})
        # A connection test waits ``timeout`` for everything; a sync uses the sync settings.
        self.connect_timeout = timeout or settings.SYNC_CONNECT_TIMEOUT
        self.read_timeout = timeout or settings.SYNC_READ_TIMEOUT

    @property
    def secrets(self) -> list[str]:
        """Values that must never reach a message."""
        return [value for value in (self.password, *self.sealed_options.values()) if isinstance(value, str) and value]

    # What the connection may reach ----------------------------------------------------

    @classmethod
    def secret_option_names(cls) -> frozenset:
        return frozenset(name for name, rule in cls.options_allowed.items() if rule.secret)

    @classmethod
    def problems(cls, connection: Connection, sealed_options: dict) -> dict[str, list[str]]:
        """What the connection may not do, by field (empty: nothing). No connection is opened,
        but with ``CATALOG_CONNECTION_ALLOWED_HOSTS`` set the host name is resolved."""
        found = {}
        options = rules.option_problems(
            cls.options_allowed, connection.options or {}, sealed_options, platform=Platform(cls.platform).label
        )
        if options:
            found["options"] = options
        if cls.file_based:
            database = rules.file_store_problems(connection.database)
            if database:
                found["database"] = database
        elif cls.uses_host:
            host = rules.host_problems(connection.host)
            if host:
                found["host"] = host
        return found

    @classmethod
    def options_cleaned(cls, options: dict) -> dict:
        """The options with their values in stored form (``1`` -> ``"1"``, ``"true"`` -> ``True``);
        those that are not allowed are left as they are, for :meth:`problems` to name."""
        cleaned = {}
        for name, value in options.items():
            try:
                cleaned[name] = cls.options_allowed[name].clean(value)
            except (KeyError, ValueError):
                cleaned[name] = value
        return cleaned

    def check(self) -> None:
        """Refuse, before connecting, a connection the rules do not allow (saved before they
        existed, or written around the service)."""
        found = self.problems(self.connection, self.sealed_options)
        if found:
            detail = "; ".join(f"{name}: {' '.join(texts)}" for name, texts in found.items())
            raise WarehouseError(
                f"The connection of {self.connection.store.name} is refused before connecting ({detail}). "
                "Save it again with allowed settings."
            )

    def driver_options(self) -> dict:
        """The stored and sealed options, checked, as the driver takes them."""
        chosen = {**(self.connection.options or {}), **self.sealed_options}
        return {
            name: self.options_allowed[name].driver_value(self.options_allowed[name].clean(value))
            for name, value in chosen.items()
        }

    # URL and engine -------------------------------------------------------------------

    def url(self) -> URL:
        # Options never go into the URL: the dialect would translate and coerce them its own way.
        c = self.connection
        return URL.create(
            self.drivername, username=c.username or None, password=self.password or None,
            host=c.host or None, port=c.port or None, database=c.database or None,
        )

    def connect_args(self) -> dict:
        """The checked options, then the catalog's own settings, which therefore always win."""
        return self.driver_options()

    def engine(self) -> sa.Engine:
        self.check()
        try:
            return sa.create_engine(self.url(), poolclass=NullPool, connect_args=self.connect_args())
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            hint = f" Install it with: pip install 'governance-catalog[{self.extra}]'." if self.extra else ""
            raise WarehouseError(f"The {self.platform} driver is not installed.{hint}") from exc
        except Exception as exc:  # a bad URL or option: say so without the URL, which holds the password
            raise WarehouseError(f"The connection settings are not valid: {safe_message(exc, self.secrets)}") from exc

    def fail(self, doing: str, exc: BaseException) -> WarehouseError:
        return WarehouseError(f"Could not {doing}: {safe_message(exc, self.secrets)}")

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
        return f"Connected to {label} {version}".strip() + f"; {len(schemas)} schema{'' if len(schemas) == 1 else 's'} to sync" + (
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
                table.error = safe_message(exc, self.secrets)
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


POSTGRES_OPTIONS = {
    "sslmode": rules.choice("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "sslrootcert": rules.file("system"),
    "sslcert": rules.file(),
    "sslkey": rules.file(),
    "sslcrl": rules.file(),
    "sslpassword": rules.secret(),
    "sslsni": rules.choice("0", "1"),
    "ssl_min_protocol_version": rules.choice("TLSv1.2", "TLSv1.3"),
    "target_session_attrs": rules.choice("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "gssencmode": rules.choice("disable", "prefer", "require"),
    "channel_binding": rules.choice("disable", "prefer", "require"),
}


class PostgreSQLConnector(Connector):
    """PostgreSQL through psycopg 3 (libpq). Never ``passfile``, ``service``, ``options`` or other
    libpq settings that read files or change the session: the allow-list has only TLS and
    session targeting."""

    platform = Platform.POSTGRESQL
    drivername = "postgresql+psycopg"
    sqlglot_dialect = "postgres"
    system_schemas = frozenset({"information_schema", "pg_catalog", "pg_toast"})
    options_allowed = POSTGRES_OPTIONS

    def chooses(self, schema: str) -> bool:
        """Never the catalog's own schemas of enforcement (protected views and their grants table):
        they are the catalog's output, not datasets (access.warehouses.postgresql)."""
        from django.conf import settings

        if schema.lower() in {settings.ACCESS_GOVERNED_SCHEMA.lower(), settings.ACCESS_GOVERNED_ADMIN_SCHEMA.lower()}:
            return False
        return super().chooses(schema)

    def connect_args(self):
        return {
            **self.driver_options(),
            "connect_timeout": self.connect_timeout,
            "application_name": "governance-catalog sync",
            # The server ends any statement that runs longer (the catalog only reads).
            "options": f"-c statement_timeout={self.read_timeout * 1000}",
            # Never the catalog's own credentials: not ~/.pgpass, not PGPASSWORD from its environment
            # (an explicit empty password keeps libpq from looking there).
            "password": self.password,
            "passfile": os.devnull,
        }

    def view_names(self, inspector, schema):
        return [*inspector.get_view_names(schema=schema), *inspector.get_materialized_view_names(schema=schema)]


class RedshiftConnector(PostgreSQLConnector):
    """Redshift through sqlalchemy-redshift and psycopg2 (libpq too): PostgreSQL's options. Redshift
    takes no ``options`` startup parameter, so the statement timeout is set once connected."""

    platform = Platform.REDSHIFT
    drivername = "redshift+psycopg2"
    sqlglot_dialect = "redshift"
    extra = "redshift"

    def connect_args(self):
        args = super().connect_args()
        del args["options"]
        return args

    def engine(self):
        engine = super().engine()
        timeout_ms = int(self.read_timeout * 1000)

        @sa.event.listens_for(engine, "connect")
        def _statement_timeout(dbapi_connection, record):
            cursor = dbapi_connection.cursor()
            cursor.execute(f"SET statement_timeout TO {timeout_ms}")
            cursor.close()
            dbapi_connection.commit()  # a SET rolled back with the transaction would be undone

        return engine


MYSQL_OPTIONS = {
    "charset": rules.choice("utf8mb4", "utf8mb3", "utf8", "latin1", "ascii"),
    "ssl_ca": rules.file(),
    "ssl_cert": rules.file(),
    "ssl_key": rules.file(),
    "ssl_key_password": rules.secret(),
    "ssl_verify_cert": rules.flag(),
    "ssl_verify_identity": rules.flag(),
    "ssl_disabled": rules.flag(),
}


class MySQLConnector(Connector):
    """MySQL and MariaDB through PyMySQL: a schema is a database. Never ``local_infile``,
    ``init_command``, ``read_default_file`` or ``unix_socket``: the allow-list has only the
    character set and TLS."""

    platform = Platform.MYSQL
    drivername = "mysql+pymysql"
    sqlglot_dialect = "mysql"
    system_schemas = frozenset({"information_schema", "mysql", "performance_schema", "sys"})
    options_allowed = MYSQL_OPTIONS

    def chooses(self, schema: str) -> bool:
        """Never the catalog's own databases of enforcement (protected views, grants and keys):
        they are the catalog's output, not datasets (access.warehouses.mariadb)."""
        from access.warehouses.mariadb import CONTROL, GOVERNED  # names only; no circular import at load

        if schema.lower() in {GOVERNED, CONTROL}:
            return False
        return super().chooses(schema)

    def connect_args(self):
        return {
            **self.driver_options(),
            # A server may ask for any local file in answer to any query (LOAD DATA LOCAL): with
            # this off PyMySQL refuses to send one, whatever the server says.
            "local_infile": False,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "write_timeout": self.read_timeout,
        }


class SQLiteConnector(Connector):
    """A SQLite file, opened read-only; its one schema is ``main`` and has no name in the catalog.
    The file must be in ``CATALOG_FILE_STORES_DIRS``; no driver options."""

    platform = Platform.SQLITE
    drivername = "sqlite"
    sqlglot_dialect = "sqlite"
    file_based = True

    def url(self) -> URL:
        # The checked, resolved path; quoted so that ? or # in a name cannot add URI parameters.
        path = quote(os.path.realpath(self.connection.database))
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
    file_based = True

    def server_version(self, conn):  # the dialect reports PostgreSQL's version it imitates
        return conn.exec_driver_sql("select version()").scalar() or ""

    def url(self) -> URL:
        return URL.create("duckdb", database=os.path.realpath(self.connection.database))

    def connect_args(self):
        return {
            "read_only": True,
            "config": {
                # A view in the file could otherwise read the server's files (read_csv, read_text)
                # into column names or error messages, or reach the network.
                "enable_external_access": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                # And no statement can turn any of this back on.
                "lock_configuration": True,
            },
        }

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


SNOWFLAKE_OPTIONS = {
    "warehouse": rules.name(),
    "role": rules.name(),
    "schema": rules.name(),
    "authenticator": rules.choice("snowflake"),  # the password; never a browser, a key file or a token file
    "login_timeout": rules.number(1, 600),
    "network_timeout": rules.number(1, 86400),
}


class SnowflakeConnector(Connector):
    """Snowflake through snowflake-sqlalchemy: ``host`` is the account identifier,
    ``database`` may be ``DB`` or ``DB/SCHEMA``, options carry warehouse and role."""

    platform = Platform.SNOWFLAKE
    drivername = "snowflake"
    sqlglot_dialect = "snowflake"
    extra = "snowflake"
    options_allowed = SNOWFLAKE_OPTIONS

    def url(self) -> URL:
        c = self.connection
        return URL.create(
            "snowflake", username=c.username or None, password=self.password or None, host=c.host or None,
            database=c.database or None,
        )

    def connect_args(self):
        options = self.driver_options()
        return {
            **options,
            "authenticator": "snowflake",
            # Shorter timeouts may be chosen, never longer ones than the catalog's.
            "login_timeout": min(options.get("login_timeout", self.connect_timeout), self.connect_timeout),
            "network_timeout": min(options.get("network_timeout", self.read_timeout), self.read_timeout),
        }


class BigQueryConnector(Connector):
    """BigQuery through sqlalchemy-bigquery: ``database`` is the project, datasets are schemas.
    The secret, required, is a service-account JSON key passed as credentials_info. No driver
    options (the dialect's own, such as ``credentials_path``, would read the server's files)."""

    platform = Platform.BIGQUERY
    drivername = "bigquery"
    sqlglot_dialect = "bigquery"
    extra = "bigquery"
    uses_host = False

    def url(self) -> URL:
        return URL.create("bigquery", host=self.connection.database or None)

    def connect_args(self):
        return {}

    def engine(self):
        if not self.password:
            # Without a key the driver falls back to the server's own Google credentials (metadata
            # server, GOOGLE_APPLICATION_CREDENTIALS): whoever adds a connection would read as the catalog.
            raise WarehouseError("A BigQuery connection needs a service-account key (JSON) as its password: "
                                 "the catalog never connects with its own Google credentials.")
        self.check()
        try:
            return sa.create_engine(self.url(), poolclass=NullPool, credentials_info=json.loads(self.password))
        except ValueError as exc:
            raise WarehouseError("The BigQuery secret must be a service-account key in JSON.") from exc
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            raise WarehouseError("The bigquery driver is not installed. Install it with: "
                                 "pip install 'governance-catalog[bigquery]'.") from exc
        except Exception as exc:  # never let the key reach a traceback
            raise WarehouseError(f"The connection settings are not valid: {safe_message(exc, self.secrets)}") from None


CONNECTORS = {
    cls.platform: cls
    for cls in (
        PostgreSQLConnector, RedshiftConnector, MySQLConnector, SQLiteConnector, DuckDBConnector,
        SnowflakeConnector, BigQueryConnector,
    )
}
SYNCABLE_PLATFORMS = tuple(CONNECTORS)


def connector_for(connection: Connection, password: str = "", *, sealed_options: dict | None = None,
                  timeout: int | None = None) -> Connector:
    """The connector of the connection's store platform; refuses platforms that cannot be synced.

    The sealed options are opened here unless given (``SecretUnavailable`` if they cannot be);
    ``timeout`` bounds connecting and every read (a connection test), instead of the sync settings.
    """
    platform = connection.store.platform
    cls = CONNECTORS.get(platform)
    if cls is None:
        raise WarehouseError(
            f"Stores on platform '{platform}' cannot be synced; supported: {', '.join(SYNCABLE_PLATFORMS)}."
        )
    if sealed_options is None:
        sealed_options = sealed_options_open(connection)
    return cls(connection, password, sealed_options=sealed_options, timeout=timeout)


def sealed_options_open(connection: Connection) -> dict:
    """The connection's secret driver options (``{"sslpassword": ...}``), opened; ``{}`` if none."""
    if not connection.options_secret_id:
        return {}
    from catalog.secrets import secret_open

    value = json.loads(secret_open(connection.options_secret))
    return value if isinstance(value, dict) else {}
