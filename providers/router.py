"""Choosing and calling a route: priority order, weighted shares, fallback on upstream trouble.

Routes of one public model are tried by priority (lower first); routes of
equal priority share traffic by weight. A failure worth another try (429,
5xx, timeouts, broken connections before the first byte) moves on to the
next route; the client's own errors (400, 404, 422) come back at once.
"""

import asyncio
import random
import time
from dataclasses import dataclass, field

from providers.adapters.base import RouteTarget, UpstreamError
from providers.adapters.registry import adapter_for


def order_routes(targets: list[RouteTarget], rng=random) -> list[RouteTarget]:
    ordered = []
    i = 0
    while i < len(targets):
        j = i
        while j < len(targets) and targets[j].priority == targets[i].priority:
            j += 1
        group = list(targets[i:j])
        while group:
            weights = [max(t.weight, 0) for t in group]
            if sum(weights) <= 0:
                ordered.extend(group)
                break
            pick = rng.choices(range(len(group)), weights=weights)[0]
            ordered.append(group.pop(pick))
        i = j
    return ordered


@dataclass
class Attempt:
    route_id: int
    provider: str
    upstream_model: str
    status: int
    latency_ms: float
    error: str = ""

    def as_dict(self):
        return {"route": self.route_id, "provider": self.provider, "upstream_model": self.upstream_model,
                "status": self.status, "latency_ms": round(self.latency_ms, 2), "error": self.error}


@dataclass
class CallResult:
    target: RouteTarget
    answer: dict | None = None          # a plain answer
    first_chunk: dict | None = None     # a stream's first chunk...
    chunks: object = None               # ...and the rest (async iterator)
    upstream_ms: float = 0.0            # time spent waiting on the upstream before the answer/first chunk
    attempts: list = field(default_factory=list)


class AllRoutesFailed(Exception):
    def __init__(self, last: UpstreamError, attempts: list):
        super().__init__(last.message)
        self.last = last
        self.attempts = attempts


async def _attempt(target, endpoint, body, stream):
    adapter = adapter_for(target.provider.kind)
    if adapter is None or endpoint not in adapter.endpoints:
        raise UpstreamError(502, f"provider kind {target.provider.kind!r} cannot serve this endpoint",
                            retryable=True, kind="unsupported")
    if not stream:
        return await adapter.complete(target, endpoint, body), None, None
    chunks = adapter.stream(target, endpoint, body)
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        raise UpstreamError(502, "upstream stream was empty", retryable=True)
    except BaseException:
        await chunks.aclose()
        raise
    return None, first, chunks


async def call(targets: list[RouteTarget], endpoint: str, body_for, *, stream: bool) -> CallResult:
    """Try the routes in order. ``body_for(target)`` gives the body to send to that route."""
    attempts = []
    last = None
    waited = 0.0
    for target in order_routes(targets):
        started = time.perf_counter()
        try:
            # The provider's timeout bounds one attempt: to the last byte of a
            # plain answer, to the first chunk of a stream.
            async with asyncio.timeout(target.provider.timeout):
                answer, first, chunks = await _attempt(target, endpoint, body_for(target), stream)
        except TimeoutError:
            error = UpstreamError(504, f"upstream {target.provider.name} timed out after "
                                       f"{target.provider.timeout:g}s", retryable=True, timeout=True,
                                  kind="timeout")
        except UpstreamError as exc:
            error = exc
        else:
            elapsed = (time.perf_counter() - started) * 1000
            attempts.append(Attempt(target.id, target.provider.name, target.upstream_model, 200, elapsed))
            return CallResult(target, answer, first, chunks, waited + elapsed, attempts)
        elapsed = (time.perf_counter() - started) * 1000
        waited += elapsed
        attempts.append(Attempt(target.id, target.provider.name, target.upstream_model, error.status, elapsed,
                                error.message[:200]))
        last = error
        if not error.retryable:
            break
    if last is None:
        last = UpstreamError(503, "no route is available for this model", retryable=False)
    raise AllRoutesFailed(last, attempts)
