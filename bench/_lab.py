"""Shared plumbing for the benchmarks: processes on loopback, load generators, result tables.

Benchmarks compare side by side in one run (the machines are shared and noisy), report medians
and percentiles, and write their table plus the command that produced it into bench/RESULTS.md.
Every load loop is bounded in time and count and targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from seawall.edges.upstreams.http1 import HttpClient, HttpError  # noqa: E402

T = TypeVar("T")
RESULTS = ROOT / "bench" / "RESULTS.md"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mb(self) -> float:
        return rss_mb(self.popen.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(cmd: Sequence[str], url: str, ready_path: str, *, cpus: str | None = None,
          env: dict[str, str] | None = None, log: Path | None = None, timeout_s: float = 20) -> Proc:
    full = (["taskset", "-c", cpus] if cpus else []) + list(cmd)
    out = open(log, "wb") if log else subprocess.DEVNULL
    popen = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout_s
    import urllib.request

    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{cmd} exited early ({popen.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url + ready_path, timeout=1):
                return Proc(popen, url)
        except Exception:
            time.sleep(0.05)
    popen.kill()
    raise RuntimeError(f"{cmd} not ready in {timeout_s}s")


def start_mock(*args: str, cpus: str | None = None) -> Proc:
    port = free_port()
    return start([PYTHON, "-m", "seawall.mock", "--port", str(port), *args], f"http://127.0.0.1:{port}",
                 "/mock/stats", cpus=cpus)


def start_gateway(config_yaml: str, workdir: Path, *, cpus: str | None = None,
                  tiers: Sequence[tuple[str, str]] = (("bench", "enterprise"),)) -> tuple[Proc, dict[str, str]]:
    """Start ``seawall run`` with ``config_yaml`` (``{port}`` is filled in); keys by tenant."""
    import json

    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"gateway-{port}.yaml"
    path.write_text(config_yaml.replace("{port}", str(port)).replace("{workdir}", str(workdir)))
    keys = {}
    for tenant, tier in tiers:
        out = subprocess.run([PYTHON, "-m", "seawall", "keys", "create", "-c", str(path), "--tenant", tenant,
                              "--tier", tier, "--json"], capture_output=True, text=True, check=True,
                             cwd=workdir)
        keys[tenant] = json.loads(out.stdout)["key"]
    proc = start([PYTHON, "-m", "seawall", "run", "-c", str(path), "--no-demo-keys"],
                 f"http://127.0.0.1:{port}", "/readyz", cpus=cpus,
                 env={"SEAWALL_LOG_LEVEL": "warning"}, log=workdir / f"gateway-{port}.log")
    return proc, keys


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Samples:
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    elapsed_s: float = 0.0

    def add(self, status: int, latency_s: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies_s.append(latency_s)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def p(self, q: float) -> float:
        return pct(self.latencies_s, q) * 1000


def _client(url: str) -> HttpClient:
    """The load generator's connection pool: seawall's own lean HTTP/1.1 client, so the generator
    costs a third of what aiohttp's does and the harness, not the gateway, stops being the limit
    (it shares a core with the mock upstream). Direct and gateway paths use the same one."""
    return HttpClient(url, max_connections=100_000, keepalive_s=60)


async def _one(client: HttpClient, url: str, body: bytes, headers: dict[str, str],
               samples: Samples, timeout_s: float, first_byte: bool) -> None:
    start_s = time.perf_counter()
    resp = None
    try:
        resp = await client.post(url, body, headers, connect_s=timeout_s, read_s=timeout_s, total_s=timeout_s,
                                 stream=first_byte)
        if first_byte and resp.status == 200:
            seen = False
            async for chunk in resp.chunks():
                if not seen and b'"content":"tok' in chunk:
                    samples.add(200, time.perf_counter() - start_s)  # the first content token
                    seen = True
            if not seen:
                samples.add(0, time.perf_counter() - start_s)
        else:
            await resp.read()
            samples.add(resp.status, time.perf_counter() - start_s)
        resp.release()
    except HttpError:
        samples.add(0, time.perf_counter() - start_s)
    finally:
        if resp is not None:
            resp.close()


async def closed_loop(url: str, body: bytes, headers: dict[str, str], *, concurrency: int,
                      duration_s: float, warmup_s: float = 0.5, first_byte: bool = False,
                      timeout_s: float = 30) -> Samples:
    samples = Samples()
    client = _client(url)
    try:
        async def worker(stop_s: float, into: Samples) -> None:
            while time.monotonic() < stop_s:
                into.sent += 1
                await _one(client, url, body, headers, into, timeout_s, first_byte)

        warm = Samples()
        await asyncio.gather(*(worker(time.monotonic() + warmup_s, warm) for _ in range(concurrency)))
        start_s = time.monotonic()
        await asyncio.gather(*(worker(start_s + duration_s, samples) for _ in range(concurrency)))
        samples.elapsed_s = time.monotonic() - start_s
    finally:
        await client.close()
    return samples


async def open_loop(url: str, body: bytes, headers: dict[str, str], *, rate_per_s: float,
                    duration_s: float, timeout_s: float = 30, max_in_flight: int = 20_000) -> Samples:
    """Send at a fixed rate whatever the answers (open loop), like real users do."""
    samples = Samples()
    client = _client(url)
    try:
        tasks: set[asyncio.Task[None]] = set()
        interval_s = 1.0 / rate_per_s
        start_s = time.monotonic()
        n = 0
        while True:
            now = time.monotonic()
            due = int((now - start_s) / interval_s) + 1
            if now - start_s >= duration_s:
                break
            while n < due and len(tasks) < max_in_flight:
                n += 1
                samples.sent += 1
                t = asyncio.create_task(_one(client, url, body, headers, samples, timeout_s, False))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, start_s + n * interval_s - time.monotonic()))
        samples.elapsed_s = time.monotonic() - start_s
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
    finally:
        await client.close()
    return samples


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Run a benchmark's coroutine on uvloop (as the gateway runs), so the generator stays cheap."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def write_results(name: str, title: str, body: str, argv: Sequence[str]) -> None:
    """Replace the ``name`` section of bench/RESULTS.md (created if missing)."""
    command = "python " + " ".join(shlex.quote(a) for a in argv)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (f"<!-- bench:{name} -->\n## {title}\n\nCommand: `{command}` (run {stamp}, "
               f"{os.cpu_count()} cores)\n\n{body.strip()}\n<!-- /bench:{name} -->")
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by the scripts in bench/.\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
