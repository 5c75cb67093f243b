"""Settings for every environment, switched by environment variables.

The default needs no service: SQLite and Celery's filesystem broker (the "embedded"
broker, a folder under ``var/``).  PostgreSQL is one ``DATABASE_URL`` away, Redis one
``CELERY_BROKER_URL``/``REDIS_URL`` away.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("AURUM_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "django_htmx",
    "mdm.audit",
    "mdm",
    "matching",
    "stewardship",
    "sync",
]

MIDDLEWARE = [
    "config.logs.CorrelationIdMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.LoginRateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "stewardship.context_processors.aurum",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'aurum.sqlite3'}"),
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with a health check that costs no round trip on a healthy
    # connection (config/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server and the worker read while the other writes.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = VAR_DIR / "media"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "steward:dashboard"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "mdm.api.authentication.UserTokenAuthentication",
        "mdm.api.authentication.SourceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON in, only: no form or multipart parsing (less to attack, one shape to document).
    "DEFAULT_PARSER_CLASSES": ["mdm.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "mdm.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Aurum MDM hub API",
    "DESCRIPTION": (
        "Push source records in, read them back, and follow every ingest run. "
        "Source systems authenticate with `Authorization: Bearer <token>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc assets come from drf-spectacular-sidecar, served by the hub.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "TokenAccessEnum": "mdm.models.TokenAccess",
        # ingest runs and connector runs share one set of states
        "RunStatusEnum": "mdm.models.IngestRun.Status",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "mdm.api.schema.postprocess",
    ],
}

# --- Celery -------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
# One queue per kind of work, so that each runs on the machines sized for it: a worker
# without -Q consumes all of them; `celery -A config worker -Q match` only the matching.
AURUM_QUEUES = ("celery", "ingest", "match", "sync")
CELERY_TASK_QUEUES = tuple(Queue(name, Exchange(name), routing_key=name) for name in AURUM_QUEUES)
CELERY_TASK_ROUTES = {
    # match: scoring and the golden record work it leads to (CPU and memory)
    "matching.*": {"queue": "match"},
    "mdm.survivorship_recompute": {"queue": "match"},
    # ingest: the checks that follow a load (database-bound)
    "mdm.quality_check_*": {"queue": "ingest"},
    # sync: publishing (network-bound, many small tasks)
    "sync.*": {"queue": "sync"},
    # everything else (housekeeping, alerts, escalation) on the default queue "celery"
}
CELERY_ACCEPT_CONTENT = ["json"]
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
else:
    # Longer than the longest task; shorter than "forever" (see TRAPS.md).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}

# --- Aurum --------------------------------------------------------------------------
# Requests larger than this are refused with 413 before anything is parsed.
AURUM_MAX_REQUEST_BYTES = int(os.environ.get("AURUM_MAX_REQUEST_BYTES", str(10 * 1024 * 1024)))
AURUM_MAX_BATCH_RECORDS = int(os.environ.get("AURUM_MAX_BATCH_RECORDS", "5000"))
# Relationships: the deepest hierarchy walk (reads, cycle checks) and the most descendants
# one hierarchy read returns.
AURUM_HIERARCHY_MAX_DEPTH = int(os.environ.get("AURUM_HIERARCHY_MAX_DEPTH", "1000"))
AURUM_HIERARCHY_MAX_NODES = int(os.environ.get("AURUM_HIERARCHY_MAX_NODES", "100000"))
# Rate limits (per minute; 0 = off): failed authentications per client address, ingest
# requests per source system.  Counted on Redis when REDIS_URL is set (mdm.ratelimit).
AURUM_AUTH_FAILURES_PER_MINUTE = int(os.environ.get("AURUM_AUTH_FAILURES_PER_MINUTE", "20"))
AURUM_INGEST_REQUESTS_PER_MINUTE = int(os.environ.get("AURUM_INGEST_REQUESTS_PER_MINUTE", "1800"))
AURUM_INGEST_CHUNK_SIZE = int(os.environ.get("AURUM_INGEST_CHUNK_SIZE", "5000"))
DATA_UPLOAD_MAX_MEMORY_SIZE = AURUM_MAX_REQUEST_BYTES

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"},
        "json": {"()": "config.logs.JsonFormatter"},
    },
    # Personal data, tokens and secrets never reach a log line (config.logs.ScrubFilter).
    "filters": {"scrub": {"()": "config.logs.ScrubFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["scrub"],
            # One JSON object a line (AURUM_LOG_FORMAT=json, the default) or plain text.
            "formatter": "plain" if os.environ.get("AURUM_LOG_FORMAT") == "plain" else "json",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Retention: history of retired golden records, deleted source records and erased people is
# purged this many days after (manage.py purge_history; the beat task below, daily).
AURUM_RETENTION_DAYS = int(os.environ.get("AURUM_RETENTION_DAYS", "730"))

# Stored API responses are replayed for this long after the first request.
AURUM_IDEMPOTENCY_HOURS = int(os.environ.get("AURUM_IDEMPOTENCY_HOURS", "72"))
# The API's hot reads use prepared statements on PostgreSQL (config/postgresql/base.py); turn
# off behind a transaction-pooling PgBouncer older than 1.21.
AURUM_PREPARED_READS = env_bool("AURUM_PREPARED_READS", True)
# API token lookups are cached per process this many seconds (0: off); see mdm/tokens.py.
AURUM_TOKEN_CACHE_SECONDS = float(os.environ.get("AURUM_TOKEN_CACHE_SECONDS", "10"))
# The golden read by a source system's token is answered before Django's request cycle
# (config/hot_read.py); 0 sends it through Django like every other request.
AURUM_HOT_GOLDEN_READ = env_bool("AURUM_HOT_GOLDEN_READ", True)

CELERY_BEAT_SCHEDULE = {
    "purge-idempotency-keys": {"task": "mdm.purge_idempotency_keys", "schedule": 3600.0},
    "match-pending": {"task": "matching.match_pending_all", "schedule": 60.0},
    "escalate-review-tasks": {"task": "stewardship.escalate_review_tasks", "schedule": 60.0},
    "survivorship-jobs-resume": {"task": "mdm.survivorship_jobs_resume", "schedule": 120.0},
    "evaluate-alerts": {"task": "mdm.alerts_evaluate", "schedule": 60.0},
    "quality-check-all": {
        "task": "mdm.quality_check_all",
        "schedule": float(os.environ.get("AURUM_QUALITY_SCHEDULE_SECONDS", "3600")),
    },
    "sync-relay": {"task": "sync.relay", "schedule": 2.0},
    "sync-purge-events": {"task": "sync.purge_events", "schedule": 3600.0},
    "purge-history": {"task": "mdm.purge_history", "schedule": 86400.0},
    "connectors-schedule": {"task": "mdm.connectors_schedule", "schedule": 15.0},
}
# A review task is due this many hours after it opens, unless its domain's ServiceLevel says.
AURUM_REVIEW_DUE_HOURS = int(os.environ.get("AURUM_REVIEW_DUE_HOURS", "48"))
# Queue incremental matching after every ingest that changed records.
AURUM_MATCH_AFTER_INGEST = env_bool("AURUM_MATCH_AFTER_INGEST", True)
# The quality_score_drop alert compares the latest score with the best of this many days.
AURUM_ALERT_QUALITY_BASELINE_DAYS = int(os.environ.get("AURUM_ALERT_QUALITY_BASELINE_DAYS", "7"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "aurum@localhost")
# Alert e-mails: SMTP when EMAIL_HOST is set, else printed on the console.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
# When set, a Prometheus scrape of /metrics must send it as a bearer token.
AURUM_METRICS_TOKEN = os.environ.get("AURUM_METRICS_TOKEN", "")
# Run the domain's data-quality rules over an ingest run's records after it commits.
AURUM_QUALITY_AFTER_INGEST = env_bool("AURUM_QUALITY_AFTER_INGEST", True)
# A survivorship preview reads at most this many golden records; a larger domain is
# previewed on a sample spread over it and the counts are scaled (marked "estimated").
AURUM_SURVIVORSHIP_PREVIEW_LIMIT = int(os.environ.get("AURUM_SURVIVORSHIP_PREVIEW_LIMIT", "20000"))
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Files at least this large are mapped and normalised in worker processes while the previous
# chunk is written; 0 workers turns it off.
AURUM_INGEST_WORKERS = int(os.environ.get("AURUM_INGEST_WORKERS", "1"))
AURUM_INGEST_PARALLEL_MIN_BYTES = int(
    os.environ.get("AURUM_INGEST_PARALLEL_MIN_BYTES", str(4 * 1024 * 1024))
)

# --- Publishing (sync) ----------------------------------------------------------------
# Webhook URLs resolving to private, link-local or loopback addresses are refused unless allowed.
AURUM_WEBHOOK_ALLOW_PRIVATE = env_bool("AURUM_WEBHOOK_ALLOW_PRIVATE", False)
AURUM_WEBHOOK_ALLOW_LOOPBACK = env_bool("AURUM_WEBHOOK_ALLOW_LOOPBACK", False)
AURUM_SYNC_SEND_TIMEOUT = float(os.environ.get("AURUM_SYNC_SEND_TIMEOUT", "10"))
AURUM_SYNC_BACKOFF_BASE = float(os.environ.get("AURUM_SYNC_BACKOFF_BASE", "2"))
AURUM_SYNC_BACKOFF_MAX = float(os.environ.get("AURUM_SYNC_BACKOFF_MAX", "3600"))
# Consecutive failures that open a subscriber's circuit, and the cool-down before a probe.
AURUM_SYNC_CIRCUIT_FAILURES = int(os.environ.get("AURUM_SYNC_CIRCUIT_FAILURES", "5"))
AURUM_SYNC_CIRCUIT_COOLDOWN = float(os.environ.get("AURUM_SYNC_CIRCUIT_COOLDOWN", "60"))
# A delivery queued (or sending) longer than this lost its task: the relay queues it again.
AURUM_SYNC_REQUEUE_AFTER = float(os.environ.get("AURUM_SYNC_REQUEUE_AFTER", "120"))
# Deliveries one delivery task sends (one subscriber's, in seq order, one connection).
AURUM_SYNC_BATCH_SIZE = int(os.environ.get("AURUM_SYNC_BATCH_SIZE", "100"))
# Events older than this many days that every subscriber has received are deleted (hourly).
AURUM_SYNC_EVENT_RETENTION_DAYS = float(os.environ.get("AURUM_SYNC_EVENT_RETENTION_DAYS", "30"))

# --- Inbound connectors -----------------------------------------------------------------
# Fernet key(s) for connector secrets (comma-separated: the first encrypts); empty: derived
# from SECRET_KEY.
AURUM_CONNECTOR_KEY = os.environ.get("AURUM_CONNECTOR_KEY", "")
# A running connector renews its claim after every batch; a claim not renewed for this long
# (its process died) is taken over by the next run.
AURUM_CONNECTOR_LEASE_SECONDS = int(os.environ.get("AURUM_CONNECTOR_LEASE_SECONDS", "600"))
# HTTP connectors: retries of a 429/5xx answer, the first back-off and its cap (seconds).
AURUM_CONNECTOR_HTTP_RETRIES = int(os.environ.get("AURUM_CONNECTOR_HTTP_RETRIES", "5"))
AURUM_CONNECTOR_HTTP_BACKOFF = float(os.environ.get("AURUM_CONNECTOR_HTTP_BACKOFF", "1"))
AURUM_CONNECTOR_HTTP_BACKOFF_MAX = float(os.environ.get("AURUM_CONNECTOR_HTTP_BACKOFF_MAX", "60"))
AURUM_CONNECTOR_HTTP_TIMEOUT = float(os.environ.get("AURUM_CONNECTOR_HTTP_TIMEOUT", "30"))

# --- Matching engine ------------------------------------------------------------------
# The full batch match runs on "duckdb" (one machine) or "spark" (Splink's Spark backend,
# the `spark` extra); training and search-before-create always run on DuckDB.
AURUM_MATCH_ENGINE = os.environ.get("AURUM_MATCH_ENGINE", "duckdb").strip().lower()
# The DuckDB of a full match may use this much memory (DuckDB's memory_limit: "1GB",
# "512MB", "50%") and spills its joins and tables beyond it to a private directory under
# AURUM_MATCH_DUCKDB_TEMP_DIR, removed after the run. 1GB keeps a worker matching 1M
# customer records under 2 GB; more memory is faster only when DuckDB would spill.
AURUM_MATCH_DUCKDB_MEMORY = os.environ.get("AURUM_MATCH_DUCKDB_MEMORY", "1GB")
AURUM_MATCH_DUCKDB_TEMP_DIR = os.environ.get("AURUM_MATCH_DUCKDB_TEMP_DIR", str(VAR_DIR / "duckdb"))
# The Spark cluster: local[*] (this machine), spark://host:7077, yarn, k8s://https://host:443.
AURUM_SPARK_MASTER = os.environ.get("AURUM_SPARK_MASTER", "local[*]")
# More Spark properties, "key=value" separated by commas or newlines
# (e.g. "spark.executor.memory=8g,spark.executor.cores=4,spark.sql.shuffle.partitions=400").
AURUM_SPARK_CONF = dict(
    item.split("=", 1)
    for item in os.environ.get("AURUM_SPARK_CONF", "").replace("\n", ",").split(",")
    if "=" in item
)
AURUM_SPARK_CONF = {key.strip(): value.strip() for key, value in AURUM_SPARK_CONF.items()}
# Where Splink writes the intermediate tables of a Spark match: a path every executor reaches.
AURUM_SPARK_CHECKPOINT_DIR = os.environ.get("AURUM_SPARK_CHECKPOINT_DIR", str(VAR_DIR / "spark"))
