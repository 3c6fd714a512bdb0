"""Adaptive concurrency limits: find how much work an unknown upstream can take, and follow it.

Why: a fixed concurrency cap is either too low (wasted capacity) or too high (the upstream queues,
latency explodes, every tier times out together). These algorithms learn the limit from what the
upstream does — latency rising above its no-load value, 429s — after Netflix concurrency-limits.

Units. The limit and ``inflight`` are in *work units*: the caller decides what a request weighs
(seawall counts estimated tokens; counting requests is weight 1). The algorithms only see numbers,
so ``min_limit``, ``max_limit``, ``initial_limit`` and ``AimdLimit.increase_units`` must be in the
caller's unit; the defaults suit counting requests. Every other knob is a unit-free ratio. ``rtt_s``
should be a latency that does not scale with the request's own size (time to first token, or
seconds per unit), or size noise will read as queueing.

Samples. ``on_sample(now_s, rtt_s, inflight, dropped, units, started_s)`` is called once per finished request:
``now_s`` monotonic seconds at completion, ``rtt_s`` its latency, ``inflight`` the work units in
flight when it was admitted (itself included), ``dropped`` True for an upstream 429 or an overload
timeout, ``units`` the request's own weight (default 1), ``started_s`` when it was admitted (default
``now_s - rtt_s``; pass it whenever ``rtt_s`` is not the request's duration, as with seconds
per token, or probes and the once-per-round-trip cuts misjudge which requests they cover).
Latency samples are aggregated over a window that closes once it holds ``window_samples``
(default 10) successful samples *and* spans ``window_s`` (default 0.05 s): ten samples average
out per-request noise, and 50 ms caps the update rate at 20/s however busy the upstream. Dropped
samples are kept out of the latency average (a fast 429 would look like an idle upstream).

Drops. Any drop cuts the limit at once by ``backoff_ratio`` (default 0.9), but at most once per
window of ``max(window_s, smoothed rtt)`` and only for requests that *started after* the previous
cut — TCP's once-per-round-trip rule — so a burst of 429s from work already in flight costs one cut,
not a collapse to ``min_limit``. A window that saw a drop never grows the limit.

Recovery. A drop from an upstream shared with other gateways says "the total is full", not "your
share is this": the cut is right for the moment, and wrong for long. So the limit before the last
cut is remembered (as CUBIC remembers ``W_max``), and each later window that is calm (no drop, no
queueing read, the limit in use) climbs a quarter of the way back to it, on top of the
algorithm's own growth: a cut is undone within about ten windows unless the upstream refuses again,
which cuts again and lowers the mark. An additive step of a request or two per window would take
minutes when requests take seconds (windows are slow).

App-limited. When the busiest sample of a window had less than half the limit in flight, the
limit is not binding and latency says nothing about it: the limit holds (drops still cut it).

Baseline probes (Gradient2 and Vegas). Latency-based limits compare against a no-load latency, and
a standing queue can only be told apart from a slower upstream by lowering the load and looking
(BBR's PROBE_RTT). So the limit drops to ``probe_ratio`` (default 0.5) of itself until
``3 * window_samples`` requests admitted under the lowered limit have finished; their mean latency
is the fresh baseline. A routine probe, every ``probe_interval`` windows (default 100), may only
*lower* the baseline (it undoes drift; if capacity fell below the lowered limit the probe still saw
a queue). A probe triggered because the limit has halved since the last one may also *raise* it:
halving the load should have drained any queue we caused, so latency that stays high means the
upstream itself got slower (a bigger model), and without this the limit would sink to the floor.
A probe costs about one round trip at half the limit; ``limit`` reports the lowered value and
``probing`` is True meanwhile. ``probe_interval=0`` disables probes.
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["AimdLimit", "Gradient2Limit", "LimitAlgorithm", "VegasLimit"]

_SRTT_GAIN = 0.125  # RFC 6298's smoothing gain for the rtt that paces drop cuts
_RECOVERY = 0.25  # per calm window, of the way back to the limit held before the last drop cut
_RAISE_BEFORE_PROBE = 2.0  # holds that double the baseline are checked by a probe
_CALM_MARGIN = 0.9  # "not more in flight" means at least 10% less than the calm level: in-flight wobbles
_CALM_DECAY = 0.99  # per window: the in-flight level known to run without queueing is forgotten slowly
_REPORT_FRESH_S = 5.0  # a queue report this recent speaks for the upstream; older, latency decides again
_BUDGET_GROWTH_S = 1.0  # while an upstream states its budget: one mean request's worth per this many seconds
_BUDGET_GROWTH_CAP_S = 5.0  # of one window's time counted for growth (a quiet spell proves nothing)
_PROBE_WINDOWS = 3  # a probe averages this many windows' worth of samples: the baseline is reused long


class LimitAlgorithm(Protocol):
    """What an admission policy needs: the current limit, and a way to feed it outcomes."""

    @property
    def limit(self) -> float:
        """The current limit in work units, within ``[min_limit, max_limit]``."""
        ...

    def on_sample(self, now_s: float, rtt_s: float, inflight: float, dropped: bool, units: float = 1.0,
                  started_s: float | None = None) -> float:
        """Record one finished request; return the (possibly new) limit."""
        ...

    def on_upstream_queue(self, now_s: float, inflight: float, waiting_units: float, hold_s: float = 0.0) -> float:
        """The upstream says ``waiting_units`` of the work in flight wait in its own queue."""
        ...

    def on_upstream_budget(self, now_s: float) -> None:
        """An upstream of the group stated its rate budget (rate-limit headers with a reset)."""
        ...


class _Window:
    __slots__ = ("count", "dropped", "first_started_s", "inflight_max", "inflight_sum", "rtt_sum_s", "start_s",
                 "units_sum")

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self.count = 0
        self.rtt_sum_s = 0.0
        self.units_sum = 0.0
        self.inflight_max = 0.0
        self.inflight_sum = 0.0
        self.first_started_s = math.inf  # when the earliest of its requests was admitted
        self.dropped = False

    @property
    def rtt_avg_s(self) -> float:
        return self.rtt_sum_s / self.count

    @property
    def inflight_avg(self) -> float:
        """The mean work in flight when the window's requests were admitted."""
        return self.inflight_sum / self.count

    @property
    def units_avg(self) -> float:
        """The mean weight of the window's requests."""
        return self.units_sum / self.count


