"""Single sign-on pages: /oidc/login/ sends the browser to the provider, /oidc/callback/ signs in
whom the provider vouched for. The protocol checks are Authlib's (identity/oidc.py)."""

import logging

import requests
from authlib.common.errors import AuthlibBaseError
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import LoginView, LogoutView
from django.db import transaction
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from joserfc.errors import JoseError

from access.audit import audit_record, client_address
from access.forms import LoginForm
from identity import oidc
from identity.stepup import second_factor_record

logger = logging.getLogger(__name__)

NEXT_KEY = "identity_oidc_next"
ID_TOKEN_KEY = "identity_oidc_id_token"


def _safe_next(request, url: str) -> str:
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()},
                                               require_https=request.is_secure()):
        return url
    return resolve_url(settings.LOGIN_REDIRECT_URL)


@never_cache
def oidc_login(request):
    """Start a sign-in at the provider (state, nonce and the PKCE verifier go into the session)."""
    if not oidc.oidc_enabled():
        raise Http404("Single sign-on is not configured.")
    request.session[NEXT_KEY] = _safe_next(request, request.GET.get("next", ""))
    redirect_uri = request.build_absolute_uri(reverse("identity:oidc-callback"))
    try:
        return oidc.oidc_client().authorize_redirect(request, redirect_uri)
    except (requests.RequestException, AuthlibBaseError, ValueError) as error:
        return _refused(request, f"provider unreachable: {type(error).__name__}", status=502)


def _refused(request, reason: str, *, status: int = 400):
    oidc.oidc_signin_failure_record(reason=reason, remote_addr=client_address(request))
    logger.warning("single sign-on refused: %s", reason)
    return render(request, "identity/oidc_failed.html",
                  {"provider_name": settings.OIDC_PROVIDER_NAME}, status=status)


def _reason(error: Exception) -> str:
    # An error's name and description only: Authlib's messages never carry the tokens themselves.
    parts = [type(error).__name__, getattr(error, "error", "") or "", getattr(error, "description", "") or ""]
    return ": ".join(dict.fromkeys(str(part) for part in parts if part))


@never_cache
def oidc_callback(request):
    """The provider sent the browser back: exchange the code, verify the ID token, sign in."""
    if not oidc.oidc_enabled():
        raise Http404("Single sign-on is not configured.")
    if request.GET.get("error"):
        return _refused(request, f"provider error: {request.GET['error'][:100]}")
    try:
        token = oidc.oidc_client().authorize_access_token(request)
    except (AuthlibBaseError, JoseError) as error:
        return _refused(request, _reason(error))
    except requests.RequestException as error:
        return _refused(request, f"provider unreachable: {type(error).__name__}", status=502)
    claims = token.get("userinfo")
    if not claims:
        return _refused(request, "no ID token in the token response")
    try:
        user = oidc.oidc_user_sign_in(claims=claims, remote_addr=client_address(request))
    except oidc.SignInRefused as error:
        return _refused(request, str(error), status=403)
    next_url = request.session.pop(NEXT_KEY, "")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[ID_TOKEN_KEY] = token["id_token"]  # the id_token_hint of the sign-out
    if oidc.second_factor_done_at_provider(claims):
        second_factor_record(request, method="idp")
    return HttpResponseRedirect(_safe_next(request, next_url))


class SignInView(LoginView):
    """The sign-in page: the provider's button when single sign-on is configured, the password form
    unless ``LOCAL_LOGIN`` is none."""

    authentication_form = LoginForm

    def form_valid(self, form):
        response = super().form_valid(form)
        with transaction.atomic():  # a password sign-in is audited as a single sign-on is
            audit_record(actor=form.get_user(), action="signin.succeeded", obj=form.get_user(),
                         remote_addr=client_address(self.request), details={"via": "local"})
        return response

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["sso_enabled"] = oidc.oidc_enabled()
        context["sso_provider_name"] = settings.OIDC_PROVIDER_NAME
        context["local_login"] = settings.LOCAL_LOGIN
        return context


class SignOutView(LogoutView):
    """End the catalog's session; after a single sign-on, also the provider's (RP-initiated logout)."""

    def post(self, request, *args, **kwargs):
        id_token = request.session.get(ID_TOKEN_KEY)
        response = super().post(request, *args, **kwargs)
        if not (id_token and oidc.oidc_enabled()):
            return response
        try:
            end_session = oidc.oidc_client().load_server_metadata().get("end_session_endpoint")
        except (requests.RequestException, AuthlibBaseError, ValueError):
            end_session = None
        if not end_session:
            return response
        return oidc.oidc_client().logout_redirect(
            request, post_logout_redirect_uri=request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL)),
            id_token_hint=id_token)
