"""POST /v1/messages end to end with the official anthropic client: an `anthropic` route is passed through.

Also the Anthropic-shaped errors, keys, request ids, quotas and count_tokens of the surface.
"""

import anthropic
import httpx
import pytest

from providers.mock_tools import TOOL_INPUT
from quotas.services import quota_limit_set
from tests.anthropic_helpers import (
    CREDENTIAL,
    HELLO,
    anthropic_client,
    anthropic_route,
    sse_event_names,
    usage_written,
)
from tests.gateway_helpers import make_key, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _usage_written(proxy_server, acme):
    with usage_written(proxy_server, acme):
        yield


@pytest.fixture
def key(acme):
    return make_key(acme, name="app")[1]


@pytest.fixture
def route(acme, upstream, unique_model):
    anthropic_route(acme, unique_model, upstream, input_price="3.0", output_price="15.0")
    return unique_model


def test_it_passes_the_request_through_with_the_upstream_model_and_credential(
    proxy_server, route, key, upstream
):
    message = anthropic_client(proxy_server, key).messages.create(
        model=route,
        max_tokens=300,
        system="Be brief.",
        messages=HELLO,
        temperature=0.3,
        top_k=5,
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
    )
    assert message.content[0].text == "Mock answer to: Hello there"
    assert message.model == route
    assert message.stop_reason == "end_turn"
    [received] = upstream.requests()
    assert received["path"] == "/v1/messages"
    assert received["body"] == {
        "model": "claude-x",
        "max_tokens": 300,
        "system": "Be brief.",
        "messages": HELLO,
        "temperature": 0.3,
        "top_k": 5,
    }
    # The proxy key stays with the proxy; the upstream gets the provider's credential.
    assert received["headers"]["x-api-key"] == CREDENTIAL
    assert received["headers"]["anthropic-version"] == "2023-06-01"
    assert received["headers"]["x-team"] == "platform"
    assert received["headers"]["anthropic-beta"] == "context-1m-2025-08-07"


