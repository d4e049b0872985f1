"""What a requester sees in a real browser: the request form's summary follows the columns and
the action chosen (htmx), the request page says who decides, and the dataset page shows the
grant once approved."""

import pytest
from playwright.sync_api import expect

from access import grants
from access.models import AccessRequest, Grant
from tests.browser.test_access_ui import log_in
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_request_form_reacts_to_columns_and_action_and_the_page_shows_the_grant(live_server, page, screenshot):
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    analyst = UserFactory(username="mia", first_name="Mia", last_name="Analyst", roles=["data_analyst"])
    owner = UserFactory(username="olga", first_name="Olga", last_name="Owner", roles=["data_analyst"])
    store = StoreFactory(name="warehouse", environment="prod")
    dataset = dataset_create(principal=registrar, store=store, name="crm.customers", columns=[
        column_payload("region"),
        column_payload("email", sensitivity="Sensitive"),
        column_payload("passport", sensitivity="Restricted"),
    ])
    dataset.owners.set([owner])

    log_in(page, live_server, "mia")
    page.goto(f"{live_server.url}/access/request/{dataset.pk}/")
    rules = page.locator("#request-rules")
    # The whole dataset is Restricted: two approvals, one from a security engineer, 4 hours at most.
    expect(rules).to_contain_text("For your choice: read on the whole dataset")
    expect(rules.locator("#rules-needs")).to_contain_text("2 approvals, one from a security engineer")
    expect(rules.locator("#rules-needs")).to_contain_text("4 hours")
    expect(page.locator("#duration-help")).to_have_text("At most 4 hours.")
    page.get_by_label("email").check()
    expect(rules).to_contain_text("For your choice: read on email")
    expect(rules.locator("#rules-needs")).to_contain_text("1 approval, no security engineer needed")
    expect(rules.locator("#rules-needs")).to_contain_text("8 hours")
    expect(rules.locator("#rules-deciders")).to_contain_text("Olga Owner (olga, owner)")
    expect(page.locator("#duration-help")).to_have_text("At most 8 hours.")  # the duration's help follows
    screenshot("requester-01-form-email")
    page.get_by_label("passport").check()
    expect(rules.locator("#rules-needs")).to_contain_text("2 approvals, one from a security engineer")
    page.get_by_label("Write", exact=True).check()
    expect(rules.locator("#rules-refused")).to_contain_text("Your roles may not ask for write access to prod data that is Restricted")
    page.get_by_label("Read", exact=True).check()
    page.get_by_label("passport").uncheck()
    page.get_by_label("region").check()
    expect(rules.locator("#rules-needs")).to_contain_text("1 approval")  # region is Regular, email still asked
    page.get_by_label("email").uncheck()
    expect(rules.locator("#rules-held")).to_contain_text("You already have this through your roles")
    screenshot("requester-02-form-held")

    # Send a request for email; its page says who decides.
    page.get_by_label("region").uncheck()
    page.get_by_label("email").check()
    page.get_by_label("Duration (hours)").fill("4")
    page.get_by_label("Ticket (required)").fill("SEC-1234")
    page.get_by_label("Justification").fill("Quarterly churn analysis for the board.")
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#waits-for")).to_have_text("Waits for 1 approval from Olga Owner (olga, owner).")
    request = AccessRequest.objects.get(requester=analyst)
    assert request.columns == ["email"]

    # On the dataset page: the pending request, and no second "Request access".
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    expect(page.locator("#your-access .own-pending")).to_contain_text("waits for 1 approval from Olga Owner (olga, owner)")
    expect(page.get_by_role("link", name="Request access")).to_have_count(0)

    grants.access_request_review(principal=owner, request=request, approve=True)
    grant = Grant.objects.get(request=request)
    page.reload()
    line = page.locator("#your-access .own-grant")
    expect(line).to_contain_text("You can Read email until")
    expect(line).to_contain_text(grant.ends_at.strftime("%H:%M"))
    expect(line.get_by_role("link", name=f"grant #{grant.pk}")).to_have_attribute("href", f"/access/grants/{grant.pk}/")
    screenshot("requester-03-dataset-your-access")
