"""Leases on the shared quota counters: decide in-process while far from a limit, on Redis near it.

Why: a round trip to Redis costs hundreds of microseconds of syscalls on a busy machine, and
milliseconds at the tail; a gateway that asks about every request pays that on every request. Yet
the replicas must hold one global quota.

How: a replica holds a *lease* per scope and limit: cells (requests, tokens, tokens today) already
charged to the shared counters and spent here without asking. The shared side hands out at most
``1/(2N)`` of what is left (:func:`seawall.algorithms.quota.lease_cells`), so leases are generous
far from a limit and shrink to nothing near it; then each request is decided on the shared counters
one at a time (the atomic script), exactly as without leases. Everything admitted from a lease was
charged in advance, so leases never let the replicas together admit more than the shared counters
hold; what they cost is cells held but not yet spent, given back at the next sync.

Concurrency is a level, not a rate: its lease is a *block* of slots counted as in flight on the
shared side (sized from this interval's peak in use, refreshed by every sync, expiring by itself
if this replica dies), used here as requests start and end. Near the limit (fewer free slots than
``2N``) no block grows, a request beyond the block takes a slot of its own on the shared side, and a
slot of the block freed by a request's end goes back at once (:meth:`LeaseBook.release`), so a
client at its limit is never refused because of its own previous request.

Every answer from the shared side carries its state (TATs, tokens used today): a *snapshot*. When
not even the snapshot plus this replica's own lease can fit a request, the window is known to be
exhausted and the request is refused here (:meth:`LeaseBook.decide` returns the refusal). Other
replicas' spending only makes the real state tighter than the snapshot; only their refunds (token
reconciliation) make it looser, and the next sync (one interval later) brings those in.

Sync (driven by :class:`seawall.edges.quota.QuotaService`, one batched call per interval): for
every scope active since the last one, :meth:`LeaseBook.plan` gives back what is held beyond the
next intervals' demand, charges debts (a request that used more tokens than estimated; usage
counted while the shared counters were unreachable), asks for a top-up to ``LEAD_INTERVALS``
times the smoothed demand per interval and resizes blocks of slots; :meth:`LeaseBook.applied`
books the grants and the snapshot. Only scopes touched since, or still holding something, are
visited: a sync costs what is active, not what was ever seen.

Pure: the caller passes time (``now_s`` monotonic for buckets, ``wall_s`` for the UTC day) and
the shared side's answers; cells are integers (requests, tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from seawall.algorithms.gcra import gcra_take
from seawall.algorithms.quota import DAY_S, Dimension, QuotaDecision, QuotaScope, decision_from

__all__ = ["LEAD_INTERVALS", "Lease", "LeaseBook", "ScopeState", "SyncOp"]

REQUESTS, TOKENS, DAY = 0, 1, 2
_DIMS = (Dimension.REQUESTS, Dimension.TOKENS, Dimension.DAILY_TOKENS)
LEAD_INTERVALS = 4.0  # a top-up covers this many intervals of the last demand
DEMAND_DECAY = 0.5  # per interval: an idle scope's lease is given back within a few intervals


@dataclass(frozen=True, slots=True)
class ScopeState:
    """One scope as the shared side reports it after a call: TATs on the shared clock (``at_s``),
    the UTC day and its tokens used, the cells just granted (requests, tokens, tokens today), this
    replica's block of concurrency slots (-1: not asked about) and the requests in flight."""

    requests_tat: float
    tokens_tat: float
    day: int
    day_used: int
    granted: tuple[int, int, int] = (0, 0, 0)
    slots: int = -1
    in_flight: int = 0


