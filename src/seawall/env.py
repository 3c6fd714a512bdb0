"""The one place that reads the system clock and randomness.

Policies and algorithms receive a :class:`Clock` and an :class:`Rng` as constructor arguments, so
tests (see :mod:`seawall.testing`) run them on a fake clock and a seeded generator. Nothing under
``algorithms/`` may import ``time``, ``random`` or ``asyncio``; a test enforces it.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Protocol

__all__ = ["Clock", "Rng", "SystemClock", "SystemRng"]


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""
        ...

    def wall(self) -> float:
        """Unix seconds, for timestamps shown to people and stored in the ledger."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class Rng(Protocol):
    def random(self) -> float:
        """Uniform in [0, 1)."""
        ...

    def token_hex(self, nbytes: int) -> str:
        """Cryptographically strong hex string (request ids, API keys)."""
        ...


class SystemClock:
    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SystemRng:
    __slots__ = ("_random",)

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def random(self) -> float:
        return self._random.random()

    def token_hex(self, nbytes: int) -> str:
        import secrets

        return secrets.token_hex(nbytes)
