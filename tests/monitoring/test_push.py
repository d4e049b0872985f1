"""The push endpoint: shipper tokens (made by security engineers, good for this endpoint only),
batch formats and limits, and MariaDB server_audit lines from the real server POSTed as a shipper
would; fingerprints without literals; unparseable statements kept and counted."""

import json

import pytest
import sqlalchemy as sa
from django.test import override_settings
from rest_framework.test import APIClient

from monitoring.models import AccessEvent, UnparsedStatement
from monitoring.parsing import statement_access
from monitoring.shippers import shipper_token_create
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create, service_account_with_key
from tests.monitoring.warehouses import MARIADB_AUDIT_FILE, mariadb_engine, unique


def pg_line(number: int, statement: str, *, role="mia_role", relation="shop.customers", klass="READ") -> str:
    audit = f'AUDIT: SESSION,{number},1,{klass},SELECT,TABLE,{relation},"{statement.replace(chr(34), chr(34) * 2)}",<not logged>,1'
    return (f'2026-12-07 17:23:51.496 UTC,"{role}","postgres",17250,"10.1.2.3:50568",6b16eba7.4362,{number},"SELECT",'
            f'2026-12-07 17:23:51 UTC,3/25,725,LOG,00000,"{audit.replace(chr(34), chr(34) * 2)}",,,,,,,,,"psql","client backend",,0')


@pytest.fixture
def security(db):
    return UserFactory(username="sec", roles=["security_engineer"])