def test_a_stream_forwards_anthropics_events_as_they_are(proxy_server, route, key):
    response = httpx.post(
        f"{proxy_server.base_url}/v1/messages",
        headers={"x-api-key": key},
        json={"model": route, "max_tokens": 100, "messages": HELLO, "stream": True},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert sse_event_names(response.text) == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    with anthropic_client(proxy_server, key).messages.stream(
        model=route, max_tokens=100, messages=HELLO
    ) as stream:
        texts = list(stream.text_stream)
        message = stream.get_final_message()
    assert len(texts) == 5
    assert "".join(texts) == message.content[0].text == "Mock answer to: Hello there"
    assert message.model == route
    assert message.usage.output_tokens > 1


def test_tool_use_passes_through_plain_and_streamed(proxy_server, key, acme, upstream, unique_model):
    anthropic_route(acme, unique_model, upstream, "claude-x?tool=get_weather")
    api = anthropic_client(proxy_server, key)
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    plain = api.messages.create(
        model=unique_model,
        max_tokens=100,
        messages=HELLO,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    with api.messages.stream(model=unique_model, max_tokens=100, messages=HELLO, tools=tools) as stream:
        streamed = stream.get_final_message()
    for message in (plain, streamed):
        assert message.stop_reason == "tool_use"
        [block] = message.content
        assert (block.type, block.name, block.input) == ("tool_use", "get_weather", TOOL_INPUT)
    assert upstream.requests()[0]["body"]["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_streamed_and_plain_calls_record_the_same_usage(proxy_server, route, key):
    api = anthropic_client(proxy_server, key)
    plain = api.messages.create(model=route, max_tokens=100, messages=HELLO)
    with api.messages.stream(model=route, max_tokens=100, messages=HELLO) as stream:
        stream.until_done()
    rows = wait_for_logs(2, model=route)
    assert [(r.input_tokens, r.output_tokens, r.stream) for r in rows] == [
        (plain.usage.input_tokens, plain.usage.output_tokens, False),
        (plain.usage.input_tokens, plain.usage.output_tokens, True),
    ]
    assert all(r.endpoint == "messages" and r.status == 200 and not r.tokens_estimated for r in rows)
    assert all(r.provider == f"up-{route}" and r.upstream_model == "claude-x" for r in rows)
    expected = (plain.usage.input_tokens * 3 + plain.usage.output_tokens * 15) / 1_000_000
    assert float(rows[0].cost) == pytest.approx(expected)


def test_an_error_event_mid_stream_is_forwarded_and_recorded(proxy_server, key, acme, upstream, unique_model):
    anthropic_route(acme, unique_model, upstream, "claude-x?chunks=6&fail_after_chunks=2")
    texts = []
    api = anthropic_client(proxy_server, key)
    with (
        pytest.raises(anthropic.APIStatusError) as failure,
        api.messages.stream(model=unique_model, max_tokens=100, messages=HELLO) as stream,
    ):
        texts.extend(stream.text_stream)
    assert len(texts) == 2
    assert failure.value.body["error"]["type"] == "overloaded_error"
    [row] = wait_for_logs(1, model=unique_model)
    assert row.error_type == "upstream_stream_error"


def test_an_overloaded_upstream_is_a_retryable_error_for_the_client(
    proxy_server, key, acme, upstream, unique_model
):
    anthropic_route(acme, unique_model, upstream, "claude-x?fail_status=529")
    api = anthropic_client(proxy_server, key)
    with pytest.raises(anthropic.APIStatusError) as failure:
        api.messages.create(model=unique_model, max_tokens=100, messages=HELLO)
    assert failure.value.status_code >= 500
    assert failure.value.body["type"] == "error"


def test_a_client_that_disconnects_cancels_the_upstream_and_its_usage_is_recorded(
    proxy_server, key, acme, upstream, unique_model
):
    anthropic_route(acme, unique_model, upstream, "claude-x?chunks=20&chunk_delay_ms=200")
    with httpx.stream(
        "POST",
        f"{proxy_server.base_url}/v1/messages",
        headers={"x-api-key": key},
        json={"model": unique_model, "max_tokens": 100, "messages": HELLO, "stream": True},
    ) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(12)]
        assert "event: content_block_delta" in received
    streams = upstream.streams_until_ended("claude-x")
    assert streams[-1]["outcome"] == "client_disconnected"
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type, row.endpoint) == (499, "client_disconnected", "messages")
    assert row.input_tokens > 0 and row.output_tokens > 0


# --- keys, errors, headers -------------------------------------------------------------------------
def test_the_key_may_come_as_a_bearer_token(proxy_server, route, key):
    api = anthropic.Anthropic(base_url=proxy_server.base_url, auth_token=key, max_retries=0)
    assert api.messages.create(model=route, max_tokens=100, messages=HELLO).model == route


def test_a_bad_key_is_an_anthropic_authentication_error(proxy_server, route):
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic_client(proxy_server, "lp-nope").messages.create(model=route, max_tokens=10, messages=HELLO)
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "authentication_error"


def test_an_unknown_model_is_an_anthropic_not_found_error(proxy_server, key, unique_model):
    with pytest.raises(anthropic.NotFoundError) as refused:
        anthropic_client(proxy_server, key).messages.create(model=unique_model, max_tokens=10, messages=HELLO)
    assert refused.value.body["error"]["type"] == "not_found_error"


def test_a_model_the_key_may_not_use_is_a_permission_error(proxy_server, acme, route):
    limited = make_key(acme, name="limited", allowed_models=["something-else"])[1]
    with pytest.raises(anthropic.PermissionDeniedError):
        anthropic_client(proxy_server, limited).messages.create(model=route, max_tokens=10, messages=HELLO)


@pytest.mark.parametrize(
    "fields",
    [
        {"model": None},
        {"max_tokens": None},
        {"max_tokens": 0},
        {"messages": []},
        {"messages": [{"role": "system", "content": "Be brief."}]},
        {"stream": "yes"},
    ],
)
def test_a_malformed_request_is_an_anthropic_bad_request(proxy_server, route, key, upstream, fields):
    body = {"model": route, "max_tokens": 10, "messages": HELLO, **fields}
    response = httpx.post(
        f"{proxy_server.base_url}/v1/messages",
        headers={"x-api-key": key},
        json={name: value for name, value in body.items() if value is not None},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests() == []


def test_the_sdk_raises_bad_request_for_a_malformed_request(proxy_server, route, key):
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client(proxy_server, key).messages.create(model=route, max_tokens=0, messages=HELLO)


def test_every_answer_carries_the_request_id(proxy_server, route, key):
    raw = anthropic_client(proxy_server, key).messages.with_raw_response.create(
        model=route, max_tokens=10, messages=HELLO, extra_headers={"x-request-id": "trace-msg-1"}
    )
    assert raw.headers["x-request-id"] == "trace-msg-1"
    refused = httpx.post(f"{proxy_server.base_url}/v1/messages", headers={"x-api-key": "nope"}, json={})
    assert refused.status_code == 401
    assert refused.headers["x-request-id"].startswith("req_")


def test_a_token_quota_cuts_the_max_tokens_sent_upstream(proxy_server, acme, route, upstream):
    api_key, plain = make_key(acme, name="metered")
    quota_limit_set(tenant=acme, api_key=api_key, metric="tokens", period="hour", limit=200)
    api = anthropic_client(proxy_server, plain)
    message = api.messages.create(model=route, max_tokens=4000, messages=HELLO)
    assert message.content[0].text
    sent = upstream.requests()[0]["body"]["max_tokens"]
    assert 0 < sent < 200


def test_requests_are_counted_in_the_metrics(proxy_server, route, key):
    anthropic_client(proxy_server, key).messages.create(model=route, max_tokens=10, messages=HELLO)
    metrics = httpx.get(f"{proxy_server.base_url}/metrics").text
    assert f'model="{route}",provider="up-{route}",status="200"' in metrics


# --- count_tokens ------------------------------------------------------------------------------------
def test_count_tokens_asks_an_anthropic_upstream(proxy_server, route, key, upstream):
    counted = anthropic_client(proxy_server, key).messages.count_tokens(
        model=route, messages=HELLO, system="Be brief."
    )
    [received] = upstream.requests()
    assert received["path"] == "/v1/messages/count_tokens"
    assert received["body"] == {"model": "claude-x", "messages": HELLO, "system": "Be brief."}
    assert received["headers"]["x-api-key"] == CREDENTIAL
    direct = httpx.post(
        f"{upstream.base}/v1/messages/count_tokens",
        json=received["body"],
        headers={"anthropic-version": "2023-06-01"},
    ).json()
    assert counted.input_tokens == direct["input_tokens"] > 0


def test_count_tokens_answers_errors_in_anthropics_shape(proxy_server, key, unique_model):
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client(proxy_server, key).messages.count_tokens(model=unique_model, messages=HELLO)
