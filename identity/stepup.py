"""When a person last proved a second factor, in their session.

Written by an MFA verification (TOTP, WebAuthn, a recovery code) and by a single sign-on whose ID
token says the provider did MFA; read before privileged actions (step-up)."""

import time

from django.conf import settings

SESSION_KEY = "identity_second_factor_at"
METHOD_KEY = "identity_second_factor_method"


def second_factor_record(request, *, method: str) -> None:
    """The session's person proved a second factor now (``method``: totp, webauthn, recovery_code, idp)."""
    request.session[SESSION_KEY] = int(time.time())
    request.session[METHOD_KEY] = method


def second_factor_age(request) -> float | None:
    """Seconds since the session's last second factor, or None when it never had one."""
    session = getattr(request, "session", None)
    at = session.get(SESSION_KEY) if session is not None else None
    return None if at is None else max(0.0, time.time() - at)


def second_factor_fresh(request) -> bool:
    age = second_factor_age(request)
    return age is not None and age <= getattr(settings, "STEP_UP_WINDOW_SECONDS", 600)
