"""Adaptive limits against a simulated upstream they know nothing about.

The upstream is a deterministic discrete-event model: ``capacity`` work units in service at once,
each request served in ``service_s`` (±10% seeded jitter); work beyond capacity waits FIFO, so
latency grows with load as ``service_s * inflight / capacity``. With ``max_queue`` set, an arrival
that would queue beyond it is refused at once (an upstream 429). The client is closed-loop: it
keeps exactly the current limit in flight, so the algorithm alone decides the load.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from seawall.algorithms.limit import AimdLimit, Gradient2Limit, LimitAlgorithm, VegasLimit

SERVICE_S = 0.1
CAPACITY = 60.0
REFUSAL_RTT_S = 0.01  # a 429 comes back after one network round trip


@dataclass
class Trace:
    capacity: float
    times_s: list[float]
    limits: list[float]
    probing: list[bool]

    def settled_after(self, band: float = 0.25) -> int:
        """Samples into the phase after which every (non-probe) limit stays within ±band of capacity."""
        lo, hi = (1 - band) * self.capacity, (1 + band) * self.capacity
        settled = 0
        for index, (limit, probing) in enumerate(zip(self.limits, self.probing, strict=True)):
            if not probing and not lo <= limit <= hi:
                settled = index + 1
        assert len(self.limits) - settled >= 1000, "did not stay settled for 1000 samples"
        return settled


class Upstream:
    def __init__(self, capacity: float, service_s: float, max_queue: float | None, seed: int) -> None:
        self.capacity = capacity
        self.service_s = service_s
        self.max_queue = max_queue
        self.busy = 0.0
        self.waiting: deque[tuple[float, float, float]] = deque()  # (started_s, units, inflight)
        self.waiting_units = 0.0
        self._rng = random.Random(seed)

    def service_time_s(self) -> float:
        return self.service_s * (0.9 + 0.2 * self._rng.random())


def simulate(
    algo: LimitAlgorithm,
    phases: list[tuple[float, float]],
    *,
    units: float = 1.0,
    max_queue: float | None = None,
    service_s: Callable[[int], float] = lambda phase: SERVICE_S,
    seed: int = 7,
) -> list[Trace]:
    """Drive ``algo`` through ``phases`` of (capacity, duration_s); one Trace per phase."""
    upstream = Upstream(phases[0][0], service_s(0), max_queue, seed)
    events: list[tuple[float, int, bool, float, float]] = []  # (done_s, seq, dropped, started_s, inflight)
    seq = 0
    inflight = 0.0

    def start(now_s: float, started_s: float, inflight_at: float) -> None:
        nonlocal seq
        upstream.busy += units
        seq += 1
        heapq.heappush(events, (now_s + upstream.service_time_s(), seq, False, started_s, inflight_at))

    def send(now_s: float) -> None:
        nonlocal seq, inflight
        inflight += units
        must_wait = bool(upstream.waiting) or upstream.busy + units > upstream.capacity
        if not must_wait:
            start(now_s, now_s, inflight)
        elif upstream.max_queue is not None and upstream.waiting_units + units > upstream.max_queue:
            seq += 1
            heapq.heappush(events, (now_s + REFUSAL_RTT_S, seq, True, now_s, inflight))
        else:
            upstream.waiting.append((now_s, units, inflight))
            upstream.waiting_units += units

    def fill(now_s: float) -> None:
        while inflight + units <= algo.limit or inflight == 0:
            send(now_s)

    traces = []
    now_s = 0.0
    fill(now_s)
    for index, (capacity, duration_s) in enumerate(phases):
        upstream.capacity = capacity
        upstream.service_s = service_s(index)
        trace = Trace(capacity, [], [], [])
        end_s = now_s + duration_s
        while now_s < end_s:
            now_s, _, dropped, started_s, inflight_at = heapq.heappop(events)
            inflight -= units
            if not dropped:
                upstream.busy -= units
                while upstream.waiting and upstream.busy + units <= upstream.capacity:
                    queued_s, _, queued_inflight = upstream.waiting.popleft()
                    upstream.waiting_units -= units
                    start(now_s, queued_s, queued_inflight)
            algo.on_sample(now_s, now_s - started_s, inflight_at, dropped)
            trace.times_s.append(now_s)
            trace.limits.append(algo.limit)
            trace.probing.append(bool(getattr(algo, "probing", False)))
            fill(now_s)
        traces.append(trace)
    return traces


ALGORITHMS: dict[str, Callable[[float], LimitAlgorithm]] = {
    "gradient2": lambda scale: Gradient2Limit(initial_limit=20 * scale, min_limit=scale),
    "vegas": lambda scale: VegasLimit(initial_limit=20 * scale, min_limit=scale),
    # AIMD reads latency only through its timeout: 1.15x the no-load latency here.
    "aimd": lambda scale: AimdLimit(
        initial_limit=20 * scale, min_limit=scale, increase_units=scale, timeout_s=1.15 * SERVICE_S
    ),
}


PHASES = [(CAPACITY, 12.0), (CAPACITY / 2, 15.0), (CAPACITY, 12.0)]  # (capacity, seconds)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_finds_capacity_then_follows_a_drop_and_a_rise(name: str) -> None:
    first, halved, restored = simulate(ALGORITHMS[name](1.0), PHASES)
    # From 20 to 40 at ~400 samples/s; the slowest, Gradient2, grows ~1% per 50 ms window.
    assert first.settled_after() <= 2000
    # Shrinking is fast. Gradient2 first reads capacity halved under the same load as a slower
    # upstream (it cannot tell them apart without less load) and holds; a probe then decides.
    assert halved.settled_after() <= (2000 if name == "gradient2" else 1000)
    assert restored.settled_after() <= 2000


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_work_units_scale_free(name: str) -> None:
    """Requests of 25 units (think tokens) against 1000 units of capacity behave like 40 requests."""
    (trace,) = simulate(ALGORITHMS[name](25.0), [(CAPACITY * 25, 12.0)], units=25.0)
    assert trace.settled_after() <= 2000


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_follows_an_upstream_that_only_answers_429(name: str) -> None:
    """No queue at all: latency never moves, refusals are the only signal."""
    first, halved, restored = simulate(ALGORITHMS[name](1.0), PHASES, max_queue=0.0)
    assert first.settled_after() <= 2000
    assert halved.settled_after() <= 1500
    assert restored.settled_after() <= 2000


@pytest.mark.parametrize("name", ["gradient2", "vegas"])
def test_a_slower_upstream_is_not_mistaken_for_a_queue(name: str) -> None:
    """Every request now takes twice as long at any load (a bigger model): capacity in concurrency
    is unchanged, so the limit must not sink; the baseline probe re-learns the no-load latency."""
    phases = [(CAPACITY, 12.0), (CAPACITY, 25.0)]
    _, slower = simulate(ALGORITHMS[name](1.0), phases, service_s=lambda phase: SERVICE_S * (1 + phase))
    assert slower.settled_after() <= 2000


def warmed_up(algo: LimitAlgorithm, rtt_s: float = 0.1, samples: int = 200) -> float:
    now_s = 0.0
    for _ in range(samples):
        now_s += 0.01
        algo.on_sample(now_s, rtt_s, algo.limit, False)
    return now_s


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_a_burst_of_drops_costs_one_cut(name: str) -> None:
    algo = ALGORITHMS[name](1.0)
    now_s = warmed_up(algo)
    before = algo.limit
    for i in range(1000):  # a thousand 429s within 50 ms
        algo.on_sample(now_s + i * 0.00005, 0.001, before, True)
    assert algo.limit == pytest.approx(before * 0.9)
    # A drop from a request that started before the cut is old news, however late it arrives.
    algo.on_sample(now_s + 1.0, 1.5, before, True)
    assert algo.limit == pytest.approx(before * 0.9)
    # A fresh one, a round trip later, cuts again: sustained refusals are not ignored.
    algo.on_sample(now_s + 1.0, 0.01, before, True)
    assert algo.limit == pytest.approx(before * 0.81)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_app_limited_traffic_does_not_grow_the_limit(name: str) -> None:
    algo = ALGORITHMS[name](1.0)
    before = algo.limit
    now_s = 0.0
    for _ in range(2000):
        now_s += 0.01
        algo.on_sample(now_s, 0.1, 3.0, False)  # 3 in flight against a limit of 20
    assert algo.limit == before


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_limit_stays_within_bounds(name: str) -> None:
    algo = {
        "gradient2": Gradient2Limit(initial_limit=5, min_limit=4, max_limit=6),
        "vegas": VegasLimit(initial_limit=5, min_limit=4, max_limit=6),
        "aimd": AimdLimit(initial_limit=5, min_limit=4, max_limit=6),
    }[name]
    now_s = 0.0
    for i in range(3000):
        now_s += 0.01
        algo.on_sample(now_s, 0.1, algo.limit, i % 500 > 450)
        assert 4 * 0.5 <= algo.limit <= 6  # a Vegas/Gradient2 probe may halve it briefly
    assert 4 <= algo.limit <= 6


def test_window_aggregates_noise() -> None:
    """One slow outlier in a window of ten does not move Gradient2 by itself."""
    algo = Gradient2Limit(window_samples=10)
    now_s = warmed_up(algo)
    before = algo.limit
    for i in range(9):
        algo.on_sample(now_s + 0.01 * (i + 1), 0.1, algo.limit, False)
    assert algo.limit == before  # the window is not closed yet


def test_broken_rtts_are_ignored() -> None:
    algo = VegasLimit()
    now_s = warmed_up(algo)
    before = algo.limit
    for bad in (0.0, -1.0, math.nan):
        algo.on_sample(now_s, bad, algo.limit, False)
    assert algo.limit == before


def test_aimd_timeout_counts_as_a_drop() -> None:
    algo = AimdLimit(initial_limit=10, timeout_s=1.0)
    algo.on_sample(5.0, 1.5, 10, False)
    assert algo.limit == pytest.approx(9.0)


def test_invalid_parameters_rejected() -> None:
    with pytest.raises(ValueError):
        Gradient2Limit(min_limit=10, max_limit=5)
    with pytest.raises(ValueError):
        Gradient2Limit(tolerance=0.9)
    with pytest.raises(ValueError):
        VegasLimit(alpha_ratio=0.2, beta_ratio=0.1)
    with pytest.raises(ValueError):
        AimdLimit(backoff_ratio=1.0)
    with pytest.raises(ValueError):
        AimdLimit(window_samples=0)


def _windows_until(algo: Gradient2Limit, rtt_s: float, done, start_s: float = 0.0) -> tuple[int | None, float]:
    """Feed windows of ten requests of 1,200 units (0.5 s apart, the limit fully used) until ``done(limit)``.

    ``rtt_s`` is a latency per token here: each request was admitted 0.4 s before it ended."""
    now_s = start_s
    for window in range(1, 2000):
        for _ in range(10):
            now_s += 0.5
            algo.on_sample(now_s, rtt_s, algo.limit, False, 1200.0, now_s - 0.4)
        if done(algo.limit):
            return window, now_s
    return None, now_s


def test_gradient2_min_queue_regrows_a_small_limit_in_a_few_windows() -> None:
    """One replica of many: a 429 cut its limit to about one request (1,500 units) and it closes a
    window every few seconds. The proportional term alone (1% a window) needs ~160 windows to get
    back to five requests; floored at three requests' worth, a handful."""
    def make(requests: float) -> Gradient2Limit:
        return Gradient2Limit(initial_limit=1500, min_limit=256, max_limit=1e7, min_queue_requests=requests,
                              probe_interval=0)

    slow, _ = _windows_until(make(0.0), 1.0, lambda limit: limit >= 7500)
    fast, _ = _windows_until(make(3.0), 1.0, lambda limit: limit >= 7500)
    assert slow is not None and slow > 150
    assert fast is not None and fast <= 10


