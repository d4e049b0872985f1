"""Sign-in throttling: the catalog's side of django-axes, and the audit of failed sign-ins.

django-axes counts failures per account and per address (``AXES_LOCKOUT_PARAMETERS``) and
refuses a sign-in while either is over ``SIGNIN_FAILURE_LIMIT``. The address it counts is the
audit trail's (``client_address``), so ``AUDIT_TRUSTED_PROXIES`` decides both: with no proxy in
front a forged X-Forwarded-For neither changes the recorded address nor escapes the lockout.

The receivers at the end are the libraries' extension points (Django's ``user_login_failed``
and ``user_logged_in``, axes' ``user_locked_out``), connected in ``AccessConfig.ready()``; each
only calls the service above it.
"""

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.shortcuts import render

from access.audit import audit_record, client_address
from access.models import AuditEvent

# A username is whatever the form was sent; only this much of it goes into the trail.
USERNAME_MAX_CHARS = 150


def signin_client_address(request) -> str:
    """The address axes counts failures against: the audit trail's (``AXES_CLIENT_IP_CALLABLE``)."""
    return client_address(request)


def signin_lockout_response(request, original_response=None, credentials=None):
    """The page a locked-out sign-in gets (``AXES_LOCKOUT_CALLABLE``): 429, how long, whom to ask."""
    context = {
        "lockout_minutes": settings.SIGNIN_LOCKOUT_MINUTES,
        "failure_limit": settings.SIGNIN_FAILURE_LIMIT,
    }
    return render(request, "registration/locked_out.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)


def _account(username: str):
    """The account a sign-in named, if there is one (the event points at it; it is not the actor)."""
    if not username:
        return None
    return get_user_model().objects.filter(username=username).first()


def signin_failure_record(*, username: str, remote_addr: str) -> AuditEvent:
    """Audit one failed sign-in (wrong password, unknown or inactive account). Never the password.

    The actor is nobody: whoever typed it is not signed in, and naming the account would put an
    attacker's guesses under its owner's name.
    """
    username = (username or "")[:USERNAME_MAX_CHARS]
    with transaction.atomic():
        return audit_record(
            actor=None, action="signin.failed", obj=_account(username),
            details={"username": username}, remote_addr=remote_addr,
        )


def signin_lockout_record(*, username: str, remote_addr: str, failures: int | None) -> AuditEvent:
    """Audit a sign-in refused because the account or the address is locked out: the attempt that
    reached ``SIGNIN_FAILURE_LIMIT`` and every attempt while the lockout lasts."""
    username = (username or "")[:USERNAME_MAX_CHARS]
    with transaction.atomic():
        return audit_record(
            actor=None, action="signin.locked_out", obj=_account(username),
            details={"username": username, "failures": failures, "limit": settings.SIGNIN_FAILURE_LIMIT,
                     "lockout_minutes": settings.SIGNIN_LOCKOUT_MINUTES},
            remote_addr=remote_addr,
        )


def signin_failures_clear(*, username: str) -> int:
    """After a successful sign-in, forget that account's own failures, and no others.

    Not ``AXES_RESET_ON_SUCCESS``: that also forgets every failure from the same address, so one
    valid account would let its holder reset the counter while guessing other people's passwords.
    """
    return AxesProxyHandler.reset_attempts(username=username)


# Receivers -------------------------------------------------------------------------------------

def on_user_login_failed(sender, credentials, request=None, **kwargs):
    # axes' own receiver ran first ("axes" comes before "access" in INSTALLED_APPS): a lockout is
    # recorded by on_user_locked_out, so it is not also a plain failure.
    if request is None or getattr(request, "axes_locked_out", False):
        return
    signin_failure_record(username=(credentials or {}).get("username", ""), remote_addr=client_address(request))


def on_user_locked_out(sender, request, username, ip_address, **kwargs):
    signin_lockout_record(
        username=username or "", remote_addr=ip_address or "",
        failures=getattr(request, "axes_failures_since_start", None),
    )


def on_user_logged_in(sender, request, user, **kwargs):
    signin_failures_clear(username=user.get_username())
