"""POST /v1/messages on routes that speak OpenAI: the anthropic client, translated both ways."""

import time

import anthropic
import httpx
import pytest

from providers.mock_tools import TOOL_INPUT
from tests.anthropic_helpers import HELLO, anthropic_client, anthropic_route, sse_event_names, usage_written
from tests.gateway_helpers import make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
    }
]


@pytest.fixture(autouse=True)
def _usage_written(proxy_server, acme):
    with usage_written(proxy_server, acme):
        yield


@pytest.fixture
def key(acme):
    return make_key(acme, name="app")[1]


@pytest.fixture
def route(acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, input_price="1.0", output_price="2.0")
    return unique_model


def test_it_answers_an_anthropic_message_from_an_openai_upstream(proxy_server, route, key, upstream):
    message = anthropic_client(proxy_server, key).messages.create(model=route, max_tokens=300, messages=HELLO)
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].text == "Mock answer to: Hello there"
    assert message.model == route
    assert message.stop_reason == "end_turn"
    openai_usage = httpx.post(f"{upstream.v1}/chat/completions", json=upstream.requests()[0]["body"]).json()[
        "usage"
    ]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        openai_usage["prompt_tokens"],
        openai_usage["completion_tokens"],
    )


def test_the_upstream_gets_the_openai_translation(proxy_server, route, key, upstream):
    anthropic_client(proxy_server, key).messages.create(
        model=route,
        max_tokens=300,
        system="Be brief.",
        messages=HELLO,
        stop_sequences=["###"],
        temperature=0.4,
    )
    [received] = upstream.requests()
    assert received["path"] == "/v1/chat/completions"
    assert received["body"] == {
        "model": "mock-1",
        "max_tokens": 300,
        "temperature": 0.4,
        "stop": ["###"],
        "messages": [{"role": "system", "content": "Be brief."}, *HELLO],
    }


def test_a_stream_is_told_as_anthropics_event_sequence(proxy_server, key, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, "mock-1?chunks=3")
    response = httpx.post(
        f"{proxy_server.base_url}/v1/messages",
        headers={"x-api-key": key},
        json={"model": unique_model, "max_tokens": 100, "messages": HELLO, "stream": True},
    )
    assert sse_event_names(response.text) == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert "data: [DONE]" not in response.text


def test_a_stream_builds_the_same_message_as_the_plain_answer(proxy_server, route, key):
    api = anthropic_client(proxy_server, key)
    plain = api.messages.create(model=route, max_tokens=100, messages=HELLO)
    with api.messages.stream(model=route, max_tokens=100, messages=HELLO) as stream:
        texts = list(stream.text_stream)
        streamed = stream.get_final_message()
    assert len(texts) == 5
    assert streamed.content[0].text == plain.content[0].text
    assert streamed.model == route
    assert streamed.stop_reason == "end_turn"
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == (
        plain.usage.input_tokens,
        plain.usage.output_tokens,
    )


def test_a_stream_arrives_event_by_event_while_the_upstream_is_still_generating(
    proxy_server, key, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, "mock-1?chunks=4&chunk_delay_ms=400")
    started = time.monotonic()
    arrivals = []
    with anthropic_client(proxy_server, key).messages.stream(
        model=unique_model, max_tokens=100, messages=HELLO
    ) as stream:
        for _ in stream.text_stream:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 4
    assert arrivals[0] < 1.0
    assert arrivals[-1] - arrivals[0] > 1.0


def test_tool_calls_come_back_as_tool_use_plain_and_streamed(proxy_server, key, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, "mock-1?tool=get_weather&reply=Checking.")
    api = anthropic_client(proxy_server, key)
    plain = api.messages.create(
        model=unique_model, max_tokens=100, messages=HELLO, tools=TOOLS, tool_choice={"type": "any"}
    )
    with api.messages.stream(model=unique_model, max_tokens=100, messages=HELLO, tools=TOOLS) as stream:
        streamed = stream.get_final_message()
    for message in (plain, streamed):
        assert message.stop_reason == "tool_use"
        text, tool_use = message.content
        assert text.text == "Checking."
        assert (tool_use.id, tool_use.name) == ("call_mock_get_weather", "get_weather")
        assert tool_use.input == TOOL_INPUT
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == (
        plain.usage.input_tokens,
        plain.usage.output_tokens,
    )
    body = upstream.requests()[0]["body"]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": TOOLS[0]["input_schema"],
            },
        }
    ]
    assert body["tool_choice"] == "required"


