"""The openai client in front of an `anthropic` route: a real Daphne, the mock upstream's Messages API."""

import json
import time

import httpx
import openai
import pytest

from providers.mock_tools import TOOL_INPUT
from tests.anthropic_helpers import CREDENTIAL, HELLO, anthropic_route, usage_written
from tests.gateway_helpers import client, make_key, make_route, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


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


def test_it_answers_in_openai_format_with_the_public_model_name(proxy_server, route, key):
    answer = client(proxy_server, key).chat.completions.create(model=route, messages=HELLO)
    assert answer.choices[0].message.content == "Mock answer to: Hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == route
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_it_speaks_anthropics_wire_format_to_the_upstream(proxy_server, route, key, upstream):
    client(proxy_server, key).chat.completions.create(
        model=route,
        temperature=0.2,
        stop="###",
        user="user-7",
        messages=[
            {"role": "system", "content": "Be brief."},
            *HELLO,
            {"role": "user", "content": "And you?"},
        ],
    )
    [received] = upstream.requests()
    assert received["path"] == "/v1/messages"
    assert received["headers"]["x-api-key"] == CREDENTIAL
    assert received["headers"]["anthropic-version"] == "2023-06-01"
    assert received["headers"]["x-team"] == "platform"
    assert "authorization" not in received["headers"]
    assert received["body"] == {
        "model": "claude-x",
        "system": "Be brief.",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello there"}, {"type": "text", "text": "And you?"}],
            }
        ],
        "max_tokens": 4096,
        "temperature": 0.2,
        "stop_sequences": ["###"],
        "metadata": {"user_id": "user-7"},
    }


def test_max_tokens_ends_the_answer_with_finish_reason_length(proxy_server, route, key, upstream):
    answer = client(proxy_server, key).chat.completions.create(model=route, messages=HELLO, max_tokens=2)
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 2
    assert upstream.requests()[0]["body"]["max_tokens"] == 2


def test_a_stream_arrives_chunk_by_chunk_while_the_upstream_is_still_generating(
    proxy_server, key, acme, upstream, unique_model
):
    anthropic_route(acme, unique_model, upstream, "claude-x?chunks=4&chunk_delay_ms=400")
    started = time.monotonic()
    arrivals, pieces = [], []
    for chunk in client(proxy_server, key).chat.completions.create(
        model=unique_model, messages=HELLO, stream=True
    ):
        arrivals.append(time.monotonic() - started)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "Mock answer to: Hello there"
    # The upstream needs ~1.2 s between its first and last delta; the first chunk must not wait for the last.
    assert arrivals[0] < 1.0
    assert arrivals[-1] - arrivals[0] > 1.0


def test_a_stream_has_a_usage_chunk_only_when_the_client_asks(proxy_server, route, key, upstream):
    api = client(proxy_server, key)
    chunks = list(api.chat.completions.create(model=route, messages=HELLO, stream=True))
    assert all(c.usage is None and c.model == route for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert upstream.requests()[0]["body"]["stream"] is True
    plain = api.chat.completions.create(model=route, messages=HELLO)
    with_usage = list(
        api.chat.completions.create(
            model=route, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    assert with_usage[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_a_tool_call_comes_back_as_openai_tool_calls(proxy_server, key, acme, upstream, unique_model):
    anthropic_route(acme, unique_model, upstream, "claude-x?tool=get_weather&reply=Let me check.")
    answer = client(proxy_server, key).chat.completions.create(
        model=unique_model, messages=HELLO, tools=[WEATHER_TOOL], tool_choice="required"
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name) == ("toolu_mock_get_weather", "get_weather")
    assert json.loads(call.function.arguments) == TOOL_INPUT
    body = upstream.requests()[0]["body"]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather of a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any"}


def test_a_streamed_tool_call_arrives_as_tool_call_deltas(proxy_server, key, acme, upstream, unique_model):
    anthropic_route(acme, unique_model, upstream, "claude-x?tool=get_weather")
    chunks = list(
        client(proxy_server, key).chat.completions.create(
            model=unique_model, messages=HELLO, tools=[WEATHER_TOOL], stream=True
        )
    )
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "toolu_mock_get_weather" and calls[0].function.name == "get_weather"
    assert len(calls) > 2, "the arguments arrive in several deltas"
    assert {call.index for call in calls} == {0}
    assert json.loads("".join(call.function.arguments or "" for call in calls)) == TOOL_INPUT
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


CALL = {
    "id": "toolu_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
}


def test_a_tool_round_trip_reaches_anthropic_as_tool_use_and_tool_result(proxy_server, route, key, upstream):
    answer = client(proxy_server, key).chat.completions.create(
        model=route,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C and sunny"},
        ],
    )
    assert answer.choices[0].message.content == "Mock answer."
    assert upstream.requests()[0]["body"]["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C and sunny"}],
        },
    ]


