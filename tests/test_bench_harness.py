"""The benchmark's own logic (bench/): what it reads from nginx, /metrics and the trace sink to verify that a
comparison measured what it says, how interleaved rounds are merged, and the ratios its report quotes."""

import gzip

from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import features, measure, otlp_sink, report

STUB_STATUS = """Active connections: 3
server accepts handled requests
 17 17 12345
Reading: 0 Writing: 1 Waiting: 2
"""

METRICS = """# HELP llmproxy_cache_hits_total Requests answered from the response cache.
# TYPE llmproxy_cache_hits_total counter
llmproxy_cache_hits_total{model="bench",tenant="bench-cache"} 1500.0
llmproxy_cache_hits_total{model="other",tenant="bench-cache"} 20.0
llmproxy_cache_hits_total{model="bench",tenant="bench"} 7.0
llmproxy_cache_hits_created{model="bench",tenant="bench-cache"} 1.7e+09
llmproxy_cache_misses_total{model="bench",tenant="bench-cache"} 3.0
"""


def test_the_upstream_count_is_the_requests_figure_of_nginx_stub_status():
    assert features.stub_status_requests(STUB_STATUS) == 12345


def test_a_page_that_is_not_stub_status_is_an_error_not_a_count():
    for text in ("", "<html>404 Not Found</html>", "Active connections: 3\n"):
        try:
            features.stub_status_requests(text)
        except ValueError:
            continue
        raise AssertionError(f"{text!r} was read as a count")


def test_metric_total_sums_the_samples_of_one_metric_whose_labels_match():
    assert features.metric_total(METRICS, "llmproxy_cache_hits_total", tenant="bench-cache") == 1520.0
    assert (
        features.metric_total(METRICS, "llmproxy_cache_hits_total", tenant="bench-cache", model="bench")
        == 1500
    )
    # Another tenant whose name the first one starts with, and a metric of the same prefix, do not count.
    assert features.metric_total(METRICS, "llmproxy_cache_hits_total", tenant="bench") == 7.0
    assert features.metric_total(METRICS, "llmproxy_cache_misses_total", tenant="bench-cache") == 3.0
    assert features.metric_total(METRICS, "llmproxy_cache_hits_total", tenant="nobody") == 0.0


def _result(requests, seconds, p50, p99, errors=0, calls=None):
    return measure.LoadResult(requests, seconds, errors, p50, p50, p99, p99 * 2, upstream_calls=calls)


def test_interleaved_rounds_merge_into_requests_per_second_over_all_and_the_median_round():
    rounds = [_result(300, 3.0, 1.0, 9.0), _result(600, 3.0, 2.0, 5.0), _result(900, 3.0, 3.0, 7.0, errors=1)]
    merged = measure.merge(rounds, cpu_seconds=0.9, upstream_calls=1800)
    assert merged.requests == 1800 and merged.errors == 1
    assert merged.rps == 200.0
    assert merged.rounds_rps == [100.0, 200.0, 300.0]
    assert (merged.p50_ms, merged.p99_ms, merged.max_ms) == (2.0, 7.0, 18.0)
    assert merged.cpu_ms_per_request == 0.5
    assert merged.upstream_calls == 1800


def _export_request(spans_per_scope):
    request = ExportTraceServiceRequest()
    for count in spans_per_scope:
        scope = request.resource_spans.add().scope_spans.add()
        for i in range(count):
            span = scope.spans.add()
            span.name = f"span {i}"
            span.trace_id = bytes(16)
            span.span_id = bytes(8)
    return request.SerializeToString()


async def test_the_trace_sink_counts_the_spans_of_every_post_plain_or_gzipped():
    client = TestClient(TestServer(otlp_sink.make_app()))
    await client.start_server()
    try:
        headers = {"content-type": "application/x-protobuf"}
        response = await client.post("/v1/traces", data=_export_request([3, 2]), headers=headers)
        assert response.status == 200
        zipped = gzip.compress(_export_request([4]))
        response = await client.post(
            "/v1/traces", data=zipped, headers={**headers, "content-encoding": "gzip"}
        )
        assert response.status == 200
        response = await client.post("/v1/traces", data=b"\xff\xff not protobuf", headers=headers)
        assert response.status == 400
        stats = await (await client.get("/stats")).json()
    finally:
        await client.close()
    assert stats["posts"] == 3
    assert stats["spans"] == 9
    assert stats["bad"] == 1


def _cache_features():
    f = features.Features(server="llmproxy, uvicorn")
    f.cache_c1 = {
        "direct": _result(30000, 3.0, 0.02, 0.05, calls=30000),
        "uncached": _result(1500, 3.0, 2.0, 8.0, calls=1500),
        "miss": _result(1200, 3.0, 2.5, 9.0, calls=1200),
        "hit": _result(3000, 3.0, 1.0, 4.0, calls=0),
    }
    f.cache_c32 = {
        "uncached": _result(2100, 3.0, 40.0, 90.0, calls=2100),
        "hit": _result(4200, 3.0, 20.0, 60.0, calls=0),
    }
    return f


def test_the_cache_table_quotes_a_hit_against_the_uncached_call_and_the_direct_one():
    rows = dict(report.cache_rows(_cache_features(), direct_c32=_result(300000, 3.0, 0.3, 0.5)))
    assert rows["requests/s, concurrency 1"] == ["10,000", "500", "400", "1,000", "2.00×", "0.10×"]
    assert rows["latency p50 / p99, c=1 (ms)"][4] == "0.50× / 0.50×"
    assert rows["added over direct p50 / p99, c=1 (ms)"][3] == "+0.98 / +3.95"
    assert rows["requests/s, concurrency 32"][4:] == ["2.00×", "0.014×"]
    assert rows["upstream (nginx) requests per answer"] == ["1.00", "1.00", "1.00", "0.00", "–", "–"]


def test_a_failed_verification_is_written_at_the_top_of_the_results():
    f = _cache_features()
    f.failures.append("response cache: nginx served 12 requests while only hits were sent")
    section = report.features_section(f, [])
    assert "**Failed:**" in section
    assert "nginx served 12 requests while only hits were sent" in section
