"""Who may sign in with a local password (``LOCAL_LOGIN``): all, admins, or none.

With single sign-on the company's provider decides who works here; local passwords remain for
break-glass admins (superusers, or only those named in ``LOCAL_LOGIN_USERS``)."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MODES = ("all", "admins", "none")


def local_login_mode() -> str:
    mode = (settings.LOCAL_LOGIN or "all").strip().lower()
    if mode not in MODES:
        raise ImproperlyConfigured(f"LOCAL_LOGIN must be one of {', '.join(MODES)}, not {settings.LOCAL_LOGIN!r}")
    return mode


def local_login_allowed(user) -> bool:
    """May ``user`` sign in with their password?"""
    mode = local_login_mode()
    if mode == "all":
        return True
    if mode == "none":
        return False
    if settings.LOCAL_LOGIN_USERS:
        return user.get_username() in settings.LOCAL_LOGIN_USERS
    return user.is_superuser


def local_login_refusal() -> str:
    """What a refused password sign-in is told."""
    where = f"Sign in with {settings.OIDC_PROVIDER_NAME} instead."
    if local_login_mode() == "none":
        return f"Password sign-in is turned off. {where}"
    return f"Password sign-in is for administrators only. {where}"
