"""Circuit breaker per deployment: stop sending to a deployment that is failing, probe it back.

Why: a deployment that times out costs every request routed to it a full attempt timeout and a
slice of the retry budget. Opening the breaker turns that into an immediate skip, so the router
fails over at once and the broken upstream gets room to recover.

States:

- ``closed``: everything passes. Outcomes are counted over a sliding window (``window_s``, default
  10 s in ``bucket_s`` = 1 s buckets). It opens when ``failures / attempts >=
  failure_rate_threshold`` (default 0.5) with at least ``min_requests`` (default 20) attempts in
  the window, or after ``consecutive_failures_to_open`` (default 5) failures in a row, which catches
  a hard-down deployment on low traffic.
- ``open``: everything is refused for ``open_s`` (default 5 s). Each re-open straight from
  half-open doubles the duration, up to ``max_open_s`` (default 60 s); a clean close resets it.
- ``half_open``: at most ``half_open_max_probes`` (default 1) probe attempts at once. After
  ``probe_successes_to_close`` (default 2) probe successes it closes with a fresh window; any
  probe failure re-opens it.

Only :attr:`Outcome.FAILURE` counts against a deployment. ``OVERLOADED`` (429/529),
``CLIENT_ERROR`` and ``CANCELLED`` are neutral: not counted at all, and for a probe they just give
the slot back. Classify with :func:`seawall.algorithms.outcome.classify`.

Permits. :meth:`CircuitBreaker.allow` returns a :class:`Permit` (or ``None`` when refused) that
the caller hands back with the result. The permit says whether the attempt is a probe and which
breaker *generation* (state period) issued it, so that a slow result from before the breaker
opened can never be mistaken for a probe result, and stale failures cannot re-open a breaker that
has since recovered. If a caller never reports a probe (a bug, or a crash), its slot is released
anyway once ``probe_lease_s`` (default 120 s; keep it above the attempt timeout) has passed,
without counting as success or failure, so a lost permit can delay recovery but never wedge the
breaker half-open for ever. Report cancellations with ``Outcome.CANCELLED`` to free the slot at once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from seawall.algorithms.outcome import Outcome
from seawall.algorithms.window import SlidingCounts

__all__ = ["BreakerState", "CircuitBreaker", "Permit"]

_ATTEMPTS, _FAILURES = 0, 1


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Enum member lookups cost ~0.1 µs each on Python 3.11, and the router asks every breaker per request.
_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
_SUCCESS, _FAILURE = Outcome.SUCCESS, Outcome.FAILURE

@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one attempt; hand it back to :meth:`CircuitBreaker.on_result`.

    ``probe`` is True for a half-open probe; ``generation`` identifies the state period that
    issued it; ``probe_id`` is unique per probe (0 for ordinary permits, which are shared).
    """

    probe: bool
    generation: int
    probe_id: int = 0


