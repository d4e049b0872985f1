"""Second factors for tests: mark a test client's session as having proved one just now, and
compute TOTP codes from a device's secret as an authenticator app would."""

import time

from django_otp.oath import totp

from identity import stepup


def session_step_up(client) -> None:
    """The client's session proved a second factor now (what identity's verify page records)."""
    session = client.session  # creates a session and its cookie when the client has none
    session[stepup.SESSION_KEY] = int(time.time())
    session[stepup.METHOD_KEY] = "test"
    session.save()


def session_step_up_clear(client) -> None:
    session = client.session
    session.pop(stepup.SESSION_KEY, None)
    session.save()


def totp_code(device, *, steps_ahead: int = 0) -> str:
    """The digits an app shows for ``device`` now (``steps_ahead``: a later 30-second window, for
    a second code when django-otp refuses to accept the same window twice)."""
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=steps_ahead)
    return f"{code:0{device.digits}d}"


def browser_step_up(page) -> None:
    """The signed-in browser's session proved a second factor now (its session row, marked as
    the verify page would mark it), for browser tests of approvals that are not about MFA."""
    from importlib import import_module

    from django.conf import settings

    cookie = next(c for c in page.context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME)
    session = import_module(settings.SESSION_ENGINE).SessionStore(cookie["value"])
    session[stepup.SESSION_KEY] = int(time.time())
    session[stepup.METHOD_KEY] = "test"
    session.save()
