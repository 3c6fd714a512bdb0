"""The JWKS refresher against a real aiohttp server on loopback: load, rotate, and fail static.

The refresher's schedule (refresh period, backoff, the minimum gap between early fetches) runs on a
:class:`~seawall.testing.FakeClock`: the tests move time, never sleep. Only the fetch itself is real
I/O (and its own timeout, in one test, real time)."""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from seawall.auth.jwt import JwtSettings, JwtVerifier
from seawall.core.errors import AuthenticationFailed
from seawall.core.types import Criticality
from seawall.edges.jwks import JwksRefresher
from seawall.testing import FakeClock, SeededRng

NOW = 1_700_000_000.0
TIERS = {"api": Criticality.CRITICAL, "free": Criticality.SHEDDABLE}
TEST_BUDGET_S = 10.0


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


def jwk(private: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(private.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def token(private: rsa.RSAPrivateKey, kid: str, sub: str) -> str:
    claims = {"sub": sub, "org_id": "acme", "tier": "api", "exp": NOW + 3600}
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})


@dataclass
class JwksServer:
    """Serves ``document`` at /jwks; ``mode`` switches to failures; ``stop()`` takes it away."""

    runner: web.AppRunner
    url: str
    document: dict[str, Any] = field(default_factory=dict)
    mode: str = "ok"  # ok | error | garbage | hang
    hits: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self) -> None:
        self.release.set()
        await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[JwksServer]:
    async def handler(request: web.Request) -> web.Response:
        srv.hits += 1
        if srv.mode == "error":
            return web.Response(status=503, text="down for maintenance")
        if srv.mode == "garbage":
            return web.Response(text="<html>login</html>", content_type="text/html")
        if srv.mode == "hang":
            await srv.release.wait()
        return web.json_response(srv.document)

    app = web.Application()
    app.router.add_get("/jwks", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    srv = JwksServer(runner, f"http://127.0.0.1:{port}/jwks")
    yield srv
    await srv.stop()


def make_verifier(url: str) -> JwtVerifier:
    return JwtVerifier(JwtSettings(jwks_url=url), TIERS, secret=None)


async def until(condition: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - the state lives in another object; polling is the test
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), 5.0)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def advance_until(clock: FakeClock, condition: Callable[[], bool], what: str, step_s: float,
                        max_s: float = 3600.0) -> None:
    """Move the clock in steps of ``step_s``, letting the refresher run between steps, until
    ``condition`` holds (at most ``max_s`` of the clock's time)."""
    moved = 0.0
    while not condition():
        if moved >= max_s:
            pytest.fail(f"{what} did not happen within {max_s} s of the clock's time")
        await clock.until_asleep()
        clock.advance(step_s)
        moved += step_s
        await asyncio.sleep(0.001)  # the refresher's fetch is real I/O


def refresher_for(url: str, verifier: JwtVerifier, clock: FakeClock, **kwargs: Any) -> JwksRefresher:
    return JwksRefresher(url, verifier, clock=clock, rng=SeededRng(1), **{"session": None, **kwargs})


def bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Fail the test, rather than hang the suite, if it runs past ``TEST_BUDGET_S``."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        async with asyncio.timeout(TEST_BUDGET_S):
            await test(*args, **kwargs)

    return run


