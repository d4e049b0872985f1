"""Just-in-time access in a real browser: an analyst asks on the dataset page, the owner
approves in the queue, the analyst sees the live grant in My access and ends it early."""

import pytest
from playwright.sync_api import expect

from access.models import AccessRequest, Grant, GrantStatus, RequestStatus
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create
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


def log_out(page):
    page.get_by_role("button", name="Log out").click()


def test_request_approve_use_and_end_a_grant(live_server, page, screenshot):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    analyst = UserFactory(username="mia", first_name="Mia", last_name="Analyst", roles=["data_analyst"])
    owner = UserFactory(username="olga", first_name="Olga", last_name="Owner", roles=["data_analyst"])
    store = StoreFactory(name="warehouse", environment="prod")
    dataset = dataset_create(principal=registrar, store=store, name="sales.orders", columns=[
        column_payload("order_id", mode="REQUIRED"),
        column_payload("email", sensitivity="Sensitive"),
        column_payload("total", type_="NUMERIC"),
    ])
    dataset.owners.add(owner)

    # The analyst asks on the dataset page; a first try without a ticket names the field.
    log_in(page, live_server, "mia")
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.get_by_role("link", name="Request access").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Request access to")
    expect(page.get_by_label("Read", exact=True)).to_be_focused()
    page.get_by_label("email").check()
    page.get_by_label("Duration (hours)").fill("4")
    page.get_by_label("Justification").fill("Quarterly churn analysis for the board.")
    page.get_by_role("button", name="Send request").click()
    expect(page.locator(".field-error")).to_have_text("This scope needs a ticket reference.")
    expect(page.get_by_label("Ticket (required)")).to_be_focused()
    screenshot("access-01-request-form-error")
    page.get_by_label("Ticket (required)").fill("SEC-1234")
    page.get_by_role("button", name="Send request").click()
    expect(page.locator(".message-success")).to_contain_text("Asked for read access to warehouse.sales.orders")
    expect(page.locator(".req-status")).to_have_text("Pending")
    screenshot("access-02-request-detail")
    request = AccessRequest.objects.get(requester=analyst)
    assert request.columns == ["email"] and request.ticket == "SEC-1234"
    log_out(page)

    # The owner approves in the queue, which shows who asks, why and the scope.
    log_in(page, live_server, "olga")
    expect(page.locator("#nav-approval-count")).to_have_text("1")
    page.get_by_role("link", name="Approvals").click()
    item = page.locator(f"#request-{request.pk}")
    expect(item).to_contain_text("Quarterly churn analysis for the board.")
    expect(item).to_contain_text("0 of 1 approval")
    expect(item.locator(".badge")).to_have_text("Sensitive")
    screenshot("access-03-approval-queue")
    item.get_by_role("button", name="Approve").click()
    expect(page.locator(".message-success")).to_contain_text("Approved: mia now has access")
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    log_out(page)

    # The analyst sees the live grant and its time left, then ends it early.
    log_in(page, live_server, "mia")
    page.get_by_role("link", name="My access").click()
    grant = Grant.objects.get(request=request)
    card = page.locator(f"#grant-{grant.pk}")
    expect(card.locator(".grant-status")).to_have_text("Active")
    expect(card.locator(".time-left")).to_contain_text("hour")
    expect(page.locator(".req-status")).to_have_text("Approved")
    screenshot("access-04-my-access")
    card.get_by_label("Reason to end it now").fill("Analysis finished early")
    card.get_by_role("button", name="End access now").click()
    expect(page.locator(".message-success")).to_contain_text("Ended the grant of mia")
    expect(page.get_by_text("No live grants")).to_be_visible()
    grant.refresh_from_db()
    assert grant.status == GrantStatus.REVOKED and grant.revoke_reason == "Analysis finished early"
    page.goto(f"{live_server.url}/access/grants/{grant.pk}/")
    expect(page.locator(".grant-status").first).to_have_text("Revoked")
    expect(page.get_by_role("cell", name="grant.revoked")).to_be_visible()
    screenshot("access-05-grant-detail")

    # Everyone reads the role matrix that decided all of this.
    page.get_by_role("link", name="Roles").click()
    expect(page.locator("#env-prod")).to_contain_text("Data analyst")
    screenshot("access-06-role-matrix")
