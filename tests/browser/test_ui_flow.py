"""A real browser through the catalog: sign in, search, read a dataset and a version diff."""

import re

import pytest
from playwright.sync_api import expect

from catalog.demo import DEMO_PASSWORD, demo_load
from catalog.models import Dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/login/")
    expect(page.get_by_label("Username")).to_be_focused()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{live_server.url}/")


def test_analyst_searches_opens_a_dataset_and_reads_a_breaking_diff(live_server, page, screenshot):
    demo_load()
    reviews = Dataset.objects.get(qualified_name="appdb.public.reviews")

    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    screenshot("01-login")
    log_in(page, live_server, "mia")
    screenshot("02-dataset-list")

    # Live search (htmx) by a column name only one dataset has.
    page.get_by_label("Search datasets").fill("password_hash")
    results = page.locator("#results tbody tr")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("appdb.public.users")
    expect(page).to_have_url(re.compile(r"q=password_hash"))
    screenshot("03-search-by-column")

    page.get_by_role("link", name="appdb.public.users").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("appdb.public.users")
    password_row = page.locator("tr", has=page.get_by_role("rowheader", name="password_hash"))
    expect(password_row.locator(".badge.sens-restricted")).to_have_text("Restricted")
    expect(password_row.locator(".badge.prot-hashed")).to_have_text("Hashed")
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    screenshot("04-dataset-detail")

    page.goto(f"{live_server.url}/datasets/{reviews.pk}/")
    page.get_by_role("link", name="Diff vs v1").click()
    expect(page.get_by_label("From version")).to_have_value("1")
    expect(page.get_by_label("To version")).to_have_value("2")
    removed = page.locator('.diff-removed[data-column="stars"]')
    expect(removed).to_contain_text("stars")
    expect(removed.locator(".breaking")).to_have_text("Breaking")
    expect(page.locator("#diff-summary .breaking")).to_be_visible()
    screenshot("05-diff-breaking")

    # Any two versions: the same version twice has no differences.
    page.get_by_label("From version").select_option("2")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#diff-summary")).to_contain_text("No differences")


def test_engineer_sees_register_errors_next_to_the_fields_then_registers(live_server, page, screenshot):
    demo_load()
    before = Dataset.objects.count()
    log_in(page, live_server, "dave")

    page.get_by_role("link", name="Register a dataset").click()
    page.get_by_label("Store").select_option("analytics")
    page.get_by_label("Name", exact=True).fill("marketing.campaigns")
    page.get_by_label("Column 1: Name").fill("CampaignID")
    page.get_by_label("Column 1: Type").fill("STRING")
    page.get_by_label("Column 1: Sensitivity").select_option("Regular")
    page.get_by_label("Column 1: Originating source").fill("Reviews")
    page.get_by_role("button", name="+ Add column").click()
    expect(page.get_by_label("Column 2: Name")).to_be_focused()
    page.keyboard.type("CampaignID")
    page.get_by_label("Column 2: Type").fill("STRING")
    page.get_by_label("Column 2: Sensitivity").select_option("Public")
    page.get_by_label("Column 2: Type").press("Enter")

    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(page.locator("#column-row-0 .c-source .field-error")).to_contain_text("<kind>:<name>")
    expect(page.locator("#column-row-1 .c-name .field-error")).to_contain_text("Duplicate column name")
    screenshot("06-register-form-errors")
    assert Dataset.objects.count() == before

    page.get_by_label("Column 1: Originating source").fill("transactional:Campaigns")
    page.get_by_label("Column 2: Name").fill("Budget")
    page.get_by_role("button", name="Register dataset").click()

    expect(page.locator(".messages")).to_contain_text("Registered version 1")
    expect(page.get_by_role("heading", level=1)).to_have_text("analytics.marketing.campaigns")
    screenshot("07-registered")
    assert Dataset.objects.count() == before + 1
