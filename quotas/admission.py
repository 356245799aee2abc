"""The limiter's arithmetic, shared by the Redis script and the in-process limiter.

Every counter is an integer: requests, tokens, or cost in nano-dollars
(1e-9 USD), so sums never drift. `admit` is the Python twin of the checks in
limiter_redis.RESERVE; both compute the output cap with the same IEEE doubles
(Lua numbers are doubles), so both backends decide alike to the last token.
"""

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.conf import settings

from .limiter_types import Ask, Limit
from .windows import window

NANO = Decimal(10) ** 9
_PER_TOKEN = NANO / 10**6  # USD per million tokens -> nano-dollars per token


def nano_dollars(usd, rounding=ROUND_CEILING):
    return _whole(Decimal(usd) * NANO, rounding)


def _whole(amount, rounding=ROUND_CEILING):
    return int(amount.to_integral_value(rounding))


@dataclass(frozen=True)
class Slot:
    """One limit in the window that holds NOW."""

    limit: Limit
    key: str  # the window's counters: a hash of used, held, and r:<id> -> "amount/output" per reservation
    start: int
    end: int
    capacity: int

    @classmethod
    def of(cls, limit, now):
        start, end = window(limit.period, now)
        capacity = nano_dollars(limit.limit, ROUND_FLOOR) if limit.metric == "cost" else int(limit.limit)
        # Metric and period are in the name so editing a limit's shape starts from zero
        # instead of mixing units or windows under one key.
        prefix = settings.LLMPROXY_REDIS_KEY_PREFIX
        key = f"{prefix}:q:{{t{limit.tenant_id}}}:{limit.id}:{limit.metric}:{limit.period}:{start}"
        return cls(limit, key, start, end, capacity)

    @property
    def deadlines_key(self):
        # Reservation id -> the time its hold lapses (a sorted set), to reclaim holds never settled.
        return self.key + ":x"

    @property
    def metric(self):
        return self.limit.metric

    def ttl(self, now, hold_seconds):
        # Kept past the window's end for as long as a reservation may still be settled into it.
        return math.ceil(self.end - now) + hold_seconds


@dataclass(frozen=True)
class Plan:
    input_tokens: int
    max_output: int
    need_output: int  # 1, or 0 when the request produces no output (embeddings)
    input_cost: int  # nano-dollars, rounded up
    output_price: float  # nano-dollars per output token

    @classmethod
    def of(cls, ask: Ask):
        input_tokens = max(0, int(ask.input_tokens))
        max_output = max(0, int(ask.max_output_tokens))
        return cls(
            input_tokens=input_tokens,
            max_output=max_output,
            need_output=min(1, max_output),
            input_cost=_whole(input_tokens * Decimal(ask.input_price) * _PER_TOKEN),
            output_price=float(Decimal(ask.output_price) * _PER_TOKEN),
        )


@dataclass(frozen=True)
class Outcome:
    """What a backend answers: committed is used + held per slot, after the reservation when admitted."""

    admitted: bool
    output: int
    committed: list
    failed: list  # indexes of the slots that refused


@dataclass
class Reservation:
    backend: str  # "redis" or "local": where settle() must go
    id: str
    slots: tuple
    output_tokens: int
    settled: bool = False


def admit(slots, committed, plan):
    """(output, failed, holds): holds is None when some slot refuses."""
    output = plan.max_output
    failed = []
    free = []
    for i, slot in enumerate(slots):
        room_left = slot.capacity - committed[i]
        free.append(room_left)
        if slot.metric == "requests":
            ok = room_left >= 1
        elif slot.metric == "tokens":
            room = room_left - plan.input_tokens
            ok = room >= plan.need_output
            if ok:
                output = min(output, room)
        else:
            room = room_left - plan.input_cost
            ok = room >= 0
            if ok and plan.output_price > 0:
                fits = math.floor(room / plan.output_price)
                ok = fits >= plan.need_output
                if ok:
                    output = min(output, fits)
        if not ok:
            failed.append(i)
    if failed:
        return 0, failed, None
    return output, [], [hold(slot, plan, output, free[i]) for i, slot in enumerate(slots)]


def hold(slot, plan, output, room_left):
    if slot.metric == "requests":
        return 1
    if slot.metric == "tokens":
        return plan.input_tokens + output
    # Rounding the output's cost up must not push the hold past what is left.
    return min(plan.input_cost + math.ceil(output * plan.output_price), room_left)


def charge(slot, *, requests, tokens, cost_nano):
    return {"requests": requests, "tokens": tokens, "cost": cost_nano}[slot.metric]


def in_units(metric, amount):
    """A counter as the admin shows it: USD for cost."""
    return Decimal(amount) / NANO if metric == "cost" else amount
