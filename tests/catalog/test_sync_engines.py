"""The warehouse sync against real engines: PostgreSQL, MariaDB, SQLite and DuckDB.

Each test builds its own warehouse (see ``tests/catalog/warehouses.py``) and runs the sync in
this process, as the worker would: ``sync_run_request(enqueue=False)`` then ``sync_run_execute``.
"""

import json
import logging
import uuid

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from catalog.connections import connection_save
from catalog.models import (
    Column,
    ColumnSuggestion,
    Dataset,
    DatasetStatus,
    DatasetVersion,
    SyncOutcome,
    SyncRunEvent,
    SyncStatus,
)
from catalog.services import dataset_register, dataset_update_status, suggestion_decide
from catalog.sync import sync_run_execute, sync_run_request
from catalog.vocabulary import Protection, Sensitivity
from lineage.models import Edge, EdgeKind, EdgeLevel, NodeKind
from tests.catalog.warehouses import (
    CUSTOMER_COLUMNS,
    OBJECTS,
    PERSONAL_VALUES,
    TABLE_COMMENT,
    VIEW_COLUMNS,
    mariadb_warehouse,
    postgres_warehouse,
    warehouse,
)
from tests.factories import StoreFactory, UserFactory

pytestmark = pytest.mark.django_db

PLATFORMS = ["postgresql", "mysql", "sqlite", "duckdb"]
MULTI_SCHEMA_PLATFORMS = ["postgresql", "mysql", "duckdb"]

# How each engine's reflection names the types of sales.customers, in column order.
CUSTOMER_TYPES = {
    "postgresql": ["INTEGER", "VARCHAR(255)", "VARCHAR(40)", "DATE", "VARCHAR(19)", "TEXT[]"],
    "mysql": ["INTEGER(11)", "VARCHAR(255)", "VARCHAR(40)", "DATE", "VARCHAR(19)", "TEXT"],
    "sqlite": ["INTEGER", "VARCHAR(255)", "VARCHAR(40)", "DATE", "VARCHAR(19)", "TEXT"],
    "duckdb": ["INTEGER", "VARCHAR", "VARCHAR", "DATE", "VARCHAR", "VARCHAR[]"],
}
HAS_ARRAYS = {"postgresql", "duckdb"}
HAS_COMMENTS = {"postgresql", "mysql", "duckdb"}


@pytest.fixture(params=PLATFORMS)
def wh(request, tmp_path):
    with warehouse(request.param, tmp_path) as built:
        yield built


@pytest.fixture(params=MULTI_SCHEMA_PLATFORMS)
def multi_schema_wh(request, tmp_path):
    with warehouse(request.param, tmp_path) as built:
        yield built


@pytest.fixture
def engineer(platform_engineer):
    return platform_engineer


def connect(wh, engineer, *, name="shop", password=None, **fields):
    store = StoreFactory(name=name, platform=wh.platform)
    connection_save(principal=engineer, store=store, password=password, **{**wh.connection_fields, **fields})
    return store


def sync(store, engineer):
    run, created = sync_run_request(principal=engineer, store=store, enqueue=False)
    assert created
    return sync_run_execute(run.pk)


def synced_objects(wh):
    return [spec for spec in OBJECTS if spec.schema in wh.schemas]


def dataset(wh, store, logical, name) -> Dataset:
    return Dataset.objects.get(qualified_name=wh.qualified(store, logical, name))


# First sync ------------------------------------------------------------------------------


def test_first_sync_creates_one_dataset_per_table_and_view(wh, engineer):
    store = connect(wh, engineer)

    run = sync(store, engineer)

    expected = {wh.qualified(store, spec.schema, spec.name) for spec in synced_objects(wh)}
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert set(Dataset.objects.filter(store=store).values_list("qualified_name", flat=True)) == expected
    assert (run.new_count, run.objects_total, run.objects_done) == (len(expected), len(expected), len(expected))
    assert DatasetVersion.objects.filter(dataset__store=store).count() == len(expected)


@pytest.mark.parametrize(
    ("platform", "customers"),
    [
        ("postgresql", "shop.sales.customers"),
        ("mysql", "shop.{sales}.customers"),
        ("sqlite", "shop.customers"),
        ("duckdb", "shop.customers"),
    ],
)
def test_qualified_names_are_store_schema_table_and_main_has_no_name(platform, customers, tmp_path, engineer):
    with warehouse(platform, tmp_path) as wh:
        store = connect(wh, engineer)
        sync(store, engineer)

    assert Dataset.objects.filter(qualified_name=customers.format(sales=wh.schemas["sales"])).exists()
    if platform == "duckdb":
        assert Dataset.objects.filter(qualified_name="shop.staging.events").exists()


