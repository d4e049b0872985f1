"""Production: everything comes from the environment; secure cookies, HSTS, no debug."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import CATALOG_MASTER_KEYS, DATABASES, SECRET_KEY, STORAGES, env_bool, env_int, env_list, env_str

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

# PostgreSQL's planner costs for a catalog that fits in memory (docs/operations.md, "PostgreSQL"):
# the stock random_page_cost of 4 prices an index probe as a disk seek, so the lineage walk's node
# and edge lookups switch to sequential scans of whole tables from a few thousand ids on. Sent as
# per-connection settings so they hold whatever the server's postgresql.conf says; empty to use the
# server's own.
DATABASE_PLANNER_OPTIONS = env_str(
    "DATABASE_PLANNER_OPTIONS", "-c random_page_cost=1.1 -c effective_cache_size=4GB"
)
if DATABASE_PLANNER_OPTIONS and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} {DATABASE_PLANNER_OPTIONS}".strip()
