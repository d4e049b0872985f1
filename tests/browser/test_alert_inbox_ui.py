"""A security engineer works an alert in a real browser: the inbox (nav count, a severity filter
in the URL), the alert's page (evidence from real pgaudit lines, a break-glass audit event),
acknowledge, assign to a colleague, snooze, reopen, resolve with a note (an empty note refused in
place), and the audit trail shows each step."""

import re
from pathlib import Path

import pytest
from django.db import transaction
from playwright.sync_api import expect

from access import grants
from access.models import AuditEvent
from monitoring.alerts import Evidence, Finding
from monitoring.alerts import alert_raise as raise_in_transaction
from monitoring.ingestion import access_log_ingest
from monitoring.models import AccessEvent, EventSource, LogFormat, Severity
from monitoring.parsing import records_from_text
from tests.browser.test_access_ui import log_in
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create
from tests.monitoring.test_push import pg_line

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-C")


def alert_raise(finding):
    with transaction.atomic():  # as the detectors' batch does
        return raise_in_transaction(finding)


@pytest.fixture
def shot(page, screenshot):
    SHOTS.mkdir(exist_ok=True)

    def take(name: str):
        screenshot(name)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    return take


@pytest.fixture
def scene(db, settings):
    # The scene raises its alerts by hand; the detectors (tested in tests/monitoring) would add one
    # more for Mia's reads when the ingestion commits.
    settings.MONITORING_DETECTORS = {"read_not_allowed": {"enabled": False}}
    registrar = UserFactory(username="dave", roles=["data_engineer"])
    UserFactory(username="sven", first_name="Sven", roles=["security_engineer"])
    UserFactory(username="sara", first_name="Sara", roles=["security_engineer"])
    mia = UserFactory(username="mia", first_name="Mia", roles=["data_analyst"], warehouse_role="mia_role")
    oncall = UserFactory(username="omar", first_name="Omar", roles=["ops_engineer"])
    store = StoreFactory(name="pg-audited", kind="transactional", platform="postgresql", environment="prod")
    customers = dataset_create(principal=registrar, store=store, name="shop.customers", columns=[
        column_payload("id", type_="INTEGER"), column_payload("email", sensitivity="Sensitive")])
    dataset_create(principal=registrar, store=store, name="shop.orders", columns=[column_payload("order_id")])

    # Mia reads e-mail addresses she has no grant for: real pgaudit lines through ingestion.
    lines = [pg_line(n, f"SELECT id, email FROM shop.customers WHERE id > {n * 100}") for n in range(1, 6)]
    records, errors, _ = records_from_text("\n".join(lines), LogFormat.PGAUDIT, final=True)
    assert not errors
    access_log_ingest(store=store, records=records, source=EventSource.PUSH, log_format=LogFormat.PGAUDIT)
    events = list(AccessEvent.objects.filter(store=store).order_by("id"))
    burst, _ = alert_raise(Finding(
        rule="volume_baseline", subject_key=f"user:{mia.pk}", severity=Severity.HIGH,
        title="mia read far more Sensitive data than usual",
        summary="5 reads of Sensitive columns of shop.customers within an hour; her baseline is under 1 an hour.",
        suggested_action="Ask Mia what the reads were for; if nobody asked for them, revoke her access.",
        evidence=[Evidence(key=f"access:{e.pk}", occurred_at=e.occurred_at, access_event_id=e.pk,
                           description="read of shop.customers") for e in events],
        user_id=mia.pk, database_role="mia_role", dataset_ids=[customers.pk]))

    # Omar's break-glass access, never reviewed: a real audit event as evidence.
    grant = grants.break_glass_activate(principal=oncall, dataset=customers, level="read",
                                        reason="Incident 812: checkout failing for some customers", minutes=30)
    activated = AuditEvent.objects.filter(action="break_glass.activated").latest("id")
    alert_raise(Finding(
        rule="break_glass_unreviewed", subject_key=f"grant:{grant.pk}", severity=Severity.CRITICAL,
        title="Break-glass use by omar not reviewed by its deadline",
        summary="Omar used break-glass on shop.customers; nobody has reviewed it.",
        suggested_action="Review the break-glass grant with Omar's incident notes.",
        evidence=[Evidence(key=f"audit:{activated.pk}", occurred_at=activated.at, audit_event_id=activated.pk,
                           description="break_glass.activated")],
        user_id=oncall.pk, dataset_ids=[customers.pk]))
    alert_raise(Finding(
        rule="unusual_time_or_place", subject_key=f"user:{mia.pk}", severity=Severity.MEDIUM,
        title="mia read from an address never seen for her",
        summary="First read from 10.1.2.3.", suggested_action="Check the address belongs to the office VPN.",
        evidence=[Evidence(key=f"access:{events[0].pk}", occurred_at=events[0].occurred_at,
                           access_event_id=events[0].pk)],
        user_id=mia.pk, database_role="mia_role", dataset_ids=[customers.pk]))
    return {"burst": burst}