def test_gradient2_min_queue_is_the_floor_of_latency_cuts_but_not_of_drops() -> None:
    # A latency that triples whatever the load is a slower upstream, not a queue, to the slowdown
    # probe (tested below); here the floor's arithmetic alone.
    algo = Gradient2Limit(initial_limit=65536, min_limit=256, max_limit=1e7, min_queue_requests=3,
                          probe_interval=0, slowdown_probe=False)
    floor = 2 * 3 * 1200  # twice three requests of 1,200 units
    _, now_s = _windows_until(algo, 1.0, lambda limit: limit > 70000)  # learn the baseline (1 s) as it grows
    settled, now_s = _windows_until(algo, 3.0, lambda limit: limit < floor * 1.01, now_s)  # a queue: 3x latency
    assert settled is not None
    _, now_s = _windows_until(algo, 3.0, lambda limit: limit < floor * 0.99, now_s)
    assert algo.limit >= floor * 0.99  # latency alone holds it at twice the floor
    for _ in range(120):  # upstream 429s, one a round trip: each cuts, the floor does not hold them
        now_s += 5.0
        algo.on_sample(now_s, 0.1, 1500, True)
    assert algo.limit < 1500
    with pytest.raises(ValueError):
        Gradient2Limit(min_queue_requests=-1)


