"""What pipelines send beyond inputs and outputs (lineage/facets.py), tried with a dbt run as
``dbt-ol`` reports it (tests/lineage/dbt_run.py): owners from the ownership facet, the job's SQL
and the column edge kinds it gives, runs nested under their parent, and job types as a filter."""

import copy
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape
from openlineage.client.event_v2 import RunState

from access.models import AuditEvent, MetadataProposal, ProposalStatus
from catalog.models import Dataset
from catalog.services import dataset_register
from lineage.facets import owner_lookup_value, sql_column_kinds, sql_table_names
from lineage.models import Edge, EdgeKind, Job, Node, NodeKind, Run
from tests.factories import StoreFactory, UserFactory, column_payload, registration_payload, service_account_with_key
from tests.lineage import dbt_run as dbt
from tests.lineage.test_openlineage import client_for  # noqa: F401 (a fixture)

URL = "/api/v1/lineage"
STATS = "warehouse.bookshop.analytics.book_stats"
KEYS = "warehouse.bookshop.analytics.reviewer_keys"


@pytest.fixture
def people(db):
    """alice is found by her e-mail (her username is not alice), bob by his username."""
    return {
        "alice": UserFactory(username="asmith", email="alice@example.com"),
        "bob": UserFactory(username="bob"),
        "carol": UserFactory(username="carol", roles=["data_engineer"]),
    }


@pytest.fixture
def warehouse(db):
    return StoreFactory(name="warehouse", lineage_namespace=dbt.NAMESPACE, kind="analytical", platform="duckdb")


def send(client, events):
    for event in events:
        response = client.post(URL, event if isinstance(event, dict) else dbt.as_json(event), format="json")
        assert response.status_code == 202, response.content


def column_edge(qualified_name, column):
    return Edge.objects.select_related("source").get(
        target=Node.objects.get(kind=NodeKind.COLUMN, dataset__qualified_name=qualified_name, name=column))


# A dbt run through the real client --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_dbt_run_from_the_openlineage_client_uses_its_facets(live_server, client_for, people, warehouse):  # noqa: F811
    _, key = service_account_with_key(username="dbt-prod")
    client = client_for(live_server, key)
    events, ids = dbt.dbt_run()
    for event in events:
        client.emit(event)

    # jobType and sql on the job.
    model = Job.objects.get(name=dbt.BOOK_STATS_JOB)
    assert (model.processing_type, model.integration, model.job_type) == ("BATCH", "DBT", "MODEL")
    assert model.sql == dbt.BOOK_STATS_SQL and model.sql_dialect == "postgres"
    assert Job.objects.get(name=dbt.DBT_JOB).job_type == "JOB"
    # Model runs nested under the dbt run.
    parent = Run.objects.get(run_id=ids["dbt"])
    assert {str(run.run_id) for run in parent.children.all()} == {ids["book_stats"], ids["reviewer_keys"]}
    assert parent.parent_id is None and parent.state == "COMPLETE"
    # Column edge kinds from the SQL: the event gave no transformation type.
    assert column_edge(STATS, "n_reviews").kind == EdgeKind.AGGREGATION
    assert (column_edge(STATS, "book_id").kind, column_edge(STATS, "title").kind) == (EdgeKind.COPY, EdgeKind.COPY)
    masked = column_edge(KEYS, "email_hash")
    assert (masked.source.name, masked.kind, masked.masking, masked.direct) == ("email", EdgeKind.TRANSFORMATION, True, True)
    assert column_edge(KEYS, "user_id").kind == EdgeKind.COPY
    # Owners for the datasets nobody owned: alice by e-mail, bob by username; ghost is nobody.
    assert [user.username for user in Dataset.objects.get(qualified_name=STATS).owners.all()] == ["asmith"]
    assert [user.username for user in Dataset.objects.get(qualified_name=KEYS).owners.all()] == ["bob"]
    assert Run.objects.get(run_id=ids["reviewer_keys"]).notes == [
        "Owner 'user:ghost@example.com' (ownership facet) is no user of the catalog; ignored."]
    audited = AuditEvent.objects.filter(action="dataset.owners_changed").order_by("pk")
    assert [(event.details["to"], event.details["via"]) for event in audited] == [(["asmith"], "openlineage"), (["bob"], "openlineage")]


