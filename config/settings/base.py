"""Settings shared by every environment.

Everything is configured here; local, test and production differ only through the
environment variables they read (and a few safe defaults for the embedded mode).
"""

import json
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_hosts, env_int, env_list, env_paths, env_sensitivity, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Where the embedded defaults keep their files (SQLite database, Celery broker).
VAR_DIR = Path(env_str("CATALOG_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "guardian",
    "axes",  # before access: its failed sign-in receiver runs before access/signin.py's
    "access",
    "catalog",
    "lineage",
    "identity",
    "monitoring",
    # Second factors (identity's MFA part): TOTP, recovery codes, WebAuthn/passkeys.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp_webauthn",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Second factors: a password session of a person with a factor waits for it; people in
    # MFA_REQUIRED_ROLES without one are sent to enrol (identity.middleware).
    "django_otp.middleware.OTPMiddleware",
    "identity.middleware.SecondFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The catalog's 405 page for views that answer 405 with no body (require_http_methods).
    "config.errors.MethodNotAllowedPage",
    # A bad path or query parameter of the API is a 400 naming it, before any view runs.
    "catalog.api_support.ApiParameterMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "access.context_processors.principal",
            ],
        },
    },
]

# Database: DATABASE_URL (postgres://... in production and CI); SQLite file otherwise.
_database_url = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'catalog.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Dataset search forgives typos in names with pg_trgm's word similarity (catalog/search.py): its
    # default threshold, 0.6, misses one slip in a short word (custmer -> customers scores 0.5).
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} -c pg_trgm.word_similarity_threshold=0.5".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "access.User"
# Per-object permissions (dataset stewards) come from django-guardian's backend; there are no
# anonymous object permissions, so guardian creates no "AnonymousUser" row.
AUTHENTICATION_BACKENDS = [
    # First: refuses any sign-in while the account or the address is locked out (access/signin.py).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian 3.x reads this name (no GUARDIAN_ prefix)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog:dataset-list"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Request bodies larger than this are refused (413) before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("CATALOG_MAX_BODY_BYTES", 2 * 1024 * 1024)
CATALOG_MAX_COLUMNS = env_int("CATALOG_MAX_COLUMNS", 2000)
# The tier the access decision gives a dataset nobody has classified yet (lineage discovered it
# before anyone registered its columns). Read at every decision, so changing it applies at once.
# Never Public: what the catalog does not know is not public.
CATALOG_UNCLASSIFIED_TIER = env_sensitivity("CATALOG_UNCLASSIFIED_TIER", "Sensitive", lowest="Regular")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.authentication.ServiceTokenAuthentication",
        "identity.jwt_auth.OAuthAccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's JSON parser that also refuses control characters in strings (catalog.api_support).
    "DEFAULT_PARSER_CLASSES": ["catalog.api_support.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "catalog.api_support.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Governance catalog API",
    "DESCRIPTION": (
        "Register datasets with column sensitivity, protection and originating source; "
        "read versions and diffs. Pipelines authenticate with `Authorization: Token <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Error responses, parameter ranges and the control-character rule on every operation.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "config.schema.api_contract_hook"],
    # Datasets, sync runs and suggestions each have a "status" with its own choices.
    "ENUM_NAME_OVERRIDES": {
        "DatasetStatusEnum": "catalog.models.DatasetStatus",
        "SyncStatusEnum": "catalog.models.SyncStatus",
        "SuggestionStatusEnum": "catalog.models.SuggestionStatus",
        # Access levels by name (matrix cells, grants) and the two that may be asked for.
        "AccessLevelEnum": "access.serializers.LEVEL_NAME_CHOICES",
        "RequestableLevelEnum": "access.serializers.REQUESTABLE_LEVELS",
        "WebhookKindEnum": "monitoring.models.WebhookKind",
        "DeliveryStatusEnum": "monitoring.models.DeliveryStatus",
        "AlertStatusEnum": "monitoring.models.AlertStatus",
    },
}

# Celery: Redis when REDIS_URL is set; otherwise an embedded broker in a SQLite file, so a
# newcomer needs nothing running.
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = REDIS_URL or f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "catalog"
CELERY_TASK_ACKS_LATE = False
# Redis redelivers an unacknowledged task after this long: keep it above the longest task.
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 4 * 3600)} if REDIS_URL else {}
)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# Warehouse syncs run on their own queue so a long harvest never delays short tasks.
# Every task's queue is set here (task_routes), not on the task.
CELERY_TASK_ROUTES = {
    "catalog.store_sync": {"queue": "sync"},
    "catalog.store_sync_scheduled": {"queue": "sync"},
    "catalog.sync_runs_resume": {"queue": "catalog"},
    "catalog.search_counts_compact": {"queue": "catalog"},
    "access.*": {"queue": "catalog"},
    "lineage.*": {"queue": "catalog"},
    "monitoring.*": {"queue": "catalog"},
}
# Every fixed periodic job, in one place (per-store sync schedules live in django-celery-beat's tables).
CELERY_BEAT_SCHEDULE = {
    "sync-runs-resume": {"task": "catalog.sync_runs_resume", "schedule": 60.0},
    # The browsing facet counts are appended to by every write; fold them (catalog.search).
    "search-counts-compact": {"task": "catalog.search_counts_compact", "schedule": 60.0},
    "grants-expire": {"task": "access.grants_expire", "schedule": 30.0},
    "access-requests-expire": {"task": "access.requests_expire", "schedule": 300.0},
    "grants-reconcile": {"task": "access.grants_reconcile", "schedule": 600.0},
    # The safety net of OpenLineage ingestion: every accept asks for a drain after commit.
    "lineage-events-drain": {"task": "lineage.events_drain", "schedule": 30.0},
    # Each store with an audited connection: its pull task (monitoring.access_logs_pull).
    "access-logs-pull": {"task": "monitoring.access_logs_pull_all", "schedule": 60.0},
    # Outgoing webhooks (docs/monitoring.md, "Where alerts go"): catalog events to subscribed
    # endpoints, and the deliveries whose retry is due.
    "webhook-events-scan": {"task": "monitoring.webhook_events_scan", "schedule": 15.0},
    "webhook-deliveries-due": {"task": "monitoring.webhook_deliveries_due", "schedule": 30.0},
    # The detectors' safety net (each ingested batch asks for a run on commit), and the detectors of state.
    "monitoring-detect": {"task": "monitoring.detect", "schedule": float(env_int("MONITORING_DETECT_POLL_SECONDS", 10, minimum=1))},
    "monitoring-detect-periodic": {
        "task": "monitoring.detect_periodic", "schedule": float(env_int("MONITORING_DETECT_PERIODIC_SECONDS", 900, minimum=60)),
    },
}