class _WindowedLimit:
    """Bounds, windows, drop cuts and baseline probes, shared. Subclasses implement ``_update``
    (one closed window -> new limit) and ``_on_probe`` (a fresh no-load latency)."""

    __slots__ = (
        "_backoff_at_s",
        "_budget_s",
        "_last_inflight_max",
        "_limit",
        "_probe",
        "_probe_may_raise",
        "_probe_ref_limit",
        "_probe_started_s",
        "_probe_wanted",
        "_report_s",
        "_srtt_s",
        "_w_max",
        "_window",
        "_windows_since_probe",
        "backoff_ratio",
        "max_limit",
        "min_limit",
        "probe_interval",
        "probe_ratio",
        "window_s",
        "window_samples",
    )

    def __init__(
        self,
        initial_limit: float,
        min_limit: float,
        max_limit: float,
        backoff_ratio: float,
        window_s: float,
        window_samples: int,
        probe_interval: int = 0,
        probe_ratio: float = 0.5,
    ) -> None:
        if not 0 < min_limit <= max_limit:
            raise ValueError("need 0 < min_limit <= max_limit")
        if not 0.0 < backoff_ratio < 1.0:
            raise ValueError("backoff_ratio must be in (0, 1)")
        if window_s < 0 or window_samples < 1:
            raise ValueError("need window_s >= 0 and window_samples >= 1")
        if probe_interval < 0 or not 0.0 < probe_ratio < 1.0:
            raise ValueError("need probe_interval >= 0 and probe_ratio in (0, 1)")
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.backoff_ratio = backoff_ratio
        self.window_s = window_s
        self.window_samples = window_samples
        self.probe_interval = probe_interval
        self.probe_ratio = probe_ratio
        self._limit = self._clamp(initial_limit)
        self._window: _Window | None = None
        self._backoff_at_s = -math.inf
        self._probe_wanted = False  # set by _update: the baseline needs re-measuring now
        self._w_max = 0.0
        self._last_inflight_max = 0.0
        self._srtt_s = 0.0  # 0.0: no successful sample yet
        self._windows_since_probe = 0
        self._probe_started_s: float | None = None
        self._probe = _Window(0.0)
        self._probe_may_raise = False
        self._probe_ref_limit = self._limit  # highest limit since the baseline was last measured
        self._report_s = -math.inf  # the upstream's last word on its own queue (on_upstream_queue)
        self._budget_s = -math.inf  # the last rate budget an upstream stated (on_upstream_budget)

    @property
    def limit(self) -> float:
        if self._probe_started_s is not None:
            return max(self.min_limit, self._limit * self.probe_ratio)
        return self._limit

    @property
    def probing(self) -> bool:
        """True while the limit is lowered to re-measure the no-load latency."""
        return self._probe_started_s is not None

    def _clamp(self, value: float) -> float:
        return min(self.max_limit, max(self.min_limit, value))

    def _is_drop(self, rtt_s: float) -> bool:
        """Hook: a successful sample that still counts as a drop (AIMD's timeout)."""
        return False

    def _update(self, now_s: float, window: _Window) -> float:
        raise NotImplementedError

    def _on_probe(self, rtt_s: float, may_raise: bool) -> None:
        """Hook: ``rtt_s`` is the mean latency of requests admitted under the lowered limit.

        A routine probe may still see a queue (capacity fell below the lowered limit), so it may
        only lower the baseline; a probe that follows a halving of the limit may also raise it."""

    def on_sample(self, now_s: float, rtt_s: float, inflight: float, dropped: bool, units: float = 1.0,
                  started_s: float | None = None) -> float:
        if started_s is None:  # the caller's latency is the request's duration
            started_s = now_s - rtt_s if rtt_s > 0.0 else now_s
        window = self._window
        if window is None:
            window = self._window = _Window(now_s)
        if dropped or self._is_drop(rtt_s):
            window.dropped = True
            self._cut(now_s, started_s, inflight)
            return self.limit
        if not rtt_s > 0.0:  # zero, negative or NaN: a broken measurement, not a signal
            return self.limit
        self._srtt_s = rtt_s if self._srtt_s == 0.0 else self._srtt_s + _SRTT_GAIN * (rtt_s - self._srtt_s)
        if self._probe_started_s is not None:
            self._probe_sample(rtt_s, started_s, self._probe_started_s)
            return self.limit
        window.count += 1
        window.rtt_sum_s += rtt_s
        window.units_sum += units
        window.inflight_sum += inflight
        if started_s < window.first_started_s:
            window.first_started_s = started_s
        if inflight > window.inflight_max:
            window.inflight_max = inflight
        if window.count >= self.window_samples and now_s - window.start_s >= self.window_s:
            self._window = None
            self._last_inflight_max = window.inflight_max
            self._windows_since_probe += 1
            if (self.probe_interval and self._windows_since_probe >= self.probe_interval
                    and not self._budget_speaks(now_s)):
                self._start_probe(now_s, may_raise=False)
            elif not window.dropped:
                before = self._limit
                limit = self._update(now_s, window)
                w_max = self._w_max
                if (limit >= before and w_max > limit and not self._app_limited(window)
                        and not self._budget_speaks(now_s)):
                    limit += _RECOVERY * (w_max - limit)
                self._limit = self._clamp(limit)
                self._probe_ref_limit = max(self._probe_ref_limit, self._limit)
                if self._probe_wanted:
                    self._probe_wanted = False
                    self._start_probe(now_s, may_raise=True)
                    return self.limit
                # Halving the limit should have drained any queue it caused; if latency still says
                # "queue", the baseline may be stale (the upstream got slower): re-measure it now,
                # before the limit sinks to the floor.
                if (self.probe_interval and self._limit <= self.probe_ratio * self._probe_ref_limit
                        and not self._budget_speaks(now_s)):
                    self._start_probe(now_s, may_raise=True)
        return self.limit

    def on_upstream_queue(self, now_s: float, inflight: float, waiting_units: float, hold_s: float = 0.0) -> float:
        """The upstream reports that ``waiting_units`` of the work in flight wait in its own queue
        (vLLM's ``num_requests_waiting``), where seawall's priorities mean nothing. The limit comes
        down at once to the work it runs, ``inflight - waiting_units``: no latency reading can say
        it as exactly. As with drops, once per round trip (``hold_s``, the caller's time from start
        to finish of its work): the queue a cut leaves drains only as running work ends, and other
        clients of a shared server keep adding to it, so reading it again sooner would cut for the
        same news. The limit before the cut is where the recovery climbs back to; the current
        window does not grow the limit."""
        self._report_s = now_s
        if waiting_units > 0.0 and self._window is not None:
            self._window.dropped = True  # no window grows the limit into a queue the upstream reports
        if now_s < self._backoff_at_s + max(hold_s, self.window_s):
            return self.limit
        target = self._clamp(inflight - waiting_units)
        if waiting_units > 0.0 and target < self._limit:
            self._w_max = self._limit
            self._limit = target
            self._backoff_at_s = now_s
            if self._window is not None:
                self._window.dropped = True
        return self.limit

    def on_upstream_budget(self, now_s: float) -> None:
        """A deployment of the group stated its rate budget (rate-limit headers with a reset time):
        for ``_REPORT_FRESH_S`` the limit is loss-based. Such an upstream (a hosted provider) says
        itself how much it takes, and the gateway paces to it (``algorithms/pacing.py``); its latency
        rises with its own load, every customer's, and is not a queue this limit could drain: cutting
        for it only sheds work the budget still allows. "Too much" is then said by the budget running
        out (the router finds no deployment with budget: a drop) and by 429s, which still cut.
        Between drops the limit grows additively in time (Gradient2: one mean request a second;
        Vegas: its own step), with no recovery toward the level before the last cut: replicas that
        share one budget get the same news, and additive increase with multiplicative decrease
        converges to equal shares (Chiu and Jain), where growth per window or a memory of each
        replica's own past level keeps the busiest ahead. No probe lowers the limit meanwhile
        (there is no latency baseline to measure)."""
        self._budget_s = now_s

    def _budget_speaks(self, now_s: float) -> bool:
        return now_s - self._budget_s < _REPORT_FRESH_S

    def _start_probe(self, now_s: float, may_raise: bool) -> None:
        self._probe_started_s = now_s
        self._probe = _Window(now_s)
        self._probe_may_raise = may_raise

    def _probe_sample(self, rtt_s: float, started_s: float, probe_started_s: float) -> None:
        if started_s < probe_started_s:  # admitted before the limit was lowered: may have queued
            return
        probe = self._probe
        probe.count += 1
        probe.rtt_sum_s += rtt_s
        if probe.count >= _PROBE_WINDOWS * self.window_samples:
            self._probe_started_s = None
            self._windows_since_probe = 0
            self._probe_ref_limit = self._limit
            self._on_probe(probe.rtt_avg_s, self._probe_may_raise)

    def _cut(self, now_s: float, started_s: float, inflight: float) -> None:
        """Multiplicative decrease, from the most work in flight lately if that was below the limit:
        an upstream that refuses at capacity has just said where its capacity is, so a limit far
        above it (a cold start) comes down in one step, not dozens. The limit before the cut is
        remembered for the recovery (module docstring)."""
        hold_s = max(self.window_s, self._srtt_s)
        if started_s >= self._backoff_at_s and now_s >= self._backoff_at_s + hold_s:
            base = self._limit
            if 0.0 < inflight < base:
                # The most in flight lately, not at this instant: behind a shared upstream, one
                # replica's 429 often comes in a dip of its own load (the others filled the slots),
                # and cutting to the dip would starve it for the whole climb back.
                w = self._window
                seen = max(inflight, self._last_inflight_max, w.inflight_max if w is not None else 0.0)
                if seen < base:
                    base = seen
            self._w_max = self._limit
            self._limit = self._clamp(base * self.backoff_ratio)
            self._backoff_at_s = now_s

    def _app_limited(self, window: _Window) -> bool:
        return window.inflight_max < self._limit / 2


