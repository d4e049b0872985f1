"""Oversight in a real browser: an on-call engineer uses break-glass, the owner reviews it
after the fact, a security engineer reads and verifies the audit trail, the owner runs an
access review; and a product manager's lineage graph hides what they may not see."""

import pytest
from playwright.sync_api import expect

from access.models import AuditEvent, Grant
from lineage.models import EdgeKind, Node
from tests.browser.test_access_ui import log_in, log_out
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create
from tests.lineage.test_views import link

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_break_glass_is_reviewed_audited_verified_and_reviewed_again(live_server, page, screenshot):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    UserFactory(username="oscar", first_name="Oscar", roles=["ops_engineer"])
    owner = UserFactory(username="olga", first_name="Olga", last_name="Owner", roles=["data_analyst"])
    UserFactory(username="sven", first_name="Sven", roles=["security_engineer"])
    store = StoreFactory(name="warehouse", environment="prod")
    dataset = dataset_create(principal=registrar, store=store, name="billing.invoices", columns=[
        column_payload("invoice_id", mode="REQUIRED"), column_payload("card_last4", sensitivity="Sensitive"),
    ])
    dataset.owners.add(owner)

    # On call, Oscar needs the data now: break-glass from the dataset page.
    log_in(page, live_server, "oscar")
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.get_by_role("link", name="Break-glass").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("billing.invoices")
    page.get_by_label("Read", exact=True).check()
    page.get_by_label("Minutes").fill("30")
    page.get_by_label("Emergency").fill("INC-77: invoices fail to render, need to read the rows")
    screenshot("access-07-break-glass-form")
    page.get_by_role("button", name="Activate break-glass").click()
    expect(page.locator(".message-success")).to_contain_text("Break-glass access is live for 30 minutes")
    grant = Grant.objects.get(user__username="oscar")
    assert grant.is_break_glass and grant.reviewed_at is None
    log_out(page)

    # The owner finds it waiting for an after-the-fact review and records one.
    log_in(page, live_server, "olga")
    page.get_by_role("link", name="Approvals").click()
    row = page.get_by_role("row").filter(has_text="INC-77")
    expect(row).to_contain_text("oscar")
    screenshot("access-08-break-glass-review")
    row.get_by_label("Review note").fill("Checked with the incident channel: justified.")
    row.get_by_role("button", name="Record review").click()
    expect(page.locator(".message-success")).to_contain_text("Reviewed the break-glass access of oscar")
    expect(page.get_by_text("No break-glass access waits for your review.")).to_be_visible()

    # The owner's periodic access review lists Oscar's grant and is confirmed.
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.get_by_role("link", name="Review access").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Access review")
    expect(page.locator("main")).to_contain_text("oscar")
    screenshot("access-09-access-review")
    page.get_by_role("button", name="Confirm access is right").click()
    expect(page.locator(".message-success")).to_contain_text("Recorded your access review of warehouse.billing.invoices")
    assert AuditEvent.objects.filter(action="access_review.confirmed", actor=owner, dataset=dataset).exists()
    grant.refresh_from_db()
    assert grant.reviewed_by == owner
    log_out(page)

    # The security engineer filters the trail to break-glass events, then verifies the chain.
    log_in(page, live_server, "sven")
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Action").select_option("break_glass")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{live_server.url}/access/audit/?action=break_glass&actor=&dataset=&since=&until=")
    table = page.locator(".audit-table")
    expect(table).to_contain_text("break_glass.activated")
    expect(table).to_contain_text("break_glass.reviewed")
    expect(table).not_to_contain_text("request.created")
    screenshot("access-10-audit-trail")
    page.goto(f"{live_server.url}/access/audit/verify/")
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator(".verify-ok")).to_contain_text("The chain is intact.")
    screenshot("access-11-audit-verified")


def test_a_product_managers_lineage_graph_hides_what_they_may_not_see(live_server, page, screenshot):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    UserFactory(username="paula", roles=["product_manager"])
    app = StoreFactory(name="appdb", kind="transactional", environment="prod")
    warehouse = StoreFactory(name="warehouse", environment="prod")
    people = dataset_create(principal=registrar, store=app, name="crm.people",
                            columns=[column_payload("email", sensitivity="Restricted")])
    rollup = dataset_create(principal=registrar, store=warehouse, name="marketing.signups_by_domain",
                            columns=[column_payload("email_domain"), column_payload("signups", type_="INTEGER")])
    rollup.tags = ["aggregated"]
    rollup.save(update_fields=["tags"])
    link(people, "email", rollup, "email_domain", kind=EdgeKind.AGGREGATION)

    log_in(page, live_server, "paula")
    page.goto(f"{live_server.url}/datasets/{rollup.pk}/")
    graph = page.locator("#lineage-graph")
    expect(graph).to_have_attribute("data-state", "ready")
    expect(graph).to_have_attribute("data-node-count", "2")
    expect(page.locator(".lineage-graph-count")).to_contain_text("1 dataset · 1 you may not see")
    lists = page.locator("#lineage")
    expect(lists).to_contain_text(Node.HIDDEN_LABEL)
    expect(lists).not_to_contain_text("crm.people")
    screenshot("lineage-09-hidden-upstream")
