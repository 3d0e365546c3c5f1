"""One settings module, driven by environment variables.

Two ways to run (see docs/architecture.md):

* embedded default: no DATABASE_URL, no REDIS_URL. SQLite in WAL mode under
  ``data/``, an in-process channel layer, a Celery transport on the file
  system. Nothing to install but Python.
* production-like: DATABASE_URL=postgres://..., REDIS_URL=redis://...
  PostgreSQL, channels-redis, the Redis broker and cache.

Production mode (DJANGO_DEBUG=0) refuses to start without a real secret key and
passes ``manage.py check --deploy --fail-level WARNING``.
"""

from __future__ import annotations

import urllib.parse
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DATA_DIR = Path(env.str("TELEHEALTH_DATA_DIR", default=str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=True)

# A key that is only ever good enough for the embedded default. Production mode
# refuses to start with it, or with any key that is short or obviously made up.
# Bandit B105 (hard-coded password): public on purpose, and refused below when DEBUG is off.
_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"  # noqa: S105  # nosec B105
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=_DEV_SECRET_KEY)
if not DEBUG:
    if SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "Production mode (DJANGO_DEBUG=0) needs DJANGO_SECRET_KEY: at least 50 random "
            "characters, for example from `python -c 'import secrets; "
            "print(secrets.token_urlsafe(64))'`."
        )

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "telehealth",
    "network",
    "consult",
    "scheduler",
    "privacy",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy and Permissions-Policy (telehealth/security_headers.py).
    "telehealth.security_headers.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Idle and absolute session limits, and the second factor (telehealth/session_middleware.py).
    "telehealth.session_middleware.SessionSecurityMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout into a readable response.
    "axes.middleware.AxesMiddleware",
    # A view that finds Redis, the broker or the database unreachable answers 503.
    "telehealth.unavailable.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "telehealth.urls"
ASGI_APPLICATION = "telehealth.asgi.application"
WSGI_APPLICATION = "telehealth.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "telehealth" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "telehealth.context_processors.navigation",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# No DATABASE_URL: SQLite in WAL mode, so the web process, the worker and beat
# can read while one of them writes; IMMEDIATE transactions take the write lock
# up front instead of failing half-way with "database is locked".
_SQLITE_PATH = DATA_DIR / "telehealth.sqlite3"
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{_SQLITE_PATH}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", 60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DATABASE_IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
# One-statement hot paths (a chat message) run on the event loop with psycopg's
# async pool instead of the ORM's thread pool (telehealth/db_async.py).
TELEHEALTH_ASYNC_HOT_PATHS = env.bool("TELEHEALTH_ASYNC_HOT_PATHS", default=True)
TELEHEALTH_ASYNC_POOL_SIZE = env.int("TELEHEALTH_ASYNC_POOL_SIZE", default=4)
# The web process moves start-up objects out of the garbage collector's sight and
# collects generation 0 less often (telehealth/asgi.py): no 100 ms+ pauses of the loop.
TELEHEALTH_GC_TUNING = env.bool("TELEHEALTH_GC_TUNING", default=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, Celery broker --------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

# How events travel between web processes with Redis (docs/architecture.md, "A
# message"): "bus" (the default: Redis pub/sub, one channel per topic, publishes
# pipelined in batches; telehealth.realtime.RedisBus), or one of the Channels
# layers, kept as options and measured against it in bench/chat_bench.py:
# "core" (lists, BZPOPMIN; drops sends to a channel over capacity) or "pubsub"
# (PUBLISH; loses what is sent while a subscriber is disconnected). Every one
# loses events in some fault; the sockets repair it from the database.
REALTIME_TRANSPORT = env.str("REALTIME_TRANSPORT", default="bus")
if REALTIME_TRANSPORT not in {"bus", "core", "pubsub"}:
    raise ImproperlyConfigured("REALTIME_TRANSPORT must be bus, core or pubsub.")
# The bus's channels are "<prefix><redis database>:<topic>"; give deployments that
# share a Redis server and database different prefixes.
REALTIME_CHANNEL_PREFIX = env.str("REALTIME_CHANNEL_PREFIX", default="rt:")
if REDIS_URL:
    if REALTIME_TRANSPORT == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL]},
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL], "capacity": 1500, "expiry": 30},
            }
        }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "th",
            # A Redis that hangs must not hang requests: the session cache falls back
            # to the database after this long (tests/faults/test_redis_hung.py).
            "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery. With REDIS_URL: the Redis broker. Without: kombu's file-system
