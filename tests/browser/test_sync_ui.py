"""Warehouse sync in a real browser: a platform engineer connects a SQLite warehouse, tests it,
syncs it, watches the run finish and accepts a classification suggestion."""

import re

import pytest
from playwright.sync_api import expect

from catalog.connections import connection_save
from catalog.models import ColumnSuggestion, Connection, SuggestionStatus, SyncRun, SyncStatus
from catalog.sync import sync_run_execute, sync_run_request
from catalog.vocabulary import Sensitivity
from tests.catalog.test_sync_views import make_warehouse
from tests.factories import StoreFactory, UserFactory
from tests.identity.helpers import browser_step_up

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"  # UserFactory's


def log_in(page, live_server, username, *, step_up=True):
    """Sign in through the form; ``step_up``: the session has also proved a second factor (the
    approvals and connections these tests make ask for one; tests/browser/test_identity_mfa.py
    goes through the verify page for real)."""
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{live_server.url}/")
    if step_up:
        browser_step_up(page)


def test_engineer_connects_syncs_and_accepts_a_suggestion(live_server, page, screenshot, tmp_path):
    UserFactory(username="pat", roles=["platform_engineer"])
    warehouse = make_warehouse(tmp_path / "shop.db")
    log_in(page, live_server, "pat")

    # A new store lands on its own page, which says what to do next.
    page.get_by_role("link", name="Stores").click()
    page.get_by_role("link", name="Add a store").click()
    page.get_by_label("Name", exact=True).fill("shop")
    page.get_by_label("Kind").select_option("transactional")
    page.get_by_label("Platform").select_option("sqlite")
    page.get_by_role("button", name="Save store").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("shop")
    expect(page.get_by_text("No connection yet")).to_be_visible()
    expect(page.get_by_text("No syncs yet")).to_be_visible()

    # The connection form: the file path field has the focus, Enter saves.
    page.get_by_role("link", name="Add a connection").click()
    path_field = page.get_by_label("Database file path")
    expect(path_field).to_be_focused()
    path_field.fill(str(warehouse))
    page.get_by_label("Sample values to suggest classifications").check()
    page.get_by_label("Schedule (cron, UTC)").fill("0 2 * * *")
    screenshot("sync-02-connection-form")
    page.get_by_label("Schedule (cron, UTC)").press("Enter")
    expect(page.locator(".message-success")).to_contain_text("Saved the connection of shop")
    assert Connection.objects.get(store__name="shop").database == str(warehouse)

    # Test it in place (htmx).
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#connection-test-result")).to_contain_text("Connected to SQLite")
    expect(page.locator("#last-test")).to_contain_text("OK")
    expect(page.locator(".connection-card")).to_contain_text("0 2 * * *")
    expect(page.locator(".connection-card")).to_contain_text("next run")
    screenshot("sync-01-store-with-connection")

    # Sync now: the run page shows the finished run and what it found.
    page.get_by_role("button", name="Sync now").click()
    expect(page).to_have_url(re.compile(r"/syncs/\d+/$"))
    status = page.locator("#run-status")
    expect(status).to_have_attribute("data-status", "succeeded")
    expect(status.locator(".run-count-new .run-count-value")).to_have_text("4")
    expect(page.locator("#run-events")).to_contain_text("shop.customers")
    expect(page.locator("#run-events")).to_contain_text("shop.customer_orders")
    screenshot("sync-03-run-page")
    page.locator("#run-events").get_by_role("link", name=re.compile("New")).click()
    expect(page).to_have_url(re.compile(r"\?outcome=new$"))
    expect(page.locator("#run-events tbody tr")).to_have_count(4)

    # The nav shows how many suggestions wait; accept the email one in place.
    suggestions_link = page.get_by_role("link", name=re.compile(r"^Suggestions"))
    expect(suggestions_link.locator(".nav-count")).to_have_text("3")
    suggestions_link.click()
    email = ColumnSuggestion.objects.get(dataset__qualified_name="shop.customers", column__name="email")
    row = page.locator(f"#suggestion-{email.pk}")
    expect(row).to_contain_text("12 of 12 sampled values match")
    screenshot("sync-04-suggestions")
    row.get_by_role("button", name=re.compile(r"^Accept")).click()
    expect(row.locator(".decided")).to_have_text("Accepted")
    expect(row).to_contain_text("now v2")
    expect(suggestions_link.locator(".nav-count")).to_have_text("2")
    email.refresh_from_db()
    assert email.status == SuggestionStatus.ACCEPTED
    assert email.column.sensitivity == Sensitivity.SENSITIVE
    screenshot("sync-05-suggestion-accepted")

    # On the dataset page the other email column carries a marker; accepting it there reloads the page.
    orders = ColumnSuggestion.objects.get(dataset__qualified_name="shop.customer_orders", column__name="email")
    page.goto(f"{live_server.url}/datasets/{orders.dataset_id}/")
    email_row = page.locator("tr", has=page.get_by_role("rowheader", name="email"))
    expect(email_row.locator(".suggested")).to_contain_text("suggested: Sensitive (email, 70%)")
    screenshot("sync-07-dataset-suggestion-marker")
    email_row.get_by_role("button", name=re.compile(r"^Accept")).click()
    expect(page.locator(".message-success")).to_contain_text("is now Sensitive (version 2)")
    expect(email_row.locator(".suggested")).to_have_count(0)
    expect(email_row.locator(".badge.sens-sensitive")).to_have_text("Sensitive")

    # The store page lists the run.
    page.locator(".facts").get_by_role("link", name="shop", exact=True).click()
    expect(page.locator(".runs-table tbody tr")).to_have_count(1)
    expect(page.locator(".runs-table .run-status")).to_have_text("Succeeded")
    screenshot("sync-10-store-with-runs")


