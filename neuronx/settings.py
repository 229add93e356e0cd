"""NeuronX settings: every value comes from the environment, read by typed readers that fail loudly."""

import json
import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Environment variable {name} is required.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false).")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# The embedded development setup (no DATABASE_URL) runs with a built-in key; any other
# deployment must set SECRET_KEY or fail to start.
EMBEDDED = "DATABASE_URL" not in os.environ
SECRET_KEY = env_str(
    "SECRET_KEY",
    "embedded-development-only-key-0f8e1d2c3b4a59687766554433221100" if EMBEDDED else None,
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
# API keys are hashed with a keyed hash; rotating SECRET_KEY must not invalidate every key.
API_KEY_HASH_KEY = env_str("API_KEY_HASH_KEY", SECRET_KEY)

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_ratelimit",
    "neuronx",
    "gtm_api",
    "consent",
    "usage",
    "webhooks",
]

MIDDLEWARE = [
    "neuronx.middleware.RequestIdMiddleware",
    "neuronx.middleware.ProblemMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "neuronx.urls"
WSGI_APPLICATION = "neuronx.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'neuronx.sqlite3'}"),
        # Connections are kept between requests (a new PostgreSQL connection costs more than
        # most requests) and checked before a request reuses one, so one the database has
        # dropped is replaced first. The embedded SQLite setup opens its file per request.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0 if EMBEDDED else 60),
        conn_health_checks=env_bool("DATABASE_CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions serialise writers up front instead of failing on lock upgrade,
    # which keeps the concurrent tests meaningful on SQLite too.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 30}
    )
    # A file (not :memory:) so threads in the concurrency tests share it; one per process so
    # parallel runs never collide.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with a health check that polls the socket instead of a `SELECT 1` per
    # request (`neuronx/postgresql/base.py`).
    DATABASES["default"]["ENGINE"] = "neuronx.postgresql"
    # The hottest reads whose plan does not depend on the values (a lead by id, the status
    # document: `neuronx.fixed_sql.statement_cursor`) run as prepared statements, parsed and
    # planned once per connection: for the status document that is most of PostgreSQL's work.
    # Every other query keeps Django's client-side binding, which never prepares. Set DATABASE_PREPARED_STATEMENTS=false behind a pooler in
    # transaction mode that does not support prepared statements (PgBouncer < 1.21, or without
    # max_prepared_statements).
    DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
    if DATABASE_PREPARED_STATEMENTS:
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_cache_url = os.environ.get("CACHE_URL") or os.environ.get("REDIS_URL")
CACHES: dict[str, Any]
if _cache_url:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": _cache_url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
    SILENCED_SYSTEM_CHECKS: list[str] = []
else:
    # Development only: a per-process cache. Rate limits are then per process, not shared.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
RATELIMIT_USE_CACHE = "default"
RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLE", True)

# Static files are only the offline API docs assets (drf-spectacular-sidecar), served by
# WhiteNoise straight from the installed packages: no CDN, no collectstatic step.
STATIC_URL = "/static/"
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Request limits: a JSON body larger than DATA_UPLOAD_MAX_MEMORY_SIZE is answered with
# 413 payload_too_large; no request body at all may exceed MAX_REQUEST_BODY_BYTES (uploads).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_JSON_BODY_BYTES", 1_048_576)
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 536_870_912)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000

