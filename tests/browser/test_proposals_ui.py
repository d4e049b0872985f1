"""A downgrade proposed and approved in a real browser: a steward lowers a column on the edit
form, sees that it waits, a security engineer reads what it would open, approves it, and finds
every step in the audit trail."""

import pytest
from playwright.sync_api import expect

from access.models import MetadataProposal, ProposalStatus
from catalog.models import Column
from tests.browser.test_access_ui import log_in, log_out
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_steward_proposes_a_downgrade_and_a_security_engineer_approves_it(live_server, page, screenshot):
    from access import grants

    registrar = UserFactory(username="dave", roles=["data_engineer"])
    owner = UserFactory(username="olga", first_name="Olga", roles=["data_analyst"])
    steward = UserFactory(username="stella", first_name="Stella", roles=["data_analyst"])
    UserFactory(username="sam", first_name="Sam", roles=["security_engineer"])
    store = StoreFactory(name="warehouse", environment="prod")
    dataset = dataset_create(principal=registrar, store=store, name="crm.customers", owners=["olga"], columns=[
        column_payload("customer_id", mode="REQUIRED"),
        column_payload("email", sensitivity="Sensitive", protection="Hashed"),
        column_payload("country", sensitivity="Regular"),
    ])
    grants.dataset_steward_add(principal=owner, dataset=dataset, user=steward)

    # Stella, a steward, lowers email to Public on the edit form.
    log_in(page, live_server, "stella")
    page.goto(f"{live_server.url}/datasets/{dataset.pk}/")
    page.get_by_role("link", name="Edit").click()
    page.locator('select[name="columns-1-sensitivity"]').select_option("Public")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".message-warning").first).to_contain_text(
        "Not applied yet: email sensitivity Sensitive → Public")
    expect(page.locator("#pending-proposals")).to_contain_text("waiting for review")
    screenshot("proposal-01-dataset-with-pending-downgrade")
    assert Column.objects.get(dataset=dataset, name="email").sensitivity == 2
    log_out(page)

    # Sam, a security engineer, finds it from the approvals page and reads what it would open.
    log_in(page, live_server, "sam")
    page.get_by_role("link", name="Approvals").click()
    page.locator("#proposals-waiting").get_by_role("link").click()
    expect(page.get_by_role("heading", name="Waiting for your review")).to_be_visible()
    page.locator("#waiting-heading + ul a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("crm.customers")
    impact = page.locator("#proposal-impact")
    expect(impact).to_contain_text("could read column email without approval")
    expect(page.get_by_role("table", name="Column changes")).to_contain_text("Sensitive")
    screenshot("proposal-02-review-with-impact")
    page.get_by_label("Reason").fill("The stored value is a salted hash; nobody can read an address from it.")
    page.get_by_role("button", name="Approve and apply").click()
    expect(page.locator(".message-success")).to_contain_text("Approved and applied")
    proposal = MetadataProposal.objects.get(dataset=dataset)
    assert proposal.status == ProposalStatus.APPLIED
    assert Column.objects.get(dataset=dataset, name="email").sensitivity == 0

    # Every step is in the audit trail.
    page.goto(f"{live_server.url}/access/audit/?action=proposal")
    for action in ("proposal.created", "proposal.reviewed", "proposal.applied"):
        expect(page.locator("main")).to_contain_text(action)
    screenshot("proposal-03-audit")
    page.goto(f"{live_server.url}/access/audit/?action=dataset.classification_changed")
    expect(page.locator("main")).to_contain_text("crm.customers")
