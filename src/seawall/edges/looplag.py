"""Event-loop lag: how late a timer fires. The first thing a flood exhausts is the gateway's CPU.

A timer is scheduled every ``interval_s``; the delay between when it should have fired and when it
did is the time every request currently waits before the gateway even looks at it. The admission
policy reads ``lag_s`` (a peak-hold value that decays) and sheds the least critical traffic first
when it grows, before parsing a body, so the CPU that is left goes to the traffic that matters.
"""

from __future__ import annotations

import asyncio

from seawall.core.background import Background

__all__ = ["LoopLagMonitor"]


class LoopLagMonitor:
    def __init__(self, interval_s: float = 0.025, decay: float = 0.8) -> None:
        self.interval_s = interval_s
        self.decay = decay
        self.lag_s = 0.0
        self.max_lag_s = 0.0
        self._task = Background("loop-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - expected)
            # Peak-hold with decay: one late tick counts at once, and fades over a few ticks.
            self.lag_s = max(lag, self.lag_s * self.decay)
            self.max_lag_s = max(self.max_lag_s, lag)

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()


