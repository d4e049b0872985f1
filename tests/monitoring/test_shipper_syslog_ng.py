"""A real log shipper Debian has: syslog-ng tails the audited PostgreSQL cluster's pgaudit csvlog
and POSTs batches to the catalog's push endpoint (its http() destination) with the store's shipper
token, as docs/monitoring.md configures it. The catalog records each read once, attributed and
without literal values. Fails (never skips) without syslog-ng: scripts/ensure-audited-warehouse.sh
(run by make test) installs it."""

import subprocess
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from django.db import transaction

from monitoring import apis
from monitoring.models import AccessEvent
from monitoring.shippers import shipper_token_create
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create
from tests.monitoring.warehouses import audited_engine, audited_url, unique, wait_for_rotation

SYSLOG_NG = "/usr/sbin/syslog-ng"
CONFIG = """@version: 3.35
options {{ stats-freq(0); }};
source s_pgaudit {{
    file("{path}" flags(no-parse) follow-freq(0.1)
         multi-line-mode(regexp) multi-line-prefix("^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}} [0-9]{{2}}:"));
}};
destination d_catalog {{
    http(url("{url}/api/v1/monitoring/logs/") method("POST")
         headers("Authorization: Bearer {key}", "Content-Type: application/json")
         body-prefix("[") delimiter(",") body-suffix("]")
         body("$(format-json --scope none log=${{MESSAGE}})")
         batch-lines(50) batch-timeout(200) timeout(10));
}};
log {{ source(s_pgaudit); destination(d_catalog); }};
"""


class _Recorded:
    """Wakes the test when the push endpoint's transaction commits (the live server runs in a
    thread of this process): the wait is on the catalog recording what syslog-ng sent."""

    def __init__(self, monkeypatch):
        self.condition = threading.Condition()
        real = apis.access_log_ingest

        def recording(**kwargs):
            result = real(**kwargs)
            transaction.on_commit(self.notify)
            return result

        monkeypatch.setattr(apis, "access_log_ingest", recording)

    def notify(self):
        with self.condition:
            self.condition.notify_all()

    def wait_for(self, predicate, what: str, timeout_s: float = 60.0):
        with self.condition:
            if not self.condition.wait_for(predicate, timeout=timeout_s):
                raise AssertionError(f"gave up waiting for {what}")


def _execute(engine, *statements):
    with engine.connect() as conn:
        return [conn.execute(sa.text(statement)).fetchall() if statement.lstrip().upper().startswith("SELECT")
                else conn.execute(sa.text(statement)) for statement in statements]


@pytest.fixture
def warehouse():
    if not Path(SYSLOG_NG).exists():
        pytest.fail("syslog-ng is not installed: run scripts/ensure-audited-warehouse.sh (make test does)")
    admin = audited_engine()
    schema, table, role = unique("ship"), unique("customers"), unique("mia")
    _execute(admin, f"CREATE SCHEMA {schema}", f"CREATE TABLE {schema}.{table} (id int, email text, ssn text)",
             f"INSERT INTO {schema}.{table} VALUES (1, 'a@example.com', '123-45-6789')",
             f"CREATE ROLE {role} LOGIN", f"GRANT USAGE ON SCHEMA {schema} TO {role}",
             f"GRANT SELECT ON {schema}.{table} TO {role}")
    yield {"admin": admin, "schema": schema, "table": table, "role": role}
    _execute(admin, f"DROP SCHEMA {schema} CASCADE", f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def _current_csvlog(admin) -> Path:
    [(data_directory, name)] = _execute(admin, "SELECT current_setting('data_directory'), pg_current_logfile('csvlog')")[0]
    return Path(data_directory) / name


def test_syslog_ng_ships_the_pgaudit_log_to_the_catalog(live_server, warehouse, tmp_path, monkeypatch):
    w = warehouse
    recorded = _Recorded(monkeypatch)
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    security = UserFactory(username="sec", roles=["security_engineer"])
    UserFactory(username="mia", roles=["data_analyst"], warehouse_role=w["role"])
    store = StoreFactory(name=unique("shipped"), kind="transactional", platform="postgresql", environment="prod")
    dataset = dataset_create(principal=registrar, store=store, name=f"{w['schema']}.{w['table']}", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive"),
        column_payload("ssn", sensitivity="Restricted")])
    _, key = shipper_token_create(actor=security, store=store, name="db-1 syslog-ng")

    # Start the shipper on a fresh csvlog (syslog-ng reads a file it has not seen from its start).
    before = _current_csvlog(w["admin"])
    _execute(w["admin"], "SELECT pg_rotate_logfile()")
    wait_for_rotation(w["admin"], str(before.relative_to(before.parents[1])))
    path = _current_csvlog(w["admin"])
    (tmp_path / "syslog-ng.conf").write_text(CONFIG.format(path=path, url=live_server.url, key=key))
    shipper = subprocess.Popen(
        [SYSLOG_NG, "-F", "--no-caps", "-f", str(tmp_path / "syslog-ng.conf"),
         f"--persist-file={tmp_path / 'persist'}", f"--pidfile={tmp_path / 'pid'}", f"--control={tmp_path / 'ctl'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = sa.engine.make_url(audited_url()).set(username=w["role"], password=None)
        reader = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"application_name": "bi-tool"})
        relation = f"{w['schema']}.{w['table']}"
        with reader.connect() as conn:
            conn.execute(sa.text(f"SELECT id FROM {relation} WHERE email = 'someone@example.com'")).fetchall()
            conn.execute(sa.text(f"SELECT ssn\nFROM {relation}")).fetchall()  # a record on two lines
        # A multi-line source hands a record on when the next one starts: write one more.
        _execute(w["admin"], "DO $$BEGIN RAISE LOG 'shipper test: end of batch'; END$$")
        recorded.wait_for(lambda: AccessEvent.objects.filter(store=store).count() >= 2, "syslog-ng to deliver both reads")
        events = list(AccessEvent.objects.filter(store=store).order_by("id"))
    finally:
        shipper.terminate()
        output = shipper.communicate(timeout=30)[0].decode(errors="replace")
    assert len(events) == 2, output[-2000:]
    by_columns = {tuple(event.columns): event for event in events}
    assert set(by_columns) == {("id", "email"), ("ssn",)}
    for event in events:
        assert event.source == "push" and event.dataset_id == dataset.pk and event.user.username == "mia"
        assert event.application == "bi-tool" and event.database_role == w["role"]
        assert "someone@example.com" not in event.statement
    assert by_columns[("ssn",)].finding is True  # a Restricted column nothing in the catalog allowed
