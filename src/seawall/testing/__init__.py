"""Public test helpers, so users can test their own configurations the way seawall tests itself.

- :class:`FakeClock` — a manual clock: ``advance(s)`` moves time; ``sleep`` returns once the clock
  has been advanced past the wake-up time, so async code runs on virtual time; ``until_asleep()``
  waits until the code under test sleeps on it, so every step of a test is deterministic.
- :class:`SeededRng` — deterministic randomness.
- :func:`make_request` — a :class:`~seawall.core.types.Request` for driving policies directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from seawall.core.types import Operation, Principal, Request
from seawall.providers import openai

__all__ = ["FakeClock", "SeededRng", "make_request"]


class FakeClock:
    def __init__(self, start_s: float = 1000.0, wall_offset_s: float = 1_700_000_000.0) -> None:
        self._now = start_s
        self._wall_offset = wall_offset_s - start_s
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self._now += seconds
        due = [(t, f) for t, f in self._sleepers if t <= self._now]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self._now]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many ``sleep`` calls wait for this clock (cancelled ones not counted): a test waits
        until the code under test is asleep before it advances time, so each step is deterministic."""
        return sum(1 for _, fut in self._sleepers if not fut.done())

    async def until_asleep(self, count: int = 1, timeout_s: float = 10.0) -> None:
        """Return once ``count`` sleeps wait for this clock: the code under test has done all it can
        until time moves (threads and sockets it waits on included). ``timeout_s`` is real time and
        only turns a hang into an error."""
        async with asyncio.timeout(timeout_s):
            while self.sleepers < count:  # noqa: ASYNC110 - sleeps start in other tasks; no event to wait on
                await asyncio.sleep(0.001)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, fut))
        await fut


class SeededRng:
    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)

    def random(self) -> float:
        return self._random.random()

    def token_hex(self, nbytes: int) -> str:
        return hashlib.sha256(str(self._random.random()).encode()).hexdigest()[: nbytes * 2]


def make_request(
    body: bytes = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}',
    *,
    headers: dict[str, str] | None = None,
    operation: Operation = Operation.CHAT,
    now_s: float = 1000.0,
    timeout_s: float = 60.0,
    client_addr: str = "127.0.0.1",
    principal: Principal | None = None,
    id: str = "req_test",
) -> Request:
    parse = openai.parse_chat if operation is Operation.CHAT else openai.parse_embeddings
    request = Request(
        id=id, api="openai", operation=operation, raw=body, headers=headers or {},
        client_addr=client_addr, received_at=now_s, deadline=now_s + timeout_s, parse=parse,
    )
    if principal is not None:
        request.ctx.principal = principal
        request.ctx.criticality = principal.criticality
    return request


