"""The upstream behaviour models (seawall.mock.servers), driven by hand with explicit instants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.mock.servers import DONE, FIRST, Accepted, BatchingServer, HostedServer, Refused, SlotsServer


def _drain(server: BatchingServer, until_s: float = math.inf) -> list[tuple[int, int, float]]:
    """Drive the server from event to event (as the simulator does); finish what is done."""
    out = []
    while (t := server.next_event_s()) < math.inf and t <= until_s:
        for rid, kind, at in server.advance(t):
            out.append((rid, kind, at))
            if kind == DONE:
                server.finish(at, rid)
    return out


def _accept(result: Accepted | Refused) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


# -- fixed slots ---------------------------------------------------------------------------------


def test_slots_refuse_beyond_capacity_and_free_on_finish() -> None:
    s = SlotsServer(2, first_s=0.2, interval_s=0.01, retry_after_s=0.5)
    a, b = _accept(s.submit(0, 10, 5)), _accept(s.submit(0, 10, 5))
    refused = s.submit(0, 10, 5)
    assert isinstance(refused, Refused) and refused.status == 429 and refused.retry_after_s == 0.5
    assert (a.first_s, a.interval_s) == (0.2, 0.01)
    s.finish(1, a.rid)
    s.finish(1, a.rid)  # twice is harmless
    assert s.in_flight == 1 and s.served == 1
    _accept(s.submit(1, 10, 5))
    s.set_factor(3.0)
    s.finish(2, b.rid)
    assert _accept(s.submit(2, 10, 5)).first_s == pytest.approx(0.6)


# -- continuous batching -------------------------------------------------------------------------


def test_a_lone_sequence_prefills_then_decodes_at_full_speed() -> None:
    s = BatchingServer(max_num_seqs=4, tokens_per_s=100, overhead_s=0.05, prefill_tokens_per_s=10_000)
    rid = _accept(s.submit(0.0, 500, 11)).rid
    events = _drain(s)
    # overhead 50 ms, prefill 500 / 10k = 50 ms, then 10 more tokens at 10 ms
    assert events == [(rid, FIRST, pytest.approx(0.1)), (rid, DONE, pytest.approx(0.2))]
    assert s.ttft_count == 1 and s.ttft_sum == pytest.approx(0.1)


def test_never_a_429_the_rest_waits_in_fifo_order_and_ttft_grows() -> None:
    s = BatchingServer(max_num_seqs=2, tokens_per_s=100, prefill_tokens_per_s=1e9)
    rids = [_accept(s.submit(0.0, 1, 10)).rid for _ in range(6)]
    assert s.running == 2 and s.waiting == 4
    firsts = {rid: at for rid, kind, at in _drain(s) if kind == FIRST}
    order = sorted(firsts, key=firsts.__getitem__)
    assert order == rids  # first in, first served
    ttfts = [firsts[r] for r in rids]
    assert ttfts[2] > ttfts[0] and ttfts[4] > ttfts[2]  # each pair waits for the one before


def test_time_per_token_grows_with_the_batch() -> None:
    alone = BatchingServer(max_num_seqs=8, tokens_per_s=100, batch_slowdown=3.0, prefill_tokens_per_s=1e9)
    full = BatchingServer(max_num_seqs=8, tokens_per_s=100, batch_slowdown=3.0, prefill_tokens_per_s=1e9)
    _accept(alone.submit(0.0, 1, 101))
    for _ in range(8):
        _accept(full.submit(0.0, 1, 101))
    end_alone = max(at for _, kind, at in _drain(alone) if kind == DONE)
    end_full = max(at for _, kind, at in _drain(full) if kind == DONE)
    assert end_alone == pytest.approx(1.0)  # 100 tokens after the first at 10 ms
    assert end_full == pytest.approx(3.0)  # at 8 of 8 sequences a step takes 3x as long
    assert full.step_s(8) == pytest.approx(0.03) and full.step_s(1) == pytest.approx(0.01)


def test_a_prefill_stalls_the_batch() -> None:
    s = BatchingServer(max_num_seqs=4, tokens_per_s=100, prefill_tokens_per_s=1000)
    first = _accept(s.submit(0.0, 0, 21)).rid  # no prefill: decodes 20 tokens in 0.2 s alone
    s.advance(0.05)
    _accept(s.submit(0.05, 100, 2))  # a 100 ms prefill from 0.05
    done = {rid: at for rid, kind, at in _drain(s) if kind == DONE}
    # 5 steps done before the stall, the 100 ms stall, one step of two sequences, 14 alone
    assert done[first] == pytest.approx(0.15 + s.step_s(2) + 14 * 0.01, rel=1e-6)


def test_an_aborted_sequence_frees_its_slot_for_the_next() -> None:
    s = BatchingServer(max_num_seqs=1, tokens_per_s=10, prefill_tokens_per_s=1e9)
    a = _accept(s.submit(0.0, 1, 100)).rid
    b = _accept(s.submit(0.0, 1, 100)).rid
    s.advance(1.0)
    assert s.tokens_out(a) == 10 and not s.started(b)
    s.finish(1.0, a)  # the client went away: vLLM aborts it
    events = s.advance(1.001)
    assert [(rid, kind) for rid, kind, _ in events] == [(b, FIRST)]
    assert events[0][2] == pytest.approx(1.0)
    assert s.gauges()["running"] == 1 and s.gauges()["waiting"] == 0


def test_the_kv_cache_bounds_admission_and_too_big_is_a_400() -> None:
    s = BatchingServer(max_num_seqs=8, tokens_per_s=100, prefill_tokens_per_s=1e9, kv_cache_tokens=1000)
    a = _accept(s.submit(0.0, 500, 100)).rid
    _accept(s.submit(0.0, 500, 100))
    s.advance(0.0)
    assert s.running == 1 and s.waiting == 1  # 600 + 600 > 1000
    assert 0 < s.gauges()["kv_cache_usage"] <= 1
    refused = s.submit(0.0, 900, 200)
    assert isinstance(refused, Refused) and refused.status == 400
    done_a = next(at for rid, kind, at in _drain(s) if rid == a and kind == DONE)
    assert done_a == pytest.approx(0.99)


def test_due_estimates_match_the_exact_milestones_when_nothing_changes() -> None:
    s = BatchingServer(max_num_seqs=4, tokens_per_s=50, prefill_tokens_per_s=5000, overhead_s=0.01)
    rid = _accept(s.submit(0.0, 100, 30)).rid
    s.advance(0.0)
    assert s.due_s(rid, 1) == pytest.approx(0.01)  # waiting: the next event, its admission
    s.advance(0.011)
    assert s.due_s(rid, 1) == pytest.approx(0.03)  # prefilling: the prefill's end
    s.advance(0.05)
    assert s.tokens_out(rid) == 2 and s.due_s(rid, 30) == pytest.approx(0.03 + 29 * 0.02)


def test_slowdown_multiplies_every_duration() -> None:
    s = BatchingServer(max_num_seqs=4, tokens_per_s=100, overhead_s=0.05, prefill_tokens_per_s=10_000)
    s.set_factor(3.0)
    rid = _accept(s.submit(0.0, 500, 11)).rid
    assert _drain(s) == [(rid, FIRST, pytest.approx(0.3)), (rid, DONE, pytest.approx(0.6))]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 2000), st.integers(0, 50), st.booleans()),
                min_size=1, max_size=40),
       st.integers(1, 6))
def test_every_request_gets_first_then_done_and_the_batch_never_overflows(
    requests: list[tuple[float, int, int, bool]], seqs: int
) -> None:
    s = BatchingServer(max_num_seqs=seqs, tokens_per_s=200, prefill_tokens_per_s=20_000, overhead_s=0.01)
    kept: dict[int, int] = {}
    seen: dict[int, list[int]] = {}
    for at, prompt, out, abort in sorted(requests):
        for rid, kind, t in s.advance(at):
            assert t <= at + 1e-9
            seen.setdefault(rid, []).append(kind)
            if kind == DONE:
                s.finish(t, rid)
        assert s.running <= seqs
        rid = _accept(s.submit(at, prompt, out)).rid
        if abort and kept:
            victim = next(iter(kept))
            kept.pop(victim)
            s.finish(at, victim)
        kept[rid] = out
    for rid, kind, _ in _drain(s):
        seen.setdefault(rid, []).append(kind)
        assert s.running <= seqs
    for rid in kept:
        assert seen[rid] == [FIRST, DONE]
    assert s.in_flight == 0 and s.running == 0 and s.waiting == 0


# -- hosted provider -----------------------------------------------------------------------------


def test_hosted_request_limit_refuses_with_the_time_until_one_is_back() -> None:
    # 3600 a minute, enforced per second: a bucket of 60 refilled at 60/s
    s = HostedServer(requests_per_minute=3600, tokens_per_minute=None, first_s=0.3, interval_s=0.02,
                     soft_concurrency=100)
    for _ in range(60):
        s.finish(0.0, _accept(s.submit(0.0, 10, 10, key="k1")).rid)
    refused = s.submit(0.0, 10, 10, key="k1")
    assert isinstance(refused, Refused) and refused.status == 429
    assert refused.retry_after_s == pytest.approx(1 / 60)
    _accept(s.submit(0.0, 10, 10, key="k2"))  # limits are per key
    state = s.rate_limits(0.5, "k1")
    assert state is not None and state.limit_requests == 3600
    assert state.remaining_requests == 1800  # half a second refilled half the bucket, in the minute's terms
    assert state.reset_requests_s == pytest.approx(0.5)
    _accept(s.submit(1.0, 10, 10, key="k1"))


def test_hosted_token_limit_charges_prompt_plus_max_tokens() -> None:
    s = HostedServer(requests_per_minute=None, tokens_per_minute=360_000, first_s=0.3, interval_s=0.02,
                     soft_concurrency=100)  # 6000 a second
    _accept(s.submit(0.0, 1000, 50, reserve_tokens=5000))
    refused = s.submit(0.0, 1000, 50, reserve_tokens=2000)
    assert isinstance(refused, Refused) and refused.retry_after_s == pytest.approx(1000 / 6000)
    state = s.rate_limits(0.0)
    assert state is not None and state.remaining_tokens == 60_000 and state.limit_tokens == 360_000
    too_big = s.submit(0.0, 1000, 50, reserve_tokens=7000)
    assert isinstance(too_big, Refused) and too_big.status == 400


def test_hosted_latency_and_overload_rise_with_load() -> None:
    s = HostedServer(requests_per_minute=None, tokens_per_minute=None, first_s=0.2, interval_s=0.01,
                     soft_concurrency=10, overloaded_rate=0.05)
    first = _accept(s.submit(0.0, 1, 1))
    assert first.first_s == pytest.approx(0.2 * 1.01)
    for _ in range(8):
        _accept(s.submit(0.0, 1, 1))
    loaded = _accept(s.submit(0.0, 1, 1, sample=0.5))
    assert loaded.first_s == pytest.approx(0.4) and loaded.interval_s == pytest.approx(0.02)
    # the 11th in flight meets an overload share of 0.05 * (1 + 1.1^2); a draw under it is a 503
    over = s.submit(0.0, 1, 1, sample=0.1)
    assert isinstance(over, Refused) and over.overloaded and over.status == 503
    assert s.rate_limits(0.0) is None  # no limits configured: no headers