@bounded
async def test_keys_survive_the_login_service_going_away(server: JwksServer, rsa_keys: Any) -> None:
    server.document = {"keys": [jwk(rsa_keys[0], "k1")]}
    verifier = make_verifier(server.url)
    clock = FakeClock()
    refresher = refresher_for(server.url, verifier, clock, refresh_s=60)
    assert refresher.state["status"] == "starting"
    refresher.start()
    try:
        await until(lambda: refresher.state["status"] == "ok", "the first JWKS load")
        assert verifier.verify(token(rsa_keys[0], "k1", "alice"), NOW).key_id == "jwt:alice"

        await server.stop()
        await advance_until(clock, lambda: refresher.state["status"] == "degraded", "the refresher to notice", 6)
        state = refresher.state
        assert state["last_error"] and state["last_success_age_s"] is not None
        assert verifier.jwks_size == 1
        # A token never seen before (so not from the cache) still verifies from the kept keys.
        assert verifier.verify(token(rsa_keys[0], "k1", "bob"), NOW).key_id == "jwt:bob"
        # An hour of failed retries later (backoff capped at 60 s), still serving the same keys.
        await advance_until(clock, lambda: refresher.state["last_success_age_s"] >= 3600, "an hour", 30)
        assert refresher.state["status"] == "degraded"
        assert verifier.verify(token(rsa_keys[0], "k1", "carol"), NOW).tenant == "acme"
    finally:
        await refresher.stop()


@pytest.mark.parametrize("mode", ["error", "garbage"])
@bounded
async def test_bad_answers_keep_the_old_keys_and_recover(
    server: JwksServer, rsa_keys: Any, mode: str
) -> None:
    server.document = {"keys": [jwk(rsa_keys[0], "k1")]}
    verifier = make_verifier(server.url)
    clock = FakeClock()
    async with aiohttp.ClientSession() as session:
        refresher = refresher_for(server.url, verifier, clock, session=session, refresh_s=60)
        refresher.start()
        try:
            await until(lambda: refresher.state["status"] == "ok", "the first JWKS load")
            server.mode = mode
            await advance_until(clock, lambda: refresher.state["status"] == "degraded",
                                f"a {mode} answer to be noticed", 6)
            assert verifier.verify(token(rsa_keys[0], "k1", "dave"), NOW).tenant == "acme"
            hits = server.hits
            server.mode = "ok"
            await advance_until(clock, lambda: refresher.state["status"] == "ok", "recovery", 0.5)
            assert refresher.state["last_error"] is None
            assert server.hits == hits + 1  # the first retry after a failure comes within 1 s, not 60
        finally:
            await refresher.stop()
        assert not session.closed  # a shared session belongs to its owner


@bounded
async def test_retries_back_off_exponentially_up_to_the_refresh_period(server: JwksServer) -> None:
    """Seeded jitter: each wait lies in [cap/2, cap], the cap doubling from 1 s up to min(refresh_s, 60)."""
    server.mode = "error"
    clock = FakeClock()
    refresher = refresher_for(server.url, make_verifier(server.url), clock, refresh_s=20)
    refresher.start()
    attempts: list[float] = []
    try:
        while len(attempts) < 9:
            await until(lambda: server.hits > len(attempts), "the next attempt")
            attempts.append(clock.now())
            await advance_until(clock, lambda: server.hits > len(attempts), "a retry", 0.1, max_s=30)
        waits = [round(b - a, 2) for a, b in itertools.pairwise(attempts)]
        for n, wait in enumerate(waits):
            cap = min(20.0, 2.0 ** n)
            assert cap / 2 - 0.1 <= wait <= cap + 0.1, (n, waits)
        assert max(waits) > 10  # the cap did reach the refresh period
    finally:
        await refresher.stop()


@bounded
async def test_a_malformed_key_set_is_refused(server: JwksServer, rsa_keys: Any) -> None:
    server.document = {"keys": [jwk(rsa_keys[0], "k1")]}
    verifier = make_verifier(server.url)
    refresher = refresher_for(server.url, verifier, FakeClock(), refresh_s=60)
    refresher.start()
    try:
        await until(lambda: refresher.state["status"] == "ok", "the first JWKS load")
        server.document = {"keys": []}
        assert await refresher.refresh_once() is False
        assert refresher.state["status"] == "degraded" and "no usable" in refresher.state["last_error"]
        assert verifier.verify(token(rsa_keys[0], "k1", "erin"), NOW).tenant == "acme"
    finally:
        await refresher.stop()


