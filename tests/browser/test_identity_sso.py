"""Single sign-on in a real browser against a real OpenID provider (oidc-provider under Node): the
whole redirect flow, roles from the groups claim, sign-out at the provider, and the refusals of a
tampered ID token, a wrong nonce and a replayed code."""

import logging
import re
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from access.models import AuditEvent, Role, User
from identity.models import DirectoryAccount, ExternalIdentity
from identity.stepup import METHOD_KEY
from tests.identity.oidc_fixtures import PASSWORD, oidc_provider, oidc_settings  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def roles_of(username: str) -> set[str]:
    return set(Role.objects.filter(group__user__username=username).values_list("slug", flat=True))


def provider_sign_in(page, username: str) -> None:
    """On the provider's own sign-in page."""
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sso_sign_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    provider_sign_in(page, username)
    expect(page).to_have_url(f"{live_server.url}/")


def sso_sign_out(page, live_server) -> None:
    page.get_by_role("button", name="Log out").click()
    # The provider asks whether to end its session too.
    page.get_by_role("button", name="Yes, sign me out").click()
    expect(page).to_have_url(re.compile(re.escape(f"{live_server.url}/login/") + r"(\?state=[\w-]+)?$"))


def session_of(page):
    key = next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")
    return SessionStore(session_key=key)


def assert_no_token_leaked(caplog):
    # JWTs start with the base64 of '{"': none in the logs nor in the audit trail.
    assert "eyJ" not in caplog.text and "code_verifier" not in caplog.text
    for event in AuditEvent.objects.all():
        assert "eyJ" not in str(event.details) and "eyJ" not in event.reason


def test_first_sign_in_creates_the_user_with_the_mapped_role(live_server, page, screenshot, oidc_settings,
                                                             oidc_provider, caplog):
    caplog.set_level(logging.DEBUG)
    page.goto(f"{live_server.url}/login/")
    expect(page.get_by_role("link", name="Sign in with Test IdP")).to_be_visible()
    screenshot("identity-sso-login")
    sso_sign_in(page, live_server, "alice")
    expect(page.locator(".whoami")).to_have_text("Alice Example")

    user = User.objects.get(external_identities__issuer=oidc_provider.issuer, external_identities__subject="alice")
    assert user.username == "alice" and user.email == "alice@example.test"
    assert DirectoryAccount.objects.get(user=user).source == "oidc"
    assert roles_of("alice") == {"security_engineer"}
    assert set(user.directory_groups.values_list("display_name", flat=True)) == {"security-engineers", "staff"}
    event = AuditEvent.objects.get(action="signin.succeeded")
    assert event.actor_id == user.pk and event.details["via"] == "oidc"
    # alice's provider did MFA (amr): the session holds a second factor proved at the provider.
    assert session_of(page).get(METHOD_KEY) == "idp"
    assert_no_token_leaked(caplog)


def test_a_later_sign_in_follows_the_changed_groups(live_server, page, oidc_settings, oidc_provider):
    sso_sign_in(page, live_server, "bob")
    assert roles_of("bob") == {"data_engineer"}
    assert session_of(page).get(METHOD_KEY) is None  # bob's amr is only pwd
    sso_sign_out(page, live_server)

    oidc_provider.user_set("bob", groups=["security-engineers"])
    sso_sign_in(page, live_server, "bob")

    assert roles_of("bob") == {"security_engineer"}
    assert ExternalIdentity.objects.filter(subject="bob").count() == 1
    changed = AuditEvent.objects.filter(action="identity.roles_changed").order_by("pk").last()
    assert changed.details["added"] == ["security_engineer"] and changed.details["removed"] == ["data_engineer"]


def test_someone_in_no_mapped_group_gets_no_role(live_server, page, oidc_settings):
    sso_sign_in(page, live_server, "carol")
    assert User.objects.filter(username="carol").exists()
    assert roles_of("carol") == set()


