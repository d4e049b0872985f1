"""Reads in a real PostgreSQL warehouse with pgaudit (the audited cluster), pulled from its csvlog
through the store's connection, checked through the API: the columns, the user the database role
maps to, what allowed the read (standing permission or grant), and a finding when nothing did."""

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from django.db import connection as db_connection
from rest_framework.test import APIClient

from access.grants import access_request_create, access_request_review
from access.models import AccessLevel, Grant
from catalog.connections import connection_save
from monitoring.models import AccessEvent, LogPosition
from monitoring.pull import access_log_pull, access_log_pull_enable
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create
from tests.monitoring.warehouses import audited_engine, audited_url, unique, wait_for_log_text

REPO = Path(__file__).resolve().parents[2]


def _execute(engine, *statements):
    with engine.connect() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def _as_role(role: str) -> sa.Engine:
    url = sa.engine.make_url(audited_url()).set(username=role, password=None)
    return sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"application_name": "watch-tests"})


def _select(role: str, *statements):
    engine = _as_role(role)
    with engine.connect() as conn:
        for statement in statements:
            conn.execute(sa.text(statement)).fetchall()


@pytest.fixture
def audited(db):
    """A schema with a customers table and its governed view in the audited warehouse; a login role
    per reader; a pull role with pg_read_server_files; the store, its connection and the dataset."""
    admin = audited_engine()
    schema, table = unique("shop"), unique("customers")
    puller, analyst, stranger = unique("puller"), unique("mia"), unique("nobody")
    _execute(admin,
             f"CREATE SCHEMA {schema}", "CREATE SCHEMA IF NOT EXISTS governed",
             f"CREATE TABLE {schema}.{table} (id int, email text, ssn text)",
             f"INSERT INTO {schema}.{table} VALUES (1, 'a@example.com', '123-45-6789')",
             f"CREATE VIEW governed.{table} AS SELECT id, email FROM {schema}.{table}",
             f"CREATE ROLE {puller} LOGIN", f"GRANT pg_read_server_files, pg_monitor TO {puller}",
             f"GRANT EXECUTE ON FUNCTION pg_read_binary_file(text, bigint, bigint, boolean) TO {puller}",
             f"GRANT EXECUTE ON FUNCTION pg_stat_file(text, boolean) TO {puller}",
             f"GRANT EXECUTE ON FUNCTION pg_current_logfile(text) TO {puller}",
             f"ALTER ROLE {puller} SET pgaudit.log = 'none'",  # the catalog's reads of the log are not logged
             *[s for role in (analyst, stranger) for s in (
                 f"CREATE ROLE {role} LOGIN", f"GRANT USAGE ON SCHEMA {schema}, governed TO {role}",
                 f"GRANT SELECT ON {schema}.{table}, governed.{table} TO {role}")])
    engineer = UserFactory(username="pat", roles=["platform_engineer"])
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    store = StoreFactory(name=unique("audited"), kind="transactional", platform="postgresql", environment="prod")
    url = sa.engine.make_url(audited_url())
    connection_save(principal=engineer, store=store, host=url.host, port=url.port, database=url.database,
                    username=puller)
    dataset = dataset_create(principal=registrar, store=store, name=f"{schema}.{table}", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive"),
        column_payload("ssn", sensitivity="Restricted"),
    ])
    mia = UserFactory(username="mia", roles=["data_analyst"], warehouse_role=analyst)
    security = UserFactory(username="sec", roles=["security_engineer"])
    approver = UserFactory(username="ana", is_staff=True, is_superuser=True)
    access_log_pull_enable(store=store)
    yield {"store": store, "dataset": dataset, "schema": schema, "table": table, "mia": mia, "analyst": analyst,
           "stranger": stranger, "security": security, "approver": approver, "registrar": registrar}
    _execute(admin, f"DROP SCHEMA {schema} CASCADE", f"DROP VIEW IF EXISTS governed.{table}",
             *[s for r in (puller, analyst, stranger) for s in (f"DROP OWNED BY {r}", f"DROP ROLE {r}")])


def _logged_so_far(store) -> None:
    """Wait until what was run so far is in the csvlog: a marker logged after it is written after
    it (the logging collector writes in order), so once the marker is there, so is the rest."""
    admin, marker = audited_engine(), f"watch-tests marker {uuid.uuid4().hex}"
    position = LogPosition.objects.get(store=store)
    _execute(admin, f"DO $$BEGIN RAISE LOG '{marker}'; END$$")
    wait_for_log_text(admin, position.file, position.offset, marker)


