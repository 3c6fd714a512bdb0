"""Quota policy on a fake clock with local counters: limits resolved per tier/tenant/key, typed 429s
with the right codes and headers, and reconciliation with the actual usage (streams included)."""

import pytest

from seawall.core.errors import RateLimited, UpstreamError
from seawall.core.types import Criticality, Principal, Response, Usage
from seawall.edges.quota import QuotaService
from seawall.policies.quota import QuotaPolicy, QuotaTable
from seawall.testing import FakeClock, make_request

P = Principal("k1", "acme", "free", Criticality.SHEDDABLE)
BODY = b'{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}'


def policy(clock, tiers=None, tenants=None, keys=None, **service_kw) -> QuotaPolicy:
    table = QuotaTable(tiers or {}, tenants or {}, keys or {})
    return QuotaPolicy(table, QuotaService(clock=clock, **service_kw), clock=clock)


def answer(usage: Usage | None = Usage(20, 10)):
    async def handler(request):
        return Response(200, b"{}", usage=usage)

    return handler


def headers(response_or_error) -> dict[str, str]:
    return dict(response_or_error.headers or [])


def test_table_merges_tier_then_tenant_then_key():
    table = QuotaTable(
        {"free": {"key": {"requests_per_min": 10, "tokens_per_min": 1000}, "tenant": {"requests_per_min": 100}}},
        {"acme": {"key": {"requests_per_min": 20}}},
        {"k1": {"tokens_per_min": None}},  # explicitly unlimited for this key
    )
    key_scope, tenant_scope = table.scopes(P)
    assert (key_scope.kind, key_scope.limits.requests_per_min, key_scope.limits.tokens_per_min) == ("key", 20, None)
    assert (tenant_scope.kind, tenant_scope.limits.requests_per_min) == ("tenant", 100)
    other = Principal("k2", "other", "api", Criticality.CRITICAL)
    assert table.scopes(other) == ()
    assert table.scopes(P) is table.scopes(P)  # cached


async def test_headers_on_success_and_refusal_with_retry_after():
    clock = FakeClock()
    pol = policy(clock, tiers={"free": {"key": {"requests_per_min": 2, "tokens_per_min": 10_000}}})
    r = await pol(make_request(BODY, principal=P, now_s=clock.now()), answer())
    h = headers(r)
    assert h["x-ratelimit-limit-requests"] == "2" and h["x-ratelimit-remaining-requests"] == "1"
    assert h["x-ratelimit-reset-requests"] == "30s" and h["x-ratelimit-limit-tokens"] == "10000"
    await pol(make_request(BODY, principal=P, now_s=clock.now()), answer())
    with pytest.raises(RateLimited) as err:
        await pol(make_request(BODY, principal=P, now_s=clock.now()), answer())
    e = err.value
    assert (e.status, e.code, e.reason) == (429, "requests_per_min_exceeded", "quota_requests")
    assert e.retry_after_s == pytest.approx(30.0) and e.should_retry is None
    assert headers(e)["x-ratelimit-remaining-requests"] == "0"


async def test_daily_budget_says_do_not_retry():
    clock = FakeClock()
    pol = policy(clock, tenants={"acme": {"tenant": {"tokens_per_day": 150}}})
    await pol(make_request(BODY, principal=P, now_s=clock.now()), answer(Usage(100, 30)))
    with pytest.raises(RateLimited) as err:
        await pol(make_request(BODY, principal=P, now_s=clock.now()), answer())
    assert err.value.code == "daily_token_budget_exceeded" and err.value.should_retry is False
    assert "tenant acme" in err.value.message


async def test_tokens_reconciled_with_actual_usage():
    clock = FakeClock()
    pol = policy(clock, keys={"k1": {"tokens_per_min": 300}})
    estimate = int(len(BODY) / 4) + 100
    # Each answer used 20 tokens although ~120 were estimated: the difference comes back, so far more
    # than 300 // estimate requests fit into the minute.
    fitted = 0
    while fitted < 50:
        try:
            await pol(make_request(BODY, principal=P, now_s=clock.now()), answer(Usage(15, 5)))
        except RateLimited:
            break
        fitted += 1
    assert fitted == (300 - estimate) // 20 + 1 and fitted > 300 // estimate


async def test_upstream_failure_refunds_tokens_and_carries_headers():
    clock = FakeClock()
    pol = policy(clock, keys={"k1": {"tokens_per_min": 200, "concurrent_requests": 1}})

    async def fail(request):
        raise UpstreamError("boom")

    for _ in range(5):  # without the refund the second would already be refused
        with pytest.raises(UpstreamError) as err:
            await pol(make_request(BODY, principal=P, now_s=clock.now()), fail)
        assert "x-ratelimit-limit-tokens" in headers(err.value)


async def test_concurrency_held_until_the_stream_ends_then_reconciled():
    clock = FakeClock()
    pol = policy(clock, keys={"k1": {"concurrent_requests": 1, "tokens_per_min": 1000}})

    async def streaming(request):
        response = Response(200, stream=None)

        async def events():
            yield b"data: 1\n\n"
            response.usage = Usage(5, 5)
            yield b"data: [DONE]\n\n"

        response.stream = events()
        return response

    r = await pol(make_request(BODY, principal=P, now_s=clock.now()), streaming)
    with pytest.raises(RateLimited) as err:  # the stream is still open
        await pol(make_request(BODY, principal=P, now_s=clock.now()), answer())
    assert err.value.code == "concurrent_requests_exceeded"
    assert [e async for e in r.stream] == [b"data: 1\n\n", b"data: [DONE]\n\n"]
    r2 = await pol(make_request(BODY, principal=P, now_s=clock.now()), answer())
    # 1000 - estimate(first, reconciled to 10) - estimate(second) left
    estimate = int(len(BODY) / 4) + 100
    assert headers(r2)["x-ratelimit-remaining-tokens"] == str(1000 - 10 - estimate)


async def test_request_that_can_never_fit_is_told_not_to_retry():
    clock = FakeClock()
    pol = policy(clock, keys={"k1": {"tokens_per_min": 50}})
    with pytest.raises(RateLimited) as err:
        await pol(make_request(BODY, principal=P, now_s=clock.now()), answer())
    assert err.value.should_retry is False and "lower max_tokens" in err.value.message


async def test_admin_and_unlimited_principals_pass_untouched():
    clock = FakeClock()
    pol = policy(clock, tiers={"free": {"key": {"requests_per_min": 1}}})
    admin = Principal("admin", "admin", "admin", Criticality.CRITICAL_PLUS, admin=True)
    for _ in range(3):
        r = await pol(make_request(BODY, principal=admin, now_s=clock.now()), answer())
        assert "x-ratelimit-limit-requests" not in headers(r)


async def test_local_quota_split_between_worker_processes():
    clock = FakeClock()
    pol = policy(clock, keys={"k1": {"requests_per_min": 10}}, processes=2)
    ok = 0
    for _ in range(10):
        try:
            await pol(make_request(BODY, principal=P, now_s=clock.now()), answer())
            ok += 1
        except RateLimited:
            pass
    assert ok == 5
