"""Settings, read from the environment (django-environ), strictly.

Every variable is documented in the README. A bad value stops the process with
ImproperlyConfigured naming the variable, never a silent default.
"""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def env_secret(name, default=None):
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    return env.str(name, default=default)


def env_bool(name, default):
    try:
        return env.bool(name, default=default)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0)") from exc


def env_int(name, default, minimum=0):
    try:
        value = env.int(name, default=default)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}")
    return value


def env_float(name, default, minimum=0.0):
    try:
        value = env.float(name, default=default)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}")
    return value


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_secret("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off (set SECRET_KEY or SECRET_KEY_FILE)"
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "tenants",
    "keys",
    "providers",
    "quotas",
    "audit",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "llmproxy.api",
]

MIDDLEWARE = [
    # GET /metrics, before the Host header check that a scraper addressing a process by IP fails.
    "llmproxy.ops_views.metrics_before_host_check",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "llmproxy.urls"

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
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "llmproxy.asgi.application"

VAR_DIR = Path(env.str("LLMPROXY_VAR_DIR", default=str(BASE_DIR / "var")))


def env_database(name, default=environ.Env.NOTSET):
    try:
        return env.db_url(name, default=default)
    except environ.ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from exc


# Connections of a server database: persistent ones (one per thread that uses the ORM), or,
# with DATABASE_POOL_MAX, a psycopg pool per process that caps them (PostgreSQL only).
DATABASE_POOL_MIN = env_int("DATABASE_POOL_MIN", 1)
DATABASE_POOL_MAX = env_int("DATABASE_POOL_MAX", 0)
DATABASE_POOL_TIMEOUT = env_float("DATABASE_POOL_TIMEOUT", 10.0, minimum=0.1)


def _connection_settings(db, variable):
    if db["ENGINE"] == "django.db.backends.sqlite3":
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        # Several processes (make run, commands, tests) may share the file: wait
        # for a lock instead of failing with "database is locked".
        db.setdefault("OPTIONS", {}).update(
            {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
        )
        if DATABASE_POOL_MAX:
            raise ImproperlyConfigured(f"DATABASE_POOL_MAX needs PostgreSQL; {variable} is SQLite")
        return db
    db["CONN_HEALTH_CHECKS"] = True
    if not DATABASE_POOL_MAX:
        db["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
        return db
    if DATABASE_POOL_MIN > DATABASE_POOL_MAX:
        raise ImproperlyConfigured("DATABASE_POOL_MIN must not be larger than DATABASE_POOL_MAX")
    # The gateway's ORM calls run on Daphne's thread pool (ASGI_THREADS, else Python's default size)
    # and each thread keeps the connection it took; with fewer in the pool, one would wait and fail.
    threads = env_int("ASGI_THREADS", min(32, (os.cpu_count() or 1) + 4), minimum=1)
    if threads + 2 > DATABASE_POOL_MAX:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_MAX must be at least {threads + 2} (ASGI_THREADS={threads} worker threads, "
            "the admin's thread and one spare); lower ASGI_THREADS or raise DATABASE_POOL_MAX"
        )
    # Django returns a pooled connection when a request or task ends; it refuses persistent ones with a pool.
    db["CONN_MAX_AGE"] = 0
    db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": DATABASE_POOL_MIN,
        "max_size": DATABASE_POOL_MAX,
        "timeout": DATABASE_POOL_TIMEOUT,
    }
    return db


DATABASES = {
    "default": _connection_settings(
        env_database("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), "DATABASE_URL"
    )
}

# A read-only replica for the reports (usage rows and aggregates): see llmproxy/db_router.py.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = _connection_settings(env_database("DATABASE_REPLICA_URL"), "DATABASE_REPLICA_URL")
    if DATABASES["replica"]["ENGINE"] != DATABASES["default"]["ENGINE"]:
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must be the same kind of database as DATABASE_URL")
    # Tests read the replica through the default test database: no second one is created.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    DATABASE_ROUTERS = ["llmproxy.db_router.ReplicaRouter"]

REDIS_URL = env.str("REDIS_URL", default="")
_CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://", *_CLUSTER_SCHEMES)):
    raise ImproperlyConfigured(
        "REDIS_URL must start with redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://"
    )
# A Redis Cluster: REDIS_URL=redis+cluster://host:port[,host:port...], or a redis:// URL and this.
REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
_ON_A_CLUSTER = REDIS_CLUSTER or REDIS_URL.startswith(_CLUSTER_SCHEMES)
if _ON_A_CLUSTER:
    if not REDIS_URL:
        raise ImproperlyConfigured("REDIS_CLUSTER=true needs REDIS_URL (a node of the cluster)")
    from llmproxy.redis_client import parse_redis_url

    parse_redis_url(REDIS_URL, cluster=True)  # ImproperlyConfigured names what is wrong

# Every key the proxy writes to Redis starts with this (several deployments or
# test runs can share one Redis).
LLMPROXY_REDIS_KEY_PREFIX = env.str("LLMPROXY_REDIS_KEY_PREFIX", default="lp")

if REDIS_URL and _ON_A_CLUSTER:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            # A list: django-redis would split a string at the commas of the node list.
            "LOCATION": [REDIS_URL],
            "KEY_PREFIX": LLMPROXY_REDIS_KEY_PREFIX + ":cache",
            "OPTIONS": {"CLIENT_CLASS": "llmproxy.redis_client.ClusterCacheClient"},
        }
    }
elif REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": LLMPROXY_REDIS_KEY_PREFIX + ":cache",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "tenants.User"
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
STATIC_ROOT = VAR_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Production hardening (manage.py check --deploy) -------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    if env_bool("BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- The proxy ------------------------------------------------------------------
LLMPROXY_ENCRYPTION_KEYS = [
    k.strip() for k in env_secret("LLMPROXY_ENCRYPTION_KEY", default="").split(",") if k.strip()
]
LLMPROXY_MAX_BODY_BYTES = env_int("LLMPROXY_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1)
# How long a process trusts what it cached about a key or a route before it
# asks Redis/the database again; operators' changes take effect within this.
LLMPROXY_CONFIG_TTL_SECONDS = env_float("LLMPROXY_CONFIG_TTL_SECONDS", 2.0)
LLMPROXY_USAGE_FLUSH_SECONDS = env_float("LLMPROXY_USAGE_FLUSH_SECONDS", 1.0, minimum=0.05)
LLMPROXY_DEFAULT_MAX_OUTPUT_TOKENS = env_int("LLMPROXY_DEFAULT_MAX_OUTPUT_TOKENS", 4096, minimum=1)
# A quota reservation never settled (its process died) is given back after this.
LLMPROXY_QUOTA_HOLD_SECONDS = env_int("LLMPROXY_QUOTA_HOLD_SECONDS", 900, minimum=1)
# Failed key authentications from one address per minute (per process) before it gets 429.
LLMPROXY_AUTH_FAILURES_PER_MINUTE = env_int("LLMPROXY_AUTH_FAILURES_PER_MINUTE", 100, minimum=1)
# When the database is away, usage records wait in an on-disk spool of at most this size per process;
# when it is full: drop (the oldest records, counted) or refuse (503 to new requests until it drains).
LLMPROXY_USAGE_SPOOL_MAX_BYTES = env_int("LLMPROXY_USAGE_SPOOL_MAX_BYTES", 256 * 1024 * 1024, minimum=1)
LLMPROXY_USAGE_SPOOL_FULL_POLICY = env.str("LLMPROXY_USAGE_SPOOL_FULL_POLICY", default="drop")
if LLMPROXY_USAGE_SPOOL_FULL_POLICY not in ("drop", "refuse"):
    raise ImproperlyConfigured("LLMPROXY_USAGE_SPOOL_FULL_POLICY must be drop or refuse")
# Failed authentications are audited as one row per source address and window of this many seconds.
LLMPROXY_AUTH_AUDIT_WINDOW_SECONDS = env_int("LLMPROXY_AUTH_AUDIT_WINDOW_SECONDS", 60, minimum=1)
# Identical requests wait at most this long for the first one's answer (response cache).
LLMPROXY_CACHE_LOCK_SECONDS = env_float("LLMPROXY_CACHE_LOCK_SECONDS", 30.0, minimum=0.1)
# Cut off a stream that runs past the remaining token budget (for upstreams that ignore max_tokens).
LLMPROXY_QUOTA_CUT_STREAMS = env_bool("LLMPROXY_QUOTA_CUT_STREAMS", True)
LLMPROXY_UPSTREAM_MAX_CONNECTIONS = env_int("LLMPROXY_UPSTREAM_MAX_CONNECTIONS", 512, minimum=1)
LLMPROXY_UPSTREAM_CONNECT_TIMEOUT = env_float("LLMPROXY_UPSTREAM_CONNECT_TIMEOUT", 5.0)
# Circuit breaker per route, shared through Redis: after FAILURES failures within
# WINDOW seconds the route is skipped; after COOLDOWN seconds one probe request
# may use it, and its success closes the breaker. Processes re-read a route's
# breaker at most every CACHE seconds.
LLMPROXY_BREAKER_FAILURES = env_int("LLMPROXY_BREAKER_FAILURES", 5, minimum=1)
LLMPROXY_BREAKER_WINDOW_SECONDS = env_float("LLMPROXY_BREAKER_WINDOW_SECONDS", 30.0, minimum=0.1)
LLMPROXY_BREAKER_COOLDOWN_SECONDS = env_float("LLMPROXY_BREAKER_COOLDOWN_SECONDS", 30.0, minimum=0.1)
LLMPROXY_BREAKER_CACHE_SECONDS = env_float("LLMPROXY_BREAKER_CACHE_SECONDS", 1.0)
# Retries of one route (ModelPolicy.max_attempts): exponential backoff from BASE,
# with jitter, at most MAX; an upstream's Retry-After is honoured up to RETRY_AFTER_MAX.
LLMPROXY_RETRY_BACKOFF_BASE_SECONDS = env_float("LLMPROXY_RETRY_BACKOFF_BASE_SECONDS", 0.2)
LLMPROXY_RETRY_BACKOFF_MAX_SECONDS = env_float("LLMPROXY_RETRY_BACKOFF_MAX_SECONDS", 5.0)
LLMPROXY_RETRY_AFTER_MAX_SECONDS = env_float("LLMPROXY_RETRY_AFTER_MAX_SECONDS", 10.0)
# --- Observability (docs/observability.md) ------------------------------------------
# Tracing is switched on by llmproxy.tracing.setup() from OTEL_* variables, read before Django starts.
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
# GET /metrics answers a scraper whose address is in one of these networks and, when a token is
# set, that sends it as "Authorization: Bearer TOKEN". Loopback only by default.
LLMPROXY_METRICS_TOKEN = env_secret("LLMPROXY_METRICS_TOKEN", default="")


def env_networks(name, default):
    import ipaddress

    networks = []
    for text in env.list(name, default=default):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {text!r} is not a network (10.0.0.0/8, ::1/128...)") from exc
    return networks


LLMPROXY_METRICS_ALLOWED_NETWORKS = env_networks(
    "LLMPROXY_METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"]
)
# Several processes of one host share their metrics through this directory (prometheus-client's
# multiprocess mode); it must exist, and be emptied before the processes start.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} is not a directory")

LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or plain")
# One line per proxied request (logger llmproxy.access), whatever LOG_LEVEL says.
LLMPROXY_ACCESS_LOG = env_bool("LLMPROXY_ACCESS_LOG", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "llmproxy.logging_json.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "llmproxy.access": {"level": "INFO" if LLMPROXY_ACCESS_LOG else "WARNING"},
    },
}
# Keyed digests of API keys use this pepper (default: derived from SECRET_KEY).
# Changing it invalidates every API key.
LLMPROXY_KEY_PEPPER = env_secret("LLMPROXY_KEY_PEPPER", default="")

# --- REST admin API (/api/v1/, llmproxy/api/) -------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "llmproxy.api.authentication.AccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "llmproxy.api.exceptions.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LLM proxy admin API",
    "DESCRIPTION": "Tenants, users, API keys, providers, model routes, quotas, guardrails, logs and usage.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from drf-spectacular-sidecar's static files: /api/docs/ loads no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}
# The audit log's hash chain is keyed with this (default: derived from SECRET_KEY).
# Changing it makes verify_audit_log reject every row written before.
LLMPROXY_AUDIT_CHAIN_KEY = env_secret("LLMPROXY_AUDIT_CHAIN_KEY", default="")
