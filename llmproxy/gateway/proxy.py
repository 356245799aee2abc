"""The request path of the proxied endpoints: key, body, model, quota, route, answer, record.

1. keys:      the key from the per-process cache (keys.lookup)
2. body:      decoded and checked (validation)
3. model:     allowed for this key and tenant (403), routed for this tenant (404)
4. quotas:    one atomic reservation for every applicable limit (429)
5. providers: routes tried in order with fallback (providers.router)
6. answer:    a plain JSON body, or SSE chunks forwarded as they arrive
7. account:   the reservation settled, one usage record buffered, metrics counted
"""

import asyncio
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal

import orjson
from django.conf import settings

from keys.lookup import AuthFailure, KeyRecord, authenticate
from llmproxy import metrics, tracing
from llmproxy.gateway import auth_throttle, response_cache, sse
from llmproxy.gateway.consumers import GatewayConsumer
from llmproxy.gateway.errors import GatewayError, upstream_error_status
from llmproxy.gateway.metering import Meter
from llmproxy.gateway.request_limits import apply_request_limits
from llmproxy.gateway.usage import UsageRecord, accepting, recorder
from llmproxy.gateway.validation import VALIDATORS, decode_json
from llmproxy.guardrails.cache import guard_for
from llmproxy.guardrails.engine import GuardrailBlocked
from llmproxy.logging_json import log_request
from providers import routing_table
from providers.adapters.base import UpstreamError
from providers.router import AllRoutesFailed, call

logger = logging.getLogger(__name__)

# nginx's convention for "the client closed the connection before the answer ended".
CLIENT_CLOSED = 499


def key_from_headers(headers: dict) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in ("api-key", "x-api-key"):
        value = headers.get(name)
        if value:
            value = value.decode("latin-1").strip()
            if value:
                return value
    return None


class RequestState:
    """What one request did, for the usage record and the metrics."""

    __slots__ = (
        "key",
        "model",
        "status",
        "stream",
        "target",
        "meter",
        "error_type",
        "attempts",
        "ttfb_ms",
        "reservation",
        "cache_hit",
        "output_budget",
        "cache_key",
        "cache_lock",
        "cache_ttl",
        "guard",
    )

    def __init__(self):
        self.key: KeyRecord | None = None
        self.model = ""
        self.status = 0
        self.stream = False
        self.target = None
        self.meter: Meter | None = None
        self.error_type = ""
        self.attempts = []
        self.ttfb_ms = None
        self.reservation = None
        self.cache_hit = False
        self.output_budget = None  # output tokens a stream may use before a quota cuts it off
        self.cache_key = None  # where to store the answer (None: the cache is off or bypassed)
        self.cache_lock = None
        self.cache_ttl = 0
        self.guard = None  # the tenant's guardrails for this request, when any apply