# OpenLineage ingestion (docs/lineage.md). The POST stores the event; a worker folds the queue in
# batches of LINEAGE_DRAIN_BATCH events. LINEAGE_INGEST_INLINE folds each event in its own request
# instead (the test settings; never in production: it gives up the batching).
LINEAGE_INGEST_INLINE = env_bool("LINEAGE_INGEST_INLINE", False)
LINEAGE_DRAIN_BATCH = env_int("LINEAGE_DRAIN_BATCH", 500, minimum=1)
# One drain task runs this long at most, then queues the next (so a backlog does not pin a worker).
LINEAGE_DRAIN_MAX_SECONDS = env_int("LINEAGE_DRAIN_MAX_SECONDS", 60, minimum=1)
# The drain is queued this many seconds after the first accepted event (events of a burst share a batch).
LINEAGE_DRAIN_COUNTDOWN = env_int("LINEAGE_DRAIN_DELAY_MS", 200, minimum=0) / 1000
LINEAGE_DRAIN_FLAG_SECONDS = 30

# Links in emails point here.
CATALOG_BASE_URL = env_str("CATALOG_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "catalog@localhost")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)

# Access: pending requests expire after this long; break-glass grants last at most this long.
ACCESS_REQUEST_TTL_HOURS = env_int("ACCESS_REQUEST_TTL_HOURS", 72)
ACCESS_BREAK_GLASS_MAX_MINUTES = env_int("ACCESS_BREAK_GLASS_MAX_MINUTES", 60)
# The longest a role matrix cell may let anyone ask for just-in-time access (hours), and how
# often each dataset's access should be reviewed (days; older reviews are listed as due).
ACCESS_JIT_MAX_HOURS = env_int("ACCESS_JIT_MAX_HOURS", 720, minimum=1)
ACCESS_REVIEW_INTERVAL_DAYS = env_int("ACCESS_REVIEW_INTERVAL_DAYS", 90, minimum=1)
# How many reverse proxies in front of the app append to X-Forwarded-For. The audit trail's
# "from where" is the address the outermost of them saw; 0 means REMOTE_ADDR (no proxy).
AUDIT_TRUSTED_PROXIES = env_int("AUDIT_TRUSTED_PROXIES", 0, minimum=0)
ACCESS_ENFORCE_MAX_ATTEMPTS = env_int("ACCESS_ENFORCE_MAX_ATTEMPTS", 5)

# Sign-in throttling (django-axes): after SIGNIN_FAILURE_LIMIT failures an account, and separately
# an address, cannot sign in for SIGNIN_LOCKOUT_MINUTES (0: until an admin runs axes_reset_username
# or axes_reset_ip). The address is the audit trail's, so AUDIT_TRUSTED_PROXIES applies to both.
SIGNIN_FAILURE_LIMIT = env_int("SIGNIN_FAILURE_LIMIT", 5, minimum=1)
SIGNIN_LOCKOUT_MINUTES = env_int("SIGNIN_LOCKOUT_MINUTES", 15, minimum=0)
AXES_ENABLED = True
AXES_FAILURE_LIMIT = SIGNIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=SIGNIN_LOCKOUT_MINUTES) if SIGNIN_LOCKOUT_MINUTES else None
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: the account, and the address
# A success clears only that account's failures (access/signin.py), never its address's: otherwise
# one valid account would reset the counter of someone trying many others' passwords.
AXES_RESET_ON_SUCCESS = False
AXES_CLIENT_IP_CALLABLE = "access.signin.signin_client_address"
AXES_LOCKOUT_CALLABLE = "access.signin.signin_lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False

