"""The measurements behind two hot-path choices, rerunnable (bench/README.md).

    .venv/bin/python -m bench.micro upstream   # one upstream call: httpx's API over aiohttp vs aiohttp itself
    .venv/bin/python -m bench.micro usage      # writing usage rows: bulk_create vs COPY (PostgreSQL)
    .venv/bin/python -m bench.micro tracing    # the tracing hooks of one request, tracing off (--json)

Each prints CPU time per call (process time, so other work on the machine
inflates both sides alike), four rounds, alternating the two ways.
`usage` needs the database of a previous `make bench` (BENCH_DATABASE_URL,
default postgres://postgres@127.0.0.1:5432/llmproxy_bench).
"""

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 4


async def _per_call(fn, calls, concurrency=16):
    async def worker(n):
        for _ in range(n):
            await fn()

    started = time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / calls * 1e6


def upstream(calls=3000):
    import aiohttp
    import httpx
    import orjson
    from httpx_aiohttp import AiohttpTransport

    from bench import procs, run

    port = procs.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        nginx = run.start_nginx(Path(tmp), port, cpu=0)
        try:
            run.wait_port(port, nginx)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            headers = {"content-type": "application/json", "authorization": "Bearer x"}

            async def main():
                limits = httpx.Limits(max_connections=512, max_keepalive_connections=512, keepalive_expiry=30)
                client = httpx.AsyncClient(
                    transport=AiohttpTransport(limits=limits, trust_env=False), limits=limits, trust_env=False
                )
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))

                async def via_httpx():
                    orjson.loads((await client.post(url, content=body, headers=headers)).content)

                async def via_aiohttp():
                    async with session.post(url, data=body, headers=headers) as response:
                        orjson.loads(await response.read())

                try:
                    await _per_call(via_httpx, calls)
                    await _per_call(via_aiohttp, calls)
                    for _ in range(ROUNDS):
                        a = await _per_call(via_httpx, calls)
                        b = await _per_call(via_aiohttp, calls)
                        print(f"httpx API over the aiohttp transport: {a:5.0f} µs/call", end="   ")
                        print(f"aiohttp: {b:5.0f} µs/call")
                finally:
                    await client.aclose()
                    await session.close()

            asyncio.run(main())
        finally:
            nginx.stop()


def usage(rows=1000):
    os.environ.setdefault(
        "DATABASE_URL",
        os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/llmproxy_bench"),
    )
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmproxy.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from datetime import UTC, datetime
    from decimal import Decimal

    from django.db import connection, transaction

    from audit.models import RequestLog
    from keys.models import ApiKey
    from llmproxy.gateway import usage as writer

    key = ApiKey.objects.select_related("tenant").filter(tenant__slug="bench").first()
    if key is None:
        sys.exit("no tenant 'bench' in this database: run `make bench` first")

    def batch():
        now = datetime.now(UTC)
        attempt = {
            "route": 1,
            "provider": "bench-nginx",
            "upstream_model": "bench-upstream",
            "status": 200,
            "latency_ms": 0.8,
            "error": "",
        }
        return [
            writer.UsageRecord(
                created_at=now,
                request_id=f"req_micro_{i:024x}",
                tenant_id=key.tenant_id,
                api_key_id=key.id,
                key_prefix=key.prefix,
                endpoint="chat",
                model="bench",
                status=200,
                provider="bench-nginx",
                upstream_model="bench-upstream",
                input_tokens=14,
                output_tokens=7,
                cost=Decimal("0.0000063"),
                latency_ms=2.5,
                ttfb_ms=2.4,
                attempts=[attempt],
            )
            for i in range(rows)
        ]

    def orm(records):
        RequestLog.objects.bulk_create(
            [RequestLog(**writer._row(RequestLog, r)) for r in records], batch_size=1000
        )

    def copy(records):
        writer._copy_request_logs(connection, RequestLog, records)

    def per_row(fn):
        records = batch()
        started = time.process_time()
        with transaction.atomic():
            fn(records)
        return (time.process_time() - started) / rows * 1e6

    try:
        per_row(orm)
        per_row(copy)
        for _ in range(ROUNDS):
            print(f"bulk_create: {per_row(orm):5.0f} µs/row   COPY: {per_row(copy):5.0f} µs/row")
    finally:
        RequestLog.objects.filter(request_id__startswith="req_micro_").delete()


# What a plain (not streamed) request of the bench's tenant calls in llmproxy.tracing: the request's
# span (gateway/proxy.py handle), the key lookup's and the quota's (proxy.py _proxy, _reserve), the
# upstream attempt's and its answered() (providers/router.py), inject_headers (providers/adapters/openai.py),
# finish_request (proxy.py _account) and the access log's test of tracing.ENABLED (logging_json.py).
# With tracing on, the first four are the 4 spans per request the bench's trace sink receives.
TRACING_HOOKS = (
    "request_span",
    "span('llmproxy.key_lookup')",
    "span('llmproxy.quota')",
    "attempt_span + answered",
    "inject_headers",
    "finish_request",
    "ENABLED (log line)",
)


def tracing_off(iterations=200_000, rounds=7) -> dict:
    """CPU time of the tracing hooks one request runs, with tracing off (as `make bench` runs the proxy).

    Timed as the request path calls them, in a loop, less the same loop calling an empty function;
    the best of ``rounds`` (the figure least disturbed by other work on the machine) and the median.
    """
    sys.path.insert(0, str(ROOT))
    from types import SimpleNamespace

    from llmproxy import tracing

    if tracing.ENABLED:
        raise SystemExit("tracing is on in this process: unset OTEL_* to measure it off")
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    headers = {"authorization": b"Bearer lp-xxxxxxxx-yyyy", "content-type": b"application/json"}
    provider = SimpleNamespace(kind="openai_compatible", name="bench-nginx", base_url="http://127.0.0.1/v1")
    target = SimpleNamespace(id=1, provider=provider, upstream_model="bench-upstream")
    answer = {"id": "chatcmpl-bench", "model": "bench-upstream"}
    record = SimpleNamespace(key_prefix="lp-xxxxxxxx", status=200, model="bench")

    def hooks():
        with tracing.request_span("chat", scope, headers, "req_0123456789abcdef"):
            with tracing.span("llmproxy.key_lookup"):
                pass
            with tracing.span("llmproxy.quota"):
                pass
            with tracing.attempt_span(target, "chat", "bench", 1) as span:
                upstream_headers = {}
                tracing.inject_headers(upstream_headers)
                span.answered(answer)
            tracing.finish_request(record, tenant="bench")
            if tracing.ENABLED:
                tracing.current_ids()

    def empty():
        pass

    def per_call_ns(fn):
        started = time.process_time_ns()
        for _ in range(iterations):
            fn()
        return (time.process_time_ns() - started) / iterations

    per_call_ns(hooks)
    samples = []
    for _ in range(rounds):
        samples.append(per_call_ns(hooks) - per_call_ns(empty))
    samples.sort()
    return {
        "hooks": list(TRACING_HOOKS),
        "iterations": iterations,
        "rounds": rounds,
        "best_us": samples[0] / 1000,
        "median_us": samples[len(samples) // 2] / 1000,
    }


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "upstream":
        upstream()
    elif what == "usage":
        usage()
    elif what == "tracing":
        result = tracing_off()
        if "--json" in sys.argv:
            import json

            print(json.dumps(result))
        else:
            print(
                f"tracing off, the hooks of one request: {result['best_us']:.2f} µs (best of "
                f"{result['rounds']}), {result['median_us']:.2f} µs (median); hooks: "
                + ", ".join(result["hooks"])
            )
    else:
        sys.exit(__doc__)