@dataclass(slots=True)
class Lease:
    """This replica's share of one scope's shared counters, and the last snapshot of them."""

    scope: QuotaScope
    held: list[int] = field(default_factory=lambda: [0, 0, 0])  # charged already, unspent (< 0: a debt)
    spent: list[int] = field(default_factory=lambda: [0, 0, 0])  # this interval's demand so far
    demand: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # smoothed, per interval
    tats: list[float | None] = field(default_factory=lambda: [None, None])  # snapshot, monotonic frame
    day: int = -1  # UTC day of held[DAY] and day_used
    day_used: int | None = None  # snapshot: tokens used today by every replica (leases included)
    seen_at_s: float = -math.inf  # shared clock of the snapshot: a late reply never overwrites a newer one
    # Concurrency: a block of slots counted as in flight on the shared side, used here.
    slots: int = 0  # the block's size as the shared side last reported it
    slots_at_s: float = -math.inf
    busy: int = 0  # slots of the block in use
    own: int = 0  # requests in flight from here holding a slot of their own (asked about one by one)
    peak: int = 0  # most in flight from here at once this interval (the block's demand)
    slot_demand: float = 0.0
    shrinking: int | None = None  # a sync in flight shrinks the block to this: use no more meanwhile
    syncing: bool = False  # a sync resizing the block is in flight
    tight: bool = False  # too few free slots for any block to grow: releases go back at once

    def roll(self, day: int) -> None:
        """A new UTC day: yesterday's lease and debt are void, today's usage is unknown."""
        self.day, self.day_used, self.held[DAY] = day, None, 0

    def limit(self, dim: int) -> int | None:
        lim = self.scope.limits
        return lim.requests_per_min if dim == REQUESTS else lim.tokens_per_min if dim == TOKENS else lim.tokens_per_day


@dataclass(frozen=True, slots=True)
class SyncOp:
    """What one sync does to one scope: ``adjust`` cells added unconditionally (give-backs < 0,
    debts > 0; day tokens count for UTC ``day`` only), ``want`` cells asked for on top, and this
    replica's block of concurrency slots resized to ``slots`` (-1: left alone; kept for another
    ``BLOCK_TTL_S``), never below the ``floor`` in use."""

    scope: QuotaScope
    adjust: tuple[int, int, int]
    day: int
    want: tuple[int, int, int]
    slots: int = -1
    floor: int = 0

    @property
    def empty(self) -> bool:
        return not any(self.adjust) and not any(self.want) and self.slots < 0


