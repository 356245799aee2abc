"""/v1/messages on an OpenAI-speaking route: Anthropic requests to chat requests, and the answers back."""

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message

from providers.translate.anthropic_to_openai import chat_request
from providers.translate.common import TranslationError
from providers.translate.openai_to_anthropic import EventStream, message


def translate(**body):
    body.setdefault("model", "claude-ish")
    body.setdefault("max_tokens", 256)
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return chat_request(body)


# --- requests ----------------------------------------------------------------------------------
def test_the_system_prompt_comes_first_and_the_settings_carry_over():
    chat = translate(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        temperature=0.5,
        top_p=0.8,
        top_k=5,
        stop_sequences=["END"],
        stream=True,
        metadata={"user_id": "u-1"},
    )
    assert chat == {
        "model": "claude-ish",
        "max_tokens": 256,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["END"],
        "stream": True,
        "user": "u-1",
        "messages": [
            {"role": "system", "content": "Be brief.\n\nBe kind."},
            {"role": "user", "content": "Hi"},
        ],
    }


def test_content_blocks_become_content_parts():
    chat = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/b.png"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                    },
                ],
            }
        ]
    )
    assert chat["messages"][0]["content"] == [
        {"type": "text", "text": "Compare:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
        {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        },
    ]


def test_tool_use_and_tool_results_become_tool_calls_and_tool_messages():
    chat = translate(
        tools=[{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "18 C"}],
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
    )
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
        }
    ]
    assert (chat["tool_choice"], chat["parallel_tool_calls"]) == ("required", False)
    assert chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
        {"role": "user", "content": "And tomorrow?"},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_is_translated(choice, expected):
    chat = translate(tools=[{"name": "get_weather", "input_schema": {"type": "object"}}], tool_choice=choice)
    assert chat["tool_choice"] == expected


@pytest.mark.parametrize(
    "body",
    [
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        {"messages": [{"role": "user", "content": [{"type": "search_result", "source": "x"}]}]},
        {
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
            ]
        },
    ],
)
def test_what_an_openai_route_cannot_express_is_refused(body):
    with pytest.raises(TranslationError):
        translate(**body)


# --- answers -----------------------------------------------------------------------------------
def completion(message_fields, finish_reason="stop", usage=None):
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message_fields}, "finish_reason": finish_reason}
        ],
    }
    if usage:
        answer["usage"] = usage
    return answer


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_finish_reasons_become_stop_reasons(finish_reason, stop_reason):
    answer = message(
        completion({"content": "Hi"}, finish_reason), model="pub", input_tokens=3, output_tokens=1
    )
    assert answer["stop_reason"] == stop_reason


def test_an_answer_becomes_an_anthropic_message_with_the_metered_usage():
    answer = message(
        completion(
            {
                "content": "Hello",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                ],
            },
            "tool_calls",
            {"prompt_tokens": 50, "prompt_tokens_details": {"cached_tokens": 20}},
        ),
        model="public-name",
        input_tokens=50,
        output_tokens=7,
    )
    parsed = Message.model_validate(answer)
    assert parsed.model == "public-name"
    assert parsed.id.startswith("msg_")
    assert [block.type for block in parsed.content] == ["text", "tool_use"]
    assert parsed.content[1].input == {"a": 1}
    assert (parsed.usage.input_tokens, parsed.usage.cache_read_input_tokens, parsed.usage.output_tokens) == (
        30,
        20,
        7,
    )


# --- streams -----------------------------------------------------------------------------------
def chunk(delta=None, finish_reason=None):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}],
    }


CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ]
        }
    ),
    chunk({}, "tool_calls"),
    {**chunk(), "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}},
]


def stream_events():
    stream = EventStream("public-name")
    per_chunk = [stream.start("msg_1", 10)]
    per_chunk.extend(stream.feed(c) for c in CHUNKS)
    per_chunk.append(stream.finish(12, 9))
    return per_chunk


def test_each_chunk_becomes_its_events_as_it_arrives():
    names = [[event["type"] for event in events] for events in stream_events()]
    assert names == [
        ["message_start"],
        [],
        ["content_block_start", "content_block_delta"],
        ["content_block_delta"],
        ["content_block_stop", "content_block_start"],
        ["content_block_delta"],
        ["content_block_delta"],
        ["content_block_stop", "content_block_start", "content_block_delta"],
        [],
        [],
        ["content_block_stop", "message_delta", "message_stop"],
    ]


def test_the_events_build_the_message_anthropics_sdk_expects():
    snapshot = None
    for events in stream_events():
        for event in events:
            snapshot = accumulate_event(event=event, current_snapshot=snapshot)
    assert snapshot.model == "public-name"
    assert snapshot.stop_reason == "tool_use"
    assert snapshot.content[0].text == "Let me check."
    assert [(b.name, b.input) for b in snapshot.content[1:]] == [
        ("get_weather", {"location": "Paris"}),
        ("get_time", {}),
    ]
    assert (snapshot.usage.input_tokens, snapshot.usage.output_tokens) == (12, 9)


def test_an_empty_answer_still_makes_a_complete_message():
    stream = EventStream("m")
    events = [*stream.start("msg_1", 3), *stream.feed(chunk({}, "stop")), *stream.finish(3, 0)]
    assert [e["type"] for e in events] == ["message_start", "message_delta", "message_stop"]
    assert events[1]["delta"]["stop_reason"] == "end_turn"
