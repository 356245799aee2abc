"""Server-sent events: an incremental parser for upstream streams and the framing we send."""

from dataclasses import dataclass


@dataclass(slots=True)
class Event:
    data: str
    event: str = ""


class SSEParser:
    """Feed it bytes as they arrive; it returns the complete events so far.

    Follows the WHATWG event-stream rules that matter to LLM APIs: lines end
    with LF, CRLF or CR; ``data:`` lines join with LF; ``:`` starts a comment;
    an empty line dispatches. A partial line is kept until its end arrives.
    """

    __slots__ = ("_buffer", "_data", "_event", "_pending_cr")

    def __init__(self):
        self._buffer = b""
        self._data = []
        self._event = ""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[Event]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = False
        buffer = self._buffer + chunk
        events = []
        start = 0
        length = len(buffer)
        while start < length:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start)
            if lf == -1 and cr == -1:
                break
            if cr != -1 and (lf == -1 or cr < lf):
                end, nxt = cr, cr + 1
                if nxt < length and buffer[nxt] == 0x0A:
                    nxt += 1
                elif nxt == length:
                    # A CR at the end of the chunk: its LF may start the next one.
                    self._pending_cr = True
            else:
                end, nxt = lf, lf + 1
            self._line(buffer[start:end], events)
            start = nxt
        self._buffer = buffer[start:]
        return events

    def _line(self, raw: bytes, events: list):
        if not raw:
            if self._data:
                events.append(Event("\n".join(self._data), self._event))
            self._data = []
            self._event = ""
            return
        if raw[0] == 0x3A:  # ":" comment / keep-alive
            return
        line = raw.decode("utf-8", errors="replace")
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value

    def close(self) -> list[Event]:
        """Events left when the stream ends without a final blank line."""
        events = []
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = b""
        self._line(b"", events)
        return events


def frame(data: bytes, event: str | None = None) -> bytes:
    if event:
        return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"
