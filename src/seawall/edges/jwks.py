"""Keeps a :class:`~seawall.auth.jwt.JwtVerifier`'s JWKS fresh in the background, failing static.

The login service (the JWKS host) may go down; users already holding tokens must not notice. So a
failed fetch never clears keys: the verifier keeps the last good set, the refresher retries with
jittered exponential backoff (1 s doubling, capped at ``min(refresh_s, 60 s)``), and ``state``
reports ``degraded`` for ``/readyz``. A token naming an unknown ``kid`` (the issuer rotated keys)
triggers an early fetch, at most once per ``min_refresh_gap_s`` so forged kids cannot make us
hammer the issuer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from seawall.auth.jwt import JwtVerifier
from seawall.core.background import Background, sleep_or_wake
from seawall.env import Clock, Rng, SystemRng

__all__ = ["JwksRefresher"]

log = logging.getLogger("seawall.auth")

MAX_JWKS_BYTES = 1024 * 1024
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0


class JwksRefresher:
    """Fetch ``url`` every ``refresh_s`` (±10% jitter) and hand the JWKS to ``verifier.set_jwks``.

    ``session``: a shared aiohttp session, or ``None`` to own one (opened in ``start``, closed in
    ``stop``). ``timeout_s`` bounds each fetch end to end.
    """

    def __init__(
        self,
        url: str,
        verifier: JwtVerifier,
        *,
        session: aiohttp.ClientSession | None,
        clock: Clock,
        refresh_s: float,
        timeout_s: float = 5.0,
        min_refresh_gap_s: float = 30.0,
        rng: Rng | None = None,
    ) -> None:
        if refresh_s <= 0 or timeout_s <= 0:
            raise ValueError("refresh_s and timeout_s must be positive")
        self.url = url
        self.verifier = verifier
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.min_refresh_gap_s = min(min_refresh_gap_s, refresh_s)
        self._session = session
        self._own_session = session is None
        self._clock = clock
        self._rng = rng if rng is not None else SystemRng()
        self._task = Background("jwks-refresher")
        self._wake = asyncio.Event()
        self.early_refreshes = 0  # fetches asked for before their time (unknown kids), for tests and stats
        self._completed = 0  # fetches finished, successfully or not
        self._failures = 0  # consecutive failed fetches
        self._last_attempt_s: float | None = None
        self._last_success_s: float | None = None
        self._last_error: str | None = None

    @property
    def state(self) -> dict[str, Any]:
        """For ``/readyz``: ``starting`` until the first fetch ends, then ``ok`` or ``degraded``."""
        if self._completed == 0:
            status = "starting"
        else:
            status = "ok" if self._failures == 0 else "degraded"
        age = None if self._last_success_s is None else round(self._clock.now() - self._last_success_s, 3)
        return {"status": status, "last_success_age_s": age, "last_error": self._last_error}

    def start(self) -> None:
        """Begin refreshing (first fetch at once); idempotent. Needs a running event loop."""
        if not self._task.running:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self.verifier.on_unknown_kid = self._on_unknown_kid
            self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()
        if self.verifier.on_unknown_kid == self._on_unknown_kid:
            self.verifier.on_unknown_kid = None
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def request_refresh(self) -> None:
        """Fetch soon (coalesced), unless a fetch happened within ``min_refresh_gap_s``."""
        last = self._last_attempt_s
        if last is None or self._clock.now() - last >= self.min_refresh_gap_s:
            if not self._wake.is_set():
                self.early_refreshes += 1
            self._wake.set()

    def _on_unknown_kid(self, kid: str) -> None:
        self.request_refresh()

    async def refresh_once(self) -> bool:
        """One fetch; True if a new key set was installed. Failures only update ``state``."""
        self._last_attempt_s = self._clock.now()
        try:
            count = self.verifier.set_jwks(await self._fetch())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure: keep the keys we have (fail static)
            self._completed += 1
            if self._failures == 0:
                log.warning("JWKS fetch from %s failed, keeping the last keys: %s", self.url, exc)
            self._failures += 1
            self._last_error = f"{type(exc).__name__}: {exc}"[:200]
            return False
        self._completed += 1
        if self._failures:
            log.info("JWKS fetch from %s works again (%d keys)", self.url, count)
        self._failures = 0
        self._last_error = None
        self._last_success_s = self._clock.now()
        return True

    async def _fetch(self) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("refresher not started")
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with self._session.get(self.url, timeout=timeout, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        except TimeoutError:
            raise TimeoutError(f"no complete answer within {self.timeout_s} s") from None
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("JWKS is not a JSON object")
        return document

    def _next_delay_s(self) -> float:
        if self._failures == 0:
            return self.refresh_s * (0.9 + 0.2 * self._rng.random())
        cap_s = min(self.refresh_s, BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** min(self._failures - 1, 30))
        return cap_s * (0.5 + 0.5 * self._rng.random())  # jitter with a floor: never a tight loop

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self.refresh_once()
            await sleep_or_wake(self._clock, self._next_delay_s(), self._wake)