# transport, which needs no server and is shared by every process on the machine.
CELERY_BROKER_DIR = DATA_DIR / "celery-broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # A task whose worker died without acknowledging it (acks late) goes back to the
    # queue after the visibility timeout. kombu looks for such messages when a worker
    # starts and then every unacked_restore_interval × unacked_restore_throttle
    # seconds (10 × 10 by default); every 10 s here. The fault tests shorten both.
    _VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=60)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "visibility_timeout": _VISIBILITY_TIMEOUT,
        "unacked_restore_interval": max(1, min(10, _VISIBILITY_TIMEOUT // 2)),
        "unacked_restore_throttle": 1,
    }
else:
    CELERY_BROKER_URL = "filesystem://"
    (CELERY_BROKER_DIR / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR),
        "data_folder_out": str(CELERY_BROKER_DIR),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TIMEZONE = "Asia/Ho_Chi_Minh"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- Authentication -----------------------------------------------------------
AUTH_USER_MODEL = "telehealth.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling. Failures are counted per (username, address) pair, so an
# attacker elsewhere cannot lock a patient out of their own account, and every
# lockout ends by itself after the cool-off.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "telehealth.views.lockout_response"
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0)
AXES_VERBOSE = False

# Database sessions cached in Redis; they keep working while Redis is down.
SESSION_ENGINE = "telehealth.sessions"
# A session ends after SESSION_IDLE_TIMEOUT without use, and SESSION_ABSOLUTE_TIMEOUT
# after sign-in however busy it is, over HTTP and on the websocket alike
# (telehealth/session_security.py). Activity is written to the session at most
# once per SESSION_ACTIVITY_RESOLUTION; sockets re-check every SESSION_SOCKET_CHECK_SECONDS.
# API tokens live API_TOKEN_MAX_AGE from issue (default: the absolute limit).
SESSION_IDLE_TIMEOUT = timedelta(minutes=env.int("SESSION_IDLE_MINUTES", default=30))
SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=env.float("SESSION_ABSOLUTE_HOURS", default=12))
SESSION_ACTIVITY_RESOLUTION = timedelta(seconds=60)
SESSION_SOCKET_CHECK_SECONDS = env.float("SESSION_SOCKET_CHECK_SECONDS", default=30)
_SESSION_ABSOLUTE_HOURS = SESSION_ABSOLUTE_TIMEOUT / timedelta(hours=1)
API_TOKEN_MAX_AGE = timedelta(
    hours=env.float("API_TOKEN_MAX_AGE_HOURS", default=_SESSION_ABSOLUTE_HOURS)
)
SESSION_COOKIE_AGE = int(SESSION_ABSOLUTE_TIMEOUT.total_seconds())
# TOTP second factor: optional for everyone with a role other than patient;
# required for the roles listed here (for example "doctor,coordinator").
TELEHEALTH_REQUIRE_TOTP_ROLES = env.list("TELEHEALTH_REQUIRE_TOTP_ROLES", default=[])
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Telehealth")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# --- API ----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes a bad or missing
        # credential a 401, which API clients understand as "sign in again".
        "telehealth.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "telehealth.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "telehealth.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"auth": "20/min"},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Telehealth network API",
    "DESCRIPTION": (
        "Remote examination, the doctor network and referrals between Vietnam's health facilities."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files: no CDN, works offline and under a strict CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two models call their choices "state"; name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "VisitStateEnum": "consult.models.Visit.State",
        "VisitParticipantStateEnum": "consult.models.VisitParticipant.State",
        "ConsentPurposeEnum": "privacy.models.Purpose",
        "DataRequestKindEnum": "privacy.models.DataRequest.Kind",
    },
}

# --- Internationalisation -----------------------------------------------------
LANGUAGE_CODE = "vi"
LANGUAGES = [("vi", _("Vietnamese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "telehealth" / "locale"]
LANGUAGE_COOKIE_NAME = "th_language"
TIME_ZONE = "Asia/Ho_Chi_Minh"
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Without DEBUG the files come from STATIC_ROOT (collectstatic, hashed names);
# with DEBUG WhiteNoise serves them straight from the source folders.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "telehealth.storage.StaticFilesStorage"
        )
    },
}
# Private uploads (attachments, snapshots) live outside any served folder and
# are handed out only by views that check access.
PRIVATE_MEDIA_ROOT = Path(env.str("TELEHEALTH_PRIVATE_MEDIA", default=str(DATA_DIR / "private")))