class AuthenticatedConsumer(GatewayConsumer):
    async def authenticate(self) -> KeyRecord:
        client = self.scope.get("client")
        ip = client[0] if client else ""
        wait = auth_throttle.retry_after(ip)
        if wait is not None:
            raise GatewayError(
                429,
                "Too many failed authentications from this address; try again later.",
                code="auth_throttled",
                headers={"retry-after": str(wait)},
            )
        try:
            return await authenticate(key_from_headers(self.request_headers))
        except AuthFailure as exc:
            auth_throttle.failed(ip, exc)
            raise GatewayError(401, str(exc), code="invalid_api_key")

    async def routes_for(self, key: KeyRecord, model: str):
        """The tenant's routes for ``model``: 403 when this key may not use it, 404 when it has none."""
        if not key.allows_model(model):
            raise GatewayError(
                403, f"This API key may not use the model '{model}'.", param="model", code="model_not_allowed"
            )
        targets = await routing_table.routes_for(key.tenant.id, model)
        if not targets:
            raise GatewayError(
                404,
                f"The model '{model}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return targets


class ProxyConsumer(AuthenticatedConsumer):
    endpoint = "chat"
    streamable = True
    # The endpoint named in usage records, when it is not ``endpoint`` (/v1/messages is served as chat).
    record_endpoint = None
    # Answers of this endpoint may come from the tenant's response cache.
    response_cache = True

    async def handle(self, body):
        state = RequestState()
        self.ratelimit_headers = {}
        with tracing.request_span(self.endpoint, self.scope, self.request_headers, self.request_id):
            try:
                await self._proxy(body, state)
            except GatewayError as exc:
                state.status = exc.status
                state.error_type = state.error_type or exc.code or exc.type
                if not self.response_started:
                    await self.send_error(exc, self.answer_headers(state))
            except asyncio.CancelledError:
                state.status = CLIENT_CLOSED
                state.error_type = "client_disconnected"
                raise
            finally:
                if state.cache_lock is not None:
                    await state.cache_lock.release()
                await self._account(state)

    async def _proxy(self, body, state: RequestState):
        if not accepting():
            # The usage spool is full and the operator chose to refuse rather than lose records.
            raise GatewayError(
                503,
                "The proxy cannot record usage right now; retry shortly.",
                code="usage_backlog_full",
                headers={"retry-after": "5"},
            )
        with tracing.span("llmproxy.key_lookup"):
            state.key = self.key_record = key = await self.authenticate()
        payload = self.parse_payload(body)
        state.model = model = payload["model"]
        state.stream = stream = self.streamable and payload.get("stream") is True
        tenant = key.tenant
        if tenant.max_input_tokens or tenant.max_output_tokens or tenant.allowed_parameters:
            payload = apply_request_limits(tenant, self.endpoint, payload)
        state.guard = guard = await guard_for(key, model, self.request_id)
        if guard is not None:
            # A blocked prompt is a 400 (before 403/404, the cache and the quota); a masked one
            # is what the cache key, the quota and the upstream see.
            payload = self.check_request_guardrails(guard, payload)
        targets = await self.routes_for(key, model)
        state.meter = Meter(self.endpoint, payload)
        client_wants_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        if self.response_cache and key.tenant.cache_ttl_seconds > 0:
            with tracing.span("llmproxy.cache") as span:
                hit = await self._cache_lookup(key, payload, state)
                span.set_attribute("llmproxy.cache_hit", hit is not None)
            if hit is not None:
                await self._reserve(key, payload, targets, state, cache_hit=True)
                await self._relay_cached(hit, state, client_wants_usage, model)
                return
        upstream_body = await self._reserve(key, payload, targets, state)
        if stream:
            # Ask for usage even when the client did not; that chunk is removed again below.
            upstream_body["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        try:
            result = await self.call_upstream(targets, upstream_body, stream)
        except AllRoutesFailed as failed:
            state.attempts = [a.as_dict() for a in failed.attempts]
            raise self._upstream_failure(failed.last)
        state.target = result.target
        state.attempts = [a.as_dict() for a in result.attempts]
        if stream:
            result.chunks = _StallGuard(result.chunks, result.target.provider)
            with tracing.span("llmproxy.stream"):
                await self._relay_stream(result, state, client_wants_usage, model)
        else:
            await self._relay_answer(result, state, model)

    def parse_payload(self, body: bytes) -> dict:
        """The request as an OpenAI body of ``self.endpoint``, or a 400."""
        payload = decode_json(body)
        VALIDATORS[self.endpoint](payload)
        return payload

    def check_request_guardrails(self, guard, payload: dict) -> dict:
        """The payload with the request rules applied: masked, or GuardrailBlocked."""
        return guard.check_request(self.endpoint, payload)

    async def call_upstream(self, targets, upstream_body: dict, stream: bool):
        # A fallback model must be one this key may use too.
        return await call(
            targets,
            self.endpoint,
            lambda target: upstream_body,
            stream=stream,
            model_allowed=self.key_record.allows_model,
        )

    async def _reserve(self, key: KeyRecord, payload: dict, targets, state, cache_hit=False) -> dict:
        """Reserve quota (when limits apply) and return the body to send upstream.

        A cache hit counts as a request and costs no tokens.
        """
        upstream_body = dict(payload)
        if not key.limits:
            return upstream_body
        from quotas import limiter

        requested = payload.get("max_completion_tokens") or payload.get("max_tokens")
        if cache_hit:
            ask = limiter.Ask(
                input_tokens=0, max_output_tokens=0, input_price=Decimal(0), output_price=Decimal(0)
            )
        else:
            ask = limiter.Ask(
                input_tokens=_count_input(self.endpoint, payload),
                max_output_tokens=requested
                or (0 if self.endpoint == "embeddings" else settings.LLMPROXY_DEFAULT_MAX_OUTPUT_TOKENS),
                input_price=max(t.input_price for t in targets),
                output_price=max(t.output_price for t in targets),
            )
        try:
            with tracing.span("llmproxy.quota"):
                decision = await limiter.reserve(
                    list(key.limits), ask, redis_down_policy=key.tenant.redis_down_policy
                )
        except limiter.LimiterUnavailable:
            raise GatewayError(503, "Quota service unavailable; try again shortly.", code="quota_unavailable")
        self.ratelimit_headers = decision.headers
        if not decision.admitted:
            denied = decision.denied
            raise GatewayError(
                429,
                f"Quota exceeded: {denied.scope} limit of {denied.limit.normalize():f} {denied.metric} per "
                f"{denied.period}. Retry after {decision.retry_after}s.",
                code="quota_exceeded",
                headers={"retry-after": str(decision.retry_after)},
            )
        state.reservation = decision.reservation
        if cache_hit:
            return upstream_body
        if settings.LLMPROXY_QUOTA_CUT_STREAMS:
            state.output_budget = await limiter.remaining_tokens(decision.reservation)
        if self.endpoint != "embeddings" and decision.output_tokens < ask.max_output_tokens:
            # Cut the answer down so it cannot overspend the tightest limit.
            field = "max_completion_tokens" if "max_completion_tokens" in payload else "max_tokens"
            upstream_body[field] = decision.output_tokens
        return upstream_body

    def _upstream_failure(self, error: UpstreamError) -> GatewayError:
        if not error.retryable and 400 <= error.status < 500:
            # The client's own mistake (400, 404, 422): its status and the upstream's message.
            return GatewayError(error.status, error.message, code="upstream_rejected_request")
        status = 504 if error.timeout else upstream_error_status(error.status)
        return GatewayError(status, error.message, code=error.kind)

    async def _relay_answer(self, result, state, model):
        answer = result.answer
        if "model" in answer:
            answer["model"] = model
        state.meter.observe_answer(answer)
        if state.guard is not None:
            state.guard.check_answer(self.endpoint, answer)
        state.status = 200
        state.ttfb_ms = (time.perf_counter() - self.started_at) * 1000
        await self.send_json(200, orjson.dumps(answer), self.answer_headers(state), result.upstream_ms)
        if state.cache_key is not None:
            await response_cache.store(state.cache_key, answer, state.cache_ttl)

    async def _relay_stream(self, result, state, client_wants_usage, model):
        meter = state.meter
        headers = self.answer_headers(state)
        headers["cache-control"] = "no-cache"
        assembler = response_cache.StreamAssembler() if state.cache_key is not None else None
        headers["x-accel-buffering"] = "no"
        await self.start_response(200, b"text/event-stream", headers, result.upstream_ms)
        state.status = 200
        send = self.send
        first = True
        budget = state.output_budget
        if budget is not None:
            meter.count_output_as_it_streams()
        # Response rules: content deltas masked in place, a little text held back across chunks.
        masker = state.guard.stream(self.endpoint) if state.guard is not None else None
        try:
            chunk = result.first_chunk
            chunks = result.chunks
            while True:
                meter.observe_chunk(chunk)
                if "model" in chunk:
                    chunk["model"] = model
                if masker is not None:
                    masker.filter_chunk(chunk)
                if assembler is not None:
                    assembler.add(chunk)
                is_usage_only = not chunk.get("choices") and chunk.get("usage") is not None
                if not is_usage_only or client_wants_usage:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": sse.frame(orjson.dumps(chunk)),
                            "more_body": True,
                        }
                    )
                    if first:
                        state.ttfb_ms = (time.perf_counter() - self.started_at) * 1000
                        first = False
                if budget is not None and meter.streamed_output_tokens > budget:
                    # An upstream that ignores max_tokens must not overspend the budget.
                    state.error_type = "quota_exceeded"
                    error = GatewayError(
                        429,
                        "Quota exceeded: the answer reached the remaining token budget and was cut off.",
                        code="quota_exceeded",
                    )
                    await send(
                        {
                            "type": "http.response.body",
                            "body": sse.frame(error.openai_body()),
                            "more_body": False,
                        }
                    )
                    return
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
            for held in masker.finish() if masker is not None else ():
                if assembler is not None:
                    assembler.add(held)
                await send(
                    {"type": "http.response.body", "body": sse.frame(orjson.dumps(held)), "more_body": True}
                )
            if client_wants_usage and not meter.usage_seen:
                await send(
                    {
                        "type": "http.response.body",
                        "body": sse.frame(self._usage_chunk(meter, model)),
                        "more_body": True,
                    }
                )
            await send({"type": "http.response.body", "body": sse.DONE, "more_body": False})
            if assembler is not None and (answer := assembler.answer()) is not None:
                # Only a complete stream is stored: failed and cut-off ones returned above.
                await response_cache.store(state.cache_key, answer, state.cache_ttl)
        except GuardrailBlocked as exc:
            # The answer stops before the match: an error event naming the rule, and no [DONE].
            state.error_type = exc.code
            await send(
                {"type": "http.response.body", "body": sse.frame(exc.openai_body()), "more_body": False}
            )
        except UpstreamError as exc:
            # Never a truncated stream that looks complete: an error event, and no [DONE].
            state.error_type = "upstream_stream_timeout" if exc.timeout else "upstream_stream_error"
            error = GatewayError(504 if exc.timeout else 502, exc.message, code=state.error_type)
            await send(
                {"type": "http.response.body", "body": sse.frame(error.openai_body()), "more_body": False}
            )
        finally:
            await result.chunks.aclose()

    def answer_headers(self, state) -> dict:
        headers = dict(self.ratelimit_headers)
        if state.key is not None and state.key.tenant.cache_ttl_seconds > 0 and self.response_cache:
            headers["x-llmproxy-cache"] = "hit" if state.cache_hit else "miss"
        return headers

    async def _cache_lookup(self, key: KeyRecord, payload: dict, state) -> dict | None:
        """A cached answer, or None after arranging for this request's answer to be stored."""
        if not response_cache.cacheable(payload, key.tenant):
            return None
        directive = response_cache.request_directive(self.request_headers)
        if directive == "no-store":
            return None
        cache_key = response_cache.cache_key(key.tenant, self.endpoint, state.model, payload)
        state.cache_key, state.cache_ttl = cache_key, key.tenant.cache_ttl_seconds
        if directive == "no-cache":
            return None
        hit = await response_cache.lookup(cache_key)
        if hit is not None:
            return hit
        # Identical requests in flight: one goes upstream, the others wait for its answer.
        lock = response_cache.Lock(cache_key)
        if await lock.acquire_or_wait(settings.LLMPROXY_CACHE_LOCK_SECONDS):
            state.cache_lock = lock
            return None
        return await response_cache.lookup(cache_key)

    async def _relay_cached(self, answer: dict, state, client_wants_usage: bool, model: str):
        state.cache_hit = True
        state.cache_key = None  # nothing to store
        if state.guard is not None:
            # A cached answer passes the response rules as a fresh one does: rules may have changed since.
            state.guard.check_answer(self.endpoint, answer)
        state.status = 200
        answer["model"] = model
        headers = self.answer_headers(state)
        if state.stream:
            headers["cache-control"] = "no-cache"
            await self.start_response(200, b"text/event-stream", headers)
            for chunk in response_cache.replay_chunks(answer, client_wants_usage):
                await self.send(
                    {"type": "http.response.body", "body": sse.frame(orjson.dumps(chunk)), "more_body": True}
                )
            await self.send({"type": "http.response.body", "body": sse.DONE, "more_body": False})
        else:
            await self.send_json(200, orjson.dumps(answer), headers)
        state.ttfb_ms = (time.perf_counter() - self.started_at) * 1000

    def _usage_chunk(self, meter, model):
        prompt, completion = meter.finish()
        return orjson.dumps(
            {
                "id": "usage",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    async def _account(self, state: RequestState):
        key = state.key
        tenant = key.tenant.slug if key else ""
        provider = "cache" if state.cache_hit else (state.target.provider.name if state.target else "")
        input_tokens = output_tokens = 0
        estimated = False
        cost = Decimal(0)
        if state.meter is not None and state.target is not None:
            input_tokens, output_tokens = state.meter.finish()
            estimated = state.meter.estimated
            cost = state.target.cost(input_tokens, output_tokens)
        record = UsageRecord(
            created_at=datetime.now(UTC),
            request_id=self.request_id,
            tenant_id=key.tenant.id if key else 0,
            api_key_id=key.id if key else None,
            key_prefix=key.prefix if key else "",
            endpoint=self.record_endpoint or self.endpoint,
            model=state.model,
            status=state.status,
            stream=state.stream,
            provider=provider,
            upstream_model=state.target.upstream_model if state.target else "",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            tokens_estimated=estimated,
            cost=cost,
            latency_ms=(time.perf_counter() - self.started_at) * 1000,
            ttfb_ms=state.ttfb_ms,
            cache_hit=state.cache_hit,
            error_type=state.error_type,
            attempts=state.attempts,
            guardrail_hits=state.guard.hits if state.guard is not None else (),
            **(_stored_text(key, state) if key else {}),
        )
        if key is not None:  # a request without a valid key has no tenant to record usage for
            recorder.add(record)
        metrics.observe_request(record, tenant=tenant, cache_missed=state.cache_key is not None)
        log_request(record, tenant=tenant)
        tracing.finish_request(record, tenant=tenant)
        # Settled after the record is buffered: whatever interrupts the settle (a
        # cancellation, a Redis error) can no longer lose the request's usage row.
        if state.reservation is not None:
            from quotas import limiter

            try:
                await limiter.settle(
                    state.reservation, input_tokens=input_tokens, output_tokens=output_tokens, cost=cost
                )
            except Exception:
                logger.exception("could not settle the quota reservation of %s", self.request_id)


class _StallGuard:
    """A stream's chunks after the first, ended by an UpstreamError when the upstream falls silent.

    The provider's timeout bounds a whole plain answer, so it bounds any one
    silence of a stream too; without this, an upstream that stops sending
    mid-stream would hold the client, the upstream connection and the quota
    reservation for the transport's read timeout (10 minutes). Only the wait
    for the upstream counts, not the time spent sending to a slow client.
    One timer per stream, moved on at most once per timeout, rather than a
    timeout per chunk (asyncio.timeout costs 4 µs a chunk).
    """

    __slots__ = ("chunks", "seconds", "provider", "_since", "_timer", "_task", "_fired")

    def __init__(self, chunks, provider):
        self.chunks = chunks
        self.seconds = provider.timeout
        self.provider = provider.name
        self._since = None  # loop time the current wait for a chunk began; None between waits
        self._timer = None
        self._task = None
        self._fired = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        loop = asyncio.get_running_loop()
        self._since = loop.time()
        if self._timer is None:
            self._task = asyncio.current_task()
            self._timer = loop.call_at(self._since + self.seconds, self._check)
        try:
            return await self.chunks.__anext__()
        except asyncio.CancelledError:
            # Ours only when no one else (the client leaving) cancelled the task as well.
            if not self._fired or self._task.uncancel() > 0:
                raise
            raise UpstreamError(
                504,
                f"upstream {self.provider} sent nothing for {self.seconds:g}s in the middle of the stream",
                retryable=False,
                timeout=True,
                kind="timeout",
                mid_stream=True,
            ) from None
        finally:
            self._since = None

    def _check(self):
        loop = self._task.get_loop()
        now = loop.time()
        if self._since is not None and now - self._since >= self.seconds:
            self._timer = None
            self._fired = True
            self._task.cancel()
            return
        # Between waits (the relay is sending) or a wait not yet long enough: look again when it could be.
        due = now + self.seconds if self._since is None else self._since + self.seconds
        self._timer = loop.call_at(due, self._check)

    async def aclose(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.chunks.aclose()


def _stored_text(key: KeyRecord, state: RequestState) -> dict:
    """Prompt and completion, only for a tenant that opted in (redacted by the usage writer)."""
    if not key.tenant.store_prompts or state.meter is None:
        return {}
    body = state.meter.body
    prompt = body.get("messages", body.get("prompt", body.get("input", "")))
    return {
        "prompt": prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode(),
        "completion": state.meter.text,
    }


def _count_input(endpoint, payload):
    from quotas.tokens import count_request_input

    return count_request_input(endpoint, payload)


class ChatCompletionsConsumer(ProxyConsumer):
    endpoint = "chat"


class CompletionsConsumer(ProxyConsumer):
    endpoint = "completions"


class EmbeddingsConsumer(ProxyConsumer):
    endpoint = "embeddings"
    streamable = False
