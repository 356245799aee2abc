"""Response guardrails on POST /v1/messages end to end: real Daphne, the official anthropic client.

Each test runs on both kinds of route behind /v1/messages: an ``anthropic``
route (the upstream's own events passed through) and an OpenAI-speaking one
(its answer translated to Anthropic's events). The mock upstream is told the
reply and how many SSE chunks to cut it into.
"""

from urllib.parse import urlencode

import anthropic
import httpx
import orjson
import pytest

from audit.models import AuditLog
from providers.mock_engine import split_chunks
from tenants.models import Guardrail, GuardrailHit
from tests.anthropic_helpers import anthropic_client, anthropic_route, sse_event_names, usage_written
from tests.gateway_helpers import make_key, make_route, wait_for_hits, wait_for_logs

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CARD = "4111 1111 1111 1111"
CARD_REPLY = f"Card: {CARD}, ok."
MASKED_REPLY = "Card: [REDACTED:CARD], ok."
KINDS = ["anthropic", "openai"]


@pytest.fixture(autouse=True)
def _usage_written(proxy_server, acme):
    # On PostgreSQL a teardown that truncates the tables while the proxy writes usage rows deadlocks.
    with usage_written(proxy_server, acme):
        yield


@pytest.fixture
def key(acme):
    return make_key(acme, name="app")[1]


def reply_route(tenant, model, upstream, kind, text, chunks=2, **options):
    """A route of ``kind`` whose upstream answers ``text``, streamed in ``chunks`` text deltas."""
    query = urlencode({"reply": text, "chunks": chunks, **options})
    if kind == "anthropic":
        return anthropic_route(tenant, model, upstream, f"claude-x?{query}")
    return make_route(tenant, model, upstream.v1, f"mock-1?{query}")


def guardrail(tenant, name, detector, action, direction="response", **fields):
    return Guardrail.objects.create(
        tenant=tenant, name=name, detector=detector, action=action, direction=direction, **fields
    )


def ask(proxy_server, key, model, **extra):
    return anthropic_client(proxy_server, key).messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}], **extra
    )


def stream_texts(proxy_server, key, model):
    """(the text deltas as the client got them, the SDK's assembled final message)."""
    with anthropic_client(proxy_server, key).messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        texts = list(stream.text_stream)
        return texts, stream.get_final_message()


def raw_stream(proxy_server, key, model):
    """[(event name, data)] of a streamed answer, read without an SDK."""
    with httpx.stream(
        "POST",
        f"{proxy_server.base_url}/v1/messages",
        headers={"x-api-key": key},
        json={
            "model": model,
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    ) as response:
        assert response.status_code == 200
        text = response.read().decode()
    names = sse_event_names(text)
    datas = [orjson.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]
    assert len(names) == len(datas)
    return list(zip(names, datas, strict=True))


def delta_texts(events):
    return [
        data["delta"]["text"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "text_delta"
    ]


# --- plain answers -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_plain_answer_is_masked_before_it_is_sent(proxy_server, acme, key, upstream, unique_model, kind):
    reply_route(acme, unique_model, upstream, kind, CARD_REPLY)
    rule = guardrail(acme, "mask-cards", "card", "mask")

    message = ask(proxy_server, key, unique_model)

    assert message.content[0].text == MASKED_REPLY
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    assert wait_for_hits(rule, 1) == {("mask", False): 1}


@pytest.mark.parametrize("kind", KINDS)
def test_a_blocked_plain_answer_is_a_400_in_anthropics_shape_and_its_usage_is_recorded(
    proxy_server, acme, key, upstream, unique_model, kind
):
    reply_route(acme, unique_model, upstream, kind, CARD_REPLY)
    rule = guardrail(acme, "no-cards-back", "card", "block")

    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(proxy_server, key, unique_model)

    assert refused.value.status_code == 400
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "The answer was blocked by guardrail 'no-cards-back' (card).",
        },
    }
    assert "4111" not in refused.value.response.text
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.endpoint, row.status, row.error_type) == ("messages", 400, "guardrail_blocked")
    assert row.output_tokens > 0
    assert wait_for_hits(rule, 1) == {("block", False): 1}


def test_tool_use_blocks_pass_and_only_the_text_is_masked(proxy_server, acme, key, upstream, unique_model):
    anthropic_route(
        acme, unique_model, upstream, "claude-x?" + urlencode({"reply": CARD_REPLY, "tool": "get_weather"})
    )
    guardrail(acme, "mask-cards", "card", "mask")
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]

    plain = ask(proxy_server, key, unique_model, tools=tools)
    with anthropic_client(proxy_server, key).messages.stream(
        model=unique_model, max_tokens=100, messages=[{"role": "user", "content": "hi"}], tools=tools
    ) as stream:
        streamed = stream.get_final_message()

    for message in (plain, streamed):
        text, tool = message.content
        assert text.text == MASKED_REPLY
        assert (tool.type, tool.name) == ("tool_use", "get_weather")


# --- streamed answers --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_card_number_split_across_two_sse_chunks_is_masked(
    proxy_server, acme, key, upstream, unique_model, kind
):
    assert split_chunks(CARD_REPLY, 2) == ["Card: 4111 1111", " 1111 1111, ok."]  # the number is cut in two
    reply_route(acme, unique_model, upstream, kind, CARD_REPLY, chunks=2)
    rule = guardrail(acme, "mask-cards", "card", "mask")

    texts, message = stream_texts(proxy_server, key, unique_model)

    assert "".join(texts) == message.content[0].text == MASKED_REPLY
    assert not any(ch.isdigit() for text in texts for ch in text)
    events = raw_stream(proxy_server, key, unique_model)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    # The text held back across the cut is sent before its block closes, never after.
    last_delta = max(i for i, name in enumerate(names) if name == "content_block_delta")
    assert names[last_delta + 1] == "content_block_stop"
    assert "".join(delta_texts(events)) == MASKED_REPLY
    assert wait_for_hits(rule, 2) == {("mask", False): 2}


