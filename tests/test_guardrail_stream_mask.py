"""Masking streamed answers: matches split across chunks, bounded hold-back, order kept, flush at the end."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmproxy.guardrails.detectors import BUILT_IN, redact, wordlist_detector
from llmproxy.guardrails.engine import GuardrailBlocked, Rule
from llmproxy.guardrails.stream_mask import ChunkMasker, StreamMasker


def rule(kind, action="mask", *, shadow=False, rule_id=None, detector=None):
    detector = detector or BUILT_IN[kind]
    return Rule(
        id=rule_id or sum(map(ord, kind)), name=f"no-{kind}", detector=detector, action=action, shadow=shadow
    )


CARD, EMAIL, SECRET = rule("card"), rule("email"), rule("secret")


def stream(masker, pieces):
    return "".join(masker.feed(piece) for piece in pieces) + masker.flush()


def masked_whole(rules, text):
    spans = [(s, e, r.detector.label) for r in rules for s, e in r.detector.find(text)]
    return redact(text, spans)


def test_a_card_number_split_across_two_chunks_is_masked():
    masker = StreamMasker([CARD])
    first = masker.feed("Your card is 4111 1111 11")
    assert "4111" not in first and first.startswith("Your card is")
    second = masker.feed("11 1111, thanks!")
    assert first + second + masker.flush() == "Your card is [REDACTED:CARD], thanks!"


def test_text_is_released_as_soon_as_nothing_can_still_match():
    masker = StreamMasker([CARD])
    assert masker.feed("Hello there. ") == "Hello there. "
    assert masker.held == 0


def test_prose_holds_back_at_most_its_last_word_while_it_could_start_an_email_address():
    masker = StreamMasker([EMAIL, CARD, SECRET])
    assert masker.feed("Write to me at bob") == "Write to me at "
    assert masker.held == len("bob")
    assert masker.feed(".smith@exa") == ""
    assert masker.feed("mple.com or call.") == "[REDACTED:EMAIL] or "
    assert masker.flush() == "call."


@pytest.mark.parametrize("filler", ["a", "7", "ab1", "sk-", "x@y."])
def test_the_hold_back_never_exceeds_the_longest_match_of_the_rules(filler):
    rules = [EMAIL, CARD, SECRET, rule("phone"), rule("iban"), rule("ip")]
    masker = StreamMasker(rules)
    out = []
    for _ in range(3000):
        out.append(masker.feed(filler))
        assert masker.held <= masker.max_hold
    out.append(masker.flush())
    assert masker.held == 0
    assert len("".join(out)) > 0


def test_the_hold_back_is_small_for_card_rules():
    masker = StreamMasker([CARD])
    assert masker.max_hold == 23  # 19 digits and 4 separators
    for piece in ["1234 5678 " * 50]:
        masker.feed(piece)
        assert masker.held <= 23


def test_flush_releases_what_was_held_with_its_matches_masked():
    masker = StreamMasker([CARD])
    assert masker.feed("pay with 4111111111111111") == "pay with "
    assert masker.flush() == "[REDACTED:CARD]"
    assert masker.flush() == ""


def test_a_longer_card_is_not_cut_short_at_a_chunk_boundary():
    # 16 digits pass Luhn here, but a 19-digit number follows: the 16 must not be released alone.
    masker = StreamMasker([CARD])
    assert stream(masker, ["id 4111111111111111", "123 end"]) == "id 4111111111111111123 end"


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=12))
def test_any_chunking_gives_the_text_masked_as_a_whole_in_order(cuts):
    text = (
        "Hi! Card 4111 1111 1111 1111 and mail ann.lee@corp.example.org, "
        "key sk-proj-abc123DEF456ghi789JKL012, plain words after it. 5555555555554444"
    )
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    rules = [CARD, EMAIL, SECRET]
    assert stream(StreamMasker(rules), pieces) == masked_whole(rules, text)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab14@. -:\nk"), max_size=200),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=20),
)
def test_random_text_in_random_chunks_comes_out_as_if_masked_whole(text, cuts):
    rules = [CARD, EMAIL, rule("ip"), rule("phone")]
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert stream(StreamMasker(rules), pieces) == masked_whole(rules, text)


def test_a_block_rule_stops_the_stream_before_the_match_leaves():
    seen = []

    def on_match(matched):
        seen.append(matched.name)
        if matched.blocks:
            raise GuardrailBlocked(matched, "response")

    masker = StreamMasker([rule("card", "block")], on_match)
    released = masker.feed("Sure, the number is 4111 1111 ")
    assert "4111" not in released
    with pytest.raises(GuardrailBlocked) as blocked:
        masker.feed("1111 1111. Anything else?")
    assert blocked.value.status == 400 and blocked.value.code == "guardrail_blocked"
    assert "no-card" in blocked.value.message
    assert seen == ["no-card"]


def test_flag_and_shadow_rules_report_the_match_and_change_nothing():
    seen = []
    rules = [rule("card", "flag", rule_id=1), rule("email", "mask", shadow=True, rule_id=2)]
    masker = StreamMasker(rules, lambda matched: seen.append((matched.action, matched.shadow)))
    text = "card 4111 1111 1111 1111 mail a@b.io ok"
    assert stream(masker, [text[:12], text[12:30], text[30:]]) == text
    assert sorted(set(seen)) == [("flag", False), ("mask", True)]


def test_a_word_list_is_matched_across_chunks():
    masker = StreamMasker([rule("wordlist", detector=wordlist_detector(["project apollo"]))])
    assert stream(masker, ["about Project Apo", "llo today"]) == "about [REDACTED:WORDLIST] today"


def _chat_chunk(index, content=None, finish=None):
    delta = {} if content is None else {"content": content}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def test_chunks_are_masked_in_place_and_the_tail_rides_on_the_finish_chunk():
    masker = ChunkMasker([CARD])
    chunks = [_chat_chunk(0, "card 4111 1111"), _chat_chunk(0, " 1111 1111"), _chat_chunk(0, finish="stop")]
    for chunk in chunks:
        masker.filter_chunk(chunk)
    contents = [c["choices"][0]["delta"].get("content") for c in chunks]
    assert contents == ["card ", "", "[REDACTED:CARD]"]
    assert masker.finish() == []


def test_each_choice_is_masked_on_its_own_and_leftovers_come_as_extra_chunks():
    masker = ChunkMasker([CARD])
    a, b = _chat_chunk(0, "A: 4111 1111 1111 "), _chat_chunk(1, "B: 5555 5555 5555 ")
    masker.filter_chunk(a)
    masker.filter_chunk(b)
    c, d = _chat_chunk(0, "1111"), _chat_chunk(1, "4444")
    masker.filter_chunk(c)
    masker.filter_chunk(d)
    tail = masker.finish()  # the upstream ended without a finish_reason
    assert [t["choices"][0]["index"] for t in tail] == [0, 1]
    for chunk, extra, text in ((a, tail[0], "A: [REDACTED:CARD]"), (b, tail[1], "B: [REDACTED:CARD]")):
        assert chunk["choices"][0]["delta"]["content"] + extra["choices"][0]["delta"]["content"] == text
    assert tail[0]["id"] == "c1" and tail[0]["object"] == "chat.completion.chunk"


def test_completion_chunks_mask_their_text():
    masker = ChunkMasker([EMAIL], chat=False)
    chunk = {
        "id": "x",
        "object": "text_completion",
        "choices": [{"index": 0, "text": "to a@b.io", "finish_reason": None}],
    }
    masker.filter_chunk(chunk)
    end = {
        "id": "x",
        "object": "text_completion",
        "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
    }
    masker.filter_chunk(end)
    assert chunk["choices"][0]["text"] + end["choices"][0]["text"] == "to [REDACTED:EMAIL]"


def test_a_usage_only_chunk_passes_untouched():
    masker = ChunkMasker([CARD])
    chunk = {"id": "u", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    masker.filter_chunk(chunk)
    assert chunk == {"id": "u", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
