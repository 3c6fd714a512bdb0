"""Quotas per key and per tenant: requests/min, tokens/min, concurrent requests, tokens/day.

Why a quota layer at all: one tenant's runaway script must not eat the capacity that admission
control shares out between tiers; quotas cap each caller *before* it competes for capacity.

Each scope (a key, or a tenant as a whole) may set any of four limits:

- ``requests_per_min`` and ``tokens_per_min``: GCRA buckets (:func:`seawall.algorithms.gcra.gcra_take`)
  holding a whole minute of burst and refilling continuously, which is how OpenAI-style clients
  read the ``x-ratelimit-*`` headers (``remaining`` = cells left now, ``reset`` = seconds until the
  bucket is full). Tokens are *estimated* at admission (prompt bytes / 4 + ``max_tokens``) and
  reconciled with the actual usage when the request finishes (:meth:`LocalQuota.settle`), so a
  request that used fewer tokens gives the difference back, and one that used more leaves a debt.
- ``concurrent_requests``: requests in flight; released when the request (or its stream) ends.
- ``tokens_per_day``: a counter per UTC day, charged and reconciled like tokens/min.

A request is allowed only if *every* limit of *every* scope allows it, and then all are charged
together: nothing is taken on refusal (no partial charges). The Redis quota script
(``edges/stores/redis_quota.py``) implements exactly this decision as one atomic Lua call; this
module is the in-process implementation (one replica, or the fail-static fallback at 1/N of the
global quota, see :meth:`QuotaLimits.share`) and the reference the script is tested against.
Pure: time is passed in (``now_s`` monotonic for the buckets, ``wall_s`` for the UTC day).
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from seawall.algorithms.gcra import gcra_reset_s, gcra_take

__all__ = [
    "DAY_S",
    "Dimension",
    "LocalQuota",
    "QuotaDecision",
    "QuotaLimits",
    "QuotaScope",
    "RateState",
    "decision_from",
    "format_reset",
    "lease_cells",
    "rate_state",
]

DAY_S = 86_400.0
CONCURRENCY_RETRY_S = 1.0  # nothing says when an in-flight request ends: ask for a short wait


class Dimension(enum.Enum):
    """What a quota counts; the value is the config field name. ``code`` is the wire id in Lua."""

    CONCURRENCY = "concurrent_requests"
    REQUESTS = "requests_per_min"
    TOKENS = "tokens_per_min"
    DAILY_TOKENS = "tokens_per_day"

    @property
    def code(self) -> int:
        return _CODES[self]

    @classmethod
    def from_code(cls, code: int) -> Dimension:
        return _BY_CODE[code]


_CODES = {Dimension.CONCURRENCY: 1, Dimension.REQUESTS: 2, Dimension.TOKENS: 3, Dimension.DAILY_TOKENS: 4}
_BY_CODE = {v: k for k, v in _CODES.items()}


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """Limits of one scope; ``None`` means unlimited. Each value is >= 1."""

    requests_per_min: int | None = None
    tokens_per_min: int | None = None
    concurrent_requests: int | None = None
    tokens_per_day: int | None = None

    @property
    def empty(self) -> bool:
        return (self.requests_per_min is None and self.tokens_per_min is None
                and self.concurrent_requests is None and self.tokens_per_day is None)

    @property
    def counts_tokens(self) -> bool:
        return self.tokens_per_min is not None or self.tokens_per_day is not None

    def share(self, replicas: int) -> QuotaLimits:
        """This replica's share when replicas cannot coordinate: 1/N of each limit, at least 1."""
        if replicas <= 1:
            return self

        def part(v: int | None) -> int | None:
            return None if v is None else max(1, v // replicas)

        return QuotaLimits(part(self.requests_per_min), part(self.tokens_per_min),
                           part(self.concurrent_requests), part(self.tokens_per_day))


@dataclass(frozen=True, slots=True)
class QuotaScope:
    """One thing a quota applies to: ``kind`` is ``"key"`` or ``"tenant"``; ``tenant`` groups the
    counters of a tenant and its keys (one Redis hash slot)."""

    kind: str
    id: str
    tenant: str
    limits: QuotaLimits

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class RateState:
    """One bucket as clients see it: ``remaining`` cells now, ``reset_s`` until full again."""

    limit: int
    remaining: int
    reset_s: float


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """Allowed or not; on refusal which limit said no, of which scope, and for how long.

    ``requests``/``tokens`` are the tightest per-minute buckets over the scopes (for the
    ``x-ratelimit-*`` headers). ``retry_after_s`` is ``inf`` when the request can never fit
    (its token estimate exceeds the bucket itself).
    """

    allowed: bool
    requests: RateState | None = None
    tokens: RateState | None = None
    refused: Dimension | None = None
    scope: QuotaScope | None = None
    retry_after_s: float = 0.0
    limit: int = 0


def rate_state(tat: float, now_s: float, limit_per_min: int) -> RateState:
    interval_s = 60.0 / limit_per_min
    ahead_s = tat - now_s if tat > now_s else 0.0
    # Tolerance of a thousandth of a cell: TATs are kept to the microsecond (see LocalQuota._store).
    remaining = math.floor(limit_per_min - ahead_s / interval_s + 1e-3)
    return RateState(limit_per_min, min(max(remaining, 0), limit_per_min), gcra_reset_s(tat, now_s))


def _tightest(a: RateState | None, b: RateState) -> RateState:
    return b if a is None or b.remaining < a.remaining else a


def decision_from(scopes: Sequence[QuotaScope], rpm_tats: Sequence[float | None],
                  tpm_tats: Sequence[float | None], now_s: float, refused: Dimension | None = None,
                  refused_index: int = -1, wait_s: float = 0.0) -> QuotaDecision:
    """Build the decision (headers included) from the buckets' TATs; shared by the local counters
    and the Redis store so both report exactly the same way."""
    requests: RateState | None = None
    tokens: RateState | None = None
    for scope, rtat, ttat in zip(scopes, rpm_tats, tpm_tats, strict=True):
        lim = scope.limits
        if lim.requests_per_min is not None and rtat is not None:
            requests = _tightest(requests, rate_state(rtat, now_s, lim.requests_per_min))
        if lim.tokens_per_min is not None and ttat is not None:
            tokens = _tightest(tokens, rate_state(ttat, now_s, lim.tokens_per_min))
    if refused is None:
        return QuotaDecision(True, requests, tokens)
    scope = scopes[refused_index]
    limit = getattr(scope.limits, refused.value) or 0
    return QuotaDecision(False, requests, tokens, refused, scope, wait_s, limit)


def format_reset(seconds: float) -> str:
    """Durations as OpenAI writes them in ``x-ratelimit-reset-*``: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1.0:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    s = f"{secs:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{s}s"
    if minutes:
        return f"{minutes}m{s}s"
    return f"{s}s"


def lease_cells(remaining: float, want: int, replicas: int) -> int:
    """Cells handed to one replica as a lease: what it asked for, but at most ``1/(2N)`` of what is
    left, so N replicas together never hold more than half of it and the rest is decided one request
    at a time; near the limit this is zero and every request is checked on the shared counters."""
    if want <= 0 or remaining <= 0:
        return 0
    return max(0, min(want, math.floor(remaining / (2 * max(1, replicas)))))


class LocalQuota:
    """In-process counters for every scope; bounded to ``max_scopes`` buckets (least recently used
    evicted, which can only make the limiter more lenient, never wrongly strict)."""

    __slots__ = ("_blocks", "_days", "_inflight", "_tats", "max_scopes")

    def __init__(self, max_scopes: int = 100_000) -> None:
        self.max_scopes = max_scopes
        self._tats: OrderedDict[str, float] = OrderedDict()  # "r:<scope>" / "t:<scope>" -> TAT
        self._inflight: dict[str, int] = {}  # requests in flight, blocks of slots included
        self._days: dict[str, tuple[int, int]] = {}  # scope -> (UTC day number, tokens used)
        self._blocks: dict[tuple[str, str], int] = {}  # (scope, owner) -> concurrency slots held

    def inflight(self, scope: QuotaScope) -> int:
        return self._inflight.get(scope.name, 0)

    def acquire(self, scopes: Sequence[QuotaScope], tokens: int, now_s: float, wall_s: float) -> QuotaDecision:
        """Check every limit of every scope; charge them all only if all allow."""
        day = int(wall_s // DAY_S)
        worst: tuple[float, Dimension, int] | None = None
        rpm_tats: list[float | None] = []
        tpm_tats: list[float | None] = []
        new_r: list[float | None] = []
        new_t: list[float | None] = []

        def refuse(wait_s: float, dim: Dimension, i: int) -> None:
            nonlocal worst
            if worst is None or wait_s > worst[0]:
                worst = (wait_s, dim, i)

        for i, s in enumerate(scopes):
            lim = s.limits
            name = s.name
            if lim.concurrent_requests is not None and self._inflight.get(name, 0) >= lim.concurrent_requests:
                refuse(CONCURRENCY_RETRY_S, Dimension.CONCURRENCY, i)
            rtat = ttat = nr = nt = None
            if lim.requests_per_min is not None:
                rtat = self._tats.get("r:" + name, now_s)
                nr, wait = gcra_take(rtat, now_s, 60.0 / lim.requests_per_min, lim.requests_per_min, 1)
                nr = round(nr, 6)
                if wait > 0.0:
                    refuse(wait, Dimension.REQUESTS, i)
            if lim.tokens_per_min is not None:
                ttat = self._tats.get("t:" + name, now_s)
                nt, wait = gcra_take(ttat, now_s, 60.0 / lim.tokens_per_min, lim.tokens_per_min, tokens)
                nt = round(nt, 6)
                if wait > 0.0:
                    refuse(wait, Dimension.TOKENS, i)
            if lim.tokens_per_day is not None:
                used = self._used_today(name, day)
                if used + tokens > lim.tokens_per_day:
                    refuse(math.inf if tokens > lim.tokens_per_day else (day + 1) * DAY_S - wall_s,
                           Dimension.DAILY_TOKENS, i)
            rpm_tats.append(rtat)
            tpm_tats.append(ttat)
            new_r.append(nr)
            new_t.append(nt)
        if worst is not None:
            return decision_from(scopes, rpm_tats, tpm_tats, now_s, worst[1], worst[2], worst[0])
        for s, nr, nt in zip(scopes, new_r, new_t, strict=True):
            name = s.name
            if nr is not None:
                self._store("r:" + name, nr)
            if nt is not None:
                self._store("t:" + name, nt)
            if s.limits.concurrent_requests is not None:
                self._inflight[name] = self._inflight.get(name, 0) + 1
            if s.limits.tokens_per_day is not None:
                self._days[name] = (day, self._used_today(name, day) + tokens)
        if len(self._days) > self.max_scopes:
            self._days = {k: v for k, v in self._days.items() if v[0] == day}
        return decision_from(scopes, new_r, new_t, now_s)

    def settle(self, scopes: Sequence[QuotaScope], tokens_delta: int, now_s: float, wall_s: float,
               acquired_wall_s: float) -> None:
        """The request ended: release its concurrency slot and reconcile its token estimate
        (``tokens_delta`` = actual - estimated; negative gives tokens back, positive is a debt).
        A daily counter that has rolled over since ``acquired_wall_s`` is left alone."""
        day = int(acquired_wall_s // DAY_S)
        for s in scopes:
            name = s.name
            if s.limits.concurrent_requests is not None:
                n = self._inflight.get(name, 0) - 1
                if n > 0:
                    self._inflight[name] = n
                else:
                    self._inflight.pop(name, None)
            if tokens_delta != 0:
                self.adjust(s, 0, tokens_delta, tokens_delta, day, now_s, wall_s)

    # -- the shared counters' side of leases (the reference the Redis script is tested against) --
    def adjust(self, scope: QuotaScope, requests: int, tokens: int, day_tokens: int, day: int,
               now_s: float, wall_s: float) -> None:
        """Add cells without checking: a lease given back (negative), a reconciled estimate, a debt.
        A bucket never goes above full (a give-back on a full bucket is lost); ``day_tokens`` count
        only while ``day`` is still the UTC day, and a day counter never goes below zero."""
        name, lim = scope.name, scope.limits
        for prefix, cells, limit in (("r:", requests, lim.requests_per_min), ("t:", tokens, lim.tokens_per_min)):
            if cells != 0 and limit is not None:
                tat = self._tats.get(prefix + name, now_s)
                self._store(prefix + name, max(tat, now_s) + cells * (60.0 / limit))
        if day_tokens != 0 and lim.tokens_per_day is not None and day == int(wall_s // DAY_S):
            self._days[name] = (day, max(0, self._used_today(name, day) + day_tokens))

    def grant(self, scope: QuotaScope, want: tuple[int, int, int], replicas: int, now_s: float,
              wall_s: float) -> tuple[int, int, int]:
        """Hand out a lease: up to ``want`` (requests, tokens, tokens today) charged now, each at most
        :func:`lease_cells` of what is left. Returns what was granted."""
        name, lim = scope.name, scope.limits
        out = [0, 0, 0]
        for i, (prefix, limit) in enumerate((("r:", lim.requests_per_min), ("t:", lim.tokens_per_min))):
            if want[i] > 0 and limit is not None:
                tat = self._tats.get(prefix + name, now_s)
                interval = 60.0 / limit
                ahead = tat - now_s if tat > now_s else 0.0
                out[i] = lease_cells(math.floor(limit - ahead / interval + 1e-3), want[i], replicas)
                if out[i]:
                    self._store(prefix + name, max(tat, now_s) + out[i] * interval)
        if want[2] > 0 and lim.tokens_per_day is not None:
            day = int(wall_s // DAY_S)
            used = self._used_today(name, day)
            out[2] = lease_cells(lim.tokens_per_day - used, want[2], replicas)
            if out[2]:
                self._days[name] = (day, used + out[2])
        return out[0], out[1], out[2]

    def hold(self, scope: QuotaScope, owner: str, slots: int, floor: int, replicas: int, grow_only: bool = False
             ) -> int:
        """Resize ``owner``'s block of concurrency slots (a lease on the in-flight count) to
        ``slots``: shrinking at once (unless ``grow_only``), growing by at most :func:`lease_cells` of
        the free slots, but never below ``floor`` (slots in use are counted even over the limit).
        Returns the block's size."""
        limit = scope.limits.concurrent_requests
        if limit is None or slots < 0:
            return -1
        name = scope.name
        have = self._blocks.get((name, owner), 0)
        new = slots
        if slots > have or grow_only:
            free = limit - self._inflight.get(name, 0)
            new = max(have + lease_cells(free, slots - have, replicas), min(floor, slots), have if grow_only else 0)
        total = self._inflight.get(name, 0) + new - have
        if total > 0:
            self._inflight[name] = total
        else:
            self._inflight.pop(name, None)
        if new > 0:
            self._blocks[(name, owner)] = new
        else:
            self._blocks.pop((name, owner), None)
        return new

    def peek(self, scope: QuotaScope, now_s: float, wall_s: float) -> tuple[float, float, int, int]:
        """The scope's state as a replica caches it: requests and tokens TATs (``now_s`` when full or
        unlimited), the UTC day and the tokens used that day."""
        name, day = scope.name, int(wall_s // DAY_S)
        return (max(self._tats.get("r:" + name, now_s), now_s), max(self._tats.get("t:" + name, now_s), now_s),
                day, self._used_today(name, day))

    def seed(self, scope: QuotaScope, requests_tat: float | None, tokens_tat: float | None, day: int,
             day_used: int | None) -> None:
        """Start from what was last seen elsewhere (the shared counters before an outage), never
        below what is counted here already: the fallback must not forget usage."""
        name = scope.name
        for prefix, tat in (("r:", requests_tat), ("t:", tokens_tat)):
            if tat is not None and tat > self._tats.get(prefix + name, -math.inf):
                self._store(prefix + name, tat)
        if day_used is not None and scope.limits.tokens_per_day is not None and day_used > self._used_today(name, day):
            self._days[name] = (day, day_used)

    def _used_today(self, name: str, day: int) -> int:
        stored = self._days.get(name)
        return stored[1] if stored is not None and stored[0] == day else 0

    def _store(self, key: str, tat: float) -> None:
        # Kept to the microsecond, exactly as the Redis script stores it ('%.6f'), so that both
        # implementations make bit-identical decisions from the same history.
        self._tats[key] = round(tat, 6)
        self._tats.move_to_end(key)
        if len(self._tats) > self.max_scopes:
            self._tats.popitem(last=False)