# --- Security -----------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/$"]  # load balancers probe over plain HTTP
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    if env.bool("DJANGO_BEHIND_TLS_PROXY", default=True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Video visits: relay nodes and TURN ------------------------------------------
# The web tier signs short-lived join tokens that relay nodes verify (relay/tokens.py).
from relay.tokens import DEV_SECRET as _DEV_RELAY_SECRET  # noqa: E402 (what `relay --dev` uses)

RELAY_TOKEN_SECRET = env.str("RELAY_TOKEN_SECRET", default=_DEV_RELAY_SECRET)
if not DEBUG and RELAY_TOKEN_SECRET == _DEV_RELAY_SECRET:
    raise ImproperlyConfigured("Production mode needs RELAY_TOKEN_SECRET, shared with relay nodes.")
RELAY_TOKEN_TTL_SECONDS = env.int("RELAY_TOKEN_TTL_SECONDS", default=90)
# Without Redis there is one relay node, here; with Redis, nodes register and
# rooms are placed on the least loaded live one.
RELAY_URL = env.str("RELAY_URL", default="http://127.0.0.1:8081")
# With Redis, refuse to place a room when no node is registered (production);
# off, the configured RELAY_URL serves as the one node.
RELAY_REQUIRE_REGISTRY = env.bool("RELAY_REQUIRE_REGISTRY", default=False)
# Where relay nodes upload finished visit recordings: this web tier as the nodes
# reach it (compose: http://web:8000). Empty: the address `make run` serves on.
RELAY_RECORDING_UPLOAD_BASE = env.str("RELAY_RECORDING_UPLOAD_BASE", default="")
# STUN/TURN for browsers. TURN credentials follow coturn's REST format
# (use-auth-secret): username "expiry:user", password base64(HMAC-SHA1(secret, username)).
TURN_URLS = env.list("TURN_URLS", default=[])
TURN_SHARED_SECRET = env.str("TURN_SHARED_SECRET", default="")
# Anyone who knows the secret can mint TURN credentials and relay through our
# server: production refuses a missing, short or well-known one when TURN is on.
_KNOWN_TURN_SECRETS = {"", "change-me-turn-secret"}
if (
    not DEBUG
    and TURN_URLS
    and (TURN_SHARED_SECRET in _KNOWN_TURN_SECRETS or len(TURN_SHARED_SECRET) < 32)
):
    raise ImproperlyConfigured(
        "Production mode with TURN_URLS needs TURN_SHARED_SECRET: at least 32 random "
        "characters, the same as coturn's --static-auth-secret."
    )
TURN_TTL_SECONDS = env.int("TURN_TTL_SECONDS", default=6 * 3600)
STUN_URLS = env.list("STUN_URLS", default=[])

# --- Content security policy ------------------------------------------------------
# Pages run only our own files: no inline script, style or event handler anywhere
# (templates keep data in data-* attributes and json_script blocks; behaviour lives
# in static/js, looks in static/css). Browsers talk to the web tier (HTTPS and its
# socket; the middleware adds the request's own ws:// or wss:// origin) and to the
# relay nodes' HTTP API (WHIP/WHEP style), so connect-src names their public origins.
# Several nodes: list each, or a wildcard such as https://*.relay.example.vn.
RELAY_PUBLIC_ORIGINS = env.list(
    "RELAY_PUBLIC_ORIGINS",
    default=["{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(RELAY_URL))],
)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "connect-src": [SELF, *RELAY_PUBLIC_ORIGINS],
        # data: for CSS icons; blob: for a visit snapshot shown before it is uploaded.
        "img-src": [SELF, "data:", "blob:"],
        # Camera and relay streams are MediaStreams (srcObject); recordings come
        # from our own views.
        "media-src": [SELF, "blob:"],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
    },
}
# Video visits need the camera and microphone on our own pages; no embedded frame
# may ask for them, and nothing may ask for these other features.
PERMISSIONS_POLICY = (
    "camera=(self), microphone=(self), display-capture=(), geolocation=(), "
    "payment=(), usb=(), serial=(), bluetooth=(), hid=()"
)
VISIT_MAX_PARTICIPANTS = env.int("VISIT_MAX_PARTICIPANTS", default=6)

# --- Logging ------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# --- The service's own settings -------------------------------------------------
# Demo logins are printed by `make run` and only ever created when DEBUG is on.
TELEHEALTH_DEMO_PASSWORD = env.str("TELEHEALTH_DEMO_PASSWORD", default="demo-Telehealth-2026")
# Break-glass (emergency) access to a patient's record lasts this long, then ends by itself.
TELEHEALTH_BREAK_GLASS_MINUTES = env.int("TELEHEALTH_BREAK_GLASS_MINUTES", default=4 * 60)

# Personal data protection (privacy/; docs/privacy.md says why these numbers).
# A patient's request to correct, restrict or delete their data (privacy/deadlines.py):
# respond within 2 working days of receipt (Decree 356/2025), complete within the days
# of its kind: 15 for a restriction (Decree 356/2025); 10 for a correction or a
# deletion, the low end of the 10-20 days reported for the other rights until the
# decree's own article is read (docs/privacy.md).
PRIVACY_REQUEST_RESPOND_WORKING_DAYS = env.int("PRIVACY_REQUEST_RESPOND_WORKING_DAYS", default=2)
# Once per request, a coordinator may extend its completion by up to this many days,
# saying why (Decree 356/2025, as reported: once, at most 15 days).
PRIVACY_REQUEST_EXTENSION_DAYS = env.int("PRIVACY_REQUEST_EXTENSION_DAYS", default=15)
PRIVACY_REQUEST_COMPLETE_DAYS = {
    "correction": env.int("PRIVACY_CORRECTION_DAYS", default=10),
    "restriction": env.int("PRIVACY_RESTRICTION_DAYS", default=15),
    "deletion": env.int("PRIVACY_DELETION_DAYS", default=10),
}
# Years a medical record is kept after its latest entry, also after a deletion
# request (Law on Medical Examination and Treatment 2023, Circular 32/2023/TT-BYT).
PRIVACY_RETENTION_YEARS = env.int("PRIVACY_RETENTION_YEARS", default=10)
