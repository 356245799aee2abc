"""llmproxy.tracing: a request's spans and attributes, the traceparent sent upstream, nothing when off."""

import asyncio
import io
import logging
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmproxy import tracing
from llmproxy.gateway.usage import UsageRecord
from llmproxy.logging_json import JsonFormatter
from providers.adapters.base import ProviderTarget, RouteTarget, UpstreamError

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SCOPE = {"method": "POST", "path": "/v1/chat/completions"}


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    tracing.setup(exporter, synchronous=True, instrument_django=False)
    yield exporter
    tracing.teardown()


def route(kind="openai", upstream_model="gpt-4o-mini", base_url="https://api.example.test/v1"):
    provider = ProviderTarget(
        id=7,
        name="primary",
        kind=kind,
        base_url=base_url,
        api_key_env="",
        encrypted_api_key="",
        api_version="",
        extra_headers={},
        timeout=30.0,
        connect_timeout=5.0,
        options={},
    )
    return RouteTarget(
        id=11,
        model="smart",
        upstream_model=upstream_model,
        priority=0,
        weight=1,
        input_price=Decimal(1),
        output_price=Decimal(2),
        provider=provider,
    )


def usage(**fields):
    values = dict(
        created_at=datetime.now(UTC),
        request_id="req_1",
        tenant_id=1,
        api_key_id=2,
        key_prefix="lp-AbCdEfGh",
        endpoint="chat",
        model="smart",
        status=200,
        stream=True,
        provider="primary",
        upstream_model="gpt-4o-mini",
        input_tokens=12,
        output_tokens=34,
        cost=Decimal("0.00008"),
        latency_ms=250.0,
        ttfb_ms=80.0,
        attempts=[{"route": 11, "status": 503}, {"route": 11, "status": 200}],
    )
    values.update(fields)
    return UsageRecord(**values)


def a_streamed_request_with_one_retry(upstream_headers: list):
    """What the gateway does for one streamed request whose first upstream attempt fails."""
    incoming = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01".encode()}
    target = route()
    with tracing.request_span("chat", SCOPE, incoming, "req_1"):
        with tracing.span("llmproxy.key_lookup"):
            pass
        with tracing.span("llmproxy.quota"):
            pass
        for try_number in (1, 2):
            try:
                with tracing.attempt_span(target, "chat", "smart", try_number) as attempt:
                    headers = {"content-type": "application/json"}
                    tracing.inject_headers(headers)
                    upstream_headers.append(headers)
                    if try_number == 1:
                        raise UpstreamError(503, "overloaded", retryable=True)
                    attempt.answered({"id": "chatcmpl-9", "model": "gpt-4o-mini-2024-07-18"})
            except UpstreamError:
                continue
        with tracing.span("llmproxy.stream"):
            pass
        tracing.finish_request(usage(), tenant="acme")


def test_a_streamed_request_with_one_retry_is_one_trace_continuing_the_clients(spans):
    a_streamed_request_with_one_retry([])

    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert names == [
        "llmproxy.key_lookup",
        "llmproxy.quota",
        "chat gpt-4o-mini",
        "chat gpt-4o-mini",
        "llmproxy.stream",
        "POST /v1/chat/completions",
    ]
    server = finished[-1]
    assert server.kind == SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == CLIENT_TRACE
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN
    for child in finished[:-1]:
        assert child.context.trace_id == server.context.trace_id
        assert child.parent.span_id == server.context.span_id


def test_the_request_span_carries_the_tenant_the_key_prefix_and_the_genai_attributes(spans):
    a_streamed_request_with_one_retry([])

    server = spans.get_finished_spans()[-1]
    assert dict(server.attributes) == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "gen_ai.operation.name": "chat",
        "llmproxy.request_id": "req_1",
        "llmproxy.tenant": "acme",
        "llmproxy.key_prefix": "lp-AbCdEfGh",
        "llmproxy.provider": "primary",
        "llmproxy.cache_hit": False,
        "llmproxy.stream": True,
        "llmproxy.attempts": 2,
        "http.response.status_code": 200,
        "gen_ai.request.model": "smart",
        "gen_ai.system": "openai",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
    }
    assert server.status.status_code == StatusCode.UNSET


def test_each_upstream_attempt_is_a_client_span_and_the_failed_one_says_why(spans):
    a_streamed_request_with_one_retry([])

    failed, answered = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "llmproxy.model": "smart",
        "llmproxy.provider": "primary",
        "llmproxy.route_id": 11,
        "server.address": "api.example.test",
        "server.port": 443,
    }
    assert dict(failed.attributes) == {
        **common,
        "llmproxy.try": 1,
        "http.response.status_code": 503,
        "error.type": "503",
    }
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(answered.attributes) == {
        **common,
        "llmproxy.try": 2,
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-9",
    }
    assert answered.status.status_code == StatusCode.UNSET


def test_each_upstream_request_carries_the_traceparent_of_its_own_attempt(spans):
    sent = []
    a_streamed_request_with_one_retry(sent)

    attempts = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert [h["traceparent"] for h in sent] == [
        f"00-{CLIENT_TRACE}-{format(a.context.span_id, '016x')}-01" for a in attempts
    ]
    assert all(h["content-type"] == "application/json" for h in sent)


