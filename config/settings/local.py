"""Development and the embedded demo (``make run``): debug on, a throwaway secret key."""

from .base import *  # noqa: F401,F403
from .base import CATALOG_MASTER_KEYS, SECRET_KEY, VAR_DIR, env_bool, env_paths

DEBUG = env_bool("DEBUG", True)  # scripts/run-local.sh (make run) sets DEBUG=false: the catalog's own error pages
# Static files from the apps and static/ as they are, without collectstatic, also with DEBUG off
# (runserver serves them only with DEBUG on; WhiteNoise's middleware serves them either way).
WHITENOISE_USE_FINDERS = True
SECRET_KEY = SECRET_KEY or "insecure-local-development-key-do-not-use-in-production"
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# The demo's warehouse files (catalog/demo.py) live here; never directly in var/, beside the
# catalog's own database and master key.
CATALOG_FILE_STORES_DIRS = env_paths("CATALOG_FILE_STORES_DIRS", [str(VAR_DIR / "warehouses")])

# The embedded demo keeps a generated master key in var/ so `make run` needs no setup.
if not CATALOG_MASTER_KEYS:
    _key_file = VAR_DIR / "master-key"
    if not _key_file.exists():
        import base64
        import os

        _key_file.write_text("local:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=") + "\n")
        _key_file.chmod(0o600)
    CATALOG_MASTER_KEYS = [_key_file.read_text().strip()]
