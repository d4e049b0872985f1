"""A real browser on the dataset search: ranked results, facet counts in the sidebar, picking a
facet with the keyboard (it lands in the URL), clearing it, and the empty state."""

import re

import pytest
from playwright.sync_api import expect

from catalog.demo import DEMO_PASSWORD, demo_load

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{live_server.url}/")


def facet_value(page, family: str, value: str):
    return page.locator(f'fieldset[data-facet="{family}"] label.facet-value', has=page.locator(f'input[value="{value}"]'))


def test_an_analyst_narrows_a_search_with_the_facets(live_server, page, screenshot):
    demo_load()
    log_in(page, live_server, "mia")

    page.get_by_label("Search datasets").fill("user")
    expect(page).to_have_url(re.compile(r"q=user"))
    page.wait_for_load_state("networkidle")  # the live search has swapped the sidebar in
    rows = page.locator("#results tbody tr")
    expect(rows.first).to_contain_text("users")  # a name match ranks first
    restricted = facet_value(page, "sensitivity", "Restricted")
    expect(restricted.locator(".facet-count")).not_to_have_text("0")
    screenshot("search-01-facets")

    restricted.locator("input").check()
    expect(page).to_have_url(re.compile(r"sensitivity=Restricted"), timeout=15_000)
    page.wait_for_load_state("networkidle")
    expect(restricted.locator("input")).to_be_checked()
    for row in rows.all():
        expect(row.locator(".badge.sens-restricted")).to_have_count(1)
    # The other tiers are still counted (with every other filter applied), so they can be added.
    expect(facet_value(page, "sensitivity", "Sensitive").locator(".facet-count")).not_to_have_text("0")
    screenshot("search-02-restricted")

    # Clearing the family's filter brings every tier back.
    page.locator('fieldset[data-facet="sensitivity"] .facet-clear').click()
    expect(page).not_to_have_url(re.compile(r"sensitivity="), timeout=15_000)
    expect(restricted.locator("input")).not_to_be_checked()

    page.get_by_label("Search datasets").fill("zebrafish")
    expect(page.get_by_role("heading", name="No datasets match these filters")).to_be_visible()
    screenshot("search-03-empty")
