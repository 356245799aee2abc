"""The shape of a proxy API key and its digest.

``lp-AAAAAAAA-SSSS...``: ``lp-AAAAAAAA`` is the prefix (stored in clear, the
key's identity), the rest is the secret. Only a keyed SHA-256 digest of the
whole key is stored; comparison is constant-time.
"""

import hashlib
import hmac
import re
import secrets
import string

from django.conf import settings

ALPHABET = string.ascii_letters + string.digits
PREFIX_CHARS = 8
SECRET_CHARS = 40
KEY_RE = re.compile(r"^(lp-[A-Za-z0-9]{8})-([A-Za-z0-9]{32,128})$")
PREFIX_RE = re.compile(r"^lp-[A-Za-z0-9]{8}$")


def _random(n):
    return "".join(secrets.choice(ALPHABET) for _ in range(n))


def new_prefix():
    return "lp-" + _random(PREFIX_CHARS)


def new_secret():
    return _random(SECRET_CHARS)


def compose(prefix, secret):
    return f"{prefix}-{secret}"


def split(key):
    """(prefix, secret) of a well-formed key, or None."""
    match = KEY_RE.match(key or "")
    return (match.group(1), match.group(2)) if match else None


def _hmac_key():
    # A dedicated pepper can be set; otherwise derived from SECRET_KEY so a
    # leaked database alone is not enough to test guesses offline.
    pepper = getattr(settings, "LLMPROXY_KEY_PEPPER", "") or settings.SECRET_KEY
    return hashlib.sha256(b"llmproxy-api-key:" + pepper.encode()).digest()


def digest(key):
    return hmac.new(_hmac_key(), key.encode(), hashlib.sha256).hexdigest()


def digest_matches(key, stored_digest):
    return bool(stored_digest) and hmac.compare_digest(digest(key), stored_digest)
