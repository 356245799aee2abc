"""Response rules on a streamed answer, with a small, bounded hold-back.

A match may arrive split over two SSE chunks ("4111 1111 11" + "11 1111 ok").
A StreamMasker releases a chunk's text except the tail that could still be
the start of a match: for each detector, the earliest match at the end of
the text that more text could complete or extend (the ``regex`` module's
partial matching), looked for only within the detector's ``max_len`` of the
end. So in prose it holds back the last word or so (a word may be the local
part of an email address coming); it holds back more only while the text
really looks like a match in progress, never more than ``max_hold``
characters (the longest match of its detectors: 23 for a card number, 254
for an email address, 1024 for a token), and it releases everything at the
end of the stream. Text order is kept: what is released is always a prefix.

Released text is final: its matches are masked, flagged, or stop the stream
(a block rule raises ``GuardrailBlocked`` through ``on_match``) before any
of it leaves.

``ChunkMasker`` applies one StreamMasker per choice to OpenAI chunks (chat
``delta.content``, completions ``text``) in place, and flushes a choice at its
``finish_reason``. ``EventMasker`` does the same for the events of a streamed
Anthropic message (/v1/messages): one StreamMasker per content block on its
``text_delta`` texts, flushed at the block's ``content_block_stop``.
"""

from llmproxy.guardrails.detectors import redact
from llmproxy.guardrails.regex_timeout import RegexTimeout

# Released characters kept as context, for the detectors' look-behinds.
CONTEXT_CHARS = 16


class StreamMasker:
    __slots__ = ("rules", "on_match", "max_hold", "_detectors", "_buf", "_context")

    def __init__(self, rules, on_match=None):
        self.rules = tuple(rules)
        self.on_match = on_match or (lambda rule: None)
        self._detectors = tuple(dict.fromkeys(rule.detector for rule in self.rules))
        self.max_hold = max(d.max_len for d in self._detectors)
        self._buf = ""
        self._context = ""

    @property
    def held(self) -> int:
        """Characters received but not released yet."""
        return len(self._buf)

    def feed(self, text: str) -> str:
        """The part of everything received so far that can be released now, masked."""
        if not text:
            return ""
        self._buf += text
        return self._release(final=False)

    def flush(self) -> str:
        """Everything still held, masked: the stream has ended."""
        return self._release(final=True) if self._buf else ""

    def _release(self, final: bool) -> str:
        context = self._context
        text = context + self._buf
        base, end = len(context), len(text)
        found = {}
        for rule in self.rules:
            if rule.detector not in found:
                found[rule.detector] = rule.find(text, base)
        cut = end if final else self._cut(text, base, found)
        masks = []
        for rule in self.rules:
            spans = found[rule.detector]
            if not spans or spans[0][0] >= cut:
                continue
            self.on_match(rule)
            if rule.masks:
                label = rule.detector.label
                # Only past max_hold (see _cut) can the cut run through a match: mask its released part.
                masks.extend((s - base, min(e, cut) - base, label) for s, e in spans if s < cut)
        released = self._buf[: cut - base]
        self._buf = self._buf[cut - base :]
        self._context = (context + released)[-CONTEXT_CHARS:]
        return redact(released, masks)

    def _cut(self, text, base, found) -> int:
        end = len(text)
        cut = end
        for detector in self._detectors:
            try:
                start = detector.open_start(text, max(base, end - detector.max_len))
            except RegexTimeout:
                start = None
            if start is not None and start < cut:
                cut = start
        # A complete match that the cut runs through waits, whole, with the held tail.
        moved = True
        while moved:
            moved = False
            for spans in found.values():
                for s, e in spans:
                    if s < cut < e:
                        cut, moved = s, True
        return max(cut, base, end - self.max_hold)


class ChunkMasker:
    """A streamed OpenAI answer's chunks, masked in place, one StreamMasker per choice."""

    __slots__ = ("rules", "on_match", "chat", "_maskers", "_last")

    def __init__(self, rules, on_match=None, *, chat=True):
        self.rules = tuple(rules)
        self.on_match = on_match
        self.chat = chat
        self._maskers: dict = {}
        self._last = None

    def filter_chunk(self, chunk: dict):
        """Mask ``chunk``'s text in place, holding some back for later. May raise GuardrailBlocked."""
        choices = chunk.get("choices")
        if not choices:
            return
        self._last = chunk
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            masker = self._maskers.get(index)
            if masker is None:
                masker = self._maskers[index] = StreamMasker(self.rules, self.on_match)
            delta = choice.get("delta") if self.chat else None
            if self.chat and not isinstance(delta, dict):
                delta = None
            text = (delta.get("content") if delta is not None else None) if self.chat else choice.get("text")
            out = masker.feed(text) if isinstance(text, str) and text else None
            if choice.get("finish_reason") is not None:
                tail = masker.flush()
                if tail:
                    out = (out or "") + tail
            if out is None:
                continue
            if self.chat:
                if delta is None:
                    delta = choice["delta"] = {}
                delta["content"] = out
            else:
                choice["text"] = out

    def finish(self) -> list[dict]:
        """Chunks for text still held when the stream ended without a finish_reason (send before [DONE])."""
        chunks = []
        for index, masker in sorted(self._maskers.items()):
            tail = masker.flush()
            if tail:
                chunks.append(self._chunk(index, tail))
        return chunks

    def _chunk(self, index, text):
        last = self._last or {}
        chunk = {key: last[key] for key in ("id", "object", "created", "model") if key in last}
        if self.chat:
            chunk["choices"] = [{"index": index, "delta": {"content": text}, "finish_reason": None}]
        else:
            chunk["choices"] = [{"index": index, "text": text, "finish_reason": None}]
        return chunk


class EventMasker:
    """A streamed Anthropic message's events, their text deltas masked, one StreamMasker per content block.

    Only ``text_delta`` is read: tool input arrives as JSON fragments, and thinking
    text is signed by the upstream (a changed one would be refused when sent back).
    """

    __slots__ = ("rules", "on_match", "_maskers")

    def __init__(self, rules, on_match=None):
        self.rules = tuple(rules)
        self.on_match = on_match
        self._maskers: dict = {}

    def filter_event(self, event: dict) -> list[dict]:
        """The events to send for ``event``: itself masked, none while its text is held, or the held
        text of its block before it. May raise GuardrailBlocked."""
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            if not isinstance(delta, dict) or delta.get("type") != "text_delta":
                return [event]
            text = delta.get("text")
            if not isinstance(text, str) or not text:
                return [event]
            index = event.get("index", 0)
            masker = self._maskers.get(index)
            if masker is None:
                masker = self._maskers[index] = StreamMasker(self.rules, self.on_match)
            out = masker.feed(text)
            return [{**event, "delta": {**delta, "text": out}}] if out else []
        if kind == "content_block_stop":
            return [*self._flush(event.get("index", 0)), event]
        if kind in ("message_delta", "message_stop"):
            # A block the upstream never closed: its text goes before the message ends.
            return [*self.finish(), event]
        return [event]

    def finish(self) -> list[dict]:
        """Deltas for text still held when the stream ended without closing its blocks."""
        events = []
        for index in sorted(self._maskers):
            events.extend(self._flush(index))
        return events

    def _flush(self, index) -> list[dict]:
        masker = self._maskers.pop(index, None)
        tail = masker.flush() if masker is not None else ""
        if not tail:
            return []
        return [
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": tail}}
        ]
