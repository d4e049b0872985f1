"""A security engineer in a real browser: the grants list across datasets (filters in the URL,
the CSV export) and the audit trail (names, readable times, the action select, an impossible range)."""

import re
from datetime import date, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from access import grants
from access.models import AuditEvent, Enforcement, Grant
from tests.browser.test_access_ui import log_in
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def scene(db):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    owner = UserFactory(username="olga", first_name="Olga", roles=["data_analyst"])
    UserFactory(username="sven", first_name="Sven", roles=["security_engineer"])
    prod = StoreFactory(name="warehouse", environment="prod")
    orders = dataset_create(principal=registrar, store=prod, name="sales.orders", columns=[
        column_payload("order_id"), column_payload("email", sensitivity="Sensitive")])
    invoices = dataset_create(principal=registrar, store=prod, name="billing.invoices", columns=[
        column_payload("invoice_id"), column_payload("card_last4", sensitivity="Sensitive")])
    orders.owners.add(owner)
    invoices.owners.add(owner)
    made = []
    for username, dataset in (("mia", orders), ("ann", invoices), ("sue", orders)):
        user = UserFactory(username=username, roles=["data_analyst"])
        request = grants.access_request_create(principal=user, dataset=dataset, level="read", duration=4,
                                               justification="Quarterly churn analysis for the board", ticket="OPS-1")
        grants.access_request_review(principal=owner, request=request, approve=True,
                                     reason="Fine for the quarter")
        made.append(Grant.objects.get(request=request))
    Grant.objects.filter(pk=made[1].pk).update(enforcement=Enforcement.APPLY_FAILED)
    grants.grant_revoke(principal=owner, grant=made[2], reason="Analysis finished early")
    return {"grants": made, "orders": orders}


def test_security_engineer_lists_filters_and_exports_grants(live_server, page, screenshot, scene):
    log_in(page, live_server, "sven")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Grants").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Grants")
    table = page.locator("#grants")
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(page.locator("#grants-total")).to_have_text("3 grants")
    # Times read as "7 Dec 2026, 14:05", the exact time on hover.
    first_end = table.locator("tbody tr").first.locator("time").nth(1)
    expect(first_end).to_have_text(re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}$"))
    assert re.match(r"^\d{4}-\d{2}-\d{2}T", first_end.get_attribute("title"))
    screenshot("grants-01-all")

    page.get_by_role("link", name="Failed in the warehouse").click()
    expect(page).to_have_url(f"{live_server.url}/access/grants/?status=failed")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text("ann")
    expect(table).to_contain_text("Apply failed")

    page.goto(f"{live_server.url}/access/grants/")
    page.get_by_label("Status").select_option("live")
    page.get_by_label("Dataset").fill("warehouse.sales.orders")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=live&dataset=warehouse.sales.orders"))
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text("mia")
    screenshot("grants-02-filtered")

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = open(download.value.path()).read()
    assert text.splitlines()[0].startswith("id,user,dataset")
    assert len(text.splitlines()) == 2 and ",mia," in text
    event = AuditEvent.objects.get(action="grant.exported")
    assert event.details["filters"]["status"] == "live"

    # An impossible end range says so.
    today = timezone.localdate()
    page.goto(f"{live_server.url}/access/grants/?endsAfter={today + timedelta(days=2)}&endsBefore={today}")
    expect(page.locator(".field-error")).to_contain_text("nothing can match")
    screenshot("grants-03-impossible-range")


def test_security_engineer_reads_the_audit_trail(live_server, page, screenshot, scene):
    log_in(page, live_server, "sven")
    page.get_by_role("link", name="Audit").click()
    table = page.locator(".audit-table")
    # Approvers by name, not by id.
    approved = table.locator("tr", has_text="request.approved").first
    expect(approved.locator(".audit-details")).to_contain_text("approvals olga")
    when = approved.locator("time")
    expect(when).to_have_text(re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}$"))
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", when.get_attribute("title"))
    screenshot("audit-01-trail")

    # Actions are chosen from a select grouped by family.
    page.get_by_label("Action").select_option("grant")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=grant&"))
    expect(table).to_contain_text("grant.revoked")
    expect(table).not_to_contain_text("request.approved")
    expect(page.get_by_label("Action")).to_have_value("grant")

    # From after To.
    page.goto(f"{live_server.url}/access/audit/")
    today = date.today()
    page.get_by_label("From", exact=True).fill(today.isoformat())
    page.get_by_label("To", exact=True).fill((today - timedelta(days=7)).isoformat())
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#impossible-range")).to_contain_text("From is after To: nothing can match")
    expect(page.locator("main")).not_to_contain_text("No events")
    screenshot("audit-02-impossible-range")
