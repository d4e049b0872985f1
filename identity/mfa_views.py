"""Pages of a person's second factors under /account/security/: list, enrol (TOTP, WebAuthn),
recovery codes, removal, and the verification page every step-up sends people to."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.middleware import csrf
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn import views as webauthn_views

from identity import mfa, stepup


def _next(request) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()},
                                                     require_https=request.is_secure()):
        return candidate
    return ""


def webauthn_configuration(request) -> dict:
    """What django-otp-webauthn's scripts read (its template tag names URLs outside our namespace)."""
    return {
        "autocompleteLoginFieldSelector": None,
        "nextFieldSelector": "input[name='next']",
        "csrfToken": csrf.get_token(request),
        "beginAuthenticationUrl": reverse("identity:webauthn-authentication-begin"),
        "completeAuthenticationUrl": reverse("identity:webauthn-authentication-complete"),
        "beginRegistrationUrl": reverse("identity:webauthn-registration-begin"),
        "completeRegistrationUrl": reverse("identity:webauthn-registration-complete"),
    }


@login_required
def mfa_home(request):
    """The person's factors and what they can add or remove."""
    return render(request, "identity/mfa_home.html", {
        "factors": mfa.factor_list(user=request.user),
        "fresh": stepup.second_factor_fresh(request),
        "enrol_required": request.session.get(mfa.ENROL_KEY, False),
        "webauthn_configuration": webauthn_configuration(request),
        "next": _next(request),
    })


@login_required
@require_http_methods(["GET", "POST"])
def totp_enrol(request):
    """Show a new secret (QR code and text) once; confirm it with a code from the app."""
    if request.method == "POST":
        device = TOTPDevice.objects.filter(user=request.user, confirmed=False).order_by("-pk").first()
        if device is None:
            return redirect("identity:mfa-totp")
        try:
            mfa.totp_enrol_confirm(request=request, user=request.user, device=device, code=request.POST.get("code", ""))
        except ValidationError as error:
            return render(request, "identity/totp_enrol.html", {
                "device": device, "qr_svg": mfa.totp_qr_svg(device), "secret": mfa.totp_secret(device),
                "error": " ".join(error.message_dict.get("code", error.messages)), "next": _next(request),
            }, status=400)
        messages.success(request, "Your authenticator app is set up. Keep recovery codes too, in case you lose it.")
        return redirect(_next(request) or reverse("identity:mfa-home"))
    if mfa.user_has_factor(request.user) and not stepup.second_factor_fresh(request):
        # Adding a factor to an account that has one is itself a privileged change.
        return redirect(stepup.verify_url(request.get_full_path()))
    device = mfa.totp_enrol_start(user=request.user)
    return render(request, "identity/totp_enrol.html", {
        "device": device, "qr_svg": mfa.totp_qr_svg(device), "secret": mfa.totp_secret(device), "next": _next(request),
    })


@login_required
@require_http_methods(["POST"])
def recovery_codes(request):
    """New recovery codes, shown once on this page (they replace the old ones)."""
    if mfa.factor_list(user=request.user) and not stepup.second_factor_fresh(request):
        return redirect(stepup.verify_url(reverse("identity:mfa-home")))
    codes = mfa.recovery_codes_generate(request=request, user=request.user)
    return render(request, "identity/recovery_codes.html", {"codes": codes})


@login_required
@require_http_methods(["POST"])
@stepup.step_up_required
def factor_remove(request, kind, pk):
    try:
        mfa.factor_remove(request=request, user=request.user, kind=kind, pk=pk)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Removed: {mfa.KIND_LABELS.get(kind, kind)}.")
    return redirect("identity:mfa-home")


@login_required
@require_http_methods(["GET", "POST"])
def verify(request):
    """Prove a second factor: a TOTP code, a recovery code, or a WebAuthn key (by script)."""
    next_url = _next(request)
    error = ""
    if request.method == "POST":
        try:
            mfa.factor_verify(request=request, user=request.user, code=request.POST.get("code", ""))
        except ValidationError as exc:
            error = " ".join(exc.message_dict.get("code", exc.messages))
        else:
            messages.success(request, "Verified.")
            return redirect(next_url or "/")
    factors = mfa.factor_list(user=request.user)
    return render(request, "identity/verify.html", {
        "next": next_url, "error": error,
        "has_code_factor": any(f.kind in (mfa.KIND_TOTP, mfa.KIND_RECOVERY) for f in factors),
        "has_webauthn": any(f.kind == mfa.KIND_WEBAUTHN for f in factors),
        "has_factor": bool(factors),
        "webauthn_configuration": webauthn_configuration(request),
    }, status=400 if error else 200)


# WebAuthn ceremonies: django-otp-webauthn's views, audited and recorded as a step-up ----------


class WebAuthnRegistrationComplete(webauthn_views.CompleteCredentialRegistrationView):
    def post(self, *args, **kwargs):
        response = super().post(*args, **kwargs)
        if response.status_code == 200:
            from django_otp_webauthn.models import WebAuthnCredential

            credential = WebAuthnCredential.objects.filter(user=self.request.user).order_by("-pk").first()
            if credential is not None:
                mfa.webauthn_registered(self.request, credential)
        return response


class WebAuthnAuthenticationComplete(webauthn_views.CompleteCredentialAuthenticationView):
    def complete_auth(self, device):
        user = super().complete_auth(device)
        mfa.webauthn_verified(self.request, device)
        return user


class WebAuthnRegistrationBegin(webauthn_views.BeginCredentialRegistrationView):
    def check_can_register(self):
        # A second key for an account that has a factor: only right after proving one.
        super().check_can_register()
        if mfa.user_has_factor(self.request.user) and not stepup.second_factor_fresh(self.request):
            from django_otp_webauthn import exceptions

            raise exceptions.OTPWebAuthnApiError(detail="Verify an existing factor first (step-up).")
