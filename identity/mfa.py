"""Second factors of a person: TOTP apps, WebAuthn keys and passkeys, recovery codes.

The factors themselves are django-otp devices (TOTP and static devices) and django-otp-webauthn
credentials; this module enrols, lists, verifies and removes them, and audits each step. No
secret, code or assertion is ever written to the audit trail or a log.
"""

import base64
import secrets
from dataclasses import dataclass

import segno
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn import helpers as webauthn_helpers
from django_otp_webauthn.models import WebAuthnCredential

from access.audit import audit_record, client_address
from identity import stepup

RECOVERY_CODE_COUNT = 10
KIND_TOTP = "totp"
KIND_WEBAUTHN = "webauthn"
KIND_RECOVERY = "recovery_codes"
KIND_LABELS = {KIND_TOTP: "Authenticator app (TOTP)", KIND_WEBAUTHN: "Security key or passkey",
               KIND_RECOVERY: "Recovery codes"}


@dataclass(frozen=True)
class Factor:
    kind: str
    pk: int
    name: str
    created_at: object
    last_used_at: object
    remaining: int | None = None  # recovery codes left

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]


def factor_list(*, user) -> list[Factor]:
    """The user's confirmed factors, oldest first (recovery codes with how many are left)."""
    factors = [Factor(KIND_TOTP, d.pk, d.name, d.created_at, d.last_used_at)
               for d in TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk")]
    factors += [Factor(KIND_WEBAUTHN, d.pk, d.name, d.created_at, d.last_used_at)
                for d in WebAuthnCredential.objects.filter(user=user, confirmed=True).order_by("pk")]
    for device in StaticDevice.objects.filter(user=user, confirmed=True).order_by("pk"):
        factors.append(Factor(KIND_RECOVERY, device.pk, device.name, device.created_at, device.last_used_at,
                              remaining=device.token_set.count()))
    return factors


def user_has_factor(user) -> bool:
    """Whether the user has a confirmed factor that can verify (recovery codes alone do not count
    once used up)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return (TOTPDevice.objects.filter(user=user, confirmed=True).exists()
            or WebAuthnCredential.objects.filter(user=user, confirmed=True).exists())


def _remote(request) -> str:
    return client_address(request) if request is not None else ""


# TOTP -----------------------------------------------------------------------------------------


def totp_enrol_start(*, user) -> TOTPDevice:
    """A new, unconfirmed authenticator for the user (replacing an earlier unconfirmed one)."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def totp_secret(device: TOTPDevice) -> str:
    """The base32 secret to type into an app that cannot scan the QR code."""
    return base64.b32encode(device.bin_key).decode().rstrip("=")


def totp_qr_svg(device: TOTPDevice) -> str:
    """The otpauth URI as an inline SVG QR code, drawn here (no outside service sees the secret)."""
    return segno.make(device.config_url, error="m").svg_inline(scale=4, border=2, title="Authenticator QR code")


def totp_enrol_confirm(*, request, user, device: TOTPDevice, code: str) -> TOTPDevice:
    """Confirm the pending authenticator with a code from it; it counts as a fresh second factor."""
    code = (code or "").strip().replace(" ", "")
    if not code.isdigit() or not device.verify_token(code):
        raise ValidationError({"code": "That code does not match: enter the 6 digits your app shows now."})
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        audit_record(actor=user, action="mfa.enrolled", obj=user, details={"factor": KIND_TOTP, "deviceId": device.pk},
                     remote_addr=_remote(request))
    _verified(request, device, KIND_TOTP)
    return device


# Recovery codes -------------------------------------------------------------------------------


def recovery_codes_generate(*, request, user) -> list[str]:
    """New single-use recovery codes (the old ones stop working), returned once to show once."""
    # 10 hex digits (40 bits) as xxxxx-xxxxx: fits django-otp's 16-character static token.
    codes = [f"{secrets.token_hex(5)[:5]}-{secrets.token_hex(5)[:5]}" for _ in range(RECOVERY_CODE_COUNT)]
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
        StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
        audit_record(actor=user, action="mfa.recovery_codes_generated", obj=user,
                     details={"factor": KIND_RECOVERY, "count": len(codes)}, remote_addr=_remote(request))
    return codes


# Verification ---------------------------------------------------------------------------------


def factor_verify(*, request, user, code: str) -> str:
    """Check a TOTP code or a recovery code (used up when it matches) and record the step-up.
    Returns the method that matched; a wrong code is a ValidationError on ``code``."""
    code = (code or "").strip().replace(" ", "").lower()
    method, device = None, None
    if code.isdigit():
        for totp in TOTPDevice.objects.filter(user=user, confirmed=True):
            if totp.verify_token(code):
                method, device = KIND_TOTP, totp
                break
    elif code:
        for static in StaticDevice.objects.filter(user=user, confirmed=True):
            if static.verify_token(code):  # deletes the matching token: single use
                method, device = "recovery_code", static
                break
    if device is None:
        with transaction.atomic():
            audit_record(actor=user, action="mfa.verify_failed", obj=user, remote_addr=_remote(request))
        raise ValidationError({"code": "That code is not valid. Use the current code of your app or an unused recovery code."})
    _verified(request, device, method)
    return method


def _verified(request, device, method: str) -> None:
    """The session proved ``device`` now: django-otp's verified flag and the step-up time."""
    if request is None:
        return
    otp_login(request, device)
    stepup.second_factor_record(request, method=method)
    _session_cleared(request)
    with transaction.atomic():
        audit_record(actor=request.user, action="mfa.verified", obj=request.user, details={"method": method},
                     remote_addr=_remote(request))


def webauthn_verified(request, credential) -> None:
    """A WebAuthn assertion of the session's user passed (django-otp-webauthn checked it)."""
    stepup.second_factor_record(request, method=KIND_WEBAUTHN)
    _session_cleared(request)
    with transaction.atomic():
        audit_record(actor=request.user, action="mfa.verified", obj=request.user, details={"method": KIND_WEBAUTHN},
                     remote_addr=_remote(request))


def webauthn_registered(request, credential) -> None:
    with transaction.atomic():
        audit_record(actor=request.user, action="mfa.enrolled", obj=request.user,
                     details={"factor": KIND_WEBAUTHN, "deviceId": credential.pk}, remote_addr=_remote(request))
    stepup.second_factor_record(request, method=KIND_WEBAUTHN)
    _session_cleared(request)


def _session_cleared(request) -> None:
    """The session proved (or just enrolled) a factor: fully signed in, nothing to enrol."""
    request.session[PENDING_KEY] = False
    request.session[ENROL_KEY] = False


# Removal --------------------------------------------------------------------------------------

_MODELS = {KIND_TOTP: TOTPDevice, KIND_WEBAUTHN: WebAuthnCredential, KIND_RECOVERY: StaticDevice}


def factor_remove(*, request, user, kind: str, pk: int) -> None:
    """Remove one of the user's factors; the caller checked the step-up (a fresh factor)."""
    model = _MODELS.get(kind)
    if model is None:
        raise ValidationError({"kind": f"Unknown factor kind: {kind}."})
    with transaction.atomic():
        deleted, _ = model.objects.filter(user=user, pk=pk).delete()
        if not deleted:
            raise ValidationError({"factor": "No such factor of yours."})
        audit_record(actor=user, action="mfa.removed", obj=user, details={"factor": kind, "deviceId": pk},
                     remote_addr=_remote(request))


# WebAuthn relying party -----------------------------------------------------------------------


class WebAuthnHelper(webauthn_helpers.WebAuthnHelper):
    """The relying party is the host the browser sees (checked by ALLOWED_HOSTS); with no
    WEBAUTHN_ALLOWED_ORIGINS set, the request's own origin is the one allowed."""

    def get_relying_party_domain(self) -> str:
        return self.request.get_host().split(":")[0]

    def get_allowed_origins(self) -> list[str]:
        origins = list(settings.OTP_WEBAUTHN_ALLOWED_ORIGINS)
        if not origins:
            origins = [f"{self.request.scheme}://{self.request.get_host()}"]
        return origins


# The session's second-factor state ----------------------------------------------------------
#
# Worked out once at sign-in (user_logged_in), kept in the session, so the middleware that reads
# it on every request costs no query.

PENDING_KEY = "identity_second_factor_pending"
ENROL_KEY = "identity_second_factor_enrol"


def mfa_required_for(user) -> bool:
    """Whether MFA_REQUIRED_ROLES names one of the user's company roles ("admin": superusers;
    "owner": owners of a dataset). Service accounts never: they cannot do MFA."""
    wanted = set(getattr(settings, "MFA_REQUIRED_ROLES", []))
    if not wanted or getattr(user, "is_service_account", False):
        return False
    if "admin" in wanted and user.is_superuser:
        return True
    if "owner" in wanted and user.owned_datasets.exists():
        return True
    from access.policies import user_roles

    return any(role.slug in wanted for role in user_roles(user))


def session_factor_state_set(request, user) -> None:
    """At sign-in: a person with a factor must verify before the session is fully signed in
    (unless single sign-on already recorded a second factor); a person whose role needs MFA and
    who has none must enrol."""
    if request is None or not hasattr(request, "session") or getattr(user, "is_service_account", False):
        return
    has_factor = user_has_factor(user)
    fresh = request.session.get(stepup.SESSION_KEY) is not None
    request.session[PENDING_KEY] = has_factor and not fresh
    request.session[ENROL_KEY] = not has_factor and mfa_required_for(user)


def _signed_in(sender, request, user, **kwargs):
    session_factor_state_set(request, user)
