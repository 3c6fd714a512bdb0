"""``guard_out``'s windowing: which part of a streamed completion has been checked and may leave.

Text arrives in deltas. Every ``window_chars`` of new text, the window (the new text plus
``overlap_chars`` of what came before, so a secret split across two windows is still whole in one)
is scanned by stage 1. Checked text is released except its last ``lookahead_chars``, which wait for
the next window: a match that starts there is caught before it leaves. So the client never sees
unchecked text, and at most ``window_chars + lookahead_chars`` are held back at any time. Pure: text
in, a release offset or a finding out; the caller keeps the events (``safety/stream.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["OutputWindow"]

F = TypeVar("F")


class OutputWindow:
    """Offsets are characters from the start of the completion."""

    __slots__ = ("_checked", "_scan", "_tail", "_tail_start", "lookahead_chars", "overlap_chars",
                 "released", "total", "window_chars")

    def __init__(self, scan: Callable[[str], Sequence[object]], *, window_chars: int, overlap_chars: int,
                 lookahead_chars: int) -> None:
        self._scan = scan  # text -> findings that stop the stream
        self.window_chars = window_chars
        self.overlap_chars = overlap_chars
        self.lookahead_chars = lookahead_chars
        self._tail = ""  # the text from _tail_start on: enough for the next window's overlap
        self._tail_start = 0
        self._checked = 0  # text before this offset has been scanned
        self.released = 0  # text before this offset may leave
        self.total = 0

    def feed(self, delta: str) -> Sequence[object]:
        """Add ``delta``; findings (stop now) or ``()`` and maybe a larger :attr:`released`."""
        self._tail += delta
        self.total += len(delta)
        if self.total - self._checked >= self.window_chars:
            return self._check(final=False)
        return ()

    def finish(self) -> Sequence[object]:
        """The completion has ended: check what is left; all of it may leave if clean."""
        if self.total > self._checked:
            return self._check(final=True)
        self.released = self.total
        return ()

    def _check(self, *, final: bool) -> Sequence[object]:
        start = max(self._tail_start, self._checked - self.overlap_chars)
        window = self._tail[start - self._tail_start:]
        found = self._scan(window)
        if found:
            return found
        self._checked = self.total
        self.released = self.total if final else max(self.released, self.total - self.lookahead_chars)
        # Keep only what the next window's overlap and the held-back lookahead need.
        keep_from = max(0, min(self.released, self._checked - self.overlap_chars))
        if keep_from > self._tail_start:
            self._tail = self._tail[keep_from - self._tail_start:]
            self._tail_start = keep_from
        return ()
