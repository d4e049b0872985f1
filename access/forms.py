from django import forms
from django.contrib.auth.forms import AuthenticationForm


class LoginForm(AuthenticationForm):
    """Service accounts authenticate with tokens only; they cannot sign in to the browser."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if user.is_service_account:
            raise forms.ValidationError("Service accounts cannot sign in to the browser.", code="service_account")