# Uploaded files (bulk lead imports) are kept through Django's storage API: local files under
# MEDIA_ROOT by default, any shared storage in production (FILE_STORAGE_BACKEND, a dotted class
# path, with FILE_STORAGE_OPTIONS as JSON, e.g. django-storages' S3 backend), so the API and the
# workers need not share a disk.
MEDIA_ROOT = env_str("MEDIA_ROOT", str(BASE_DIR / "media"))
STORAGES = {
    "default": {
        "BACKEND": env_str("FILE_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": json.loads(env_str("FILE_STORAGE_OPTIONS", "{}")),
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["neuronx.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["neuronx.permissions.OperationScopePermission"],
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["neuronx.renderers.JsonRenderer"],
    "DEFAULT_PAGINATION_CLASS": "neuronx.pagination.CursorPagination",
    "DEFAULT_SCHEMA_CLASS": "neuronx.schema.OperationAutoSchema",
    "EXCEPTION_HANDLER": "neuronx.problems.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # ISO 8601 in UTC with `Z` (DRF pads years below 1000, which strftime does not).
    "DATETIME_FORMAT": "iso-8601",
    "COERCE_DECIMAL_TO_STRING": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "NeuronX GTM API",
    "DESCRIPTION": (
        "The public GTM API of the NeuronX Sales OS: lead ingestion, qualification, routing, "
        "appointments, payment initiation, status and outbound webhooks. Every error is an "
        "RFC 9457 problem document with a stable `code`; see the error catalog."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "COMPONENT_NO_READ_ONLY_REQUIRED": False,
    "ENUM_NAME_OVERRIDES": {
        "StageEnum": "gtm_api.models.Stage",
        "LeadImportStatusEnum": "gtm_api.models.ImportStatus",
        "LeadImportModeEnum": "gtm_api.models.ImportMode",
        "LeadImportFormatEnum": "gtm_api.models.ImportFormat",
        "LeadImportSourceEnum": "gtm_api.models.ImportSource",
        "ConsentStateEnum": ["granted", "revoked", "expired", "not_captured"],
        "WebhookDeliveryStatusEnum": "webhooks.models.DeliveryStatus",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "neuronx.schema.postprocess_problem_components",
        "webhooks.schema.postprocess_event_types",
    ],
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
}

# Celery: with no broker configured, tasks run eagerly in-process (development).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_BROKER_TRANSPORT_OPTIONS = json.loads(env_str("CELERY_BROKER_TRANSPORT_OPTIONS", "{}"))
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "idempotency-cleanup": {
        "task": "neuronx.tasks.idempotency_cleanup",
        "schedule": 3600.0,
    },
    "payments-expire": {
        "task": "gtm_api.tasks.payments_expire",
        "schedule": 300.0,
    },
    "lead-imports-recover": {
        "task": "gtm_api.tasks.lead_imports_recover",
        "schedule": 60.0,
    },
    "lead-imports-purge": {
        "task": "gtm_api.tasks.lead_imports_purge",
        "schedule": 3600.0,
    },
    "webhooks-sweep": {
        "task": "webhooks.tasks.outbox_sweep",
        "schedule": float(env_int("WEBHOOK_SWEEP_INTERVAL_SECONDS", 60)),
    },
    "webhooks-log-purge": {
        "task": "webhooks.tasks.log_purge",
        "schedule": 3600.0,
    },
}

# Active API keys (with their tenant) are kept this long in the shared cache, so requests need
# no query to authenticate; any change to a key or a tenant takes effect on the next request.
# 0 looks every key up in the database.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 60)

IDEMPOTENCY_RETENTION_HOURS = env_int("IDEMPOTENCY_RETENTION_HOURS", 24)
# An in-flight claim older than this is taken to belong to a crashed worker and may be retaken.
IDEMPOTENCY_LOCK_SECONDS = env_int("IDEMPOTENCY_LOCK_SECONDS", 120)

# Default per-API-key limits of each rate-limit class; tenants may override them.
RATE_LIMITS = {
    "read": env_str("RATE_LIMIT_READ", "600/m"),
    "write": env_str("RATE_LIMIT_WRITE", "300/m"),
    "bulk": env_str("RATE_LIMIT_BULK", "20/m"),
    "webhooks": env_str("RATE_LIMIT_WEBHOOKS", "60/m"),
}

# Payments: the checkout provider (a dotted path) and the lifetime of an unpaid checkout.
PAYMENT_PROVIDER = env_str("PAYMENT_PROVIDER", "gtm_api.services.payment_providers.BuiltinProvider")
PAYMENT_CHECKOUT_BASE_URL = env_str("PAYMENT_CHECKOUT_BASE_URL", "https://pay.neuronx.io/checkout")
PAYMENT_CHECKOUT_TTL_SECONDS = env_int("PAYMENT_CHECKOUT_TTL_SECONDS", 86_400)
# Default maximum of one payment, in major units of its currency; tenants may override it.
PAYMENT_MAX_MAJOR_UNITS = env_int("PAYMENT_MAX_MAJOR_UNITS", 100_000)

# Bulk lead imports (docs/imports.md). An uploaded or fetched file may hold at most
# LEAD_IMPORT_MAX_FILE_BYTES (an upload is also bounded by MAX_REQUEST_BODY_BYTES) and
# LEAD_IMPORT_MAX_ROWS rows; a tenant may have LEAD_IMPORT_MAX_CONCURRENT imports queued or
# processing at once. Rows are committed LEAD_IMPORT_CHUNK_ROWS at a time; a worker holds an
# import for LEAD_IMPORT_LEASE_SECONDS past its last chunk before another may resume it.
LEAD_IMPORT_MAX_FILE_BYTES = env_int("LEAD_IMPORT_MAX_FILE_BYTES", 536_870_912)
LEAD_IMPORT_MAX_ROWS = env_int("LEAD_IMPORT_MAX_ROWS", 1_000_000)
LEAD_IMPORT_MAX_CONCURRENT = env_int("LEAD_IMPORT_MAX_CONCURRENT", 3)
LEAD_IMPORT_CHUNK_ROWS = env_int("LEAD_IMPORT_CHUNK_ROWS", 10_000)
# From this many rows on, a worker validates in a child process, overlapping with the writes.
LEAD_IMPORT_PARALLEL_MIN_ROWS = env_int("LEAD_IMPORT_PARALLEL_MIN_ROWS", 20_000)
LEAD_IMPORT_LEASE_SECONDS = env_int("LEAD_IMPORT_LEASE_SECONDS", 60)
# A source_url is fetched with this overall deadline (and 10 s per network read).
LEAD_IMPORT_FETCH_TIMEOUT_SECONDS = env_int("LEAD_IMPORT_FETCH_TIMEOUT_SECONDS", 300)
# Files of finished imports are deleted after this many days (the failed-rows download with them).
LEAD_IMPORT_RETENTION_DAYS = env_int("LEAD_IMPORT_RETENTION_DAYS", 30)

WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
# Outbound webhooks (docs/webhooks.md). Delays and durations are in seconds unless named.
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 15)
# Delays before the 2nd, 3rd, … attempt; the 1st is immediate. Each gets ±JITTER_PERCENT.
WEBHOOK_RETRY_SCHEDULE = [
    int(delay)
    for delay in env_list(
        "WEBHOOK_RETRY_SCHEDULE", ["5", "300", "1800", "7200", "18000", "36000", "36000"]
    )
]
WEBHOOK_RETRY_JITTER_PERCENT = env_int("WEBHOOK_RETRY_JITTER_PERCENT", 10)
# A receiver's `Retry-After` is honoured up to this long.
WEBHOOK_RETRY_AFTER_MAX_SECONDS = env_int("WEBHOOK_RETRY_AFTER_MAX_SECONDS", 36_000)
# A subscription whose attempts have all failed for this long is disabled.
WEBHOOK_DISABLE_AFTER_HOURS = env_int("WEBHOOK_DISABLE_AFTER_HOURS", 120)
# After rotate-secret the previous secret keeps signing (alongside the new one) this long.
WEBHOOK_SECRET_OVERLAP_HOURS = env_int("WEBHOOK_SECRET_OVERLAP_HOURS", 24)
WEBHOOK_MAX_SUBSCRIPTIONS_PER_TENANT = env_int("WEBHOOK_MAX_SUBSCRIPTIONS_PER_TENANT", 20)
WEBHOOK_URL_MAX_LENGTH = env_int("WEBHOOK_URL_MAX_LENGTH", 2048)
WEBHOOK_MAX_PAYLOAD_BYTES = env_int("WEBHOOK_MAX_PAYLOAD_BYTES", 262_144)
# A worker holds a delivery this long per attempt; past it the attempt is taken to have died
# with its worker and the sweep hands the delivery to another one.
WEBHOOK_DELIVERY_LEASE_SECONDS = env_int("WEBHOOK_DELIVERY_LEASE_SECONDS", 120)
# Deliveries attempted by one task, their requests sent in parallel.
WEBHOOK_DELIVERY_BATCH = env_int("WEBHOOK_DELIVERY_BATCH", 20)
# Retries due sooner than this are queued with a countdown; later ones are left to the sweep.
WEBHOOK_COUNTDOWN_MAX_SECONDS = env_int("WEBHOOK_COUNTDOWN_MAX_SECONDS", 300)
# The sweep (CELERY_BEAT_SCHEDULE, every WEBHOOK_SWEEP_INTERVAL_SECONDS) re-enqueues events and
# deliveries whose own enqueue is this overdue.
WEBHOOK_SWEEP_GRACE_SECONDS = env_int("WEBHOOK_SWEEP_GRACE_SECONDS", 15)
# Finished deliveries (with their attempts), and events no delivery still needs, are deleted
# this many days after they finished (CELERY_BEAT_SCHEDULE, hourly); 0 keeps them forever.
WEBHOOK_LOG_RETENTION_DAYS = env_int("WEBHOOK_LOG_RETENTION_DAYS", 30)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "neuronx.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "neuronx.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR", "propagate": False, "handlers": []},
        "django.server": {"level": "WARNING"},
    },
}

# Production is https-only: redirect plain http (except health probes) and pin HSTS. The
# embedded development setup serves plain http on loopback.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not EMBEDDED)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if EMBEDDED else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
# The API authenticates with bearer keys only: no cookies, no sessions, so no CSRF surface.
# DRF views are CSRF-exempt, and CsrfViewMiddleware would only add HTML 403s to the problem
# responses of the catch-all route.
SILENCED_SYSTEM_CHECKS.append("security.W003")