class LeaseBook:
    """Leases and snapshots per scope (by name), bounded to ``max_scopes`` (idle ones evicted)."""

    __slots__ = ("_active", "_leases", "max_scopes")

    def __init__(self, max_scopes: int = 100_000) -> None:
        self.max_scopes = max_scopes
        self._leases: dict[str, Lease] = {}
        self._active: set[str] = set()  # touched since the last plan, or still holding something

    def __len__(self) -> int:
        return len(self._leases)

    def get(self, scope: QuotaScope) -> Lease | None:
        return self._leases.get(scope.name)

    def _lease(self, scope: QuotaScope) -> Lease:
        lease = self._leases.get(scope.name)
        if lease is None or (lease.scope.limits is not scope.limits and lease.scope.limits != scope.limits):
            # New, or its limits changed (config reload, another tier): start over; cells held under
            # the old limits stay charged on the shared side until they refill (the strict side).
            if len(self._leases) >= self.max_scopes:
                self._evict()
            lease = self._leases[scope.name] = Lease(scope)
        return lease

    def _evict(self) -> None:
        idle = [n for n in self._leases if n not in self._active]
        for name in idle[: max(1, len(idle) // 2)] if idle else list(self._leases)[: len(self._leases) // 2]:
            del self._leases[name]

    # -- the hot path --------------------------------------------------------------------------
    def decide(self, scopes: Sequence[QuotaScope], tokens: int, now_s: float, wall_s: float) -> QuotaDecision | None:
        """Allowed from the leases (charged here), refused from the snapshots (a known exhausted
        window), or ``None``: ask the shared counters."""
        day = int(wall_s // DAY_S)
        leases: list[Lease] = []
        worst: tuple[float, Dimension, int] | None = None
        ask = False
        for i, scope in enumerate(scopes):
            lim = scope.limits
            lease = self._lease(scope)
            self._active.add(scope.name)
            leases.append(lease)
            if lease.day != day:
                lease.roll(day)
            if lim.concurrent_requests is not None:
                # Nothing says when another replica's requests end: a full count is asked about, not
                # refused here.
                usable = lease.slots if lease.shrinking is None else min(lease.slots, lease.shrinking)
                ask = ask or lease.busy >= usable
            held = lease.held
            for dim, limit in ((REQUESTS, lim.requests_per_min), (TOKENS, lim.tokens_per_min),
                               (DAY, lim.tokens_per_day)):
                if limit is None:
                    continue
                cost = 1 if dim == REQUESTS else tokens
                if held[dim] >= cost:
                    continue
                wait = 0.0
                if cost > limit:
                    wait = math.inf
                elif dim == DAY:
                    if lease.day_used is not None and lease.day_used - held[DAY] + cost > limit:
                        wait = (day + 1) * DAY_S - wall_s
                else:
                    tat = lease.tats[dim]
                    if tat is not None:
                        interval = 60.0 / limit
                        wait = gcra_take(tat - held[dim] * interval, now_s, interval, limit, cost)[1]
                if wait > 0.0:
                    if worst is None or wait > worst[0]:
                        worst = (wait, _DIMS[dim], i)
                else:
                    ask = True
        if worst is not None:
            return self._headers(scopes, leases, now_s, worst)
        if ask:
            return None
        for lease in leases:
            lim = lease.scope.limits
            if lim.requests_per_min is not None:
                lease.held[REQUESTS] -= 1
                lease.spent[REQUESTS] += 1
            if lim.tokens_per_min is not None:
                lease.held[TOKENS] -= tokens
                lease.spent[TOKENS] += tokens
            if lim.tokens_per_day is not None:
                lease.held[DAY] -= tokens
                lease.spent[DAY] += tokens
            if lim.concurrent_requests is not None:
                lease.busy += 1
                lease.peak = max(lease.peak, lease.busy + lease.own)
        return self._headers(scopes, leases, now_s, None)

    def release(self, scopes: Sequence[QuotaScope], own: bool = False) -> list[QuotaScope]:
        """A request ended: a slot of the block is free again here (``own``: the request held a slot of
        its own on the shared side, released there). Returns the scopes near their concurrency limit
        whose block should shrink now (:meth:`shrink`), so that the caller's next request, through
        any replica, finds the slot free."""
        tight = []
        for scope in scopes:
            if scope.limits.concurrent_requests is not None:
                lease = self._lease(scope)
                if own:
                    lease.own = max(0, lease.own - 1)
                    continue
                lease.busy = max(0, lease.busy - 1)
                if lease.tight and not lease.syncing and lease.slots > lease.busy:
                    tight.append(scope)
        return tight

    def shrink(self, scopes: Sequence[QuotaScope], wall_s: float) -> list[SyncOp]:
        """Blocks of slots cut down to what is in use."""
        ops = []
        for scope in scopes:
            lease = self._lease(scope)
            lease.shrinking, lease.syncing = lease.busy, True
            ops.append(SyncOp(scope, (0, 0, 0), int(wall_s // DAY_S), (0, 0, 0), lease.busy, lease.busy))
        return ops

    @staticmethod
    def _headers(scopes: Sequence[QuotaScope], leases: list[Lease], now_s: float,
                 refused: tuple[float, Dimension, int] | None) -> QuotaDecision:
        # What this replica may still spend: the snapshot's room plus its own unspent lease.
        rpm: list[float | None] = []
        tpm: list[float | None] = []
        for lease in leases:
            lim = lease.scope.limits
            for out, dim, limit in ((rpm, REQUESTS, lim.requests_per_min), (tpm, TOKENS, lim.tokens_per_min)):
                tat = lease.tats[dim]
                out.append(None if limit is None else (now_s if tat is None else tat) - lease.held[dim] * 60.0 / limit)
        if refused is None:
            return decision_from(scopes, rpm, tpm, now_s)
        return decision_from(scopes, rpm, tpm, now_s, refused[1], refused[2], refused[0])

    # -- answers from the shared counters ------------------------------------------------------
    def wants(self, scopes: Sequence[QuotaScope], tokens: int) -> list[tuple[int, int, int, int, int]]:
        """Top-ups to ask for along with a request decided on the shared counters: enough for
        ``LEAD_INTERVALS`` times this interval's demand so far (it grows with every such request: a
        burst gets its lease), and a bigger block of concurrency slots (size, slots in use; -1:
        none) unless near the limit."""
        out = []
        for scope in scopes:
            lease = self._lease(scope)
            want = [0, 0, 0]
            for dim in (REQUESTS, TOKENS, DAY):
                if lease.limit(dim) is not None:
                    cost = 1 if dim == REQUESTS else tokens
                    target = math.ceil(LEAD_INTERVALS * max(lease.demand[dim], lease.spent[dim] + cost))
                    want[dim] = max(0, target - max(lease.held[dim], 0))
            slots = -1
            if scope.limits.concurrent_requests is not None and not lease.tight:
                target = math.ceil(LEAD_INTERVALS * max(lease.slot_demand, lease.peak + 1))
                slots = target if target > lease.slots else -1
            out.append((want[0], want[1], want[2], slots, lease.busy))
        return out

    def answered(self, scopes: Sequence[QuotaScope], states: Sequence[ScopeState], at_s: float, now_s: float,
                 allowed: bool, tokens: int, replicas: int = 1) -> None:
        """A request was decided on the shared counters (``at_s`` their clock, ``now_s`` ours)."""
        for scope, state in zip(scopes, states, strict=True):
            lease = self._lease(scope)
            self._active.add(scope.name)
            self._snapshot(lease, state, at_s, now_s, replicas)
            if allowed:
                lim = scope.limits
                if lim.concurrent_requests is not None:
                    lease.own += 1
                    lease.peak = max(lease.peak, lease.busy + lease.own)
                lease.spent[REQUESTS] += lim.requests_per_min is not None
                if lim.tokens_per_min is not None:
                    lease.spent[TOKENS] += tokens
                if lim.tokens_per_day is not None:
                    lease.spent[DAY] += tokens

    def _snapshot(self, lease: Lease, state: ScopeState, at_s: float, now_s: float, replicas: int) -> None:
        conc = lease.scope.limits.concurrent_requests
        if conc is not None:
            if state.slots >= 0 and at_s >= lease.slots_at_s:
                lease.slots, lease.slots_at_s = state.slots, at_s
            lease.tight = conc - state.in_flight < 2 * max(1, replicas)  # no block can grow (lease_cells)
        g = state.granted
        lease.held[REQUESTS] += g[0]
        lease.held[TOKENS] += g[1]
        if state.day != lease.day:
            lease.roll(state.day)
        lease.held[DAY] += g[2]
        if at_s >= lease.seen_at_s:
            lease.seen_at_s = at_s
            lease.tats[REQUESTS] = now_s + (state.requests_tat - at_s)
            lease.tats[TOKENS] = now_s + (state.tokens_tat - at_s)
            lease.day_used = state.day_used

    def settle(self, scopes: Sequence[QuotaScope], tokens_delta: int, acquired_wall_s: float) -> None:
        """Reconcile a request's token estimate (``actual - estimated``): a refund joins the lease
        (spent here or given back at the next sync), a debt is charged at the next sync."""
        if tokens_delta == 0:
            return
        day = int(acquired_wall_s // DAY_S)
        for scope in scopes:
            lim = scope.limits
            if lim.tokens_per_min is None and lim.tokens_per_day is None:
                continue
            lease = self._lease(scope)
            self._active.add(scope.name)
            if lim.tokens_per_min is not None:
                lease.held[TOKENS] -= tokens_delta
            if lim.tokens_per_day is not None:
                if lease.day < day:
                    lease.roll(day)
                if lease.day == day:
                    lease.held[DAY] -= tokens_delta

    # -- sync ----------------------------------------------------------------------------------
    def plan(self, wall_s: float, *, lease: bool = True) -> list[SyncOp]:
        """One sync's work for every scope active since the last one, or holding cells or debts.
        Give-backs and debts leave the lease at once (so they are neither spent nor sent twice).
        ``lease=False``: hold nothing (give everything back, ask for nothing; shutting down, or
        leases turned off), still charging debts and giving back refunds."""
        day = int(wall_s // DAY_S)
        ops = []
        active, self._active = self._active, set()
        for name in active:
            entry = self._leases.get(name)
            if entry is None:
                continue
            if entry.day != day:
                entry.roll(day)
            adjust, want = [0, 0, 0], [0, 0, 0]
            for dim in (REQUESTS, TOKENS, DAY):
                if entry.limit(dim) is None:
                    continue
                demand = max(float(entry.spent[dim]), entry.demand[dim] * DEMAND_DECAY)
                entry.demand[dim] = demand if demand >= 0.5 else 0.0
                entry.spent[dim] = 0
                target = math.ceil(LEAD_INTERVALS * entry.demand[dim]) if lease else 0
                held = entry.held[dim]
                if held < 0 or held > 2 * target:  # a debt, or idle cells: settle up to the target
                    adjust[dim] = -(held - min(max(held, 0), target))
                    entry.held[dim] = held + adjust[dim]
                want[dim] = max(0, target - entry.held[dim])
            slots = -1
            if entry.scope.limits.concurrent_requests is not None and not entry.syncing:
                peak, entry.peak = max(entry.peak, entry.busy + entry.own), entry.busy + entry.own
                demand = max(float(peak), entry.slot_demand * DEMAND_DECAY)
                entry.slot_demand = demand if demand >= 0.5 else 0.0
                target = entry.busy
                if lease and not entry.tight:
                    target = max(target, math.ceil(LEAD_INTERVALS * entry.slot_demand))
                if target != entry.slots or entry.slots > 0:  # resized, or kept alive
                    slots = target
                    if target < entry.slots:
                        entry.shrinking = target
            op = SyncOp(entry.scope, (adjust[0], adjust[1], adjust[2]), day, (want[0], want[1], want[2]), slots,
                        entry.busy)
            if not op.empty:
                entry.syncing = slots >= 0
                ops.append(op)
            if any(entry.held) or any(entry.demand) or entry.slots or entry.busy or entry.own or entry.slot_demand:
                self._active.add(name)  # still something to give back, refresh or decay next time
        return ops

    def applied(self, op: SyncOp, state: ScopeState, at_s: float, now_s: float, replicas: int = 1) -> None:
        lease = self._leases.get(op.scope.name)
        if lease is not None and lease.scope.limits == op.scope.limits:
            if op.slots >= 0:
                lease.shrinking, lease.syncing = None, False
            self._snapshot(lease, state, at_s, now_s, replicas)

    def failed(self, op: SyncOp) -> None:
        """The sync may or may not have happened: keep the debts (charged twice at worst), forget
        the give-backs and grants (they stay charged at worst): the strict side either way."""
        lease = self._leases.get(op.scope.name)
        if lease is None:
            return
        self._active.add(op.scope.name)
        if op.slots >= 0:  # a block may have shrunk, not grown
            lease.slots = min(lease.slots, op.slots)
            lease.shrinking, lease.syncing = None, False
        for dim in (REQUESTS, TOKENS, DAY):
            if op.adjust[dim] > 0 and (dim != DAY or lease.day == op.day):
                lease.held[dim] -= op.adjust[dim]

    # -- while the shared counters are unreachable ---------------------------------------------
    def drop_leases(self) -> None:
        """Unspent cells are not spent during an outage (they stay charged: the strict side);
        debts are kept and charged when the shared counters are back."""
        for lease in self._leases.values():
            lease.held = [min(h, 0) for h in lease.held]
            lease.slots, lease.shrinking = 0, None  # the block expires on the shared side by itself

    def charge_day(self, scopes: Sequence[QuotaScope], tokens_delta: int, acquired_wall_s: float,
                   wall_s: float) -> None:
        """Tokens spent today while deciding without the shared counters: a debt for when they
        return, so an outage does not hand out a day's budget twice."""
        day = int(acquired_wall_s // DAY_S)
        if tokens_delta == 0 or day != int(wall_s // DAY_S):
            return
        for scope in scopes:
            if scope.limits.tokens_per_day is not None:
                lease = self._lease(scope)
                if lease.day != day:
                    lease.roll(day)
                lease.held[DAY] -= tokens_delta
                self._active.add(scope.name)

    def seed(self, scope: QuotaScope, replicas: int, now_s: float, wall_s: float
             ) -> tuple[float | None, float | None, int, int | None]:
        """Where the fail-static counters (at 1/N of each limit) start for ``scope``: this replica's
        share of the last snapshot. A bucket's TAT is kept as is (the same seconds ahead of now mean
        the same fraction used at 1/N of the rate), tokens used today are divided by N (rounded up),
        plus this replica's own day debts. ``None``: never seen."""
        lease = self._leases.get(scope.name)
        day = int(wall_s // DAY_S)
        if lease is None:
            return None, None, day, None
        used = None
        if lease.day == day and lease.day_used is not None:
            used = math.ceil(lease.day_used / max(1, replicas)) + max(0, -lease.held[DAY])
        return lease.tats[REQUESTS], lease.tats[TOKENS], day, used

