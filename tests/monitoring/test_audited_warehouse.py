"""The audited warehouses are really there and really log (scripts/ensure-audited-warehouse.sh)."""

import sqlalchemy as sa

from tests.monitoring.warehouses import MARIADB_AUDIT_FILE, audited_engine, mariadb_engine, unique


def test_audited_postgresql_loads_pgaudit_and_logs_reads_to_csvlog():
    engine = audited_engine()
    with engine.connect() as conn:
        assert "pgaudit" in conn.execute(sa.text("SHOW shared_preload_libraries")).scalar()
        assert conn.execute(sa.text("SHOW pgaudit.log")).scalar() == "read,write"
        assert conn.execute(sa.text("SHOW pgaudit.log_relation")).scalar() == "on"
        assert conn.execute(sa.text("SELECT extname FROM pg_extension WHERE extname = 'pgaudit'")).scalar() == "pgaudit"
        assert conn.execute(sa.text("SELECT pg_current_logfile('csvlog')")).scalar().endswith(".csv")


def test_audited_postgresql_is_not_the_catalogs_own_server():
    with audited_engine().connect() as conn:
        assert conn.execute(sa.text("SHOW port")).scalar() == "5433"


def test_mariadb_server_audit_logs_queries_to_its_file():
    marker = unique("probe")
    with mariadb_engine().connect() as conn:
        assert conn.execute(sa.text("SELECT @@server_audit_logging")).scalar() == 1
        assert conn.execute(sa.text("SELECT @@server_audit_file_path")).scalar() == MARIADB_AUDIT_FILE
        conn.execute(sa.text(f"SELECT '{marker}' AS probe"))
    with open(MARIADB_AUDIT_FILE, encoding="utf-8", errors="replace") as log:
        log.seek(0, 2)
        log.seek(max(0, log.tell() - 200_000))
        assert marker in log.read()
