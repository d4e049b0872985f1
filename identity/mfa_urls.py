"""Routes of the identity app's mfa part."""

urlpatterns: list = []