def test_first_sync_reads_columns_types_modes_and_comments(wh, engineer):
    store = connect(wh, engineer)

    sync(store, engineer)

    customers = dataset(wh, store, "sales", "customers")
    columns = list(customers.columns.order_by("position"))
    assert [column.name for column in columns] == CUSTOMER_COLUMNS
    assert [column.type for column in columns] == CUSTOMER_TYPES[wh.platform]
    tags_mode = "REPEATED" if wh.platform in HAS_ARRAYS else "NULLABLE"
    assert [column.mode for column in columns] == ["REQUIRED", "REQUIRED", "NULLABLE", "NULLABLE", "NULLABLE", tags_mode]
    assert [c["name"] for c in customers.current_version.columns] == CUSTOMER_COLUMNS
    if wh.platform in HAS_COMMENTS:
        assert customers.description == TABLE_COMMENT
        assert {c.name: c.description for c in columns if c.description} == {
            "email": "Where receipts go", "card_number": "Card on file",
        }
    view = dataset(wh, store, "sales", "customer_totals")
    assert [column.name for column in view.columns.order_by("position")] == VIEW_COLUMNS


def test_second_sync_with_nothing_changed_makes_no_version(wh, engineer):
    store = connect(wh, engineer)
    sync(store, engineer)
    versions = DatasetVersion.objects.count()

    run = sync(store, engineer)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.unchanged_count == len(synced_objects(wh))
    assert (run.new_count, run.changed_count, run.deprecated_count, run.failed_count) == (0, 0, 0, 0)
    assert DatasetVersion.objects.count() == versions
    assert not SyncRunEvent.objects.filter(run=run).exists()


# Drift -----------------------------------------------------------------------------------


def test_added_column_makes_a_new_non_breaking_version(wh, engineer):
    store = connect(wh, engineer)
    sync(store, engineer)
    wh.add_column("sales", "orders", "channel")

    run = sync(store, engineer)

    orders = dataset(wh, store, "sales", "orders")
    assert run.changed_count == 1
    assert orders.current_version.number == 2
    assert orders.current_version.is_breaking is False
    assert orders.current_version.diff["added"] == ["channel"]
    assert SyncRunEvent.objects.get(run=run).outcome == SyncOutcome.CHANGED


def test_dropped_column_is_breaking_and_mails_owners_of_the_dataset_and_downstream(
    wh, engineer, django_capture_on_commit_callbacks
):
    store = connect(wh, engineer)
    sync(store, engineer)
    dataset(wh, store, "sales", "customers").owners.add(UserFactory(username="olga"))
    dataset(wh, store, "sales", "customer_totals").owners.add(UserFactory(username="vic"))
    wh.drop_column("sales", "customers", "phone")
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        run = sync(store, engineer)

    customers = dataset(wh, store, "sales", "customers")
    assert customers.current_version.is_breaking is True
    assert customers.current_version.diff["removed"] == ["phone"]
    assert SyncRunEvent.objects.get(run=run, dataset=customers).outcome == SyncOutcome.BREAKING
    breaking_mail = [m for m in mail.outbox if m.subject == f"Breaking change in {customers.qualified_name}"]
    assert [address for m in breaking_mail for address in m.to] == ["olga@example.com"]
    # olga has no role: she sees the dataset she owns, and only a count of what lies downstream
    assert "1 downstream dataset you may not see may break" in breaking_mail[0].body
    assert "customer_totals" not in breaking_mail[0].body
    # vic owns the downstream dataset but has no role that shows him customers: he is warned
    # without its name or its columns.
    (upstream_mail,) = [m for m in mail.outbox if m.to == ["vic@example.com"]]
    assert upstream_mail.subject == "Breaking change in a dataset upstream of yours"
    assert "sales" not in upstream_mail.subject and "customers" not in upstream_mail.body
    assert "phone" not in upstream_mail.body and "customer_totals" in upstream_mail.body


