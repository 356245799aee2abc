"""A local upstream in the wire formats of OpenAI, Azure and Anthropic: ``python -m providers.mock_server``.

For the end-to-end tests, the benchmark and trying the proxy without a real
provider. Answers come from providers.mock_engine, driven by parameters in
the model name (``mock-1?chunks=3&chunk_delay_ms=50&fail_after_chunks=2``);
``tool=NAME`` answers a chat with a call of that tool (providers.mock_tools).
Anthropic's ``/v1/messages`` is served by providers.mock_anthropic.
It remembers the requests it received and how each stream ended, at
``GET /_mock/requests`` and ``GET /_mock/streams`` (``DELETE`` clears both).
On the OpenAI and Azure endpoints, a request's ``outcome`` says how its
answer ended: ``pending``, ``answered``, ``cancelled`` (the proxy went away
first: it closed the connection) or ``broken`` (a fault cut it on purpose).
"""

import argparse
import asyncio
import contextlib

import orjson
from aiohttp import web

from providers import mock_engine, mock_tools
from providers.mock_anthropic import AnthropicEndpoints

_ENDPOINTS = {"chat/completions": "chat", "completions": "completions", "embeddings": "embeddings"}


class MockUpstream:
    def __init__(self):
        self.requests = []
        self.streams = []
        self.seen = {}  # model name -> requests received, for fail_first

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/{endpoint:chat/completions|completions|embeddings}", self.openai)
        app.router.add_post(
            "/openai/deployments/{deployment}/{endpoint:chat/completions|completions|embeddings}", self.azure
        )
        anthropic = AnthropicEndpoints(self)
        app.router.add_post("/v1/messages", anthropic.messages)
        app.router.add_post("/v1/messages/count_tokens", anthropic.count_tokens)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/_mock/requests", self.list_requests)
        app.router.add_get("/_mock/streams", self.list_streams)
        app.router.add_delete("/_mock/requests", self.clear)
        app.router.add_delete("/_mock/streams", self.clear)
        return app

    def faults_for(self, name, options):
        """``fail_first=N``: the faults in ``options`` for the first N requests of this model name only."""
        if "fail_first" not in options:
            return options
        seen = self.seen[name] = self.seen.get(name, 0) + 1
        if seen <= options["fail_first"]:
            return options
        return {k: v for k, v in options.items() if k not in mock_engine.FAULTS}

    def remember(self, request, body) -> dict:
        record = {
            "path": request.path,
            "query": dict(request.query),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
            "outcome": "pending",
        }
        self.requests.append(record)
        return record

    async def openai(self, request):
        return await self._serve(request, _ENDPOINTS[request.match_info["endpoint"]], None)

    async def azure(self, request):
        if "api-version" not in request.query:
            return _error(400, "api-version query parameter is required")
        if not request.headers.get("api-key"):
            return _error(401, "Access denied due to missing subscription key.")
        return await self._serve(
            request, _ENDPOINTS[request.match_info["endpoint"]], request.match_info["deployment"]
        )

    async def _serve(self, request, endpoint, deployment):
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "invalid JSON")
        record = self.remember(request, body)
        try:
            response = await self._answer(request, record, body, endpoint, deployment)
        except asyncio.CancelledError:
            # handler_cancellation: the proxy closed the connection before the answer ended.
            record["outcome"] = "cancelled"
            raise
        if record["outcome"] == "pending":
            record["outcome"] = "answered"
        return response

    async def _answer(self, request, record, body, endpoint, deployment):
        if not isinstance(body, dict):
            return _error(400, "body must be an object")
        expected = request.app.get("required_key")
        if expected and request.headers.get("authorization") != f"Bearer {expected}":
            return _error(401, "Incorrect API key provided.")
        name = deployment or str(body.get("model", ""))
        model, options = mock_engine.split_model(name)
        options = self.faults_for(name, options)
        if options.get("latency_ms"):
            await asyncio.sleep(options["latency_ms"] / 1000)
        if options.get("hang"):
            await asyncio.sleep(3600)
        if options.get("reset"):
            record["outcome"] = "broken"
            request.transport.abort()
            return web.Response()  # never sent: the connection is gone
        if options.get("fail_status"):
            status = options["fail_status"]
            headers = {"retry-after": str(options["retry_after"])} if "retry_after" in options else None
            return _error(status, "mock failure", headers=headers)
        tool = endpoint == "chat" and options.get("tool")
        if body.get("stream"):
            chunks = (
                mock_tools.stream_chunks(model, body, options)
                if tool
                else mock_engine.stream_chunks(endpoint, model, body, options)
            )
            return await self._stream(request, record, model, chunks, options)
        answer = (
            mock_tools.chat_completion(model, body, options)
            if tool
            else mock_engine.answer(endpoint, model, body, options)
        )
        content = orjson.dumps(answer)
        if "reset_after_bytes" not in options and "drip_ms" not in options:
            return web.Response(body=content, content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "application/json"})
        response.content_length = len(content)
        await response.prepare(request)
        if "reset_after_bytes" in options:
            # Part of the body it promised, then a reset: the client sees a broken answer.
            await response.write(content[: options["reset_after_bytes"]])
            record["outcome"] = "broken"
            request.transport.abort()
            return response
        await _drip(response, content, options)
        await response.write_eof()
        return response

    async def _stream(self, request, request_record, model, chunks, options):
        record = {"model": model, "sent": 0, "outcome": "started"}
        self.streams.append(record)
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        delay = options.get("chunk_delay_ms", 0) / 1000
        fail_after = options.get("fail_after_chunks")
        reset_after = options.get("reset_after_chunks")
        stall_after = options.get("stall_after_chunks")
        try:
            for i, chunk in enumerate(chunks):
                if fail_after is not None and i >= fail_after:
                    record["outcome"] = "dropped"
                    request_record["outcome"] = "broken"
                    request.transport.close()
                    return response
                if reset_after is not None and i >= reset_after:
                    record["outcome"] = "reset"
                    request_record["outcome"] = "broken"
                    request.transport.abort()
                    return response
                if stall_after is not None and i >= stall_after:
                    record["outcome"] = "stalled"
                    await asyncio.sleep(3600)  # until the proxy gives up and closes the connection
                if i and delay:
                    await asyncio.sleep(delay)
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError
                await _drip(response, b"data: " + orjson.dumps(chunk) + b"\n\n", options)
                record["sent"] += 1
            await response.write(b"data: [DONE]\n\n")
            record["outcome"] = "completed"
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            record["outcome"] = "client_disconnected"
            request_record["outcome"] = "cancelled"
        return response

    async def models(self, request):
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "mock-1", "object": "model", "created": 0, "owned_by": "mock"}],
            }
        )

    async def list_requests(self, request):
        return web.Response(body=orjson.dumps(self.requests), content_type="application/json")

    async def list_streams(self, request):
        return web.Response(body=orjson.dumps(self.streams), content_type="application/json")

    async def clear(self, request):
        self.requests.clear()
        self.streams.clear()
        self.seen.clear()
        return web.Response(status=204)


async def _drip(response, data: bytes, options):
    """Write DATA, a few bytes at a time with a pause between writes when ``drip_ms`` asks for it."""
    delay = options.get("drip_ms")
    if not delay:
        await response.write(data)
        return
    step = max(1, options.get("drip_bytes", 16))
    for start in range(0, len(data), step):
        if start:
            await asyncio.sleep(delay / 1000)
        await response.write(data[start : start + step])


def _error(status, message, headers=None):
    body = {"error": {"message": message, "type": "mock_error", "param": None, "code": str(status)}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def main():
    parser = argparse.ArgumentParser(description="Mock OpenAI-compatible upstream for tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--require-key", default="", help="Answer 401 unless this Bearer key is sent.")
    args = parser.parse_args()
    app = MockUpstream().app()
    app["required_key"] = args.require_key
    # handler_cancellation: a client that goes away cancels the handler, so
    # the stream record says "client_disconnected" at once.
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            print=lambda *_: print(f"mock upstream listening on http://{args.host}:{args.port}", flush=True),
            handler_cancellation=True,
            access_log=None,
        )


if __name__ == "__main__":
    main()
