"""The usage panel of a dataset page in a real browser: drawn from the usage API (pushed events)."""

import pytest
from playwright.sync_api import expect

from monitoring.ingestion import access_log_ingest
from monitoring.parsing import records_from_text
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create
from tests.monitoring.test_push import pg_line

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"  # UserFactory's


def test_dataset_page_draws_reads_per_day_and_who_read_restricted_columns(live_server, page, screenshot):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    UserFactory(username="sec", roles=["security_engineer"])
    UserFactory(username="mia", roles=["data_analyst"], warehouse_role="mia_role")
    store = StoreFactory(name="pg-audited", kind="transactional", platform="postgresql", environment="prod")
    dataset = dataset_create(principal=registrar, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive"),
        column_payload("ssn", sensitivity="Restricted")])
    text = "\n".join([pg_line(1, "SELECT id FROM shop.customers WHERE id = 4"),
                      pg_line(2, "SELECT ssn FROM shop.customers", role="etl_unmapped")])
    records, _, _ = records_from_text(text, "pgaudit")
    access_log_ingest(store=store, records=records, source="push", log_format="pgaudit")

    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("sec")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    usage = page.locator("#usage")
    expect(usage.get_by_text("2 reads recorded")).to_be_visible()
    expect(usage.locator("svg.usage-chart rect")).to_have_count(1)
    expect(usage.get_by_role("table", name="Readers of Restricted columns")).to_contain_text("role:etl_unmapped")
    expect(usage).to_contain_text("Never read in 90 days: email")
    usage.scroll_into_view_if_needed()
    screenshot("dataset-usage-panel")
