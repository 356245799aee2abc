"""A circuit breaker per route, shared by every process through Redis (in-process without REDIS_URL).

closed     the route is used; failures are counted in a window, and
           LLMPROXY_BREAKER_FAILURES of them within LLMPROXY_BREAKER_WINDOW_SECONDS open it.
open       the route is skipped until LLMPROXY_BREAKER_COOLDOWN_SECONDS have passed;
half-open  then ONE request, the probe, may use it: its success closes the breaker,
           its failure opens it for another cool-down. Winning the probe is one atomic
           Redis script, so one request of one process gets it.

Hot path: acquire() before each attempt answers from this process's copy of
the route's state when the copy is younger than LLMPROXY_BREAKER_CACHE_SECONDS;
otherwise, or when a cool-down has ended, one script both reads the state and
takes the probe if it is free: at most one round trip per attempt. report()
writes only on a failure and on a probe's outcome. A process may therefore use
a route for up to the cache age after another process opened its breaker; its
first failure there brings it up to date.

Redis layout: one hash per route, ``<LLMPROXY_REDIS_KEY_PREFIX>:cb:{r<route id>}``
(the hash tag keeps it in one Cluster slot), fields open_until and probe_until
(epoch seconds; 0 or absent: none), window_start and failures. Keys expire an
hour after their last write.

Redis down: the in-process breaker stands in, Redis is asked again after
REDIS_RETRY_SECONDS, and no request waits more than REDIS_TIMEOUT for it.
"""

import asyncio
import logging
import time

from django.conf import settings
from redis.exceptions import RedisError

from llmproxy.redis_client import Script, get_redis, get_sync_redis
from providers.breaker_local import CLOSED, OPEN, PROBE, BreakerState, LocalBreakers, config

__all__ = [
    "CLOSED",
    "OPEN",
    "PROBE",
    "BreakerState",
    "acquire",
    "forget",
    "release",
    "report",
    "reset",
    "states",
]

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 0.25
REDIS_RETRY_SECONDS = 1.0
KEY_TTL_SECONDS = 3600

_ACQUIRE = """
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local s = redis.call('HMGET', KEYS[1], 'open_until', 'probe_until')
local open_until, probe_until = tonumber(s[1]) or 0, tonumber(s[2]) or 0
if open_until == 0 or now < open_until or now < probe_until then
  return {0, tostring(open_until), tostring(probe_until)}
end
probe_until = now + lease
redis.call('HSET', KEYS[1], 'probe_until', tostring(probe_until))
return {1, tostring(open_until), tostring(probe_until)}
"""

_FAILURE = """
local now, probe = tonumber(ARGV[1]), ARGV[2] == '1'
local threshold, window, cooldown = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local s = redis.call('HMGET', KEYS[1], 'open_until', 'probe_until', 'window_start', 'failures')
local open_until, probe_until = tonumber(s[1]) or 0, tonumber(s[2]) or 0
if probe then
  open_until, probe_until = now + cooldown, 0
  redis.call('HSET', KEYS[1], 'open_until', tostring(open_until), 'probe_until', '0', 'failures', '0')
elseif open_until == 0 then
  -- While open, late failures of requests let through before it opened change nothing.
  local start, failures = tonumber(s[3]) or 0, tonumber(s[4]) or 0
  if now - start > window then start, failures = now, 0 end
  failures = failures + 1
  if failures >= threshold then
    open_until, failures = now + cooldown, 0
    redis.call('HSET', KEYS[1], 'open_until', tostring(open_until), 'probe_until', '0')
  end
  redis.call('HSET', KEYS[1], 'window_start', tostring(start), 'failures', tostring(failures))
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
return {tostring(open_until), tostring(probe_until)}
"""

