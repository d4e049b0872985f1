"""The OpenLineage endpoint: the real openlineage-python client against a live server, and
the rules of ingestion (discovery, column edges, masking, idempotence, clear errors)."""

import copy
import gzip
import json
import uuid

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated.column_lineage_dataset import (
    ColumnLineageDatasetFacet,
    Fields,
    InputField,
    Transformation,
)
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

from catalog.models import Dataset, DataStore
from catalog.services import dataset_register
from catalog.vocabulary import Sensitivity
from lineage.models import Edge, EdgeKind, EdgeLevel, Job as LineageJob, LineageEvent, Node, NodeKind, Run as LineageRun
from tests.factories import StoreFactory, UserFactory, column_payload, registration_payload, service_account_with_key

NAMESPACE = "postgres://appdb.internal:5432"
PRODUCER = "https://github.com/example/pipelines"
URL = "/api/v1/lineage"


def schema(*names):
    return SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=name, type="VARCHAR") for name in names])


def direct(subtype="IDENTITY", masking=False):
    return Transformation(type="DIRECT", subtype=subtype, masking=masking)


def run_event(state=RunState.COMPLETE, run_id=None, *, event_time="2026-11-22T10:00:00+00:00", with_error=False):
    """users (email, ssn) -> contacts (email copied, ssn_hash masked), as a job would report it."""
    column_lineage = ColumnLineageDatasetFacet(
        fields={
            "email": Fields(inputFields=[InputField(NAMESPACE, "public.users", "email", transformations=[direct()])]),
            "ssn_hash": Fields(
                inputFields=[InputField(NAMESPACE, "public.users", "ssn", transformations=[direct("TRANSFORMATION", masking=True)])]
            ),
        }
    )
    run_facets = {"errorMessage": ErrorMessageRunFacet(message="disk full", programmingLanguage="python")} if with_error else {}
    return RunEvent(
        eventType=state,
        eventTime=event_time,
        run=Run(runId=run_id or str(uuid.uuid4()), facets=run_facets),
        job=Job(namespace="airflow", name="crm.export_contacts"),
        producer=PRODUCER,
        inputs=[InputDataset(NAMESPACE, "public.users", facets={"schema": schema("email", "ssn")})],
        outputs=[
            OutputDataset(
                NAMESPACE, "marts.contacts",
                facets={"schema": schema("email", "ssn_hash"), "columnLineage": column_lineage},
            )
        ],
    )


@pytest.fixture
def client_for():
    """An OpenLineage client posting to the live server; its HTTP session is closed afterwards
    so no server thread keeps a database connection open."""
    clients = []

    def make(live_server, key, **config):
        transport = HttpTransport(HttpConfig(url=live_server.url, auth=ApiKeyTokenProvider({"apiKey": key}), **config))
        clients.append(transport)
        return OpenLineageClient(transport=transport)

    yield make
    for transport in clients:
        transport.close()


def column_node(qualified_name, column):
    return Node.objects.get(kind=NodeKind.COLUMN, dataset__qualified_name=qualified_name, name=column)


@pytest.mark.django_db(transaction=True)
def test_the_openlineage_client_records_a_run_with_column_lineage(live_server, client_for):
    _, key = service_account_with_key(username="airflow")
    client = client_for(live_server, key)
    run_id = str(uuid.uuid4())

    client.emit(run_event(RunState.START, run_id, event_time="2026-11-22T09:59:00+00:00"))
    client.emit(run_event(RunState.COMPLETE, run_id))

    store = DataStore.objects.get(lineage_namespace=NAMESPACE)
    assert store.needs_review and store.kind == "transactional" and store.platform == "postgresql"
    contacts = Dataset.objects.get(store=store, name="contacts")
    assert contacts.needs_review
    assert [c.name for c in contacts.columns.order_by("position")] == ["email", "ssn_hash"]
    run = LineageRun.objects.get(run_id=run_id)
    assert run.state == "COMPLETE" and run.started_at is not None and run.ended_at is not None
    assert str(run.job) == "airflow/crm.export_contacts"
    copy_edge = Edge.objects.get(target=column_node(contacts.qualified_name, "email"))
    assert (copy_edge.source.name, copy_edge.kind, copy_edge.masking, copy_edge.level) == ("email", EdgeKind.COPY, False, EdgeLevel.COLUMN)
    masked_edge = Edge.objects.get(target=column_node(contacts.qualified_name, "ssn_hash"))
    assert (masked_edge.source.name, masked_edge.kind, masked_edge.masking) == ("ssn", EdgeKind.TRANSFORMATION, True)
    assert Edge.objects.filter(level=EdgeLevel.DATASET, kind=EdgeKind.JOB, job__name="crm.export_contacts").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_client_with_gzip_compression_is_understood(live_server, client_for):
    _, key = service_account_with_key(username="spark")
    client_for(live_server, key, compression="gzip").emit(run_event())
    assert LineageEvent.objects.count() == 1
    assert Dataset.objects.filter(name="contacts").exists()


