"""The quota limiter the gateway calls on every request.

reserve() runs before the upstream call: one atomic step checks every limit
that applies and reserves one request, the input tokens plus an output
reservation, and their cost. settle() runs when the answer ends and replaces
the reservation by the real usage. Usage may reach a limit but not pass it,
except by the estimation error a settle reveals (more tokens than counted).

Choices worth knowing:
- A request is admitted when one more request fits every requests limit, its
  input fits every tokens and cost limit, and at least one output token still
  fits after it (none needed when max_output_tokens is 0, as for embeddings).
  Its output reservation is max_output_tokens cut down to what the tightest
  tokens or cost limit allows. Refused means nothing is reserved anywhere.
- Windows are calendar windows in UTC, picked with the caller's clock
  (time.time(), or `now` in tests). Key names must be known before a script
  runs on Redis Cluster, so the window cannot be chosen by Redis' TIME; hosts
  synced by NTP disagree by milliseconds, which moves at most a request across
  a boundary.
- A hold lapses LLMPROXY_QUOTA_HOLD_SECONDS (default 900) after reserve(): a
  process killed before settle() frees its holds then, or when the window
  ends. A settle after the lapse still charges the real usage, once, into the
  window the reservation was made in.
- Without REDIS_URL the limiter is in-process (each process its own). When
  Redis does not answer, the tenant's policy decides: "closed" raises
  LimiterUnavailable, "open" limits that request in-process; both are counted
  in `counters` and logged at most once a minute. Redis is asked again
  REDIS_RETRY_SECONDS after a failure, so it is used again as soon as it is back.
- A settle Redis did not take (it was away when the answer ended) is tried
  again every REDIS_RETRY_SECONDS while its hold lasts, and so is a release of
  a reservation whose reply was lost: once a Redis that keeps its data is back,
  it holds nothing for requests that are over. The script is idempotent, so a
  settle that did reach Redis before the error is not charged twice.
- x-ratelimit-reset-* are written like OpenAI's (Go durations: 1s, 6m0s,
  1h0m0s), rounded up to whole seconds.
"""

import asyncio
import contextlib
import functools
import logging
import math
import secrets
import time
from collections import Counter, deque
from datetime import UTC, datetime

from django.conf import settings
from redis.exceptions import RedisError

from llmproxy.redis_client import get_redis

from . import limiter_local, limiter_redis
from .admission import Plan, Reservation, Slot, charge, in_units, nano_dollars
from .limiter_types import Ask, Decision, Limit, LimiterUnavailable
from .windows import format_reset

__all__ = [
    "Ask",
    "Decision",
    "Limit",
    "LimiterUnavailable",
    "counters",
    "current_usage",
    "release",
    "remaining_tokens",
    "reserve",
    "settle",
]

log = logging.getLogger(__name__)

# For /metrics: redis_fail_open (a request limited in-process because Redis did not answer),
# redis_fail_closed (a request refused for the same reason), settle_lost (a settle Redis did
# not take at once: tried again while its hold lasts, then that usage is not counted).
counters = Counter()

REDIS_RETRY_SECONDS = 1.0
WARN_EVERY_SECONDS = 60.0
MAX_UNSETTLED = 10_000  # settles waiting for Redis to come back; past this many, their holds lapse

_REDIS_ERRORS = (RedisError, OSError)
_redis_retry_at = 0.0  # monotonic time before which Redis is not asked again
_warned_at = {}
_settling = set()
_unsettled = deque()  # (slots, reservation id, amounts, give-up time) of settles Redis did not take
_resettling = None  # the task that tries them again


async def reserve(limits, ask: Ask, *, redis_down_policy="closed", now=None) -> Decision:
    plan = Plan.of(ask)
    if not limits:
        return Decision(True, plan.max_output, None, None, 0, {})
    if len({limit.tenant_id for limit in limits}) > 1:
        raise ValueError("the limits of one request belong to one tenant (one Redis hash tag)")
    now = time.time() if now is None else now
    slots = tuple(Slot.of(limit, now) for limit in limits)
    rid = secrets.token_hex(8)
    hold_seconds = _hold_seconds()

    backend, outcome = "local", None
    client = get_redis()
    if client is not None:
        outcome = await _reserve_on_redis(client, slots, plan, rid, now, hold_seconds)
        if outcome is None:
            _without_redis(redis_down_policy)
        else:
            backend = "redis"
    if outcome is None:
        outcome = limiter_local.reserve(slots, plan, rid, now, hold_seconds)

    headers = _headers(slots, outcome.committed, now)
    if not outcome.admitted:
        # Of the limits that refuse, the last to reset is the one worth waiting for.
        refused = slots[max(outcome.failed, key=lambda i: slots[i].end)]
        return Decision(False, 0, None, refused.limit, _seconds_until(refused.end, now), headers)
    reservation = Reservation(backend, rid, slots, outcome.output)
    return Decision(True, outcome.output, reservation, None, 0, headers)


async def settle(reservation, *, input_tokens, output_tokens, cost) -> None:
    await _finish(reservation, requests=1, tokens=input_tokens + output_tokens, cost_nano=nano_dollars(cost))


async def release(reservation) -> None:
    """Give a whole reservation back, charging nothing (the request never reached an upstream)."""
    await _finish(reservation, requests=0, tokens=0, cost_nano=0)


