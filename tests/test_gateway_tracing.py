"""Traces from a real Daphne: a streamed request with one retry is one trace, with the GenAI attributes.

The proxy runs with OTEL_TRACES_EXPORTER=file, so its spans land as JSON lines in a file
this test reads. Needs the gateway's spans (llmproxy/gateway/proxy.py, providers/router.py),
the traceparent in the adapters' headers (providers/adapters/openai.py) and tracing.setup()
in llmproxy/asgi.py.
"""

import time
import uuid

import httpx
import orjson
import pytest

from providers.models import ModelPolicy
from quotas.models import QuotaLimit
from tests import servers
from tests.conftest import ARTIFACTS
from tests.gateway_helpers import make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENT_SPAN = "b7ad6b7169203331"


@pytest.fixture
def traced_proxy(tmp_path, mock_upstream):
    spans = tmp_path / "spans.jsonl"
    process, base = servers.start_daphne(
        ARTIFACTS / "logs",
        name="daphne-traced",
        OTEL_TRACES_EXPORTER="file",
        LLMPROXY_TRACES_FILE=spans,
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_SERVICE_NAME="llmproxy-under-test",
    )
    process.base_url = base
    process.spans = spans
    yield process
    wait_for_usage_written(base)
    process.stop()


def wait_for_usage_written(base):
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and "\nllmproxy_usage_backlog 0.0\n" not in httpx.get(f"{base}/metrics").text
    ):
        time.sleep(0.05)


def spans_of(proxy, trace_id, until):
    """The spans of one trace once ``until(spans)`` holds (the proxy exports them every 50 ms)."""
    deadline = time.monotonic() + 10
    found = []
    while time.monotonic() < deadline:
        lines = proxy.spans.read_text().splitlines() if proxy.spans.exists() else []
        found = [span for span in map(orjson.loads, lines) if span["context"]["trace_id"] == f"0x{trace_id}"]
        if until(found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"the trace never completed; spans so far: {[s['name'] for s in found]}")


def has_server_span(spans):
    return any(span["kind"] == "SpanKind.SERVER" for span in spans)


def test_a_streamed_request_with_one_retry_is_one_trace_with_a_span_per_step(
    traced_proxy, acme, upstream, unique_model
):
    acme.cache_ttl_seconds = 60
    acme.save()
    upstream_model = f"mock-1?fail_first=1&fail_status=503&chunks=3&tag={unique_model}"
    make_route(acme, unique_model, upstream.v1, upstream_model, name=f"{unique_model}-up")
    ModelPolicy.objects.create(model=unique_model, tenant=acme, max_attempts=2)
    api_key, key = make_key(acme)
    QuotaLimit.objects.create(
        tenant=acme, scope="key", api_key=api_key, metric="requests", period="minute", limit=100
    )
    trace_id = uuid.uuid4().hex
    request_id = f"req-{uuid.uuid4().hex}"

    response = httpx.post(
        f"{traced_proxy.base_url}/v1/chat/completions",
        headers={
            "authorization": f"Bearer {key}",
            "x-request-id": request_id,
            "traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01",
        },
        json={"model": unique_model, "stream": True, "messages": [{"role": "user", "content": "Hello"}]},
        timeout=30,
    )
    [row] = wait_for_logs(1, model=unique_model)
    spans = spans_of(traced_proxy, trace_id, has_server_span)

    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    [server] = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
    assert server["name"] == "POST /v1/chat/completions"
    assert server["parent_id"] == f"0x{CLIENT_SPAN}"
    assert server["resource"]["attributes"]["service.name"] == "llmproxy-under-test"
    children = [s for s in spans if s is not server]
    assert all(s["parent_id"] == server["context"]["span_id"] for s in children)
    assert [s["name"] for s in children] == [
        "llmproxy.key_lookup",
        "llmproxy.cache",
        "llmproxy.quota",
        f"chat {upstream_model}",
        f"chat {upstream_model}",
        "llmproxy.stream",
    ]
    attributes = server["attributes"]
    assert {
        name: attributes[name]
        for name in (
            "llmproxy.request_id",
            "llmproxy.tenant",
            "llmproxy.key_prefix",
            "gen_ai.operation.name",
            "gen_ai.system",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "http.response.status_code",
            "llmproxy.attempts",
            "llmproxy.stream",
        )
    } == {
        "llmproxy.request_id": request_id,
        "llmproxy.tenant": "acme",
        "llmproxy.key_prefix": api_key.prefix,
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai_compatible",
        "gen_ai.request.model": unique_model,
        "gen_ai.response.model": "mock-1",
        "gen_ai.usage.input_tokens": row.input_tokens,
        "gen_ai.usage.output_tokens": row.output_tokens,
        "http.response.status_code": 200,
        "llmproxy.attempts": 2,
        "llmproxy.stream": True,
    }
    assert row.output_tokens > 0
    assert children[1]["attributes"]["llmproxy.cache_hit"] is False


def test_each_upstream_attempt_is_a_client_span_whose_traceparent_reaches_the_upstream(
    traced_proxy, acme, upstream, unique_model
):
    upstream_model = f"mock-1?fail_first=1&fail_status=503&tag={unique_model}"
    make_route(acme, unique_model, upstream.v1, upstream_model, name=f"{unique_model}-up")
    ModelPolicy.objects.create(model=unique_model, tenant=acme, max_attempts=2)
    key = make_key(acme)[1]
    trace_id = uuid.uuid4().hex

    httpx.post(
        f"{traced_proxy.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}", "traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"},
        json={"model": unique_model, "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=30,
    )
    wait_for_logs(1, model=unique_model)
    spans = spans_of(traced_proxy, trace_id, has_server_span)

    failed, answered = [s for s in spans if s["kind"] == "SpanKind.CLIENT"]
    assert failed["status"]["status_code"] == "ERROR"
    assert {
        k: failed["attributes"][k] for k in ("llmproxy.try", "http.response.status_code", "error.type")
    } == {"llmproxy.try": 1, "http.response.status_code": 503, "error.type": "503"}
    assert answered["status"]["status_code"] == "UNSET"
    for attempt in (failed, answered):
        assert attempt["attributes"]["gen_ai.system"] == "openai_compatible"
        assert attempt["attributes"]["gen_ai.request.model"] == upstream_model
        assert attempt["attributes"]["server.address"] == "127.0.0.1"
    assert answered["attributes"]["gen_ai.response.model"] == "mock-1"
    sent = [r["headers"]["traceparent"] for r in upstream.requests() if r["body"]["model"] == upstream_model]
    assert sent == [f"00-{trace_id}-{attempt['context']['span_id'][2:]}-01" for attempt in (failed, answered)]


def test_djangos_own_pages_are_traced_but_not_the_probes(traced_proxy):
    trace_id = uuid.uuid4().hex
    probe_trace = uuid.uuid4().hex

    assert (
        httpx.get(
            f"{traced_proxy.base_url}/admin/login/",
            headers={"traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"},
        ).status_code
        == 200
    )
    httpx.get(
        f"{traced_proxy.base_url}/healthz", headers={"traceparent": f"00-{probe_trace}-{CLIENT_SPAN}-01"}
    )
    [server] = spans_of(traced_proxy, trace_id, has_server_span)

    assert server["name"] == "GET admin/login/"
    assert server["parent_id"] == f"0x{CLIENT_SPAN}"
    time.sleep(0.3)  # three export intervals: the probe's span would be written by now
    assert spans_of(traced_proxy, probe_trace, lambda spans: True) == []
