"""How upstream servers behave under load: one pure model per behaviour, driven by the mock and the simulator.

Three behaviours, each one class with the same small interface, no clock and no randomness of its
own (the driver passes ``now_s`` and, where a draw is needed, a uniform ``sample``):

- :class:`SlotsServer`, *fixed slots*: at most ``capacity`` requests at once, a 429 beyond; first
  token after a fixed latency, then a fixed time per token. The seed's only model.
- :class:`BatchingServer`, *continuous batching* (vLLM, TGI, SGLang): never a 429. Up to
  ``max_num_seqs`` sequences decode together, and the time per output token grows with the batch;
  a sequence's prefill costs time per prompt token and stalls the batch while it runs; the rest
  wait in a FIFO queue, so the time to the first token grows without bound under overload.
- :class:`HostedServer`, *hosted provider* (OpenAI, Anthropic): request and token rate limits per
  key, enforced per second as providers quantize them (a 429 with the time until the bucket holds
  enough again), latency that rises with the load,
  and an ``overloaded`` 503/529 now and then, more often when loaded.

``submit`` admits a request (:class:`Accepted`) or refuses it (:class:`Refused`). For slots and
hosted the timing is fixed at admission (``Accepted.first_s``, ``Accepted.interval_s``); a batching
server decides it as it runs: the driver calls ``advance(now_s)``, which returns the milestones
(``FIRST`` token, ``DONE``) reached since the last call with their exact instants, and asks
``next_event_s()`` when to call again. ``finish`` says the request left (done, or its client went
away: a batching server then frees its slot, as vLLM aborts a disconnected request).

The batching model is a fluid one: every decoding sequence emits one token per engine step, so one
virtual step counter ``v`` stands for all of them and a sequence ends when ``v`` reaches its own end
mark; between events the step time is constant, so the next event's instant is exact. Simplifications
(documented in docs/scenarios.md): prefills run one at a time and stall decoding while they run (no
chunked prefill), and the KV cache is reserved whole at admission (prompt plus output), so a server
never preempts.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from dataclasses import dataclass

from seawall.algorithms.pacing import Budget, RateLimitReport

__all__ = [
    "DONE",
    "FIRST",
    "HOSTED_MAX_SLOWDOWN",
    "TTFT_BUCKETS_S",
    "Accepted",
    "BatchingServer",
    "HostedServer",
    "RateLimitState",
    "Refused",
    "SlotsServer",
]

FIRST = 1  # milestone: the sequence's first token is out
DONE = 2  # milestone: its last token is out (the slot is free again)

Milestone = tuple[int, int, float]  # (request id, FIRST or DONE, instant)

_EPS = 1e-9
HOSTED_MAX_SLOWDOWN = 4.0  # a loaded provider gets slower, up to this, then mostly refuses
# vLLM's bucket bounds for vllm:time_to_first_token_seconds
TTFT_BUCKETS_S = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)


@dataclass(frozen=True, slots=True)
class Accepted:
    """Admitted as request ``rid``. ``first_s``: seconds from admission to the first token when the
    behaviour fixes it at admission, else ``None`` (batching: the milestones say). ``interval_s``:
    seconds per token after the first, as of admission."""

    rid: int
    first_s: float | None
    interval_s: float


@dataclass(frozen=True, slots=True)
class Refused:
    """Not admitted: ``status`` 429 (rate limit or capacity), 503 (overloaded; 529 on Anthropic's
    wire) or 400 (can never fit); ``retry_after_s`` when the server says when to come back."""

    status: int
    overloaded: bool
    retry_after_s: float | None
    message: str


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """What a provider's rate-limit headers say: limits, what is left, seconds until full again."""

    limit_requests: int
    remaining_requests: int
    reset_requests_s: float
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None

    def report(self, retry_after_s: float | None = None) -> RateLimitReport:
        """What a gateway parses from the headers the mock sends for this state
        (:func:`seawall.algorithms.pacing.parse_rate_limits`), without the round trip through text."""
        budgets = [Budget("requests", float(self.limit_requests), float(self.remaining_requests),
                          self.reset_requests_s)]
        if self.limit_tokens is not None:
            budgets.append(Budget("tokens", float(self.limit_tokens), float(self.remaining_tokens or 0),
                                  self.reset_tokens_s or 0.0))
        return RateLimitReport(tuple(budgets), retry_after_s)


