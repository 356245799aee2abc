"""The `anthropic` adapter's translation: OpenAI chat requests to the Messages API, and its answers back."""

import orjson
import pytest

from providers.translate.anthropic_to_openai import ChunkStream, chat_completion
from providers.translate.common import TranslationError
from providers.translate.openai_to_anthropic import messages_request

PNG = "iVBORw0KGgo="
PDF = "JVBERi0="


def translate(**chat):
    chat.setdefault("model", "gpt-ish")
    chat.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return messages_request(chat, default_max_tokens=4096)


# --- requests ----------------------------------------------------------------------------------
def test_system_and_developer_messages_become_the_system_prompt():
    body = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
        ]
    )
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_consecutive_messages_of_one_role_are_merged_into_one_turn():
    body = translate(
        messages=[
            {"role": "user", "content": "One"},
            {"role": "user", "content": "Two"},
            {"role": "assistant", "content": "Three"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Four"},
        ]
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Three"}]},
        {"role": "user", "content": [{"type": "text", "text": "Four"}]},
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 300}, 300),
        ({"max_completion_tokens": 200}, 200),
        ({"max_completion_tokens": 200, "max_tokens": 300}, 200),
    ],
)
def test_max_tokens_is_always_sent_with_a_default_when_absent(fields, expected):
    assert translate(**fields)["max_tokens"] == expected


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["A", "B"], ["A", "B"])])
def test_stop_becomes_stop_sequences(stop, expected):
    assert translate(stop=stop)["stop_sequences"] == expected


def test_sampling_settings_pass_and_temperature_is_kept_within_anthropics_range():
    body = translate(temperature=0.3, top_p=0.9, user="user-42", stream=True)
    assert (body["temperature"], body["top_p"], body["metadata"], body["stream"]) == (
        0.3,
        0.9,
        {"user_id": "user-42"},
        True,
    )
    assert translate(temperature=1.7)["temperature"] == 1.0
    assert "stream_options" not in translate(stream=True, stream_options={"include_usage": True})


def test_anthropics_own_settings_sent_as_extra_fields_pass_and_other_fields_do_not():
    body = translate(top_k=20, thinking={"type": "enabled", "budget_tokens": 2048}, seed=7, logprobs=True)
    assert (body["top_k"], body["thinking"]) == (20, {"type": "enabled", "budget_tokens": 2048})
    assert "seed" not in body and "logprobs" not in body


def test_images_by_url_and_as_base64_data_urls_become_image_blocks():
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                    },
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]


def test_an_inline_pdf_becomes_a_document_block():
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {"filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
                    }
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}
    ]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def test_function_tools_become_anthropic_tools():
    body = translate(tools=[WEATHER, {"type": "function", "function": {"name": "now"}}])
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather of a city",
            "input_schema": WEATHER["function"]["parameters"],
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice_is_translated(tool_choice, parallel, expected):
    fields = {"tools": [WEATHER], "tool_choice": tool_choice, "parallel_tool_calls": parallel}
    assert translate(**{k: v for k, v in fields.items() if v is not None})["tool_choice"] == expected


def test_a_tool_round_trip_becomes_tool_use_and_tool_result_blocks():
    body = translate(
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "sunny"}]},
            {"role": "user", "content": "Thanks"},
        ],
    )
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "sunny"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


@pytest.mark.parametrize(
    "chat",
    [
        {"n": 2},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}
                    ],
                }
            ]
        },
        {"tools": [{"type": "custom", "custom": {"name": "grammar"}}]},
    ],
)
def test_what_anthropic_cannot_express_is_refused(chat):
    with pytest.raises(TranslationError):
        translate(**chat)


# --- answers -----------------------------------------------------------------------------------
def anthropic_message(content, stop_reason="end_turn", **usage):
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reasons_become_finish_reasons(stop_reason, finish_reason):
    answer = chat_completion(anthropic_message([{"type": "text", "text": "Hi"}], stop_reason))
    assert answer["choices"][0]["finish_reason"] == finish_reason


def test_an_answer_becomes_a_chat_completion_with_usage_counting_cache_tokens():
    blocks = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "!"}]
    answer = chat_completion(
        anthropic_message(blocks, cache_creation_input_tokens=100, cache_read_input_tokens=1000)
    )
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "Hello!"
    assert answer["usage"] == {
        "prompt_tokens": 1110,
        "completion_tokens": 5,
        "total_tokens": 1115,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }


def test_tool_use_blocks_become_tool_calls():
    answer = chat_completion(
        anthropic_message(
            [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
            ],
            "tool_use",
        )
    )
    message = answer["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
        }
    ]


# --- streams -----------------------------------------------------------------------------------
STREAM = [
    {
        "type": "message_start",
        "message": {
            **anthropic_message([], None),
            "usage": {"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "check."}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}},
    },
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"loc'},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": 'ation": "Paris"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 30},
    },
    {"type": "message_stop"},
]


def test_each_stream_event_is_translated_as_it_arrives():
    stream = ChunkStream()
    per_event = [stream.feed(event) for event in STREAM]
    deltas = [[c["choices"][0]["delta"] if c["choices"] else "usage" for c in chunks] for chunks in per_event]
    assert deltas == [
        [{"role": "assistant", "content": "", "refusal": None}],
        [],
        [],
        [{"content": "Let me "}],
        [{"content": "check."}],
        [],
        [
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ],
        [],
        [{"tool_calls": [{"index": 0, "function": {"arguments": '{"loc'}}]}],
        [{"tool_calls": [{"index": 0, "function": {"arguments": 'ation": "Paris"}'}}]}],
        [],
        [{}],
        ["usage"],
    ]
    assert per_event[11][0]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(
        c["object"] == "chat.completion.chunk" and c["id"] == "msg_01" and c["model"] == "claude-x"
        for chunks in per_event
        for c in chunks
    )
    assert stream.done


def test_the_last_chunk_carries_the_usage_for_the_gateway_to_meter():
    stream = ChunkStream()
    chunks = [chunk for event in STREAM for chunk in stream.feed(event)]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 25,
        "completion_tokens": 30,
        "total_tokens": 55,
        "prompt_tokens_details": {"cached_tokens": 5},
    }


def test_a_stream_without_usage_ends_without_a_usage_chunk():
    stream = ChunkStream()
    events = [orjson.loads(orjson.dumps(e)) for e in STREAM]
    del events[0]["message"]["usage"]
    del events[-2]["usage"]
    chunks = [chunk for event in events for chunk in stream.feed(event)]
    assert all(chunk["choices"] for chunk in chunks)
    assert "usage" not in chunks[-1]
