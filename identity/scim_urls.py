"""Routes of the identity app's scim part."""

urlpatterns: list = []