class Gradient2Limit(_WindowedLimit):
    """Netflix's Gradient2: grow while short-term latency stays near the long-term baseline.

    Each window: ``gradient = clamp(tolerance * long_rtt / short_rtt, 0.5, 1.0)`` and
    ``new = limit * gradient + queue_ratio * limit``, blended in by ``smoothing``. With no queueing
    the gradient is 1 and the limit grows by ``smoothing * queue_ratio`` (1%) per window; once the
    upstream queues, latency rises and the gradient pulls the limit back, at most halving it per
    window. The equilibrium keeps ``short/long = tolerance / (1 - queue_ratio)`` (about 1.1 with the
    defaults): a small, bounded standing queue at the upstream. ``queue_ratio`` replaces Netflix's
    fixed queue of 4 requests, which means nothing once units are tokens.

    ``short_rtt`` is the window's mean latency; ``long_rtt`` an exponential average of it over
    ``long_window`` windows (default 500) that drifts back down when short < long (and, as in
    Netflix, drops 5% a window while it is over twice the short one). The standing queue still
    pushes an average up slowly (~0.02% a window), so probes (module docstring) pin it back to the
    measured no-load latency.

    ``min_queue_requests`` (default 0: off) floors that additive term at that many requests' worth
    (the window's mean request weight), as Netflix's fixed queue of 4 requests did and TCP's one
    segment per round trip does: a proportional term alone grows a small limit by a sliver per
    window, and a replica that gets few samples (one of many in front of an upstream, each with a
    couple of requests in flight) closes a window every few seconds, so one 429 that cut it to a
    request or two took the rest of the surge to undo. The price: below twice that many requests'
    worth, latency alone can no longer lower the limit (the gradient halves at most); 429s and
    timeouts still cut it.

    Slower is not congested (``slowdown_probe``, default on). A queue we cause needs more work in
    flight; when latency rises while clearly less is in flight (under 90%) than in recent windows
    that read no queueing, the upstream itself got slower (a slowed deployment of the group, a
    heavier mix), and cutting would only shed work it can take. Then the limit holds and the
    baseline moves halfway to the new latency. An upstream whose capacity fell looks the same
    under the same load, so once these moves have doubled the baseline since it was last measured,
    a probe (module docstring) decides, and the level known to run calm is relearned. A latency
    cut also needs a window of requests admitted after the previous cut: a window's requests
    started about a round trip earlier, and several cuts on the same stale news would sink the
    limit far below the knee (as TCP cuts once per round trip).

    Defaults: tolerance 1.05 (>= 1; Netflix's 1.5 lets the upstream queue 50% past baseline, too
    much when the gateway wants to hold the queue itself, by priority; raise it, or
    ``window_samples``, when window means are noisier than ~3%), smoothing 0.2 (0, 1],
    queue_ratio 0.05 (0, 0.5], min_queue_requests 0 (>= 0).
    """

    __slots__ = ("_calm_inflight", "_cut_at_s", "_long_rtt_s", "_raised_ratio", "long_window", "min_queue_requests",
                 "queue_ratio", "slowdown_probe", "smoothing", "tolerance")

    def __init__(
        self,
        *,
        initial_limit: float = 20.0,
        min_limit: float = 1.0,
        max_limit: float = 1_000_000.0,
        tolerance: float = 1.05,
        smoothing: float = 0.2,
        queue_ratio: float = 0.05,
        min_queue_requests: float = 0.0,
        slowdown_probe: bool = True,
        long_window: int = 500,
        probe_interval: int = 100,
        probe_ratio: float = 0.5,
        backoff_ratio: float = 0.9,
        window_s: float = 0.05,
        window_samples: int = 10,
    ) -> None:
        super().__init__(
            initial_limit, min_limit, max_limit, backoff_ratio, window_s, window_samples,
            probe_interval, probe_ratio,
        )
        if tolerance < 1.0 or not 0.0 < smoothing <= 1.0 or not 0.0 < queue_ratio <= 0.5:
            raise ValueError("need tolerance >= 1, smoothing in (0, 1], queue_ratio in (0, 0.5]")
        if long_window < 1:
            raise ValueError("long_window must be >= 1")
        if not min_queue_requests >= 0.0:
            raise ValueError("min_queue_requests must be >= 0")
        self.tolerance = tolerance
        self.smoothing = smoothing
        self.queue_ratio = queue_ratio
        self.min_queue_requests = min_queue_requests
        self.slowdown_probe = slowdown_probe
        self.long_window = long_window
        self._long_rtt_s = 0.0
        self._calm_inflight = 0.0  # the most work in flight in recent windows without queueing
        self._raised_ratio = 1.0  # how far holds have raised the baseline since it was last measured
        self._cut_at_s = -math.inf  # the last latency cut: a window of older requests cannot cut again

    @property
    def long_rtt_s(self) -> float:
        """The learned baseline latency in seconds (0.0 before the first window)."""
        return self._long_rtt_s

    def _on_probe(self, rtt_s: float, may_raise: bool) -> None:
        self._long_rtt_s = rtt_s if may_raise else min(rtt_s, self._long_rtt_s or rtt_s)
        self._raised_ratio = 1.0
        # What was known to run without queueing is known no more: relearned from the windows that
        # read no queueing against the measured baseline (if the upstream queues at full load, a
        # window at full load now reads as more in flight than the probe's, and is cut).
        self._calm_inflight = self._limit * self.probe_ratio

    def _update(self, now_s: float, window: _Window) -> float:
        short_s = window.rtt_avg_s
        long_s = self._long_rtt_s
        if long_s == 0.0:
            long_s = short_s
        else:
            long_s += (short_s - long_s) / self.long_window
            if long_s > 2.0 * short_s:  # Netflix: after a long overload, fall back faster than the average
                long_s *= 0.95
        limit = self._limit
        if self._app_limited(window):
            self._long_rtt_s = long_s
            return limit
        gradient = max(0.5, min(1.0, self.tolerance * long_s / short_s))
        if now_s - self._report_s < _REPORT_FRESH_S:
            # The upstream says itself whether it queues (its metrics): latency that rises without a
            # queue is a bigger batch or a slower server, not congestion, and is not cut for; and
            # the limit grows only as the recovery climbs back to where the queue began.
            self._long_rtt_s = long_s
            return limit
        if self._budget_speaks(now_s):
            # Latency is the provider's own load curve (on_upstream_budget): no cut for it, and growth
            # is additive in time, one mean request a second, the same for every replica. Growth per
            # window (this algorithm's own) is multiplicative and paced by the replica's throughput:
            # replicas sharing one budget then diverge, the busiest taking it all while the others,
            # cut by the same shared news, starve (measured: 600k units against 20k).
            self._long_rtt_s = long_s
            return limit + window.units_avg * min(now_s - window.start_s, _BUDGET_GROWTH_CAP_S) / _BUDGET_GROWTH_S
        inflight = window.inflight_avg
        if gradient >= 1.0:
            # No queueing at this much work in flight: remember the most seen so (decaying slowly).
            decayed = self._calm_inflight * _CALM_DECAY
            self._calm_inflight = inflight if inflight > decayed else decayed
        elif self.slowdown_probe and inflight <= self._calm_inflight * _CALM_MARGIN:
            # Latency rose, but not because we sent more: clearly less work is in flight than in
            # recent windows that saw no queueing. Most likely the upstream got slower (a slowed
            # deployment, a heavier mix), and cutting would shed work it can take: hold, and move
            # the baseline halfway to what it reads now. But an upstream whose capacity fell queues
            # what it used to run and looks the same; only less load tells the two apart, so once
            # these moves add up to twice the last measured baseline, a probe decides.
            raised = long_s + 0.5 * (short_s - long_s)
            self._raised_ratio *= raised / long_s
            self._long_rtt_s = raised
            if self._raised_ratio >= _RAISE_BEFORE_PROBE:
                self._probe_wanted = True
            return limit
        self._long_rtt_s = long_s
        if gradient < 1.0:
            if window.first_started_s < self._cut_at_s:
                return limit  # admitted before the last cut: old news, as with drops
            self._cut_at_s = now_s
        queue = self.queue_ratio * limit
        floor = self.min_queue_requests * window.units_avg
        if queue < floor:
            queue = floor
        target = limit * gradient + queue
        return limit + self.smoothing * (target - limit)


