"""Choosing and calling a route: strategy, retries with backoff, fallbacks, circuit breakers, timeouts.

For one request the router walks the model's routes in the order its policy's
strategy gives (providers.strategies; default: priority, weighted within equal
priorities). Each route is tried up to the policy's max_attempts times while
its failures are worth another try (providers.retry), then the next route is
tried. When every route failed, the routes of the policy's fallback models are
tried the same way, in the order the policy names them (their own strategies
and attempts; their own fallbacks are not followed). The client's own errors
(400, 404, 422) end it at once. A route whose circuit breaker is open is
skipped (providers.breaker).

Timeouts, per attempt: the provider's timeout bounds it to the last byte of a
plain answer and to the first chunk of a stream; a provider's
first_byte_timeout, when shorter, bounds the wait for a stream's first chunk.
The policy's deadline bounds the whole call: attempts, backoffs and fallbacks.
A stream that fails before its first chunk is just a failed attempt; after it,
the caller relays the error (see llmproxy.gateway.proxy).
"""

import asyncio
import functools
import time
from dataclasses import dataclass, field

from llmproxy import tracing
from providers import breaker, routing_table, strategies
from providers.adapters.base import RouteTarget, UpstreamError
from providers.adapters.registry import adapter_for
from providers.retry import backoff_seconds, same_route_again
from providers.routing_table import DEFAULT_POLICY, RoutePolicy


@dataclass
class Attempt:
    route_id: int
    provider: str
    upstream_model: str
    status: int  # the upstream's status; 0 without one (connection error, route skipped)
    latency_ms: float
    error: str = ""
    model: str = ""  # the public model this route serves: another one for a fallback
    try_number: int = 1  # tries of this route so far, this one included
    backoff_ms: float = 0.0  # waited before this try
    breaker: str = breaker.CLOSED  # closed, probe (this try was the probe) or open (skipped)

    def as_dict(self):
        return {
            "route": self.route_id,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 2),
            "error": self.error,
            "model": self.model,
            "try": self.try_number,
            "backoff_ms": round(self.backoff_ms, 2),
            "breaker": self.breaker,
        }


@dataclass
class CallResult:
    target: RouteTarget
    answer: dict | None = None  # a plain answer
    first_chunk: dict | None = None  # a stream's first chunk...
    chunks: object = None  # ...and the rest (async iterator)
    upstream_ms: float = 0.0  # time spent on the upstream (tries and backoffs) before the answer
    attempts: list = field(default_factory=list)


class AllRoutesFailed(Exception):
    def __init__(self, last: UpstreamError, attempts: list):
        super().__init__(last.message)
        self.last = last
        self.attempts = attempts


def counts_against_route(error: UpstreamError) -> bool:
    # The route's trouble, not the client's; a route that cannot serve this
    # endpoint may serve others, so that is not held against it either.
    return (error.retryable or error.mid_stream) and error.kind != "unsupported"


async def _send(target, endpoint, body, stream):
    adapter = adapter_for(target.provider.kind)
    if adapter is None or endpoint not in adapter.endpoints:
        raise UpstreamError(
            502,
            f"provider kind {target.provider.kind!r} cannot serve this endpoint",
            retryable=True,
            kind="unsupported",
        )
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


async def attempt_once(
    target: RouteTarget, endpoint: str, body: dict, *, stream: bool, deadline_left: float | None = None
):
    """One try of one route within its timeouts: (answer, first chunk, chunks), or UpstreamError."""
    provider = target.provider
    bound, why = provider.timeout, f"upstream {provider.name} timed out after {provider.timeout:g}s"
    first_byte = getattr(provider, "first_byte_timeout", None)
    if stream and first_byte and first_byte < bound:
        bound, why = first_byte, f"upstream {provider.name} sent no first byte within {first_byte:g}s"
    if deadline_left is not None and deadline_left < bound:
        bound, why = (
            deadline_left,
            f"the request's deadline passed while waiting for upstream {provider.name}",
        )
    try:
        async with asyncio.timeout(bound):
            return await _send(target, endpoint, body, stream)
    except TimeoutError:
        raise UpstreamError(504, why, retryable=True, timeout=True, kind="timeout")


class _Watched:
    """A stream's chunks after the first: one that breaks counts against the route's breaker too.

    A class rather than an async generator: aclose() must reach the adapter's
    stream (which closes the upstream connection) even before the first
    __anext__(), and a generator that never started skips its finally.
    """

    __slots__ = ("route_id", "chunks")

    def __init__(self, route_id, chunks):
        self.route_id = route_id
        self.chunks = chunks

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.chunks.__anext__()
        except UpstreamError as error:
            if counts_against_route(error):
                await breaker.report(self.route_id, breaker.CLOSED, ok=False)
            raise

    async def aclose(self):
        await self.chunks.aclose()