@pytest.mark.django_db(transaction=True)
def test_the_client_gets_an_error_without_a_valid_token(live_server, client_for):
    client = client_for(live_server, "not-a-real-key")
    with pytest.raises(Exception) as raised:
        client.emit(run_event())
    assert "401" in str(raised.value)
    assert LineageEvent.objects.count() == 0


@pytest.fixture
def event_json():
    from openlineage.client.serde import Serde

    return json.loads(Serde.to_json(run_event()))


def test_the_same_event_sent_twice_changes_nothing(token_client, event_json):
    first = token_client.post(URL, event_json, format="json")
    assert first.status_code == 202, first.content
    counts = (LineageEvent.objects.count(), Edge.objects.count(), Node.objects.count(), Dataset.objects.count())
    last_seen = sorted(Edge.objects.values_list("last_seen", flat=True))

    second = token_client.post(URL, event_json, format="json")

    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert counts == (LineageEvent.objects.count(), Edge.objects.count(), Node.objects.count(), Dataset.objects.count())
    assert last_seen == sorted(Edge.objects.values_list("last_seen", flat=True))


def test_a_trailing_slash_is_accepted_too(token_client, event_json):
    assert token_client.post(URL + "/", event_json, format="json").status_code == 202


def test_gzip_bodies_are_decompressed(token_client, event_json):
    body = gzip.compress(json.dumps(event_json).encode())
    response = token_client.generic("POST", URL, body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 202, response.content


def test_a_malformed_event_names_each_bad_field_and_writes_nothing(token_client, event_json):
    bad = copy.deepcopy(event_json)
    bad["eventTime"] = "yesterday"
    bad["run"]["runId"] = "not-a-uuid"
    del bad["job"]["name"]
    bad["outputs"][0]["facets"]["columnLineage"]["fields"]["email"]["inputFields"][0].pop("field")

    response = token_client.post(URL, bad, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {
        "eventTime", "run.runId", "job.name", "outputs[0].facets.columnLineage.fields.email.inputFields[0].field",
    }
    assert LineageEvent.objects.count() == 0 and Dataset.objects.count() == 0 and Edge.objects.count() == 0


def test_a_schema_facet_the_catalog_refuses_is_reported_under_the_event_path(token_client, event_json):
    bad = copy.deepcopy(event_json)
    bad["outputs"][0]["facets"]["schema"]["fields"].append({"name": "EMAIL", "type": "VARCHAR"})
    response = token_client.post(URL, bad, format="json")
    assert response.status_code == 400
    assert "outputs[0].facets.schema.fields[2].name" in response.json()["errors"]
    assert Dataset.objects.count() == 0 and LineageEvent.objects.count() == 0


def test_a_body_that_is_not_an_object_is_refused(token_client):
    response = token_client.post(URL, [1, 2], format="json")
    assert response.status_code == 400


def test_sending_lineage_needs_a_registrar(reader_client, event_json, api_client):
    assert reader_client.post(URL, event_json, format="json").status_code == 403
    assert api_client.post(URL, event_json, format="json").status_code == 401
    assert LineageEvent.objects.count() == 0


def test_a_registered_dataset_keeps_its_schema_and_gets_its_columns_linked(token_client, registrar, event_json):
    store = StoreFactory(name="appdb", kind="transactional", platform="postgresql", lineage_namespace=NAMESPACE)
    users, _ = dataset_register(
        principal=registrar,
        payload=registration_payload(
            store=store, name="public.users",
            columns=[column_payload("email", sensitivity="Restricted"), column_payload("ssn", sensitivity="Restricted")],
        ),
    )
    before = users.current_version_id

    assert token_client.post(URL, event_json, format="json").status_code == 202

    users.refresh_from_db()
    assert users.current_version_id == before and not users.needs_review
    assert column_node(users.qualified_name, "email").column.sensitivity == Sensitivity.RESTRICTED
    contacts_email = column_node("appdb.marts.contacts", "email")
    contacts_hash = column_node("appdb.marts.contacts", "ssn_hash")
    # Restricted email copied into a column nobody classified (counted as Sensitive): a violation.
    assert contacts_email.effective_sensitivity == Sensitivity.RESTRICTED and contacts_email.is_violation
    # The masking transformation stops the inflow at Regular; the unclassified column itself counts as Sensitive.
    assert contacts_hash.effective_sensitivity == Sensitivity.SENSITIVE and not contacts_hash.is_violation


def test_column_lineage_naming_a_column_no_version_has_is_kept_not_dropped(token_client, registrar, event_json):
    store = StoreFactory(name="appdb", kind="transactional", platform="postgresql", lineage_namespace=NAMESPACE)
    dataset_register(principal=registrar, payload=registration_payload(store=store, name="public.users", columns=[column_payload("email")]))

    assert token_client.post(URL, event_json, format="json").status_code == 202

    ssn = column_node("appdb.public.users", "ssn")
    assert ssn.column is None
    assert Edge.objects.filter(source=ssn, target=column_node("appdb.marts.contacts", "ssn_hash")).exists()


def test_a_late_start_does_not_reopen_a_finished_run(token_client):
    from openlineage.client.serde import Serde

    run_id = str(uuid.uuid4())
    complete = json.loads(Serde.to_json(run_event(RunState.FAIL, run_id, with_error=True)))
    start = json.loads(Serde.to_json(run_event(RunState.START, run_id, event_time="2026-11-22T09:00:00+00:00")))
    assert token_client.post(URL, complete, format="json").status_code == 202
    assert token_client.post(URL, start, format="json").status_code == 202
    run = LineageRun.objects.get(run_id=run_id)
    assert run.state == "FAIL" and run.error_message == "disk full"
    assert run.started_at.isoformat().startswith("2026-11-22T09:00")


def test_a_job_event_without_a_run_records_static_lineage(token_client, event_json):
    job_event = {key: event_json[key] for key in ("eventTime", "producer", "job", "inputs", "outputs")}
    job_event["schemaURL"] = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent"
    response = token_client.post(URL, job_event, format="json")
    assert response.status_code == 202, response.content
    assert LineageJob.objects.filter(name="crm.export_contacts").exists()
    assert LineageRun.objects.count() == 0
    assert Edge.objects.filter(level=EdgeLevel.COLUMN).count() == 2


def test_ingestion_is_owned_by_nobody_and_flagged(token_client, event_json):
    token_client.post(URL, event_json, format="json")
    discovered = Dataset.objects.filter(needs_review=True)
    assert discovered.count() == 2
    assert all(dataset.owners.count() == 0 for dataset in discovered)


def test_a_user_registrar_can_send_lineage_with_a_session(registrar_client, event_json):
    UserFactory(username="other")
    assert registrar_client.post(URL, event_json, format="json").status_code == 202


def test_run_facets_that_may_hold_credentials_are_not_kept(token_client, event_json):
    event_json["run"]["facets"]["environmentVariables"] = {
        "_producer": PRODUCER, "_schemaURL": "x", "environmentVariables": [{"name": "DB_PASSWORD", "value": "hunter2"}],
    }
    assert token_client.post(URL, event_json, format="json").status_code == 202
    stored = LineageEvent.objects.get()
    assert "environmentVariables" not in stored.payload["run"]["facets"]
    assert "hunter2" not in json.dumps(stored.payload)


def test_a_store_mapped_to_a_namespace_receives_its_datasets(api_client, token_client, event_json):
    platform = UserFactory(username="pat", roles=["platform_engineer"])
    api_client.force_login(platform)
    created = api_client.post(
        "/api/v1/stores/", {"name": "appdb", "kind": "transactional", "platform": "postgresql", "lineageNamespace": NAMESPACE},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["lineageNamespace"] == NAMESPACE
    assert token_client.post(URL, event_json, format="json").status_code == 202
    assert DataStore.objects.count() == 1
    assert set(Dataset.objects.values_list("qualified_name", flat=True)) == {"appdb.public.users", "appdb.marts.contacts"}
    duplicate = api_client.post(
        "/api/v1/stores/", {"name": "other", "kind": "transactional", "platform": "postgresql", "lineageNamespace": NAMESPACE},
        format="json",
    )
    assert duplicate.status_code == 400 and "lineage_namespace" in duplicate.json()["errors"]


def test_a_discovered_dataset_with_the_same_schema_is_not_rewritten(token_client, event_json):
    assert token_client.post(URL, event_json, format="json").status_code == 202
    contacts = Dataset.objects.get(name="contacts")
    later = copy.deepcopy(event_json)
    later["run"]["runId"] = str(uuid.uuid4())
    later["eventTime"] = "2026-11-23T10:00:00+00:00"

    assert token_client.post(URL, later, format="json").status_code == 202

    refreshed = Dataset.objects.get(pk=contacts.pk)
    assert refreshed.updated_at == contacts.updated_at and refreshed.current_version_id == contacts.current_version_id
    changed = copy.deepcopy(later)
    changed["run"]["runId"] = str(uuid.uuid4())
    changed["outputs"][0]["facets"]["schema"]["fields"].append({"name": "phone", "type": "VARCHAR"})
    assert token_client.post(URL, changed, format="json").status_code == 202
    assert Dataset.objects.get(pk=contacts.pk).current_version.number == 2
