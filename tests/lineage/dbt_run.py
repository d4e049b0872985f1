"""A dbt run as ``dbt-ol run`` (openlineage-dbt 1.54) reports it, built with the openlineage-python
client's own classes: the dbt run (job ``dbt-run-bookshop``, jobType JOB/DBT) START and COMPLETE,
and between them one run per model, each with the ``parent`` run facet naming the dbt run, the
``jobType`` facet (MODEL/DBT), the compiled SQL in the ``sql`` facet, the model's ``meta.owner`` as
the output's ``ownership`` facet, and column lineage *without* transformation types (dbt-ol sends
none; the SQL says how each column is made).

Models:

- ``analytics.book_stats``: ``b.id AS book_id`` (a renamed copy), ``b.title`` (a copy) and
  ``count(r.id) AS n_reviews`` (an aggregation), owned by ``user:alice@example.com``;
- ``analytics.reviewer_keys``: ``md5(u.email) AS email_hash`` (masking), owned by ``bob`` and by
  ``user:ghost@example.com``, whom the catalog does not know.
"""

import uuid

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    job_type_job,
    ownership_dataset,
    parent_run,
    schema_dataset,
    sql_job,
)

NAMESPACE = "postgres://warehouse.internal:5432"
JOB_NAMESPACE = "dbt"
PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/dbt"
DBT_JOB = "dbt-run-bookshop"
BOOK_STATS_JOB = "bookshop.analytics.book_stats"
REVIEWER_KEYS_JOB = "bookshop.analytics.reviewer_keys"

BOOK_STATS_SQL = """with reviews as (
    select id, book_id, stars from "bookshop"."public"."reviews"
)
select
    b.id as book_id,
    b.title,
    count(r.id) as n_reviews
from "bookshop"."public"."books" b
left join reviews r on r.book_id = b.id
group by 1, 2"""

REVIEWER_KEYS_SQL = """select u.id as user_id, md5(u.email) as email_hash
from "bookshop"."public"."users" u"""


def _schema(*names):
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=name, type="text") for name in names])


def _untyped(*sources):
    """Column lineage fields as dbt-ol sends them: input fields with no transformation type."""
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields={
        output: column_lineage_dataset.Fields(inputFields=[
            column_lineage_dataset.InputField(NAMESPACE, table, column) for table, column in inputs
        ]) for output, inputs in sources
    })


def _job_type(job_type):
    return job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DBT", jobType=job_type)


def _owners(*names):
    return ownership_dataset.OwnershipDatasetFacet(owners=[ownership_dataset.Owner(name=name) for name in names])


def dbt_run_event(state, run_id, *, event_time):
    return RunEvent(
        eventType=state, eventTime=event_time, producer=PRODUCER,
        run=Run(runId=run_id), job=Job(namespace=JOB_NAMESPACE, name=DBT_JOB, facets={"jobType": _job_type("JOB")}),
        inputs=[], outputs=[],
    )


def _parent(dbt_run_id):
    return {"parent": parent_run.ParentRunFacet(
        run=parent_run.Run(runId=dbt_run_id), job=parent_run.Job(namespace=JOB_NAMESPACE, name=DBT_JOB))}


def book_stats_event(state, run_id, dbt_run_id, *, event_time, owner="user:alice@example.com"):
    complete = state == RunState.COMPLETE
    return RunEvent(
        eventType=state, eventTime=event_time, producer=PRODUCER,
        run=Run(runId=run_id, facets=_parent(dbt_run_id)),
        job=Job(namespace=JOB_NAMESPACE, name=BOOK_STATS_JOB, facets={
            "jobType": _job_type("MODEL"), "sql": sql_job.SQLJobFacet(query=BOOK_STATS_SQL, dialect="postgres")}),
        inputs=[
            InputDataset(NAMESPACE, "bookshop.public.books", facets={"schema": _schema("id", "title")}),
            InputDataset(NAMESPACE, "bookshop.public.reviews", facets={"schema": _schema("id", "book_id", "stars")}),
        ],
        outputs=[OutputDataset(NAMESPACE, "bookshop.analytics.book_stats", facets={
            "schema": _schema("book_id", "title", "n_reviews"),
            "ownership": _owners(owner),
            **({"columnLineage": _untyped(
                ("book_id", [("bookshop.public.books", "id")]),
                ("title", [("bookshop.public.books", "title")]),
                ("n_reviews", [("bookshop.public.reviews", "id")]),
            )} if complete else {}),
        })],
    )


def reviewer_keys_event(state, run_id, dbt_run_id, *, event_time):
    complete = state == RunState.COMPLETE
    return RunEvent(
        eventType=state, eventTime=event_time, producer=PRODUCER,
        run=Run(runId=run_id, facets=_parent(dbt_run_id)),
        job=Job(namespace=JOB_NAMESPACE, name=REVIEWER_KEYS_JOB, facets={
            "jobType": _job_type("MODEL"), "sql": sql_job.SQLJobFacet(query=REVIEWER_KEYS_SQL, dialect="postgres")}),
        inputs=[InputDataset(NAMESPACE, "bookshop.public.users", facets={"schema": _schema("id", "email")})],
        outputs=[OutputDataset(NAMESPACE, "bookshop.analytics.reviewer_keys", facets={
            "schema": _schema("user_id", "email_hash"),
            "ownership": _owners("bob", "user:ghost@example.com"),
            **({"columnLineage": _untyped(
                ("user_id", [("bookshop.public.users", "id")]),
                ("email_hash", [("bookshop.public.users", "email")]),
            )} if complete else {}),
        })],
    )


def dbt_run(*, dbt_run_id=None, book_stats_run_id=None, reviewer_keys_run_id=None):
    """The events of one ``dbt-ol run`` in the order dbt-ol sends them, and the run ids."""
    ids = {
        "dbt": dbt_run_id or str(uuid.uuid4()),
        "book_stats": book_stats_run_id or str(uuid.uuid4()),
        "reviewer_keys": reviewer_keys_run_id or str(uuid.uuid4()),
    }
    events = [
        dbt_run_event(RunState.START, ids["dbt"], event_time="2026-12-01T06:00:00+00:00"),
        book_stats_event(RunState.START, ids["book_stats"], ids["dbt"], event_time="2026-12-01T06:00:05+00:00"),
        book_stats_event(RunState.COMPLETE, ids["book_stats"], ids["dbt"], event_time="2026-12-01T06:00:09+00:00"),
        reviewer_keys_event(RunState.START, ids["reviewer_keys"], ids["dbt"], event_time="2026-12-01T06:00:10+00:00"),
        reviewer_keys_event(RunState.COMPLETE, ids["reviewer_keys"], ids["dbt"], event_time="2026-12-01T06:00:12+00:00"),
        dbt_run_event(RunState.COMPLETE, ids["dbt"], event_time="2026-12-01T06:00:13+00:00"),
    ]
    return events, ids


def as_json(event) -> dict:
    """An event as the client's HTTP transport sends it."""
    import json

    from openlineage.client.serde import Serde

    return json.loads(Serde.to_json(event))
