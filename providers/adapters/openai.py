"""OpenAI's wire format, spoken by OpenAI, Azure OpenAI, Ollama and OpenAI-compatible servers."""

import orjson

from llmproxy import tracing
from providers import http
from providers.adapters.base import RETRYABLE_STATUSES, Adapter, RouteTarget, UpstreamError

_PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


def parse_retry_after(value):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds <= 3600 else None


def upstream_error_from_response(status, content: bytes, headers) -> UpstreamError:
    message = None
    try:
        payload = orjson.loads(content)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
    except orjson.JSONDecodeError:
        pass
    if not message:
        message = content[:200].decode("utf-8", "replace") or f"HTTP {status}"
    return UpstreamError(
        status,
        f"upstream returned {status}: {message}",
        retryable=status in RETRYABLE_STATUSES or status >= 500,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )


async def post_json(url: str, content: bytes, headers: dict) -> dict:
    """POST and read the JSON object answered; an error status or anything else as an UpstreamError."""
    status, body, response_headers = await http.post(url, content, headers)
    if status >= 400:
        # Anthropic's error body ({"type": "error", "error": {"type", "message"}}) reads like OpenAI's.
        raise upstream_error_from_response(status, body, response_headers)
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamError(502, "upstream answered with invalid JSON", retryable=True)
    if not isinstance(answer, dict):
        raise UpstreamError(502, "upstream answered with an unexpected JSON value", retryable=True)
    return answer


class OpenAIAdapter(Adapter):
    auth_header = "authorization"

    def url(self, target: RouteTarget, endpoint: str) -> str:
        return target.provider.base_url.rstrip("/") + _PATHS[endpoint]

    def headers(self, target: RouteTarget) -> dict:
        headers = {"content-type": "application/json", "accept": "application/json"}
        credential = target.provider.credential()
        if credential:
            if self.auth_header == "authorization":
                headers["authorization"] = f"Bearer {credential}"
            else:
                headers[self.auth_header] = credential
        headers.update(target.provider.extra_headers)
        tracing.inject_headers(headers)  # the current upstream attempt's traceparent
        return headers

    def payload(self, target: RouteTarget, body: dict) -> bytes:
        return orjson.dumps({**body, "model": target.upstream_model})

    async def complete(self, target, endpoint, body):
        return await post_json(self.url(target, endpoint), self.payload(target, body), self.headers(target))

    async def stream(self, target, endpoint, body):
        from llmproxy.gateway.sse import SSEParser

        url, content, headers = self.url(target, endpoint), self.payload(target, body), self.headers(target)
        headers["accept"] = "text/event-stream"
        async with http.post_stream(url, content, headers) as response:
            if response.status >= 400:
                raise upstream_error_from_response(response.status, await response.read(), response.headers)
            parser = SSEParser()
            started = finished = False
            try:
                async for raw in http.chunks(response):
                    for event in parser.feed(raw):
                        if event.data == "[DONE]":
                            finished = True
                            continue
                        chunk = _decode_chunk(event.data, started)
                        if chunk is not None:
                            started = True
                            yield chunk
            except UpstreamError as error:  # the transport failed (or the upstream sent an error event)
                error.mid_stream = error.mid_stream or started
                error.retryable = error.retryable and not started
                raise
            for event in parser.close():
                if event.data == "[DONE]":
                    finished = True
                else:
                    chunk = _decode_chunk(event.data, started)
                    if chunk is not None:
                        yield chunk
            if not finished:
                raise UpstreamError(
                    502,
                    "upstream stream ended before [DONE]",
                    retryable=not started,
                    mid_stream=started,
                    kind="truncated_stream",
                )


def _decode_chunk(data: str, started: bool):
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            502, "upstream sent an invalid stream event", retryable=not started, mid_stream=started
        )
    if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamError(
            502, f"upstream stream error: {message}", retryable=not started, mid_stream=started
        )
    return chunk if isinstance(chunk, dict) else None


class AzureOpenAIAdapter(OpenAIAdapter):
    """Azure: deployment URLs, api-version, credential in the api-key header."""

    auth_header = "api-key"

    def url(self, target, endpoint):
        base = target.provider.base_url.rstrip("/")
        if base.endswith("/openai/v1"):
            # Azure's v1 API takes the model in the body, like OpenAI.
            return base + _PATHS[endpoint]
        version = target.provider.api_version or "2024-10-21"
        return f"{base}/openai/deployments/{target.upstream_model}{_PATHS[endpoint]}?api-version={version}"
