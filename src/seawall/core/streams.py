"""Running something when a response stream ends, however it ends.

Policies that hold something for the life of a request (an admission ticket, a quota reservation)
must give it back when the last byte is sent, when the stream fails, or when the client goes away;
the stream is closed first so the upstream connection is released before the hold is.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["after_stream"]


async def after_stream(inner: AsyncIterator[bytes],
                       on_end: Callable[[bool], Awaitable[None] | None]) -> AsyncIterator[bytes]:
    """Yield ``inner``; then call ``on_end(finished)``, ``finished`` True only after a clean end."""
    finished = False
    try:
        async for item in inner:
            yield item
        finished = True
    finally:
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()
        result = on_end(finished)
        if inspect.isawaitable(result):
            await result