def _pull_until(store, count: int) -> list[AccessEvent]:
    """Pull once everything run so far is in the log; ``count`` events are expected."""
    _logged_so_far(store)
    access_log_pull(store=store)
    events = list(AccessEvent.objects.filter(store=store).order_by("id"))
    assert len(events) >= count, f"expected {count} events, got {len(events)}: {events}"
    return events


def _events(user, store) -> list[dict]:
    client = APIClient()
    client.force_login(user)
    response = client.get(f"/api/v1/monitoring/events/?store={store.pk}")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_reads_are_attributed_to_the_user_with_what_allowed_them(audited):
    s = audited
    relation = f"{s['schema']}.{s['table']}"
    _select(s["analyst"], f"SELECT id FROM {relation} WHERE email = 'someone@example.com'",
            f"SELECT email FROM {relation}")
    _pull_until(s["store"], 2)
    by_columns = {tuple(e["columns"]): e for e in _events(s["security"], s["store"])}

    standing = by_columns[("id", "email")] if ("id", "email") in by_columns else by_columns[("id",)]
    assert standing["user"] == "mia" and standing["databaseRole"] == s["analyst"]
    assert standing["dataset"] == s["dataset"].pk and standing["action"] == "read"
    assert standing["application"] == "watch-tests" and standing["clientAddress"] == "127.0.0.1"
    email = by_columns[("email",)]
    assert email["finding"] is True and email["allowedBy"] == "" and "no active grant" in email["findingReason"]
    for event in by_columns.values():
        assert "someone@example.com" not in event["statement"]


def test_a_read_under_a_grant_names_the_grant(audited):
    s = audited
    request = access_request_create(principal=s["mia"], dataset=s["dataset"], level=AccessLevel.READ, duration=4,
                                    columns=["email"], justification="Investigating the refund bug INC-42",
                                    ticket="INC-42")
    access_request_review(principal=s["approver"], request=request, approve=True)
    grant = Grant.objects.get(request=request)
    _select(s["analyst"], f"SELECT email FROM {s['schema']}.{s['table']}")
    _pull_until(s["store"], 1)
    [event] = _events(s["security"], s["store"])
    assert event["columns"] == ["email"] and event["finding"] is False
    assert event["allowedBy"] == f"grant #{grant.pk}" and event["grant"] == grant.pk


def test_select_star_is_expanded_and_an_unmapped_role_is_a_finding(audited):
    s = audited
    _select(s["stranger"], f"SELECT * FROM {s['schema']}.{s['table']}")
    _pull_until(s["store"], 1)
    [event] = _events(s["security"], s["store"])
    assert event["columns"] == ["id", "email", "ssn"] and event["rows"] == 1
    assert event["user"] is None and event["databaseRole"] == s["stranger"]
    assert event["finding"] is True and "not mapped" in event["findingReason"]


def test_a_read_of_the_governed_view_counts_for_the_base_dataset(audited):
    s = audited
    _select(s["analyst"], f"SELECT id FROM governed.{s['table']}")
    events = _pull_until(s["store"], 1)
    governed = [e for e in events if e.via_view]
    assert governed and governed[0].dataset_id == s["dataset"].pk
    assert governed[0].via_view == f"governed.{s['table']}" and governed[0].columns == ["id"]


def test_pulling_again_records_nothing_twice(audited):
    s = audited
    before = LogPosition.objects.get(store=s["store"])
    _select(s["analyst"], f"SELECT id FROM {s['schema']}.{s['table']}")
    _pull_until(s["store"], 1)
    # As if the position had not moved (a pull that recorded but died before saving it).
    LogPosition.objects.filter(pk=before.pk).update(file=before.file, offset=before.offset)
    access_log_pull(store=s["store"])
    assert AccessEvent.objects.filter(store=s["store"]).count() == 1


def test_usage_of_the_dataset_through_the_api(audited, django_assert_max_num_queries):
    s = audited
    _select(s["stranger"], f"SELECT ssn FROM {s['schema']}.{s['table']}")
    _select(s["analyst"], f"SELECT id FROM {s['schema']}.{s['table']}")
    _pull_until(s["store"], 2)
    client = APIClient()
    client.force_login(s["security"])
    with django_assert_max_num_queries(20):
        usage = client.get(f"/api/v1/datasets/{s['dataset'].pk}/usage/").json()
    assert usage["reads"] == 2 and usage["perDay"][-1]["read"] == 2
    assert {r["reader"] for r in usage["topReaders"]} == {"mia", f"role:{s['stranger']}"}
    assert usage["neverReadColumns"] == ["email"]
    [restricted] = usage["restrictedReaders"]
    assert restricted["databaseRole"] == s["stranger"] and restricted["finding"] is True

    client.force_login(s["mia"])  # sees the dataset, not who read its Restricted columns
    usage = client.get(f"/api/v1/datasets/{s['dataset'].pk}/usage/").json()
    assert usage["reads"] == 2 and usage["restrictedReaders"] is None