# A probe abandoned (its client left) frees the probe at once, unless another one took it since.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'probe_until') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'probe_until', '0')
end
return 1
"""


local = LocalBreakers()


# --- on Redis ---------------------------------------------------------------------------------


def redis_key(route_id: int) -> str:
    return f"{settings.LLMPROXY_REDIS_KEY_PREFIX}:cb:{{r{route_id}}}"


_acquire_script = Script(_ACQUIRE)
_failure_script = Script(_FAILURE)
_release_script = Script(_RELEASE)

REDIS_ERRORS = (RedisError, OSError, TimeoutError)
_redis_retry_at = 0.0
_warned_at = 0.0
# route id -> (open_until, probe_until as Redis stored it, monotonic time read)
_cache: dict[int, tuple[float, str, float]] = {}
_pending: set = set()


def _client():
    if time.monotonic() < _redis_retry_at:
        return None
    return get_redis()


def _redis_failed(exc):
    global _redis_retry_at, _warned_at
    _redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
    if time.monotonic() - _warned_at > 60:
        _warned_at = time.monotonic()
        log.warning("circuit breakers are in-process: Redis does not answer (%r)", exc)


def _remember(route_id, open_until, probe_until):
    if len(_cache) > 100_000:
        _cache.clear()
    _cache[route_id] = (float(open_until), probe_until, time.monotonic())


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


# --- what the router calls ----------------------------------------------------------------------


async def acquire(route_id: int, *, lease: float, now: float | None = None) -> str:
    """CLOSED: use the route. PROBE: use it as the probe, and report() the outcome. OPEN: skip it."""
    now = time.time() if now is None else now
    client = _client()
    if client is None:
        return local.acquire(route_id, now, lease)
    cfg = config()
    cached = _cache.get(route_id)
    if cached is not None and time.monotonic() - cached[2] < cfg.cache_seconds:
        open_until, probe_until, _ = cached
        if not open_until:
            return CLOSED
        if now < open_until or now < float(probe_until):
            return OPEN
    try:
        async with asyncio.timeout(REDIS_TIMEOUT):
            won, open_until, probe_until = await _acquire_script.run(
                client, [redis_key(route_id)], [repr(now), repr(lease)]
            )
    except REDIS_ERRORS as exc:
        _redis_failed(exc)
        return local.acquire(route_id, now, lease)
    _remember(route_id, _text(open_until), _text(probe_until))
    if int(won):
        return PROBE
    return OPEN if float(_text(open_until)) else CLOSED


async def report(route_id: int, verdict: str, *, ok: bool, now: float | None = None):
    """The outcome of an attempt acquire() let through. A success writes only when it was the probe."""
    if ok and verdict != PROBE:
        return
    now = time.time() if now is None else now
    cfg = config()
    client = _client()
    if client is None:
        _report_locally(route_id, verdict, ok, now, cfg)
        return
    key = redis_key(route_id)
    try:
        async with asyncio.timeout(REDIS_TIMEOUT):
            if ok:
                await client.delete(key)
                _remember(route_id, 0.0, "0")
            else:
                open_until, probe_until = await _failure_script.run(
                    client,
                    [key],
                    [
                        repr(now),
                        "1" if verdict == PROBE else "0",
                        cfg.failures,
                        repr(cfg.window),
                        repr(cfg.cooldown),
                        KEY_TTL_SECONDS,
                    ],
                )
                _remember(route_id, _text(open_until), _text(probe_until))
    except REDIS_ERRORS as exc:
        _redis_failed(exc)
        _report_locally(route_id, verdict, ok, now, cfg)


def _report_locally(route_id, verdict, ok, now, cfg):
    if ok:
        local.success(route_id)
    else:
        local.failure(route_id, now, verdict == PROBE, cfg)


def release(route_id: int):
    """Give the probe back (its attempt was cancelled) without waiting: called from a cancelled task."""
    local.release(route_id)
    cached = _cache.get(route_id)
    client = _client()
    if client is None or cached is None:
        return
    _cache.pop(route_id, None)
    task = asyncio.ensure_future(_release(client, route_id, cached[1]))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _release(client, route_id, token):
    try:
        async with asyncio.timeout(REDIS_TIMEOUT):
            await _release_script.run(client, [redis_key(route_id)], [token])
    except REDIS_ERRORS as exc:
        _redis_failed(exc)


def forget():
    """Drop this process's copies and in-process breakers (tests)."""
    global _redis_retry_at
    _cache.clear()
    local.clear()
    _redis_retry_at = 0.0


# --- for the admin and commands (synchronous) ---------------------------------------------------


def states(route_ids) -> dict[int, BreakerState | None]:
    """Each route's breaker; None where Redis did not answer."""
    route_ids = list(route_ids)
    now, cfg = time.time(), config()
    client = get_sync_redis()
    if client is None:
        return {route_id: local.state(route_id, now, cfg) for route_id in route_ids}
    fields = ("open_until", "probe_until", "window_start", "failures")
    try:
        with client.pipeline(transaction=False) as pipe:
            for route_id in route_ids:
                pipe.hmget(redis_key(route_id), fields)
            rows = pipe.execute()
    except REDIS_ERRORS:
        return dict.fromkeys(route_ids)
    found = {}
    for route_id, row in zip(route_ids, rows, strict=True):
        open_until, probe_until, window_start, failures = (float(_text(v)) if v else 0.0 for v in row)
        found[route_id] = BreakerState.of(
            open_until, probe_until, window_start, int(failures), now, cfg.window
        )
    return found


def reset(route_ids):
    """Close these routes' breakers. Processes notice within LLMPROXY_BREAKER_CACHE_SECONDS."""
    route_ids = list(route_ids)
    for route_id in route_ids:
        local.reset(route_id)
        _cache.pop(route_id, None)
    client = get_sync_redis()
    if client is None or not route_ids:
        return
    # One DEL per key: on a Cluster the routes' keys live in different slots.
    with client.pipeline(transaction=False) as pipe:
        for route_id in route_ids:
            pipe.delete(redis_key(route_id))
        pipe.execute()
