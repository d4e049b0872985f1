"""Settings for the test suite: the same as base, with fast hashing and no real mail."""

from .base import *  # noqa: F401,F403
from .base import CATALOG_MASTER_KEYS, SECRET_KEY, VAR_DIR, env_paths

SECRET_KEY = SECRET_KEY or "test-only-secret-key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
# Each OpenLineage event is folded in its own request, so tests read the graph right after the POST;
# the tests of the queue itself turn it off and drain explicitly (tests/lineage/test_ingestion.py).
LINEAGE_INGEST_INLINE = True
# A fixed key for tests only (tests of rotation add their own).
CATALOG_MASTER_KEYS = CATALOG_MASTER_KEYS or ["test:" + "A" * 43]
# As in the local settings, the demo's warehouse directory (tests load the demo); tests/conftest.py
# adds pytest's temporary directories, where the tests' own SQLite and DuckDB warehouses live.
CATALOG_FILE_STORES_DIRS = env_paths("CATALOG_FILE_STORES_DIRS", [str(VAR_DIR / "warehouses")])