@pytest.mark.django_db(transaction=True)
def test_a_pull_killed_mid_batch_records_nothing_and_the_next_pull_records_once(audited):
    s = audited
    _select(s["analyst"], f"SELECT id FROM {s['schema']}.{s['table']}")
    before = LogPosition.objects.get(store=s["store"])
    script = (
        "import os, signal, django; django.setup()\n"
        "from monitoring import ingestion, pull\n"
        "from catalog.models import DataStore\n"
        "real = ingestion.access_log_ingest\n"
        "def dying(**kw):\n"
        "    kw['on_written'] = lambda: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(**kw)\n"
        "pull.access_log_ingest = dying\n"
        "pull.access_log_pull(store=DataStore.objects.get(pk=%d))\n" % s["store"].pk
    )
    wait_for_log_text(audited_engine(), before.file, before.offset, s["table"])  # the read is in the log
    settings_name = db_connection.settings_dict["NAME"]
    env = {**os.environ, "DATABASE_URL": f"postgres://{db_connection.settings_dict['USER']}@"
           f"{db_connection.settings_dict['HOST']}:{db_connection.settings_dict['PORT']}/{settings_name}",
           "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    assert AccessEvent.objects.filter(store=s["store"]).count() == 0
    after = LogPosition.objects.get(store=s["store"])
    assert (after.file, after.offset) == (before.file, before.offset)

    _pull_until(s["store"], 1)
    access_log_pull(store=s["store"])
    assert AccessEvent.objects.filter(store=s["store"]).count() == 1


def test_the_pull_is_started_stopped_and_run_from_the_command_line(audited):
    import json
    from io import StringIO

    from django.core.management import CommandError, call_command

    s = audited
    out = StringIO()
    call_command("access_log_pull", s["store"].name, "--disable", stdout=out)
    assert not LogPosition.objects.get(store=s["store"]).pull_enabled and "Stopped" in out.getvalue()
    with pytest.raises(CommandError, match="not pulled"):
        call_command("access_log_pull", s["store"].name)
    call_command("access_log_pull", s["store"].name, "--enable", stdout=out)
    position = LogPosition.objects.get(store=s["store"])
    assert position.pull_enabled and position.file.endswith(".csv")
    _select(s["analyst"], f"SELECT id FROM {s['schema']}.{s['table']}")
    _logged_so_far(s["store"])
    out = StringIO()
    call_command("access_log_pull", s["store"].name, stdout=out)
    assert json.loads(out.getvalue())["recorded"] == 1  # the pull that took the read in says so
    assert AccessEvent.objects.filter(store=s["store"], user=s["mia"]).count() == 1
    with pytest.raises(CommandError, match="No store"):
        call_command("access_log_pull", "no-such-store")


def test_a_record_longer_than_a_pull_chunk_does_not_stop_the_pull(audited, settings):
    # One statement padded past the pull's chunk: the pull must read it whole and go on, or every
    # read after it would stay unseen.
    settings.MONITORING_PULL_CHUNK_BYTES = 4096
    s = audited
    relation = f"{s['schema']}.{s['table']}"
    _select(s["analyst"], f"SELECT id FROM {relation} /* {'x' * 20_000} */", f"SELECT ssn FROM {relation}")
    _pull_until(s["store"], 2)
    columns = sorted(tuple(e["columns"]) for e in _events(s["security"], s["store"]))
    assert columns == [("id",), ("ssn",)]



def test_a_record_longer_than_the_record_limit_is_an_error_on_the_position_not_a_silent_stall(audited, settings):
    from catalog.errors import ApplicationError

    settings.MONITORING_PULL_CHUNK_BYTES = 4096
    settings.MONITORING_PULL_RECORD_MAX_BYTES = 8192
    s = audited
    _select(s["analyst"], f"SELECT id FROM {s['schema']}.{s['table']} /* {'x' * 20_000} */")
    _logged_so_far(s["store"])
    with pytest.raises(ApplicationError, match="MONITORING_PULL_RECORD_MAX_BYTES"):
        access_log_pull(store=s["store"])
    assert "longer than 8,192 bytes" in LogPosition.objects.get(store=s["store"]).last_error
    settings.MONITORING_PULL_RECORD_MAX_BYTES = 64 * 1024
    access_log_pull(store=s["store"])
    assert [tuple(e["columns"]) for e in _events(s["security"], s["store"])] == [("id",)]
