"""Routes of the identity app's mfa part: /account/security/."""

from django.urls import path
from django.views.i18n import JavaScriptCatalog
from django_otp_webauthn import views as webauthn_views

from identity import mfa_views

urlpatterns = [
    path("", mfa_views.mfa_home, name="mfa-home"),
    path("verify/", mfa_views.verify, name="mfa-verify"),
    path("totp/", mfa_views.totp_enrol, name="mfa-totp"),
    path("recovery-codes/", mfa_views.recovery_codes, name="mfa-recovery-codes"),
    path("factors/<str:kind>/<int:pk>/remove/", mfa_views.factor_remove, name="mfa-factor-remove"),
    # WebAuthn ceremonies (JSON, driven by django-otp-webauthn's scripts).
    path("webauthn/registration/begin/", mfa_views.WebAuthnRegistrationBegin.as_view(),
         name="webauthn-registration-begin"),
    path("webauthn/registration/complete/", mfa_views.WebAuthnRegistrationComplete.as_view(),
         name="webauthn-registration-complete"),
    path("webauthn/authentication/begin/", webauthn_views.BeginCredentialAuthenticationView.as_view(),
         name="webauthn-authentication-begin"),
    path("webauthn/authentication/complete/", mfa_views.WebAuthnAuthenticationComplete.as_view(),
         name="webauthn-authentication-complete"),
    path("webauthn/jsi18n/", JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]), name="webauthn-jsi18n"),
]
