"""Sign-in throttling: repeated failures lock out the account and, separately, the address.

Everything goes through the real sign-in page. Mia (an analyst) is the account under attack,
Dave (a data engineer) a colleague; both have the factories' password. The address an attempt
comes from is the audit trail's (``client_address``), so ``AUDIT_TRUSTED_PROXIES`` decides which
address is counted and recorded: with no proxy a forged X-Forwarded-For changes nothing.
"""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from access.models import AuditEvent
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
RIGHT = "pw-for-tests"  # tests.factories.UserFactory's password
WRONG = "guess-Summer2024!"
ATTACKER = "198.51.100.66"
ELSEWHERE = "192.0.2.20"
PROXY = "10.0.0.2"  # nginx, as gunicorn sees it


def sign_in(client, username, password, *, address=ATTACKER, forwarded_for=None, path=None):
    extra = {"REMOTE_ADDR": address}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client.post(path or reverse("login"), {"username": username, "password": password}, **extra)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(client, username, times, **where):
    return [sign_in(client, username, WRONG, **where).status_code for _ in range(times)]


@pytest.fixture
def limit(settings):
    return settings.SIGNIN_FAILURE_LIMIT


def test_the_right_password_after_25_wrong_ones_is_refused(client, reader, limit):
    statuses = fail(client, "mia", 25)

    response = sign_in(client, "mia", RIGHT)

    assert not signed_in(client), "the right password was accepted after 25 wrong ones"
    assert response.status_code == 429
    assert statuses == [200] * (limit - 1) + [429] * (25 - limit + 1)


def test_the_lockout_page_says_for_how_long_and_whom_to_ask(client, reader, limit, settings):
    fail(client, "mia", limit)

    response = sign_in(client, "mia", RIGHT)

    assert response.status_code == 429
    assert "registration/locked_out.html" in [template.name for template in response.templates]
    page = response.content.decode()
    assert f"Sign-in is locked for {settings.SIGNIN_LOCKOUT_MINUTES} minutes" in page
    assert "contact an administrator" in page
    assert WRONG not in page


def test_failures_below_the_limit_do_not_lock(client, reader, limit):
    fail(client, "mia", limit - 1)

    response = sign_in(client, "mia", RIGHT)

    assert response.status_code == 302 and signed_in(client)


def test_another_account_from_the_same_address_is_locked_by_the_address_rule(client, reader, registrar, limit):
    fail(client, "mia", limit, address=ATTACKER)

    assert sign_in(client, "dave", RIGHT, address=ATTACKER).status_code == 429
    assert not signed_in(client)
    # Dave is not locked himself: from his own address he gets in.
    assert sign_in(client, "dave", RIGHT, address=ELSEWHERE).status_code == 302 and signed_in(client)


def test_spraying_many_accounts_from_one_address_is_locked(client, reader, limit):
    for n in range(limit):
        sign_in(client, f"someone{n}", WRONG)

    assert sign_in(client, "mia", RIGHT).status_code == 429
    assert not signed_in(client)


def test_the_account_stays_locked_from_another_address(client, reader, limit):
    fail(client, "mia", limit, address=ATTACKER)

    assert sign_in(client, "mia", RIGHT, address=ELSEWHERE).status_code == 429
    assert not signed_in(client)


def test_the_admin_sign_in_is_throttled_too(client, admin_user, limit):
    admin_login = reverse("admin:login")
    for _ in range(limit):
        sign_in(client, "admin", WRONG, path=admin_login)

    assert sign_in(client, "admin", RIGHT, path=admin_login).status_code == 429
    assert not signed_in(client)


def test_the_lockout_is_audited_with_the_account_and_the_address(client, reader, limit):
    fail(client, "mia", limit + 2)

    failed = AuditEvent.objects.filter(action="signin.failed").order_by("pk")
    locked = AuditEvent.objects.filter(action="signin.locked_out").order_by("pk")
    assert failed.count() == limit - 1
    assert locked.count() == 3  # the attempt that reached the limit and each one after it
    first = locked.first()
    assert first.remote_addr == ATTACKER
    assert first.details["username"] == "mia" and first.details["failures"] == limit
    assert (first.object_type, first.object_id) == ("user", str(reader.pk))
    assert first.actor is None  # whoever typed it is not signed in; it is not Mia's doing
    assert all(event.remote_addr == ATTACKER and event.details == {"username": "mia"} for event in failed)


