"""The response head waits for the first body write, so both leave in one send."""

from __future__ import annotations

from seawall.edges.server import CoalescingWriter


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def writer() -> tuple[CoalescingWriter, FakeTransport]:
    t = FakeTransport()
    return CoalescingWriter(t), t  # type: ignore[arg-type]


def test_head_and_body_leave_together_then_writes_pass_through() -> None:
    w, t = writer()
    w.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert t.writes == []
    w.write(b"event 1")
    w.write(b"event 2")
    assert t.writes == [b"HTTP/1.1 200 OK\r\n\r\nevent 1", b"event 2"]


def test_100_continue_is_never_held() -> None:
    w, t = writer()
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    w.write(b"HTTP/1.1 200 OK\r\n\r\n")
    w.write(b"body")
    assert t.writes[1:] == [b"HTTP/1.1 200 OK\r\n\r\nbody"]


def test_closing_or_asking_the_transport_anything_sends_what_is_held() -> None:
    w, t = writer()
    w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert not w.is_closing() and t.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    w2, t2 = writer()
    w2.write(b"HTTP/1.1 200 OK\r\n\r\n")
    w2.close()
    assert t2.writes == [b"HTTP/1.1 200 OK\r\n\r\n"] and t2.closed
