"""Authentication of a request's key on the hot path, from a per-process cache.

A key's record (its digests, tenant, limits...) is loaded from the database at
most once per LLMPROXY_CONFIG_TTL_SECONDS per process, so a revocation or a
tenant switched off takes effect within that time everywhere. Expiry is
checked against the clock on every request, so it is exact. A secret that
does not match a cached record triggers one early reload (rate-limited), so a
secret rotated a moment ago works on its first request.
"""

import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from keys import secrets
from llmproxy.ttl_cache import TTLCache

# Unknown prefixes are remembered briefly so a flood of bad keys stays cheap.
_NEGATIVE_TTL = 1.0
_MISMATCH_RELOAD_AFTER = 0.5
_mismatch_reloads: dict[str, float] = {}


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: int
    slug: str
    is_active: bool
    allowed_models: frozenset
    cache_ttl_seconds: int
    cache_skip_nondeterministic: bool
    cache_generation: int
    store_prompts: bool
    max_input_tokens: int
    max_output_tokens: int
    allowed_parameters: frozenset
    redis_down_policy: str


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    prefix: str
    digest: str
    previous_digest: str
    previous_valid_until: float | None
    tenant: TenantRecord
    user_id: int | None
    allowed_models: frozenset
    expires_at: float | None
    revoked: bool
    limits: tuple

    def allows_model(self, model: str) -> bool:
        if self.allowed_models and model not in self.allowed_models:
            return False
        return not self.tenant.allowed_models or model in self.tenant.allowed_models


class AuthFailure(Exception):
    """The key is missing, unknown, wrong, revoked or expired, or its tenant is inactive.

    ``reason`` is one of missing, malformed, unknown, wrong_secret, revoked,
    expired, tenant_inactive (for the security audit); ``prefix`` and
    ``tenant_id`` are set when the key's prefix names a real key.
    """

    def __init__(self, message, reason, prefix=None, tenant_id=None):
        super().__init__(message)
        self.reason = reason
        self.prefix = prefix
        self.tenant_id = tenant_id


def _load(prefix: str):
    from keys.models import ApiKey
    from quotas.applicable import limits_for_key

    api_key = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
    if api_key is None:
        return None
    tenant = api_key.tenant
    return KeyRecord(
        id=api_key.id,
        prefix=api_key.prefix,
        digest=api_key.digest,
        previous_digest=api_key.previous_digest,
        previous_valid_until=api_key.previous_valid_until.timestamp()
        if api_key.previous_valid_until
        else None,
        tenant=TenantRecord(
            id=tenant.id,
            slug=tenant.slug,
            is_active=tenant.is_active,
            allowed_models=frozenset(tenant.allowed_models or ()),
            cache_ttl_seconds=tenant.cache_ttl_seconds,
            cache_skip_nondeterministic=tenant.cache_skip_nondeterministic,
            cache_generation=tenant.cache_generation,
            max_input_tokens=tenant.max_input_tokens,
            max_output_tokens=tenant.max_output_tokens,
            allowed_parameters=frozenset(tenant.allowed_parameters or ()),
            store_prompts=tenant.store_prompts,
            redis_down_policy=tenant.redis_down_policy,
        ),
        user_id=api_key.user_id,
        allowed_models=frozenset(api_key.allowed_models or ()),
        expires_at=api_key.expires_at.timestamp() if api_key.expires_at else None,
        revoked=api_key.revoked_at is not None,
        limits=tuple(limits_for_key(api_key)),
    )


_load_async = sync_to_async(_load, thread_sensitive=False)
_cache = TTLCache(ttl=settings.LLMPROXY_CONFIG_TTL_SECONDS)


def _secret_matches(record: KeyRecord, key: str, now: float) -> bool:
    if secrets.digest_matches(key, record.digest):
        return True
    return (
        bool(record.previous_digest)
        and record.previous_valid_until is not None
        and now < record.previous_valid_until
        and secrets.digest_matches(key, record.previous_digest)
    )


async def _record_for(prefix: str):
    async def load():
        return await _load_async(prefix)

    record = await _cache.get(prefix, load)
    if record is None:
        # Shorter life for "unknown": a key created a moment ago must work now.
        peek = _cache.peek(prefix)
        if peek is not None and peek[1] >= _NEGATIVE_TTL:
            record = await _cache.reload(prefix, load)
    return record, load


async def authenticate(key: str | None) -> KeyRecord:
    if not key:
        raise AuthFailure("Missing API key: pass it as 'Authorization: Bearer KEY'.", "missing")
    parts = secrets.split(key)
    if parts is None:
        raise AuthFailure("Invalid API key.", "malformed")
    prefix = parts[0]
    record, load = await _record_for(prefix)
    found = record
    now = time.time()
    if record is not None and not _secret_matches(record, key, now):
        # Perhaps rotated a moment ago: look again, at most twice a second per
        # key, so guessing secrets of a known prefix cannot flood the database.
        last = _mismatch_reloads.get(prefix, 0.0)
        if time.monotonic() - last >= _MISMATCH_RELOAD_AFTER:
            if len(_mismatch_reloads) > 10_000:
                _mismatch_reloads.clear()
            _mismatch_reloads[prefix] = time.monotonic()
            record = await _cache.reload(prefix, load)
            if record is not None and not _secret_matches(record, key, now):
                record = None
        else:
            record = None
    if record is None:
        if found is None:
            raise AuthFailure("Invalid API key.", "unknown", prefix)
        raise AuthFailure("Invalid API key.", "wrong_secret", prefix, found.tenant.id)
    if record.revoked:
        raise AuthFailure("This API key has been revoked.", "revoked", prefix, record.tenant.id)
    if record.expires_at is not None and now >= record.expires_at:
        raise AuthFailure("This API key has expired.", "expired", prefix, record.tenant.id)
    if not record.tenant.is_active:
        raise AuthFailure("This API key's tenant is inactive.", "tenant_inactive", prefix, record.tenant.id)
    return record


def forget(prefix: str | None = None):
    """Drop cached records (tests, and after changes made in this process)."""
    _cache.invalidate(prefix)
