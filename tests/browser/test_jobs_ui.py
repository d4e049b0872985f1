"""Jobs and runs in a real browser, after a dbt run as dbt-ol reports it: the job list filtered by
type in the URL, a model's SQL readable and scrollable, and the dbt run with its model runs."""

import pytest
from playwright.sync_api import expect

from lineage.models import Job
from tests.browser.test_lineage_graph import log_in
from tests.factories import StoreFactory, UserFactory, service_account_with_key
from tests.lineage import dbt_run as dbt

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def reported(client):
    """A dbt run's events posted as the client's HTTP transport sends them."""
    UserFactory(username="dave", roles=["data_engineer"])
    UserFactory(username="asmith", email="alice@example.com")
    StoreFactory(name="warehouse", lineage_namespace=dbt.NAMESPACE, kind="analytical", platform="duckdb")
    _, key = service_account_with_key(username="dbt-prod")
    events, ids = dbt.dbt_run()
    for event in events:
        response = client.post("/api/v1/lineage", dbt.as_json(event), content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code == 201, response.content
    Job.objects.create(namespace="airflow", name="nightly_export", job_type="TASK", integration="AIRFLOW",
                       processing_type="BATCH")
    return ids


def test_jobs_filtered_by_type_then_a_models_sql_and_its_dbt_run(page, live_server, reported, screenshot):
    log_in(page, live_server, username="dave")
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.locator("#job-table")).to_contain_text(dbt.DBT_JOB)  # no edges of its own: known by its model runs
    page.get_by_label("Job type").select_option("MODEL")
    page.get_by_label("Integration").select_option("DBT")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(f"{live_server.url}/lineage/jobs/?q=&jobType=MODEL&integration=DBT&processingType=")
    expect(page.locator("#job-table tbody tr")).to_have_count(2)
    screenshot("jobs-list-filtered")

    page.get_by_role("link", name=dbt.BOOK_STATS_JOB).click()
    sql = page.locator("pre.sql-block")
    expect(sql).to_contain_text("count(r.id) as n_reviews")
    expect(sql).to_contain_text('"bookshop"."public"."reviews"')
    assert sql.evaluate("e => getComputedStyle(e).fontFamily").startswith("ui-monospace")
    expect(page.locator("#job-outputs")).to_contain_text("warehouse.bookshop.analytics.book_stats")
    screenshot("job-detail-sql")

    page.locator("#run-table a.parent-run").click()
    expect(page).to_have_url(f"{live_server.url}/lineage/runs/{reported['dbt']}/")
    children = page.locator("#child-runs tbody tr")
    expect(children).to_have_count(2)
    expect(page.locator("#child-runs")).to_contain_text(dbt.REVIEWER_KEYS_JOB)
    screenshot("run-detail-children")

    page.locator("#child-runs").get_by_role("link", name=dbt.REVIEWER_KEYS_JOB).click()
    expect(page.locator("#run-parent")).to_contain_text(dbt.DBT_JOB)
    expect(page.locator("#run-notes")).to_contain_text("user:ghost@example.com")
    screenshot("run-detail-parent-notes")