@pytest.mark.parametrize("max_queue", [None, 0.0], ids=["queueing", "refusing"])
def test_latency_tripling_midway_relearns_the_baseline_without_collapsing(max_queue: float | None) -> None:
    """The collapse case: every request takes three times as long from one moment on (a slowed
    deployment), at the same capacity in concurrency. The limit must not fall below half of that
    knee (outside the probe that checks the new baseline, which lowers it by design), and settles
    back at the knee."""
    algo = ALGORITHMS["gradient2"](1.0)
    _, slower = simulate(algo, [(CAPACITY, 12.0), (CAPACITY, 40.0)], max_queue=max_queue,
                         service_s=lambda phase: SERVICE_S * (1 + 2 * phase))
    outside_probes = [limit for limit, probing in zip(slower.limits, slower.probing, strict=True) if not probing]
    assert min(outside_probes) >= 0.5 * CAPACITY
    assert slower.settled_after() <= 2000
    assert algo.long_rtt_s > 2.0 * SERVICE_S  # the baseline followed the upstream


def test_a_probe_ignores_requests_admitted_before_it_when_latency_is_per_token() -> None:
    """With seconds per token as the latency, ``now - rtt`` is not when a request started: the
    admission time must come from the caller, or requests queued at the old limit join the probe."""
    algo = Gradient2Limit(initial_limit=100, min_limit=1, probe_interval=1, window_samples=10, window_s=0.0)
    now_s = 0.0
    for _ in range(10):  # one window closes: the routine probe starts
        now_s += 0.1
        algo.on_sample(now_s, 0.03, 100, False, 1.0, now_s - 5.0)
    assert algo.probing
    probe_start_s = now_s
    for _ in range(200):  # long requests admitted before the probe (queued at the old limit): ignored
        now_s += 0.1
        algo.on_sample(now_s, 0.09, 100, False, 1.0, probe_start_s - 1.0)
    assert algo.probing
    for _ in range(30):  # admitted under the lowered limit: these measure the baseline
        now_s += 0.1
        algo.on_sample(now_s, 0.03, 50, False, 1.0, now_s - 0.5)
    assert not algo.probing and algo.long_rtt_s == pytest.approx(0.03)