def test_changed_type_is_a_breaking_version(wh, engineer):
    store = connect(wh, engineer)
    sync(store, engineer)
    wh.change_type("staging", "events", "score", "VARCHAR(20)")

    run = sync(store, engineer)

    events = dataset(wh, store, "staging", "events")
    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert events.current_version.is_breaking is True
    [change] = events.current_version.diff["changed"]
    assert change["name"] == "score" and "type" in change["fields"]
    assert events.columns.get(name="score").type.upper().startswith("VARCHAR")


def test_dropped_table_is_deprecated_and_reactivated_when_it_returns(wh, engineer):
    store = connect(wh, engineer)
    sync(store, engineer)
    wh.drop_table("staging", "events")

    gone = sync(store, engineer)
    events = dataset(wh, store, "staging", "events")
    assert events.status == DatasetStatus.DEPRECATED
    assert gone.deprecated_count == 1
    assert SyncRunEvent.objects.get(run=gone).outcome == SyncOutcome.DEPRECATED

    wh.create_events()
    back = sync(store, engineer)
    events.refresh_from_db()
    assert events.status == DatasetStatus.ACTIVE
    assert back.reactivated_count == 1
    assert SyncRunEvent.objects.get(run=back).outcome == SyncOutcome.REACTIVATED
    assert events.versions.count() == 1


def test_new_table_appears_in_the_next_sync(wh, engineer):
    store = connect(wh, engineer)
    sync(store, engineer)
    wh.add_table("sales", "refunds")

    run = sync(store, engineer)

    assert run.new_count == 1
    assert dataset(wh, store, "sales", "refunds").columns.count() == 2


# View lineage ----------------------------------------------------------------------------


def test_view_definition_gives_dataset_and_column_edges(wh, engineer):
    store = connect(wh, engineer)

    run = sync(store, engineer)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    view = dataset(wh, store, "sales", "customer_totals")
    into_view = Edge.objects.filter(kind=EdgeKind.VIEW, target__dataset=view).select_related("source", "target")
    dataset_edges = {e.source.dataset.name for e in into_view if e.level == EdgeLevel.DATASET}
    column_edges = {
        (e.source.dataset.name, e.source.name, e.target.name)
        for e in into_view if e.level == EdgeLevel.COLUMN and e.target.kind == NodeKind.COLUMN
    }
    assert dataset_edges == {"customers", "orders"}
    assert {
        ("customers", "id", "customer_id"), ("customers", "email", "email"),
        ("orders", "id", "order_count"), ("orders", "amount", "total_amount"),
    } <= column_edges


def redefine_customer_totals(wh):
    """The view without ``email`` and with a new ``last_order_at`` (PostgreSQL cannot drop a view's
    column with CREATE OR REPLACE, so it is dropped and made again, as people do)."""
    customers, orders = wh.table("sales", "customers"), wh.table("sales", "orders")
    totals = wh.table("sales", "customer_totals")
    wh.execute(
        f"DROP VIEW {totals}",
        f"CREATE VIEW {totals} AS SELECT c.id AS customer_id, COUNT(o.id) AS order_count, "
        f"SUM(o.amount) AS total_amount, MAX(o.created_at) AS last_order_at "
        f"FROM {customers} c JOIN {orders} o ON o.customer_id = c.id GROUP BY c.id",
    )


def column_edges_into(client, view) -> set[tuple[str, str, str, str]]:
    """``(kind, source dataset, source column, view column)`` of the column edges into ``view``, as
    the lineage API shows them (every column node of the view, dropped ones included)."""
    response = client.get(
        f"/api/v1/datasets/{view.pk}/lineage/", {"level": "column", "direction": "upstream", "depth": 1}
    )
    assert response.status_code == 200, response.content
    graph = response.json()
    nodes = {node["id"]: node for node in graph["nodes"]}

    def named(node_id):  # (table, column) for a column, ("source", kind:name) for an external source
        node = nodes[node_id]
        return (node["dataset"]["qualifiedName"].rpartition(".")[2] if node["dataset"] else "source"), node["label"]

    return {
        (edge["kind"], *named(edge["source"]), nodes[edge["target"]]["label"])
        for edge in graph["edges"] if nodes[edge["target"]]["dataset"] and nodes[edge["target"]]["dataset"]["id"] == view.pk
    }