class SlotsServer:
    """Fixed slots: ``capacity`` requests at once (``None``: unlimited), a 429 beyond it whose
    ``retry-after`` is one default request's service time."""

    behaviour = "slots"

    __slots__ = (
        "_held",
        "_next",
        "capacity",
        "factor",
        "first_s",
        "interval_s",
        "peak",
        "rejected",
        "retry_s",
        "served",
    )

    def __init__(self, capacity: int | None, first_s: float, interval_s: float, retry_after_s: float) -> None:
        self.capacity = capacity
        self.first_s = first_s
        self.interval_s = interval_s
        self.retry_s = retry_after_s
        self.factor = 1.0
        self._held: set[int] = set()
        self._next = 0
        self.peak = 0
        self.served = 0
        self.rejected = 0

    @property
    def in_flight(self) -> int:
        return len(self._held)

    def submit(
        self,
        now_s: float,
        prompt_tokens: int,
        output_tokens: int,
        *,
        reserve_tokens: int = 0,
        key: str = "",
        sample: float = 1.0,
    ) -> Accepted | Refused:
        held = self._held
        if self.capacity is not None and len(held) >= self.capacity:
            self.rejected += 1
            return Refused(429, False, self.retry_s * self.factor, f"{self.capacity} requests in flight")
        self._next += 1
        held.add(self._next)
        if len(held) > self.peak:
            self.peak = len(held)
        return Accepted(self._next, self.first_s * self.factor, self.interval_s * self.factor)

    def finish(self, now_s: float, rid: int, *, completed: bool = True) -> None:
        if rid in self._held:
            self._held.discard(rid)
            self.served += completed

    def advance(self, now_s: float) -> list[Milestone]:
        return []

    def next_event_s(self) -> float:
        return math.inf

    def set_factor(self, factor: float) -> None:
        self.factor = factor

    def grow(self, units: int) -> None:
        if self.capacity is not None:
            self.capacity += units

    def rate_limits(self, now_s: float, key: str = "") -> RateLimitState | None:
        if self.capacity is None:
            return None
        return RateLimitState(self.capacity, max(self.capacity - len(self._held), 0), 0.0)

    def gauges(self) -> dict[str, float]:
        return {"running": float(len(self._held)), "waiting": 0.0}


