"""The circuit breaker's rules in one process, and what the admin shows of a breaker.

providers.breaker applies the same rules on Redis, shared by every process;
these run when REDIS_URL is empty, and stand in while Redis is away.
"""

import time
from dataclasses import dataclass

from django.conf import settings

CLOSED, PROBE, OPEN = "closed", "probe", "open"


@dataclass(frozen=True, slots=True)
class Config:
    failures: int
    window: float
    cooldown: float
    cache_seconds: float


def config() -> Config:
    return Config(
        settings.LLMPROXY_BREAKER_FAILURES,
        settings.LLMPROXY_BREAKER_WINDOW_SECONDS,
        settings.LLMPROXY_BREAKER_COOLDOWN_SECONDS,
        settings.LLMPROXY_BREAKER_CACHE_SECONDS,
    )


@dataclass(slots=True)
class BreakerState:
    """What the admin and check_providers show of one route's breaker."""

    state: str = CLOSED  # closed, open or half-open
    failures: int = 0
    open_until: float = 0.0
    probe_until: float = 0.0

    @classmethod
    def of(cls, open_until, probe_until, window_start, failures, now, window):
        if window_start and now - window_start > window:
            failures = 0
        if not open_until:
            return cls(CLOSED, failures)
        return cls(OPEN if now < open_until else "half-open", failures, open_until, probe_until)

    def describe(self, now=None) -> str:
        now = time.time() if now is None else now
        if self.state == CLOSED:
            return f"closed ({self.failures} recent failures)" if self.failures else "closed"
        if self.state == OPEN:
            return f"open ({max(self.open_until - now, 0):.0f}s of cool-down left)"
        return "half-open (probing)" if now < self.probe_until else "half-open (next request probes)"


@dataclass(slots=True)
class _Local:
    open_until: float = 0.0
    probe_until: float = 0.0
    window_start: float = 0.0
    failures: int = 0


class LocalBreakers:
    """The same rules within one process: the default without Redis, the stand-in while it is away."""

    def __init__(self):
        self._routes: dict[int, _Local] = {}

    def acquire(self, route_id, now, lease) -> str:
        s = self._routes.get(route_id)
        if s is None or not s.open_until:
            return CLOSED
        if now < s.open_until or now < s.probe_until:
            return OPEN
        s.probe_until = now + lease
        return PROBE

    def failure(self, route_id, now, probe, cfg: Config):
        s = self._routes.setdefault(route_id, _Local())
        if probe:
            s.open_until, s.probe_until, s.failures = now + cfg.cooldown, 0.0, 0
            return
        if s.open_until:
            return
        if now - s.window_start > cfg.window:
            s.window_start, s.failures = now, 0
        s.failures += 1
        if s.failures >= cfg.failures:
            s.open_until, s.probe_until, s.failures = now + cfg.cooldown, 0.0, 0

    def success(self, route_id):
        self._routes.pop(route_id, None)

    def release(self, route_id):
        s = self._routes.get(route_id)
        if s is not None:
            s.probe_until = 0.0

    def reset(self, route_id):
        self._routes.pop(route_id, None)

    def state(self, route_id, now, cfg: Config) -> BreakerState:
        s = self._routes.get(route_id)
        if s is None:
            return BreakerState()
        return BreakerState.of(s.open_until, s.probe_until, s.window_start, s.failures, now, cfg.window)

    def clear(self):
        self._routes.clear()
