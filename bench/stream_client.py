"""Streamed requests one after another: time to the first byte of the answer and to its end.

    python bench/stream_client.py URL --model M [--key K] [--count 100] [--prompt TEXT]

Prints one JSON object: per-stream times in milliseconds and the errors seen
(an answer that is not 200, or a stream that does not end with `data: [DONE]`).
One stream at a time, so the client's own cost stays constant and small next
to the 5 ms between the upstream's chunks.
"""

import argparse
import asyncio
import json
import time

import aiohttp


async def one(session, url, body, headers):
    started = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as response:
        first = await response.content.readany()
        ttfb = time.perf_counter() - started
        tail = first
        while True:
            data = await response.content.readany()
            if not data:
                break
            tail = (tail + data)[-64:]
        total = time.perf_counter() - started
    ok = response.status == 200 and tail.rstrip().endswith(b"data: [DONE]")
    return ok, response.status, ttfb * 1000, total * 1000


async def run(args):
    body = json.dumps(
        {
            "model": args.model,
            "messages": [{"role": "user", "content": args.prompt}],
            "max_tokens": 64,
            "stream": True,
        }
    )
    headers = {"content-type": "application/json"}
    if args.key:
        headers["authorization"] = f"Bearer {args.key}"
    ttfb, total, errors = [], [], []
    warmup_ok = 0
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(args.warmup + args.count):
            try:
                ok, status, first_ms, total_ms = await one(session, args.url, body, headers)
            except (TimeoutError, aiohttp.ClientError) as exc:
                ok, status, first_ms, total_ms = False, type(exc).__name__, 0.0, 0.0
            if i < args.warmup:
                warmup_ok += ok
                continue
            if ok:
                ttfb.append(first_ms)
                total.append(total_ms)
            else:
                errors.append(status)
    print(json.dumps({"ttfb_ms": ttfb, "total_ms": total, "errors": errors, "warmup_ok": warmup_ok}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--model", required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--prompt", default="Count to twenty, one word per line.", help="the user message")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
