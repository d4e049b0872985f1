"""When a person last proved a second factor, in their session.

Written by an MFA verification (TOTP, WebAuthn, a recovery code) and by a single sign-on whose ID
token says the provider did MFA; read before privileged actions (step-up)."""

import functools
import time
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, status
from rest_framework.exceptions import APIException

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


# Step-up: the one check of privileged actions ------------------------------------------------
#
# Approving or denying a request, break-glass, editing the role matrix or the group mapping, and
# creating or changing a warehouse connection need a second factor proved within
# STEP_UP_WINDOW_SECONDS. UI views use ``step_up_required``; API views add ``StepUpFresh`` to
# their permission classes. Both ask ``step_up_satisfied``.

STEP_UP_CODE = "step_up_required"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_service_account(user) -> bool:
    return bool(getattr(user, "is_service_account", False))


def step_up_satisfied(request, user=None) -> bool:
    """Whether this request may take a privileged action now.

    A pipeline's service token is never asked (it cannot do MFA; its roles still decide, and a
    service account cannot approve). A person, through the browser or the API with their
    session, needs a second factor proved within STEP_UP_WINDOW_SECONDS."""
    user = user if user is not None else getattr(request, "user", None)
    if is_service_account(user) and getattr(request, "auth", None) is not None:
        return True
    return second_factor_fresh(request)


def verify_url(next_url: str = "") -> str:
    url = reverse("identity:mfa-verify")
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def _return_to(request) -> str:
    """Where to come back after verifying: the page itself for a GET; for a POST the form it came
    from (the Referer, when it is ours), since the POST cannot be replayed."""
    if request.method in SAFE_METHODS:
        return request.get_full_path()
    referer = request.META.get("HTTP_REFERER", "")
    if referer and url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()},
                                                   require_https=request.is_secure()):
        parts = urlsplit(referer)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return "/"


def step_up_required(view=None, *, methods=None):
    """Decorator of UI views: without a fresh second factor, go verify and come back.

    ``methods``: which methods need it (default: the unsafe ones, so showing a form stays free
    and submitting it asks)."""
    def decorate(func):
        @functools.wraps(func)
        def wrapped(request, *args, **kwargs):
            needs = request.method in methods if methods else request.method not in SAFE_METHODS
            if needs and request.user.is_authenticated and not step_up_satisfied(request):
                messages.info(request, "Confirm it is you with your second factor, then try again.")
                return redirect(verify_url(_return_to(request)))
            return func(request, *args, **kwargs)
        return wrapped
    return decorate(view) if view is not None else decorate


class StepUpAdminMixin:
    """Django admin pages of privileged settings (the group-to-role mapping): saving, deleting
    and bulk actions need a fresh factor; the verify page comes back to the same admin page."""

    def _step_up_redirect(self, request):
        if request.method not in SAFE_METHODS and not step_up_satisfied(request):
            messages.info(request, "Confirm it is you with your second factor, then save again.")
            return redirect(verify_url(request.get_full_path()))
        return None

    def changeform_view(self, request, *args, **kwargs):
        return self._step_up_redirect(request) or super().changeform_view(request, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        return self._step_up_redirect(request) or super().delete_view(request, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        return self._step_up_redirect(request) or super().changelist_view(request, *args, **kwargs)


class StepUpRequired(APIException):
    """403 with a body a client can act on: go to ``verifyUrl``, then retry."""

    status_code = status.HTTP_403_FORBIDDEN
    default_code = STEP_UP_CODE
    default_detail = "This action needs a second factor proved in the last few minutes."

    def __init__(self):
        window = getattr(settings, "STEP_UP_WINDOW_SECONDS", 600)
        super().__init__({
            "detail": f"This action needs a second factor proved within the last {window} seconds: "
                      "verify, then retry.",
            "code": STEP_UP_CODE,
            "verifyUrl": reverse("identity:mfa-verify"),
        })


class StepUpFresh(permissions.BasePermission):
    """DRF permission: unsafe methods need ``step_up_satisfied`` (raises StepUpRequired)."""

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS or not request.user or not request.user.is_authenticated:
            return True
        if not step_up_satisfied(request):
            raise StepUpRequired()
        return True


STEP_UP_RESPONSE = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": [STEP_UP_CODE]},
        "verifyUrl": {"type": "string", "example": "/account/security/verify/"},
    },
    "required": ["detail", "code", "verifyUrl"],
}

# The 403 of a privileged API operation without a fresh factor, for extend_schema(responses=...).
STEP_UP_OPENAPI = OpenApiResponse(
    response=STEP_UP_RESPONSE,
    description="`step_up_required`: a person's session proved no second factor recently; verify at `verifyUrl`, then retry.",
)