def test_password_is_write_only_in_the_connection_form(live_server, page, screenshot):
    UserFactory(username="pat", roles=["platform_engineer"])
    store = StoreFactory(name="appdb", kind="transactional", platform="postgresql")
    log_in(page, live_server, "pat")

    page.goto(f"{live_server.url}/stores/{store.pk}/connection/")
    expect(page.get_by_label("Host")).to_be_focused()
    page.get_by_label("Host").fill("db.internal")
    page.get_by_label("Port").fill("5432")
    page.get_by_label("Database / file path / project").fill("app")
    page.get_by_label("Username").fill("harvester")
    page.get_by_label("Password", exact=True).fill("Hunter2-very-secret")
    page.get_by_label("Include schemas").fill("public, sales_*")
    page.get_by_label("Schedule (cron, UTC)").fill("every night")
    page.get_by_role("button", name="Save connection").click()
    expect(page.locator("#id_schedule_error")).to_contain_text("five cron fields")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    expect(page.get_by_text("Type the password again")).to_be_visible()
    expect(page.get_by_label("Schedule (cron, UTC)")).to_be_focused()
    screenshot("sync-08-connection-form-error")

    page.get_by_label("Password", exact=True).fill("Hunter2-very-secret")
    page.get_by_label("Schedule (cron, UTC)").fill("*/30 * * * *")
    page.get_by_label("Schedule (cron, UTC)").press("Enter")
    expect(page.locator(".connection-card")).to_contain_text("stored")
    assert "Hunter2-very-secret" not in page.content()
    page.get_by_role("link", name="Edit connection").click()
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    expect(page.get_by_text("A password is stored.")).to_be_visible()
    assert "Hunter2-very-secret" not in page.content()
    screenshot("sync-09-connection-form-postgres")


def test_run_page_follows_a_running_sync_until_it_finishes(live_server, page, screenshot, tmp_path):
    engineer = UserFactory(username="pat", roles=["platform_engineer"])
    store = StoreFactory(name="shop", kind="transactional", platform="sqlite")
    connection_save(principal=engineer, store=store, database=str(make_warehouse(tmp_path / "shop.db")))
    run, _ = sync_run_request(principal=engineer, store=store, enqueue=False)
    log_in(page, live_server, "pat")

    page.goto(f"{live_server.url}/syncs/{run.pk}/")
    status = page.locator("#run-status")
    expect(status).to_have_attribute("data-status", "queued")
    expect(status).to_contain_text("Waiting for a worker")
    SyncRun.objects.filter(pk=run.pk).update(status=SyncStatus.RUNNING, phase="writing", objects_total=4, objects_done=1)
    expect(status).to_contain_text("1 of 4 · 25%")
    expect(status).to_contain_text("Writing datasets")
    screenshot("sync-06-run-in-progress")

    SyncRun.objects.filter(pk=run.pk).update(status=SyncStatus.QUEUED, phase="", objects_total=None, objects_done=0)
    sync_run_execute(run.pk)

    # Polling stops on the finished run and brings the events along, without a reload.
    expect(status).to_have_attribute("data-status", "succeeded")
    expect(status).not_to_have_attribute("hx-trigger", "every 1s")
    expect(page.locator("#run-events tbody tr")).to_have_count(4)
    expect(page).to_have_url(f"{live_server.url}/syncs/{run.pk}/")
