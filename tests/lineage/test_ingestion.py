"""OpenLineage ingestion through the queue: the POST stores the event in one INSERT, the drain
folds pending events in batches (run order, failures kept with their error, one sensitivity
refresh per batch), and the sender follows each event's status."""

import json
import uuid

import pytest
from openlineage.client.event_v2 import RunState
from openlineage.client.serde import Serde

from lineage import ingestion
from lineage.ingestion import lineage_events_drain
from lineage.models import Edge, EventStatus, LineageEvent, Node, NodeKind, Run
from tests.factories import UserFactory
from tests.lineage.test_openlineage import URL, run_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(settings):
    """Events wait in the queue, as in production, until the test drains it."""
    settings.LINEAGE_INGEST_INLINE = False


def event_json(state=RunState.COMPLETE, run_id=None, event_time="2026-11-22T10:00:00+00:00"):
    return json.loads(Serde.to_json(run_event(state, run_id, event_time=event_time)))


def graph_snapshot():
    """Datasets, column nodes with their sensitivity, and edges, by name: comparable across runs."""
    def label(node):
        return f"{node.dataset.qualified_name}.{node.name}" if node.kind == NodeKind.COLUMN else str(node)

    edges = sorted(
        (label(e.source), label(e.target), e.level, e.kind, e.direct, e.masking, e.first_seen, e.last_seen)
        for e in Edge.objects.select_related("source__dataset", "target__dataset")
    )
    nodes = sorted(
        (label(n), n.effective_sensitivity, n.is_violation)
        for n in Node.objects.filter(kind=NodeKind.COLUMN).select_related("dataset")
    )
    runs = sorted((str(r.run_id), r.state, r.started_at, r.ended_at) for r in Run.objects.all())
    return edges, nodes, runs


