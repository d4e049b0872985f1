"""An insider with a registrar role (or a second pipeline's token) against other pipelines'
lineage: taking over owners through an ownership facet, rewriting another pipeline's job,
ending or failing its runs, nesting runs under them. Run ids and job names are no secret
(they are in every log line of a scheduler), so none of these may rest on guessing being hard."""

import copy

import pytest

from access.models import AuditEvent, MetadataProposal, ProposalStatus
from catalog.models import Dataset
from catalog.services import dataset_register
from lineage.models import EventStatus, Job, LineageEvent, Run
from tests.factories import UserFactory, column_payload, registration_payload, service_account_with_key
from tests.lineage import dbt_run as dbt
from tests.lineage.test_facets import URL, people, send, warehouse  # noqa: F401 (fixtures)

from rest_framework.test import APIClient


@pytest.fixture
def intruder(db):
    """A second pipeline's account: a data engineer's service token, as dbt's is."""
    _, key = service_account_with_key(username="other-pipeline")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _last_event():
    return LineageEvent.objects.order_by("-id").first()


def test_an_ownership_facet_does_not_make_the_sender_owner_of_an_unowned_dataset(intruder, people, warehouse):
    # A registered, classified dataset nobody owns yet (a pipeline registered it).
    pipeline, _ = service_account_with_key(username="registrar-pipeline")
    users, _ = dataset_register(principal=pipeline, payload=registration_payload(
        store=warehouse, name="bookshop.public.users",
        columns=[column_payload("id"), column_payload("email", sensitivity="Restricted")]))
    assert not users.owners.exists()

    body = dbt.as_json(dbt.reviewer_keys_event(dbt.RunState.START, "0b9f0e1c-4e8a-4c43-9a53-5d8f4b1f2e01",
                                               "0b9f0e1c-4e8a-4c43-9a53-5d8f4b1f2e02", event_time="2026-12-01T06:00:10+00:00"))
    body["inputs"][0]["facets"]["ownership"] = {"owners": [{"name": "carol"}]}
    send(intruder, [body])

    users.refresh_from_db()
    assert list(users.owners.all()) == []
    proposal = MetadataProposal.objects.get(dataset=users)
    assert proposal.status == ProposalStatus.PENDING and proposal.changes == {"owners": {"from": [], "to": ["carol"]}}
    assert not AuditEvent.objects.filter(action="dataset.owners_changed", dataset=users).exists()
    # The output the event discovered gets its owners at once, as before.
    keys = Dataset.objects.get(qualified_name="warehouse.bookshop.analytics.reviewer_keys")
    assert [user.username for user in keys.owners.all()] == ["bob"]


def test_another_pipeline_may_not_end_or_fail_someone_elses_run(token_client, intruder, warehouse):
    events, ids = dbt.dbt_run()
    send(token_client, events[:2])  # the dbt run and its first model run started
    fail = dbt.as_json(events[2])
    fail["eventType"] = "FAIL"
    fail["eventTime"] = "2026-12-01T07:00:00+00:00"
    fail["run"]["facets"]["errorMessage"] = {
        "_producer": dbt.PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/ErrorMessageRunFacet.json",
        "message": "forged failure", "programmingLanguage": "sql"}
    send(intruder, [fail])

    event = _last_event()
    assert event.status == EventStatus.FAILED and "another account" in str(event.error)
    run = Run.objects.get(run_id=ids["book_stats"])
    assert run.state == "START" and run.error_message == ""
    # The intruder follows its own refused event, not how the other pipeline's run is going.
    followed = intruder.get(f"/api/v1/lineage/runs/{ids['book_stats']}/events/").json()
    assert followed["state"] is None and followed["failed"] == 1 and len(followed["events"]) == 1
    assert token_client.get(f"/api/v1/lineage/runs/{ids['book_stats']}/events/").json()["state"] == "START"
    # The pipeline that owns the run still ends it.
    send(token_client, [events[2]])
    assert Run.objects.get(run_id=ids["book_stats"]).state == "COMPLETE"


def test_another_pipeline_may_not_rewrite_a_jobs_sql_or_type(token_client, intruder, warehouse):
    events, _ = dbt.dbt_run()
    send(token_client, events[:3])
    forged = dbt.as_json(events[2])
    forged["run"]["runId"] = "5d0c7a52-33a4-4b8e-a3f1-0d9a3c9b7f10"
    forged["eventTime"] = "2099-01-01T00:00:00+00:00"  # "the latest SQL" by event time
    forged["job"]["facets"]["sql"]["query"] = "select md5(title) as title, book_id, count(*) as n_reviews from books"
    forged["job"]["facets"]["jobType"]["jobType"] = "SNAPSHOT"
    send(intruder, [forged])

    assert _last_event().status == EventStatus.FAILED
    job = Job.objects.get(name=dbt.BOOK_STATS_JOB)
    assert job.sql == dbt.BOOK_STATS_SQL and job.job_type == "MODEL"
    assert not Run.objects.filter(run_id=forged["run"]["runId"]).exists()