# Owners ------------------------------------------------------------------------------------------


def test_owners_of_a_dataset_that_has_some_are_proposed_not_changed(token_client, people, warehouse):
    dataset_register(principal=people["carol"], payload=registration_payload(
        store=warehouse, name="bookshop.analytics.book_stats", owners=["carol"],
        columns=[column_payload("book_id"), column_payload("title"), column_payload("n_reviews")]))
    events, ids = dbt.dbt_run()
    send(token_client, events[:3])

    stats = Dataset.objects.get(qualified_name=STATS)
    assert [user.username for user in stats.owners.all()] == ["carol"]
    proposal = MetadataProposal.objects.get(dataset=stats)
    assert proposal.status == ProposalStatus.PENDING
    assert proposal.changes == {"owners": {"from": ["carol"], "to": ["asmith"]}}
    assert proposal.security_approval_required  # a pipeline's token proposed it
    assert AuditEvent.objects.filter(action="proposal.created", dataset=stats).count() == 1
    assert not AuditEvent.objects.filter(action="dataset.owners_changed", dataset=stats).exists()
    assert "Other owners for warehouse.bookshop.analytics.book_stats were proposed for review." in (
        Run.objects.get(run_id=ids["book_stats"]).notes)


def test_the_same_owners_again_change_nothing(token_client, people, warehouse):
    events, _ = dbt.dbt_run()
    send(token_client, events[:3])
    again, _ = dbt.dbt_run()
    send(token_client, again[:3])
    assert not MetadataProposal.objects.exists()
    assert AuditEvent.objects.filter(action="dataset.owners_changed").count() == 1


def test_the_tables_sql_names_are_told_from_ctes_of_the_same_name():
    assert sorted(sql_table_names(dbt.BOOK_STATS_SQL, "postgres")) == [("public", "books"), ("public", "reviews")]
    assert sql_table_names("with t as (select 1 as a) select a from t", "") == []
    assert sql_table_names("not sql at all (", "postgres") is None


def test_owner_names_are_read_as_people_or_not_at_all():
    assert owner_lookup_value("user:alice@example.com") == "alice@example.com"
    assert owner_lookup_value("alice") == "alice"
    assert owner_lookup_value("team:data-platform") is None
    assert owner_lookup_value("user:") is None


def test_a_malformed_ownership_facet_is_refused_naming_the_field(token_client, warehouse):
    events, _ = dbt.dbt_run()
    body = dbt.as_json(events[2])
    body["outputs"][0]["facets"]["ownership"]["owners"] = "alice"
    response = token_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert "outputs[0].facets.ownership.owners" in response.json()["errors"]
    assert not Job.objects.exists()


# SQL and column edge kinds ------------------------------------------------------------------------


def test_sql_gives_aggregation_copy_masking_and_transformation():
    kinds = sql_column_kinds(
        "select b.id as book_id, count(r.id) as n_reviews, sha2(u.email, 256) as h, upper(b.title) as t, "
        "regexp_replace(u.phone, '[0-9]', '*') as phone from books b join reviews r on r.book_id = b.id "
        "join users u on u.id = b.author_id group by 1, 4", "postgres")
    assert kinds["n_reviews"]["reviews.id"] == (EdgeKind.AGGREGATION, False)
    assert kinds["book_id"]["books.id"] == (EdgeKind.COPY, False)
    assert kinds["h"]["users.email"] == (EdgeKind.TRANSFORMATION, True)
    assert kinds["t"]["books.title"] == (EdgeKind.TRANSFORMATION, False)
    assert kinds["phone"]["users.phone"] == (EdgeKind.TRANSFORMATION, True)
    assert sql_column_kinds("select from where", "postgres") == {}
    assert sql_column_kinds("select a from t", "no-such-dialect") == {"a": {".t.a": (EdgeKind.COPY, False), "t.a": (EdgeKind.COPY, False)}}


