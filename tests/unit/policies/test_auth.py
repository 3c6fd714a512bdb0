import pytest

from seawall.algorithms.gcra import KeyedGcra
from seawall.auth.keys import (
    KeyRecord,
    KeyRefresher,
    KeySnapshot,
    NegativeCache,
    hash_key,
    new_key,
    split_key,
)
from seawall.core.compose import compose
from seawall.core.errors import AuthenticationFailed, RateLimited
from seawall.core.types import Criticality, Response
from seawall.policies.auth import AuthPolicy, extract_credential
from seawall.testing import FakeClock, SeededRng, make_request

CRIT = {"gold": Criticality.CRITICAL_PLUS}.__getitem__


class Store:
    async def version(self):
        return 1

    async def load(self):
        return 1, []


def _auth(clock, burst=3, key=None):
    refresher = KeyRefresher(Store(), CRIT, clock=clock)
    if key:
        rec = KeyRecord(split_key(key), hash_key(key), "acme", "gold", None, 0.0)
        refresher.snapshot = KeySnapshot.build([rec], 1, CRIT)
    pokes = []
    refresher.poke = lambda: pokes.append(1)  # type: ignore[method-assign]
    failures = []
    policy = AuthPolicy(refresher, clock=clock, failure_throttle=KeyedGcra(1.0, burst),
                        negative_cache=NegativeCache(100, 10.0), on_failure=failures.append)
    return policy, pokes, failures


async def _ok(request):
    return Response(200, request.principal.tenant.encode())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer   abc  "}, "abc"),
        ({"authorization": "Basic abc"}, None),
        ({"x-api-key": "k"}, "k"),
        ({"x-api-key": "  "}, None),
        ({}, None),
    ],
)
def test_extract_credential(headers, expected):
    assert extract_credential(headers) == expected


async def test_valid_key_sets_principal():
    clock = FakeClock()
    _, key = new_key(SeededRng(1).token_hex)
    policy, _, _ = _auth(clock, key=key)
    handler = compose([policy], _ok)
    response = await handler(make_request(headers={"authorization": f"Bearer {key}"}))
    assert response.body == b"acme"
    response = await handler(make_request(headers={"x-api-key": key}))
    assert response.status == 200


async def test_failures_are_throttled_per_address_but_valid_keys_still_work():
    clock = FakeClock()
    _, key = new_key(SeededRng(1).token_hex)
    policy, _, failures = _auth(clock, burst=3, key=key)
    handler = compose([policy], _ok)
    bad = {"authorization": "Bearer nope"}
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await handler(make_request(headers=bad, client_addr="10.0.0.9"))
    with pytest.raises(RateLimited) as exc:
        await handler(make_request(headers=bad, client_addr="10.0.0.9"))
    assert exc.value.retry_after_s and exc.value.retry_after_s >= 1
    assert failures.count("invalid") == 3 and "throttled" in failures
    # another address is unaffected; a valid key from the throttled address still works
    with pytest.raises(AuthenticationFailed):
        await handler(make_request(headers=bad, client_addr="10.0.0.10"))
    ok = await handler(make_request(headers={"authorization": f"Bearer {key}"}, client_addr="10.0.0.9"))
    assert ok.status == 200
    clock.advance(2.0)  # the bucket refills at 1/s
    with pytest.raises(AuthenticationFailed):
        await handler(make_request(headers=bad, client_addr="10.0.0.9"))


async def test_unknown_well_formed_key_pokes_refresh_once():
    clock = FakeClock()
    policy, pokes, _ = _auth(clock, burst=100)
    _, stranger = new_key(SeededRng(9).token_hex)
    handler = compose([policy], _ok)
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            await handler(make_request(headers={"authorization": f"Bearer {stranger}"}))
    assert len(pokes) == 1
    clock.advance(11)
    with pytest.raises(AuthenticationFailed):
        await handler(make_request(headers={"authorization": f"Bearer {stranger}"}))
    assert len(pokes) == 2


async def test_missing_credential_is_401_with_code():
    policy, _, _ = _auth(FakeClock())
    with pytest.raises(AuthenticationFailed) as exc:
        await compose([policy], _ok)(make_request())
    assert exc.value.code == "missing_api_key" and exc.value.status == 401
