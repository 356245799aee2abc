"""Settings, read from the environment (django-environ), strictly.

Every variable is documented in the README. A bad value stops the process with
ImproperlyConfigured naming the variable, never a silent default.
"""

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
    "daphne",
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
]

MIDDLEWARE = [
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

try:
    DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
except environ.ImproperlyConfigured as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Several processes (make run, commands, tests) may share the file: wait
    # for a lock instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://")

# Every key the proxy writes to Redis starts with this (several deployments or
# test runs can share one Redis).
LLMPROXY_REDIS_KEY_PREFIX = env.str("LLMPROXY_REDIS_KEY_PREFIX", default="lp")

if REDIS_URL:
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
# Cut off a stream that runs past the remaining token budget (for upstreams that ignore max_tokens).
LLMPROXY_QUOTA_CUT_STREAMS = env_bool("LLMPROXY_QUOTA_CUT_STREAMS", True)
LLMPROXY_UPSTREAM_MAX_CONNECTIONS = env_int("LLMPROXY_UPSTREAM_MAX_CONNECTIONS", 512, minimum=1)
LLMPROXY_UPSTREAM_CONNECT_TIMEOUT = env_float("LLMPROXY_UPSTREAM_CONNECT_TIMEOUT", 5.0)
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
# Keyed digests of API keys use this pepper (default: derived from SECRET_KEY).
# Changing it invalidates every API key.
LLMPROXY_KEY_PEPPER = env_secret("LLMPROXY_KEY_PEPPER", default="")
