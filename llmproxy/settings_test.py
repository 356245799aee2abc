"""Test settings: the real settings with test secrets filled in when absent."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("LLMPROXY_ENCRYPTION_KEY", "dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcy0hISE=")
os.environ.setdefault("LLMPROXY_USAGE_FLUSH_SECONDS", "0.2")
# Test runs may share the machine's Redis (CI, helpers): each run its own keys.
os.environ.setdefault("LLMPROXY_REDIS_KEY_PREFIX", f"lptest{os.getpid()}")

from llmproxy.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The end-to-end tests run the proxy in its own process: the test database
# must be a file both can open (pytest-django's default SQLite is in memory).
# Named per test run, so two runs on one machine do not share it.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_llmproxy_{os.getpid()}"}  # noqa: F405