def test_sign_out_ends_the_session_here_and_at_the_provider(live_server, page, oidc_settings):
    sso_sign_in(page, live_server, "carol")
    sso_sign_out(page, live_server)
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/")
    # The provider's session is gone too: signing in again asks for the password.
    page.get_by_role("link", name="Sign in with Test IdP").click()
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible()


def expect_refused(page, screenshot=None, name=""):
    expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("could not verify your sign-in with Test IdP")
    if screenshot:
        screenshot(name)


def test_a_tampered_id_token_is_refused_and_audited(live_server, page, screenshot, oidc_settings, oidc_provider,
                                                    caplog):
    caplog.set_level(logging.DEBUG)
    oidc_provider.tamper_next_id_token()
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    provider_sign_in(page, "alice")

    expect_refused(page, screenshot, "identity-sso-refused")
    assert not User.objects.filter(username="alice").exists()
    event = AuditEvent.objects.get(action="signin.failed")
    assert event.details["via"] == "oidc" and "Signature" in event.details["reason"]
    assert_no_token_leaked(caplog)


def test_a_wrong_nonce_is_refused_and_audited(live_server, page, oidc_settings, oidc_provider, caplog):
    caplog.set_level(logging.DEBUG)

    def change_nonce(route):
        # The catalog's redirect to the provider, with another nonce than the one in the session.
        response = route.fetch(max_redirects=0)
        parts = urlsplit(response.headers["location"])
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        query["nonce"] = "not-the-nonce-the-catalog-sent"
        location = urlunsplit(parts._replace(query=urlencode(query)))
        route.fulfill(response=response, headers={**response.headers, "location": location})

    page.route(lambda url: "/oidc/login/" in url, change_nonce)
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    provider_sign_in(page, "bob")

    expect_refused(page)
    assert not User.objects.filter(username="bob").exists()
    assert "nonce" in AuditEvent.objects.get(action="signin.failed").details["reason"]
    assert_no_token_leaked(caplog)


def test_a_replayed_code_is_refused_and_audited(live_server, page, oidc_settings, oidc_provider, caplog):
    caplog.set_level(logging.DEBUG)
    seen = []
    page.on("request", lambda request: seen.append(request.url))
    sso_sign_in(page, live_server, "carol")
    used_code = next(parse_qs(urlsplit(url).query)["code"][0] for url in seen if "/oidc/callback/?" in url)
    sso_sign_out(page, live_server)

    # A new sign-in starts (its own state in the session); the old code comes back with that state.
    seen.clear()
    page.get_by_role("link", name="Sign in with Test IdP").click()
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible()
    state = next(parse_qs(urlsplit(url).query)["state"][0] for url in seen
                 if url.startswith(f"{oidc_provider.issuer}/auth?"))
    page.goto(f"{live_server.url}/oidc/callback/?" + urlencode({"code": used_code, "state": state,
                                                                "iss": oidc_provider.issuer}))

    expect_refused(page)
    assert "invalid_grant" in AuditEvent.objects.get(action="signin.failed").details["reason"]
    assert AuditEvent.objects.filter(action="signin.succeeded").count() == 1
    assert_no_token_leaked(caplog)


def test_a_token_signed_with_a_key_not_in_the_cached_jwks_fetches_the_keys_again(live_server, page, oidc_settings):
    from joserfc.jwk import RSAKey

    from identity.oidc import oidc_client

    client = oidc_client()
    client.load_server_metadata()
    # The catalog's cached keys are an old set (the provider rotated its key since).
    retired = RSAKey.generate_key(2048, parameters={"kid": "retired", "use": "sig", "alg": "RS256"})
    client.server_metadata["jwks"] = {"keys": [retired.as_dict(private=False)]}

    sso_sign_in(page, live_server, "carol")

    assert [key["kid"] for key in client.server_metadata["jwks"]["keys"]] != ["retired"]
    assert AuditEvent.objects.filter(action="signin.succeeded").count() == 1
