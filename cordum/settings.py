"""Django settings, all from the environment with safe development defaults.

Development (default): SQLite in `.cordum/`, Celery eager, DEBUG on.
Production: CORDUM_ENV=production; refuses the development secret key and passes
`manage.py check --deploy`.
"""

import ipaddress
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
CORDUM_DIST_DIR = Path(os.environ.get("CORDUM_DIST_DIR", BASE_DIR / "dist"))  # `make dist` output, see docs/install.md
STATE_DIR = Path(os.environ.get("CORDUM_STATE_DIR", BASE_DIR / ".cordum"))
STATE_DIR.mkdir(parents=True, exist_ok=True)

DEV_SECRET_KEY = "cordum-development-secret-key-do-not-use-in-production"  # noqa: S105

CORDUM_ENV = os.environ.get("CORDUM_ENV", "development").strip().lower()
if CORDUM_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"CORDUM_ENV must be 'development' or 'production', not {CORDUM_ENV!r}.")
PRODUCTION = CORDUM_ENV == "production"
SECRET_KEY = os.environ.get("CORDUM_SECRET_KEY", DEV_SECRET_KEY)
if PRODUCTION and (SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured(
        "CORDUM_ENV=production needs CORDUM_SECRET_KEY set to a random value of 50+ characters; "
        "the development key is refused."
    )
DEBUG = os.environ.get("CORDUM_DEBUG", "0" if PRODUCTION else "1") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# Key used to encrypt secrets at rest (deploy keys, tokens, signing keys). Derived from
# SECRET_KEY unless given, so rotating SECRET_KEY needs CORDUM_ENCRYPTION_KEY pinned first.
ENCRYPTION_KEY = os.environ.get("CORDUM_ENCRYPTION_KEY", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "axes",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "cordum.common",
    "cordum.accounts",
    "cordum.policies",
    "cordum.decisions",
    "cordum.approvals",
    "cordum.simulation",
    "cordum.rollouts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "cordum.common.api.QueryStringGuard",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "cordum.accounts.middleware.CurrentOrganizationMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers a locked-out login with the lockout page
]

if PRODUCTION:  # static files are served by whitenoise behind gunicorn; runserver serves them in development
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "cordum.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend_templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "cordum.accounts.context_processors.organization",
                "cordum.approvals.context_processors.pending_count",
            ],
        },
    },
]
WSGI_APPLICATION = "cordum.wsgi.application"
ASGI_APPLICATION = "cordum.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{STATE_DIR / 'cordum.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
# Behind PgBouncer in transaction pooling mode a connection may change between statements: no server-side
# cursors and no server-side prepared statements (psycopg prepares a query after a few runs by default).
PGBOUNCER = os.environ.get("CORDUM_PGBOUNCER", "0") == "1"
if PGBOUNCER and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
# Several test runs may share one PostgreSQL server: CORDUM_TEST_DB_NAME keeps them apart.
if os.environ.get("CORDUM_TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["CORDUM_TEST_DB_NAME"]}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "accounts:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "cordum" / "common" / "static"]