def test_after_a_drop_cut_calm_windows_climb_back_within_a_dozen() -> None:
    algo = Gradient2Limit(initial_limit=10_000, min_limit=1, probe_interval=0)
    now_s = warmed_up(algo, rtt_s=0.1, samples=400)
    before = algo.limit
    algo.on_sample(now_s, 0.001, before, True)  # one 429, the limit fully in use
    assert algo.limit == pytest.approx(0.9 * before)
    windows = 0
    while algo.limit < 0.99 * before and windows < 50:
        windows += 1
        for _ in range(10):
            now_s += 0.01
            algo.on_sample(now_s, 0.1, algo.limit, False)
    assert windows <= 12  # a proportional step of ~1% a window alone would need ~50


def test_a_drop_in_a_dip_of_load_cuts_from_the_recent_peak() -> None:
    """Behind an upstream shared with other replicas, the 429 may come while this replica's own load
    has dipped: the cut starts from the most it ran lately, not from the dip."""
    algo = Gradient2Limit(initial_limit=200, min_limit=1, max_limit=200, probe_interval=0)
    now_s = warmed_up(algo, rtt_s=0.1, samples=200)  # windows with 200 in flight
    algo.on_sample(now_s + 0.01, 0.001, 20, True)  # the 429 arrives with 20 in flight here
    assert algo.limit == pytest.approx(0.9 * 200)
    cold = Gradient2Limit(initial_limit=65536, min_limit=1, probe_interval=0)
    cold.on_sample(0.01, 0.001, 20, True)  # a cold start far above what the upstream takes
    assert cold.limit == pytest.approx(18)
