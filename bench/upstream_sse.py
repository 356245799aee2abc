"""The benchmark's streaming upstream: OpenAI-style SSE with a fixed delay between chunks.

nginx answers the plain completions (it is never the bottleneck); this serves
`"stream": true` requests, which nginx cannot pace. Nothing is remembered
between requests, so its memory stays flat however long the run.

    python bench/upstream_sse.py --port 9202 --chunks 20 --chunk-delay-ms 5
"""

import argparse
import asyncio
import time

import orjson
from aiohttp import web

COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "bench-upstream",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from the bench upstream."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21},
}


def chunk(delta, finish_reason=None):
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "bench-upstream",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
        )
        + b"\n\n"
    )


def usage_chunk(completion_tokens):
    return (
        b"data: "
        + orjson.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "bench-upstream",
                "choices": [],
                "usage": {
                    "prompt_tokens": 14,
                    "completion_tokens": completion_tokens,
                    "total_tokens": 14 + completion_tokens,
                },
            }
        )
        + b"\n\n"
    )


def make_app(chunks: int, delay: float) -> web.Application:
    # The frames are the same for every request: built once.
    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": f"tok{i} "}) for i in range(1, chunks - 1)]
    frames.append(chunk({}, "stop"))

    async def completions(request: web.Request):
        body = orjson.loads(await request.read())
        if not body.get("stream"):
            return web.Response(body=orjson.dumps(COMPLETION), content_type="application/json")
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        # Paced against a clock rather than by sleeping a fixed time after each write,
        # so the stream's total length does not depend on how long the writes took.
        started = time.perf_counter()
        for i, frame in enumerate(frames):
            if i:
                await asyncio.sleep(max(0.0, started + i * delay - time.perf_counter()))
            await response.write(frame)
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(usage_chunk(len(frames) - 2))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9202)
    parser.add_argument("--chunks", type=int, default=20, help="chunks per stream (at least 2)")
    parser.add_argument("--chunk-delay-ms", type=float, default=5.0)
    args = parser.parse_args()
    app = make_app(max(2, args.chunks), args.chunk_delay_ms / 1000)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