def test_a_transformation_type_in_the_event_wins_over_the_sql(token_client, warehouse):
    events, _ = dbt.dbt_run()
    body = dbt.as_json(events[2])
    body["outputs"][0]["facets"]["columnLineage"]["fields"]["n_reviews"]["inputFields"][0]["transformations"] = [
        {"type": "DIRECT", "subtype": "TRANSFORMATION"}]
    send(token_client, [body])
    assert column_edge(STATS, "n_reviews").kind == EdgeKind.TRANSFORMATION


def test_a_later_event_without_sql_uses_the_jobs_sql(token_client, warehouse):
    events, _ = dbt.dbt_run()
    start, complete = dbt.as_json(events[1]), dbt.as_json(events[2])
    del complete["job"]["facets"]["sql"]
    send(token_client, [start, complete])
    assert column_edge(STATS, "n_reviews").kind == EdgeKind.AGGREGATION


def test_the_job_keeps_the_sql_of_the_latest_event(token_client, warehouse):
    events, _ = dbt.dbt_run()
    late, early = dbt.as_json(events[2]), dbt.as_json(events[1])
    early["job"]["facets"]["sql"]["query"] = "select 1 as old"
    send(token_client, [late, early])  # the older event arrives last
    assert Job.objects.get(name=dbt.BOOK_STATS_JOB).sql == dbt.BOOK_STATS_SQL


# Parent runs -------------------------------------------------------------------------------------


def test_a_parent_run_arriving_after_its_children_adopts_them(token_client, warehouse, client):
    events, ids = dbt.dbt_run()
    send(token_client, events[1:5])  # the model runs first
    child = Run.objects.get(run_id=ids["book_stats"])
    assert str(child.parent_run_id) == ids["dbt"] and child.parent is None
    assert token_client.get(f"/api/v1/lineage/runs/{ids['book_stats']}/").json()["parentReceived"] is False

    send(token_client, [events[0], events[5]])
    parent = Run.objects.get(run_id=ids["dbt"])
    assert set(parent.children.values_list("run_id", flat=True)) == {uuid.UUID(ids["book_stats"]), uuid.UUID(ids["reviewer_keys"])}
    body = token_client.get(f"/api/v1/lineage/runs/{ids['dbt']}/").json()
    assert sorted(body["childRunIds"]) == sorted([ids["book_stats"], ids["reviewer_keys"]])
    assert body["parentRunId"] is None and body["hiddenChildren"] == 0
    child_body = token_client.get(f"/api/v1/lineage/runs/{ids['book_stats']}/").json()
    assert child_body["parentRunId"] == ids["dbt"] and child_body["parentReceived"] is True


def test_a_run_naming_itself_as_parent_is_not_nested(token_client, warehouse):
    events, ids = dbt.dbt_run()
    body = dbt.as_json(events[1])
    body["run"]["facets"]["parent"]["run"]["runId"] = ids["book_stats"]
    send(token_client, [body])
    assert Run.objects.get(run_id=ids["book_stats"]).parent_run_id is None


def test_a_parent_facet_without_a_uuid_is_refused(token_client, warehouse):
    events, _ = dbt.dbt_run()
    body = dbt.as_json(events[1])
    body["run"]["facets"]["parent"]["run"]["runId"] = "not-a-uuid"
    response = token_client.post(URL, body, format="json")
    assert response.status_code == 400 and "run.facets.parent.run.runId" in response.json()["errors"]


# Job types, the job API and the pages ------------------------------------------------------------


