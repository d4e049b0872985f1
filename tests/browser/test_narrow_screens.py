"""The main pages at tablet widths (768 and 820 px): nothing scrolls sideways, as seen by the
demo's admin (who sees every dataset, store, request and audit event), and the suggestions
page's counts agree after an accept in place."""

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from access.models import User
from catalog.demo import DEMO_PASSWORD
from catalog.models import ColumnSuggestion, Dataset, DataStore, SuggestionStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = [768, 820]


@pytest.fixture
def demo(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("load_demo")


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{live_server.url}/")


def main_pages() -> dict[str, str]:
    users = Dataset.objects.get(qualified_name="appdb.public.users")
    digest = Dataset.objects.get(qualified_name="analytics.reporting.review_digest")
    email = digest.columns.get(name="reviewer_email")
    store = DataStore.objects.get(name="support-replica")
    return {
        "dataset-list": "/",
        "dataset-list-filtered": "/?q=email&sensitivity=Sensitive",
        "dataset-detail": f"/datasets/{users.pk}/",
        "dataset-detail-lineage": f"/datasets/{digest.pk}/",
        "dataset-edit": f"/datasets/{digest.pk}/edit/",
        "dataset-register": "/datasets/new/",
        "column-impact": f"/datasets/{users.pk}/columns/{users.columns.get(name='email').pk}/impact/",
        "violations": "/lineage/violations/",
        "approval-queue": "/access/approvals/",
        "audit": "/access/audit/",
        "stores": "/stores/",
        "store-detail": f"/stores/{store.pk}/",
        "connection-form": f"/stores/{store.pk}/connection/",
        "suggestions": "/suggestions/",
        "my-access": "/access/mine/",
        "roles": "/access/roles/",
        "service-accounts": "/access/service-accounts/",
        "service-account": f"/access/service-accounts/{User.objects.get(username='marketing-pipeline').pk}/",
        "not-found": "/no/such/page/",
    } | {"column-impact-digest": f"/datasets/{digest.pk}/columns/{email.pk}/impact/"}


def overflow(page) -> dict:
    """How far the page is wider than the window, and the widest elements past its right edge."""
    return page.evaluate("""() => {
        const width = window.innerWidth;
        const wide = [];
        for (const element of document.querySelectorAll('body *')) {
            const box = element.getBoundingClientRect();
            const parent = element.parentElement.getBoundingClientRect();
            // The outermost elements past the right edge: what to fix.
            if (box.right > width + 1 && box.width > 0 && parent.right <= width + 1) {
                wide.push(`${element.tagName.toLowerCase()}.${[...element.classList].join('.')}#${element.id} right=${Math.round(box.right)}`);
            }
        }
        return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 8)};
    }""")


@pytest.mark.parametrize("width", WIDTHS)
def test_main_pages_do_not_scroll_sideways(live_server, browser, demo, width):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        log_in(page, live_server, "admin")
        too_wide = {}
        for name, url in main_pages().items():
            page.goto(f"{live_server.url}{url}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(_artifacts() / f"narrow-{width}-{name}.png"), full_page=True)
            measured = overflow(page)
            if measured["scroll"] > measured["width"]:
                too_wide[name] = measured
        assert not too_wide, '\n'.join(f'{name}: {measured}' for name, measured in too_wide.items())
        assert not errors, errors
    finally:
        context.close()


def _artifacts():
    from tests.browser.conftest import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def test_accepting_a_suggestion_in_place_updates_the_page_count_and_the_nav_alike(live_server, page, demo, screenshot):
    pending = ColumnSuggestion.objects.filter(status=SuggestionStatus.PENDING).count()
    log_in(page, live_server, "dave")
    suggestions_link = page.get_by_role("link", name=re.compile(r"^Suggestions"))
    expect(suggestions_link.locator(".nav-count")).to_have_text(str(pending))
    suggestions_link.click()
    header = page.locator("#suggestion-result-total")
    expect(header).to_have_text(f"{pending} pending suggestions")

    card = ColumnSuggestion.objects.get(column__name="card_number")
    row = page.locator(f"#suggestion-{card.pk}")
    row.get_by_role("button", name=re.compile(r"^Accept")).click()

    expect(row.locator(".decided")).to_have_text("Accepted")
    expect(header).to_have_text(f"{pending - 1} pending suggestions")
    expect(suggestions_link.locator(".nav-count")).to_have_text(str(pending - 1))
    screenshot("suggestions-counts-agree-after-accept")
