"""REST API for warehouse connections, sync runs and classification suggestions."""

import secrets
import sqlite3

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from access.models import AuditEvent
from catalog.models import (
    Column,
    ColumnSuggestion,
    Connection,
    Dataset,
    DatasetVersion,
    Secret,
    SyncRun,
    SyncRunEvent,
)
from catalog.secrets import secret_open
from catalog.vocabulary import Sensitivity
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create, service_account_with_key

PASSWORD = "pw-" + secrets.token_hex(8)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def engineer(db):
    """A platform engineer: manages connections and starts syncs."""
    return UserFactory(username="pia", roles=["platform_engineer"])


@pytest.fixture
def engineer_client(engineer):
    return client_for(engineer)


@pytest.fixture
def warehouse(tmp_path):
    """A small SQLite warehouse: two tables (one with an email column) and a view."""
    path = tmp_path / "shop.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, signup_date DATE);
            CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, total NUMERIC);
            CREATE VIEW big_orders AS SELECT id, customer_id, total FROM orders WHERE total > 100;
            INSERT INTO customers (email, signup_date) VALUES ('ana@example.com', '2024-01-02');
            """
        )
    conn.close()
    return path


@pytest.fixture
def shop(db):
    return StoreFactory(name="shop", kind="transactional", platform="sqlite")


@pytest.fixture
def connected_shop(engineer, shop, warehouse):
    from catalog.connections import connection_save

    connection_save(principal=engineer, store=shop, password=PASSWORD, database=str(warehouse), schedule="0 2 * * *")
    return shop


def connection_url(store) -> str:
    return f"/api/v1/stores/{store.pk}/connection/"


def syncs_url(store) -> str:
    return f"/api/v1/stores/{store.pk}/syncs/"


def connection_state():
    """Everything a connection write could change, to prove a refused one changed nothing."""
    return (
        sorted(Connection.objects.values_list(
            "store_id", "host", "port", "database", "username", "options", "include_schemas", "exclude_schemas",
            "sampling_enabled", "sample_size", "schedule", "secret_id", "periodic_task_id",
        )),
        sorted((s.pk, bytes(s.ciphertext)) for s in Secret.objects.all()),
        sorted(PeriodicTask.objects.filter(task="catalog.store_sync_scheduled").values_list("pk", "crontab_id")),
    )


# Connections: read and write


def test_put_creates_a_connection_with_201_and_never_echoes_the_password(engineer_client, shop, warehouse):
    response = engineer_client.put(connection_url(shop), {
        "database": str(warehouse), "password": PASSWORD, "includeSchemas": ["main"], "samplingEnabled": True,
        "sampleSize": 20, "schedule": "0  2 * * *",
    }, format="json")
    assert response.status_code == 201
    body = response.json()
    assert PASSWORD not in response.content.decode()
    assert "password" not in body
    assert body["hasPassword"] is True
    assert body["platform"] == "sqlite"
    assert body["includeSchemas"] == ["main"] and body["excludeSchemas"] == []
    assert body["samplingEnabled"] is True and body["sampleSize"] == 20
    assert body["schedule"] == "0 2 * * *"
    assert body["options"] == {} and body["sealedOptions"] == []
    assert secret_open(Connection.objects.get(store=shop).secret) == PASSWORD


def test_get_shows_every_field_but_the_password(engineer_client, connected_shop):
    response = engineer_client.get(connection_url(connected_shop))
    assert response.status_code == 200
    assert PASSWORD not in response.content.decode()
    assert set(response.json()) == {
        "platform", "host", "port", "database", "username", "hasPassword", "options", "sealedOptions",
        "includeSchemas", "excludeSchemas", "samplingEnabled", "sampleSize", "schedule", "lastTestedAt",
        "lastTestOk", "lastTestMessage", "updatedAt",
    }
    assert response.json()["hasPassword"] is True


def test_stores_and_runs_never_carry_the_password(engineer_client, connected_shop):
    engineer_client.post(syncs_url(connected_shop))
    for url in ("/api/v1/stores/", f"/api/v1/stores/{connected_shop.pk}/", syncs_url(connected_shop)):
        response = engineer_client.get(url)
        assert response.status_code == 200
        assert PASSWORD not in response.content.decode()


def test_get_without_a_connection_is_404(engineer_client, shop):
    assert engineer_client.get(connection_url(shop)).status_code == 404


def test_put_again_replaces_the_fields_and_keeps_the_password_when_absent(engineer_client, connected_shop, warehouse):
    response = engineer_client.put(connection_url(connected_shop), {"database": str(warehouse)}, format="json")
    assert response.status_code == 200
    assert response.json()["hasPassword"] is True
    assert response.json()["schedule"] == ""  # left out of a PUT: back to its default
    assert not PeriodicTask.objects.filter(task="catalog.store_sync_scheduled").exists()
    assert secret_open(Connection.objects.get(store=connected_shop).secret) == PASSWORD


def test_patch_changes_only_the_fields_sent(engineer_client, connected_shop):
    response = engineer_client.patch(connection_url(connected_shop), {"excludeSchemas": ["tmp_*"]}, format="json")
    assert response.status_code == 200
    assert response.json()["excludeSchemas"] == ["tmp_*"]
    assert response.json()["schedule"] == "0 2 * * *"
    assert response.json()["hasPassword"] is True


def test_an_empty_password_removes_the_stored_one(engineer_client, connected_shop):
    response = engineer_client.patch(connection_url(connected_shop), {"password": ""}, format="json")
    assert response.status_code == 200
    assert response.json()["hasPassword"] is False
    assert not Secret.objects.exists()


def test_a_new_password_replaces_the_stored_one(engineer_client, connected_shop):
    response = engineer_client.patch(connection_url(connected_shop), {"password": "another-" + PASSWORD}, format="json")
    assert response.status_code == 200
    assert PASSWORD not in response.content.decode()
    assert secret_open(Connection.objects.get(store=connected_shop).secret) == "another-" + PASSWORD


def test_patch_without_a_connection_is_404(engineer_client, shop):
    assert engineer_client.patch(connection_url(shop), {"host": "db"}, format="json").status_code == 404
    assert not Connection.objects.exists()


def test_delete_removes_the_connection_its_password_and_its_schedule(engineer_client, connected_shop):
    response = engineer_client.delete(connection_url(connected_shop))
    assert response.status_code == 204
    assert connection_state() == ([], [], [])
    assert engineer_client.get(connection_url(connected_shop)).status_code == 404


def test_a_round_tripped_body_with_read_only_fields_is_accepted(engineer_client, connected_shop):
    body = engineer_client.get(connection_url(connected_shop)).json()
    response = engineer_client.put(connection_url(connected_shop), body, format="json")
    assert response.status_code == 200
    assert response.json()["schedule"] == "0 2 * * *"


BAD_CONNECTIONS = {
    "bad cron schedule": ({"schedule": "every night"}, "schedule"),
    "cron with a bad field": ({"schedule": "99 2 * * *"}, "schedule"),
    "options not an object": ({"options": ["sslmode=require"]}, "options"),
    "options a string": ({"options": "sslmode=require"}, "options"),
    "missing database for sqlite": ({"database": ""}, "database"),
    "sample size out of range": ({"sampleSize": 0}, "sampleSize"),
    "schemas not a list": ({"includeSchemas": 3}, "includeSchemas"),
    "port not a number": ({"port": "fifty"}, "port"),
    "misspelt field": ({"shedule": "0 2 * * *"}, "shedule"),
    "password not a string": ({"password": {"value": PASSWORD}}, "password"),
}


@pytest.mark.parametrize("case", BAD_CONNECTIONS.keys())
def test_a_bad_put_names_the_field_and_writes_nothing(case, engineer_client, connected_shop, warehouse):
    before = connection_state()
    changes, field = BAD_CONNECTIONS[case]
    body = {"database": str(warehouse), "password": "new-" + PASSWORD, **changes}
    response = engineer_client.put(connection_url(connected_shop), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert PASSWORD not in response.content.decode()
    assert connection_state() == before


def test_a_bad_first_put_creates_nothing(engineer_client, shop):
    response = engineer_client.put(connection_url(shop), {"password": PASSWORD, "schedule": "0 2 * * *"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"database"}
    assert connection_state() == ([], [], [])


def test_a_bad_put_names_every_bad_field_at_once(engineer_client, shop):
    response = engineer_client.put(
        connection_url(shop), {"options": [], "includeSchemas": 3, "port": "x", "hots": "db"}, format="json"
    )
    assert response.status_code == 400
    # The SQLite file path left out is as bad as the rest, and named with them.
    assert set(response.json()["errors"]) == {"options", "includeSchemas", "port", "hots", "database"}


def test_a_put_with_a_bad_schedule_and_an_unknown_field_names_both(engineer_client, connected_shop, warehouse):
    before = connection_state()

    response = engineer_client.put(connection_url(connected_shop), {
        "database": str(warehouse), "password": PASSWORD, "schedule": "every night", "shedule": "0 2 * * *",
    }, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"schedule", "shedule"}
    assert "five cron fields" in errors["schedule"][0]
    assert errors["shedule"] == ["Unknown field."]
    assert connection_state() == before


def test_the_service_names_an_unknown_field_with_the_other_bad_fields(engineer, connected_shop):
    from django.core.exceptions import ValidationError

    from catalog.connections import connection_save

    before = connection_state()
    with pytest.raises(ValidationError) as raised:
        connection_save(principal=engineer, store=connected_shop, schedule="every night", shedule="0 2 * * *",
                        sample_size=5000)

    assert set(raised.value.message_dict) == {"schedule", "shedule", "sample_size"}
    assert connection_state() == before


@pytest.mark.parametrize("method", ["put", "patch"])
def test_a_write_names_every_bad_field_whether_its_json_or_its_value_is_wrong(
        method, engineer_client, connected_shop, warehouse):
    # JSON types (port, excludeSchemas), unknown names (hots), and what only the service knows is
    # wrong (the cron schedule, the sample size range, an option off the allow-list) in one answer.
    before = connection_state()
    body = {
        "database": str(warehouse), "password": PASSWORD, "port": "fifty", "excludeSchemas": 3, "hots": "db",
        "schedule": "99 2 * * *", "sampleSize": 0, "options": {"connect_timeout": "soon"},
    }

    response = getattr(engineer_client, method)(connection_url(connected_shop), body, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"port", "excludeSchemas", "hots", "schedule", "sampleSize", "options"}
    assert "connect_timeout" in " ".join(errors["options"])
    assert PASSWORD not in response.content.decode()
    assert connection_state() == before


def test_a_first_put_with_bad_fields_of_both_kinds_creates_nothing(engineer_client, shop, warehouse):
    response = engineer_client.put(connection_url(shop), {
        "database": str(warehouse), "password": PASSWORD, "schedule": "every night", "sampleSize": "many",
        "samplingEnabled": True, "colour": "blue",
    }, format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"schedule", "sampleSize", "colour"}
    assert connection_state() == ([], [], [])
    assert not AuditEvent.objects.filter(action="connection.saved").exists()


def test_a_body_that_is_not_an_object_is_400_without_other_fields(engineer_client, shop):
    response = engineer_client.put(connection_url(shop), ["schedule", "0 2 * * *"], format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"non_field_errors"}
    assert connection_state() == ([], [], [])


def test_the_service_names_a_bad_schedule_with_the_other_bad_fields(engineer_client, connected_shop):
    response = engineer_client.patch(
        connection_url(connected_shop), {"schedule": "every night", "database": "", "sampleSize": 0}, format="json"
    )
    assert response.status_code == 400
    assert {"schedule", "database", "sampleSize"} <= set(response.json()["errors"])


def test_changing_where_the_connection_points_forgets_the_last_test(engineer_client, connected_shop, tmp_path):
    assert engineer_client.post(connection_url(connected_shop) + "test/").json()["ok"] is True
    assert engineer_client.get(connection_url(connected_shop)).json()["lastTestOk"] is True
    engineer_client.patch(connection_url(connected_shop), {"sampleSize": 10}, format="json")
    assert engineer_client.get(connection_url(connected_shop)).json()["lastTestOk"] is True  # same target
    engineer_client.patch(
        connection_url(connected_shop), {"database": str(tmp_path / "other.db"), "password": PASSWORD}, format="json"
    )
    body = engineer_client.get(connection_url(connected_shop)).json()
    assert body["lastTestOk"] is None and body["lastTestMessage"] == ""


def test_a_store_that_cannot_be_synced_is_refused_naming_the_platform(engineer_client):
    lake = StoreFactory(name="lake", kind="object", platform="s3")
    response = engineer_client.put(connection_url(lake), {"host": "s3.example.com"}, format="json")
    assert response.status_code == 400
    assert "platform" in response.json()["errors"]


# Connections: testing


def test_testing_a_reachable_warehouse_answers_ok(engineer_client, connected_shop):
    response = engineer_client.post(f"{connection_url(connected_shop)}test/")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert engineer_client.get(connection_url(connected_shop)).json()["lastTestOk"] is True


@pytest.mark.parametrize("port", [5432, 1], ids=["unknown user", "closed port"])
def test_a_refused_connection_test_is_200_with_ok_false_and_no_password(port, engineer_client):
    appdb = StoreFactory(name="appdb", kind="transactional", platform="postgresql")
    secret = "pw-" + secrets.token_hex(8)
    engineer_client.put(connection_url(appdb), {
        "host": "127.0.0.1", "port": port, "database": "postgres", "username": f"nobody_{secrets.token_hex(4)}",
        "password": secret,
    }, format="json")
    response = engineer_client.post(f"{connection_url(appdb)}test/")
    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["message"]
    assert secret not in response.content.decode()
    stored = engineer_client.get(connection_url(appdb))
    assert stored.json()["lastTestOk"] is False
    assert secret not in stored.content.decode()


def test_testing_without_a_connection_is_400_naming_it(engineer_client, shop):
    response = engineer_client.post(f"{connection_url(shop)}test/")
    assert response.status_code == 400
    assert "connection" in response.json()["errors"]


# Connections: who may


@pytest.mark.parametrize("who", ["reader", "registrar"])
def test_people_without_the_platform_role_may_not_see_change_or_test_connections(who, request, connected_shop, warehouse):
    client = client_for(request.getfixturevalue(who))
    before = connection_state()
    url = connection_url(connected_shop)
    assert client.get(url).status_code == 403
    assert client.put(url, {"database": str(warehouse), "password": "x"}, format="json").status_code == 403
    assert client.patch(url, {"password": ""}, format="json").status_code == 403
    assert client.delete(url).status_code == 403
    assert client.post(f"{url}test/").status_code == 403
    assert connection_state() == before


def test_a_service_account_with_the_platform_role_manages_connections(shop, warehouse):
    _, key = service_account_with_key(username="deployer", roles=("platform_engineer",))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.put(connection_url(shop), {"database": str(warehouse)}, format="json")
    assert response.status_code == 201
    assert client.post(syncs_url(shop)).status_code == 202


def test_a_service_account_without_it_may_not(token_client, shop, warehouse):
    assert token_client.put(connection_url(shop), {"database": str(warehouse)}, format="json").status_code == 403
    assert not Connection.objects.exists()


def test_an_unknown_store_is_404(engineer_client):
    assert engineer_client.get("/api/v1/stores/999999/connection/").status_code == 404
    assert engineer_client.post("/api/v1/stores/999999/syncs/").status_code == 404


def _anonymous_requests(store_id, run_id, suggestion_id):
    return [
        ("get", f"/api/v1/stores/{store_id}/connection/"),
        ("put", f"/api/v1/stores/{store_id}/connection/"),
        ("patch", f"/api/v1/stores/{store_id}/connection/"),
        ("delete", f"/api/v1/stores/{store_id}/connection/"),
        ("post", f"/api/v1/stores/{store_id}/connection/test/"),
        ("get", f"/api/v1/stores/{store_id}/syncs/"),
        ("post", f"/api/v1/stores/{store_id}/syncs/"),
        ("get", f"/api/v1/syncs/{run_id}/"),
        ("get", f"/api/v1/syncs/{run_id}/events/"),
        ("get", "/api/v1/suggestions/"),
        ("post", f"/api/v1/suggestions/{suggestion_id}/accept/"),
        ("post", f"/api/v1/suggestions/{suggestion_id}/reject/"),
    ]


def test_anonymous_gets_401_everywhere_and_changes_nothing(api_client, connected_shop, suggestions):
    run = SyncRun.objects.create(store=connected_shop, status="running")
    before = connection_state(), SyncRun.objects.count(), sorted(ColumnSuggestion.objects.values_list("pk", "status"))
    for method, url in _anonymous_requests(connected_shop.pk, run.pk, suggestions[0].pk):
        response = getattr(api_client, method)(url, {}, format="json")
        assert response.status_code == 401, (method, url)
    after = connection_state(), SyncRun.objects.count(), sorted(ColumnSuggestion.objects.values_list("pk", "status"))
    assert after == before


# Sync runs


def test_starting_a_sync_answers_202_with_the_run_and_its_location(engineer_client, connected_shop):
    response = engineer_client.post(syncs_url(connected_shop))
    assert response.status_code == 202
    run = SyncRun.objects.get()
    assert response["Location"] == f"http://testserver/api/v1/syncs/{run.pk}/"
    body = response.json()
    assert body["id"] == run.pk
    assert body["status"] == "queued" and body["isActive"] is True
    assert body["trigger"] == "api"
    assert body["requestedBy"] == "pia"
    assert body["store"] == {"id": connected_shop.pk, "name": "shop"}


def test_starting_a_sync_while_one_is_active_answers_200_with_that_run(engineer_client, connected_shop):
    active = SyncRun.objects.create(store=connected_shop, status="running")
    first = engineer_client.post(syncs_url(connected_shop))
    again = engineer_client.post(syncs_url(connected_shop))
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"] == active.pk
    assert "Location" not in first
    assert SyncRun.objects.count() == 1


def test_starting_a_sync_without_a_connection_is_400_naming_it(engineer_client, shop):
    response = engineer_client.post(syncs_url(shop))
    assert response.status_code == 400
    assert "connection" in response.json()["errors"]
    assert not SyncRun.objects.exists()


def test_readers_see_runs_but_may_not_start_one(reader_client, connected_shop):
    run = SyncRun.objects.create(store=connected_shop, status="succeeded")
    assert reader_client.post(syncs_url(connected_shop)).status_code == 403
    assert SyncRun.objects.count() == 1
    assert reader_client.get(syncs_url(connected_shop)).status_code == 200
    assert reader_client.get(f"/api/v1/syncs/{run.pk}/").status_code == 200
    assert reader_client.get(f"/api/v1/syncs/{run.pk}/events/").status_code == 200


def test_a_service_account_reads_runs(token_client, connected_shop):
    run = SyncRun.objects.create(store=connected_shop, status="succeeded")
    assert token_client.get(f"/api/v1/syncs/{run.pk}/").json()["id"] == run.pk


def test_runs_are_listed_newest_first_one_store_at_a_time(reader_client, connected_shop):
    other = StoreFactory(name="other", platform="sqlite")
    SyncRun.objects.create(store=other, status="failed")
    ids = [SyncRun.objects.create(store=connected_shop, status="succeeded").pk for _ in range(3)]
    seen, url = [], f"{syncs_url(connected_shop)}?page_size=2"
    while url:
        body = reader_client.get(url).json()
        seen += [run["id"] for run in body["results"]]
        url = body["next"]
    assert seen == ids[::-1]


def test_a_run_shows_progress_counts_timings_and_its_events_link(reader_client, connected_shop, engineer):
    from datetime import timedelta

    from django.utils import timezone

    started = timezone.now() - timedelta(seconds=90)
    run = SyncRun.objects.create(
        store=connected_shop, status="partial", trigger="manual", requested_by=engineer, attempts=1, objects_total=8,
        objects_done=6, new_count=3, changed_count=1, deprecated_count=1, unchanged_count=1, failed_count=1,
        suggestion_count=2, timings={"connect": 0.1, "extract": 1.5}, message="1 object(s) could not be synced",
        started_at=started, finished_at=started + timedelta(seconds=30),
    )
    body = reader_client.get(f"/api/v1/syncs/{run.pk}/").json()
    assert body["progress"] == {"done": 6, "total": 8, "percent": 75}
    assert body["counts"] == {
        "new": 3, "changed": 1, "deprecated": 1, "reactivated": 0, "unchanged": 1, "failed": 1, "suggestions": 2,
    }
    assert body["timings"] == {"connect": 0.1, "extract": 1.5}
    assert body["durationSeconds"] == 30.0
    assert body["requestedBy"] == "pia"
    assert body["isActive"] is False
    # Only store managers read the message as the worker wrote it (it may name hidden objects).
    assert body["message"] == "Some objects could not be synced; those you may see are listed below."
    assert body["events"] == f"http://testserver/api/v1/syncs/{run.pk}/events/"


def test_store_managers_read_the_run_message_in_full(engineer_client, connected_shop):
    run = SyncRun.objects.create(store=connected_shop, status="failed", message="Could not read schema main: boom")
    body = engineer_client.get(f"/api/v1/syncs/{run.pk}/").json()
    assert body["message"] == "Could not read schema main: boom"


def test_a_scheduled_run_was_requested_by_nobody(reader_client, connected_shop):
    run = SyncRun.objects.create(store=connected_shop, status="queued", trigger="schedule")
    body = reader_client.get(f"/api/v1/syncs/{run.pk}/").json()
    assert body["requestedBy"] is None
    assert body["progress"] == {"done": 0, "total": None, "percent": None}
    assert body["startedAt"] is None and body["durationSeconds"] is None


def test_events_filter_by_outcome(engineer_client, connected_shop):
    run = SyncRun.objects.create(store=connected_shop, status="partial")
    SyncRunEvent.objects.create(run=run, object_name="shop.main.a", outcome="new")
    SyncRunEvent.objects.create(run=run, object_name="shop.main.b", outcome="error", message="No columns could be read")
    body = engineer_client.get(f"/api/v1/syncs/{run.pk}/events/?outcome=error").json()
    assert body["results"] == [{
        "id": body["results"][0]["id"], "objectName": "shop.main.b", "outcome": "error",
        "message": "No columns could be read", "dataset": None, "createdAt": body["results"][0]["createdAt"],
    }]


def test_events_naming_no_dataset_are_for_store_managers_only(reader_client, connected_shop):
    run = SyncRun.objects.create(store=connected_shop, status="partial")
    SyncRunEvent.objects.create(run=run, object_name="shop.main.b", outcome="error", message="No columns could be read")
    assert reader_client.get(f"/api/v1/syncs/{run.pk}/events/").json()["results"] == []


def test_an_unknown_outcome_is_400_naming_it(reader_client, connected_shop):
    run = SyncRun.objects.create(store=connected_shop, status="partial")
    response = reader_client.get(f"/api/v1/syncs/{run.pk}/events/?outcome=exploded")
    assert response.status_code == 400
    assert "outcome" in response.json()["errors"]


def test_an_unknown_run_is_404(reader_client):
    assert reader_client.get("/api/v1/syncs/999999/").status_code == 404
    assert reader_client.get("/api/v1/syncs/999999/events/").status_code == 404


def test_a_failed_sync_reports_why_without_the_password(engineer_client, django_capture_on_commit_callbacks):
    appdb = StoreFactory(name="appdb", kind="transactional", platform="postgresql")
    secret = "pw-" + secrets.token_hex(8)
    engineer_client.put(connection_url(appdb), {
        "host": "127.0.0.1", "port": 5432, "database": "postgres", "username": f"nobody_{secrets.token_hex(4)}",
        "password": secret,
    }, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        run_id = engineer_client.post(syncs_url(appdb)).json()["id"]
    response = engineer_client.get(f"/api/v1/syncs/{run_id}/")
    assert response.json()["status"] == "failed"
    assert response.json()["message"]
    assert secret not in response.content.decode()
    assert not Dataset.objects.filter(store=appdb).exists()


# A real sync through the API (eager Celery: the task runs when the request's transaction commits)


@pytest.fixture
def synced(engineer_client, shop, warehouse, django_capture_on_commit_callbacks):
    engineer_client.put(connection_url(shop), {"database": str(warehouse)}, format="json")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = engineer_client.post(syncs_url(shop))
    assert response.status_code == 202
    assert len(callbacks) == 1
    return response.json()["id"]


def test_a_sync_through_the_api_succeeds_with_counts(engineer_client, synced):
    body = engineer_client.get(f"/api/v1/syncs/{synced}/").json()
    assert body["status"] == "succeeded", body["message"]
    assert body["counts"]["new"] == 3
    assert body["counts"]["failed"] == 0
    assert body["counts"]["suggestions"] >= 1
    assert body["progress"] == {"done": 3, "total": 3, "percent": 100}
    assert body["finishedAt"] is not None


def test_the_sync_events_list_the_new_datasets(reader_client, synced):
    body = reader_client.get(f"/api/v1/syncs/{synced}/events/?outcome=new").json()
    names = sorted(event["objectName"] for event in body["results"])
    assert names == ["shop.big_orders", "shop.customers", "shop.orders"]
    customers = next(e for e in body["results"] if e["objectName"] == "shop.customers")
    assert customers["dataset"] == {
        "id": Dataset.objects.get(qualified_name="shop.customers").pk, "qualifiedName": "shop.customers",
    }


def test_the_sync_suggests_the_email_column(reader_client, synced):
    body = reader_client.get("/api/v1/suggestions/?status=pending&store=shop").json()
    email = [s for s in body["results"] if s["column"] == "email"]
    assert len(email) == 1
    assert email[0]["label"] == "email"
    assert email[0]["dataset"]["qualifiedName"] == "shop.customers"
    assert email[0]["currentSensitivity"] == "Regular"
    assert email[0]["suggestedSensitivity"] == "Sensitive"
    assert email[0]["run"] == synced
    assert email[0]["decidedBy"] is None
    assert "ana@example.com" not in str(body)


def test_accepting_a_suggestion_raises_the_column_and_makes_a_new_version(engineer_client, synced):
    suggestion = ColumnSuggestion.objects.get(column__name="email")
    response = engineer_client.post(f"/api/v1/suggestions/{suggestion.pk}/accept/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "accepted"
    assert body["decidedBy"] == "pia" and body["decidedAt"]
    assert body["currentSensitivity"] == "Sensitive"
    dataset = Dataset.objects.get(qualified_name="shop.customers")
    assert dataset.current_version.number == 2
    assert Column.objects.get(dataset=dataset, name="email").sensitivity == Sensitivity.SENSITIVE
    detail = engineer_client.get(f"/api/v1/datasets/{dataset.pk}/").json()
    assert {c["name"]: c["sensitivity"] for c in detail["columns"]}["email"] == "Sensitive"


# Suggestions


@pytest.fixture
def suggestions(registrar, store, shop):
    """Pending suggestions on two datasets in two stores; olga owns the reviews dataset."""
    UserFactory(username="olga")
    reviews = dataset_create(principal=registrar, store=store, name="marketing.reviews", owners=["olga"],
                             columns=[column_payload("author_email"), column_payload("phone")])
    customers = dataset_create(principal=registrar, store=shop, name="main.customers",
                               columns=[column_payload("email")])
    made = []
    for dataset, name, label, confidence in [
        (reviews, "author_email", "email", 0.7), (reviews, "phone", "phone", 0.6), (customers, "email", "email", 0.9),
    ]:
        made.append(ColumnSuggestion.objects.create(
            dataset=dataset, column=dataset.columns.get(name=name), label=label, sensitivity=Sensitivity.SENSITIVE,
            confidence=confidence, evidence={"name": f"matches '{label}'", "sampled": 0},
        ))
    return made


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", [2, 1, 0]),
        ("?store=shop", [2]),
        ("?store=analytics&status=pending", [1, 0]),
        ("?status=accepted", []),
    ],
)
def test_suggestions_are_filtered_by_status_store_and_dataset(query, expected, reader_client, suggestions):
    body = reader_client.get(f"/api/v1/suggestions/{query}").json()
    assert [s["id"] for s in body["results"]] == [suggestions[i].pk for i in expected]


def test_suggestions_are_filtered_by_dataset(reader_client, suggestions):
    body = reader_client.get(f"/api/v1/suggestions/?dataset={suggestions[2].dataset_id}").json()
    assert [s["id"] for s in body["results"]] == [suggestions[2].pk]


def test_an_unknown_status_filter_is_400_naming_it(reader_client, suggestions):
    response = reader_client.get("/api/v1/suggestions/?status=maybe")
    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_a_dataset_owner_rejects_a_suggestion_and_the_column_stays(suggestions):
    suggestion = suggestions[0]
    response = client_for(UserFactory(username="olga")).post(f"/api/v1/suggestions/{suggestion.pk}/reject/")
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert response.json()["currentSensitivity"] == "Regular"
    assert suggestion.dataset.versions.count() == 1


def test_a_reader_may_list_suggestions_but_not_decide_them(reader_client, suggestions):
    assert reader_client.get("/api/v1/suggestions/").status_code == 200
    for action in ("accept", "reject"):
        assert reader_client.post(f"/api/v1/suggestions/{suggestions[0].pk}/{action}/").status_code == 403
    assert ColumnSuggestion.objects.get(pk=suggestions[0].pk).status == "pending"
    assert suggestions[0].dataset.versions.count() == 1


def test_a_platform_engineer_may_decide_on_any_dataset(engineer_client, suggestions):
    # Platform engineers may register, so they edit every dataset (access/roles.py).
    assert engineer_client.post(f"/api/v1/suggestions/{suggestions[1].pk}/reject/").status_code == 200


def test_deciding_twice_is_400(registrar_client, suggestions):
    url = f"/api/v1/suggestions/{suggestions[0].pk}/"
    assert registrar_client.post(f"{url}accept/").status_code == 200
    response = registrar_client.post(f"{url}reject/")
    assert response.status_code == 400
    assert "status" in response.json()["errors"]
    assert ColumnSuggestion.objects.get(pk=suggestions[0].pk).status == "accepted"


def test_an_unknown_suggestion_is_404(registrar_client):
    assert registrar_client.post("/api/v1/suggestions/999999/accept/").status_code == 404


# Query counts: constant on every list endpoint


def _count_queries(client, url) -> int:
    with CaptureQueriesContext(db_connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def _more_runs(store, engineer, count):
    for _ in range(count):
        run = SyncRun.objects.create(store=store, status="succeeded", requested_by=engineer)
        SyncRunEvent.objects.bulk_create(
            SyncRunEvent(run=run, object_name=f"shop.main.t{i}", outcome="new",
                         dataset=Dataset.objects.order_by("pk").first()) for i in range(3)
        )


def test_the_run_list_needs_a_constant_number_of_queries(
    reader_client, connected_shop, engineer, suggestions, django_assert_max_num_queries
):
    url = f"{syncs_url(connected_shop)}?page_size=100"
    _more_runs(connected_shop, engineer, 2)
    reader_client.get(url)  # warm the session
    few = _count_queries(reader_client, url)
    _more_runs(connected_shop, engineer, 20)
    assert _count_queries(reader_client, url) == few
    with django_assert_max_num_queries(5):  # the user's roles: store managers read run messages in full
        reader_client.get(url)


def test_the_event_list_needs_a_constant_number_of_queries(
    reader_client, connected_shop, engineer, suggestions, django_assert_max_num_queries
):
    run = SyncRun.objects.create(store=connected_shop, status="succeeded")
    url = f"/api/v1/syncs/{run.pk}/events/?page_size=100"
    datasets = list(Dataset.objects.all())
    SyncRunEvent.objects.create(run=run, object_name="a", outcome="new", dataset=datasets[0])
    reader_client.get(url)
    few = _count_queries(reader_client, url)
    SyncRunEvent.objects.bulk_create(
        SyncRunEvent(run=run, object_name=f"t{i}", outcome="changed", dataset=datasets[i % len(datasets)]) for i in range(30)
    )
    assert _count_queries(reader_client, url) == few
    with django_assert_max_num_queries(5):  # the user's roles: which events they may see
        reader_client.get(f"{url}&outcome=changed")


def test_the_suggestion_list_needs_a_constant_number_of_queries(
    reader_client, registrar, store, suggestions, django_assert_max_num_queries
):
    url = "/api/v1/suggestions/?page_size=100"
    reader_client.get(url)
    few = _count_queries(reader_client, url)
    for i in range(10):
        dataset = dataset_create(principal=registrar, store=store, name=f"s.t{i}", columns=[column_payload("email")])
        ColumnSuggestion.objects.create(
            dataset=dataset, column=dataset.columns.get(), label="email", sensitivity=Sensitivity.SENSITIVE,
            confidence=0.7, evidence={}, decided_by=registrar, status="accepted",
        )
    assert _count_queries(reader_client, url) == few
    with django_assert_max_num_queries(4):  # the user's roles with their matrix cells, filters, page
        reader_client.get(f"{url}&store=analytics&status=accepted")


# OpenAPI


def test_openapi_schema_describes_connections_syncs_and_suggestions(api_client):
    schema = api_client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert set(paths["/api/v1/stores/{id}/connection/"]) == {"get", "put", "patch", "delete"}
    assert "post" in paths["/api/v1/stores/{id}/connection/test/"]
    assert set(paths["/api/v1/stores/{id}/syncs/"]) == {"get", "post"}
    # 202 queued, 200 already running; and the errors (400 without a connection, 403 for others).
    assert {"200", "202", "400", "403", "404"} <= set(paths["/api/v1/stores/{id}/syncs/"]["post"]["responses"])
    for path in ("/api/v1/syncs/{id}/", "/api/v1/syncs/{id}/events/", "/api/v1/suggestions/"):
        assert "get" in paths[path], path
    for path in ("/api/v1/suggestions/{id}/accept/", "/api/v1/suggestions/{id}/reject/"):
        assert "post" in paths[path], path
    components = schema["components"]["schemas"]
    assert "password" not in components["Connection"]["properties"]
    assert components["ConnectionRequest"]["properties"]["password"]["writeOnly"] is True
    assert {"progress", "counts", "events"} <= set(components["SyncRun"]["properties"])
    # Three "status" fields with different choices, each named (a clash would fail check --deploy).
    assert {"DatasetStatusEnum", "SyncStatusEnum", "SuggestionStatusEnum"} <= set(components)


def test_pointing_the_connection_elsewhere_needs_the_password_again(engineer_client, connected_shop, warehouse, tmp_path):
    elsewhere = str(tmp_path / "elsewhere.db")

    moved = engineer_client.patch(connection_url(connected_shop), {"database": elsewhere}, format="json")

    assert moved.status_code == 400
    assert "password" in moved.json()["errors"]
    assert engineer_client.get(connection_url(connected_shop)).json()["database"] == str(warehouse)
    again = engineer_client.patch(connection_url(connected_shop), {"database": elsewhere, "password": PASSWORD}, format="json")
    assert again.status_code == 200 and again.json()["database"] == elsewhere
    cleared = engineer_client.patch(connection_url(connected_shop), {"database": str(warehouse), "password": ""}, format="json")
    assert cleared.status_code == 200 and cleared.json()["hasPassword"] is False


def test_a_driver_option_the_platform_does_not_allow_is_refused_at_save_naming_it(engineer_client):
    # The catalog's own timeouts are not options: a connection cannot lengthen (or break) them.
    store = StoreFactory(name="orders-db", platform="mysql")
    saved = engineer_client.put(connection_url(store), {
        "host": "127.0.0.1", "username": "reader", "password": PASSWORD, "options": {"connect_timeout": "soon"},
    }, format="json")

    assert saved.status_code == 400
    assert "connect_timeout" in " ".join(saved.json()["errors"]["options"])
    assert PASSWORD not in saved.content.decode()
    assert not Connection.objects.filter(store=store).exists()


def test_an_allowed_option_the_server_refuses_fails_the_test_with_a_clear_message(engineer_client, settings, tmp_path):
    # A root certificate in the operator's directory, but the server does not speak TLS to it.
    settings.CATALOG_CONNECTION_FILES_DIR = str(tmp_path)
    (tmp_path / "root.crt").write_text("not a certificate\n")
    store = StoreFactory(name="orders-db", platform="postgresql")
    saved = engineer_client.put(connection_url(store), {
        "host": "127.0.0.1", "database": "postgres", "username": "reader", "password": PASSWORD,
        "options": {"sslmode": "verify-full", "sslrootcert": str(tmp_path / "root.crt")},
    }, format="json")
    assert saved.status_code == 201, saved.json()

    response = engineer_client.post(connection_url(store) + "test/")

    assert response.status_code == 200
    assert response.json()["ok"] is False
    assert response.json()["message"].startswith("Could not connect to orders-db: ")
    assert PASSWORD not in response.content.decode()