@pytest.mark.parametrize("platform", ["postgresql", "mysql"])
def test_a_redefined_view_has_exactly_the_column_edges_of_its_new_sql(platform, tmp_path, engineer, registrar):
    with warehouse(platform, tmp_path) as wh:
        store = connect(wh, engineer)
        sync(store, engineer)
        view = dataset(wh, store, "sales", "customer_totals")
        customers = dataset(wh, store, "sales", "customers")
        client = APIClient()
        client.force_login(registrar)
        # Edges from elsewhere on the same view: a job's column lineage into the column the view
        # will lose, and an originating source registered on a column it keeps.
        event = {
            "eventType": "COMPLETE", "eventTime": "2026-11-22T10:00:00+00:00", "producer": "https://example.org/dbt",
            "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "dbt", "name": "customer_totals_backfill"},
            "inputs": [{"namespace": store.name, "name": customers.registration_name}],
            "outputs": [{"namespace": store.name, "name": view.registration_name, "facets": {"columnLineage": {"fields": {
                "email": {"inputFields": [{"namespace": store.name, "name": customers.registration_name, "field": "email",
                                           "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}]}]},
            }}}}],
        }
        assert client.post("/api/v1/lineage", event, format="json").status_code == 202
        columns = [
            {key: snapshot[key] for key in ("name", "type", "mode", "description", "sensitivity", "protection")}
            | ({"originatingSource": "transactional:crm.accounts"} if snapshot["name"] == "customer_id" else {})
            for snapshot in view.current_version.columns
        ]
        dataset_register(principal=registrar, payload={"name": view.registration_name, "store": store.name,
                                                       "columns": columns})
        before = column_edges_into(client, view)
        assert ("view", "customers", "email", "email") in before
        redefine_customer_totals(wh)

        run = sync(store, engineer)

        assert run.status == SyncStatus.SUCCEEDED, run.message
        after = column_edges_into(client, view)
        assert {edge for edge in after if edge[0] == "view"} == {
            ("view", "customers", "id", "customer_id"),
            ("view", "orders", "id", "order_count"),
            ("view", "orders", "amount", "total_amount"),
            ("view", "orders", "created_at", "last_order_at"),
        }
        assert {edge for edge in after if edge[0] != "view"} == {
            ("copy", "customers", "email", "email"),
            ("origin", "source", "transactional:crm.accounts", "customer_id"),
        }


# Schemas chosen --------------------------------------------------------------------------


def test_include_and_exclude_patterns_choose_the_schemas(multi_schema_wh, engineer):
    wh = multi_schema_wh
    store = connect(wh, engineer, include_schemas=[wh.schema_glob()], exclude_schemas=[wh.schemas["scratch"]])

    run = sync(store, engineer)

    names = set(Dataset.objects.filter(store=store).values_list("name", flat=True))
    assert names == {"customers", "orders", "customer_totals", "events"}
    assert run.new_count == 4


def test_include_pattern_alone_limits_the_sync_to_matching_schemas(multi_schema_wh, engineer):
    wh = multi_schema_wh
    store = connect(wh, engineer, include_schemas=[wh.schemas["staging"]])

    sync(store, engineer)

    assert set(Dataset.objects.filter(store=store).values_list("name", flat=True)) == {"events"}


def test_excluding_a_schema_later_does_not_deprecate_its_datasets(multi_schema_wh, engineer):
    wh = multi_schema_wh
    store = connect(wh, engineer)
    sync(store, engineer)
    connection_save(principal=engineer, store=store, exclude_schemas=[wh.schemas["scratch"]])

    run = sync(store, engineer)

    assert run.deprecated_count == 0
    assert dataset(wh, store, "scratch", "scratch_notes").status == DatasetStatus.ACTIVE


def test_dropped_schema_deprecates_its_datasets(multi_schema_wh, engineer):
    wh = multi_schema_wh
    store = connect(wh, engineer)
    sync(store, engineer)
    wh.drop_schema("scratch")

    run = sync(store, engineer)

    assert run.deprecated_count == 1
    assert dataset(wh, store, "scratch", "scratch_notes").status == DatasetStatus.DEPRECATED
    assert dataset(wh, store, "sales", "customers").status == DatasetStatus.ACTIVE


# Suggestions -----------------------------------------------------------------------------


def test_sampled_columns_get_suggestions_with_counts_and_no_values(wh, engineer, caplog):
    caplog.set_level(logging.DEBUG)
    store = connect(wh, engineer, sampling_enabled=True, sample_size=50)

    run = sync(store, engineer)

    customers = dataset(wh, store, "sales", "customers")
    found = {(s.column.name, s.label): s for s in ColumnSuggestion.objects.filter(dataset=customers)}
    assert ("email", "email") in found and ("card_number", "credit_card") in found
    for key in (("email", "email"), ("card_number", "credit_card")):
        assert found[key].evidence["sampled"] == 6
        assert found[key].evidence["matched"] == 6
    assert run.suggestion_count == ColumnSuggestion.objects.filter(run=run).count() > 0
    stored = json.dumps([s.evidence for s in ColumnSuggestion.objects.all()])
    stored += json.dumps(list(SyncRunEvent.objects.values_list("message", flat=True)))
    stored += json.dumps(list(DatasetVersion.objects.values_list("columns", flat=True)))
    stored += run.message + caplog.text
    assert [value for value in PERSONAL_VALUES if value in stored] == []


def test_without_sampling_suggestions_come_from_names_only(wh, engineer):
    store = connect(wh, engineer)

    sync(store, engineer)

    suggestion = ColumnSuggestion.objects.get(column__name="email", column__dataset__name="customers", label="email")
    assert suggestion.evidence["sampled"] == 0
    assert suggestion.evidence["name"]


# The catalog's own metadata --------------------------------------------------------------


def test_sensitivity_and_protection_set_in_the_catalog_survive_the_next_sync(wh, engineer, registrar):
    store = connect(wh, engineer)
    sync(store, engineer)
    customers = dataset(wh, store, "sales", "customers")
    columns = []
    for snapshot in customers.current_version.columns:
        column = {key: snapshot[key] for key in ("name", "type", "mode", "description", "sensitivity", "protection")}
        if snapshot["name"] == "card_number":
            column.update(sensitivity="Restricted", protection="Masked")
        columns.append(column)
    dataset_register(principal=registrar, payload={
        "name": customers.registration_name, "store": store.name, "columns": columns,
    })

    run = sync(store, engineer)

    card = Column.objects.get(dataset=customers, name="card_number")
    assert (card.sensitivity, card.protection) == (Sensitivity.RESTRICTED, Protection.MASKED)
    assert run.unchanged_count == len(synced_objects(wh))
    assert customers.versions.count() == 2


def test_a_dropped_column_that_comes_back_keeps_its_classification(sqlite_wh, engineer, registrar):
    # A table that loses a Restricted column and gets it back must not bring it back as Regular:
    # the sync reads the column's last classification from the versions before.
    store = connect(sqlite_wh, engineer)
    sync(store, engineer)
    customers = dataset(sqlite_wh, store, "sales", "customers")
    columns = []
    for snapshot in customers.current_version.columns:
        column = {key: snapshot[key] for key in ("name", "type", "mode", "description", "sensitivity", "protection")}
        if snapshot["name"] == "phone":
            column.update(sensitivity="Restricted", protection="Masked")
        columns.append(column)
    dataset_register(principal=registrar, payload={
        "name": customers.registration_name, "store": store.name, "columns": columns,
    })
    sqlite_wh.drop_column("sales", "customers", "phone")
    sync(store, engineer)
    assert not Column.objects.filter(dataset=customers, name="phone").exists()
    sqlite_wh.add_column("sales", "customers", "phone", "VARCHAR(40)")

    sync(store, engineer)

    phone = Column.objects.get(dataset=customers, name="phone")
    assert (phone.sensitivity, phone.protection) == (Sensitivity.RESTRICTED, Protection.MASKED)
    customers.refresh_from_db()
    assert customers.sensitivity == Sensitivity.RESTRICTED


def test_accepted_suggestion_survives_the_next_sync(wh, engineer, registrar):
    store = connect(wh, engineer)
    sync(store, engineer)
    suggestion = ColumnSuggestion.objects.get(column__name="email", column__dataset__name="customers", label="email")
    suggestion_decide(principal=registrar, suggestion=suggestion, accept=True)

    run = sync(store, engineer)

    email = Column.objects.get(pk=suggestion.column_id)
    assert email.sensitivity == Sensitivity.SENSITIVE
    assert run.unchanged_count == len(synced_objects(wh))
    assert not ColumnSuggestion.objects.filter(run=run).exists()


# Failures --------------------------------------------------------------------------------


def assert_failed_cleanly(run, password, caplog):
    assert run.status == SyncStatus.FAILED
    assert run.message.startswith("Could not connect to the warehouse of shop: ")
    assert password not in run.message
    assert password not in caplog.text
    assert not SyncRunEvent.objects.filter(run=run, message__contains=password).exists()
    assert Dataset.objects.count() == 0
    assert DatasetVersion.objects.count() == 0


@pytest.mark.parametrize(("builder", "refused"), [
    (postgres_warehouse, "Connection refused"),
    (mariadb_warehouse, "Can't connect to MySQL server"),
])
def test_warehouse_that_is_down_fails_the_run_and_writes_nothing(builder, refused, engineer, caplog):
    caplog.set_level(logging.DEBUG)
    password = f"pw-{uuid.uuid4().hex}"
    with builder() as wh:
        store = connect(wh, engineer, password=password, port=1)

        run = sync(store, engineer)

    assert_failed_cleanly(run, password, caplog)
    assert refused in run.message


@pytest.mark.parametrize("platform", ["sqlite", "duckdb"])
def test_missing_database_file_fails_the_run_and_writes_nothing(platform, engineer, tmp_path, caplog):
    with warehouse(platform, tmp_path) as wh:
        store = connect(wh, engineer, database=str(tmp_path / "missing" / "gone.db"))

        run = sync(store, engineer)

    assert_failed_cleanly(run, "no password here", caplog)


def test_unknown_postgresql_user_fails_the_run_without_the_password(engineer, caplog):
    caplog.set_level(logging.DEBUG)
    password = f"pw-{uuid.uuid4().hex}"
    with postgres_warehouse() as wh:
        store = connect(wh, engineer, username=f"nobody_{uuid.uuid4().hex[:8]}", password=password)

        run = sync(store, engineer)

    assert_failed_cleanly(run, password, caplog)
    assert "does not exist" in run.message


MARIADB_HOSTS = ("localhost", "127.0.0.1")  # where the tests connect from (no '%': the driver formats it)


@pytest.fixture
def mariadb_user():
    """A MariaDB user with a password, dropped afterwards."""
    with mariadb_warehouse() as wh:
        name, password = f"wh_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
        for host in MARIADB_HOSTS:
            wh.execute(f"CREATE USER '{name}'@'{host}' IDENTIFIED BY '{password}'")
        try:
            yield wh, name, password
        finally:
            for host in MARIADB_HOSTS:
                wh.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")


def test_wrong_mariadb_password_fails_the_run_without_the_password(mariadb_user, engineer, caplog):
    caplog.set_level(logging.DEBUG)
    wh, name, password = mariadb_user
    wrong = password + "-wrong"

    run = sync(connect(wh, engineer, username=name, password=wrong), engineer)

    assert_failed_cleanly(run, wrong, caplog)
    assert password not in run.message
    assert "Access denied" in run.message


def test_right_mariadb_password_opens_the_sealed_secret(mariadb_user, engineer):
    wh, name, password = mariadb_user
    for schema in wh.schemas.values():
        for host in MARIADB_HOSTS:
            wh.execute(f"GRANT SELECT, SHOW VIEW ON `{schema}`.* TO '{name}'@'{host}'")

    run = sync(connect(wh, engineer, username=name, password=password), engineer)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.new_count == len(synced_objects(wh))


def test_one_broken_table_does_not_fail_the_run(engineer):
    with postgres_warehouse() as wh:
        wh.execute('CREATE TABLE sales.mixed_case ("Email" TEXT, email TEXT)')
        store = connect(wh, engineer)

        run = sync(store, engineer)

    assert run.status == SyncStatus.PARTIAL
    assert run.failed_count == 1
    event = SyncRunEvent.objects.get(run=run, outcome=SyncOutcome.ERROR)
    assert event.object_name == "shop.sales.mixed_case"
    assert "differ only in case" in event.message
    assert not Dataset.objects.filter(qualified_name="shop.sales.mixed_case").exists()
    assert run.new_count == len(synced_objects(wh))



# Deprecation decided by a person ---------------------------------------------------------


@pytest.fixture
def sqlite_wh(tmp_path):
    with warehouse("sqlite", tmp_path) as built:
        yield built


def test_a_dataset_a_person_deprecated_stays_deprecated_while_the_table_exists(sqlite_wh, engineer, registrar):
    store = connect(sqlite_wh, engineer)
    sync(store, engineer)
    customers = dataset(sqlite_wh, store, "sales", "customers")
    dataset_update_status(principal=registrar, dataset=customers, status=DatasetStatus.DEPRECATED)

    run = sync(store, engineer)

    customers.refresh_from_db()
    assert customers.status == DatasetStatus.DEPRECATED
    assert run.reactivated_count == 0
    assert not SyncRunEvent.objects.filter(run=run, outcome=SyncOutcome.REACTIVATED).exists()


def test_a_changed_table_a_person_deprecated_gets_its_version_and_stays_deprecated(sqlite_wh, engineer, registrar):
    store = connect(sqlite_wh, engineer)
    sync(store, engineer)
    customers = dataset(sqlite_wh, store, "sales", "customers")
    dataset_update_status(principal=registrar, dataset=customers, status=DatasetStatus.DEPRECATED)
    sqlite_wh.add_column("sales", "customers", "loyalty_tier")

    run = sync(store, engineer)

    customers.refresh_from_db()
    assert run.changed_count == 1 and run.reactivated_count == 0
    assert customers.status == DatasetStatus.DEPRECATED
    assert customers.current_version.number == 2


def test_a_table_that_comes_back_after_a_person_deprecated_it_stays_deprecated(sqlite_wh, engineer, registrar):
    store = connect(sqlite_wh, engineer)
    sync(store, engineer)
    sqlite_wh.drop_table("staging", "events")
    sync(store, engineer)
    events = dataset(sqlite_wh, store, "staging", "events")
    assert events.deprecated_by_sync
    dataset_update_status(principal=registrar, dataset=events, status=DatasetStatus.DEPRECATED)  # confirmed by a person
    sqlite_wh.create_events()

    run = sync(store, engineer)

    events.refresh_from_db()
    assert events.status == DatasetStatus.DEPRECATED
    assert run.reactivated_count == 0


def test_accepting_a_suggestion_on_a_deprecated_dataset_keeps_it_deprecated(sqlite_wh, engineer, registrar):
    store = connect(sqlite_wh, engineer)
    sync(store, engineer)
    customers = dataset(sqlite_wh, store, "sales", "customers")
    dataset_update_status(principal=registrar, dataset=customers, status=DatasetStatus.DEPRECATED)
    suggestion = ColumnSuggestion.objects.get(column__name="email", column__dataset=customers, label="email")

    suggestion_decide(principal=registrar, suggestion=suggestion, accept=True)

    customers.refresh_from_db()
    assert customers.status == DatasetStatus.DEPRECATED
    assert customers.current_version.number == 2
    assert Column.objects.get(pk=suggestion.column_id).sensitivity == Sensitivity.SENSITIVE


def test_a_suggestion_whose_column_was_dropped_meanwhile_is_refused_naming_it(sqlite_wh, engineer, registrar):
    store = connect(sqlite_wh, engineer)
    sync(store, engineer)
    suggestion = ColumnSuggestion.objects.get(column__name="email", column__dataset__name="customers", label="email")
    ColumnSuggestion.objects.filter(pk=suggestion.pk).delete()  # what dropping the column does to it

    with pytest.raises(ValidationError) as error:
        suggestion_decide(principal=registrar, suggestion=suggestion, accept=True)

    assert "suggestion" in error.value.message_dict


# Reading a warehouse when something goes wrong part way ----------------------------------


def test_failed_bulk_reflection_on_postgresql_falls_back_table_by_table(engineer, monkeypatch):
    from catalog.connectors import PostgreSQLConnector

    def broken(self, conn, inspector, schema):
        conn.exec_driver_sql("SELECT 1 / 0")  # aborts the transaction, as a real failure would

    monkeypatch.setattr(PostgreSQLConnector, "columns_by_table", broken)
    with postgres_warehouse() as wh:
        store = connect(wh, engineer)
        run = sync(store, engineer)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    assert run.new_count == len(synced_objects(wh))
    assert dataset(wh, store, "sales", "customers").current_version.columns[1]["name"] == "email"


def test_harvest_reports_progress_after_every_table(sqlite_wh, engineer):
    from catalog.connectors import connector_for

    store = connect(sqlite_wh, engineer)
    connector = connector_for(store.connection, "")
    calls = []
    engine = connector.engine()
    with engine.connect() as conn:
        harvested = connector.harvest_schema(conn, "main", progress=lambda: calls.append(1))
    engine.dispose()

    assert len(calls) == len(harvested) == len(synced_objects(sqlite_wh)) > 1
