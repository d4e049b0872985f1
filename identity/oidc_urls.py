"""Routes of the identity app's oidc part."""

urlpatterns: list = []
