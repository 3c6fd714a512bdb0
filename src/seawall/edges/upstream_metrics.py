"""Reads a self-hosted server's Prometheus metrics (``metrics_url``) so its queue feeds admission.

Every ``interval_s`` one GET, bounded end to end by ``timeout_s`` and by ``MAX_METRICS_BYTES``; the
text is parsed with prometheus-client's parser and reduced to one :class:`UpstreamLoad`
(:func:`parse_load`), which ``on_load`` receives (:func:`seawall.policies.upstream_load.report_load`
in the gateway). An endpoint that is slow, down or answers garbage gives no reading: the limit
then runs on latency alone, as without ``metrics_url``, and ``state`` says why for ``/readyz``.

Names understood: vLLM's (``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
``vllm:gpu_cache_usage_perc``, and the newer ``vllm:kv_cache_usage_perc``), TGI's
(``tgi_batch_current_size``, ``tgi_queue_size``) and SGLang's (``sglang:num_running_reqs``,
``sglang:num_queue_reqs``). Series with several label sets (one per model) are summed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from seawall.core.background import Background
from seawall.env import Clock
from seawall.policies.upstream_load import UpstreamLoad

__all__ = ["MAX_METRICS_BYTES", "UpstreamMetricsPoller", "parse_load"]

log = logging.getLogger(__name__)

MAX_METRICS_BYTES = 4 * 1024 * 1024  # a vLLM /metrics page is ~100 kB; anything far bigger is not one

_RUNNING = ("vllm:num_requests_running", "tgi_batch_current_size", "sglang:num_running_reqs")
_WAITING = ("vllm:num_requests_waiting", "tgi_queue_size", "sglang:num_queue_reqs")
_KV = ("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc")


def parse_load(text: str) -> UpstreamLoad | None:
    """The load a metrics page reports, or ``None`` when it has no running/waiting gauges (or is not
    Prometheus text at all)."""
    sums: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in _RUNNING or sample.name in _WAITING or sample.name in _KV:
                    value = float(sample.value)
                    if value != value or value < 0 or value == float("inf"):
                        return None  # NaN, negative or infinite: not a reading to act on
                    sums[sample.name] = sums.get(sample.name, 0.0) + value
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    running = next((sums[n] for n in _RUNNING if n in sums), None)
    waiting = next((sums[n] for n in _WAITING if n in sums), None)
    if running is None or waiting is None:
        return None
    kv = next((sums[n] for n in _KV if n in sums), None)
    return UpstreamLoad(running, waiting, None if kv is None else min(kv, 1.0))


class UpstreamMetricsPoller:
    """Poll ``url`` every ``interval_s``; hand each good reading to ``on_load(load, now_s)``."""

    def __init__(self, name: str, url: str, on_load: Callable[[UpstreamLoad, float], None], *, clock: Clock,
                 interval_s: float = 0.5, timeout_s: float = 0.25,
                 session: aiohttp.ClientSession | None = None) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s must be positive")
        self.name = f"metrics:{name}"
        self.url = url
        self.on_load = on_load
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._session = session
        self._own_session = session is None
        self._task = Background(self.name)
        self.readings = 0
        self.failures = 0  # consecutive
        self._last_error: str | None = None
        self._last_success_s: float | None = None

    @property
    def state(self) -> dict[str, Any]:
        """``ok`` after a good reading, ``degraded`` while readings fail (the limit runs on latency)."""
        status = "starting" if self.readings == 0 and self.failures == 0 else "ok" if self.failures == 0 else "degraded"
        age = None if self._last_success_s is None else round(self._clock.now() - self._last_success_s, 3)
        return {"status": status, "last_success_age_s": age, "last_error": self._last_error}

    def start(self) -> None:
        if not self._task.running:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def poll_once(self) -> UpstreamLoad | None:
        """One bounded fetch; the reading, after handing it on, or ``None`` (``state`` says why)."""
        try:
            load = parse_load(await self._fetch())
            if load is None:
                raise ValueError("no running/waiting gauges in the metrics")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # slow, down or garbage: no reading, latency alone decides
            if self.failures == 0:
                log.warning("upstream metrics %s unusable, the limit runs on latency alone: %s", self.url, exc)
            self.failures += 1
            self._last_error = f"{type(exc).__name__}: {exc}"[:200]
            return None
        self.failures = 0
        self._last_error = None
        self.readings += 1
        now = self._clock.now()
        self._last_success_s = now
        self.on_load(load, now)
        return load

    async def _fetch(self) -> str:
        if self._session is None:
            raise RuntimeError("poller not started")
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with self._session.get(self.url, timeout=timeout, allow_redirects=False) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_METRICS_BYTES:
                    raise ValueError(f"metrics larger than {MAX_METRICS_BYTES} bytes")
        return body.decode("utf-8", errors="replace")

    async def _run(self) -> None:
        while True:
            await self.poll_once()
            await self._clock.sleep(self.interval_s)