class _Call:
    def __init__(self, endpoint, body_for, stream, policy: RoutePolicy):
        self.endpoint = endpoint
        self.body_for = body_for
        self.stream = stream
        self.ends_at = None if policy.deadline is None else time.monotonic() + policy.deadline
        self.attempts: list[Attempt] = []
        self.last: UpstreamError | None = None
        self.skipped = False
        self.stopped = False  # a client error, or the deadline: no further route
        self.waited = 0.0  # ms spent on failed tries and backoffs

    def time_left(self) -> float | None:
        return None if self.ends_at is None else self.ends_at - time.monotonic()

    async def model(self, model: str, targets, policy: RoutePolicy) -> CallResult | None:
        for target in strategies.order(policy.strategy, targets):
            result = await self.route(model, target, policy.max_attempts)
            if result is not None or self.stopped:
                return result
        return None

    async def route(self, model: str, target: RouteTarget, max_attempts: int) -> CallResult | None:
        backoff_ms = 0.0
        for try_number in range(1, max_attempts + 1):
            left = self.time_left()
            if left is not None and left <= 0:
                self.stopped = True
                return None
            record = functools.partial(self._record, model, target, try_number, backoff_ms)
            lease = target.provider.timeout if left is None else min(target.provider.timeout, left)
            verdict = await breaker.acquire(target.id, lease=lease + 1.0)
            if verdict == breaker.OPEN:
                self.skipped = True
                record(verdict, 0, 0.0, "circuit breaker open: route skipped")
                return None
            started = time.perf_counter()
            try:
                endpoint = self.endpoint(target) if callable(self.endpoint) else self.endpoint
                with tracing.attempt_span(target, endpoint, model, try_number) as span:
                    answer, first, chunks = await attempt_once(
                        target, endpoint, self.body_for(target), stream=self.stream, deadline_left=left
                    )
                    span.answered(first if answer is None else answer)
            except UpstreamError as error:
                elapsed = (time.perf_counter() - started) * 1000
                self.waited += elapsed
                self.last = error
                record(verdict, error.status, elapsed, error.message[:200])
                await self._failed(target, verdict, error)
                if not error.retryable:
                    self.stopped = True
                    return None
                if try_number == max_attempts or not same_route_again(error):
                    return None
                backoff = backoff_seconds(try_number, error.retry_after)
                left = self.time_left()
                if backoff is None or (left is not None and backoff >= left):
                    # A wait the upstream (Retry-After) or the deadline refuses: the next route, at once.
                    return None
                await asyncio.sleep(backoff)
                backoff_ms = backoff * 1000
                self.waited += backoff_ms
                continue
            except asyncio.CancelledError:
                if verdict == breaker.PROBE:
                    breaker.release(target.id)
                raise
            elapsed = (time.perf_counter() - started) * 1000
            record(verdict, 200, elapsed, "")
            strategies.latency.observe(target.id, elapsed)
            await breaker.report(target.id, verdict, ok=True)
            if chunks is not None:
                chunks = _Watched(target.id, chunks)
            return CallResult(target, answer, first, chunks, self.waited + elapsed, self.attempts)
        return None

    async def _failed(self, target, verdict, error):
        if counts_against_route(error):
            # A failure counts as a wait of the route's whole timeout, so that
            # least_latency tries it after the routes that answer.
            strategies.latency.observe(target.id, target.provider.timeout * 1000)
            await breaker.report(target.id, verdict, ok=False)
        elif verdict == breaker.PROBE and error.kind == "unsupported":
            breaker.release(target.id)  # nothing was sent: the next request may probe
        elif verdict == breaker.PROBE:
            # The upstream answered (the client's mistake): it is up.
            await breaker.report(target.id, verdict, ok=True)

    def _record(self, model, target, try_number, backoff_ms, verdict, status, latency_ms, error):
        where = (target.id, target.provider.name, target.upstream_model)
        self.attempts.append(
            Attempt(*where, status, latency_ms, error, model, try_number, backoff_ms, breaker=verdict)
        )

    def failure(self) -> AllRoutesFailed:
        last = self.last
        if last is None:
            if self.skipped:
                last = UpstreamError(
                    503,
                    "every route of this model is paused by its circuit breaker",
                    retryable=True,
                    kind="circuit_open",
                )
            else:
                last = UpstreamError(503, "no route is available for this model", retryable=False)
        return AllRoutesFailed(last, self.attempts)


async def call(
    targets: list[RouteTarget], endpoint, body_for, *, stream: bool, model_allowed=None
) -> CallResult:
    """Try the routes (and fallback models) until one answers.

    ``endpoint`` is 'chat', 'completions', ... or a function of the route
    giving it (routes of different wire formats); ``body_for(route)`` gives
    the body to send to that route. ``targets`` is a routing_table.Routes
    (routes with their policy and tenant); a plain list of routes is tried by
    priority, once each, without fallbacks. ``model_allowed(name)``, when
    given, vets each fallback model (the API key's allowed models).
    """
    policy = getattr(targets, "policy", DEFAULT_POLICY)
    model = targets[0].model if targets else ""
    run = _Call(endpoint, body_for, stream, policy)
    result = await run.model(model, targets, policy)
    tenant_id = getattr(targets, "tenant_id", None)
    for fallback in policy.fallback_models:
        if result is not None or run.stopped or tenant_id is None:
            break
        if model_allowed is not None and not model_allowed(fallback):
            continue
        routes = await routing_table.routes_for(tenant_id, fallback)
        result = await run.model(fallback, routes, getattr(routes, "policy", DEFAULT_POLICY))
    if result is None:
        raise run.failure()
    return result
