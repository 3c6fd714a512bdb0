"""Live replay: open-loop load from a scenario against a running gateway on loopback.

Every tier's clients send at the instants the scenario's seeded generator gives
(:mod:`seawall.surge.traffic`) — open loop, whatever the answers — with one API key per tier, and
behave like the scenario says: SDK-style retries honouring ``retry-after`` (with the SDK's
``x-stainless-retry-count`` header), a timeout per attempt (the client disconnects), abandonment.
Invalid-key floods come from distinct loopback source addresses (127.0.0.2 ...), so the gateway's
per-address throttle sees a storm from many clients, as in production.

``spawn_stack`` starts the whole lab on loopback: one mock upstream per deployment (configured from
the scenario's upstream model), a gateway process under a profile, one key per tier made with the
gateway's own CLI. Timed deployment events are applied to the mocks through ``POST /mock/config``;
the adaptive limit is read from ``/admin/admission`` and upstream load from ``/mock/stats``.

Every run is bounded: in time (``max_duration_s``, default the scenario's duration plus the
longest client patience) and in count (``max_requests``); targets other than loopback are refused
unless ``allow_remote`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml

from seawall.mock.servers import BatchingServer, HostedServer
from seawall.surge.profiles import gateway_config_dict
from seawall.surge.scenario import Scenario
from seawall.surge.sim import INVALID_TIER, capacity_of, server_of
from seawall.surge.stats import Recorder
from seawall.surge.traffic import FloodArrivals, TierSource, tier_sources

__all__ = ["LiveResult", "LiveStack", "LiveTarget", "is_loopback", "replay", "spawn_stack"]

_SDK_MAX_RETRY_AFTER_S = 120.0
PYTHON = sys.executable


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class LiveTarget:
    """Where to send: the gateway, one key per tier, and optionally its admin key and mock URLs."""

    url: str
    keys: dict[str, str]
    label: str = "target"
    admin_key: str | None = None
    mocks: dict[str, str] = field(default_factory=dict)  # deployment -> mock base URL (no /v1)


@dataclass
class LiveResult:
    recorder: Recorder
    wall_s: float
    requests: int
    user_requests: int
    stopped_early: str | None = None
    mock_stats: dict[str, Any] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _body(prompt_tokens: int, max_tokens: int | None, completion: int, stream: bool, model: str) -> bytes:
    """A chat body of exactly ``4 * prompt_tokens`` bytes where possible, so the gateway's estimate
    (``len(body) // 4``) is the scenario's prompt size; ``mock.completion_tokens`` tells a mock
    upstream how long to answer (the gateway forwards unknown fields)."""
    head = {"model": model, "stream": stream, "mock": {"completion_tokens": completion}}
    if max_tokens is not None:
        head["max_tokens"] = max_tokens
    frame = json.dumps({**head, "messages": [{"role": "user", "content": ""}]}, separators=(",", ":")).encode()
    pad = max(1, 4 * prompt_tokens - len(frame))
    return frame.replace(b'"content":""', b'"content":"' + b"x" * pad + b'"', 1)


class _Live:
    def __init__(self, scenario: Scenario, target: LiveTarget, *, seed: int | None, max_requests: int,
                 max_duration_s: float, progress: bool, bucket_s: float | None) -> None:
        self.scenario = scenario
        self.target = target
        self.sources = tier_sources(scenario, seed)
        self.tiers = list(scenario.tiers)
        self.recorder = Recorder([*self.tiers, INVALID_TIER], scenario.duration_s, bucket_s=bucket_s)
        self.max_requests = max_requests
        self.max_duration_s = max_duration_s
        self.progress = progress
        self.seed = scenario.seed if seed is None else seed
        self.requests = 0
        self.user_requests = 0
        self.stop_reason: str | None = None
        self.start = 0.0
        self.tasks: set[asyncio.Task[None]] = set()
        self.counts = {t: {"sent": 0, "ok": 0, "refused": 0, "failed": 0} for t in [*self.tiers, INVALID_TIER]}
        self._jitter = random.Random(self.seed * 31 + 3).random
        # a copy of each deployment's behaviour model, only to grow its capacity as the simulator does
        self._capacity = {d.name: server_of(d) for _, d in scenario.deployments()}

    def now(self) -> float:
        return time.monotonic() - self.start

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _budget_left(self) -> bool:
        if self.requests >= self.max_requests:
            self.stop_reason = self.stop_reason or f"max_requests ({self.max_requests}) reached"
            return False
        if self.now() >= self.max_duration_s:
            self.stop_reason = self.stop_reason or f"max_duration_s ({self.max_duration_s:g}) reached"
            return False
        return True

    async def _sleep_until(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- clients ---------------------------------------------------------------------------------

    async def tier_loop(self, session: aiohttp.ClientSession, source: TierSource) -> None:
        while True:
            t = source.arrivals.next()
            if t == float("inf") or t >= self.scenario.duration_s:
                return
            await self._sleep_until(t)
            if not self._budget_left():
                return
            shape = source.draw()
            self._spawn(self.user_request(session, source, shape, t))

    async def user_request(self, session: aiohttp.ClientSession, source: TierSource,
                           shape: tuple[int, int | None, int, bool, str], t0: float) -> None:
        ti = source.index
        client = source.client
        rec = self.recorder
        self.user_requests += 1
        rec.arrival(self.now(), ti)
        first = self.now()
        body = _body(*shape)
        stream = shape[3]
        retries = 0
        while True:
            if not self._budget_left() and retries > 0:
                rec.user_end(self.now(), ti, False, self.now() - first, reason="run_bounded")
                return
            timeout_s = client.timeout_s
            abandon = False
            if client.abandon_after_s is not None:
                left = first + client.abandon_after_s - self.now()
                if left < timeout_s:
                    timeout_s, abandon = max(left, 0.0), True
            self.requests += 1
            self.counts[source.tier]["sent"] += 1
            rec.offered(self.now(), ti)
            status, reason, retry_after, should_retry, ttft = await self.attempt(session, body, stream,
                                                                                 source.tier, retries, timeout_s)
            now = self.now()
            if status == 200:
                rec.admitted(now, ti)
                rec.attempt_end(now, ti, "ok")
                rec.user_end(now, ti, True, now - first, (ttft - first) if ttft is not None else None)
                self.counts[source.tier]["ok"] += 1
                return
            if status is None:
                outcome = "cancelled"
                reason = "abandoned" if abandon else "client_timeout"
            elif reason == "upstream_429":
                outcome = "upstream_429"
            elif status in (429, 503):
                outcome = "shed"
            else:
                outcome = "error"
            if outcome in ("upstream_429", "error"):
                rec.admitted(now, ti)
            rec.attempt_end(now, ti, outcome, reason)
            self.counts[source.tier]["refused" if outcome == "shed" else "failed"] += 1
            if abandon and status is None:
                rec.user_end(now, ti, False, now - first, reason="abandoned")
                return
            retryable = status is None or status >= 500 or status in (408, 409, 429)
            if should_retry is not None:
                retryable = should_retry
            if client.retries == "none" or retries >= client.max_retries or not retryable:
                rec.user_end(now, ti, False, now - first, reason=reason)
                return
            if client.honour_retry_after and retry_after is not None and 0 < retry_after <= _SDK_MAX_RETRY_AFTER_S:
                delay = retry_after
            else:
                delay = min(client.backoff_initial_s * 2.0 ** retries, client.backoff_max_s)
                delay *= 1.0 - 0.25 * self._jitter()
            if client.abandon_after_s is not None and now + delay - first >= client.abandon_after_s:
                rec.user_end(now, ti, False, now - first, reason="abandoned")
                return
            retries += 1
            await asyncio.sleep(delay)

    async def attempt(self, session: aiohttp.ClientSession, body: bytes, stream: bool, tier: str, retries: int,
                      timeout_s: float) -> tuple[int | None, str, float | None, bool | None, float | None]:
        """One HTTP exchange: (status or None on timeout, reason, retry-after s, x-should-retry, ttft)."""
        headers = {"authorization": f"Bearer {self.target.keys[tier]}", "content-type": "application/json",
                   "x-stainless-retry-count": str(retries), "x-stainless-timeout": f"{timeout_s:g}"}
        ttft: float | None = None
        try:
            async with asyncio.timeout(timeout_s):
                async with session.post(self.target.url + "/v1/chat/completions", data=body,
                                        headers=headers) as resp:
                    status = resp.status
                    reason = resp.headers.get("x-seawall-reason", "")
                    if status == 200 and stream:
                        ended = False
                        async for chunk in resp.content.iter_any():
                            if ttft is None:
                                ttft = self.now()
                            if b"data: [DONE]" in chunk:
                                ended = True
                            if b'"error"' in chunk and b"data:" in chunk:
                                reason = "stream_error"
                        if not ended:
                            return 502, reason or "stream_error", None, None, ttft
                    else:
                        await resp.read()
                    retry_after = _retry_after(resp.headers)
                    should = resp.headers.get("x-should-retry")
                    should_retry = True if should == "true" else False if should == "false" else None
                    if status != 200 and not reason:
                        reason = f"http_{status}"
                    return status, reason, retry_after, should_retry, ttft
        except TimeoutError:
            return None, "client_timeout", None, None, ttft
        except aiohttp.ClientError as exc:
            return 599, f"connection_{type(exc).__name__}", None, None, ttft

    # -- floods, events, gauges ------------------------------------------------------------------

    async def flood_loop(self) -> None:
        floods = FloodArrivals(self.scenario, random.Random(self.seed * 13 + 1))
        sessions: dict[int, aiohttp.ClientSession] = {}
        bind = is_loopback(self.target.url)
        ti = len(self.tiers)
        try:
            while True:
                nxt = floods.next()
                if nxt is None:
                    return
                t, address = nxt
                await self._sleep_until(t)
                if not self._budget_left():
                    return
                session = sessions.get(address)
                if session is None:
                    local = (f"127.0.{2 + address // 250}.{address % 250 + 1}", 0) if bind else None
                    session = sessions[address] = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0, local_addr=local))
                self.requests += 1
                self.counts[INVALID_TIER]["sent"] += 1
                self.recorder.arrival(self.now(), ti)
                self.recorder.offered(self.now(), ti)
                self._spawn(self.bad_key(session, ti))
        finally:
            await asyncio.sleep(0.5)
            for s in sessions.values():
                await s.close()

    async def bad_key(self, session: aiohttp.ClientSession, ti: int) -> None:
        key = "sw-" + os.urandom(6).hex() + "-" + os.urandom(24).hex()
        try:
            async with asyncio.timeout(10):
                async with session.post(self.target.url + "/v1/chat/completions", data=b"{}",
                                        headers={"authorization": f"Bearer {key}",
                                                 "content-type": "application/json"}) as resp:
                    await resp.read()
                    reason = resp.headers.get("x-seawall-reason", f"http_{resp.status}")
                    if resp.status == 401:
                        reason = "invalid_api_key"
            self.recorder.attempt_end(self.now(), ti, "rejected_auth", reason)
            self.counts[INVALID_TIER]["refused"] += 1
        except (TimeoutError, aiohttp.ClientError):
            self.recorder.attempt_end(self.now(), ti, "error", "flood_client_error")
            self.counts[INVALID_TIER]["failed"] += 1

    async def events_loop(self, session: aiohttp.ClientSession) -> None:
        initial = {d.name: d for _, d in self.scenario.deployments()}
        capacity = self._capacity
        timeline = []
        for e in self.scenario.events:
            if e.kind == "invalid_key_flood":
                continue
            at = e.at_s + (e.cold_start_s if e.kind == "capacity_added" else 0.0)
            timeline.append((at, e))
        timeline.sort(key=lambda x: x[0])
        for at, e in timeline:
            await self._sleep_until(at)
            url = self.target.mocks.get(e.deployment)
            if url is None:
                continue
            d = initial[e.deployment]
            if e.kind == "deployment_down":
                change: dict[str, Any] = {"error_rate": 1.0, "base_latency_s": 0.0, "first_token_delay_s": 0.0}
            elif e.kind == "deployment_slow":
                change = {"slowdown": e.factor}  # the behaviour model's own factor, as the simulator sets
            elif e.kind == "deployment_recover":
                change = {"base_latency_s": d.base_latency_s, "first_token_delay_s": d.first_token_delay_s,
                          "error_rate": d.error_rate, "slowdown": 1.0}
            else:
                model = capacity[e.deployment]
                model.grow(e.max_in_flight)  # the same growth as the simulator's (servers.*.grow)
                change = _capacity_fields(model)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(url + "/mock/config", json=change,
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    await resp.read()

    async def gauge_loop(self, session: aiohttp.ClientSession) -> None:
        period = self.recorder.bucket_s / 2
        while True:
            await asyncio.sleep(period)
            now = self.now()
            rec = self.recorder
            if self.target.admin_key:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                    async with session.get(self.target.url + "/admin/admission",
                                           headers={"authorization": f"Bearer {self.target.admin_key}"},
                                           timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        state = await resp.json()
                    for group, g in (state.get("groups") or {}).items():
                        rec.gauge(f"limit_units.{group}.total", now, float(g["limit_units"]))
                        rec.gauge(f"limit_units.{group}.mean", now, float(g["limit_units"]))
                        rec.gauge(f"inflight_units.{group}.total", now, float(g["inflight_units"]))
                        rec.gauge(f"queued.{group}.total", now, float(g["queued"]))
            for dep, url in self.target.mocks.items():
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                    async with session.get(url + "/mock/stats", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        stats = await resp.json()
                    rec.gauge(f"upstream_in_flight.{dep}", now, float(stats["in_flight"]))
                    rec.gauge(f"upstream_capacity.{dep}", now, float(capacity_of(self._capacity[dep])))

    async def run(self) -> LiveResult:
        started = time.perf_counter()
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            self.start = time.monotonic()
            background = [asyncio.ensure_future(self.gauge_loop(session)),
                          asyncio.ensure_future(self.events_loop(session))]
            show = asyncio.ensure_future(self.show()) if self.progress else None
            senders = [asyncio.ensure_future(self.tier_loop(session, s)) for s in self.sources]
            senders.append(asyncio.ensure_future(self.flood_loop()))
            await asyncio.gather(*senders)
            # Let what is in flight finish, within the longest client patience and the run bound.
            patience = max(c.timeout_s * (c.max_retries + 1) + 10 for c in (s.client for s in self.sources))
            grace_end = min(self.max_duration_s, self.now() + patience)
            while self.tasks and self.now() < grace_end:
                await asyncio.wait(set(self.tasks), timeout=min(1.0, max(0.01, grace_end - self.now())))
            if self.tasks:
                self.stop_reason = self.stop_reason or "requests still in flight at the time bound"
                for task in list(self.tasks):
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if show is not None:
                show.cancel()
                await asyncio.gather(show, return_exceptions=True)
        return LiveResult(self.recorder, time.perf_counter() - started, self.requests, self.user_requests,
                          self.stop_reason)

    async def show(self) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Table

        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            TimeElapsedColumn())
        task = progress.add_task(f"{self.scenario.name} → {self.target.label}", total=self.scenario.duration_s)

        def table() -> Table:
            t = Table(show_edge=False, header_style="bold")
            for col in ("tier", "sent", "ok", "refused", "failed", "success"):
                t.add_column(col, justify="left" if col == "tier" else "right")
            for tier, c in self.counts.items():
                done = c["ok"] + c["refused"] + c["failed"]
                rate = f"{100 * c['ok'] / done:.1f}%" if done else "-"
                t.add_row(tier, str(c["sent"]), str(c["ok"]), str(c["refused"]), str(c["failed"]), rate)
            return t

        with Live(Group(progress, table()), refresh_per_second=4, transient=False) as live:
            while True:
                progress.update(task, completed=min(self.now(), self.scenario.duration_s))
                live.update(Group(progress, table()))
                await asyncio.sleep(0.25)


def _retry_after(headers: Any) -> float | None:
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            continue
    return None


def replay(scenario: Scenario, target: LiveTarget, *, seed: int | None = None, max_requests: int = 2_000_000,
           max_duration_s: float | None = None, allow_remote: bool = False, progress: bool = False,
           bucket_s: float | None = None) -> LiveResult:
    """Replay ``scenario`` (already time/load scaled) against ``target``; blocking."""
    if not allow_remote and not is_loopback(target.url):
        raise ValueError(f"{target.url} is not a loopback address; pass --allow-remote to load it anyway")
    missing = [t for t in scenario.tiers if t not in target.keys]
    if missing:
        raise ValueError(f"no key for tier(s) {', '.join(missing)}")
    if max_duration_s is None:
        patience = max(c.timeout_s * (c.max_retries + 1) for c in (scenario.client_of(t) for t in scenario.tiers))
        max_duration_s = scenario.duration_s + min(patience, 300.0) + 5.0
    live = _Live(scenario, target, seed=seed, max_requests=max_requests, max_duration_s=max_duration_s,
                 progress=progress, bucket_s=bucket_s)
    result = asyncio.run(live.run())
    result.mock_stats = _mock_stats(target)
    attempts = sum(s.get("by_path", {}).get("/v1/chat/completions", 0) for s in result.mock_stats.values())
    if attempts:
        # Upstream attempts per request the gateway routed (everything not refused by admission).
        rec = result.recorder
        rec.totals_only = (sum(sum(t.admitted) for t in rec.tiers), attempts)
    return result


def _mock_stats(target: LiveTarget) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    out: dict[str, Any] = {}
    for dep, url in target.mocks.items():
        try:
            with urllib.request.urlopen(url + "/mock/stats", timeout=5) as resp:
                out[dep] = json.load(resp)
        except (urllib.error.URLError, OSError, ValueError):
            continue
    return out


# -- starting the lab on loopback ----------------------------------------------------------------


@dataclass
class LiveStack:
    """Processes started by :func:`spawn_stack`; ``stop()`` ends them (each by its own pid)."""

    target: LiveTarget
    procs: list[subprocess.Popen[bytes]]
    workdir: Path
    config_path: Path

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def __enter__(self) -> LiveStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready in {timeout_s:g}s: {log.read_text(errors='replace')[-2000:]}")


def _capacity_fields(model: Any) -> dict[str, Any]:
    """What ``POST /mock/config`` needs to give a mock a grown model's capacity."""
    if isinstance(model, BatchingServer):
        return {"max_num_seqs": model.max_num_seqs, "prefill_tokens_per_s": model.prefill_tokens_per_s}
    if isinstance(model, HostedServer):
        return {"soft_concurrency": model.soft_concurrency}
    return {"max_in_flight": model.capacity}


def spawn_stack(scenario: Scenario, profile: str, *, workdir: Path | None = None,
                log: Callable[[str], None] | None = None) -> LiveStack:
    """Start mocks (one per deployment), a gateway under ``profile``, and make one key per tier."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"seawall-surge-{profile}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    mocks: dict[str, str] = {}
    try:
        for i, (_, d) in enumerate(scenario.deployments()):
            port = _free_port()
            log_path = workdir / f"mock-{d.name}.log"
            args = [PYTHON, "-m", "seawall.mock", "--port", str(port), "--seed", str(scenario.seed + i)]
            for name, value in d.mock_fields().items():
                args += ["--" + name.replace("_", "-"), str(value)]
            procs.append(subprocess.Popen(args, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL))
            mocks[d.name] = f"http://127.0.0.1:{port}"
            _wait_ready(procs[-1], mocks[d.name] + "/mock/stats", log_path)
        port = _free_port()
        admin_key = "sw-admin-surge-" + os.urandom(12).hex()
        extra = {"server": {"port": port, "host": "127.0.0.1", "admin_key_env": "SEAWALL_SURGE_ADMIN"},
                 "store": {"sqlite_path": str(workdir / "seawall.db"), "ledger": False,
                           "ledger_spill_path": str(workdir / "spill.jsonl"), "refresh_interval_s": 0.5},
                 "tenants": [{"name": f"surge-{tier}", "tier": tier} for tier in scenario.tiers]}
        data = gateway_config_dict(scenario, profile, {k: v + "/v1" for k, v in mocks.items()}, extra)
        config_path = workdir / f"gateway-{profile}.yaml"
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        keys = {}
        for tier in scenario.tiers:
            out = subprocess.run([PYTHON, "-m", "seawall", "keys", "create", "-c", str(config_path), "--tenant",
                                  f"surge-{tier}", "--tier", tier, "--json"], capture_output=True, text=True,
                                 check=False, cwd=workdir, stdin=subprocess.DEVNULL, timeout=60)
            if out.returncode != 0:
                raise RuntimeError(f"seawall keys create failed: {out.stderr.strip()}")
            keys[tier] = json.loads(out.stdout)["key"]
        gw_log = workdir / f"gateway-{profile}.log"
        env = {**os.environ, "SEAWALL_SURGE_ADMIN": admin_key, "SEAWALL_LOG_LEVEL": "warning"}
        procs.append(subprocess.Popen([PYTHON, "-m", "seawall", "run", "-c", str(config_path), "--no-demo-keys"],
                                      stdout=open(gw_log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, cwd=workdir))
        url = f"http://127.0.0.1:{port}"
        _wait_ready(procs[-1], url + "/healthz", gw_log)
        _wait_for_keys(url, list(keys.values()))
        if log is not None:
            log(f"started {profile}: gateway {url}, mocks {', '.join(mocks.values())} (logs in {workdir})")
        return LiveStack(LiveTarget(url, keys, profile, admin_key, mocks), procs, workdir, config_path)
    except BaseException:
        LiveStack(LiveTarget("", {}), procs, workdir, workdir).stop()
        raise


def _wait_for_keys(url: str, keys: list[str], timeout_s: float = 10.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    for key in keys:
        while True:
            req = urllib.request.Request(url + "/v1/models", headers={"authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(req, timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not accept the new keys in time") from None
                time.sleep(0.05)


def keys_from_gateway_config(config_path: str, tiers: list[str]) -> dict[str, str]:
    """One new key per tier, made with ``seawall keys create`` against the gateway's config."""
    keys = {}
    for tier in tiers:
        out = subprocess.run([PYTHON, "-m", "seawall", "keys", "create", "-c", config_path, "--tenant",
                              f"surge-{tier}", "--tier", tier, "--json"], capture_output=True, text=True,
                             check=False, stdin=subprocess.DEVNULL, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"seawall keys create failed for tier {tier}: {out.stderr.strip()}")
        keys[tier] = json.loads(out.stdout)["key"]
    return keys


def load_keys(path: str) -> dict[str, str]:
    """``--keys FILE``: a JSON or YAML mapping of tier name to API key."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: expected a mapping of tier -> key")
    return {str(k): v for k, v in data.items()}
