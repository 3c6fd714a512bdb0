"""Server-sent events framing, shared by the upstream edge, the server edge and the mock.

The splitter is incremental and pure: feed it bytes as they arrive, get back whole events (each
still framed, ending in a blank line) so a proxy can forward them untouched.
"""

from __future__ import annotations

__all__ = ["DONE", "EventSplitter", "data_of", "event"]

DONE = b"data: [DONE]\n\n"


def event(data: bytes, name: str | None = None) -> bytes:
    """Frame one event; ``data`` must not contain newlines (JSON from msgspec never does)."""
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def data_of(framed: bytes) -> bytes:
    """The joined ``data:`` field of one framed event (b"" if it has none)."""
    parts = []
    for line in framed.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts)


class EventSplitter:
    """Accumulates a byte stream and yields complete SSE events, normalised to ``\\n`` line ends.

    ``max_event_bytes`` bounds memory: an upstream that never ends an event is an error, not a leak.
    """

    __slots__ = ("_buf", "max_event_bytes")

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        self._buf = b""
        self.max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk
        # A CR at the end may be the first half of a CRLF split across two reads: normalised now,
        # it and the LF to come would read as two line ends, an event boundary that is not there.
        # It waits for the next byte (an event that ends in a lone CR at the very end of a stream
        # waits with it).
        held = b""
        if buf.endswith(b"\r"):
            buf, held = buf[:-1], b"\r"
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            events.append(buf[start : end + 2])
            start = end + 2
        self._buf = buf[start:] + held
        if len(self._buf) > self.max_event_bytes:
            raise ValueError(f"SSE event larger than {self.max_event_bytes} bytes")
        return events

    @property
    def pending(self) -> bytes:
        return self._buf