async def remaining_tokens(reservation) -> int | None:
    """Output tokens the answer may produce before it passes a limit (None: no tokens or cost limit)."""
    if reservation is None or not any(slot.metric != "requests" for slot in reservation.slots):
        return None
    return reservation.output_tokens


def current_usage(limit: Limit, now=None) -> dict:
    """This window's settled usage and live holds, in the limit's unit (USD for cost).

    Raises LimiterUnavailable when Redis is configured but does not answer.
    Without Redis it is this process's usage only.
    """
    now = time.time() if now is None else now
    slot = Slot.of(limit, now)
    if settings.REDIS_URL:
        try:
            used, held = limiter_redis.usage(slot, now)
        except _REDIS_ERRORS as exc:
            raise LimiterUnavailable(f"the quota store (Redis) does not answer: {exc}") from exc
    else:
        used, held = limiter_local.usage(slot, now)
    return {
        "used": in_units(limit.metric, used),
        "reserved": in_units(limit.metric, held),
        "window_start": datetime.fromtimestamp(slot.start, UTC),
        "resets_at": datetime.fromtimestamp(slot.end, UTC),
    }


def _hold_seconds():
    return int(settings.LLMPROXY_QUOTA_HOLD_SECONDS)


async def _reserve_on_redis(client, slots, plan, rid, now, hold_seconds):
    global _redis_retry_at
    if time.monotonic() < _redis_retry_at:
        return None
    try:
        return await limiter_redis.reserve(client, slots, plan, rid, now, hold_seconds)
    except _REDIS_ERRORS as exc:
        # Without this pause every request would wait for Redis' connect timeout while it is away.
        _redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        _warn("redis_down", "the limiter cannot reach Redis: %r", exc)
        # The script may have run before the connection broke: give back what it may have reserved.
        _settle_later(slots, rid, [0] * len(slots))
        return None


def _without_redis(policy):
    if policy != "open":
        counters["redis_fail_closed"] += 1
        raise LimiterUnavailable("the quota store (Redis) does not answer")
    counters["redis_fail_open"] += 1
    _warn(
        "redis_fail_open",
        "limiting in-process: Redis does not answer (%d requests so far)",
        counters["redis_fail_open"],
    )


async def _finish(reservation, **usage):
    if reservation is None or reservation.settled:
        return
    reservation.settled = True
    amounts = [charge(slot, **usage) for slot in reservation.slots]
    if reservation.backend == "local":
        limiter_local.settle(reservation.slots, reservation.id, amounts)
        return
    client = get_redis()
    if client is None:
        return  # REDIS_URL was unset at run time: nowhere to settle
    # Shielded: a client that disconnects cancels the gateway's task, and its usage must still count.
    task = asyncio.ensure_future(limiter_redis.settle(client, reservation.slots, reservation.id, amounts))
    _settling.add(task)
    task.add_done_callback(functools.partial(_settled, reservation.slots, reservation.id, amounts))
    with contextlib.suppress(*_REDIS_ERRORS):
        await asyncio.shield(task)


def _settled(slots, rid, amounts, task):
    _settling.discard(task)
    if not task.cancelled() and task.exception() is not None:
        counters["settle_lost"] += 1
        _warn(
            "settle_lost",
            "a settle did not reach Redis (%r); tried again while its hold lasts (%d so far)",
            task.exception(),
            counters["settle_lost"],
        )
        _settle_later(slots, rid, amounts)


def _settle_later(slots, rid, amounts):
    global _resettling
    if len(_unsettled) >= MAX_UNSETTLED:
        return  # its hold lapses
    _unsettled.append((slots, rid, amounts, time.monotonic() + _hold_seconds()))
    loop = asyncio.get_running_loop()
    if _resettling is None or _resettling.done() or _resettling.get_loop() is not loop:
        _resettling = loop.create_task(_settle_again())


async def _settle_again():
    while _unsettled:
        await asyncio.sleep(REDIS_RETRY_SECONDS)
        client = get_redis()
        while _unsettled:
            slots, rid, amounts, give_up_at = _unsettled[0]
            if client is not None and time.monotonic() < give_up_at:
                try:
                    await limiter_redis.settle(client, slots, rid, amounts)
                except _REDIS_ERRORS:
                    break  # still away: the next round
            _unsettled.popleft()


def _headers(slots, committed, now):
    headers = {}
    for metric in ("requests", "tokens"):
        # The tightest: least left after this request; of equals, the one that resets last.
        candidates = [
            (s.capacity - committed[i], -s.end, i) for i, s in enumerate(slots) if s.metric == metric
        ]
        left, _, i = min(candidates, default=(None, None, None))
        if i is None:
            continue
        headers[f"x-ratelimit-limit-{metric}"] = str(slots[i].capacity)
        headers[f"x-ratelimit-remaining-{metric}"] = str(max(0, left))
        headers[f"x-ratelimit-reset-{metric}"] = format_reset(_seconds_until(slots[i].end, now))
    return headers


def _seconds_until(end, now):
    return max(1, math.ceil(end - now))


def _warn(event, message, *args):
    # One line a minute per kind of trouble: an outage must not flood the logs.
    now = time.monotonic()
    if now - _warned_at.get(event, -math.inf) >= WARN_EVERY_SECONDS:
        _warned_at[event] = now
        log.warning(message, *args)
