"""Settings for the batch dashboard, all read from the environment.

Every variable is listed in README.md with its default. The defaults suit a laptop: debug on,
SQLite under var/, an embedded Redis, the built-in sandbox workspace. Production sets DEBUG=false
and gives a SECRET_KEY, DATABASE_URL, REDIS_URL and ALLOWED_HOSTS.
"""

import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from foundations.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
    env_timezone,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", True)


def _debug_secret_key() -> str:
    """A key generated once per checkout and kept under var/, so sessions survive restarts."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is false.")
    SECRET_KEY = _debug_secret_key()

PORT = env_int("PORT", 8000, minimum=1, maximum=65535)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The absolute address of the dashboard, used in links that leave it (emails, webhooks), and the
# one address inside this network a workspace's API may be on (the Sandbox). Required in
# production: a default there would make 127.0.0.1 "this dashboard" and open every other port of
# the machine (PostgreSQL, Redis) to a base URL.
SITE_URL = env_url(
    "SITE_URL", f"http://127.0.0.1:{PORT}" if DEBUG else "", schemes=("http", "https")
).rstrip("/")
if not SITE_URL:
    raise ImproperlyConfigured(
        "SITE_URL is required when DEBUG is false: the dashboard's public address, such as "
        "https://batches.example.com (links in emails and webhooks start with it)."
    )
_site = urlsplit(SITE_URL)
try:
    # This dashboard's own origin: the only scheme, host and port of it that outbound calls may
    # reach although it is inside the network (the Sandbox's emulator is served there).
    SITE_ORIGIN = (
        _site.scheme.lower(),
        (_site.hostname or "").lower(),
        _site.port or (443 if _site.scheme.lower() == "https" else 80),
    )
except ValueError:
    raise ImproperlyConfigured(
        "SITE_URL has a port that is not a number from 1 to 65535."
    ) from None
if not SITE_ORIGIN[1]:
    raise ImproperlyConfigured(
        "SITE_URL names no host: use one such as https://batches.example.com."
    )
# Hosts (any port) or host:port pairs a workspace's API or a webhook may be on although they are
# inside this network (or on plain http in production): while debugging this machine's names.
# Everything else must be public (see batches/outbound.py).
OUTBOUND_ALLOWED_HOSTS = env_list(
    "OUTBOUND_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "::1"] if DEBUG else []
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "batches",
    "emulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before any body is read (CSRF reads a form's in process_view, after every middleware).
    "dashboard.middleware.UploadsPerPersonMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "dashboard.middleware.TimezoneMiddleware",
    # Last, as django-axes asks: it answers a locked-out login with our lockout page.
    "axes.middleware.AxesMiddleware",
]

if not DEBUG:
    # WhiteNoise serves the collected, hashed static files in production; runserver serves them
    # straight from static/ while debugging.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "dashboard.urls"
# Error pages and reports hide every API key this process has decrypted (foundations/errors.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "foundations.errors.KeySafeExceptionReporterFilter"
WSGI_APPLICATION = "dashboard.wsgi.application"

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
                "batches.views.header.header_context",
            ],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL names another.
DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
)
# PostgreSQL: the app may connect as a role that only adds and reads audit entries, and
# `manage.py migrate` then as the role that owns the tables (README, "A database role for the
# app"). The whole migrate process takes the owner's URL, rather than a second alias: data
# migrations write through the default connection and must see the tables the owner just made.
MIGRATE_DATABASE_URL = env_url(
    "MIGRATE_DATABASE_URL", "", schemes=("postgres", "postgresql", "pgsql")
)
if MIGRATE_DATABASE_URL and sys.argv[1:2] == ["migrate"]:
    DATABASE_URL = MIGRATE_DATABASE_URL
# Connections close when a request or task ends, unless DATABASE_CONN_MAX_AGE keeps them for
# reuse: worth it only under a server whose threads live on (gunicorn); a server that starts a
# thread per request (runserver, as `make run` uses) would leave one idle connection per thread.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process, the worker and beat all write: wait for the lock rather than fail, and take
    # the write lock at BEGIN so two writers never deadlock upgrading a read lock.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: an embedded server (started by `make run` and by the test suite) unless REDIS_URL is set.
EMBEDDED_REDIS_PORT = env_int("EMBEDDED_REDIS_PORT", 6390, minimum=1, maximum=65535)
EMBEDDED_REDIS = not env_str("REDIS_URL", "")
REDIS_URL = env_url(
    "REDIS_URL", f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0", schemes=("redis", "rediss")
)
# The cache is the same Redis: it holds what lets a poll answer "nothing changed" without a query
# (batches/changes.py), shared by every web process and worker. Its keys are prefixed, so the
# broker's never meet them; a Redis that does not answer at once is treated as a miss.
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "dashboard")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes) on every login form, the admin's included: after
# LOGIN_FAILURE_LIMIT failures for one username from one address, or from one address whatever
# the usernames, logins from there wait LOGIN_LOCKOUT_MINUTES, and the form says until when.
# Never by the username alone: wrong passwords sent from anywhere must not lock a person (or
# the superuser) out of every other place. Addresses come from REMOTE_ADDR (set
# AXES_IPWARE_PROXY_COUNT behind a proxy, see the django-axes documentation).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "dashboard.views.locked_out"
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_timezone("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True
USE_THOUSAND_SEPARATOR = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_ROOT = VAR_DIR / "media"
# Files (uploads, prepared requests, problem reports, raw results): local files under VAR_DIR by
# default, or an S3-compatible bucket when S3_BUCKET is set, so web processes and workers on
# several machines share them. They are never served by URL: every download is a view.
S3_BUCKET = env_str("S3_BUCKET", "")
if S3_BUCKET:
    _file_storage = {
        "BACKEND": "foundations.object_storage.ObjectStorage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env_str("S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("S3_REGION", "") or None,
            # Unset: boto3's own chain (environment, instance role, ~/.aws).
            "access_key": env_str("S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY", "") or None,
            "location": env_str("S3_PREFIX", "").strip("/"),
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
else:
    _file_storage = {
        "BACKEND": "foundations.storage.LocalFileStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
STORAGES = {
    "default": _file_storage,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Uploads larger than this go to a temporary file on disk instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Production hardening: on whenever debug is off, so `check --deploy` is clean.
# X-Forwarded-Proto says "this came over https" only when a proxy we run sets it: any client can
# send the header, so it is trusted only when the operator says a proxy strips and sets it.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
# Django's Content-Security-Policy on every answer: scripts and styles only from our own static
# files (no inline code anywhere: htmx is told not to add its indicator style, nor to eval), and
# images also as data: URLs (a request's base64 images shown beside its answer). The keywords are
# written out rather than taken from django.utils.csp.CSP, whose import costs every process
# (the lean `validatebatch` included) a fiftieth of a second.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "font-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Scripts read the CSRF token from the page (the body's hx-headers), never from the cookie, so
# the cookie can be closed to them.
CSRF_COOKIE_HTTPONLY = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Email (finished-batch notices): printed to the console while debugging unless SMTP_HOST names a
# server; in production sent over SMTP (a local relay on localhost unless SMTP_HOST says otherwise).
_smtp_host = env_str("SMTP_HOST", "" if DEBUG else "localhost")
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": _smtp_host,
            "port": env_int("SMTP_PORT", 25, minimum=1, maximum=65535),
            "username": env_str("SMTP_USERNAME", ""),
            "password": env_str("SMTP_PASSWORD", ""),
            "use_tls": env_bool("SMTP_USE_TLS", False),
            "timeout": 20,
        },
    }
    if _smtp_host
    else {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "batch-dashboard@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    },
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# Celery: JSON only, bounded task time, one beat with the static schedule below.
CELERY_BROKER_URL = REDIS_URL
# Tasks' return values are not stored: nothing reads them (each task logs what it did). Only
# `dashboard.ping`, which exists to be read back, keeps its result, for an hour.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_RESULT_EXPIRES = timedelta(hours=1)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 660, minimum=1)
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_TIME_LIMIT must be larger than CELERY_TASK_SOFT_TIME_LIMIT, so the task "
        "gets its soft-limit exception before it is killed."
    )
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"


# Keys that encrypt the stored API keys (Fernet), newest first; see batches/crypto.py.
def _debug_fernet_key() -> str:
    import base64

    path = VAR_DIR / "fernet_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # A Fernet key: 32 random bytes, url-safe base64 (what Fernet.generate_key() returns).
        path.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(), "utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


FERNET_KEYS = env_list("FERNET_KEYS", [])
if not FERNET_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("FERNET_KEYS is required when DEBUG is false.")
    FERNET_KEYS = [_debug_fernet_key()]

# The Message Batches API: the version header, timeouts and retries of every call.
ANTHROPIC_VERSION = "2023-06-01"
API_TIMEOUT_SECONDS = env_float("API_TIMEOUT_SECONDS", 30.0, minimum=1.0)
API_MAX_ATTEMPTS = env_int("API_MAX_ATTEMPTS", 5, minimum=1, maximum=20)
# "Try first": how long one request sent on its own may take to be answered (the Messages API
# answers a long output slowly; the worker's task must outlive it).
TRY_TIMEOUT_SECONDS = env_float("TRY_TIMEOUT_SECONDS", 300.0, minimum=5.0)
API_RETRY_MAX_WAIT_SECONDS = env_float("API_RETRY_MAX_WAIT_SECONDS", 60.0, minimum=0.0)
# The first wait between two attempts; each next one doubles, with jitter.
API_RETRY_INITIAL_WAIT_SECONDS = env_float("API_RETRY_INITIAL_WAIT_SECONDS", 0.5, minimum=0.0)
# Every call to a workspace's API takes a slot from one limiter per key, shared through Redis by
# all processes: at most this many calls in any minute (the API's lowest tier allows 50, and the
# team's own scripts share it). A call waits for a slot at most API_RATE_LIMIT_MAX_WAIT_SECONDS,
# then fails as rate limited and is tried again at the next tick.
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 50, minimum=1)
API_RATE_LIMIT_MAX_WAIT_SECONDS = env_float("API_RATE_LIMIT_MAX_WAIT_SECONDS", 90.0, minimum=0.0)
# A dotted path to a function that returns the httpx transport of every API client. Empty: a
# real network connection. Not read from the environment: the tests set it, to answer every
# call from the emulator in their own process.
API_TRANSPORT = ""
# Only read at first run: a workspace for the real API is created with this key.
ANTHROPIC_BASE_URL = env_url(
    "ANTHROPIC_BASE_URL", "https://api.anthropic.com", schemes=("http", "https")
).rstrip("/")

# How often the beat asks every workspace for its batches.
SYNC_INTERVAL_SECONDS = env_float("SYNC_INTERVAL_SECONDS", 15.0, minimum=1.0)
# The API's limits on one batch; a larger upload is split into several batches (or refused).
MAX_BATCH_REQUESTS = env_int("MAX_BATCH_REQUESTS", 100_000, minimum=1, maximum=100_000)
MAX_BATCH_BYTES = env_int("MAX_BATCH_BYTES", 256_000_000, minimum=1000, maximum=256_000_000)
# One upload makes at most this many batches: a bound on what one file may ask of the server.
MAX_UPLOAD_BATCHES = env_int("MAX_UPLOAD_BATCHES", 10, minimum=1, maximum=1000)
# The largest upload the form accepts (bytes, before decompression).
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 2_000_000_000, minimum=1000)
# Slow clients (foundations/slow_clients.py): a body must bring this many bytes a second in every
# window or it is cut off; a process receives at most WEB_THREADS - 2 bodies at once, so two of
# its threads always answer pages; one login has at most UPLOADS_PER_USER uploads on their way.
MIN_UPLOAD_BYTES_PER_SECOND = env_int("MIN_UPLOAD_BYTES_PER_SECOND", 8 * 1024, minimum=1)
UPLOAD_RATE_WINDOW_SECONDS = env_float("UPLOAD_RATE_WINDOW_SECONDS", 15.0, minimum=1.0)
WEB_THREADS = env_int("WEB_THREADS", 8, minimum=3)
BODIES_PER_PROCESS = WEB_THREADS - 2
UPLOADS_PER_USER = env_int("UPLOADS_PER_USER", 2, minimum=1)
# A body at least this large is an upload, for the count per login.
UPLOAD_MIN_BYTES = 1024 * 1024
# Bounds on one check that no file can lift: the decompressed bytes read (skipped ones included:
# by default what the largest upload's batches can hold, and a tenth more for line breaks and
# rejected lines), the physical lines (blank ones included), one line's length, and seconds.
MAX_UPLOAD_TEXT_BYTES = env_int(
    "MAX_UPLOAD_TEXT_BYTES", MAX_UPLOAD_BATCHES * MAX_BATCH_BYTES * 11 // 10, minimum=1000
)
MAX_UPLOAD_LINES = env_int(
    "MAX_UPLOAD_LINES", 2 * MAX_UPLOAD_BATCHES * MAX_BATCH_REQUESTS, minimum=10
)
MAX_REQUEST_LINE_BYTES = env_int("MAX_REQUEST_LINE_BYTES", 64 * 1024 * 1024, minimum=1024)
CHECK_MAX_SECONDS = env_float("CHECK_MAX_SECONDS", 300.0, minimum=0.0)
# A plain JSONL upload this large or larger is checked by several processes at once (forked from
# the worker, on systems that can fork), at most CHECK_PROCESSES.
CHECK_PROCESSES = env_int(
    "CHECK_PROCESSES",
    min(4, os.cpu_count() or 1) if sys.platform == "linux" else 1,
    minimum=1,
    maximum=64,
)
CHECK_PARALLEL_MIN_BYTES = env_int("CHECK_PARALLEL_MIN_BYTES", 16 * 1024 * 1024, minimum=1)
# A check reports its progress (and renews its claim, and learns whether to stop) this often.
CHECK_PROGRESS_SECONDS = env_float("CHECK_PROGRESS_SECONDS", 0.5, minimum=0.0)
# Work that two processes must not do at once (a sync, an ingestion, a check, a create) is
# claimed for CLAIM_LEASE_SECONDS and renewed every CLAIM_RENEW_SECONDS while it makes progress;
# work whose worker died is free again after one lease, and the next beat tick hands it out.
# Work that makes no progress for CLAIM_STALL_SECONDS lets go too.
CLAIM_LEASE_SECONDS = env_float("CLAIM_LEASE_SECONDS", 20.0, minimum=1.0)
CLAIM_RENEW_SECONDS = env_float("CLAIM_RENEW_SECONDS", 5.0, minimum=0.1)
CLAIM_STALL_SECONDS = env_float("CLAIM_STALL_SECONDS", 120.0, minimum=1.0)
if CLAIM_RENEW_SECONDS * 2 > CLAIM_LEASE_SECONDS:
    raise ImproperlyConfigured(
        "CLAIM_RENEW_SECONDS must be at most half of CLAIM_LEASE_SECONDS, so a claim is renewed "
        "twice before it can lapse."
    )
if TRY_TIMEOUT_SECONDS >= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        "TRY_TIMEOUT_SECONDS must be below CELERY_TASK_SOFT_TIME_LIMIT: a try that gets no answer "
        "is recorded as failed before the task is stopped."
    )
if CHECK_MAX_SECONDS >= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CHECK_MAX_SECONDS must be below CELERY_TASK_SOFT_TIME_LIMIT: a check stops itself, with "
        "a report that says why, before the task is stopped."
    )

# Every this often, a sync lists a workspace's batches to the end, to notice deleted ones.
FULL_SYNC_INTERVAL_SECONDS = env_float("FULL_SYNC_INTERVAL_SECONDS", 300.0, minimum=1.0)
# Results are written to the database this many rows at a time.
INGEST_CHUNK_SIZE = env_int("INGEST_CHUNK_SIZE", 5000, minimum=1, maximum=20000)
# /metrics (Prometheus' text format) answers only a request with `Authorization: Bearer` and this
# token; unset, the page does not exist.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
CELERY_BEAT_SCHEDULE = {
    "sync-all-workspaces": {
        "task": "batches.tasks.sync_all_workspaces",
        "schedule": SYNC_INTERVAL_SECONDS,
        # A tick that waited longer than the interval is stale: the next one is coming.
        "options": {"expires": SYNC_INTERVAL_SECONDS},
    },
    "resume-checks": {
        "task": "batches.tasks.resume_checks",
        "schedule": 15.0,
        "options": {"expires": 15.0},
    },
    "resume-actions": {
        "task": "batches.tasks.resume_actions",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    "resume-stalled-submissions": {
        "task": "batches.tasks.resume_submissions",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "retry-webhooks": {
        "task": "batches.tasks.retry_webhooks",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
}

# The emulator (the sandbox workspace)
# Served under /emulator/ (and by `runemulator`) only when on: by default while debugging. In
# production it would let any visitor store batches, so it is an explicit choice there.
EMULATOR_ENABLED = env_bool("EMULATOR_ENABLED", DEBUG)
# A batch ends EMULATOR_BASE_SECONDS + n * EMULATOR_SECONDS_PER_REQUEST after creation: with the
# defaults 10 requests take about 2 s and 20,000 about 42 s (long enough to cancel one).
EMULATOR_BASE_SECONDS = env_float("EMULATOR_BASE_SECONDS", 2.0, minimum=0.0)
EMULATOR_SECONDS_PER_REQUEST = env_float("EMULATOR_SECONDS_PER_REQUEST", 0.002, minimum=0.0)
# How long a canceled batch stays `canceling` before it ends.
EMULATOR_CANCEL_SECONDS = env_float("EMULATOR_CANCEL_SECONDS", 1.0, minimum=0.0)
# The API keeps every request in `processing` until the batch ends; true moves the counts as
# requests finish, to rehearse a dashboard against progress it cannot count on.
EMULATOR_PROGRESSIVE_COUNTS = env_bool("EMULATOR_PROGRESSIVE_COUNTS", False)
# The largest create body accepted (the API's limit is 256 MB); larger ones get a 413.
EMULATOR_MAX_BODY_BYTES = env_int("EMULATOR_MAX_BODY_BYTES", 256 * 1024 * 1024, minimum=1)
# Faults for every key (a key can also ask for its own: see emulator/faults.py). Off by default.
EMULATOR_FAULT_RATE_429 = env_float("EMULATOR_FAULT_RATE_429", 0.0, minimum=0.0)
EMULATOR_FAULT_RATE_500 = env_float("EMULATOR_FAULT_RATE_500", 0.0, minimum=0.0)
EMULATOR_FAULT_RATE_529 = env_float("EMULATOR_FAULT_RATE_529", 0.0, minimum=0.0)
EMULATOR_FAULT_RETRY_AFTER_SECONDS = env_int("EMULATOR_FAULT_RETRY_AFTER_SECONDS", 1, minimum=0)
EMULATOR_FAULT_LATENCY_SECONDS = env_float("EMULATOR_FAULT_LATENCY_SECONDS", 0.0, minimum=0.0)
EMULATOR_FAULT_CUT_RESULTS = env_bool("EMULATOR_FAULT_CUT_RESULTS", False)