# --- Redis / Celery -------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL and os.environ.get("CELERY_TASK_ALWAYS_EAGER", "1") == "1"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULE: dict = {}
POLICY_POLL_INTERVAL = int(os.environ.get("CORDUM_POLICY_POLL_INTERVAL", "60"))
CELERY_BEAT_SCHEDULE["policies-poll-repositories"] = {
    "task": "cordum.policies.tasks.repositories_poll_task",
    "schedule": timedelta(seconds=POLICY_POLL_INTERVAL),
}
# Tasks (by name, each given the repository id) enqueued after every completed sync: the policies app hands on
# to the apps above it without importing them. The change simulation of every branch and pull request head:
CORDUM_AFTER_SYNC_TASKS = ["cordum.simulation.tasks.policy_changes_refresh_task"]
# Re-enqueue evidence batches whose message was lost (a Redis outage or restart): every N seconds, batches
# staged at least N seconds ago.
CORDUM_INGEST_SWEEP_SECONDS = int(os.environ.get("CORDUM_INGEST_SWEEP_SECONDS", "30"))
CELERY_BEAT_SCHEDULE["evidence-ingest-sweep"] = {
    "task": "cordum.decisions.tasks.evidence_ingest_sweep_task",
    "schedule": timedelta(seconds=CORDUM_INGEST_SWEEP_SECONDS),
    "kwargs": {"older_than_seconds": CORDUM_INGEST_SWEEP_SECONDS},
}
CELERY_BEAT_SCHEDULE["evidence-quarantine-retry"] = {  # quarantined batches are retried with backoff
    "task": "cordum.decisions.tasks.evidence_quarantine_retry_task",
    "schedule": timedelta(seconds=60),
}
CELERY_BEAT_SCHEDULE["evidence-partitions"] = {  # create next months' evidence partitions ahead of time
    "task": "cordum.decisions.tasks.evidence_partitions_maintain_task",
    "schedule": timedelta(hours=6),
}
CELERY_BEAT_SCHEDULE["approvals-expire"] = {
    "task": "cordum.approvals.tasks.approvals_expire_task",
    "schedule": timedelta(seconds=15),
}
CELERY_BEAT_SCHEDULE["rollouts-guardrails"] = {
    "task": "cordum.rollouts.tasks.rollouts_check_task",
    "schedule": timedelta(seconds=30),
}

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cordum.accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "cordum.common.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "cordum.common.api.Pagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cordum control plane API",
    "DESCRIPTION": "Policy, evidence, approvals, simulation and rollout APIs for governed coding agents.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "SigningKeyStatusEnum": "cordum.policies.choices.KeyStatus",
        "SimulationStatusEnum": "cordum.simulation.choices.SimulationStatus",
        "ExportStatusEnum": "cordum.decisions.choices.ExportStatus",
        "AgentKindEnum": "cordum.accounts.choices.AgentKind",
        "ToolDriftKindEnum": ["new", "changed", "removed"],
    },
    "SWAGGER_UI_DIST": "SIDECAR",  # served locally: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Security ---------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads it to send X-CSRFToken
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = os.environ.get("CORDUM_SSL_REDIRECT", "1") == "1"
    if os.environ.get("CORDUM_TRUST_X_FORWARDED_PROTO", "1") == "1":  # only behind a proxy that sets it
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("CORDUM_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"refusals": {"()": "cordum.common.logfilters.ExpectedRefusalsWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["refusals"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("CORDUM_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # eager tasks (demo) would log every task inline; a worker still logs its own failures
        "celery.app.trace": {"level": "WARNING" if CELERY_TASK_ALWAYS_EAGER else "INFO"},
    },
}

# --- Cordum ----------------------------------------------------------------------------------
CORDUM_GIT_CACHE_DIR = Path(os.environ.get("CORDUM_GIT_CACHE_DIR", STATE_DIR / "git-cache"))
# Policy repositories on this server's disk (a path or file://): the demo and tests use them; in production an
# admin could otherwise point at any git directory the server can read (another organisation's, say).
CORDUM_ALLOW_LOCAL_REPOSITORIES = os.environ.get("CORDUM_ALLOW_LOCAL_REPOSITORIES",
                                                 "0" if PRODUCTION else "1") == "1"
# Local repository paths must lie under one of these directories (colon separated; default: the state directory,
# where the demo keeps its repository, and the system temporary directory, where tests keep theirs).
CORDUM_LOCAL_REPOSITORY_ROOTS = [
    p for p in os.environ.get("CORDUM_LOCAL_REPOSITORY_ROOTS", f"{STATE_DIR}:{tempfile.gettempdir()}").split(":") if p
]
CORDUM_LONG_POLL_MAX_SECONDS = int(os.environ.get("CORDUM_LONG_POLL_MAX_SECONDS", "60"))
# Absolute base URL people reach the UI at (links in approval notifications).
CORDUM_PUBLIC_URL = os.environ.get("CORDUM_PUBLIC_URL", "http://127.0.0.1:8000")

# Telemetry (docs/operations/telemetry.md). OTLP export of approvals and ingestion: auto (on when the standard
# OTEL_EXPORTER_OTLP_ENDPOINT is set), on or off. Prometheus GET /metrics answers only a scraper that sends
# `Authorization: Bearer <CORDUM_METRICS_TOKEN>` or connects from CORDUM_METRICS_ALLOW_NETWORKS (CIDRs, comma
# separated); with neither set it is off (403).
CORDUM_OTLP = os.environ.get("CORDUM_OTLP", "auto").strip().lower()
CORDUM_METRICS_TOKEN = os.environ.get("CORDUM_METRICS_TOKEN", "")
CORDUM_METRICS_ALLOW_NETWORKS = [
    str(ipaddress.ip_network(n.strip(), strict=False))  # a typo stops start-up here, naming the value
    for n in os.environ.get("CORDUM_METRICS_ALLOW_NETWORKS", "").split(",") if n.strip()
]

# Login throttling (django-axes): after AXES_FAILURE_LIMIT failed password logins for one username from one
# address, that pair is locked out for AXES_COOLOFF_TIME; an admin unlocks it (Django admin, Access attempts, or
# `manage.py axes_reset_username USERNAME`).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
CORDUM_LOGIN_FAILURE_LIMIT = int(os.environ.get("CORDUM_LOGIN_FAILURE_LIMIT", "5"))
# Invalid bearer tokens (agent or user) from one address before that address is refused for AXES_COOLOFF_TIME.
CORDUM_TOKEN_FAILURE_LIMIT = int(os.environ.get("CORDUM_TOKEN_FAILURE_LIMIT", "50"))
AXES_FAILURE_LIMIT = "cordum.accounts.authentication.failure_limit"
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("CORDUM_LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Bearer tokens are not locked out per address: they are 256-bit random (nothing to guess), and a lockout would let
# one revoked sidecar retrying behind a NAT lock out every sidecar sharing that address.

# Email: invitations and password resets. The console backend (development default) prints each message.
EMAIL_BACKEND = os.environ.get("CORDUM_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("EMAIL_USE_TLS", "0") == "1"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Cordum <cordum@localhost>")
CORDUM_INVITATION_TTL = int(os.environ.get("CORDUM_INVITATION_TTL", str(7 * 24 * 3600)))  # seconds
PASSWORD_RESET_TIMEOUT = int(os.environ.get("CORDUM_PASSWORD_RESET_TTL", str(24 * 3600)))
