"""Routes of the identity app's oidc part."""

from django.urls import path

from identity import oidc_views

urlpatterns: list = [
    path("login/", oidc_views.oidc_login, name="oidc-login"),
    path("callback/", oidc_views.oidc_callback, name="oidc-callback"),
]
