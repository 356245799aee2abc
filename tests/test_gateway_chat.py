"""POST /v1/chat/completions end to end: the official openai client, a real Daphne, a real upstream."""

import time

import httpx
import openai
import pytest

from audit.models import RequestLog
from quotas.models import TokenUsageMetric
from tests.gateway_helpers import client, make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def route(acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, input_price="1.0", output_price="2.0")
    return unique_model


@pytest.fixture
def key(acme):
    return make_key(acme, name="app")


def test_it_answers_a_chat_completion_with_the_public_model_name(proxy_server, route, key):
    api_key, plain = key
    answer = client(proxy_server, plain).chat.completions.create(model=route, messages=HELLO)
    assert answer.choices[0].message.content == "Mock answer to: Hello there"
    assert answer.model == route
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0


def test_it_sends_the_upstream_model_and_passes_unknown_fields_through(proxy_server, route, key, upstream):
    client(proxy_server, key[1]).chat.completions.create(
        model=route, messages=HELLO, temperature=0.2, extra_body={"vendor_knob": {"depth": 3}}
    )
    [received] = upstream.requests()
    assert received["body"]["model"] == "mock-1"
    assert received["body"]["vendor_knob"] == {"depth": 3}
    assert received["body"]["temperature"] == 0.2
    assert received["body"]["messages"] == HELLO


@pytest.mark.parametrize("header", ["authorization", "api-key", "x-api-key"])
def test_it_takes_the_key_from_each_supported_header(proxy_server, route, key, header):
    value = f"Bearer {key[1]}" if header == "authorization" else key[1]
    response = httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={header: value},
        json={"model": route, "messages": HELLO},
    )
    assert response.status_code == 200, response.text


def test_every_answer_carries_a_request_id_and_the_overhead(proxy_server, route, key):
    response = httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key[1]}", "x-request-id": "trace-abc-123"},
        json={"model": route, "messages": HELLO},
    )
    assert response.headers["x-request-id"] == "trace-abc-123"
    assert float(response.headers["x-llmproxy-overhead-ms"]) >= 0
    fresh = httpx.post(
        f"{proxy_server.base_url}/v1/chat/completions", headers={"authorization": "Bearer nope"}, json={}
    )
    assert fresh.status_code == 401
    assert fresh.headers["x-request-id"].startswith("req_")
    assert "x-llmproxy-overhead-ms" in fresh.headers


def test_a_stream_arrives_chunk_by_chunk_while_the_upstream_is_still_generating(
    proxy_server, key, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?chunks=4&chunk_delay_ms=400")
    started = time.monotonic()
    arrivals = []
    stream = client(proxy_server, key[1]).chat.completions.create(
        model=unique_model, messages=HELLO, stream=True
    )
    pieces = []
    for chunk in stream:
        arrivals.append(time.monotonic() - started)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "Mock answer to: Hello there"
    # The upstream needs ~2 s in all; the first chunk must not wait for the last.
    assert arrivals[0] < 1.0
    assert arrivals[-1] - arrivals[0] > 1.2


def test_a_stream_has_no_usage_chunk_unless_the_client_asks(proxy_server, route, key, upstream):
    api = client(proxy_server, key[1])
    chunks = list(api.chat.completions.create(model=route, messages=HELLO, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.model == route for c in chunks)
    # ...but the proxy asked the upstream for it, to count the tokens.
    assert upstream.requests()[0]["body"]["stream_options"] == {"include_usage": True}
    with_usage = list(
        api.chat.completions.create(
            model=route, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1].usage.completion_tokens > 0


def test_streamed_and_plain_calls_record_the_same_usage(proxy_server, route, key):
    api = client(proxy_server, key[1])
    plain = api.chat.completions.create(model=route, messages=HELLO)
    list(api.chat.completions.create(model=route, messages=HELLO, stream=True))
    rows = wait_for_logs(2, model=route)
    assert [(r.input_tokens, r.output_tokens) for r in rows] == [
        (plain.usage.prompt_tokens, plain.usage.completion_tokens)
    ] * 2
    assert [r.stream for r in rows] == [False, True]
    assert all(r.status == 200 and not r.tokens_estimated for r in rows)
    # Cost from the route's prices: $1 per Mtok in, $2 per Mtok out.
    expected = (plain.usage.prompt_tokens * 1 + plain.usage.completion_tokens * 2) / 1_000_000
    assert float(rows[0].cost) == pytest.approx(expected)


def test_without_upstream_usage_tokens_are_estimated_the_same_way_streamed_or_not(
    proxy_server, key, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?usage=false")
    api = client(proxy_server, key[1])
    api.chat.completions.create(model=unique_model, messages=HELLO)
    list(api.chat.completions.create(model=unique_model, messages=HELLO, stream=True))
    rows = wait_for_logs(2, model=unique_model)
    assert all(r.tokens_estimated for r in rows)
    assert rows[0].input_tokens == rows[1].input_tokens > 0
    assert rows[0].output_tokens == rows[1].output_tokens > 0


def test_each_request_writes_one_log_row_and_the_hourly_rollup(proxy_server, route, key):
    api_key, plain = key
    api = client(proxy_server, plain)
    for _ in range(3):
        api.chat.completions.create(model=route, messages=HELLO)
    rows = wait_for_logs(3, model=route)
    assert len(rows) == 3
    assert {r.key_prefix for r in rows} == {api_key.prefix}
    assert all(r.provider == f"up-{route}" and r.upstream_model == "mock-1" for r in rows)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        metric = TokenUsageMetric.objects.filter(model=route, api_key=api_key).first()
        if metric and metric.requests == 3:
            break
        time.sleep(0.05)
    assert metric.requests == 3
    assert metric.input_tokens == sum(r.input_tokens for r in rows)
    assert metric.output_tokens == sum(r.output_tokens for r in rows)
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


def test_a_client_that_disconnects_cancels_the_upstream_and_its_usage_is_recorded(
    proxy_server, key, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?chunks=20&chunk_delay_ms=200")
    with httpx.stream(
        "POST",
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key[1]}"},
        json={"model": unique_model, "messages": HELLO, "stream": True},
    ) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(4)]
        assert any(line.startswith("data: {") for line in received)
    streams = upstream.streams_until_ended("mock-1")
    assert streams[-1]["outcome"] == "client_disconnected"
    assert streams[-1]["sent"] < 10
    [row] = wait_for_logs(1, model=unique_model)
    assert row.status == 499
    assert row.error_type == "client_disconnected"
    assert row.output_tokens > 0


def test_an_upstream_failing_mid_stream_gives_an_error_event_not_a_clean_end(
    proxy_server, key, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, upstream_model="mock-1?chunks=6&fail_after_chunks=3")
    stream = client(proxy_server, key[1]).chat.completions.create(
        model=unique_model, messages=HELLO, stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as failure:
        for chunk in stream:
            received.append(chunk)
    assert received, "the chunks before the failure reach the client"
    assert "upstream" in str(failure.value.message)
    [row] = wait_for_logs(1, model=unique_model)
    assert row.error_type == "upstream_stream_error"
    assert RequestLog.objects.filter(model=unique_model).count() == 1
