"""The Enforcement tab in a real browser: the owner opens it from the dataset page, filters the
statements by kind (in the URL) and copies one."""

import pytest
from playwright.sync_api import expect

from tests.browser.test_access_ui import log_in
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_owner_previews_and_copies_the_enforcement_plan(live_server, page, screenshot):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    owner = UserFactory(username="olga", first_name="Olga", roles=["data_analyst"])
    store = StoreFactory(name="mariadb_shop", platform="mysql", environment="prod")
    dataset = dataset_create(principal=registrar, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INT"),
        column_payload("email", type_="VARCHAR(255)", sensitivity="Sensitive", protection="Masked"),
        column_payload("card", type_="VARCHAR(32)", sensitivity="Sensitive", protection="Tokenized"),
        column_payload("ssn", type_="VARCHAR(11)", sensitivity="Restricted"),
    ])
    dataset.owners.add(owner)

    log_in(page, live_server, "olga")
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.get_by_role("link", name="Enforcement").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("shop.customers")
    expect(page.locator("#plan-statements")).to_contain_text("SQL SECURITY DEFINER VIEW `governed`.`customers`")
    expect(page.locator("#plan-statements")).to_contain_text("redacted")
    screenshot("enforcement-01-mariadb-plan")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy statement 1").click()
    expect(page.get_by_role("button", name="Copy statement 1")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "CREATE DATABASE IF NOT EXISTS `governed`"

    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.get_by_role("link", name="Enforcement").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/access/enforcement/{dataset.pk}/")