def test_images_reach_anthropic_as_image_blocks(proxy_server, route, key, upstream):
    client(proxy_server, key).chat.completions.create(
        model=route,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is it?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                ],
            }
        ],
    )
    assert upstream.requests()[0]["body"]["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
    }


def test_streamed_and_plain_calls_record_the_same_usage(proxy_server, route, key):
    api = client(proxy_server, key)
    plain = api.chat.completions.create(model=route, messages=HELLO)
    list(api.chat.completions.create(model=route, messages=HELLO, stream=True))
    rows = wait_for_logs(2, model=route)
    assert [(r.input_tokens, r.output_tokens, r.stream) for r in rows] == [
        (plain.usage.prompt_tokens, plain.usage.completion_tokens, False),
        (plain.usage.prompt_tokens, plain.usage.completion_tokens, True),
    ]
    assert all(r.status == 200 and not r.tokens_estimated and r.endpoint == "chat" for r in rows)
    assert all(r.provider == f"up-{route}" and r.upstream_model == "claude-x" for r in rows)
    expected = (plain.usage.prompt_tokens * 3 + plain.usage.completion_tokens * 15) / 1_000_000
    assert float(rows[0].cost) == pytest.approx(expected)


def test_an_overloaded_anthropic_upstream_falls_back_to_the_next_route(
    proxy_server, key, acme, upstream, unique_model
):
    anthropic_route(acme, unique_model, upstream, "claude-x?fail_status=529", priority=0)
    make_route(acme, unique_model, upstream.v1, "mock-1", name=f"backup-{unique_model}", priority=1)
    answer = client(proxy_server, key).chat.completions.create(model=unique_model, messages=HELLO)
    assert answer.choices[0].message.content == "Mock answer to: Hello there"
    assert [r["path"] for r in upstream.requests()] == ["/v1/messages", "/v1/chat/completions"]
    [row] = wait_for_logs(1, model=unique_model)
    assert row.provider == f"backup-{unique_model}"
    assert [a["status"] for a in row.attempts] == [529, 200]


def test_a_request_anthropic_rejects_is_a_400_and_no_other_route_is_tried(
    proxy_server, key, acme, upstream, unique_model
):
    anthropic_route(acme, unique_model, upstream, "claude-x?fail_status=400", priority=0)
    make_route(acme, unique_model, upstream.v1, "mock-1", name=f"backup-{unique_model}", priority=1)
    with pytest.raises(openai.BadRequestError):
        client(proxy_server, key).chat.completions.create(model=unique_model, messages=HELLO)
    assert [r["path"] for r in upstream.requests()] == ["/v1/messages"]


def test_what_anthropic_cannot_express_is_a_400(proxy_server, route, key, upstream):
    with pytest.raises(openai.BadRequestError) as refused:
        client(proxy_server, key).chat.completions.create(model=route, messages=HELLO, n=2)
    assert "'n'" in refused.value.message
    assert upstream.requests() == []


def test_an_error_event_mid_stream_reaches_the_client_as_an_error(
    proxy_server, key, acme, upstream, unique_model
):
    anthropic_route(acme, unique_model, upstream, "claude-x?chunks=6&fail_after_chunks=3")
    received = []
    with pytest.raises(openai.APIError) as failure:
        for chunk in client(proxy_server, key).chat.completions.create(
            model=unique_model, messages=HELLO, stream=True
        ):
            received.append(chunk)
    assert len([c for c in received if c.choices and c.choices[0].delta.content]) == 3
    assert "Overloaded" in str(failure.value.message)
    [row] = wait_for_logs(1, model=unique_model)
    assert row.error_type == "upstream_stream_error"


def test_embeddings_are_not_served_by_an_anthropic_route(proxy_server, route, key, upstream):
    with pytest.raises(openai.APIStatusError) as refused:
        client(proxy_server, key).embeddings.create(model=route, input="hello")
    assert refused.value.status_code == 502
    assert upstream.requests() == []


def test_a_client_that_disconnects_cancels_the_anthropic_stream(
    proxy_server, key, acme, upstream, unique_model
):
    anthropic_route(acme, unique_model, upstream, "claude-x?chunks=20&chunk_delay_ms=200")
    with httpx.stream(
        "POST",
        f"{proxy_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": unique_model, "messages": HELLO, "stream": True},
    ) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(4)]
        assert any(line.startswith("data: {") for line in received)
    streams = upstream.streams_until_ended("claude-x")
    assert streams[-1]["outcome"] == "client_disconnected"
    [row] = wait_for_logs(1, model=unique_model)
    assert row.status == 499