class VegasLimit(_WindowedLimit):
    """TCP Vegas on latency: estimate the upstream's queue and keep it between alpha and beta.

    ``queue = limit * (1 - rtt_noload / rtt)`` in work units, where ``rtt`` is the window's mean
    latency and ``rtt_noload`` the no-load mean: the first window's (taken at the low initial
    limit), then each probe's (module docstring). Mean against mean, never mean against a minimum,
    or per-request noise reads as queueing. Thresholds are fractions of the limit (Netflix's
    ``log10(limit)`` is a few units, meaningless when units are tokens); with ``step =
    alpha_ratio / 3``:

    - queue <= step (no queueing): grow by ``alpha_ratio * limit`` — fast discovery;
    - queue < alpha: grow by ``step * limit``;
    - queue > beta: shrink by half the excess over beta (at least ``step * limit``), so a capacity
      drop is followed in a few windows rather than Netflix's one unit per window;
    - otherwise hold. So the limit settles 6-12% above capacity with the defaults.

    Each move is blended in by ``smoothing``: a window's samples were admitted about a round trip
    earlier, and full steps on stale news oscillate.

    Defaults: alpha_ratio 0.06, beta_ratio 0.12 (0 < alpha < beta < 1; the gap must exceed the
    noise of a window mean), smoothing 0.5 (0, 1].
    """

    __slots__ = ("_noload_s", "alpha_ratio", "beta_ratio", "smoothing")

    def __init__(
        self,
        *,
        initial_limit: float = 20.0,
        min_limit: float = 1.0,
        max_limit: float = 1_000_000.0,
        alpha_ratio: float = 0.06,
        beta_ratio: float = 0.12,
        smoothing: float = 0.5,
        probe_interval: int = 100,
        probe_ratio: float = 0.5,
        backoff_ratio: float = 0.9,
        window_s: float = 0.05,
        window_samples: int = 10,
    ) -> None:
        super().__init__(
            initial_limit, min_limit, max_limit, backoff_ratio, window_s, window_samples,
            probe_interval, probe_ratio,
        )
        if not 0.0 < alpha_ratio < beta_ratio < 1.0 or not 0.0 < smoothing <= 1.0:
            raise ValueError("need 0 < alpha_ratio < beta_ratio < 1 and smoothing in (0, 1]")
        self.alpha_ratio = alpha_ratio
        self.beta_ratio = beta_ratio
        self.smoothing = smoothing
        self._noload_s = 0.0  # 0.0: not measured yet

    @property
    def rtt_noload_s(self) -> float:
        """The latency the upstream shows with no queue, in seconds (0.0 before the first window)."""
        return self._noload_s

    def _on_probe(self, rtt_s: float, may_raise: bool) -> None:
        self._noload_s = rtt_s if may_raise else min(rtt_s, self._noload_s or rtt_s)

    def _update(self, now_s: float, window: _Window) -> float:
        limit = self._limit
        rtt_s = window.rtt_avg_s
        if self._noload_s == 0.0:  # the first window, at the (low) initial limit
            self._noload_s = rtt_s
        if self._app_limited(window):
            return limit
        queue = 0.0 if self._budget_speaks(now_s) else limit * (1.0 - self._noload_s / rtt_s)
        step = self.alpha_ratio / 3.0 * limit
        if queue <= step:
            target = limit + self.alpha_ratio * limit
        elif queue < self.alpha_ratio * limit:
            target = limit + step
        elif queue > self.beta_ratio * limit:
            target = limit - max(step, 0.5 * (queue - self.beta_ratio * limit))
        else:
            return limit
        return limit + self.smoothing * (target - limit)


