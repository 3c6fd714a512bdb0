"""A named background task with an idempotent start and a stop that waits for it to end.

Several components keep one loop running beside the request path (key refresher, JWKS refresher,
ledger flusher, loop-lag monitor); this is the one place that knows how to start and stop such a
loop cleanly, and how such a loop waits for its next turn (:func:`sleep_or_wake`, on the injected
clock, so tests drive every loop with a :class:`~seawall.testing.FakeClock`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from seawall.env import Clock

__all__ = ["Background", "sleep_or_wake"]


class Background:
    __slots__ = ("_task", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start ``run()`` unless already started; needs a running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended (a no-op if it never started)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def sleep_or_wake(clock: Clock, seconds: float, wake: asyncio.Event) -> None:
    """Wait ``seconds`` on ``clock``, or less if ``wake`` is set first (it is left set: the caller
    clears it when it takes the turn)."""
    if wake.is_set():
        return
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waker = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waker.cancel()
