"""One client request's retry plan: where to send next, after a backoff or not, and when to stop.

A pure state machine in h11's style, driven by the router and the admission policy on asyncio and
by the surge simulator on a virtual clock, so that both run the same decisions:

- :meth:`SendPlan.begin_round` with the deployments in the order to try (the balancer's pick, then
  failover order); :meth:`SendPlan.next` answers :class:`Send`, :class:`Backoff` (send to that
  deployment once ``until_s`` has passed) or :class:`GiveUp`;
- :meth:`SendPlan.on_refused` when the deployment's breaker said no (nothing was sent: it costs no
  attempt and no budget), :meth:`SendPlan.on_outcome` after every send, the successful one too;
- :meth:`SendPlan.requeue` when a round ended in an upstream 429: may the request wait in the
  admission queue for real capacity and go round again?

One plan per client request (issue 11): ``max_attempts`` bounds every send of every round, plus
one send per requeue, and each send after the first, like each requeue, is paid from the one
retry budget (:class:`~seawall.algorithms.retry_budget.RetryBudget`). So a client request costs at
most ``1 + what the budget allows`` upstream sends, however the layers above and below it fail.

Within a round each deployment is tried in turn; with fewer deployments than attempts the round
goes round again, after a full-jitter backoff, except to a deployment that said 429 in this round
(the admission layer owns that wait). A request that is already a client retry (the SDKs'
``x-stainless-retry-count``) gets no retries while the budget is tight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from seawall.algorithms.backoff import full_jitter
from seawall.algorithms.outcome import Outcome
from seawall.algorithms.retry_budget import RetryBudget

__all__ = ["Backoff", "GiveUp", "Named", "PlanSettings", "Send", "SendPlan"]

_OVERLOADED = Outcome.OVERLOADED  # enum member lookups cost ~0.1 µs each on Python 3.11


class Named(Protocol):
    @property
    def name(self) -> str: ...


D = TypeVar("D", bound=Named)


@dataclass(frozen=True, slots=True)
class Send(Generic[D]):
    """Send the request to ``deployment`` now."""

    deployment: D


@dataclass(frozen=True, slots=True)
class Backoff(Generic[D]):
    """Send the request to ``deployment`` once ``until_s`` has passed (a retry of the same one)."""

    deployment: D
    until_s: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Send no more in this round. ``reason``: ``exhausted`` (attempts or deployments used up),
    ``deadline`` (no time left for another send), ``retry_budget`` (the budget said no) or
    ``failed`` (the last outcome cannot be helped by another send)."""

    reason: str


@dataclass(frozen=True, slots=True)
class PlanSettings:
    max_attempts: int = 3
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 2.0
    max_requeues: int = 2  # rounds the admission layer may add after an upstream 429


class SendPlan(Generic[D]):
    """The sends of one client request (see the module docstring). ``random`` gives the backoff's
    uniform sample in [0, 1); the budget is shared by the whole gateway."""

    __slots__ = ("_overloaded", "_pos", "_round_sent", "_seq", "budget", "client_retries", "deadline_s",
                 "random", "requeues", "sent", "settings", "tried")

    def __init__(self, settings: PlanSettings, budget: RetryBudget, random: Callable[[], float], *,
                 deadline_s: float, client_retries: int = 0, tried: list[str] | None = None) -> None:
        self.settings = settings
        self.budget = budget
        self.random = random
        self.deadline_s = deadline_s
        self.client_retries = client_retries
        self.sent = 0  # upstream sends, every round together
        self.requeues = 0  # rounds granted after an upstream 429
        self.tried: list[str] = tried if tried is not None else []  # deployments sent to, in order
        self._seq: Sequence[D] = ()
        self._pos = 0
        self._round_sent = 0
        self._overloaded: set[str] = set()

    @property
    def round_sent(self) -> int:
        """Sends in the current round."""
        return self._round_sent

    def begin_round(self, order: Sequence[D]) -> None:
        """A new round over ``order`` (the router's plan: balancer pick, then failover order)."""
        attempts = self.settings.max_attempts
        # Each deployment once; with fewer deployments than attempts, round again.
        self._seq = order if attempts <= len(order) else (list(order) * attempts)[:attempts]
        self._pos = 0
        self._round_sent = 0
        self._overloaded = set()

    def next(self, now_s: float) -> Send[D] | Backoff[D] | GiveUp:
        """The next action of this round."""
        seq = self._seq
        s = self.settings
        while self._pos < len(seq):
            dep = seq[self._pos]
            self._pos += 1
            if self.sent >= s.max_attempts + self.requeues:
                return GiveUp("exhausted")
            name = dep.name
            if name in self._overloaded:
                continue
            if self._round_sent > 0:
                if now_s >= self.deadline_s:
                    return GiveUp("deadline")
                if not self.budget.try_retry(now_s, self.client_retries):
                    return GiveUp("retry_budget")
                if name in self.tried:
                    wait_s = full_jitter(self._round_sent - 1, s.backoff_base_s, s.backoff_cap_s, self.random())
                    if now_s + wait_s >= self.deadline_s:
                        return GiveUp("deadline")
                    self.tried.append(name)
                    return Backoff(dep, now_s + wait_s)
            self.tried.append(name)
            return Send(dep)
        return GiveUp("exhausted")

    def on_refused(self) -> None:
        """The last :class:`Send`'s breaker refused: nothing was sent, it costs nothing."""
        self.tried.pop()

    def on_outcome(self, deployment: D, outcome: Outcome) -> GiveUp | None:
        """One send ended with ``outcome``: ``GiveUp('failed')`` when no other send can help (a
        success, a client error, a cancellation), else None: ask :meth:`next`."""
        self.sent += 1
        self._round_sent += 1
        if outcome is _OVERLOADED:
            self._overloaded.add(deployment.name)
            return None
        return None if outcome.retryable else GiveUp("failed")

    def requeue(self, now_s: float, outcome: Outcome) -> bool:
        """The round ended with ``outcome``; True if the request should wait in the admission queue
        and go round again (after an upstream 429 only, at most ``max_requeues`` times, each paid
        from the retry budget)."""
        if (outcome is not _OVERLOADED or self.requeues >= self.settings.max_requeues
                or not self.budget.try_retry(now_s, self.client_retries)):
            return False
        self.requeues += 1
        return True