class AimdLimit(_WindowedLimit):
    """Additive increase, multiplicative decrease: the loss-based baseline, as in TCP Reno.

    Grows by ``increase_units`` per window while the limit is in use (the busiest sample had at
    least half of it in flight); shrinks by ``backoff_ratio`` (default 0.9) on a drop *or* a latency
    above ``timeout_s`` (default 5 s), paced like every drop cut. It ignores latency below the
    timeout, so it keeps the upstream queue as long as ``timeout_s`` allows: use it when latency is
    too noisy to read, or as the reference the latency-based limits are measured against.
    ``increase_units`` is in work units: about one typical request (default 1.0, for counting
    requests; ~the mean token estimate when counting tokens).
    """

    __slots__ = ("increase_units", "timeout_s")

    def __init__(
        self,
        *,
        initial_limit: float = 20.0,
        min_limit: float = 1.0,
        max_limit: float = 1_000_000.0,
        increase_units: float = 1.0,
        timeout_s: float = 5.0,
        backoff_ratio: float = 0.9,
        window_s: float = 0.05,
        window_samples: int = 10,
    ) -> None:
        super().__init__(initial_limit, min_limit, max_limit, backoff_ratio, window_s, window_samples)
        if increase_units <= 0 or timeout_s <= 0:
            raise ValueError("need increase_units > 0 and timeout_s > 0")
        self.increase_units = increase_units
        self.timeout_s = timeout_s

    def _is_drop(self, rtt_s: float) -> bool:
        return rtt_s > self.timeout_s

    def _update(self, now_s: float, window: _Window) -> float:
        if self._app_limited(window):
            return self._limit
        return self._limit + self.increase_units
