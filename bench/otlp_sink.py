"""The benchmark's trace collector: accepts OTLP/HTTP posts, counts the spans, keeps nothing.

    python bench/otlp_sink.py --port 4318

POST /v1/traces (protobuf, as the proxy's OTLP/HTTP exporter sends it, gzipped or
not) answers 200 with an empty ExportTraceServiceResponse.
GET /stats answers {"posts", "spans", "bytes", "bad"}: the bench compares the
spans received with the requests the traced proxy answered, so a run whose spans
never left the proxy cannot pass for "tracing on".
"""

import argparse
import json

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


def count_spans(body: bytes) -> int:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def make_app() -> web.Application:
    stats = {"posts": 0, "spans": 0, "bytes": 0, "bad": 0}

    async def traces(request: web.Request):
        body = await request.read()  # aiohttp has undone a gzip Content-Encoding already
        stats["posts"] += 1
        stats["bytes"] += len(body)
        try:
            stats["spans"] += count_spans(body)
        except Exception:  # a malformed post is counted, never a reason to stop
            stats["bad"] += 1
            return web.Response(status=400)
        return web.Response(body=EMPTY_RESPONSE, content_type="application/x-protobuf")

    async def get_stats(request: web.Request):
        return web.Response(text=json.dumps(stats), content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/stats", get_stats)
    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
