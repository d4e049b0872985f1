"""A connection can only connect (issue 14): each attack a platform engineer tried through a
store's connection, through the real API, services, drivers and warehouses.

- driver options outside a platform's allow-list (MySQL ``local_infile``, PostgreSQL
  ``passfile``/``service``/``sslkey`` paths, ...) are refused when saved, naming the option, and
  again when a row that holds them (saved before, or written around the service) connects;
- a MySQL-protocol server written here answers every query with a LOCAL INFILE request: the
  catalog never sends it a byte of the file, whatever the row holds;
- SQLite and DuckDB files only in CATALOG_FILE_STORES_DIRS, never the catalog's own files;
- a DuckDB view cannot read the server's files;
- secret options are sealed and never shown or audited;
- a silent server cannot hold the request past CATALOG_CONNECTION_TEST_TIMEOUT;
- CATALOG_CONNECTION_ALLOWED_HOSTS;
- every change and test is audited, without secrets.
"""

import contextlib
import json
import os
import secrets
import socket
import sqlite3
import threading

import pytest
import sqlalchemy as sa
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from access.models import AuditEvent
from catalog.connections import connection_save, connection_test
from catalog.connectors import SnowflakeConnector, WarehouseError, connector_for
from catalog.models import (
    Column,
    ColumnSuggestion,
    Connection,
    Dataset,
    DatasetVersion,
    Secret,
    SyncRunEvent,
    SyncStatus,
)
from catalog.secrets import secret_open
from catalog.sync import sync_run_execute, sync_run_request
from tests.factories import StoreFactory, UserFactory

PASSWORD = "pw-" + secrets.token_hex(8)
SSL_PASSWORD = "sslpw-" + secrets.token_hex(8)
OK_PACKET = b"\x00\x00\x00\x02\x00\x00\x00"  # OK: no rows, no id, autocommit on, no warnings


@pytest.fixture
def engineer(db):
    return UserFactory(username="pia", roles=["platform_engineer"])


@pytest.fixture
def engineer_client(engineer):
    client = APIClient()
    client.force_login(engineer)
    return client


def connection_url(store) -> str:
    return f"/api/v1/stores/{store.pk}/connection/"


def nothing_stored() -> bool:
    return not Connection.objects.exists() and not Secret.objects.exists()


def test_connection(client, store) -> dict:
    response = client.post(connection_url(store) + "test/")
    assert response.status_code == 200
    return response.json()


test_connection.__test__ = False  # a helper, not a test


@pytest.fixture
def server_file(tmp_path):
    """A file only the catalog's server can read, e.g. its master key or its environment."""
    path = tmp_path / "server" / "master-key"
    path.parent.mkdir()
    marker = f"MASTER-KEY-{secrets.token_hex(12)}"
    path.write_text(f"local:{marker}\n")
    return path, marker.encode()


# A MySQL server an attacker controls ----------------------------------------------------------


