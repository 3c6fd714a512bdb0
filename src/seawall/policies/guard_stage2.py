"""Stage 2: a remote OpenAI ``/v1/moderations``-compatible classifier, called as a budgeted deployment.

Stage 2 is a model group of kind ``moderation`` like any other: its deployments keep their own
breakers and balancing, and it gets its own router (so its own retry budget: a moderation outage
cannot spend the chat traffic's retries) and its own :class:`~seawall.policies.gate.AdmissionGate`
with an adaptive limit and reserved shares per criticality, so a flood of free traffic cannot take
the guard capacity paying traffic needs. Every call has one deadline, ``timeout_s`` from now (never
past the request's own), covering the wait for capacity and the call itself, on the injected clock.

Any way it can fail — no capacity (``stage2_saturated``), past its deadline (``stage2_timeout``),
open breakers or upstream errors (``stage2_down``) — is one :class:`Stage2Unavailable`, and the
tier's ``on_unavailable`` decides what that means (``algorithms/guard.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from seawall.core.errors import GatewayError, Overloaded
from seawall.core.types import Criticality, Operation, Principal, Request
from seawall.env import Clock
from seawall.policies.gate import AdmissionGate
from seawall.policies.route import Router
from seawall.providers.moderations import parse_moderations

__all__ = ["AuditDrainer", "Moderation", "Stage2", "Stage2Unavailable", "within"]

log = logging.getLogger("seawall.guard")

T = TypeVar("T")
_decode = msgspec.json.decode


class Stage2Unavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Moderation:
    flagged: bool
    categories: tuple[str, ...]
    score: float  # the highest category score
    latency_s: float


async def within(clock: Clock, timeout_s: float, work: Awaitable[T]) -> T:
    """``work`` or :class:`TimeoutError` after ``timeout_s`` on ``clock`` (the work is cancelled)."""
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(max(0.0, timeout_s)))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        timer.cancel()
    if not task.done():
        task.cancel()
        try:
            await task
        except BaseException:
            pass
        raise TimeoutError
    return task.result()


class Stage2:
    """One moderation model group behind its own gate and router."""

    def __init__(self, model: str, router: Router, gate: AdmissionGate, *, clock: Clock, timeout_s: float) -> None:
        self.model = model
        self.router = router
        self.gate = gate
        self.clock = clock
        self.timeout_s = timeout_s

    async def check(self, text: str, *, principal: Principal, criticality: Criticality, request_id: str,
                    deadline_s: float) -> Moderation:
        """Classify ``text``; :class:`Stage2Unavailable` if stage 2 cannot answer by its deadline."""
        clock = self.clock
        now = clock.now()
        deadline = min(deadline_s, now + self.timeout_s)
        if deadline <= now:
            raise Stage2Unavailable("stage2_timeout")
        try:
            ticket = await within(clock, deadline - now, self.gate.acquire(criticality, 1.0, deadline))
        except Overloaded:
            raise Stage2Unavailable("stage2_saturated") from None
        except TimeoutError:
            raise Stage2Unavailable("stage2_timeout") from None
        started = clock.now()
        raw = msgspec.json.encode({"model": self.model, "input": text})
        inner = Request(id=f"{request_id}.guard", api="openai", operation=Operation.MODERATIONS, raw=raw,
                        headers={}, client_addr="guard", received_at=started, deadline=deadline,
                        parse=parse_moderations)
        # The caller's key may not name the moderation group itself; the guard calls it on its behalf.
        inner.ctx.principal = dataclasses.replace(principal, models=None)
        inner.ctx.criticality = criticality
        try:
            response = await within(clock, deadline - started, self.router(inner))
            result = _verdict(response.body)
        except TimeoutError:
            self.gate.release(ticket, rtt_s=None, dropped=True)
            raise Stage2Unavailable("stage2_timeout") from None
        except (GatewayError, ValueError, msgspec.DecodeError):
            self.gate.release(ticket, rtt_s=None, dropped=True)
            raise Stage2Unavailable("stage2_down") from None
        took = clock.now() - started
        self.gate.release(ticket, rtt_s=took, dropped=False)
        return Moderation(result[0], result[1], result[2], took)


def _verdict(body: bytes) -> tuple[bool, tuple[str, ...], float]:
    data: Any = _decode(body)
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or not results:
        raise ValueError("no moderation results")
    flagged = False
    categories: list[str] = []
    score = 0.0
    for r in results:
        flagged = flagged or bool(r.get("flagged"))
        categories += [name for name, hit in (r.get("categories") or {}).items() if hit]
        scores = r.get("category_scores") or {}
        if scores:
            score = max(score, max(float(v) for v in scores.values()))
    return flagged, tuple(dict.fromkeys(categories)), score


class AuditDrainer:
    """Audits degraded prompts with stage 2 when it has capacity again, oldest first.

    Each audit asks the stage-2 gate at the lowest criticality, so it only ever takes capacity no
    live request wants; when stage 2 is still short, the item goes back and the round ends.
    ``on_result(request_id, flagged)``: metrics and a log line (ids only, never text).
    """

    name = "guard_audit"

    def __init__(self, stage2: Stage2, queue: Any, *, clock: Clock, interval_s: float,
                 on_result: Callable[[str, bool | None], None]) -> None:
        self.stage2 = stage2
        self.queue = queue
        self.clock = clock
        self.interval_s = interval_s
        self.on_result = on_result
        self.audited = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    @property
    def state(self) -> dict[str, Any]:
        q = self.queue
        return {"status": "ok", "queued": len(q), "dropped": q.dropped, "audited": self.audited}

    async def drain_once(self) -> int:
        """Audit queued prompts until the queue is empty or stage 2 says no; how many were audited."""
        done = 0
        while True:
            item = self.queue.pop()
            if item is None:
                return done
            try:
                m = await self.stage2.check(item.text, principal=item.principal, criticality=Criticality.SHEDDABLE,
                                            request_id=item.request_id,
                                            deadline_s=self.clock.now() + self.stage2.timeout_s)
            except Stage2Unavailable:
                self.queue.unpop(item)
                return done
            done += 1
            self.audited += 1
            self.on_result(item.request_id, m.flagged)

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(self.interval_s)
            try:
                await self.drain_once()
            except Exception:  # never let the audit loop die; it is best effort by design
                log.exception("guard audit round failed")