class _Bucket:
    """A provider's rate limit of ``limit`` per minute, enforced over ``quantum_s`` as providers
    quantize it (OpenAI: "60,000 requests/minute may be enforced as 1,000 requests/second"): a
    bucket of ``limit * quantum_s / 60`` refilled continuously, starting full. What it reports is
    in the minute's terms (``remaining`` scaled up), as the headers are."""

    __slots__ = ("capacity", "level", "limit", "rate", "scale", "t")

    def __init__(self, limit: float, now_s: float, quantum_s: float = 1.0) -> None:
        self.limit = limit
        self.rate = limit / 60.0
        self.capacity = max(1.0, self.rate * quantum_s)
        self.scale = limit / self.capacity
        self.level = self.capacity
        self.t = now_s

    def refill(self, now_s: float) -> None:
        if now_s > self.t:
            self.level = min(self.capacity, self.level + (now_s - self.t) * self.rate)
            self.t = now_s

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0: now); ``inf`` if it never fits."""
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.level) / self.rate)

    def remaining(self) -> int:
        return max(int(self.level * self.scale), 0)

    def reset_s(self) -> float:
        return (self.capacity - self.level) / self.rate


class HostedServer:
    """A hosted provider: per-key request and token budgets per minute (``None``: no such limit);
    latency ``first_s`` / ``interval_s`` times ``1 + (in_flight / soft_concurrency)^2`` (twice as
    slow at ``soft_concurrency``), at most ``HOSTED_MAX_SLOWDOWN`` (4) times; a share of requests
    answered "overloaded", ``overloaded_rate`` when idle and times ``1 + (in_flight /
    soft_concurrency)^2``, uncapped.

    Tokens are charged as the provider does, prompt plus the request's ``max_tokens``
    (``reserve_tokens``), at admission."""

    behaviour = "hosted"

    __slots__ = (
        "_buckets",
        "_held",
        "_next",
        "factor",
        "first_s",
        "interval_s",
        "overloaded_rate",
        "peak",
        "rejected",
        "requests_per_minute",
        "served",
        "soft_concurrency",
        "tokens_per_minute",
    )

    def __init__(
        self,
        *,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        first_s: float,
        interval_s: float,
        soft_concurrency: int,
        overloaded_rate: float = 0.0,
    ) -> None:
        if soft_concurrency < 1:
            raise ValueError("soft_concurrency must be >= 1")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.first_s = first_s
        self.interval_s = interval_s
        self.soft_concurrency = soft_concurrency
        self.overloaded_rate = overloaded_rate
        self.factor = 1.0
        self._buckets: dict[str, tuple[_Bucket | None, _Bucket | None]] = {}
        self._held: set[int] = set()
        self._next = 0
        self.peak = 0
        self.served = 0
        self.rejected = 0

    @property
    def in_flight(self) -> int:
        return len(self._held)

    def _load(self) -> float:
        """``(n / soft_concurrency)^2`` for one more request (it counts itself): what is added to
        the latency multiplier (capped at ``MAX_SLOWDOWN``) and to the overload share (uncapped:
        far past its capacity a provider refuses rather than melts)."""
        x = (len(self._held) + 1) / self.soft_concurrency
        return x * x

    def _key(self, key: str, now_s: float) -> tuple[_Bucket | None, _Bucket | None]:
        pair = self._buckets.get(key)
        if pair is None:
            rpm, tpm = self.requests_per_minute, self.tokens_per_minute
            pair = (_Bucket(rpm, now_s) if rpm else None, _Bucket(tpm, now_s) if tpm else None)
            self._buckets[key] = pair
        for bucket in pair:
            if bucket is not None:
                bucket.refill(now_s)
        return pair

    def submit(
        self,
        now_s: float,
        prompt_tokens: int,
        output_tokens: int,
        *,
        reserve_tokens: int = 0,
        key: str = "",
        sample: float = 1.0,
    ) -> Accepted | Refused:
        requests, tokens = self._key(key, now_s)
        charge = float(reserve_tokens or prompt_tokens + output_tokens)
        wait_s = 0.0
        which = ""
        if requests is not None and requests.wait_s(1.0) > 0:
            wait_s, which = requests.wait_s(1.0), "requests"
        if tokens is not None:
            token_wait_s = tokens.wait_s(charge)
            if token_wait_s == math.inf:
                self.rejected += 1
                return Refused(
                    400,
                    False,
                    None,
                    f"request of {int(charge)} tokens is over the limit of {int(tokens.capacity)} tokens "
                    f"per {tokens.capacity / tokens.rate:g} s",
                )
            if token_wait_s > wait_s:
                wait_s, which = token_wait_s, "tokens"
        if wait_s > 0:
            self.rejected += 1
            return Refused(429, False, wait_s, f"rate limit reached for {which} per minute")
        load = self._load()
        if sample < min(1.0, self.overloaded_rate * (1.0 + load)):
            return Refused(503, True, None, "overloaded")
        if requests is not None:
            requests.level -= 1.0
        if tokens is not None:
            tokens.level -= charge
        self._next += 1
        self._held.add(self._next)
        if len(self._held) > self.peak:
            self.peak = len(self._held)
        scale = self.factor * (1.0 + min(load, HOSTED_MAX_SLOWDOWN - 1.0))
        return Accepted(self._next, self.first_s * scale, self.interval_s * scale)

    def finish(self, now_s: float, rid: int, *, completed: bool = True) -> None:
        if rid in self._held:
            self._held.discard(rid)
            self.served += completed

    def advance(self, now_s: float) -> list[Milestone]:
        return []

    def next_event_s(self) -> float:
        return math.inf

    def set_factor(self, factor: float) -> None:
        self.factor = factor

    def grow(self, units: int) -> None:
        self.soft_concurrency += units

    def rate_limits(self, now_s: float, key: str = "") -> RateLimitState | None:
        requests, tokens = self._key(key, now_s)
        if requests is None and tokens is None:
            return None
        return RateLimitState(
            int(requests.limit) if requests is not None else 0,
            requests.remaining() if requests is not None else 0,
            requests.reset_s() if requests is not None else 0.0,
            int(tokens.limit) if tokens is not None else None,
            tokens.remaining() if tokens is not None else None,
            tokens.reset_s() if tokens is not None else None,
        )

    def gauges(self) -> dict[str, float]:
        return {"running": float(len(self._held)), "waiting": 0.0}


# Sequence states of a batching server
_WAITING, _PREFILL, _DECODE, _GONE = range(4)


class _Seq:
    __slots__ = ("arrived_s", "done_s", "first_s", "kv", "n_out", "prompt", "ready_s", "rid", "state", "v_join")

    def __init__(self, rid: int, prompt: int, n_out: int, arrived_s: float, ready_s: float, kv: int) -> None:
        self.rid = rid
        self.arrived_s = arrived_s
        self.prompt = prompt
        self.n_out = n_out
        self.ready_s = ready_s  # when the request reaches the scheduler (after the fixed overhead)
        self.kv = kv
        self.state = _WAITING
        self.v_join = 0.0
        self.first_s = math.inf
        self.done_s = math.inf


class BatchingServer:
    """Continuous batching: ``max_num_seqs`` sequences at once; the rest wait in FIFO order.

    A request reaches the scheduler ``overhead_s`` after it arrives (tokenizing, scheduling: no
    stall). Admitted, its prefill takes ``prompt_tokens / prefill_tokens_per_s`` during which the
    batch does not decode; its first token comes at the prefill's end, and each later one per engine
    step. A step takes ``1 / tokens_per_s`` with one sequence decoding, ``batch_slowdown`` times that
    with ``max_num_seqs``, linear between. ``kv_cache_tokens`` bounds the prompt plus output tokens
    of the admitted sequences. ``set_factor`` multiplies every duration (a slower deployment)."""

    behaviour = "batching"

    __slots__ = (
        "_dec_prompts",
        "_decoding",
        "_heap",
        "_kv_used",
        "_next",
        "_prefills",
        "_seqs",
        "_stall_until",
        "_sum_join",
        "_t",
        "_v",
        "_waiting",
        "batch_slowdown",
        "factor",
        "kv_cache_tokens",
        "max_num_seqs",
        "overhead_s",
        "peak",
        "prefill_tokens_per_s",
        "rejected",
        "served",
        "tokens_per_s",
        "ttft_buckets",
        "ttft_count",
        "ttft_sum",
    )

    def __init__(
        self,
        *,
        max_num_seqs: int,
        tokens_per_s: float,
        overhead_s: float = 0.0,
        prefill_tokens_per_s: float = 20000.0,
        batch_slowdown: float = 2.0,
        kv_cache_tokens: int | None = None,
    ) -> None:
        if max_num_seqs < 1 or tokens_per_s <= 0 or prefill_tokens_per_s <= 0 or batch_slowdown < 1:
            raise ValueError("max_num_seqs >= 1, tokens_per_s > 0, prefill_tokens_per_s > 0, batch_slowdown >= 1")
        self.max_num_seqs = max_num_seqs
        self.tokens_per_s = tokens_per_s
        self.overhead_s = overhead_s
        self.prefill_tokens_per_s = prefill_tokens_per_s
        self.batch_slowdown = batch_slowdown
        self.kv_cache_tokens = kv_cache_tokens
        self.factor = 1.0
        self._t = 0.0  # the instant the state below describes
        self._v = 0.0  # engine steps decoded so far (every decoding sequence advanced by as many tokens)
        self._stall_until = 0.0  # decoding is stalled by prefills until then
        self._decoding = 0
        self._sum_join = 0.0  # sum of v_join over decoding sequences (KV use in O(1))
        self._kv_used = 0
        self._heap: list[tuple[float, int]] = []  # (v at which the sequence ends, rid)
        self._prefills: deque[_Seq] = deque()  # admitted, prefilling one after another
        self._waiting: deque[_Seq] = deque()
        self._seqs: dict[int, _Seq] = {}
        self._next = 0
        self.peak = 0
        self.served = 0
        self.rejected = 0
        self._dec_prompts = 0  # prompt tokens of the admitted sequences (in the KV cache)
        # the time-to-first-token histogram vLLM exports (cumulative counts per TTFT_BUCKETS_S bound)
        self.ttft_buckets = [0] * len(TTFT_BUCKETS_S)
        self.ttft_count = 0
        self.ttft_sum = 0.0

    # -- what the driver asks ------------------------------------------------------------------

    @property
    def running(self) -> int:
        return self._decoding + len(self._prefills)

    @property
    def waiting(self) -> int:
        """Requests in the scheduler's queue (as of the last ``advance``); one still in its fixed
        overhead (the network, tokenizing) has not reached it yet, as in vLLM's gauge."""
        t = self._t + _EPS
        return sum(1 for s in self._waiting if s.state == _WAITING and s.ready_s <= t)

    @property
    def in_flight(self) -> int:
        return len(self._seqs)

    def step_s(self, batch: int | None = None) -> float:
        """Seconds per engine step with ``batch`` sequences decoding (default: as now)."""
        b = self._decoding if batch is None else batch
        m = self.max_num_seqs
        grow = (self.batch_slowdown - 1.0) * (b - 1) / (m - 1) if m > 1 and b > 1 else 0.0
        return self.factor * (1.0 + grow) / self.tokens_per_s

    def submit(
        self,
        now_s: float,
        prompt_tokens: int,
        output_tokens: int,
        *,
        reserve_tokens: int = 0,
        key: str = "",
        sample: float = 1.0,
    ) -> Accepted | Refused:
        kv = prompt_tokens + output_tokens
        if self.kv_cache_tokens is not None and kv > self.kv_cache_tokens:
            self.rejected += 1
            return Refused(400, False, None, f"{kv} tokens do not fit the KV cache of {self.kv_cache_tokens}")
        self.advance(now_s)
        self._next += 1
        seq = _Seq(self._next, prompt_tokens, output_tokens, now_s, now_s + self.overhead_s * self.factor, kv)
        self._seqs[seq.rid] = seq
        self._waiting.append(seq)
        if len(self._seqs) > self.peak:
            self.peak = len(self._seqs)
        return Accepted(seq.rid, None, self.step_s(max(self._decoding, 1)))

    def finish(self, now_s: float, rid: int, *, completed: bool = True) -> None:
        """The request left: a sequence still waiting or running is aborted and frees its slot."""
        seq = self._seqs.pop(rid, None)
        if seq is None:
            return
        self.advance(now_s)
        if seq.state == _DECODE:
            self._decoding -= 1
            self._sum_join -= seq.v_join
            self._dec_prompts -= seq.prompt
            self._kv_used -= seq.kv
        elif seq.state == _PREFILL:
            self._kv_used -= seq.kv  # its prefill still runs to its end (the stall is spent)
            self._dec_prompts -= seq.prompt
        seq.state = _GONE

    def started(self, rid: int) -> bool:
        """Whether ``rid``'s first token is out (as of the last ``advance``)."""
        seq = self._seqs.get(rid)
        return seq is None or seq.state == _DECODE or seq.state == _GONE

    def done(self, rid: int) -> bool:
        """Whether ``rid``'s last token is out (or it was aborted)."""
        seq = self._seqs.get(rid)
        return seq is None or seq.state == _GONE

    def tokens_out(self, rid: int) -> int:
        """Tokens of ``rid`` out as of the last ``advance``."""
        seq = self._seqs.get(rid)
        if seq is None:
            return 0
        if seq.state == _DECODE:
            return min(seq.n_out, 1 + int(self._v - seq.v_join + _EPS))
        return 0 if seq.state != _GONE else seq.n_out

    def due_s(self, rid: int, tokens: int) -> float:
        """When ``rid`` should have ``tokens`` tokens out if nothing else changes (an estimate the
        mock sleeps on; the milestones from ``advance`` are exact)."""
        seq = self._seqs.get(rid)
        if seq is None:
            return self._t
        if seq.state == _DECODE:
            target = seq.v_join + min(tokens, seq.n_out) - 1
            start = self._stall_until if self._stall_until > self._t else self._t
            return start + max(target - self._v, 0.0) * self.step_s()
        if seq.state == _PREFILL:
            return seq.first_s
        return self.next_event_s()

    def next_event_s(self) -> float:
        """The next instant something happens (a prefill ends, a sequence ends, one is admitted)."""
        t = self._t
        best = math.inf
        if self._prefills:
            best = self._prefills[0].first_s
        heap = self._heap
        seqs = self._seqs
        while heap and heap[0][1] not in seqs:
            heapq.heappop(heap)
        if heap and self._decoding:
            start = self._stall_until if self._stall_until > t else t
            end = start + max(heap[0][0] - self._v, 0.0) * self.step_s()
            if end < best:
                best = end
        head = self._head()
        if head is not None and self._fits(head):
            ready = head.ready_s if head.ready_s > t else t
            if ready < best:
                best = ready
        return best

    def set_factor(self, factor: float) -> None:
        self.factor = factor

    def grow(self, units: int) -> None:
        """More of the same hardware: ``units`` more sequences and prefill in proportion."""
        self.prefill_tokens_per_s *= (self.max_num_seqs + units) / self.max_num_seqs
        self.max_num_seqs += units

    def rate_limits(self, now_s: float, key: str = "") -> RateLimitState | None:
        return None  # a self-hosted server sends no rate-limit headers

    def gauges(self) -> dict[str, float]:
        """vLLM's gauges: sequences running and waiting, and the share of the KV cache holding
        tokens (prompts and what was generated so far; without a cache size, the share of slots)."""
        capacity = self.kv_cache_tokens
        if capacity:
            generated = self._decoding * (self._v + 1.0) - self._sum_join
            in_use = min(1.0, (generated + self._dec_prompts) / capacity)
        else:
            in_use = self.running / self.max_num_seqs
        return {"running": float(self.running), "waiting": float(self.waiting), "kv_cache_usage": in_use}

    # -- the engine ----------------------------------------------------------------------------

    def _head(self) -> _Seq | None:
        waiting = self._waiting
        while waiting and waiting[0].state != _WAITING:
            waiting.popleft()
        return waiting[0] if waiting else None

    def _fits(self, seq: _Seq) -> bool:
        if self.running >= self.max_num_seqs:
            return False
        return self.kv_cache_tokens is None or self._kv_used + seq.kv <= self.kv_cache_tokens

    def _decode_to(self, t: float) -> None:
        """Move the clock to ``t`` (no event in between): decoding runs outside the stall."""
        start = self._stall_until if self._stall_until > self._t else self._t
        if self._decoding and t > start:
            self._v += (t - start) / self.step_s()
        self._t = t

    def advance(self, now_s: float) -> list[Milestone]:
        """Run the engine to ``now_s``; the milestones reached on the way, in order."""
        out: list[Milestone] = []
        seqs = self._seqs
        heap = self._heap
        while True:
            t = self._t
            # the next event: a prefill ending, a decoding sequence ending, the head admitted
            kind = 0
            best = math.inf
            if self._prefills:
                best, kind = self._prefills[0].first_s, 1
            while heap and heap[0][1] not in seqs:
                heapq.heappop(heap)
            if heap and self._decoding:
                start = self._stall_until if self._stall_until > t else t
                end = start + max(heap[0][0] - self._v, 0.0) * self.step_s()
                if end < best:
                    best, kind = end, 2
            head = self._head()
            if head is not None and self._fits(head):
                ready = head.ready_s if head.ready_s > t else t
                if ready < best:
                    best, kind = ready, 3
            if kind == 0 or best > now_s:
                self._decode_to(max(now_s, t))
                return out
            self._decode_to(best)
            if kind == 1:
                seq = self._prefills.popleft()
                if seq.state == _GONE:
                    continue
                self._observe_ttft(best - seq.arrived_s)
                out.append((seq.rid, FIRST, best))
                if seq.n_out <= 1:
                    self._end(seq, best, out)
                else:
                    seq.state = _DECODE
                    seq.v_join = self._v
                    self._decoding += 1
                    self._sum_join += seq.v_join
                    heapq.heappush(heap, (seq.v_join + seq.n_out - 1, seq.rid))
            elif kind == 2:
                _, rid = heapq.heappop(heap)
                seq = seqs[rid]
                self._decoding -= 1
                self._sum_join -= seq.v_join
                self._end(seq, best, out)
            else:
                seq = self._waiting.popleft()
                seq.state = _PREFILL
                self._kv_used += seq.kv
                self._dec_prompts += seq.prompt
                begin = self._stall_until if self._stall_until > best else best
                # The decoding batch stalls for this prefill: progress so far is banked first.
                self._stall_until = begin + self.factor * seq.prompt / self.prefill_tokens_per_s
                seq.first_s = self._stall_until
                self._prefills.append(seq)

    def _observe_ttft(self, ttft_s: float) -> None:
        i = bisect.bisect_left(TTFT_BUCKETS_S, ttft_s)
        buckets = self.ttft_buckets
        for j in range(i, len(buckets)):
            buckets[j] += 1
        self.ttft_count += 1
        self.ttft_sum += ttft_s

    def _end(self, seq: _Seq, t: float, out: list[Milestone]) -> None:
        seq.state = _GONE
        self._dec_prompts -= seq.prompt
        seq.done_s = t
        self._kv_used -= seq.kv
        self.served += 1
        out.append((seq.rid, DONE, t))
