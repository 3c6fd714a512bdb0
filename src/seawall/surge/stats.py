"""Streaming statistics for a surge run: bounded memory whatever the number of requests.

- :class:`LogHistogram`: latency counts in log-spaced buckets (ratio 1.02 from 100 µs to ~3 h), so a
  quantile is within 1% of the true value; merging is adding counts. A run of ten million requests
  costs a few kilobytes per tier.
- :class:`Recorder`: per tier and per time bucket, what was offered, admitted, answered (by
  outcome and reason) and finished from the user's point of view, plus gauges sampled once per
  bucket (the adaptive limit, upstream load). Both the simulator and the live load generator feed
  one, and :meth:`Recorder.to_json` is the ``results.json`` shape the report reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["OUTCOMES", "LogHistogram", "Recorder"]

_LO_S = 1e-4
_RATIO = 1.02
_INV_LOG_RATIO = 1.0 / math.log(_RATIO)
_N = int(math.log(1e4 / _LO_S) * _INV_LOG_RATIO) + 2  # up to ~10,000 s
_COARSE_RATIO = 1.12
_INV_LOG_COARSE = 1.0 / math.log(_COARSE_RATIO)

#: What one attempt (one HTTP exchange with the gateway) ended as.
#: ok: 200. shed: the gateway refused it itself (admission, auth throttle...), 429/503.
#: upstream_429: the upstream refused for capacity and the gateway passed the refusal on.
#: error: 5xx/timeouts from a failing upstream. cancelled: the client gave up before an answer.
#: rejected_auth: 401/429 for an invalid key (the login storm).
OUTCOMES = ("ok", "shed", "upstream_429", "error", "cancelled", "rejected_auth")


class LogHistogram:
    """Counts of positive values (seconds) in log buckets; quantiles within ~1%."""

    __slots__ = ("counts", "max", "n", "sum")

    def __init__(self) -> None:
        self.counts = [0] * _N
        self.n = 0
        self.sum = 0.0
        self.max = 0.0

    def add(self, value_s: float) -> None:
        i = int(math.log(value_s / _LO_S) * _INV_LOG_RATIO) + 1 if value_s > _LO_S else 0
        self.counts[i if i < _N else _N - 1] += 1
        self.n += 1
        self.sum += value_s
        if value_s > self.max:
            self.max = value_s

    def merge(self, other: LogHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.n += other.n
        self.sum += other.sum
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0..1) in seconds; NaN when empty. Bucket midpoints (geometric)."""
        if self.n == 0:
            return math.nan
        rank = q * self.n
        acc = 0
        for i, c in enumerate(self.counts):
            acc += c
            if acc >= rank and c:
                if i == 0:
                    return _LO_S
                return min(self.max, _LO_S * _RATIO ** (i - 0.5))
        return self.max

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else math.nan

    def to_json(self) -> dict[str, Any]:
        return {"lo_s": _LO_S, "ratio": _RATIO, "n": self.n, "sum_s": self.sum, "max_s": self.max,
                "counts": {str(i): c for i, c in enumerate(self.counts) if c}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogHistogram:
        h = cls()
        for i, c in data["counts"].items():
            h.counts[int(i)] = c
        h.n, h.sum, h.max = data["n"], data["sum_s"], data["max_s"]
        return h


class _Coarse:
    """A sparse, coarser histogram (ratio 1.12, ~6% error) for per-time-bucket p99 curves."""

    __slots__ = ("counts", "n")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0

    def add(self, value_s: float) -> None:
        i = int(math.log(value_s / _LO_S) * _INV_LOG_COARSE) + 1 if value_s > _LO_S else 0
        self.counts[i] = self.counts.get(i, 0) + 1
        self.n += 1

    def merge(self, other: _Coarse) -> None:
        counts = self.counts
        for i, c in other.counts.items():
            counts[i] = counts.get(i, 0) + c
        self.n += other.n

    def quantile(self, q: float) -> float:
        if not self.n:
            return math.nan
        rank, acc = q * self.n, 0
        for i in sorted(self.counts):
            acc += self.counts[i]
            if acc >= rank:
                return _LO_S if i == 0 else _LO_S * _COARSE_RATIO ** (i - 0.5)
        return math.nan


class _Tier:
    __slots__ = (
        "admitted",
        "arrivals",
        "coarse",
        "latency",
        "offered",
        "outcomes",
        "reasons",
        "ttft",
        "user_fail",
        "user_fail_reasons",
        "user_ok",
    )

    def __init__(self, n: int) -> None:
        self.arrivals = [0] * n  # unique user requests started
        self.offered = [0] * n  # attempts that reached the gateway (client retries included)
        self.admitted = [0] * n  # attempts the gateway's admission let through to the upstream
        self.outcomes = {o: [0] * n for o in OUTCOMES}  # attempts ended, by when they ended
        self.reasons: dict[str, int] = {}  # non-ok attempt reasons, totals
        self.user_ok = [0] * n  # user requests that ended in success (by when they ended)
        self.user_fail = [0] * n
        self.user_fail_reasons: dict[str, int] = {}
        self.latency = LogHistogram()  # successful user requests: first send -> last byte
        self.ttft = LogHistogram()  # successful user requests: first send -> first byte
        self.coarse = [_Coarse() for _ in range(n)]  # latency of user successes, by end bucket


class Recorder:
    """Everything a report needs, in memory bounded by tiers x time buckets."""

    def __init__(self, tiers: Sequence[str], duration_s: float, *, bucket_s: float | None = None,
                 max_buckets: int = 150) -> None:
        if bucket_s is None:
            bucket_s = _nice_bucket(duration_s / max_buckets)
        self.bucket_s = bucket_s
        self.inv_bucket = 1.0 / bucket_s
        # Requests finish after the last arrival (retries, timeouts): keep room for that tail.
        self.n = math.ceil(duration_s / bucket_s) + max(4, int(120 / bucket_s) + 1)
        self.duration_s = duration_s
        self.tier_names = list(tiers)
        self.tiers = [_Tier(self.n) for _ in tiers]
        self.reason_series: dict[str, list[int]] = {}
        self.gauges: dict[str, list[float | None]] = {}
        self.gateway_requests = [0] * self.n  # requests that reached the router
        self.upstream_attempts = [0] * self.n  # attempts sent upstream by the router
        # (requests, attempts) known only in total (a live run reads them from the upstreams at the end)
        self.totals_only: tuple[int, int] | None = None
        self.end_s = 0.0

    # -- feeding ---------------------------------------------------------------------------------

    def bucket(self, t_s: float) -> int:
        b = int(t_s * self.inv_bucket)
        return b if b < self.n else self.n - 1

    def arrival(self, t_s: float, tier: int) -> None:
        self.tiers[tier].arrivals[self.bucket(t_s)] += 1

    def offered(self, t_s: float, tier: int) -> None:
        self.tiers[tier].offered[self.bucket(t_s)] += 1

    def admitted(self, t_s: float, tier: int) -> None:
        self.tiers[tier].admitted[self.bucket(t_s)] += 1

    def attempt_end(self, t_s: float, tier: int, outcome: str, reason: str | None = None) -> None:
        b = self.bucket(t_s)
        tr = self.tiers[tier]
        tr.outcomes[outcome][b] += 1
        if outcome != "ok":
            key = reason or outcome
            tr.reasons[key] = tr.reasons.get(key, 0) + 1
            series = self.reason_series.get(key)
            if series is None:
                series = self.reason_series[key] = [0] * self.n
            series[b] += 1

    def user_end(self, t_s: float, tier: int, ok: bool, latency_s: float, ttft_s: float | None = None,
                 reason: str | None = None) -> None:
        b = self.bucket(t_s)
        tr = self.tiers[tier]
        if ok:
            tr.user_ok[b] += 1
            tr.latency.add(latency_s)
            tr.ttft.add(ttft_s if ttft_s is not None else latency_s)
            tr.coarse[b].add(latency_s)
        else:
            tr.user_fail[b] += 1
            key = reason or "failed"
            tr.user_fail_reasons[key] = tr.user_fail_reasons.get(key, 0) + 1
        if t_s > self.end_s:
            self.end_s = t_s

    def router(self, t_s: float, attempts: int) -> None:
        """One request left the router after ``attempts`` upstream attempts."""
        b = self.bucket(t_s)
        self.gateway_requests[b] += 1
        self.upstream_attempts[b] += attempts

    def gauge(self, name: str, t_s: float, value: float) -> None:
        series = self.gauges.get(name)
        if series is None:
            series = self.gauges[name] = [None] * self.n
        series[self.bucket(t_s)] = value

    def merge(self, others: Sequence[Recorder], gauge: Callable[[str, list[float | None]], float | None]) -> None:
        """Add what ``others`` recorded (the other shards of one simulated run: same tiers, same
        buckets) to this recorder. Counts and histograms add up; a gauge's value in a bucket is
        ``gauge(name, values)``, one value per recorder (this one first), each recorder's series
        carried forward past its last sample (a shard that finished early still has its capacity)."""
        for other in others:
            if other.tier_names != self.tier_names or other.bucket_s != self.bucket_s or other.n != self.n:
                raise ValueError("only shards of one run merge: tiers and buckets must be the same")
        for other in others:
            for mine, theirs in zip(self.tiers, other.tiers, strict=True):
                for name in ("arrivals", "offered", "admitted", "user_ok", "user_fail"):
                    _add_into(getattr(mine, name), getattr(theirs, name))
                for outcome, series in theirs.outcomes.items():
                    _add_into(mine.outcomes[outcome], series)
                pairs = ((mine.reasons, theirs.reasons), (mine.user_fail_reasons, theirs.user_fail_reasons))
                for counts, more in pairs:
                    for key, value in more.items():
                        counts[key] = counts.get(key, 0) + value
                mine.latency.merge(theirs.latency)
                mine.ttft.merge(theirs.ttft)
                for coarse, more_coarse in zip(mine.coarse, theirs.coarse, strict=True):
                    coarse.merge(more_coarse)
            for key, series in other.reason_series.items():
                _add_into(self.reason_series.setdefault(key, [0] * self.n), series)
            _add_into(self.gateway_requests, other.gateway_requests)
            _add_into(self.upstream_attempts, other.upstream_attempts)
            self.end_s = max(self.end_s, other.end_s)
        names = sorted({name for r in (self, *others) for name in r.gauges})
        for name in names:
            raw = [r.gauges.get(name) or [None] * self.n for r in (self, *others)]
            filled = [_carried(series) for series in raw]
            self.gauges[name] = [gauge(name, [f[b] for f in filled]) if any(r[b] is not None for r in raw) else None
                                 for b in range(self.n)]

    # -- reading ---------------------------------------------------------------------------------

    def used_buckets(self) -> int:
        last = max(self.bucket(max(self.end_s, self.duration_s)) + 1, 1)
        return min(self.n, last)

    def summary(self, tier: int) -> dict[str, Any]:
        tr = self.tiers[tier]
        ok, fail = sum(tr.user_ok), sum(tr.user_fail)
        done = ok + fail
        attempts = sum(tr.offered)
        arrivals = sum(tr.arrivals)
        by_outcome = {o: sum(v) for o, v in tr.outcomes.items()}
        return {
            "tier": self.tier_names[tier],
            "requests": arrivals,
            "finished": done,
            "succeeded": ok,
            "success_rate_pct": 100.0 * ok / done if done else None,
            "p50_s": _num(tr.latency.quantile(0.50)),
            "p90_s": _num(tr.latency.quantile(0.90)),
            "p99_s": _num(tr.latency.quantile(0.99)),
            "p99_ttft_s": _num(tr.ttft.quantile(0.99)),
            "mean_s": _num(tr.latency.mean),
            "attempts": attempts,
            "client_amplification": attempts / arrivals if arrivals else None,
            "attempt_outcomes": by_outcome,
            "reasons": dict(sorted(tr.reasons.items(), key=lambda kv: -kv[1])),
            "user_fail_reasons": dict(sorted(tr.user_fail_reasons.items(), key=lambda kv: -kv[1])),
        }

    def success_ratio_series(self, tier: int) -> list[float | None]:
        """Per bucket: successful attempts / ended attempts (None when nothing ended)."""
        tr = self.tiers[tier]
        out: list[float | None] = []
        for b in range(self.used_buckets()):
            ended = sum(tr.outcomes[o][b] for o in OUTCOMES)
            out.append(tr.outcomes["ok"][b] / ended if ended else None)
        return out

    def recovery_s(self, tier: int, start_s: float, threshold: float, hold: int = 3) -> float | None:
        """Seconds after ``start_s`` until the tier's per-bucket success ratio is >= ``threshold``
        for ``hold`` buckets in a row (buckets with nothing ended count as fine); None if never."""
        series = self.success_ratio_series(tier)
        first = self.bucket(start_s)
        run = 0
        for b in range(first, len(series)):
            value = series[b]
            if value is None or value >= threshold:
                run += 1
                if run >= hold:
                    return max(0.0, (b - hold + 1) * self.bucket_s - start_s)
            else:
                run = 0
        return None

    def to_json(self) -> dict[str, Any]:
        n = self.used_buckets()
        tiers = {}
        for i, name in enumerate(self.tier_names):
            tr = self.tiers[i]
            tiers[name] = {
                "summary": self.summary(i),
                "series": {
                    "arrivals": tr.arrivals[:n], "offered": tr.offered[:n], "admitted": tr.admitted[:n],
                    **{o: v[:n] for o, v in tr.outcomes.items()},
                    "user_ok": tr.user_ok[:n], "user_fail": tr.user_fail[:n],
                    "p99_s": [_num(c.quantile(0.99)) for c in tr.coarse[:n]],
                    "p50_s": [_num(c.quantile(0.50)) for c in tr.coarse[:n]],
                },
                "latency_histogram": tr.latency.to_json(),
            }
        requests = sum(self.gateway_requests)
        attempts = sum(self.upstream_attempts)
        if self.totals_only is not None:
            requests, attempts = self.totals_only
        return {
            "bucket_s": self.bucket_s,
            "buckets": n,
            "tiers": tiers,
            "reasons": {k: v[:n] for k, v in sorted(self.reason_series.items())},
            "gauges": {k: v[:n] for k, v in sorted(self.gauges.items())},
            "gateway": {
                "requests": requests,
                "upstream_attempts": attempts,
                "amplification": attempts / requests if requests else None,
                "requests_series": self.gateway_requests[:n],
                "attempts_series": self.upstream_attempts[:n],
            },
        }


def _add_into(into: list[int], more: list[int]) -> None:
    for i, v in enumerate(more):
        if v:
            into[i] += v


def _carried(series: list[float | None]) -> list[float | None]:
    """``series`` with each gap after its first value filled with the value before it."""
    out: list[float | None] = []
    last = None
    for v in series:
        if v is not None:
            last = v
        out.append(last)
    return out


def _num(value: float) -> float | None:
    return None if value != value else round(value, 6)


def _nice_bucket(raw_s: float) -> float:
    for step in (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if raw_s <= step:
            return float(step)
    return 3600.0 * math.ceil(raw_s / 3600.0)


def merge_counts(values: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in values:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out
