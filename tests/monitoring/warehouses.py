"""The audited warehouses of the monitoring tests (scripts/ensure-audited-warehouse.sh).

PostgreSQL with pgaudit runs as a second cluster at ``AUDITED_WAREHOUSE_URL``; MariaDB's
server_audit plugin logs to ``MARIADB_AUDIT_FILE`` on the ``MARIADB_URL`` server. A test that needs
one fails (never skips) when it is missing: the script installs them, ``make test`` runs it.
"""

import os
import uuid

import pytest
import sqlalchemy as sa

MARIADB_URL = os.environ.get("MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")
MARIADB_AUDIT_FILE = os.environ.get("MARIADB_AUDIT_FILE", "/var/lib/mysql/server_audit.log")


def audited_url() -> str:
    url = os.environ.get("AUDITED_WAREHOUSE_URL", "")
    if not url:
        pytest.fail("AUDITED_WAREHOUSE_URL is not set: run scripts/ensure-audited-warehouse.sh "
                    "(make test does) and export AUDITED_WAREHOUSE_URL=postgresql://postgres@127.0.0.1:5433/postgres")
    return url


def audited_engine() -> sa.Engine:
    engine = sa.create_engine(audited_url(), poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"The audited warehouse at AUDITED_WAREHOUSE_URL does not answer ({exc.orig}); "
                    "run scripts/ensure-audited-warehouse.sh.")
    return engine


def mariadb_engine() -> sa.Engine:
    engine = sa.create_engine(MARIADB_URL, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"MariaDB at MARIADB_URL does not answer ({exc.orig}); run scripts/ensure-services.sh.")
    return engine


def unique(prefix: str) -> str:
    """A name no other test (or helper) uses: roles and schemas live across test databases."""
    return f"{prefix}_watch_{uuid.uuid4().hex[:8]}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def wait_in_server(engine: sa.Engine, condition_sql: str, *, timeout_s: int = 60) -> None:
    """Block in the audited server until ``condition_sql`` (a boolean SQL expression) holds: the
    logging collector writes and rotates its csvlog a moment after a statement, in another process
    of the server, so the wait is on the server's own state (statement_timeout bounds it)."""
    with engine.connect() as conn:
        conn.execute(sa.text(f"SET statement_timeout = '{int(timeout_s)}s'"))
        conn.execute(sa.text(f"DO $$ BEGIN WHILE NOT ({condition_sql}) LOOP PERFORM pg_sleep(0.01); END LOOP; END $$"))


def wait_for_log_text(engine: sa.Engine, file: str, offset: int, text: str) -> None:
    """Until the csvlog ``file`` (relative to the data directory) holds ``text`` after byte ``offset``."""
    wait_in_server(engine, f"position({_literal(text)} in "
                           f"pg_read_file({_literal(file)}, {int(offset)}, 100000000, true)) > 0")


def wait_for_rotation(engine: sa.Engine, before: str) -> None:
    """Until the logging collector writes to another csvlog than ``before``."""
    wait_in_server(engine, f"pg_current_logfile('csvlog') IS DISTINCT FROM {_literal(before)}")
