"""MFA and step-up in a real browser: enrol an authenticator app, approve with and without a
fresh factor (to the verify page and back), and a security key through Chromium's virtual
authenticator."""

import base64
import time
from importlib import import_module

import pytest
from django.conf import settings
from django_otp.oath import totp
from playwright.sync_api import expect

from access import grants
from access.models import AuditEvent, RequestStatus
from identity import stepup
from tests.browser.test_access_ui import log_in
from tests.factories import StoreFactory, UserFactory, column_payload, dataset_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def code_from_secret(secret: str, *, steps_ahead: int = 0) -> str:
    """What an authenticator app shows for this base32 key."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return f"{totp(key, drift=steps_ahead):06d}"


def factor_goes_stale(page) -> None:
    """The session's last second factor is older than the step-up window (as after a coffee)."""
    cookie = next(c for c in page.context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME)
    session = import_module(settings.SESSION_ENGINE).SessionStore(cookie["value"])
    session[stepup.SESSION_KEY] = int(time.time()) - settings.STEP_UP_WINDOW_SECONDS - 60
    session.save()


@pytest.fixture
def pending_request(db):
    owner = UserFactory(username="olga", first_name="Olga", last_name="Owner", roles=["data_analyst"])
    store = StoreFactory(name="warehouse", environment="prod")
    dataset = dataset_create(principal=UserFactory(username="dave", roles=["data_engineer"]), store=store,
                             name="sales.orders", columns=[column_payload("order_id"), column_payload("email", sensitivity="Sensitive")])
    dataset.owners.add(owner)
    analyst = UserFactory(username="mia", roles=["data_analyst"])
    return grants.access_request_create(principal=analyst, dataset=dataset, level="read", duration=4,
                                        justification="Quarterly churn analysis", ticket="OPS-1")


def approve_in_queue(page, live_server, request):
    page.goto(f"{live_server.url}/access/approvals/")
    page.locator(f"#request-{request.pk}").get_by_role("button", name="Approve").click()


def test_enrol_an_app_then_approve_with_a_fresh_and_a_stale_factor(live_server, page, screenshot, pending_request):
    log_in(page, live_server, "olga", step_up=False)

    # Without any factor, approving sends the owner to set one up; nothing is approved.
    approve_in_queue(page, live_server, pending_request)
    expect(page).to_have_url(f"{live_server.url}/account/security/verify/?next=%2Faccess%2Fapprovals%2F")
    expect(page.get_by_text("you have none yet")).to_be_visible()
    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.PENDING

    page.get_by_role("link", name="Set up an authenticator app").click()
    expect(page.locator(".qr svg")).to_be_visible()
    screenshot("mfa-01-totp-enrol")
    secret = page.locator("#totp-secret").inner_text()
    page.get_by_label("Code from the app").fill(code_from_secret(secret))
    page.get_by_role("button", name="Confirm").click()
    # Back where the owner was going, with a fresh factor: approving works.
    expect(page).to_have_url(f"{live_server.url}/access/approvals/")
    approve_in_queue(page, live_server, pending_request)
    expect(page.locator(".message-success")).to_contain_text("Approved: mia now has access")
    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.APPROVED


def test_a_stale_factor_goes_to_verify_and_back_to_the_queue(live_server, page, screenshot, pending_request):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    owner = UserFactory(username="olga")
    device = TOTPDevice.objects.create(user=owner, name="app", confirmed=True)
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")

    # Signing in with the password is not enough: the session waits for the factor.
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("olga")
    page.get_by_label("Password").fill("pw-for-tests")
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(f"{live_server.url}/account/security/verify/?next=%2F")
    page.get_by_label("Code from your app, or a recovery code").fill(code_from_secret(secret))
    page.get_by_role("button", name="Verify", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/")

    factor_goes_stale(page)
    approve_in_queue(page, live_server, pending_request)
    expect(page).to_have_url(f"{live_server.url}/account/security/verify/?next=%2Faccess%2Fapprovals%2F")
    screenshot("mfa-02-verify")
    pending_request.refresh_from_db()
    assert pending_request.status == RequestStatus.PENDING
    # The next time step after the one just used (django-otp refuses a step twice).
    device.refresh_from_db()
    ahead = device.last_t + 1 - int(time.time()) // device.step
    page.get_by_label("Code from your app, or a recovery code").fill(code_from_secret(secret, steps_ahead=ahead))
    page.get_by_role("button", name="Verify", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/access/approvals/")
    approve_in_queue(page, live_server, pending_request)
    expect(page.locator(".message-success")).to_contain_text("Approved: mia now has access")
    assert list(AuditEvent.objects.filter(actor=owner, action__startswith="mfa.").values_list("details", flat=True)) == [
        {"method": "totp"}, {"method": "totp"},
    ]


def test_a_security_key_registers_and_verifies_a_step_up(live_server, page, screenshot, pending_request):
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
    }})
    log_in(page, live_server, "olga", step_up=False)
    page.goto(f"{live_server.url}/account/security/")
    page.get_by_role("button", name="Register a security key or passkey").click()
    expect(page.get_by_role("cell", name="Security key or passkey", exact=True)).to_be_visible()
    screenshot("mfa-03-factors")
    assert AuditEvent.objects.filter(action="mfa.enrolled", details__factor="webauthn").exists()

    factor_goes_stale(page)
    approve_in_queue(page, live_server, pending_request)
    expect(page).to_have_url(f"{live_server.url}/account/security/verify/?next=%2Faccess%2Fapprovals%2F")
    page.get_by_role("button", name="Use your security key or passkey").click()
    expect(page).to_have_url(f"{live_server.url}/access/approvals/")
    approve_in_queue(page, live_server, pending_request)
    expect(page.locator(".message-success")).to_contain_text("Approved: mia now has access")
    assert AuditEvent.objects.filter(action="mfa.verified", details__method="webauthn").exists()