def test_the_job_api_filters_by_job_type_and_integration(token_client, warehouse):
    events, _ = dbt.dbt_run()
    send(token_client, events)
    Job.objects.create(namespace="airflow", name="nightly", job_type="TASK", integration="AIRFLOW")

    names = lambda query: sorted(job["name"] for job in token_client.get(f"/api/v1/lineage/jobs/{query}").json()["results"])  # noqa: E731
    assert names("?jobType=MODEL&integration=DBT") == [dbt.BOOK_STATS_JOB, dbt.REVIEWER_KEYS_JOB]
    assert names("?jobType=model") == [dbt.BOOK_STATS_JOB, dbt.REVIEWER_KEYS_JOB]
    assert names("?integration=DBT&jobType=JOB") == [dbt.DBT_JOB]
    first = token_client.get("/api/v1/lineage/jobs/?jobType=MODEL").json()["results"][0]
    assert (first["processingType"], first["integration"], first["jobType"]) == ("BATCH", "DBT", "MODEL")
    assert first["latestRun"]["parentRunId"] is not None
    assert token_client.get("/api/v1/lineage/jobs/?jobType=" + "x" * 65).status_code == 400


def test_the_job_detail_api_shows_the_sql_and_runs(registrar_client, token_client, warehouse):
    events, ids = dbt.dbt_run()
    send(token_client, events)
    job = Job.objects.get(name=dbt.BOOK_STATS_JOB)
    body = registrar_client.get(f"/api/v1/lineage/jobs/{job.pk}/").json()
    assert body["sql"]["query"] == dbt.BOOK_STATS_SQL and body["sql"]["dialect"] == "postgres"
    assert body["sqlHidden"] is False
    assert body["inputs"] == ["warehouse.bookshop.public.books", "warehouse.bookshop.public.reviews"]
    assert body["outputs"] == [STATS]
    assert [run["parentRunId"] for run in body["runs"]] == [ids["dbt"]]


def test_the_job_list_page_filters_in_the_url_with_constant_queries(client, registrar, token_client, warehouse):
    events, _ = dbt.dbt_run()
    send(token_client, events)
    client.force_login(registrar)

    def count(url):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        return response, len(queries)

    response, few = count("/lineage/jobs/?jobType=MODEL")
    page = response.content.decode()
    assert dbt.BOOK_STATS_JOB in page and dbt.DBT_JOB not in page
    assert '<option value="MODEL" selected>' in page
    for index in range(30):
        Job.objects.create(namespace="dbt", name=f"bookshop.analytics.model_{index}", job_type="MODEL", integration="DBT")
    _, many = count("/lineage/jobs/?jobType=MODEL")
    assert many == few
    with CaptureQueriesContext(connection) as queries:
        token_client.get("/api/v1/lineage/jobs/?jobType=MODEL&integration=DBT")
    api_many = len(queries)
    Job.objects.filter(name__startswith="bookshop.analytics.model_").delete()
    with CaptureQueriesContext(connection) as queries:
        token_client.get("/api/v1/lineage/jobs/?jobType=MODEL&integration=DBT")
    assert len(queries) == api_many


def test_the_job_and_run_pages_show_sql_parent_and_children(client, registrar, token_client, warehouse):
    events, ids = dbt.dbt_run()
    send(token_client, events)
    client.force_login(registrar)
    job = Job.objects.get(name=dbt.BOOK_STATS_JOB)
    page = client.get(f"/lineage/jobs/{job.pk}/").content.decode()
    assert 'class="sql-block"' in page and "count(r.id) as n_reviews" in page
    assert "&quot;bookshop&quot;.&quot;public&quot;.&quot;reviews&quot;" in page  # escaped
    parent_page = client.get(f"/lineage/runs/{ids['dbt']}/").content.decode()
    assert dbt.BOOK_STATS_JOB in parent_page and dbt.REVIEWER_KEYS_JOB in parent_page
    child_page = client.get(f"/lineage/runs/{ids['reviewer_keys']}/").content.decode()
    assert ids["dbt"] in child_page and dbt.DBT_JOB in child_page
    assert "ghost@example.com" in child_page  # the note on the run


