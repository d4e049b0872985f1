from django.apps import AppConfig


class IdentityConfig(AppConfig):
    """Who people and pipelines are: single sign-on, directory groups and their roles, SCIM
    provisioning, second factors and step-up, OAuth service accounts."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "identity"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from identity import mfa

        # Marks the new session: verify a factor first, or enrol one (identity.middleware).
        user_logged_in.connect(mfa._signed_in, dispatch_uid="identity_second_factor_state")
