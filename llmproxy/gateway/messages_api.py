"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's API in front of any route.

The request path is the chat path's (ProxyConsumer: key, quota, routes, usage
record, metrics), fed with the OpenAI translation of the Anthropic request.
What reaches the upstream depends on the route that serves it:

- kind ``anthropic``: the client's own request, passed through (the model
  replaced, ``max_tokens`` cut when a quota requires it), and the answer or
  the stream's events passed back as they are, with the public model name;
- any other kind: the OpenAI translation, and the answer translated back to
  an Anthropic message or event stream.

Either way the tenant's response guardrails see the Anthropic message or
events the client is about to get: text blocks masked, a match split across
two text deltas still masked (an EventMasker holds a little text back), a
blocked plain answer a 400 and a blocked stream a final ``error`` event.

Errors come in Anthropic's shape (``error_shape``).
"""

import asyncio
import time

import orjson

from llmproxy.gateway import sse
from llmproxy.gateway.errors import GatewayError, bad_request
from llmproxy.gateway.proxy import AuthenticatedConsumer, ProxyConsumer
from llmproxy.gateway.validation import decode_json, is_int
from llmproxy.guardrails.engine import GuardrailBlocked
from providers.adapters.anthropic import NativeRequest
from providers.adapters.base import UpstreamError
from providers.adapters.registry import adapter_for
from providers.router import call
from providers.translate import anthropic_to_openai, openai_to_anthropic
from providers.translate.common import TranslationError
from quotas.tokens import count_request_input

NATIVE = "anthropic"
_ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
}


def validate_request(body: dict, *, counting=False):
    """Enough of Anthropic's own checks to answer 400 before any upstream is asked."""
    model = body.get("model")
    if model is None:
        raise bad_request("model: Field required", param="model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("model: Input should be a non-empty string", param="model")
    if not counting:
        if "max_tokens" not in body:
            raise bad_request("max_tokens: Field required", param="max_tokens")
        if not is_int(body["max_tokens"]) or body["max_tokens"] < 1:
            raise bad_request("max_tokens: Input should be an integer of at least 1", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: Input should be a non-empty list", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise bad_request(f"messages.{i}.role: Input should be 'user' or 'assistant'", param="messages")
        content = message.get("content")
        blocks_ok = isinstance(content, list) and all(
            isinstance(block, dict) and isinstance(block.get("type"), str) for block in content
        )
        if not isinstance(content, str) and not blocks_ok:
            raise bad_request(
                f"messages.{i}.content: Input should be a string or a list of content blocks",
                param="messages",
            )
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise bad_request("system: Input should be a string or a list of text blocks", param="system")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise bad_request("stream: Input should be a valid boolean", param="stream")
    for name in ("temperature", "top_p", "top_k"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise bad_request(f"{name}: Input should be a number", param=name)
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise bad_request("stop_sequences: Input should be a list of strings", param="stop_sequences")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise bad_request("tools: Input should be a list of tools", param="tools")
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, dict):
        raise bad_request("tool_choice: Input should be an object", param="tool_choice")


def chat_translation(body: dict) -> dict:
    try:
        return anthropic_to_openai.chat_request(body)
    except TranslationError as exc:
        raise bad_request(str(exc))


def client_beta(headers) -> str:
    """The beta features the client asked for, passed on to an Anthropic upstream."""
    return headers.get("anthropic-beta", b"").decode("latin-1")


def _error_event(error_type: str, message: str) -> bytes:
    kind = error_type if error_type in _ERROR_TYPES else "api_error"
    return sse.frame(orjson.dumps({"type": "error", "error": {"type": kind, "message": message}}), "error")


def _frame(event: dict) -> bytes:
    return sse.frame(orjson.dumps(event), event["type"])


class MessagesConsumer(ProxyConsumer):
    # Anthropic's surface keeps its own wire format end to end;
    # the response cache serves the OpenAI endpoints.
    response_cache = False
    # Quotas, metering and OpenAI-speaking routes all see the chat translation.
    endpoint = "chat"
    record_endpoint = "messages"
    error_shape = "anthropic"

    def parse_payload(self, body):
        native = decode_json(body)
        validate_request(native)
        self.native = native
        return chat_translation(native)

    def check_request_guardrails(self, guard, payload):
        # An Anthropic route is sent the client's own request: mask it as well as the translation.
        self.native = guard.check_anthropic_request(self.native)
        return super().check_request_guardrails(guard, payload)

    async def call_upstream(self, targets, upstream_body, stream):
        # The quota may have cut max_tokens in the translation; the passed-through request must say the same.
        native = NativeRequest(
            {**self.native, "max_tokens": upstream_body["max_tokens"]}, beta=client_beta(self.request_headers)
        )
        return await call(
            targets,
            self.endpoint,
            stream=stream,
            body_for=lambda target: native if target.provider.kind == NATIVE else upstream_body,
            model_allowed=self.key_record.allows_model,
        )

    async def _relay_answer(self, result, state, model):
        answer = result.answer
        if result.target.provider.kind == NATIVE:
            state.meter.observe_answer(anthropic_to_openai.chat_completion(answer))
            message = {**answer, "model": model}
        else:
            state.meter.observe_answer(answer)
            input_tokens, output_tokens = state.meter.finish()
            message = openai_to_anthropic.message(
                answer, model=model, input_tokens=input_tokens, output_tokens=output_tokens
            )
        if state.guard is not None:
            # After metering: a blocked answer's tokens were spent all the same.
            state.guard.check_anthropic_answer(message)
        state.status = 200
        state.ttfb_ms = (time.perf_counter() - self.started_at) * 1000
        await self.send_json(200, orjson.dumps(message), self.ratelimit_headers, result.upstream_ms)

    async def _relay_stream(self, result, state, client_wants_usage, model):
        relay = (_PassThrough if result.target.provider.kind == NATIVE else _Translation)(model, state.meter)
        headers = {**self.ratelimit_headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
        await self.start_response(200, b"text/event-stream", headers, result.upstream_ms)
        state.status = 200
        send = self.send
        budget = state.output_budget
        if budget is not None:
            state.meter.count_output_as_it_streams()
        # Response rules: text deltas masked as they pass, a little text held back across events.
        masker = state.guard.anthropic_stream() if state.guard is not None else None
        try:
            item = result.first_chunk
            while True:
                for event in _masked(masker, relay.feed(item)):
                    await send({"type": "http.response.body", "body": _frame(event), "more_body": True})
                    if state.ttfb_ms is None:
                        state.ttfb_ms = (time.perf_counter() - self.started_at) * 1000
                if budget is not None and state.meter.streamed_output_tokens > budget:
                    # An upstream that ignores max_tokens must not overspend the budget.
                    state.error_type = "quota_exceeded"
                    cut = _error_event(
                        "rate_limit_error",
                        "Quota exceeded: the answer reached the remaining token budget and was cut off.",
                    )
                    await send({"type": "http.response.body", "body": cut, "more_body": False})
                    return
                try:
                    item = await result.chunks.__anext__()
                except StopAsyncIteration:
                    break
            closing = list(_masked(masker, relay.finish()))
            if masker is not None:
                closing.extend(masker.finish())
            body = b"".join(_frame(event) for event in closing)
            await send({"type": "http.response.body", "body": body, "more_body": False})
        except GuardrailBlocked as exc:
            # The answer stops before the match: Anthropic's error event naming the rule, no message_stop.
            state.error_type = exc.code
            await send(
                {
                    "type": "http.response.body",
                    "body": sse.frame(exc.anthropic_body(), "error"),
                    "more_body": False,
                }
            )
        except UpstreamError as exc:
            # Anthropic's own way to end a broken stream: an error event, never a message_stop.
            state.error_type = "upstream_stream_error"
            await send(
                {
                    "type": "http.response.body",
                    "body": _error_event(exc.kind, exc.message),
                    "more_body": False,
                }
            )
        finally:
            await result.chunks.aclose()


def _masked(masker, events):
    """``events`` as the response guardrails let them out (all of them when none apply)."""
    if masker is None:
        yield from events
        return
    for event in events:
        yield from masker.filter_event(event)


class _PassThrough:
    """An Anthropic upstream's events, forwarded as they are; metered through their OpenAI reading."""

    def __init__(self, model, meter):
        self.model = model
        self.meter = meter
        self.reading = anthropic_to_openai.ChunkStream()

    def feed(self, event):
        for chunk in self.reading.feed(event):
            self.meter.observe_chunk(chunk)
        if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
            event = {**event, "message": {**event["message"], "model": self.model}}
        return (event,)

    def finish(self):
        return ()


class _Translation:
    """An OpenAI-speaking upstream's chunks, told as Anthropic events as they arrive."""

    def __init__(self, model, meter):
        self.meter = meter
        self.events = openai_to_anthropic.EventStream(model)

    def feed(self, chunk):
        self.meter.observe_chunk(chunk)
        events = []
        if not self.events.started:
            # The real input count comes with the usage at the end; message_start carries an estimate.
            estimate = count_request_input("chat", self.meter.body)
            events.extend(self.events.start(openai_to_anthropic.message_id(chunk.get("id")), estimate))
        events.extend(self.events.feed(chunk))
        return events

    def finish(self):
        return self.events.finish(*self.meter.finish())


class CountTokensConsumer(AuthenticatedConsumer):
    """Anthropic's token count: the upstream's own for an Anthropic route, a local estimate otherwise."""

    error_shape = "anthropic"

    async def handle(self, body):
        key = await self.authenticate()
        native = decode_json(body)
        validate_request(native, counting=True)
        model = native["model"]
        targets = await self.routes_for(key, model)
        chat = chat_translation(native)
        target = targets[0]  # the first route in priority order
        count = None
        if target.provider.kind == NATIVE:
            request = NativeRequest(native, beta=client_beta(self.request_headers))
            count = await self._upstream_count(target, request)
        if count is None:
            count = count_request_input("chat", chat)
        await self.send_json(200, orjson.dumps({"input_tokens": count}))

    @staticmethod
    async def _upstream_count(target, native):
        try:
            async with asyncio.timeout(target.provider.timeout):
                answer = await adapter_for(NATIVE).count_tokens(target, native)
        except TimeoutError:
            return None
        except UpstreamError as exc:
            if exc.retryable:
                return None  # a count is an estimate anyway: the local one beats an error
            raise GatewayError(exc.status or 502, exc.message, code="upstream_rejected_request")
        count = answer.get("input_tokens")
        return count if isinstance(count, int) else None