# Visibility --------------------------------------------------------------------------------------


@pytest.fixture
def partly_hidden(token_client, warehouse):
    """book_stats reported as reading books only (the event leaves reviews out), while its SQL
    also names reviews; a product manager sees aggregated datasets only: books and book_stats
    are, reviews (known to the catalog from another job) is not."""
    events, ids = dbt.dbt_run()
    body = dbt.as_json(events[2])
    body["inputs"] = body["inputs"][:1]
    del body["outputs"][0]["facets"]["columnLineage"]["fields"]["n_reviews"]
    reviews = copy.deepcopy(dbt.as_json(events[4]))
    reviews["job"]["name"] = "bookshop.staging.reviews_copy"
    reviews["inputs"][0]["name"] = "bookshop.public.reviews"
    del reviews["outputs"][0]["facets"]["columnLineage"]
    del reviews["job"]["facets"]["sql"]
    send(token_client, [body, reviews])
    Dataset.objects.filter(qualified_name__in=[STATS, "warehouse.bookshop.public.books"]).update(tags=["aggregated"])
    return Job.objects.get(name=dbt.BOOK_STATS_JOB)


def test_sql_naming_a_dataset_the_reader_may_not_see_is_not_shown(client, partly_hidden, registrar):
    manager = UserFactory(username="paula", roles=["product_manager"])
    client.force_login(manager)
    body = client.get(f"/api/v1/lineage/jobs/{partly_hidden.pk}/").json()
    assert body["sql"] is None and body["sqlHidden"] is True
    page = client.get(f"/lineage/jobs/{partly_hidden.pk}/").content.decode()
    assert "reviews" not in page and 'id="sql-hidden"' in page
    client.force_login(registrar)
    assert client.get(f"/api/v1/lineage/jobs/{partly_hidden.pk}/").json()["sql"]["query"] == dbt.BOOK_STATS_SQL


def test_a_user_without_a_role_sees_no_job_run_or_sql(client, partly_hidden):
    client.force_login(UserFactory(username="nobody"))
    run = partly_hidden.runs.get()
    for url in (f"/api/v1/lineage/jobs/{partly_hidden.pk}/", f"/lineage/jobs/{partly_hidden.pk}/",
                f"/api/v1/lineage/runs/{run.run_id}/", f"/lineage/runs/{run.run_id}/"):
        response = client.get(url)
        assert response.status_code == 404, url
        lines = [line.strip() for line in partly_hidden.sql.lower().splitlines() if len(line.strip()) > 12]
        assert lines  # the SQL's own lines, not a word the page's markup may hold (hx-select)
        for line in lines:
            assert line.encode() not in response.content.lower() and escape(line).encode() not in response.content.lower()
    assert client.get("/api/v1/lineage/jobs/").json()["results"] == []


def test_child_runs_of_jobs_the_reader_may_not_see_are_counted_not_named(client, token_client, warehouse):
    events, ids = dbt.dbt_run()
    send(token_client, events)
    # The dbt run's job touches nothing: give it an edge to an aggregated dataset so the manager sees it.
    stats = Dataset.objects.get(qualified_name=STATS)
    Dataset.objects.filter(qualified_name__in=[STATS, "warehouse.bookshop.public.books", "warehouse.bookshop.public.reviews"]
                           ).update(tags=["aggregated"])
    Edge.objects.filter(target__dataset=stats).update(job=Job.objects.get(name=dbt.DBT_JOB))
    client.force_login(UserFactory(username="paula", roles=["product_manager"]))
    body = client.get(f"/api/v1/lineage/runs/{ids['dbt']}/").json()
    assert body["childRunIds"] == [] and body["hiddenChildren"] == 2
    page = client.get(f"/lineage/runs/{ids['dbt']}/").content.decode()
    assert dbt.REVIEWER_KEYS_JOB not in page and "2 child runs of jobs you may not see" in page