@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_of_many_small_chunks_is_masked(proxy_server, acme, key, upstream, unique_model, kind):
    text = "Mail ann.lee@corp.example.org or call +44 20 7946 0958 now."
    reply_route(acme, unique_model, upstream, kind, text, chunks=len(text))
    guardrail(acme, "mask-emails", "email", "mask")
    guardrail(acme, "mask-phones", "phone", "mask", direction="both")

    texts, message = stream_texts(proxy_server, key, unique_model)

    assert "".join(texts) == message.content[0].text == "Mail [REDACTED:EMAIL] or call [REDACTED:PHONE] now."
    assert "ann.lee" not in "".join(texts) and "7946" not in "".join(texts)


@pytest.mark.parametrize("kind", KINDS)
def test_a_blocked_stream_stops_before_the_match_with_an_anthropic_error_event(
    proxy_server, acme, key, upstream, unique_model, kind
):
    reply_route(acme, unique_model, upstream, kind, CARD_REPLY, chunks=2)
    rule = guardrail(acme, "no-cards-back", "card", "block")

    events = raw_stream(proxy_server, key, unique_model)

    name, data = events[-1]
    assert (name, data) == (
        "error",
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "The answer was blocked by guardrail 'no-cards-back' (card).",
            },
        },
    )
    assert "message_stop" not in [name for name, _ in events]
    assert "".join(delta_texts(events)) == "Card: "
    assert "4111" not in orjson.dumps(events).decode()
    [row] = wait_for_logs(1, model=unique_model)
    assert (row.status, row.error_type) == (200, "guardrail_blocked")

    texts = []
    api = anthropic_client(proxy_server, key)
    with (
        pytest.raises(anthropic.APIStatusError) as stopped,
        api.messages.stream(
            model=unique_model, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        texts.extend(stream.text_stream)
    assert texts == ["Card: "]
    assert stopped.value.body["error"]["type"] == "invalid_request_error"
    assert "no-cards-back" in stopped.value.body["error"]["message"]
    assert wait_for_hits(rule, 2) == {("block", False): 2}


# --- flag, shadow mode, directions --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_flag_and_shadow_rules_change_nothing_and_record_what_they_saw(
    proxy_server, acme, key, upstream, unique_model, kind
):
    reply_route(acme, unique_model, upstream, kind, CARD_REPLY, chunks=2)
    flag = guardrail(acme, f"flag-cards-{kind}", "card", "flag")
    would_block = guardrail(acme, "would-block", "card", "block", shadow=True)
    would_mask = guardrail(acme, "would-mask", "card", "mask", shadow=True)

    plain = ask(proxy_server, key, unique_model)
    texts, streamed = stream_texts(proxy_server, key, unique_model)

    assert plain.content[0].text == streamed.content[0].text == "".join(texts) == CARD_REPLY
    assert wait_for_hits(flag, 2) == {("flag", False): 2}
    assert wait_for_hits(would_block, 2) == {("block", True): 2}
    assert wait_for_hits(would_mask, 2) == {("mask", True): 2}
    audit = AuditLog.objects.filter(action="guardrail.flag", target_id=str(flag.pk)).order_by("id")
    assert audit.exists() and all(row.metadata["directions"] == ["response"] for row in audit)
    assert CARD not in str([row.metadata for row in audit])
    assert AuditLog.objects.filter(action="guardrail.flag", target_id=str(would_block.pk)).exists()


def test_a_request_only_rule_leaves_the_answer_alone(proxy_server, acme, key, upstream, unique_model):
    reply_route(acme, unique_model, upstream, "anthropic", CARD_REPLY)
    rule = guardrail(acme, "no-cards-out", "card", "block", direction="request")

    assert ask(proxy_server, key, unique_model).content[0].text == CARD_REPLY
    assert "".join(stream_texts(proxy_server, key, unique_model)[0]) == CARD_REPLY
    assert not GuardrailHit.objects.filter(guardrail=rule).exists()


# --- tenants ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_another_tenants_response_rules_never_apply(
    proxy_server, acme, globex, key, upstream, unique_model, kind
):
    reply_route(acme, unique_model, upstream, kind, CARD_REPLY, chunks=2)
    reply_route(globex, f"{unique_model}-g", upstream, kind, CARD_REPLY, chunks=2)
    globex_rule = guardrail(globex, "globex-no-cards", "card", "block")
    guardrail(globex, "globex-mask-cards", "card", "mask")
    globex_key = make_key(globex, name="theirs")[1]

    assert ask(proxy_server, key, unique_model).content[0].text == CARD_REPLY
    assert "".join(stream_texts(proxy_server, key, unique_model)[0]) == CARD_REPLY
    # The same rules do apply to globex's own answers.
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(proxy_server, globex_key, f"{unique_model}-g")
    assert "globex-no-cards" in refused.value.body["error"]["message"]
    wait_for_logs(1, tenant=globex)
    assert wait_for_hits(globex_rule, 1) == {("block", False): 1}
    assert not GuardrailHit.objects.filter(guardrail__tenant=acme).exists()