def test_a_tool_round_trip_reaches_the_upstream_as_tool_calls_and_tool_messages(
    proxy_server, route, key, upstream
):
    message = anthropic_client(proxy_server, key).messages.create(
        model=route,
        max_tokens=100,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"}],
            },
        ],
    )
    assert message.content[0].text
    assert upstream.requests()[0]["body"]["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
    ]


def test_a_failing_anthropic_route_falls_back_to_an_openai_route(
    proxy_server, acme, key, upstream, unique_model
):
    anthropic_route(acme, unique_model, upstream, "claude-x?fail_status=529", priority=0)
    make_route(acme, unique_model, upstream.v1, name=f"oa-{unique_model}", priority=1)
    api = anthropic_client(proxy_server, key)
    message = api.messages.create(model=unique_model, max_tokens=100, messages=HELLO)
    assert message.content[0].text == "Mock answer to: Hello there"
    first, second = upstream.requests()
    assert (first["path"], first["body"]) == (
        "/v1/messages",
        {"model": "claude-x?fail_status=529", "max_tokens": 100, "messages": HELLO},
    )
    assert second["path"] == "/v1/chat/completions"
    [row] = wait_for_logs(1, model=unique_model)
    assert row.provider == f"oa-{unique_model}"
    assert [a["status"] for a in row.attempts] == [529, 200]


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


def test_without_upstream_usage_the_estimate_is_the_same_streamed_or_not(
    proxy_server, key, acme, upstream, unique_model
):
    make_route(acme, unique_model, upstream.v1, "mock-1?usage=false")
    api = anthropic_client(proxy_server, key)
    plain = api.messages.create(model=unique_model, max_tokens=100, messages=HELLO)
    with api.messages.stream(model=unique_model, max_tokens=100, messages=HELLO) as stream:
        streamed = stream.get_final_message()
    assert plain.usage.output_tokens == streamed.usage.output_tokens > 0
    rows = wait_for_logs(2, model=unique_model)
    assert all(r.tokens_estimated for r in rows)
    assert rows[0].input_tokens == rows[1].input_tokens == plain.usage.input_tokens > 0


def test_an_upstream_failing_mid_stream_gives_an_error_event(proxy_server, key, acme, upstream, unique_model):
    make_route(acme, unique_model, upstream.v1, "mock-1?chunks=6&fail_after_chunks=3")
    api = anthropic_client(proxy_server, key)
    texts = []
    with (
        pytest.raises(anthropic.APIStatusError) as failure,
        api.messages.stream(model=unique_model, max_tokens=100, messages=HELLO) as stream,
    ):
        texts.extend(stream.text_stream)
    assert texts, "the text before the failure reaches the client"
    assert failure.value.body["type"] == "error"
    [row] = wait_for_logs(1, model=unique_model)
    assert row.error_type == "upstream_stream_error"


def test_what_an_openai_route_cannot_express_is_a_bad_request(proxy_server, route, key, upstream):
    with pytest.raises(anthropic.BadRequestError):
        anthropic_client(proxy_server, key).messages.create(
            model=route,
            max_tokens=100,
            messages=HELLO,
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
        )
    assert upstream.requests() == []


def test_the_built_in_mock_provider_serves_messages(proxy_server, key, acme, unique_model):
    make_route(acme, unique_model, "", "mock-1?chunks=2", kind="mock")
    api = anthropic_client(proxy_server, key)
    plain = api.messages.create(model=unique_model, max_tokens=100, messages=HELLO)
    with api.messages.stream(model=unique_model, max_tokens=100, messages=HELLO) as stream:
        texts = list(stream.text_stream)
    assert plain.content[0].text == "".join(texts) == "Mock answer to: Hello there"
    assert len(texts) == 2


def test_count_tokens_is_estimated_locally(proxy_server, route, key, upstream):
    api = anthropic_client(proxy_server, key)
    short = api.messages.count_tokens(model=route, messages=HELLO)
    longer = api.messages.count_tokens(
        model=route, messages=HELLO, system="Answer like a pirate, always.", tools=TOOLS
    )
    assert 0 < short.input_tokens < longer.input_tokens
    assert upstream.requests() == []
