"""What makes two requests the same for the response cache, and the stream <-> answer round trip."""

import pytest

from llmproxy.gateway.response_cache import (
    StreamAssembler,
    cache_key,
    cacheable,
    replay_chunks,
    request_directive,
)
from providers import mock_engine


class Tenant:
    def __init__(self, id=1, ttl=60, skip=False, generation=0):
        self.id = id
        self.cache_ttl_seconds = ttl
        self.cache_skip_nondeterministic = skip
        self.cache_generation = generation


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_key_order_whitespace_and_explicit_defaults_do_not_change_the_key():
    t = Tenant()
    a = cache_key(t, "chat", "m", BODY)
    b = cache_key(
        t,
        "chat",
        "m",
        {
            "messages": [{"content": "hi", "role": "user"}],
            "model": "m",
            "temperature": 1,
            "n": 1,
            "stream": True,
            "user": "alice",
        },
    )
    assert a == b


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.5},
        {"max_tokens": 5},
        {"tools": [{"type": "function"}]},
        {"messages": [{"role": "user", "content": "hello"}]},
    ],
)
def test_anything_that_changes_the_output_changes_the_key(change):
    assert cache_key(Tenant(), "chat", "m", BODY) != cache_key(Tenant(), "chat", "m", {**BODY, **change})


def test_tenants_models_endpoints_and_generations_never_share_keys():
    base = cache_key(Tenant(), "chat", "m", BODY)
    assert base != cache_key(Tenant(id=2), "chat", "m", BODY)
    assert base != cache_key(Tenant(), "chat", "m2", BODY)
    assert base != cache_key(Tenant(), "completions", "m", BODY)
    assert base != cache_key(Tenant(generation=1), "chat", "m", BODY)


def test_the_cache_is_off_without_a_ttl_and_can_skip_nondeterministic_requests():
    assert not cacheable(BODY, Tenant(ttl=0))
    assert cacheable({**BODY, "temperature": 0.7}, Tenant())
    assert not cacheable({**BODY, "temperature": 0.7}, Tenant(skip=True))
    assert not cacheable({**BODY, "temperature": 0, "n": 2}, Tenant(skip=True))
    assert cacheable({**BODY, "temperature": 0}, Tenant(skip=True))


@pytest.mark.parametrize(
    ("headers", "directive"),
    [
        ({}, ""),
        ({"cache-control": b"no-cache"}, "no-cache"),
        ({"cache-control": b"max-age=0, no-store"}, "no-store"),
        ({"x-llmproxy-cache": b"no-cache"}, "no-cache"),
        ({"x-llmproxy-cache": b"no-store", "cache-control": b"no-cache"}, "no-store"),
    ],
)
def test_request_directives(headers, directive):
    assert request_directive(headers) == directive


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_a_streamed_answer_assembles_to_the_plain_answer_and_replays_to_the_same_text(endpoint):
    body = {
        "messages": [{"role": "user", "content": "hello there"}],
        "prompt": "hello there",
        "stream_options": {"include_usage": True},
    }
    plain = mock_engine.answer(endpoint, "m", body, {})
    assembler = StreamAssembler()
    for chunk in mock_engine.stream_chunks(endpoint, "m", body, {"chunks": 3}):
        assembler.add(chunk)
    assembled = assembler.answer()
    assert assembled["choices"][0].get("message", {}).get("content", assembled["choices"][0].get("text")) == (
        plain["choices"][0].get("message", {}).get("content", plain["choices"][0].get("text"))
    )
    assert assembled["usage"] == plain["usage"]
    again = StreamAssembler()
    for chunk in replay_chunks(assembled, include_usage=True):
        again.add(chunk)
    assert again.answer()["choices"] == assembled["choices"]
