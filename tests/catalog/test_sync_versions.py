"""Which new versions are breaking: learning a column's type (``UNKNOWN``, as OpenLineage schema
facets send it before ``dbt docs generate`` has run, becoming ``INTEGER``) is a change the diff
shows, never a breaking one; a change between two known types still is. Through the registration
API, and through an OpenLineage event followed by a registration or a warehouse sync."""

import sqlite3
import uuid

import pytest
from django.core import mail
from django.test import Client

from catalog.connections import connection_save
from catalog.models import Dataset, SyncOutcome, SyncRunEvent, SyncStatus
from catalog.sync import sync_run_execute, sync_run_request
from tests.factories import StoreFactory, column_payload, registration_payload

pytestmark = pytest.mark.django_db

LINEAGE_URL = "/api/v1/lineage"


@pytest.fixture
def store(db):
    return StoreFactory(name="shop", kind="transactional", platform="sqlite")


def register(client, store, columns, *, name="sales.events"):
    response = client.post(
        "/api/v1/datasets/", registration_payload(store=store, name=name, columns=columns), format="json"
    )
    assert response.status_code in (200, 201), response.content
    return response.json()


def latest_version(client, dataset_id) -> dict:
    response = client.get(f"/api/v1/datasets/{dataset_id}/versions/")
    assert response.status_code == 200, response.content
    body = response.json()
    versions = body["results"] if isinstance(body, dict) else body
    return max(versions, key=lambda version: version["number"])


def schema_event(store, name, fields) -> dict:
    """An OpenLineage run event whose output has a schema facet; ``fields`` are ``(name, type or None)``."""
    return {
        "eventType": "COMPLETE", "eventTime": "2026-11-22T10:00:00+00:00", "producer": "https://example.org/dbt",
        "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "dbt", "name": f"build_{name}"},
        "inputs": [],
        "outputs": [{"namespace": store.name, "name": name, "facets": {"schema": {"fields": [
            {"name": field} | ({"type": type_} if type_ else {}) for field, type_ in fields
        ]}}}],
    }


def test_a_type_learned_through_registration_is_a_non_breaking_change(registrar_client, store):
    first = register(registrar_client, store, [column_payload("id", type_="UNKNOWN"), column_payload("kind")])

    second = register(registrar_client, store, [column_payload("id", type_="INTEGER"), column_payload("kind")])

    version = latest_version(registrar_client, second["id"])
    assert (first["id"], version["number"], version["isBreaking"]) == (second["id"], 2, False)
    assert version["diff"]["breaking"] is False
    assert version["diff"]["changed"] == [
        {"name": "id", "fields": {"type": {"from": "UNKNOWN", "to": "INTEGER"}}, "breaking": False}
    ]
    diff = registrar_client.get(f"/api/v1/datasets/{second['id']}/diff/", {"from": 1, "to": 2}).json()
    assert (diff["breaking"], diff["changed"][0]["fields"]["type"]) == (False, {"from": "UNKNOWN", "to": "INTEGER"})


def test_unknown_is_recognised_in_any_case(registrar_client, store):
    register(registrar_client, store, [column_payload("id", type_="unknown")])

    dataset = register(registrar_client, store, [column_payload("id", type_="BIGINT")])

    assert latest_version(registrar_client, dataset["id"])["isBreaking"] is False


def test_a_change_between_two_known_types_is_still_breaking(registrar_client, store):
    register(registrar_client, store, [column_payload("id", type_="STRING"), column_payload("kind")])

    dataset = register(registrar_client, store, [column_payload("id", type_="INTEGER"), column_payload("kind")])

    version = latest_version(registrar_client, dataset["id"])
    assert version["isBreaking"] is True
    assert version["diff"]["changed"][0]["breaking"] is True


def test_a_type_learned_alongside_a_mode_change_is_breaking_for_the_mode(registrar_client, store):
    register(registrar_client, store, [column_payload("id", type_="UNKNOWN", mode="NULLABLE")])

    dataset = register(registrar_client, store, [column_payload("id", type_="INTEGER", mode="REQUIRED")])

    assert latest_version(registrar_client, dataset["id"])["isBreaking"] is True


def test_the_diff_page_shows_a_learned_type_as_a_compatible_change(registrar, registrar_client, store):
    register(registrar_client, store, [column_payload("id", type_="UNKNOWN")])
    dataset = register(registrar_client, store, [column_payload("id", type_="INTEGER")])
    web = Client()
    web.force_login(registrar)

    response = web.get(f"/datasets/{dataset['id']}/diff/", {"from": 1, "to": 2})

    page = response.content.decode()
    assert response.status_code == 200
    assert "UNKNOWN" in page and "INTEGER" in page
    assert 'class="compatible"' in page
    assert "row-breaking" not in page and 'class="breaking' not in page


def test_a_type_an_openlineage_facet_left_unknown_then_registered_is_not_breaking(registrar_client, store):
    response = registrar_client.post(
        LINEAGE_URL, schema_event(store, "sales.events", [("id", None), ("kind", "")]), format="json"
    )
    assert response.status_code == 202, response.content
    discovered = Dataset.objects.get(qualified_name="shop.sales.events")
    assert [column["type"] for column in discovered.current_version.columns] == ["UNKNOWN", "UNKNOWN"]

    dataset = register(registrar_client, store, [column_payload("id", type_="INTEGER"), column_payload("kind")])

    version = latest_version(registrar_client, dataset["id"])
    assert (dataset["id"], version["number"], version["isBreaking"]) == (discovered.pk, 2, False)
    assert {change["name"]: change["fields"]["type"] for change in version["diff"]["changed"]} == {
        "id": {"from": "UNKNOWN", "to": "INTEGER"}, "kind": {"from": "UNKNOWN", "to": "STRING"},
    }


def test_a_type_an_openlineage_facet_left_unknown_then_synced_is_not_breaking(
        registrar, registrar_client, platform_engineer, store, tmp_path):
    path = tmp_path / "shop.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (id INTEGER, kind TEXT)")
    db.close()
    connection_save(principal=platform_engineer, store=store, database=str(path))
    response = registrar_client.post(LINEAGE_URL, schema_event(store, "events", [("id", None), ("kind", None)]),
                                     format="json")
    assert response.status_code == 202, response.content
    discovered = Dataset.objects.get(qualified_name="shop.events")
    discovered.owners.add(registrar)  # someone a breaking change would mail

    run, _ = sync_run_request(principal=platform_engineer, store=store, enqueue=False)
    run = sync_run_execute(run.pk)

    assert run.status == SyncStatus.SUCCEEDED, run.message
    version = latest_version(registrar_client, discovered.pk)
    assert (version["number"], version["isBreaking"]) == (2, False)
    assert {change["name"]: change["fields"]["type"]["to"] for change in version["diff"]["changed"]} == {
        "id": "INTEGER", "kind": "TEXT",
    }
    event = SyncRunEvent.objects.get(run=run, dataset=discovered)
    assert event.outcome == SyncOutcome.CHANGED
    assert "id: type UNKNOWN → INTEGER" in event.message
    assert mail.outbox == []