# Identity (docs/identity.md). With none of the OIDC_* variables set the catalog signs people in
# with local passwords only, as before.
OIDC_ISSUER = env_str("OIDC_ISSUER").rstrip("/")
OIDC_CLIENT_ID = env_str("OIDC_CLIENT_ID")
OIDC_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET")
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "single sign-on")
OIDC_SCOPES = env_str("OIDC_SCOPES", "openid email profile groups")
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups")
# "security-engineers=security_engineer,data-engineers=data_engineer": directory group -> company role
# slug (the admin's group mappings add to these).
OIDC_GROUP_ROLES = env_list("OIDC_GROUP_ROLES")
OIDC_API_AUDIENCE = env_str("OIDC_API_AUDIENCE")  # the aud API access tokens (JWT) must carry
OIDC_SERVICE_CLIENTS = env_list("OIDC_SERVICE_CLIENTS")  # "pipeline=data_engineer": client id -> role slug
# ID token amr values and acr values that count as a second factor done at the provider.
OIDC_MFA_AMR = env_list("OIDC_MFA_AMR", ["mfa", "otp", "hwk", "swk", "sc", "fido", "totp"])
OIDC_MFA_ACR = env_list("OIDC_MFA_ACR")
OIDC_HTTP_TIMEOUT = env_int("OIDC_HTTP_TIMEOUT", 5, minimum=1)
# Who may sign in with a local password: all, admins (superusers, or only LOCAL_LOGIN_USERS when
# set: the named break-glass admins), none.
LOCAL_LOGIN = env_str("LOCAL_LOGIN", "all")
LOCAL_LOGIN_USERS = env_list("LOCAL_LOGIN_USERS")
# Step-up: privileged actions need a second factor proved within this many seconds.
STEP_UP_WINDOW_SECONDS = env_int("STEP_UP_WINDOW_SECONDS", 600, minimum=30)
# Company roles whose members must enrol a second factor (slugs; "admin" for superusers).
MFA_REQUIRED_ROLES = env_list("MFA_REQUIRED_ROLES", [])
# Service accounts: the catalog's own tokens expire this many days after creation (a rotation
# makes the next one while the old one still works); OAuth JWT access tokens are accepted with
# this much clock skew on exp/nbf/iat, and the provider's keys are kept this long between fetches.
SERVICE_TOKEN_TTL_DAYS = env_int("SERVICE_TOKEN_TTL_DAYS", 90, minimum=1)
OIDC_JWT_LEEWAY_SECONDS = env_int("OIDC_JWT_LEEWAY_SECONDS", 60, minimum=0)
OIDC_JWKS_CACHE_SECONDS = env_int("OIDC_JWKS_CACHE_SECONDS", 3600, minimum=60)
# TOTP and WebAuthn name the catalog in authenticator apps and passkey prompts.
OTP_TOTP_ISSUER = env_str("MFA_ISSUER", "Governance catalog")
OTP_WEBAUTHN_RP_NAME = env_str("MFA_ISSUER", "Governance catalog")
# The WebAuthn relying party is the host the browser sees; origins allowed to assert for it.
# Empty origins: the request's own origin (its host is checked against ALLOWED_HOSTS).
OTP_WEBAUTHN_HELPER_CLASS = "identity.mfa.WebAuthnHelper"
OTP_WEBAUTHN_ALLOWED_ORIGINS = env_list("WEBAUTHN_ALLOWED_ORIGINS", [])
# Passkeys are a second factor here; signing in is a password or single sign-on.
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
# identity.mfa.WebAuthnHelper gives the relying party ID and origins per request (the host
# ALLOWED_HOSTS accepted), so the package's checks for fixed values do not apply.
SILENCED_SYSTEM_CHECKS = ["otp_webauthn.E010", "otp_webauthn.E030"]

