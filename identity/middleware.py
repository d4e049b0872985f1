"""Holds a session at the second-factor pages until it is allowed further.

- A person who signed in with a password and has a factor verifies it before anything else:
  the session is not fully signed in until then (a stolen password alone opens nothing).
- A person whose role is in MFA_REQUIRED_ROLES and has no factor enrols one first.

Both states are set at sign-in (identity.mfa.session_factor_state_set), so this costs no query.
The second-factor pages, sign-out and static files stay open; the API answers 403 with a code.
"""

from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from identity import mfa, stepup

OPEN_PREFIXES = ("/account/security/", "/logout/", "/static/", "/login/")


class SecondFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        user = getattr(request, "user", None)
        if session is not None and user is not None and user.is_authenticated and not request.path.startswith(OPEN_PREFIXES):
            # A factor the session proved (the verify page, or single sign-on whether it records
            # the provider's MFA before or after login()) finishes signing in; the provider's MFA
            # also stands in for enrolment.
            proved = session.get(stepup.SESSION_KEY) is not None
            if session.get(mfa.PENDING_KEY) and not proved:
                return self._held(request, "second_factor_required", "Verify your second factor to finish signing in.",
                                  stepup.verify_url(request.get_full_path()))
            if session.get(mfa.ENROL_KEY) and session.get(stepup.METHOD_KEY) != "idp":
                return self._held(request, "mfa_enrolment_required", "Your role needs a second factor: enrol one first.",
                                  reverse("identity:mfa-home"))
        return self.get_response(request)

    @staticmethod
    def _held(request, code: str, detail: str, url: str):
        if request.path.startswith("/api/"):
            # Token calls carry no session cookie; this is a person's session calling the API.
            return JsonResponse({"detail": detail, "code": code, "verifyUrl": url}, status=403)
        return redirect(url)
