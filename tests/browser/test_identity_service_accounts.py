"""An admin in a real browser rotates a pipeline's token: makes a new one (the key shown once),
then revokes the old one with one click; the old key is refused, the new one works."""

import pytest
from playwright.sync_api import expect
from rest_framework.test import APIClient

from tests.browser.test_access_ui import log_in
from tests.factories import UserFactory, service_account_with_key

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _status(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/datasets/").status_code


def test_admin_rotates_and_revokes_a_token(live_server, page, screenshot):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    account, old_key = service_account_with_key(username="airflow")
    log_in(page, live_server, "root")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Service accounts").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Service accounts")
    screenshot("service-accounts-list")
    page.get_by_role("link", name="airflow").click()
    tokens = page.locator("#service-tokens tbody tr")
    expect(tokens).to_have_count(1)
    expect(tokens.first).to_contain_text(old_key[:8])
    page.get_by_label("Valid for (days)").fill("30")
    page.get_by_role("button", name="Make a new token").click()
    new_key = page.locator("#new-key-value").input_value()
    assert len(new_key) == 40 and new_key != old_key
    expect(tokens).to_have_count(2)
    screenshot("service-account-new-token")
    assert _status(old_key) == 200 and _status(new_key) == 200
    old_row = page.locator("#service-tokens tbody tr", has_text=old_key[:8])
    old_row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status")).to_contain_text(f"Revoked the token {old_key[:8]}")
    expect(page.locator("#service-tokens tbody tr", has_text=old_key[:8])).to_contain_text("Revoked")
    expect(page.locator("#new-key")).to_have_count(0)
    assert new_key not in page.content()
    screenshot("service-account-revoked")
    assert _status(old_key) == 401 and _status(new_key) == 200