def test_a_run_naming_someone_elses_run_as_parent_is_not_nested_under_it(token_client, intruder, warehouse):
    events, ids = dbt.dbt_run()
    send(token_client, events)
    # The intruder's own job and run, claiming the dbt run as its parent.
    stray = copy.deepcopy(dbt.as_json(events[3]))
    stray["run"]["runId"] = "7e1f9c0a-2b8d-4f6e-9a1c-3d5b7e9f1a20"
    stray["job"]["name"] = "intruder.stray_model"
    send(intruder, [stray])
    parent = Run.objects.get(run_id=ids["dbt"])
    assert set(str(run_id) for run_id in parent.children.values_list("run_id", flat=True)) == {
        ids["book_stats"], ids["reviewer_keys"]}
    stray_run = Run.objects.get(run_id=stray["run"]["runId"])
    assert str(stray_run.parent_run_id) == ids["dbt"] and stray_run.parent is None  # what it said, unlinked
    body = token_client.get(f"/api/v1/lineage/runs/{ids['dbt']}/").json()
    assert stray["run"]["runId"] not in body["childRunIds"] and body["hiddenChildren"] == 0


def test_a_parent_arriving_later_adopts_only_its_own_senders_runs(token_client, intruder, warehouse):
    events, ids = dbt.dbt_run()
    stray = copy.deepcopy(dbt.as_json(events[3]))
    stray["run"]["runId"] = "8a2f0d1b-3c9e-4a7f-8b2d-4e6c8f0a2b31"
    stray["job"]["name"] = "intruder.early_model"
    send(intruder, [stray])  # before the dbt run exists
    send(token_client, events)
    parent = Run.objects.get(run_id=ids["dbt"])
    assert stray["run"]["runId"] not in {str(run_id) for run_id in parent.children.values_list("run_id", flat=True)}
    assert parent.children.count() == 2


def test_an_admin_may_send_events_for_any_job(token_client, warehouse, client):
    events, ids = dbt.dbt_run()
    send(token_client, events[:2])
    admin = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(admin)
    response = client.post(URL, dbt.as_json(events[2]), content_type="application/json")
    assert response.status_code == 202
    assert _last_event().status == EventStatus.APPLIED
    assert Run.objects.get(run_id=ids["book_stats"]).state == "COMPLETE"


# Odd SQL and names ------------------------------------------------------------------------------

DEEP_SQL = "select " + "(" * 3000 + "1" + ")" * 3000 + " as book_id, title, n_reviews from books"


def _aggregated(*names):
    Dataset.objects.filter(qualified_name__in=names).update(tags=["aggregated"])


def test_sql_nested_deeper_than_the_parser_goes_is_hidden_without_an_error(client, token_client, warehouse):
    events, ids = dbt.dbt_run()
    body = dbt.as_json(events[2])
    body["job"]["facets"]["sql"]["query"] = DEEP_SQL
    send(token_client, [body])
    _aggregated("warehouse.bookshop.analytics.book_stats", "warehouse.bookshop.public.books",
                "warehouse.bookshop.public.reviews")
    job = Job.objects.get(name=dbt.BOOK_STATS_JOB)
    assert job.sql == DEEP_SQL and job.sql_tables is False
    client.force_login(UserFactory(username="paula", roles=["product_manager"]))
    api = client.get(f"/api/v1/lineage/jobs/{job.pk}/")
    assert api.status_code == 200 and api.json()["sql"] is None and api.json()["sqlHidden"] is True
    page = client.get(f"/lineage/jobs/{job.pk}/")
    assert page.status_code == 200 and 'id="sql-hidden"' in page.content.decode()


def test_the_job_page_reads_the_tables_parsed_when_the_sql_arrived(client, token_client, warehouse, monkeypatch):
    events, _ = dbt.dbt_run()
    send(token_client, events[:3])
    _aggregated("warehouse.bookshop.analytics.book_stats", "warehouse.bookshop.public.books",
                "warehouse.bookshop.public.reviews")
    job = Job.objects.get(name=dbt.BOOK_STATS_JOB)
    assert sorted(map(tuple, job.sql_tables)) == [("public", "books"), ("public", "reviews")]

    def no_parsing(*args, **kwargs):
        raise AssertionError("the SQL was parsed again to show the job")

    monkeypatch.setattr("lineage.facets.sql_table_names", no_parsing)
    client.force_login(UserFactory(username="paula", roles=["product_manager"]))
    assert client.get(f"/api/v1/lineage/jobs/{job.pk}/").json()["sql"]["query"] == dbt.BOOK_STATS_SQL


@pytest.mark.parametrize("trick", ["\u202e", "\u200b", "\x07", "\n"])
def test_a_job_name_with_control_or_invisible_characters_is_refused(token_client, warehouse, trick):
    events, _ = dbt.dbt_run()
    body = dbt.as_json(events[1])
    body["job"]["name"] = f"bookshop{trick}.book_stats"
    response = token_client.post(URL, body, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["job.name"]
    assert not LineageEvent.objects.exists() and not Job.objects.exists()
