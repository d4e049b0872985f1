from django.urls import include, path

# Each part of identity has its routes: single sign-on, SCIM provisioning, second factors.
urlpatterns = [
    path("oidc/", include("identity.oidc_urls")),
    path("scim/v2/", include("identity.scim_urls")),
    path("account/security/", include("identity.mfa_urls")),
]
