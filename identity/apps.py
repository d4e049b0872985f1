from django.apps import AppConfig


class IdentityConfig(AppConfig):
    """Who people and pipelines are: single sign-on, directory groups and their roles, SCIM
    provisioning, second factors and step-up, OAuth service accounts."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "identity"
