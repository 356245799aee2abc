"""OpenAI's wire format, spoken by OpenAI, Azure OpenAI, Ollama and OpenAI-compatible servers."""

import asyncio

import aiohttp
import httpx
import orjson

from llmproxy import tracing
from providers.adapters.base import RETRYABLE_STATUSES, Adapter, RouteTarget, UpstreamError
from providers.http import get_session

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


def _is_timeout(exc: Exception) -> bool:
    # httpx-aiohttp maps every aiohttp connection error, a refused connection
    # included, to httpx.ConnectTimeout: look at the aiohttp error underneath.
    cause = exc if isinstance(exc, aiohttp.ClientError) else exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        return isinstance(cause, (aiohttp.ServerTimeoutError, asyncio.TimeoutError))
    return isinstance(exc, httpx.TimeoutException)


def transport_error(exc: Exception) -> UpstreamError:
    if _is_timeout(exc):
        return UpstreamError(
            504, f"upstream timed out ({type(exc).__name__})", retryable=True, timeout=True, kind="timeout"
        )
    return UpstreamError(
        0, f"upstream connection failed ({type(exc).__name__})", retryable=True, kind="connection_error"
    )


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

    # aiohttp directly rather than through httpx's API: a third of the CPU per call (providers/http.py).
    async def complete(self, target, endpoint, body):
        try:
            async with get_session().post(
                self.url(target, endpoint), data=self.payload(target, body), headers=self.headers(target)
            ) as response:
                status, content, headers = response.status, await response.read(), response.headers
        except aiohttp.ClientError as exc:
            raise transport_error(exc)
        if status >= 400:
            raise upstream_error_from_response(status, content, headers)
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, "upstream answered with invalid JSON", retryable=True)
        if not isinstance(answer, dict):
            raise UpstreamError(502, "upstream answered with an unexpected JSON value", retryable=True)
        return answer

    async def stream(self, target, endpoint, body):
        from llmproxy.gateway.sse import SSEParser

        headers = self.headers(target)
        headers["accept"] = "text/event-stream"
        try:
            response = await get_session().post(
                self.url(target, endpoint), data=self.payload(target, body), headers=headers
            )
        except aiohttp.ClientError as exc:
            raise transport_error(exc)
        started = False
        complete = False
        try:
            if response.status >= 400:
                content = await response.read()
                complete = True
                raise upstream_error_from_response(response.status, content, response.headers)
            parser = SSEParser()
            finished = False
            async for raw in response.content.iter_any():
                for event in parser.feed(raw):
                    if event.data == "[DONE]":
                        finished = True
                        continue
                    chunk = _decode_chunk(event.data, started)
                    if chunk is not None:
                        started = True
                        yield chunk
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
            complete = True
        except aiohttp.ClientError as exc:
            error = transport_error(exc)
            error.mid_stream = started
            error.retryable = error.retryable and not started
            raise error
        finally:
            if complete:
                response.release()
            else:
                # Released half-read, the connection would go back to the pool and the upstream
                # would go on generating (and billing) for a client that left: close the socket.
                response.close()


def _abort(response: httpx.Response):
    # For adapters that stream through httpx's API (get_client()).
    # aiohttp hands a half-read connection back to its pool instead of closing
    # it, so the upstream would go on generating (and billing) for a client
    # that left. Closing the aiohttp response closes the socket.
    stream = response.stream
    for _ in range(4):  # httpx wraps the transport's stream in a layer or two
        raw = getattr(stream, "_aiohttp_response", None)
        if raw is not None:
            raw.close()
            return
        stream = getattr(stream, "_stream", None)


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