class HostileMySQLServer:
    """Just enough of the MySQL protocol to accept any login (mysql_native_password, no TLS), answer
    SET statements with OK, and answer every other query with a LOCAL INFILE request (0xFB) for
    ``wanted``, as a server an attacker controls would. Everything clients send is in ``received``."""

    def __init__(self, wanted):
        self.wanted = str(wanted)
        self.received = bytearray()
        self.connections = 0
        self.file_requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self):
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        self._listener.close()
        self._thread.join(timeout=30)

    def _serve(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with client:
                client.settimeout(30)
                with contextlib.suppress(OSError, ConnectionError):
                    self._session(client)

    def _exactly(self, client, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = client.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the client went away")
            data += chunk
        return data

    def _read(self, client) -> tuple[int, bytes]:
        header = self._exactly(client, 4)
        payload = self._exactly(client, int.from_bytes(header[:3], "little"))
        self.received += header + payload
        return header[3], payload

    @staticmethod
    def _send(client, sequence: int, payload: bytes) -> None:
        client.sendall(len(payload).to_bytes(3, "little") + bytes([sequence & 0xFF]) + payload)

    def _session(self, client):
        salt = b"abcdefghijklmnopqrst"
        # LONG_PASSWORD, LONG_FLAG, CONNECT_WITH_DB, LOCAL_FILES, PROTOCOL_41, TRANSACTIONS,
        # SECURE_CONNECTION, PLUGIN_AUTH; no SSL.
        capabilities = 0x0001 | 0x0004 | 0x0008 | 0x0080 | 0x0200 | 0x2000 | 0x8000 | 0x80000
        greeting = (
            b"\x0a5.7.44-hostile\x00" + (7).to_bytes(4, "little") + salt[:8] + b"\x00"
            + (capabilities & 0xFFFF).to_bytes(2, "little") + bytes([45]) + (2).to_bytes(2, "little")
            + (capabilities >> 16).to_bytes(2, "little") + bytes([21]) + b"\x00" * 10 + salt[8:] + b"\x00"
            + b"mysql_native_password\x00"
        )
        self._send(client, 0, greeting)
        sequence, _ = self._read(client)  # the login: any will do
        self._send(client, sequence + 1, OK_PACKET)
        while True:
            sequence, payload = self._read(client)
            if payload[:1] == b"\x01":  # COM_QUIT
                return
            if payload[:1] == b"\x03" and not payload[1:].lstrip().upper().startswith(b"SET"):
                self.file_requests += 1
                self._send(client, 1, b"\xfb" + self.wanted.encode())
                while True:  # a client that obeys sends the file, then an empty packet
                    sequence, data = self._read(client)
                    if not data:
                        break
                self._send(client, sequence + 1, OK_PACKET)
            else:
                self._send(client, 1, OK_PACKET)


@pytest.fixture
def hostile_mysql(server_file):
    server = HostileMySQLServer(server_file[0])
    yield server
    server.close()


@pytest.fixture
def silent_server():
    """Accepts TCP connections (the kernel does, from its backlog) and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield listener.getsockname()[1]
    listener.close()


def mysql_store(name="orders-db"):
    return StoreFactory(name=name, kind="transactional", platform="mysql")


# Driver options ---------------------------------------------------------------------------------

REFUSED_OPTIONS = {
    "mysql local_infile": ("mysql", {"local_infile": "1"}, "local_infile"),
    "mysql init_command": ("mysql", {"init_command": "SET GLOBAL general_log=1"}, "init_command"),
    "mysql read_default_file": ("mysql", {"read_default_file": "/etc/mysql/my.cnf"}, "read_default_file"),
    "mysql read_default_group": ("mysql", {"read_default_group": "client"}, "read_default_group"),
    "mysql unix_socket": ("mysql", {"unix_socket": "/run/mysqld/mysqld.sock"}, "unix_socket"),
    "mysql defer_connect": ("mysql", {"defer_connect": "1"}, "defer_connect"),
    "mysql read_timeout": ("mysql", {"read_timeout": "600"}, "read_timeout"),
    "postgresql passfile": ("postgresql", {"passfile": "/root/.pgpass"}, "passfile"),
    "postgresql service": ("postgresql", {"service": "catalog"}, "service"),
    "postgresql servicefile": ("postgresql", {"servicefile": "/etc/pg_service.conf"}, "servicefile"),
    "postgresql options": ("postgresql", {"options": "-c statement_timeout=0"}, "options"),
    "postgresql sslkeylogfile": ("postgresql", {"sslkeylogfile": "/tmp/keys.log"}, "sslkeylogfile"),
    "postgresql hostaddr": ("postgresql", {"hostaddr": "10.0.0.1"}, "hostaddr"),
    "sqlite anything": ("sqlite", {"timeout": 5}, "timeout"),
    "duckdb config": ("duckdb", {"enable_external_access": "true"}, "enable_external_access"),
    "snowflake private key file": ("snowflake", {"private_key_file": "/var/keys/rsa.p8"}, "private_key_file"),
    "snowflake browser login": ("snowflake", {"authenticator": "externalbrowser"}, "authenticator"),
    "bigquery credentials path": ("bigquery", {"credentials_path": "/var/keys/sa.json"}, "credentials_path"),
    "postgresql bad sslmode": ("postgresql", {"sslmode": "sometimes"}, "sslmode"),
    "mysql bad charset": ("mysql", {"charset": "utf8mb4; DROP TABLE x"}, "charset"),
}
TARGETS = {
    "mysql": {"host": "127.0.0.1", "username": "reader"},
    "postgresql": {"host": "127.0.0.1", "database": "postgres", "username": "reader"},
    "snowflake": {"host": "xy12345.eu-west-1", "database": "ANALYTICS", "username": "reader"},
    "bigquery": {"database": "acme-analytics"},
}


@pytest.mark.parametrize("case", REFUSED_OPTIONS.keys())
def test_an_option_outside_the_platforms_allow_list_is_refused_naming_it_and_nothing_is_written(
    case, engineer_client, tmp_path
):
    platform, options, name = REFUSED_OPTIONS[case]
    store = StoreFactory(name=f"store-{platform}", platform=platform)
    target = TARGETS.get(platform) or {"database": str(tmp_path / "warehouse.db")}

    response = engineer_client.put(connection_url(store), {**target, "password": PASSWORD, "options": options},
                                   format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["options"]
    assert name in " ".join(response.json()["errors"]["options"])
    assert PASSWORD not in response.content.decode()
    assert nothing_stored()


def test_allowed_options_with_valid_values_are_kept(engineer_client):
    store = StoreFactory(name="appdb", platform="postgresql")
    options = {"sslmode": "require", "target_session_attrs": "read-only", "sslsni": 1, "channel_binding": "prefer"}

    response = engineer_client.put(connection_url(store), {**TARGETS["postgresql"], "options": options}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["options"] == {**options, "sslsni": "1"}


def test_snowflake_takes_warehouse_and_role_and_never_a_longer_timeout_than_the_catalogs(engineer_client, settings):
    store = StoreFactory(name="snow", platform="snowflake")
    response = engineer_client.put(connection_url(store), {
        **TARGETS["snowflake"],
        "options": {"warehouse": "REPORTING_WH", "role": "CATALOG_READER", "login_timeout": 600},
    }, format="json")
    assert response.status_code == 201, response.json()

    # The driver is not installed here: what it would be given is the point.
    args = SnowflakeConnector(Connection.objects.get(store=store), "pw").connect_args()

    assert args["warehouse"] == "REPORTING_WH" and args["role"] == "CATALOG_READER"
    assert args["authenticator"] == "snowflake"
    assert args["login_timeout"] == settings.SYNC_CONNECT_TIMEOUT
    assert args["network_timeout"] == settings.SYNC_READ_TIMEOUT


# Files named by options: only in CATALOG_CONNECTION_FILES_DIR


@pytest.fixture
def connection_files(settings, tmp_path):
    directory = tmp_path / "connection-files"
    directory.mkdir()
    (directory / "root.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    settings.CATALOG_CONNECTION_FILES_DIR = str(directory)
    return directory


def test_a_certificate_in_the_operators_directory_is_accepted(engineer_client, connection_files):
    store = StoreFactory(name="appdb", platform="postgresql")
    options = {"sslmode": "verify-full", "sslrootcert": str(connection_files / "root.crt")}

    response = engineer_client.put(connection_url(store), {**TARGETS["postgresql"], "options": options}, format="json")

    assert response.status_code == 201, response.json()


@pytest.mark.parametrize("where", ["outside", "symlink out", "no directory configured"])
def test_a_key_file_outside_the_operators_directory_is_refused(where, engineer_client, connection_files, server_file,
                                                              settings):
    store = StoreFactory(name="appdb", platform="postgresql")
    path = server_file[0]
    if where == "symlink out":
        (connection_files / "client.key").symlink_to(path)
        path = connection_files / "client.key"
    if where == "no directory configured":
        settings.CATALOG_CONNECTION_FILES_DIR = ""
        path = connection_files / "root.crt"

    response = engineer_client.put(connection_url(store), {
        **TARGETS["postgresql"], "options": {"sslmode": "require", "sslkey": str(path)},
    }, format="json")

    assert response.status_code == 400
    assert "sslkey" in " ".join(response.json()["errors"]["options"])
    assert nothing_stored()


# The file-read attack on MySQL ------------------------------------------------------------------


def test_local_infile_is_refused_before_anything_connects(engineer_client, hostile_mysql):
    store = mysql_store()
    response = engineer_client.put(connection_url(store), {
        "host": "127.0.0.1", "port": hostile_mysql.port, "username": "x", "password": PASSWORD,
        "options": {"local_infile": "1"},
    }, format="json")

    assert response.status_code == 400
    assert "local_infile" in " ".join(response.json()["errors"]["options"])
    assert nothing_stored()
    assert hostile_mysql.connections == 0


def test_a_row_already_holding_local_infile_is_refused_at_connect_and_sends_no_file(
    engineer, engineer_client, hostile_mysql, server_file
):
    store = mysql_store()
    connection_save(principal=engineer, store=store, host="127.0.0.1", port=hostile_mysql.port, username="x",
                    password=PASSWORD)
    # Saved before the rules existed, or written around the service.
    Connection.objects.filter(store=store).update(options={"local_infile": "1", "init_command": "SELECT 1"})

    result = test_connection(engineer_client, store)
    run, _ = sync_run_request(principal=engineer, store=store, enqueue=False)
    run = sync_run_execute(run.pk)

    assert server_file[1] not in bytes(hostile_mysql.received)
    assert hostile_mysql.connections == 0
    assert result["ok"] is False
    assert "refused before connecting" in result["message"] and "local_infile" in result["message"]
    assert run.status == SyncStatus.FAILED and "local_infile" in run.message


def test_a_server_asking_for_a_local_file_anyway_gets_nothing(engineer, engineer_client, hostile_mysql, server_file):
    store = mysql_store()
    connection_save(principal=engineer, store=store, host="127.0.0.1", port=hostile_mysql.port, username="x",
                    password=PASSWORD)

    result = test_connection(engineer_client, store)
    run, _ = sync_run_request(principal=engineer, store=store, enqueue=False)
    run = sync_run_execute(run.pk)

    assert hostile_mysql.file_requests >= 2  # it asked, during the test and during the sync
    assert server_file[1] not in bytes(hostile_mysql.received)
    assert result["ok"] is False and run.status == SyncStatus.FAILED
    assert PASSWORD not in result["message"] and PASSWORD not in run.message


@pytest.mark.parametrize("platform", ["postgresql", "mysql"])
def test_a_row_holding_file_reading_options_is_refused_at_connect(platform, engineer, engineer_client, silent_server,
                                                                  server_file):
    store = StoreFactory(name=f"store-{platform}", platform=platform)
    connection_save(principal=engineer, store=store, host="127.0.0.1", port=silent_server, username="x")
    bad = {"postgresql": {"passfile": str(server_file[0]), "sslkey": str(server_file[0])},
           "mysql": {"read_default_file": str(server_file[0])}}[platform]
    Connection.objects.filter(store=store).update(options=bad)

    result = test_connection(engineer_client, store)

    assert result["ok"] is False
    assert result["message"].startswith(f"The connection of {store.name} is refused before connecting")
    with pytest.raises(WarehouseError, match="refused before connecting"):
        connector_for(Connection.objects.get(store=store)).engine()


# Timeouts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["postgresql", "mysql"])
def test_a_connection_test_against_a_silent_server_gives_up_with_a_timeout_message(
    platform, engineer_client, engineer, silent_server, settings
):
    settings.CATALOG_CONNECTION_TEST_TIMEOUT = 1
    store = StoreFactory(name=f"store-{platform}", platform=platform)
    connection_save(principal=engineer, store=store, host="127.0.0.1", port=silent_server, database="postgres",
                    username="x", password=PASSWORD)

    result = test_connection(engineer_client, store)

    assert result["ok"] is False
    assert result["message"].startswith("Timed out after 1 s")
    assert PASSWORD not in result["message"]
    assert Connection.objects.get(store=store).last_test_message == result["message"]


def test_drivers_get_the_catalogs_timeouts_whatever_the_row_holds(engineer, settings):
    settings.SYNC_CONNECT_TIMEOUT, settings.SYNC_READ_TIMEOUT = 7, 42
    store = StoreFactory(name="appdb", platform="postgresql")
    connection_save(principal=engineer, store=store, host="db.internal", database="app")
    connection = Connection.objects.get(store=store)

    postgres = connector_for(connection).connect_args()
    tested = connector_for(connection, timeout=3).connect_args()
    connection.store.platform = "mysql"
    mysql = connector_for(connection).connect_args()

    assert (postgres["connect_timeout"], postgres["options"]) == (7, "-c statement_timeout=42000")
    assert postgres["passfile"] == os.devnull and postgres["password"] == ""  # never the catalog's own credentials
    assert (tested["connect_timeout"], tested["options"]) == (3, "-c statement_timeout=3000")
    assert mysql["local_infile"] is False
    assert (mysql["connect_timeout"], mysql["read_timeout"], mysql["write_timeout"]) == (7, 42, 42)


# File stores: SQLite and DuckDB -----------------------------------------------------------------


def make_sqlite(path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE access_user (id INTEGER, username TEXT, password TEXT)")
        db.execute("INSERT INTO access_user VALUES (1, 'admin', 'pbkdf2_sha256$hash')")
        db.commit()
    return str(path)


@pytest.fixture
def file_stores(settings, tmp_path):
    """Only tmp_path/warehouses is a file store directory; the catalog's var/ is tmp_path/var."""
    allowed = tmp_path / "warehouses"
    allowed.mkdir()
    settings.CATALOG_FILE_STORES_DIRS = [str(allowed)]
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    return allowed


def test_a_sqlite_file_in_the_allowed_directory_is_accepted(engineer_client, file_stores):
    store = StoreFactory(name="shop", platform="sqlite")
    path = make_sqlite(file_stores / "shop.sqlite3")

    response = engineer_client.put(connection_url(store), {"database": path}, format="json")

    assert response.status_code == 201, response.json()
    assert test_connection(engineer_client, store)["ok"] is True


@pytest.mark.parametrize("where", [
    "outside the allowed directories", "a symlink out of them", "relative", "the catalog's var directory",
    "the master key", "a hard link to the catalog's database", "a URI with parameters",
])
def test_a_sqlite_path_it_may_not_open_is_refused(where, engineer_client, file_stores, tmp_path, settings):
    store = StoreFactory(name="shop", platform="sqlite")
    catalog_db = make_sqlite(settings.VAR_DIR / "catalog.sqlite3")
    path = {
        "outside the allowed directories": lambda: make_sqlite(tmp_path / "elsewhere" / "shop.sqlite3"),
        "a symlink out of them": lambda: _symlink(file_stores / "shop.sqlite3", catalog_db),
        "relative": lambda: "warehouses/shop.sqlite3",
        "the catalog's var directory": lambda: catalog_db,
        "the master key": lambda: str(settings.VAR_DIR / "master-key"),
        "a hard link to the catalog's database": lambda: _hardlink(file_stores / "copy.sqlite3", catalog_db),
        "a URI with parameters": lambda: f"file:{catalog_db}?mode=rw",
    }[where]()

    response = engineer_client.put(connection_url(store), {"database": path}, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["database"]
    assert nothing_stored()


def _symlink(link, target) -> str:
    link.symlink_to(target)
    return str(link)


def _hardlink(link, target) -> str:
    os.link(target, link)
    return str(link)


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_the_catalogs_own_sqlite_database_is_refused_even_in_an_allowed_directory(
    engineer_client, file_stores, settings
):
    # ``make run``: the catalog's database is a SQLite file; an operator allowed a broad directory.
    own = make_sqlite(file_stores / "data" / "catalog.sqlite3")
    settings.DATABASES = {**settings.DATABASES, "embedded": {"ENGINE": "django.db.backends.sqlite3", "NAME": own}}
    store = StoreFactory(name="shop", platform="sqlite")

    response = engineer_client.put(connection_url(store), {"database": own}, format="json")

    assert response.status_code == 400
    assert "catalog's own files" in " ".join(response.json()["errors"]["database"])


def test_a_row_pointing_at_the_catalogs_database_is_refused_at_connect_and_syncs_nothing(
    engineer, engineer_client, file_stores, settings
):
    store = StoreFactory(name="shop", platform="sqlite")
    connection_save(principal=engineer, store=store, database=make_sqlite(file_stores / "shop.sqlite3"))
    Connection.objects.filter(store=store).update(database=make_sqlite(settings.VAR_DIR / "catalog.sqlite3"))

    result = test_connection(engineer_client, store)
    run, _ = sync_run_request(principal=engineer, store=store, enqueue=False)
    run = sync_run_execute(run.pk)

    assert result["ok"] is False and "refused before connecting" in result["message"]
    assert run.status == SyncStatus.FAILED and "refused before connecting" in run.message
    assert not Dataset.objects.filter(store=store).exists()


def test_a_symlink_swapped_after_saving_is_refused_at_connect(engineer, engineer_client, file_stores, tmp_path):
    store = StoreFactory(name="shop", platform="sqlite")
    link = file_stores / "shop.sqlite3"
    link.symlink_to(make_sqlite(file_stores / "real.sqlite3"))
    connection_save(principal=engineer, store=store, database=str(link))
    link.unlink()
    link.symlink_to(make_sqlite(tmp_path / "elsewhere" / "secret.sqlite3"))

    result = test_connection(engineer_client, store)

    assert result["ok"] is False and "refused before connecting" in result["message"]


@pytest.mark.parametrize("path", ["md:my_db", ":memory:", "https://example.com/shop.duckdb", "s3://bucket/shop.duckdb"])
def test_a_duckdb_path_that_is_not_a_local_file_is_refused(path, engineer_client, file_stores):
    store = StoreFactory(name="lake", platform="duckdb")

    response = engineer_client.put(connection_url(store), {"database": path}, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["database"]


def test_file_stores_are_off_when_no_directory_is_configured(engineer_client, settings, tmp_path):
    settings.CATALOG_FILE_STORES_DIRS = []
    store = StoreFactory(name="shop", platform="sqlite")

    response = engineer_client.put(connection_url(store), {"database": make_sqlite(tmp_path / "shop.sqlite3")},
                                   format="json")

    assert response.status_code == 400
    assert "CATALOG_FILE_STORES_DIRS" in " ".join(response.json()["errors"]["database"])


def test_a_duckdb_view_cannot_read_the_servers_files(engineer, engineer_client, file_stores, server_file, tmp_path):
    import duckdb

    secret_path, marker = server_file
    csv = tmp_path / "server" / "environ.csv"
    csv.write_text("harmless,header\n1,2\n")  # what the attacker's view saw when it was made
    path = file_stores / "lake.duckdb"
    with contextlib.closing(duckdb.connect(str(path))) as db:
        db.execute(f"CREATE VIEW leak AS SELECT * FROM read_csv('{csv}')")
        db.execute(f"CREATE VIEW leak_text AS SELECT CAST(content AS INTEGER) AS n FROM read_text('{secret_path}')")
        db.execute("CREATE TABLE customers (id INTEGER, email VARCHAR)")
        db.execute("INSERT INTO customers VALUES (1, 'ada@example.org')")
    # On the catalog's server the file says something else: its secrets.
    csv.write_text(f"{marker.decode()},DATABASE_URL\n1,2\n")
    store = StoreFactory(name="lake", platform="duckdb")
    connection_save(principal=engineer, store=store, database=str(path), sampling_enabled=True)

    run, _ = sync_run_request(principal=engineer, store=store, enqueue=False)
    run = sync_run_execute(run.pk)
    engine = connector_for(Connection.objects.get(store=store)).engine()
    try:
        with engine.connect() as conn:
            for statement in ("DESCRIBE leak", "SELECT * FROM leak_text", f"SELECT * FROM read_text('{secret_path}')",
                              "SET enable_external_access = true"):
                with pytest.raises(sa.exc.DBAPIError) as refused:
                    conn.exec_driver_sql(statement).all()
                assert marker.decode() not in str(refused.value)
                conn.rollback()
    finally:
        engine.dispose()

    assert run.status in (SyncStatus.SUCCEEDED, SyncStatus.PARTIAL)
    assert Dataset.objects.filter(store=store, name="customers").exists()
    stored = json.dumps([
        list(Column.objects.filter(dataset__store=store).values_list("name", "description")),
        list(DatasetVersion.objects.filter(dataset__store=store).values_list("columns", flat=True)),
        list(SyncRunEvent.objects.filter(run=run).values_list("object_name", "message")),
        list(ColumnSuggestion.objects.filter(dataset__store=store).values_list("evidence", flat=True)),
        run.message,
    ], default=str)
    assert marker.decode() not in stored


# Secret options: sealed like the password --------------------------------------------------------


@pytest.fixture
def appdb(db):
    return StoreFactory(name="appdb", kind="transactional", platform="postgresql")


def put_sealed(client, store, **extra):
    return client.put(connection_url(store), {
        **TARGETS["postgresql"], "username": "postgres", "password": PASSWORD,
        "options": {"sslmode": "disable", "sslpassword": SSL_PASSWORD}, **extra,
    }, format="json", REMOTE_ADDR="203.0.113.9")


def test_a_secret_option_is_sealed_never_stored_in_clear_returned_or_audited(engineer_client, appdb):
    response = put_sealed(engineer_client, appdb)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["options"] == {"sslmode": "disable"} and body["sealedOptions"] == ["sslpassword"]
    connection = Connection.objects.get(store=appdb)
    assert connection.options == {"sslmode": "disable"}
    assert json.loads(secret_open(connection.options_secret)) == {"sslpassword": SSL_PASSWORD}
    assert SSL_PASSWORD.encode() not in bytes(connection.options_secret.ciphertext)
    shown = engineer_client.get(connection_url(appdb))
    page = engineer_client.get(f"/stores/{appdb.pk}/connection/")
    assert page.status_code == 200 and "sslpassword" in page.content.decode()
    tested = test_connection(engineer_client, appdb)
    assert tested["ok"] is True, tested  # the sealed option reaches the driver, and the server accepts it
    for content in (response.content, shown.content, page.content, json.dumps(tested).encode()):
        assert SSL_PASSWORD not in content.decode() and PASSWORD not in content.decode()
    trail = json.dumps(list(AuditEvent.objects.values("action", "details")))
    assert SSL_PASSWORD not in trail and PASSWORD not in trail
    saved = AuditEvent.objects.get(action="connection.saved")
    assert saved.details["sealed_options"] == {"sslpassword": "set"} and saved.remote_addr == "203.0.113.9"


def test_the_connector_gets_the_sealed_option(engineer_client, appdb):
    put_sealed(engineer_client, appdb)

    args = connector_for(Connection.objects.get(store=appdb), PASSWORD).connect_args()

    assert args["sslpassword"] == SSL_PASSWORD


def test_a_sealed_option_is_kept_when_left_out_and_removed_with_an_empty_value(engineer_client, appdb):
    put_sealed(engineer_client, appdb)

    kept = engineer_client.patch(connection_url(appdb), {"schedule": "0 2 * * *"}, format="json")
    assert kept.status_code == 200 and kept.json()["sealedOptions"] == ["sslpassword"]
    replaced = engineer_client.patch(connection_url(appdb), {
        "options": {"sslmode": "disable", "sslpassword": "another-" + SSL_PASSWORD},
    }, format="json")
    assert replaced.status_code == 200, replaced.json()  # same target: the password may stay
    assert replaced.json()["lastTestOk"] is None  # a test of the old secret says nothing about the new one
    connection = Connection.objects.get(store=appdb)
    assert json.loads(secret_open(connection.options_secret)) == {"sslpassword": "another-" + SSL_PASSWORD}
    removed = engineer_client.patch(connection_url(appdb), {
        "options": {"sslmode": "disable", "sslpassword": ""}, "password": PASSWORD,
    }, format="json")
    assert removed.status_code == 200 and removed.json()["sealedOptions"] == []
    assert Connection.objects.get(store=appdb).options_secret is None
    assert Secret.objects.count() == 1  # the password's only


def test_pointing_elsewhere_needs_the_sealed_options_again(engineer_client, appdb):
    put_sealed(engineer_client, appdb)
    before = bytes(Connection.objects.get(store=appdb).options_secret.ciphertext)

    moved = engineer_client.patch(connection_url(appdb), {"host": "db.elsewhere.example", "password": PASSWORD},
                                  format="json")

    assert moved.status_code == 400
    assert "sslpassword" in " ".join(moved.json()["errors"]["options"])
    connection = Connection.objects.get(store=appdb)
    assert connection.host == "127.0.0.1" and bytes(connection.options_secret.ciphertext) == before


def test_a_secret_option_stored_in_clear_before_is_never_shown_and_refused_until_sealed(engineer_client, appdb):
    put_sealed(engineer_client, appdb, options={"sslmode": "disable"})
    Connection.objects.filter(store=appdb).update(options={"sslmode": "disable", "sslpassword": SSL_PASSWORD})

    shown = engineer_client.get(connection_url(appdb))
    tested = test_connection(engineer_client, appdb)
    resealed = engineer_client.patch(connection_url(appdb), {"password": PASSWORD}, format="json")

    assert SSL_PASSWORD not in shown.content.decode() and shown.json()["options"] == {"sslmode": "disable"}
    assert tested["ok"] is False and "sslpassword is stored in clear" in tested["message"]
    assert resealed.status_code == 200 and resealed.json()["sealedOptions"] == ["sslpassword"]
    connection = Connection.objects.get(store=appdb)
    assert connection.options == {"sslmode": "disable"}
    assert json.loads(secret_open(connection.options_secret)) == {"sslpassword": SSL_PASSWORD}


def test_removing_the_connection_removes_its_sealed_options(engineer_client, appdb):
    put_sealed(engineer_client, appdb)

    assert engineer_client.delete(connection_url(appdb), REMOTE_ADDR="203.0.113.9").status_code == 204

    assert nothing_stored()
    removed = AuditEvent.objects.get(action="connection.removed")
    assert removed.details["sealed_options"] == ["sslpassword"] and removed.remote_addr == "203.0.113.9"
    assert SSL_PASSWORD not in json.dumps(removed.details)


# Hosts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["/var/run/postgresql", "db1,db2", "db.internal:5433", "@abstract", "db internal"])
def test_a_host_that_is_not_one_host_is_refused(host, engineer_client, appdb):
    response = engineer_client.put(connection_url(appdb), {**TARGETS["postgresql"], "host": host}, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["host"]


@pytest.mark.parametrize(("host", "allowed"), [
    ("db.internal", True),  # listed by name
    ("10.1.2.3", True),  # inside a listed network
    ("127.0.0.1", False),
    ("localhost", False),  # resolves outside the networks
    ("nowhere.invalid", False),  # does not resolve
])
def test_the_host_allow_list(host, allowed, engineer_client, appdb, settings):
    settings.CATALOG_CONNECTION_ALLOWED_HOSTS = ["db.internal", "10.0.0.0/8"]

    response = engineer_client.put(connection_url(appdb), {**TARGETS["postgresql"], "host": host}, format="json")

    assert response.status_code == (201 if allowed else 400), response.json()
    if not allowed:
        assert list(response.json()["errors"]) == ["host"]


def test_a_host_resolving_inside_a_listed_network_is_allowed(engineer_client, appdb, settings):
    settings.CATALOG_CONNECTION_ALLOWED_HOSTS = ["127.0.0.0/8", "::1/128"]

    response = engineer_client.put(connection_url(appdb), {**TARGETS["postgresql"], "host": "localhost"}, format="json")

    assert response.status_code == 201, response.json()


def test_a_host_no_longer_allowed_is_refused_at_connect(engineer, engineer_client, appdb, settings, silent_server):
    connection_save(principal=engineer, store=appdb, host="127.0.0.1", port=silent_server, database="postgres")
    settings.CATALOG_CONNECTION_ALLOWED_HOSTS = ["10.0.0.0/8"]

    result = test_connection(engineer_client, appdb)

    assert result["ok"] is False
    assert "refused before connecting" in result["message"] and "CATALOG_CONNECTION_ALLOWED_HOSTS" in result["message"]


# Audit ------------------------------------------------------------------------------------------


def test_saving_testing_and_removing_a_connection_are_audited_without_secrets(engineer_client, engineer, file_stores):
    store = StoreFactory(name="shop", platform="sqlite")
    path = make_sqlite(file_stores / "shop.sqlite3")
    address = {"REMOTE_ADDR": "198.51.100.4"}

    engineer_client.put(connection_url(store), {"database": path, "password": PASSWORD}, format="json", **address)
    engineer_client.patch(connection_url(store), {"schedule": "0 2 * * *", "sampleSize": 20}, format="json", **address)
    engineer_client.post(connection_url(store) + "test/", **address)
    engineer_client.delete(connection_url(store), **address)

    events = list(AuditEvent.objects.order_by("id").filter(action__startswith="connection."))
    assert [event.action for event in events] == [
        "connection.saved", "connection.saved", "connection.tested", "connection.removed",
    ]
    created, changed, tested, removed = events
    assert {event.actor_id for event in events} == {engineer.pk}
    assert {event.remote_addr for event in events} == {"198.51.100.4"}
    assert created.details["created"] is True and created.details["values"]["database"] == path
    assert created.details["password"] == "set"
    assert changed.details["changed"] == ["sample_size", "schedule"]
    assert changed.details["values"] == {"sample_size": 20, "schedule": "0 2 * * *"}
    assert "password" not in changed.details
    assert tested.details["ok"] is True
    assert removed.details["database"] == path
    assert PASSWORD not in json.dumps([event.details for event in events])


def test_a_refused_save_writes_no_audit_event(engineer_client, appdb):
    before = AuditEvent.objects.count()

    engineer_client.put(connection_url(appdb), {**TARGETS["postgresql"], "options": {"passfile": "/x"}}, format="json")

    assert AuditEvent.objects.count() == before


def test_people_without_the_platform_role_cannot_test_a_connection(db, appdb, engineer):
    connection_save(principal=engineer, store=appdb, host="127.0.0.1", database="postgres")
    client = APIClient()
    client.force_login(UserFactory(username="mia", roles=["data_analyst"]))

    assert client.post(connection_url(appdb) + "test/").status_code == 403
    assert not AuditEvent.objects.filter(action="connection.tested").exists()
    with pytest.raises(PermissionDenied):
        connection_test(principal=UserFactory(username="ann", roles=["data_analyst"]), store=appdb)


def test_bigquery_never_connects_with_the_servers_own_credentials(db):
    from catalog.connectors import WarehouseError, connector_for
    from catalog.models import Connection
    from tests.factories import StoreFactory

    store = StoreFactory(name="bq", platform="bigquery")
    connection = Connection.objects.create(store=store, database="acme-analytics")
    with pytest.raises(WarehouseError, match="needs a service-account key"):
        connector_for(connection, "").engine()


# One database, one store --------------------------------------------------------------------------


def test_a_second_store_on_the_same_database_is_refused(engineer_client, appdb):
    # A dev store on the prod store's database would sync the same tables under dev's rules.
    prod = StoreFactory(name="crm-prod", platform="postgresql", environment="prod")
    assert engineer_client.put(connection_url(prod), {**TARGETS["postgresql"], "host": "localhost", "port": 5432},
                               format="json").status_code == 201
    dev = StoreFactory(name="crm-dev", platform="postgresql", environment="dev")

    response = engineer_client.put(connection_url(dev), {**TARGETS["postgresql"], "host": "LocalHost", "port": 5432}, format="json")

    assert response.status_code == 400
    assert "already connected as store 'crm-prod' (prod)" in response.json()["errors"]["database"][0]
    assert not Connection.objects.filter(store=dev).exists()
    # Another database on the same server is another store's business.
    other = engineer_client.put(connection_url(dev), {**TARGETS["postgresql"], "host": "localhost", "database": "test",
                                                      "port": 5432},
                                format="json")
    assert other.status_code == 201, other.json()


def test_a_second_store_on_the_same_file_is_refused_even_through_a_link(engineer_client, file_stores):
    path = make_sqlite(file_stores / "shop.sqlite3")
    first = StoreFactory(name="shop", platform="sqlite")
    assert engineer_client.put(connection_url(first), {"database": path}, format="json").status_code == 201
    second = StoreFactory(name="shop-dev", platform="sqlite", environment="dev")

    response = engineer_client.put(connection_url(second), {"database": _symlink(file_stores / "alias.sqlite3", path)},
                                   format="json")

    assert response.status_code == 400
    assert "store 'shop'" in response.json()["errors"]["database"][0]