def test_security_engineer_works_an_alert_through_to_resolution(live_server, page, shot, scene):
    log_in(page, live_server, "sven")
    nav = page.get_by_role("navigation", name="Main")
    alerts_link = nav.get_by_role("link", name=re.compile(r"^Alerts"))
    expect(alerts_link.locator(".nav-count")).to_have_text("3")
    alerts_link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Alerts")
    table = page.locator("#alerts")
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table.locator(".sev-critical")).to_have_text("Critical")
    expect(table).to_contain_text("pg-audited.shop.customers")
    shot("alerts-01-inbox")

    page.get_by_label("Severity").select_option("high")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/monitoring/alerts/\?.*severity=high"))
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_label("Severity")).to_have_value("high")
    table.get_by_role("link", name="mia read far more Sensitive data than usual").click()

    alert_id = scene["burst"].pk
    expect(page).to_have_url(f"{live_server.url}/monitoring/alerts/{alert_id}/")
    evidence = page.locator("#access-evidence")
    expect(evidence.locator("tbody tr")).to_have_count(5)
    expect(evidence).to_contain_text("10.1.2.3")
    expect(evidence).to_contain_text("id, email")
    expect(evidence.get_by_role("link", name="pg-audited.shop.customers").first).to_have_attribute(
        "href", re.compile(r"/datasets/\d+/#usage$"))
    expect(page.locator(".suggested-action")).to_contain_text("Ask Mia")
    shot("alerts-02-detail")

    badges = page.locator("#alert-badges")
    page.get_by_role("button", name="Acknowledge").click()
    expect(badges).to_contain_text("Acknowledged")
    expect(page.locator("#alert-page .messages")).to_contain_text("Acknowledged: the alert stays in the inbox")
    # The nav's count (open, not acknowledged) follows the step without a reload.
    expect(alerts_link.locator(".nav-count")).to_have_text("2")

    page.get_by_label("Assign to").select_option("sara")
    page.get_by_role("button", name="Assign", exact=True).click()
    expect(page.locator("#alert-assignee")).to_have_text("sara")

    page.get_by_role("button", name="1 day").click()
    expect(badges).to_contain_text("Snoozed")

    page.get_by_role("button", name="Reopen").click()
    expect(badges).to_contain_text("Open")
    expect(badges).not_to_contain_text("Snoozed")
    expect(alerts_link.locator(".nav-count")).to_have_text("3")

    page.get_by_role("button", name="Resolve").click()
    note = page.get_by_label(re.compile(r"^Resolution note"))
    expect(page.locator("#resolve-form .field-error")).to_have_text("Say how the alert was resolved.")
    expect(note).to_have_attribute("aria-invalid", "true")
    expect(note).to_be_focused()
    shot("alerts-03-empty-note")
    note.fill("Mia ran the quarterly bounce check her lead asked for; ticket DS-1042.")
    page.get_by_role("button", name="Resolve").click()
    expect(badges).to_contain_text("Resolved")
    history = page.locator("#alert-history")
    for action in ("alert.acknowledged", "alert.assigned", "alert.snoozed", "alert.reopened", "alert.resolved"):
        expect(history).to_contain_text(action)
    shot("alerts-04-resolved")

    page.goto(f"{live_server.url}/access/audit/?action=alert")
    trail = page.locator(".audit-table")
    for action in ("alert.acknowledged", "alert.assigned", "alert.snoozed", "alert.reopened", "alert.resolved"):
        expect(trail).to_contain_text(action)
    expect(trail).to_contain_text("quarterly bounce check")
    shot("alerts-05-audit")

    # The inbox no longer lists it; the nav count went down with it.
    page.goto(f"{live_server.url}/monitoring/alerts/?severity=high")
    expect(page.locator("#alerts-empty")).to_contain_text("No alerts")
    expect(alerts_link.locator(".nav-count")).to_have_text("2")