# Warehouse sync.
# A running sync writes a heartbeat at least this often; a run silent for longer is taken over.
SYNC_STALE_SECONDS = env_int("SYNC_STALE_SECONDS", 300)
SYNC_MAX_ATTEMPTS = env_int("SYNC_MAX_ATTEMPTS", 3)
SYNC_BATCH_SIZE = env_int("SYNC_BATCH_SIZE", 200)
SYNC_CONNECT_TIMEOUT = env_int("SYNC_CONNECT_TIMEOUT", 10, minimum=1)
# Longest wait for one answer of the warehouse during a sync (client read timeout where the driver
# has one, and PostgreSQL's statement_timeout), so a slow or hostile server cannot hold a worker.
SYNC_READ_TIMEOUT = env_int("SYNC_READ_TIMEOUT", 300, minimum=1)

# What a warehouse connection may reach (docs/sync.md, "What a connection may reach").
# "Test connection" runs in the web request: it gives up after this many seconds.
CATALOG_CONNECTION_TEST_TIMEOUT = env_int("CATALOG_CONNECTION_TEST_TIMEOUT", 10, minimum=1)
# SQLite and DuckDB stores: the only directories their files may be in (symbolic links resolved).
# Empty: no file stores. The local settings allow var/warehouses for the demo.
CATALOG_FILE_STORES_DIRS = env_paths("CATALOG_FILE_STORES_DIRS")
# The one directory TLS certificates and keys named in driver options may be in; empty: none.
CATALOG_CONNECTION_FILES_DIR = env_str("CATALOG_CONNECTION_FILES_DIR")
if CATALOG_CONNECTION_FILES_DIR and not Path(CATALOG_CONNECTION_FILES_DIR).is_absolute():
    raise ImproperlyConfigured("CATALOG_CONNECTION_FILES_DIR must be an absolute path.")
# Hosts and networks connections may reach ("db.internal,10.20.0.0/16"); empty: any.
CATALOG_CONNECTION_ALLOWED_HOSTS = env_hosts("CATALOG_CONNECTION_ALLOWED_HOSTS")
# Master keys that wrap connection secrets: "<id>:<base64 32 bytes>", comma separated, active first.
CATALOG_MASTER_KEYS = env_list("CATALOG_MASTER_KEYS")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        # Authlib logs the PKCE code verifier at DEBUG: never below INFO, whatever LOG_LEVEL says.
        "authlib": {"level": "INFO"},
    },
}