@bounded
async def test_a_hanging_server_times_out(server: JwksServer) -> None:
    server.mode = "hang"
    verifier = make_verifier(server.url)
    refresher = refresher_for(server.url, verifier, FakeClock(), refresh_s=60, timeout_s=0.2)
    refresher.start()
    try:
        await until(lambda: refresher.state["status"] != "starting", "the first attempt to end")
        state = refresher.state
        assert state["status"] == "degraded" and "0.2 s" in state["last_error"]
        assert state["last_success_age_s"] is None
    finally:
        await refresher.stop()


@bounded
async def test_unknown_kid_triggers_an_early_refresh(server: JwksServer, rsa_keys: Any) -> None:
    """The issuer rotates to k2; the first k2 token fails, and the next one succeeds long before
    the regular 60 s refresh, because the unknown kid asked for a fetch."""
    old, new = rsa_keys
    server.document = {"keys": [jwk(old, "k1")]}
    verifier = make_verifier(server.url)
    clock = FakeClock()
    refresher = refresher_for(server.url, verifier, clock, refresh_s=60, min_refresh_gap_s=5)
    refresher.start()
    try:
        await until(lambda: server.hits == 1 and refresher.state["status"] == "ok", "the first load")
        server.document = {"keys": [jwk(old, "k1"), jwk(new, "k2")]}
        await clock.until_asleep()
        clock.advance(5)  # past the minimum gap between fetches, far from the next regular one
        with pytest.raises(AuthenticationFailed, match="unknown"):
            verifier.verify(token(new, "k2", "frank"), NOW)
        await until(lambda: verifier.jwks_size == 2, "the rotated key set")
        assert verifier.verify(token(new, "k2", "frank"), NOW).key_id == "jwt:frank"
        assert server.hits == 2 and refresher.early_refreshes == 1
    finally:
        await refresher.stop()
    assert verifier.on_unknown_kid is None


@bounded
async def test_unknown_kids_cannot_make_it_hammer_the_issuer(server: JwksServer, rsa_keys: Any) -> None:
    server.document = {"keys": [jwk(rsa_keys[0], "k1")]}
    verifier = make_verifier(server.url)
    clock = FakeClock()
    refresher = refresher_for(server.url, verifier, clock, refresh_s=60, min_refresh_gap_s=30)
    refresher.start()
    try:
        await until(lambda: server.hits == 1 and refresher.state["status"] == "ok", "the first load")
        await clock.until_asleep()
        for i in range(50):
            clock.advance(0.5)  # 25 s in all: still within the minimum gap
            with pytest.raises(AuthenticationFailed):
                verifier.verify(token(rsa_keys[1], f"forged-{i}", "mallory"), NOW)
        assert refresher.early_refreshes == 0
        clock.advance(5)
        with pytest.raises(AuthenticationFailed):
            verifier.verify(token(rsa_keys[1], "forged-late", "mallory"), NOW)
        assert refresher.early_refreshes == 1  # the gap is over: one fetch, for all that come now
        await until(lambda: server.hits == 2, "the early fetch")
    finally:
        await refresher.stop()


@bounded
async def test_unreachable_from_the_start(rsa_keys: Any) -> None:
    """Nothing listens on the port: degraded, no keys, and JWTs are refused with a clear reason."""
    probe = web.AppRunner(web.Application())
    await probe.setup()
    site = web.TCPSite(probe, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{probe.addresses[0][1]}/jwks"
    await probe.cleanup()

    verifier = make_verifier(url)
    refresher = refresher_for(url, verifier, FakeClock(), refresh_s=60)
    refresher.start()
    try:
        await until(lambda: refresher.state["status"] == "degraded", "the failed first fetch")
        assert refresher.state["last_success_age_s"] is None
        with pytest.raises(AuthenticationFailed, match="unknown"):
            verifier.verify(token(rsa_keys[0], "k1", "gina"), NOW)
    finally:
        await refresher.stop()