def test_the_accept_path_is_one_insert_after_the_sender_is_known(queued, token_client, django_assert_num_queries):
    token_client.post(URL, event_json(), format="json")  # warms what is cached per process
    with django_assert_num_queries(2):  # the token with its user and the user's roles; the INSERT
        response = token_client.post(URL, event_json(run_id=str(uuid.uuid4())), format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending"
    assert response["Location"] == response.json()["statusUrl"]
    assert LineageEvent.objects.filter(status=EventStatus.PENDING).count() == 2
    assert Edge.objects.count() == 0  # nothing folded yet


def test_a_resent_pending_event_writes_nothing_and_answers_duplicate(queued, token_client):
    body = event_json()
    assert token_client.post(URL, body, format="json").status_code == 202
    again = token_client.post(URL, body, format="json")
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["status"] == "pending"
    assert LineageEvent.objects.count() == 1
    lineage_events_drain()
    assert token_client.post(URL, body, format="json").json()["status"] == "applied"
    assert LineageEvent.objects.count() == 1


def test_a_malformed_event_is_refused_at_once_and_not_queued(queued, token_client):
    bad = event_json()
    bad["outputs"][0]["facets"]["schema"]["fields"].append({"name": "EMAIL", "type": "VARCHAR"})
    response = token_client.post(URL, bad, format="json")
    assert response.status_code == 400
    assert "outputs[0].facets.schema.fields[2].name" in response.json()["errors"]
    assert LineageEvent.objects.count() == 0


def test_the_events_of_a_run_are_applied_in_event_time_order(queued, token_client, monkeypatch):
    run_id = str(uuid.uuid4())
    sent = [
        ("COMPLETE", "2026-11-22T10:02:00+00:00"), ("START", "2026-11-22T10:00:00+00:00"),
        ("RUNNING", "2026-11-22T10:01:00+00:00"),
    ]
    for state, at in sent:
        assert token_client.post(URL, event_json(state, run_id, at), format="json").status_code == 202
    applied = []
    real_apply = ingestion.openlineage_apply

    def spy(*, principal, event, fold):
        applied.append(event.event_type)
        return real_apply(principal=principal, event=event, fold=fold)

    monkeypatch.setattr(ingestion, "openlineage_apply", spy)
    lineage_events_drain(batch_size=2)  # across batches too
    assert applied == ["START", "RUNNING", "COMPLETE"]
    run = Run.objects.get(run_id=run_id)
    assert run.state == "COMPLETE" and run.started_at.minute == 0 and run.ended_at.minute == 2


def test_a_batch_folds_to_what_events_applied_one_by_one_give(settings, token_client):
    run_id = str(uuid.uuid4())
    bodies = [event_json("START", run_id, "2026-11-22T09:59:00+00:00"), event_json("COMPLETE", run_id)]
    second = event_json(event_time="2026-11-22T11:00:00+00:00")
    second["outputs"][0]["facets"]["columnLineage"]["fields"]["ssn_hash"]["inputFields"][0]["transformations"][0][
        "masking"] = False  # the next run stops masking: the flow changes
    bodies.append(second)
    for body in bodies:
        assert token_client.post(URL, body, format="json").status_code == 202  # inline: one by one
    one_by_one = graph_snapshot()
    assert one_by_one[0]  # there are edges to compare

    # The datasets stay (registered once, by the first event either way); what the events fold goes.
    Edge.objects.all().delete()
    Node.objects.filter(kind=NodeKind.COLUMN, dataset__name="contacts").update(
        effective_sensitivity=None, unprotected_inflow=None, sensitivity_from=None, is_violation=False)
    Run.objects.all().delete()
    LineageEvent.objects.update(status=EventStatus.PENDING, run=None, job=None)
    lineage_events_drain()
    assert graph_snapshot() == one_by_one


def test_one_sensitivity_refresh_per_batch(queued, token_client, monkeypatch):
    for minute in range(5):
        body = event_json(event_time=f"2026-11-22T10:0{minute}:00+00:00")
        assert token_client.post(URL, body, format="json").status_code == 202
    lineage_events_drain()  # the first batch discovers the datasets
    for minute in range(5):
        body = event_json(event_time=f"2026-11-22T11:0{minute}:00+00:00")
        token_client.post(URL, body, format="json")
    calls = []
    real_refresh = ingestion.sensitivity_refresh
    monkeypatch.setattr(ingestion, "sensitivity_refresh", lambda **kw: calls.append(kw) or real_refresh(**kw))
    result = lineage_events_drain()
    assert (result.applied, result.batches, len(calls)) == (5, 1, 1)


def unmappable_event(run_id):
    """A PostgreSQL table named without its schema: the catalog cannot register it, which only the
    fold finds (it needs the store)."""
    body = event_json(run_id=run_id)
    body["outputs"][0]["name"] = "contacts"
    return body


def test_an_event_that_cannot_be_applied_is_kept_with_its_error_and_the_rest_goes_on(queued, token_client):
    failing, fine = str(uuid.uuid4()), str(uuid.uuid4())
    token_client.post(URL, unmappable_event(failing), format="json")
    token_client.post(URL, event_json(run_id=fine, event_time="2026-11-22T10:05:00+00:00"), format="json")

    result = lineage_events_drain()

    assert (result.applied, result.failed) == (1, 1)
    failed = LineageEvent.objects.get(run_uuid=failing)
    assert failed.status == EventStatus.FAILED and "outputs[0].name" in failed.error
    assert LineageEvent.objects.get(run_uuid=fine).status == EventStatus.APPLIED
    assert Edge.objects.filter(target__dataset__name="contacts").exists()


def test_the_run_tells_its_sender_whether_each_event_was_applied(queued, token_client, service_account):
    run_id = str(uuid.uuid4())
    token_client.post(URL, event_json("START", run_id, "2026-11-22T09:59:00+00:00"), format="json")
    status_url = f"{URL}/runs/{run_id}/events/"
    pending = token_client.get(status_url).json()
    assert (pending["pending"], pending["applied"], pending["state"]) == (1, 0, None)

    lineage_events_drain()
    token_client.post(URL, unmappable_event(run_id), format="json")
    lineage_events_drain()

    body = token_client.get(status_url).json()
    assert [e["status"] for e in body["events"]] == ["applied", "failed"]
    assert body["state"] == "START" and body["failed"] == 1
    assert "outputs[0].name" in body["events"][1]["error"]
    failed_list = token_client.get(f"{URL}/events/", {"status": "failed"}).json()["results"]
    assert [e["runId"] for e in failed_list] == [run_id]


def test_a_failed_event_is_visible_to_its_sender_only(queued, token_client, registrar_client, reader_client, api_client):
    run_id = str(uuid.uuid4())
    token_client.post(URL, unmappable_event(run_id), format="json")
    lineage_events_drain()
    status_url = f"{URL}/runs/{run_id}/events/"
    assert token_client.get(status_url).status_code == 200
    for other in (registrar_client, reader_client):  # another registrar, a reader: not theirs
        assert other.get(status_url).status_code == 404
        assert other.get(f"{URL}/events/", {"status": "failed"}).json()["results"] == []
    assert api_client.get(status_url).status_code == 401
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    api_client.force_login(admin)
    assert api_client.get(status_url).json()["failed"] == 1


def test_a_sender_who_lost_the_right_to_send_lineage_has_the_event_refused_by_the_fold(
    queued, registrar, registrar_client
):
    run_id = str(uuid.uuid4())
    assert registrar_client.post(URL, event_json(run_id=run_id), format="json").status_code == 202
    registrar.groups.clear()  # the data engineer role is taken away before a worker folds the event
    registrar.is_superuser = False
    registrar.save()
    lineage_events_drain()
    event = LineageEvent.objects.get(run_uuid=run_id)
    assert event.status == EventStatus.FAILED and "may no longer send lineage" in json.dumps(event.error)
    assert Edge.objects.count() == 0


def test_an_unknown_status_filter_is_a_400(token_client):
    response = token_client.get(f"{URL}/events/", {"status": "done"})
    assert response.status_code == 400 and "status" in response.json()["errors"]


def test_a_pending_event_namespace_is_recorded_for_partitioned_drains(queued, token_client):
    token_client.post(URL, event_json(), format="json")
    assert LineageEvent.objects.get().namespace == "airflow"
    assert lineage_events_drain(namespaces=["spark"]).applied == 0
    assert lineage_events_drain(namespaces=["airflow"]).applied == 1