@pytest.fixture
def pg_store(db):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    store = StoreFactory(name="pg-audited", kind="transactional", platform="postgresql", environment="prod")
    dataset_create(principal=registrar, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive")])
    UserFactory(username="mia", roles=["data_analyst"], warehouse_role="mia_role")
    return store


@pytest.fixture
def shipper(pg_store, security):
    _, key = shipper_token_create(actor=security, store=pg_store, name="db-1 fluent-bit")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_a_pushed_batch_is_recorded_once(shipper, pg_store):
    lines = [pg_line(1, "SELECT id FROM shop.customers WHERE id = 4242"),
             pg_line(2, "SELECT email FROM shop.customers")]
    first = shipper.post("/api/v1/monitoring/logs/", lines, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["recorded"] == 2 and first.json()["findings"] == 1
    again = shipper.post("/api/v1/monitoring/logs/", "\n".join(lines), content_type="text/plain")
    assert again.json()["recorded"] == 0 and again.json()["duplicates"] == 2
    assert AccessEvent.objects.filter(store=pg_store).count() == 2
    event = AccessEvent.objects.get(record_key__endswith=":1")
    assert event.user.username == "mia" and event.columns == ["id"] and event.allowed_by == "standing"
    assert "4242" not in event.statement and event.client_address == "10.1.2.3"


def test_fluent_bit_and_vector_shaped_batches_are_read(shipper):
    fluent = [{"date": 1.0, "log": pg_line(3, "SELECT id FROM shop.customers")}]
    assert shipper.post("/api/v1/monitoring/logs/", fluent, format="json").json()["recorded"] == 1
    ndjson = json.dumps({"message": pg_line(4, "SELECT id FROM shop.customers"), "host": "db-1"}) + "\n"
    response = shipper.post("/api/v1/monitoring/logs/", ndjson, content_type="application/x-ndjson")
    assert response.json()["recorded"] == 1


def test_bad_batches_are_refused_naming_the_field(shipper):
    assert shipper.post("/api/v1/monitoring/logs/", "{nope", content_type="application/json").json()["errors"].keys() == {"body"}
    response = shipper.post("/api/v1/monitoring/logs/", [{"other": 1}], format="json")
    assert response.status_code == 400 and "[0]" in response.json()["errors"]
    with override_settings(MONITORING_PUSH_MAX_LINES=2):
        response = shipper.post("/api/v1/monitoring/logs/", ["a", "b", "c"], format="json")
        assert response.status_code == 400 and "lines" in response.json()["errors"]
    with override_settings(MONITORING_PUSH_MAX_BYTES=1024):
        response = shipper.post("/api/v1/monitoring/logs/", ["x" * 2000], format="json")
        assert response.status_code == 400 and "body" in response.json()["errors"]
    response = shipper.post("/api/v1/monitoring/logs/", b"x", content_type="application/xml")
    assert response.status_code == 415
    assert AccessEvent.objects.count() == 0


def test_only_a_live_shipper_token_pushes(shipper, pg_store, security):
    anonymous = APIClient()
    assert anonymous.post("/api/v1/monitoring/logs/", ["x"], format="json").status_code == 401
    _, service_key = service_account_with_key()
    pipeline = APIClient()
    pipeline.credentials(HTTP_AUTHORIZATION=f"Token {service_key}")
    assert pipeline.post("/api/v1/monitoring/logs/", ["x"], format="json").status_code == 401
    person = APIClient()
    person.force_login(security)
    assert person.post("/api/v1/monitoring/logs/", ["x"], format="json").status_code in (401, 403)

    token, key = shipper_token_create(actor=security, store=pg_store, name="other")
    elsewhere = APIClient()
    elsewhere.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert elsewhere.get("/api/v1/datasets/").status_code == 401  # the key opens the push endpoint only
    response = person.post(f"/api/v1/monitoring/shipper-tokens/{token.pk}/revoke/")
    assert response.status_code == 200
    assert elsewhere.post("/api/v1/monitoring/logs/", ["x"], format="json").status_code == 401


def test_shipper_tokens_are_made_by_security_engineers_only(pg_store, security):
    analyst = APIClient()
    analyst.force_login(UserFactory(username="al", roles=["data_analyst"]))
    body = {"store": pg_store.name, "name": "db-1"}
    assert analyst.post("/api/v1/monitoring/shipper-tokens/", body, format="json").status_code == 403
    client = APIClient()
    client.force_login(security)
    response = client.post("/api/v1/monitoring/shipper-tokens/", body, format="json")
    assert response.status_code == 201 and response.json()["key"].startswith("shp_")
    listed = client.get("/api/v1/monitoring/shipper-tokens/").json()
    assert "key" not in listed[0] and listed[0]["format"] == "pgaudit"
    response = client.post("/api/v1/monitoring/shipper-tokens/", {"store": "nope", "name": "x"}, format="json")
    assert response.status_code == 400 and "store" in response.json()["errors"]


def test_fingerprints_have_no_literals():
    access = statement_access("SELECT id FROM t WHERE email = 'ann@example.com' AND age > 42 AND code = $x$s3cr3t$x$",
                              "postgres")
    assert "ann@example.com" not in access.normalized and "42" not in access.normalized
    assert "s3cr3t" not in access.normalized
    same = statement_access("SELECT id FROM t WHERE email = 'bob@example.com' AND age > 7 AND code = $x$other$x$",
                            "postgres")
    assert same.fingerprint == access.fingerprint


def test_unparseable_statements_are_kept_as_fingerprints_and_counted(shipper, pg_store):
    lines = [pg_line(10, "SELEC id FRM shop.customers WHERE ssn = '123-45-6789'"),
             pg_line(11, "SELEC id FRM shop.customers WHERE ssn = '987-65-4321'")]
    response = shipper.post("/api/v1/monitoring/logs/", lines, format="json")
    assert response.json()["unparsed"] == 2
    [unparsed] = UnparsedStatement.objects.filter(store=pg_store)
    assert unparsed.count == 2 and "123-45" not in unparsed.statement and "987-65" not in unparsed.statement
    shipper.post("/api/v1/monitoring/logs/", lines, format="json")  # sent again: not counted again
    unparsed.refresh_from_db()
    assert unparsed.count == 2
    assert all("123-45" not in e.statement for e in AccessEvent.objects.all())


def test_mariadb_server_audit_lines_pushed_by_a_shipper(security):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    database, user = unique("shop"), unique("mia")
    store = StoreFactory(name=unique("maria"), kind="transactional", platform="mysql", environment="prod")
    dataset_create(principal=registrar, store=store, name=f"{database}.orders", columns=[
        column_payload("id", type_="INTEGER"), column_payload("card", sensitivity="Restricted")])
    UserFactory(username="mia", roles=["data_analyst"], warehouse_role=user)
    root = mariadb_engine()
    with root.connect() as conn:
        for statement in (f"CREATE DATABASE {database}", f"CREATE TABLE {database}.orders (id int, card text)",
                          f"CREATE USER '{user}'@'%'", f"GRANT SELECT ON {database}.* TO '{user}'@'%'"):
            conn.execute(sa.text(statement))
    start = open(MARIADB_AUDIT_FILE, "rb").seek(0, 2)
    try:
        url = sa.engine.make_url(str(root.url)).set(username=user, database=database)
        with sa.create_engine(url, poolclass=sa.pool.NullPool).connect() as conn:
            conn.execute(sa.text("SELECT id FROM orders WHERE card = '4111111111111111'")).fetchall()
            conn.execute(sa.text("SELECT * FROM orders")).fetchall()
        with open(MARIADB_AUDIT_FILE, "rb") as log:
            log.seek(start)
            lines = [line for line in log.read().decode().splitlines() if f",{user}," in line]
        _, key = shipper_token_create(actor=security, store=store, name="maria-1 vector")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        response = client.post("/api/v1/monitoring/logs/", lines, format="json")
        assert response.status_code == 200, response.content
        events = list(AccessEvent.objects.filter(store=store).order_by("id"))
        assert [e.columns for e in events] == [["id", "card"], ["id", "card"]]
        assert all(e.user.username == "mia" and e.finding for e in events)  # Restricted: nothing allowed it
        assert all("4111" not in e.statement for e in events)
    finally:
        with root.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database}"))
            conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'%'"))


def test_an_unparseable_server_audit_statement_pushed_twice_counts_once(security):
    store = StoreFactory(name="maria-audited", kind="transactional", platform="mysql", environment="prod")
    _, key = shipper_token_create(actor=security, store=store, name="db-2 vector")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    lines = "\n".join(f"20261207 17:23:5{n},db2,mia,10.0.0.9,8,{40 + n},QUERY,shop,'SELEC card FRM orders WHERE id = {n}',0"
                      for n in (1, 2))
    first = client.post("/api/v1/monitoring/logs/", lines, content_type="text/plain")
    assert first.status_code == 200 and first.json()["unparsed"] == 2
    again = client.post("/api/v1/monitoring/logs/", lines, content_type="text/plain")
    assert again.status_code == 200 and again.json()["unparsed"] == 0  # no event carries their keys; still once
    [unparsed] = UnparsedStatement.objects.filter(store=store)
    assert unparsed.count == 2 and "= 1" not in unparsed.statement
