"""Anthropic's Messages API (``POST {base}/v1/messages``), for the provider kind ``anthropic``.

The gateway's OpenAI chat requests are translated to the Messages API and the
answers back (providers.translate). A ``NativeRequest`` body (what a
/v1/messages client sent) passes through instead: the answer comes back as
Anthropic sent it, the stream as its event dicts (each one's ``type`` is its
SSE event name). Being a body rather than an endpoint, it takes the same
router path (strategy, retries, fallbacks) as every chat request, even when a
model's routes mix Anthropic and OpenAI-speaking providers.
"""

import orjson
from django.conf import settings

from llmproxy import tracing
from providers import http
from providers.adapters.base import Adapter, RouteTarget, UpstreamError
from providers.adapters.openai import post_json, upstream_error_from_response
from providers.translate import anthropic_to_openai, openai_to_anthropic
from providers.translate.common import TranslationError

API_VERSION = "2023-06-01"


class NativeRequest(dict):
    """A Messages API request to send as it is (the model aside), with the client's beta flags."""

    def __init__(self, body: dict, *, beta: str = ""):
        super().__init__(body)
        self.beta = beta


# The status an error event stands for, when it arrives in a stream that already said 200.
_ERROR_EVENT_STATUSES = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "invalid_request_error": 400,
}


class AnthropicAdapter(Adapter):
    endpoints = frozenset({"chat"})

    def url(self, target: RouteTarget, path="/v1/messages") -> str:
        base = target.provider.base_url.rstrip("/")
        # The SDK's base URL has no /v1; an operator who adds it still means the same API.
        if base.endswith("/v1"):
            base = base[:-3]
        return base + path

    def headers(self, target: RouteTarget, body=None, accept="application/json") -> dict:
        headers = {"content-type": "application/json", "accept": accept, "anthropic-version": API_VERSION}
        if isinstance(body, NativeRequest) and body.beta:
            # Features the client opted into; an operator's own anthropic-beta header overrides them.
            headers["anthropic-beta"] = body.beta
        credential = target.provider.credential()
        if credential:
            headers["x-api-key"] = credential
        headers.update(target.provider.extra_headers)
        tracing.inject_headers(headers)  # the current upstream attempt's traceparent
        return headers

    def payload(self, target: RouteTarget, body: dict, *, stream: bool) -> bytes:
        if isinstance(body, NativeRequest):
            request = dict(body)
        else:
            try:
                request = openai_to_anthropic.messages_request(
                    body, default_max_tokens=settings.LLMPROXY_DEFAULT_MAX_OUTPUT_TOKENS
                )
            except TranslationError as exc:
                raise UpstreamError(400, str(exc), retryable=False, kind="unsupported_request")
        request["model"] = target.upstream_model
        if stream:
            request["stream"] = True
        else:
            request.pop("stream", None)
        return orjson.dumps(request)

    async def complete(self, target, endpoint, body):
        message = await post_json(
            self.url(target), self.payload(target, body, stream=False), self.headers(target, body)
        )
        return message if isinstance(body, NativeRequest) else anthropic_to_openai.chat_completion(message)

    async def count_tokens(self, target, body) -> dict:
        url = self.url(target, "/v1/messages/count_tokens")
        content = orjson.dumps({**body, "model": target.upstream_model})
        return await post_json(url, content, self.headers(target, body))

    async def stream(self, target, endpoint, body):
        from llmproxy.gateway.sse import SSEParser

        content = self.payload(target, body, stream=True)
        headers = self.headers(target, body, "text/event-stream")
        translator = None if isinstance(body, NativeRequest) else anthropic_to_openai.ChunkStream()
        async with http.post_stream(self.url(target), content, headers) as response:
            if response.status >= 400:
                raise upstream_error_from_response(response.status, await response.read(), response.headers)
            parser = SSEParser()
            started = finished = False
            try:
                async for raw in http.chunks(response):
                    for sse_event in parser.feed(raw):
                        event = _decode_event(sse_event, started)
                        if event is None:
                            continue
                        finished = finished or event["type"] == "message_stop"
                        # One event in, its chunks out at once: nothing waits for the next event.
                        for item in (event,) if translator is None else translator.feed(event):
                            started = True
                            yield item
            except UpstreamError as error:  # the transport failed (or the upstream sent an error event)
                error.mid_stream = error.mid_stream or started
                error.retryable = error.retryable and not started
                raise
            if not finished:
                raise UpstreamError(
                    502,
                    "upstream stream ended before message_stop",
                    retryable=not started,
                    mid_stream=started,
                    kind="truncated_stream",
                )


def _decode_event(sse_event, started):
    try:
        event = orjson.loads(sse_event.data)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            502, "upstream sent an invalid stream event", retryable=not started, mid_stream=started
        )
    if not isinstance(event, dict):
        return None
    event.setdefault("type", sse_event.event)
    if event["type"] == "error":
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        kind = error.get("type") or "api_error"
        raise UpstreamError(
            _ERROR_EVENT_STATUSES.get(kind, 502),
            f"upstream stream error: {error.get('message') or kind}",
            retryable=not started,
            mid_stream=started,
            kind=kind,
        )
    return event