class CircuitBreaker:
    """One breaker per deployment. All methods take the current time ``now_s`` (monotonic seconds)."""

    __slots__ = (
        "_closed_permit",
        "_consecutive",
        "_generation",
        "_next_probe_id",
        "_open_duration_s",
        "_open_until_s",
        "_probe_successes",
        "_probes",
        "_state",
        "_window",
        "consecutive_failures_to_open",
        "failure_rate_threshold",
        "half_open_max_probes",
        "max_open_s",
        "min_requests",
        "open_s",
        "probe_lease_s",
        "probe_successes_to_close",
    )

    def __init__(
        self,
        *,
        failure_rate_threshold: float = 0.5,
        min_requests: int = 20,
        consecutive_failures_to_open: int = 5,
        window_s: float = 10.0,
        bucket_s: float = 1.0,
        open_s: float = 5.0,
        max_open_s: float = 60.0,
        half_open_max_probes: int = 1,
        probe_successes_to_close: int = 2,
        probe_lease_s: float = 120.0,
    ) -> None:
        if not 0.0 < failure_rate_threshold <= 1.0:
            raise ValueError("failure_rate_threshold must be in (0, 1]")
        if min_requests < 1 or consecutive_failures_to_open < 1:
            raise ValueError("min_requests and consecutive_failures_to_open must be >= 1")
        if open_s <= 0 or max_open_s < open_s or probe_lease_s <= 0:
            raise ValueError("need open_s > 0, max_open_s >= open_s and probe_lease_s > 0")
        if half_open_max_probes < 1 or probe_successes_to_close < 1:
            raise ValueError("half_open_max_probes and probe_successes_to_close must be >= 1")
        self.failure_rate_threshold = failure_rate_threshold
        self.min_requests = min_requests
        self.consecutive_failures_to_open = consecutive_failures_to_open
        self.open_s = open_s
        self.max_open_s = max_open_s
        self.half_open_max_probes = half_open_max_probes
        self.probe_successes_to_close = probe_successes_to_close
        self.probe_lease_s = probe_lease_s
        self._window = SlidingCounts(window_s, bucket_s, channels=2)
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._closed_permit = Permit(probe=False, generation=0)
        self._consecutive = 0
        self._open_duration_s = open_s
        self._open_until_s = 0.0
        self._probes: dict[int, float] = {}  # probe_id -> lease expiry (s)
        self._probe_successes = 0
        self._next_probe_id = 1

    # -- reading ------------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Incremented on every state change; permits from older generations are ignored."""
        return self._generation

    def state(self, now_s: float) -> BreakerState:
        self._tick(now_s)
        return self._state

    def retry_after_s(self, now_s: float) -> float:
        """Seconds until the breaker will next let an attempt through; 0.0 unless open.

        Half-open with every probe slot taken also answers 0.0: the probe's fate is unknown, so the
        caller should apply its own minimum (e.g. 1 s) rather than trust a number from here.
        """
        self._tick(now_s)
        if self._state is _OPEN:
            return self._open_until_s - now_s
        return 0.0

    def failure_rate(self, now_s: float) -> float:
        """Failures / attempts in the current window (0.0 when empty): a badness score for ejection."""
        attempts = self._window.total(now_s, _ATTEMPTS)
        return self._window.total(now_s, _FAILURES) / attempts if attempts else 0.0

    def probes_in_flight(self, now_s: float) -> int:
        self._tick(now_s)
        return len(self._probes)

    # -- deciding -----------------------------------------------------------------------------

    def allow(self, now_s: float) -> Permit | None:
        """A permit to send one attempt, or ``None`` if the breaker refuses it.

        Closed: always a (shared) permit. Open: ``None``. Half-open: a probe permit while fewer
        than ``half_open_max_probes`` probes are outstanding, reserving a slot until the result is
        reported or ``probe_lease_s`` passes.
        """
        self._tick(now_s)
        if self._state is _CLOSED:
            return self._closed_permit
        if self._state is _OPEN or len(self._probes) >= self.half_open_max_probes:
            return None
        probe_id = self._next_probe_id
        self._next_probe_id += 1
        self._probes[probe_id] = now_s + self.probe_lease_s
        return Permit(probe=True, generation=self._generation, probe_id=probe_id)

    def on_success(self, now_s: float, permit: Permit) -> None:
        self.on_result(now_s, permit, Outcome.SUCCESS)

    def on_failure(self, now_s: float, permit: Permit) -> None:
        self.on_result(now_s, permit, Outcome.FAILURE)

    def on_result(self, now_s: float, permit: Permit, outcome: Outcome) -> None:
        """Report the outcome of an attempt made under ``permit``; releases a probe slot."""
        self._tick(now_s)
        if permit.generation != self._generation:
            return  # issued before the last state change: says nothing about the present
        if permit.probe:
            if self._probes.pop(permit.probe_id, None) is None:
                return  # lease already expired
            if outcome is _SUCCESS:
                self._probe_successes += 1
                if self._probe_successes >= self.probe_successes_to_close:
                    self._close()
            elif outcome is _FAILURE:
                self._open_duration_s = min(self._open_duration_s * 2.0, self.max_open_s)
                self._open(now_s)
            return
        # Same generation and not a probe: the breaker is closed.
        if outcome is _SUCCESS:
            self._window.add(now_s, _ATTEMPTS)
            self._consecutive = 0
        elif outcome is _FAILURE:
            self._window.add(now_s, _ATTEMPTS)
            self._window.add(now_s, _FAILURES)
            self._consecutive += 1
            if self._consecutive >= self.consecutive_failures_to_open or self._rate_tripped(now_s):
                self._open(now_s)

    # -- transitions --------------------------------------------------------------------------

    def _rate_tripped(self, now_s: float) -> bool:
        attempts = self._window.total(now_s, _ATTEMPTS)
        if attempts < self.min_requests:
            return False
        return self._window.total(now_s, _FAILURES) >= self.failure_rate_threshold * attempts

    def _tick(self, now_s: float) -> None:
        if self._state is _OPEN:
            if now_s >= self._open_until_s:
                self._enter(_HALF_OPEN)
        elif self._state is _HALF_OPEN and self._probes:
            expired = [pid for pid, until_s in self._probes.items() if until_s <= now_s]
            for pid in expired:
                del self._probes[pid]

    def _enter(self, state: BreakerState) -> None:
        self._state = state
        self._generation += 1
        self._probes.clear()
        self._probe_successes = 0

    def _open(self, now_s: float) -> None:
        self._enter(_OPEN)
        self._open_until_s = now_s + self._open_duration_s

    def _close(self) -> None:
        self._enter(_CLOSED)
        self._closed_permit = Permit(probe=False, generation=self._generation)
        self._window.clear()
        self._consecutive = 0
        self._open_duration_s = self.open_s
