"""Production: everything comes from the environment; secure cookies, HSTS, no debug."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import CATALOG_MASTER_KEYS, SECRET_KEY, STORAGES, env_bool, env_int, env_list

if not SECRET_KEY or len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be set to a random string of at least 50 characters.")

if not CATALOG_MASTER_KEYS:
    raise ImproperlyConfigured(
        "CATALOG_MASTER_KEYS must be set (see docs/operations.md, 'Connection secrets'): it encrypts warehouse passwords."
    )

DEBUG = False
# Who must enrol a second factor before anything else: security engineers, admins (superusers)
# and dataset owners, who approve access (docs/identity.md, "MFA and step-up").
MFA_REQUIRED_ROLES = env_list("MFA_REQUIRED_ROLES", ["security_engineer", "admin", "owner"])
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