def test_a_security_engineer_reads_the_lockout_in_the_audit_trail(client, reader, limit):
    fail(client, "mia", limit)
    security = UserFactory(username="sam", roles=["security_engineer"])
    client.force_login(security)

    response = client.get(reverse("access:audit-list"), {"action": "signin"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "signin.locked_out" in page and "signin.failed" in page and ATTACKER in page


def test_no_password_reaches_the_audit_trail(client, reader, limit):
    fail(client, "mia", limit + 1)
    sign_in(client, "mia", RIGHT)

    events = list(AuditEvent.objects.filter(action__startswith="signin.").values())
    assert events
    text = json.dumps(events, default=str)
    assert WRONG not in text and RIGHT not in text and "password" not in text


def test_failures_for_unknown_accounts_are_audited_without_an_object(client, db):
    sign_in(client, "nobody-by-that-name", WRONG)

    event = AuditEvent.objects.get(action="signin.failed")
    assert event.details == {"username": "nobody-by-that-name"}
    assert (event.object_type, event.object_id) == ("", "")


def test_with_no_trusted_proxy_a_forged_forwarded_for_is_ignored(client, reader, limit, settings):
    settings.AUDIT_TRUSTED_PROXIES = 0
    # Each guess claims to come from somewhere else, and names another account.
    for n in range(limit):
        sign_in(client, f"someone{n}", WRONG, address=ATTACKER, forwarded_for=f"203.0.113.{n + 1}")

    response = sign_in(client, "mia", RIGHT, address=ATTACKER, forwarded_for="203.0.113.200")

    assert response.status_code == 429 and not signed_in(client)
    recorded = set(AuditEvent.objects.filter(action__startswith="signin.").values_list("remote_addr", flat=True))
    assert recorded == {ATTACKER}


def test_behind_one_trusted_proxy_the_address_it_saw_is_counted_and_recorded(client, reader, registrar, limit, settings):
    settings.AUDIT_TRUSTED_PROXIES = 1
    attacker, colleague = "203.0.113.7", "203.0.113.8"
    # The attacker writes an X-Forwarded-For of their own; the proxy appends what it saw.
    for n in range(limit):
        sign_in(client, f"someone{n}", WRONG, address=PROXY, forwarded_for=f"6.6.6.{n}, {attacker}")

    assert sign_in(client, "mia", RIGHT, address=PROXY, forwarded_for=attacker).status_code == 429
    assert not signed_in(client)
    recorded = set(AuditEvent.objects.filter(action__startswith="signin.").values_list("remote_addr", flat=True))
    assert recorded == {attacker}
    # The proxy's own address is not what is locked: a colleague behind it still gets in.
    assert sign_in(client, "dave", RIGHT, address=PROXY, forwarded_for=colleague).status_code == 302
    assert signed_in(client)


def test_a_success_clears_the_accounts_own_failures(client, reader, limit):
    fail(client, "mia", limit - 1)
    assert sign_in(client, "mia", RIGHT).status_code == 302
    client.logout()

    assert fail(client, "mia", limit - 1) == [200] * (limit - 1)
    assert sign_in(client, "mia", RIGHT).status_code == 302


def test_a_success_does_not_clear_other_accounts_failures_from_its_address(client, reader, limit):
    # Guesses at other people's passwords, then the guesser signs in to their own account.
    for n in range(limit - 1):
        sign_in(client, f"someone{n}", WRONG)
    assert sign_in(client, "mia", RIGHT).status_code == 302
    client.logout()

    assert sign_in(client, "someone-else", WRONG).status_code == 429


def test_the_lockout_ends_after_the_configured_minutes(client, reader, limit, settings, monkeypatch):
    fail(client, "mia", limit)
    assert sign_in(client, "mia", RIGHT).status_code == 429

    later = timezone.now() + timedelta(minutes=settings.SIGNIN_LOCKOUT_MINUTES + 1)
    monkeypatch.setattr("axes.handlers.proxy.now", lambda: later)  # the clock axes stamps attempts with
    monkeypatch.setattr(timezone, "now", lambda: later)

    assert sign_in(client, "mia", RIGHT).status_code == 302 and signed_in(client)


def test_an_admin_unlocks_the_account(client, reader, limit):
    fail(client, "mia", limit, address=ATTACKER)

    call_command("axes_reset_username", "mia")

    assert sign_in(client, "mia", RIGHT, address=ELSEWHERE).status_code == 302 and signed_in(client)


def test_service_tokens_are_unaffected_by_a_locked_address(client, token_client, limit):
    fail(client, "mia", limit, address=ATTACKER)

    response = token_client.get(reverse("api:dataset-list"), REMOTE_ADDR=ATTACKER)

    assert response.status_code == 200


@pytest.mark.parametrize(("name", "raw"), [
    ("SIGNIN_FAILURE_LIMIT", "five"),
    ("SIGNIN_FAILURE_LIMIT", "0"),
    ("SIGNIN_LOCKOUT_MINUTES", "-1"),
    ("AUDIT_TRUSTED_PROXIES", "-1"),
])
def test_malformed_signin_settings_are_refused_at_start_up(name, raw):
    environ = {**os.environ, name: raw}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings.base"], cwd=ROOT, env=environ,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr


def test_a_password_sign_in_is_audited_without_the_password(client, reader):
    response = sign_in(client, reader.username, RIGHT)

    assert signed_in(client), response.status_code
    event = AuditEvent.objects.get(action="signin.succeeded")
    assert event.actor == reader and event.details == {"via": "local"}
    assert event.remote_addr == ATTACKER
    assert RIGHT not in json.dumps(event.details)
