"""The SSE parser gives back exactly the events sent, however the bytes are split and lines end."""

from hypothesis import given, settings
from hypothesis import strategies as st

from llmproxy.gateway.sse import SSEParser, frame

# Data without line breaks (a line break inside data is two data: lines, tested below).
data_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40
)
events = st.lists(
    st.tuples(st.sampled_from(["", "message_start", "content_block_delta"]), data_text),
    min_size=1,
    max_size=8,
)


def encode(items, newline):
    out = b""
    for event, data in items:
        if event:
            out += b"event: " + event.encode() + newline.encode()
        out += b"data: " + data.encode() + newline.encode() + newline.encode()
    return out


@settings(max_examples=300)
@given(
    items=events,
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_any_split_of_any_framing_parses_to_the_same_events(items, newline, cuts):
    raw = encode(items, newline)
    parser = SSEParser()
    got = []
    points = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    for a, b in zip(points, points[1:], strict=False):
        got.extend(parser.feed(raw[a:b]))
    got.extend(parser.close())
    expected = list(items)
    assert [(e.event, e.data) for e in got] == expected


def test_comments_are_ignored_and_multi_line_data_joins_with_newlines():
    parser = SSEParser()
    events = parser.feed(b": keep-alive\n\ndata: one\ndata: two\n\n")
    assert [(e.event, e.data) for e in events] == [("", "one\ntwo")]


def test_a_last_event_without_its_blank_line_is_still_delivered_at_the_end():
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]") == []
    assert [e.data for e in parser.close()] == ["[DONE]"]


def test_frame_writes_what_the_parser_reads():
    parser = SSEParser()
    [event] = parser.feed(frame(b'{"a": 1}', "ping"))
    assert (event.event, event.data) == ("ping", '{"a": 1}')


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw):
    parser = SSEParser()
    parser.feed(raw)
    parser.close()
