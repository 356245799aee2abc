"""Masking a streamed Anthropic message: text deltas per block, held text sent before the block closes."""

import pytest

from llmproxy.guardrails.detectors import BUILT_IN
from llmproxy.guardrails.engine import GuardrailBlocked, Rule
from llmproxy.guardrails.stream_mask import EventMasker


def rule(kind, action="mask", *, shadow=False):
    return Rule(
        id=sum(map(ord, kind)), name=f"no-{kind}", detector=BUILT_IN[kind], action=action, shadow=shadow
    )


def text_delta(text, index=0):
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def run(masker, events):
    out = []
    for event in events:
        out.extend(masker.filter_event(event))
    return out


def texts_of(events, index=0):
    return "".join(
        e["delta"]["text"]
        for e in events
        if e["type"] == "content_block_delta" and e["index"] == index and e["delta"]["type"] == "text_delta"
    )


def test_a_card_number_split_across_two_deltas_is_masked_and_flushed_before_its_block_stops():
    masker = EventMasker([rule("card")])

    out = run(
        masker,
        [
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            text_delta("Card: 4111 1111"),
            text_delta(" 1111 1111"),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_stop"},
        ],
    )

    assert texts_of(out) == "Card: [REDACTED:CARD]"
    assert [e["type"] for e in out] == [
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_stop",
    ]
    assert out[1]["delta"]["text"] == "Card: "


def test_each_content_block_has_its_own_hold_back_and_other_deltas_pass_untouched():
    masker = EventMasker([rule("card")])
    tool_delta = {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"n": "4111'},
    }
    thinking = {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "thinking_delta", "thinking": "4111 1111 1111 1111"},
    }

    out = run(
        masker,
        [
            text_delta("pay 4111 1111 ", 0),
            tool_delta,
            thinking,
            text_delta("1111 1111 now", 0),
            {"type": "content_block_stop", "index": 0},
        ],
    )

    assert tool_delta in out and thinking in out
    assert texts_of(out, 0) == "pay [REDACTED:CARD] now"


def test_text_of_a_block_never_closed_goes_out_before_the_message_ends():
    masker = EventMasker([rule("card")])

    out = run(masker, [text_delta("number 4111111111111111"), {"type": "message_delta", "delta": {}}])

    assert [e["type"] for e in out] == ["content_block_delta", "content_block_delta", "message_delta"]
    assert texts_of(out) == "number [REDACTED:CARD]"
    assert masker.finish() == []


def test_finish_sends_what_a_cut_off_stream_still_held():
    masker = EventMasker([rule("card")])
    assert run(masker, [text_delta("4111 1111 1111 1111")]) == []

    assert masker.finish() == [text_delta("[REDACTED:CARD]")]


def test_a_block_rule_raises_before_the_match_is_released():
    seen = []

    def on_match(matched):
        seen.append(matched.name)
        if matched.blocks:
            raise GuardrailBlocked(matched, "response")

    masker = EventMasker([rule("card", "block")], on_match)
    assert texts_of(masker.filter_event(text_delta("Sure: 4111 1111"))) == "Sure: "

    with pytest.raises(GuardrailBlocked, match="answer was blocked"):
        masker.filter_event(text_delta(" 1111 1111."))
    assert seen == ["no-card"]


def test_a_shadow_rule_reports_the_match_and_changes_nothing():
    seen = []
    masker = EventMasker([rule("card", shadow=True)], lambda matched: seen.append(matched.name))

    out = run(
        masker,
        [text_delta("a 4111 1111"), text_delta(" 1111 1111 b"), {"type": "content_block_stop", "index": 0}],
    )

    assert texts_of(out) == "a 4111 1111 1111 1111 b"
    assert seen == ["no-card"]
