"""Lineage shows each reader only what the role matrix lets them see.

A product manager sees aggregated datasets only. Walking from one, the datasets upstream
and downstream that they may not see keep their place (the flow goes through them) but show
no name, column, owner, sensitivity or job; the violations list and a column's impact leave
them out and count them.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lineage.models import EdgeKind, Node
from tests.factories import UserFactory, column_payload
from tests.lineage.test_views import appdb, link, register, text  # noqa: F401 (appdb is a fixture)

pytestmark = pytest.mark.django_db

HIDDEN = Node.HIDDEN_LABEL


@pytest.fixture
def flow(registrar, appdb, store):
    """crm.people.email (Restricted, not aggregated) -> rollup.email_domain (aggregated, Regular:
    a violation) -> finance.secret_report.email_domain (Sensitive dataset, not aggregated: a
    violation too)."""
    UserFactory(username="sofia")
    people = register(
        registrar, appdb, "crm.people", column_payload("email", sensitivity="Restricted"), owners=["dave"],
    )
    rollup = register(registrar, store, "marketing.rollup", column_payload("email_domain"), owners=["dave"])
    rollup.tags = ["aggregated"]
    rollup.save(update_fields=["tags"])
    report = register(
        registrar, store, "finance.secret_report",
        column_payload("email_domain"), column_payload("salary_band", sensitivity="Sensitive"), owners=["sofia"],
    )
    link(people, "email", rollup, "email_domain", kind=EdgeKind.COPY)
    link(rollup, "email_domain", report, "email_domain", kind=EdgeKind.COPY)
    return {"people": people, "rollup": rollup, "report": report}


@pytest.fixture
def manager(db):
    return UserFactory(username="paula", roles=["product_manager"])


def as_user(client, user):
    client.force_login(user)
    return client


LEAKS = ("crm.people", "secret_report", "sofia", "salary_band")


def test_the_graph_api_hides_what_the_reader_may_not_see_but_keeps_its_place(client, flow, manager):
    response = as_user(client, manager).get(f"/api/v1/datasets/{flow['rollup'].pk}/lineage/")

    assert response.status_code == 200
    graph = response.json()
    by_depth = {node["depth"]: node for node in graph["nodes"]}
    assert by_depth[0]["hidden"] is False and by_depth[0]["dataset"]["qualifiedName"] == "analytics.marketing.rollup"
    for depth in (-1, 1):
        assert by_depth[depth] == {
            "id": by_depth[depth]["id"], "kind": "dataset", "label": HIDDEN, "depth": depth, "dataset": None,
            "column": None, "sourceKind": "", "placeholder": False, "sensitivity": None,
            "effectiveSensitivity": None, "protection": None, "violation": False, "owners": [], "hidden": True,
        }
    assert len(graph["edges"]) == 2  # the flow goes on through the hidden datasets
    assert all(edge["job"] is None and edge["description"] == "" for edge in graph["edges"])
    assert not any(leak in response.content.decode() for leak in LEAKS)


def test_column_level_graph_hides_the_columns_of_hidden_datasets(client, flow, manager):
    response = as_user(client, manager).get(f"/api/v1/datasets/{flow['rollup'].pk}/lineage/", {"level": "column"})

    nodes = response.json()["nodes"]
    assert [(node["column"]["name"], node["hidden"]) for node in nodes if node["depth"] == 0] == [("email_domain", False)]
    assert {(node["kind"], node["label"], node["hidden"]) for node in nodes if node["depth"]} == {("column", HIDDEN, True)}
    assert "people" not in response.content.decode() and "secret_report" not in response.content.decode()


def test_a_reader_who_may_see_everything_sees_every_name(client, flow, registrar):
    response = as_user(client, registrar).get(f"/api/v1/datasets/{flow['rollup'].pk}/lineage/")

    nodes = response.json()["nodes"]
    assert not any(node["hidden"] for node in nodes)
    assert {node["dataset"]["qualifiedName"] for node in nodes} == {
        "appdb.crm.people", "analytics.marketing.rollup", "analytics.finance.secret_report",
    }


def test_the_dataset_page_lists_hidden_neighbours_without_their_names(client, flow, manager):
    response = as_user(client, manager).get(f"/datasets/{flow['rollup'].pk}/")

    assert response.status_code == 200
    page = text(response)
    assert page.count(HIDDEN) == 2  # one upstream, one downstream
    assert not any(leak in page for leak in LEAKS)


def test_violations_leave_out_datasets_the_reader_may_not_see_and_hide_steps_on_the_path(client, flow, manager, registrar):
    everyone = as_user(client, registrar).get("/api/v1/lineage/violations/").json()["results"]
    assert {violation["dataset"] for violation in everyone} == {"analytics.marketing.rollup", "analytics.finance.secret_report"}

    response = as_user(client, manager).get("/api/v1/lineage/violations/")
    (violation,) = response.json()["results"]
    assert violation["dataset"] == "analytics.marketing.rollup"
    assert [(step["label"], step["hidden"]) for step in violation["path"]] == [
        (HIDDEN, True), ("analytics.marketing.rollup.email_domain", False),
    ]
    assert violation["path"][0] == {"nodeId": None, "label": HIDDEN, "hidden": True, "effectiveSensitivity": None}
    page = text(client.get("/lineage/violations/"))
    assert "marketing.rollup" in page and HIDDEN in page
    assert not any(leak in page for leak in LEAKS)


def test_column_impact_counts_the_datasets_the_reader_may_not_see(client, flow, manager):
    column = flow["rollup"].columns.get(name="email_domain")
    response = as_user(client, manager).get(f"/datasets/{flow['rollup'].pk}/columns/{column.pk}/impact/")

    assert response.status_code == 200
    page = text(response)
    assert "1 more dataset you may not see" in page
    assert not any(leak in page for leak in LEAKS)


def test_hiding_does_not_add_queries_as_the_walk_grows(client, flow, manager, registrar):
    url = f"/api/v1/datasets/{flow['rollup'].pk}/lineage/"
    as_user(client, manager).get(url)  # warm the session
    with CaptureQueriesContext(connection) as near:
        client.get(url, {"depth": 1})
    more = register(registrar, flow["report"].store, "finance.more", column_payload("email_domain"))
    link(flow["report"], "email_domain", more, "email_domain", kind=EdgeKind.COPY)
    with CaptureQueriesContext(connection) as far:
        client.get(url, {"depth": 20})
    assert len(far.captured_queries) == len(near.captured_queries)


def test_the_job_list_leaves_out_jobs_that_touch_what_the_reader_may_not_see(client, flow, manager, registrar, store):
    from lineage.models import Edge, Job

    weekly = register(registrar, store, "marketing.weekly", column_payload("email_domain"))
    weekly.tags = ["aggregated"]
    weekly.save(update_fields=["tags"])
    link(flow["rollup"], "email_domain", weekly, "email_domain", kind=EdgeKind.COPY)
    Edge.objects.filter(target__dataset=flow["report"]).update(job=Job.objects.create(namespace="dbt", name="finance.secret_report"))
    Edge.objects.filter(target__dataset=weekly).update(job=Job.objects.create(namespace="dbt", name="marketing.weekly"))
    Job.objects.create(namespace="dbt", name="orphan")  # no edges: nothing says what it touches

    names = {job["name"] for job in as_user(client, registrar).get("/api/v1/lineage/jobs/").json()["results"]}
    assert names == {"finance.secret_report", "marketing.weekly", "orphan"}
    names = {job["name"] for job in as_user(client, manager).get("/api/v1/lineage/jobs/").json()["results"]}
    assert names == {"marketing.weekly"}