# Enforcement in PostgreSQL stores (access/warehouses/postgresql.py): the schema of the protected
# views readers query, and the catalog's own schema in each store (grants table, keys, functions).
ACCESS_GOVERNED_SCHEMA = env_str("ACCESS_GOVERNED_SCHEMA", "governed")
ACCESS_GOVERNED_ADMIN_SCHEMA = env_str("ACCESS_GOVERNED_ADMIN_SCHEMA", "governed_admin")
# Monitoring (docs/monitoring.md): how much of a store's audit log one pull step reads, and how
# large a batch a log shipper may push to /api/v1/monitoring/logs/.
MONITORING_PULL_CHUNK_BYTES = env_int("MONITORING_PULL_CHUNK_BYTES", 1024 * 1024, minimum=4096)
# One log record (a statement) longer than a chunk is read in larger chunks up to this; a longer one
# is skipped and reported, so that it cannot stop the pull.
MONITORING_PULL_RECORD_MAX_BYTES = env_int("MONITORING_PULL_RECORD_MAX_BYTES", 64 * 1024 * 1024, minimum=4096)
MONITORING_PUSH_MAX_BYTES = env_int("MONITORING_PUSH_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
MONITORING_PUSH_MAX_LINES = env_int("MONITORING_PUSH_MAX_LINES", 10_000, minimum=1)
# Where alerts go (docs/monitoring.md): alerts at or above this severity are mailed to security
# engineers and admins (Low, Medium, High or Critical).
_ALERT_SEVERITIES = {"low": 10, "medium": 20, "high": 30, "critical": 40}  # monitoring.models.Severity
_alert_mail_min = env_str("MONITORING_ALERT_MAIL_MIN_SEVERITY", "Medium").strip().lower() or "medium"
if _alert_mail_min not in _ALERT_SEVERITIES:
    raise ImproperlyConfigured("MONITORING_ALERT_MAIL_MIN_SEVERITY must be Low, Medium, High or Critical.")
MONITORING_ALERT_MAIL_MIN_SEVERITY = _ALERT_SEVERITIES[_alert_mail_min]
# Outgoing webhooks never reach the catalog's own host, loopback, private, link-local, multicast,
# reserved or unspecified addresses unless listed here (host names and networks, comma separated).
MONITORING_WEBHOOK_ALLOWED_PRIVATE = env_hosts("MONITORING_WEBHOOK_ALLOWED_PRIVATE")
# Connect and read timeout of one delivery, in seconds; how much of a receiver's answer is read.
MONITORING_WEBHOOK_TIMEOUT = env_int("MONITORING_WEBHOOK_TIMEOUT", 5, minimum=1)
MONITORING_WEBHOOK_RESPONSE_MAX_BYTES = env_int("MONITORING_WEBHOOK_RESPONSE_MAX_BYTES", 64 * 1024, minimum=0)
# Attempts of one delivery before it is marked failed (retries wait 30 s, 2 min, 10 min, 1 h, 6 h).
MONITORING_WEBHOOK_MAX_ATTEMPTS = env_int("MONITORING_WEBHOOK_MAX_ATTEMPTS", 6, minimum=1)
# Detectors (monitoring/detectors.py, docs/monitoring.md "Detectors"): events per stream per batch,
# how long a queued run stays the one queued, and the thresholds: {"rule": {"key": value}} over
# monitoring.detectors.DEFAULTS, from JSON in MONITORING_DETECTORS.
MONITORING_DETECT_BATCH = env_int("MONITORING_DETECT_BATCH", 500, minimum=1)
MONITORING_DETECT_FLAG_SECONDS = 30
try:
    MONITORING_DETECTORS = json.loads(env_str("MONITORING_DETECTORS", "{}"))
except ValueError as error:
    raise ImproperlyConfigured(f"MONITORING_DETECTORS is not JSON: {error}") from None
if not isinstance(MONITORING_DETECTORS, dict) or not all(isinstance(v, dict) for v in MONITORING_DETECTORS.values()):
    raise ImproperlyConfigured('MONITORING_DETECTORS is {"detector": {"setting": value}}.')
