"""Provider credentials at rest: Fernet tokens under LLMPROXY_ENCRYPTION_KEY.

The setting may list several keys during a key rotation: the first encrypts,
all decrypt (MultiFernet).
"""

import base64
import hashlib
import logging
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


class CredentialError(Exception):
    pass


@lru_cache(maxsize=4)
def _fernet(keys):
    if not keys:
        if not settings.DEBUG:
            raise ImproperlyConfigured(
                "LLMPROXY_ENCRYPTION_KEY is required to store provider credentials "
                "(generate one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            )
        # Development only: a key derived from SECRET_KEY so `DEBUG=1` works out of the box.
        logger.warning("LLMPROXY_ENCRYPTION_KEY is not set; deriving a development key from SECRET_KEY")
        derived = base64.urlsafe_b64encode(hashlib.sha256(settings.SECRET_KEY.encode()).digest())
        return MultiFernet([Fernet(derived)])
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "LLMPROXY_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated"
        ) from exc


def fernet():
    return _fernet(tuple(settings.LLMPROXY_ENCRYPTION_KEYS))


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialError("stored credential cannot be decrypted with LLMPROXY_ENCRYPTION_KEY") from exc


def reencrypt(token: str) -> str:
    """Re-encrypt a token under the first (newest) key."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialError("stored credential cannot be decrypted with LLMPROXY_ENCRYPTION_KEY") from exc