def test_a_request_without_a_traceparent_starts_its_own_trace(spans):
    with tracing.request_span("embeddings", SCOPE, {}, "req_2"):
        pass

    [server] = spans.get_finished_spans()
    assert server.parent is None
    assert server.attributes["gen_ai.operation.name"] == "embeddings"


def test_a_server_error_marks_the_request_span_as_failed(spans):
    with tracing.request_span("chat", SCOPE, {}, "req_3"):
        tracing.finish_request(usage(status=502, error_type="upstream_error", attempts=[]), tenant="acme")

    [server] = spans.get_finished_spans()
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["error.type"] == "upstream_error"


async def test_a_client_that_leaves_is_noted_without_calling_the_step_an_error(spans):
    async def relay():
        with tracing.request_span("chat", SCOPE, {}, "req_4"), tracing.span("llmproxy.stream"):
            await asyncio.sleep(10)

    task = asyncio.ensure_future(relay())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stream, server = spans.get_finished_spans()
    for span in (stream, server):
        assert span.attributes["llmproxy.cancelled"] is True
        assert span.status.status_code == StatusCode.UNSET


def test_log_lines_written_inside_a_request_name_its_trace(spans):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.tracing")
    logger.addHandler(handler)
    try:
        with tracing.request_span("chat", SCOPE, {}, "req_5"):
            logger.warning("inside")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)

    inside, outside = (orjson.loads(line) for line in out.getvalue().splitlines())
    [server] = spans.get_finished_spans()
    assert inside["trace_id"] == format(server.context.trace_id, "032x")
    assert inside["span_id"] == format(server.context.span_id, "016x")
    assert "trace_id" not in outside


# --- off ------------------------------------------------------------------------------------------


def test_when_off_every_helper_returns_the_one_no_op_and_sends_no_traceparent():
    assert not tracing.ENABLED
    assert tracing.request_span("chat", SCOPE, {}, "req_6") is tracing.NO_SPAN
    assert tracing.span("llmproxy.quota") is tracing.NO_SPAN
    assert tracing.attempt_span(route(), "chat", "smart", 1) is tracing.NO_SPAN
    headers = {}
    tracing.inject_headers(headers)
    assert headers == {}
    assert tracing.current_ids() == {}
    a_streamed_request_with_one_retry(sent := [])
    assert sent == [{"content-type": "application/json"}, {"content-type": "application/json"}]


def test_when_off_an_error_still_reaches_the_caller():
    with pytest.raises(UpstreamError), tracing.attempt_span(route(), "chat", "smart", 1):
        raise UpstreamError(502, "boom", retryable=True)


# --- configuration from the environment -------------------------------------------------------------


@pytest.fixture
def otel_env(monkeypatch):
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "OTEL_SDK_DISABLED",
        "LLMPROXY_TRACES_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_an_endpoint_or_an_exporter_tracing_stays_off(otel_env):
    assert tracing.setup() is False
    assert not tracing.ENABLED


def test_an_otlp_endpoint_chooses_the_otlp_http_exporter(otel_env):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.test:4318")
    exporter = tracing._exporter_from_environment()
    assert type(exporter).__module__ == "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    assert exporter._endpoint == "http://collector.test:4318/v1/traces"


@pytest.mark.parametrize("switch", [("OTEL_TRACES_EXPORTER", "none"), ("OTEL_SDK_DISABLED", "true")])
def test_tracing_can_be_switched_off_despite_an_endpoint(otel_env, switch):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.test:4318")
    otel_env.setenv(*switch)
    assert tracing._exporter_from_environment() is None


def test_the_file_exporter_appends_one_json_span_per_line(otel_env, tmp_path):
    path = tmp_path / "spans.jsonl"
    otel_env.setenv("OTEL_TRACES_EXPORTER", "file")
    otel_env.setenv("LLMPROXY_TRACES_FILE", str(path))
    tracing.setup(tracing._exporter_from_environment(), synchronous=True, instrument_django=False)
    try:
        with tracing.request_span("chat", SCOPE, {}, "req_7"), tracing.span("llmproxy.key_lookup"):
            pass
    finally:
        tracing.teardown()

    lines = [orjson.loads(line) for line in path.read_text().splitlines()]
    assert [line["name"] for line in lines] == ["llmproxy.key_lookup", "POST /v1/chat/completions"]
    assert lines[1]["attributes"]["llmproxy.request_id"] == "req_7"
    assert lines[0]["context"]["trace_id"] == lines[1]["context"]["trace_id"]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"OTEL_TRACES_EXPORTER": "file"}, "LLMPROXY_TRACES_FILE"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "use otlp, console, file or none"),
    ],
)
def test_a_wrong_exporter_setting_stops_the_start_with_a_clear_message(otel_env, env, message):
    for name, value in env.items():
        otel_env.setenv(name, value)
    with pytest.raises(RuntimeError, match=message):
        tracing._exporter_from_environment()
