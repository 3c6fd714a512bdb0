"""Gateway replicas on loopback wired to one Redis and one PostgreSQL, and a bounded load generator."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

from tests.e2e.harness import PYTHON, Proc, _start, free_port


def gateway_config(tmp: Path, upstream_url: str, *, redis_url: str | None = None, redis_prefix: str = "seawall",
                   database_url: str | None = None, schema: str = "seawall", quotas: dict[str, Any] | None = None,
                   **extra: Any) -> dict[str, Any]:
    store: dict[str, Any] = {"sqlite_path": str(tmp / "seawall.db"), "refresh_interval_s": 1.0,
                             "ledger_flush_interval_s": 0.5, "redis_prefix": redis_prefix,
                             "database_schema": schema}
    store.update(extra.pop("store", {}))
    config: dict[str, Any] = {
        "models": [{"name": "chat", "deployments": [{"name": "mock", "base_url": upstream_url + "/v1"}]}],
        "store": store,
        "quotas": quotas or {},
        **extra,
    }
    if redis_url:
        config["redis_url"] = redis_url
    if database_url:
        config["database_url"] = database_url
    return config


def write_config(tmp: Path, config: dict[str, Any], name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_replica(tmp: Path, config_path: Path, *, workers: int = 1, name: str = "gw") -> Proc:
    port = free_port()
    cmd = [PYTHON, "-m", "seawall", "run", "-c", str(config_path), "--no-demo-keys", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return _start(cmd, f"http://127.0.0.1:{port}", tmp / f"{name}-{port}.log",
                  env={"SEAWALL_LOG_LEVEL": "warning"}, cwd=tmp, ready_path="/readyz", timeout_s=30)


def cli(tmp: Path, config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "seawall", *args, "-c", str(config_path)], capture_output=True,
                          text=True, cwd=tmp, timeout=30, check=True, stdin=subprocess.DEVNULL)


def create_key(tmp: Path, config_path: Path, tenant: str, tier: str = "enterprise") -> dict[str, Any]:
    out = subprocess.run([PYTHON, "-m", "seawall", "keys", "create", "-c", str(config_path), "--tenant", tenant,
                          "--tier", tier, "--json"], capture_output=True, text=True, cwd=tmp, timeout=30,
                         check=True, stdin=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def accepted(url: str, key: str) -> bool:
    r = httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=2)
    return r.status_code == 200


def wait_until(predicate: Any, timeout_s: float, step_s: float = 0.01) -> float:
    """Seconds until ``predicate()`` held; AssertionError after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(step_s)
    raise AssertionError(f"not within {timeout_s}s")


def readiness(url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(url + "/readyz", timeout=2).json()
    return result


QUOTA_COUNTS = ("lease_decisions", "cached_refusals", "remote_decisions", "fallback_decisions")


def quota_counts(urls: list[str], processes: int, timeout_s: float = 20.0) -> dict[str, int]:
    """Quota decisions by kind, summed over every process behind ``urls``. ``/readyz`` answers from
    one worker at a time, and which worker of a ``--workers`` replica accepts a connection is up to
    the kernel and to which loop wakes first (one idle worker can win many in a row, more so on a
    busy machine), so it is asked in bursts of parallel connections until ``processes`` distinct
    replicas have answered."""
    seen: dict[str, dict[str, int]] = {}
    answers: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    with ThreadPoolExecutor(8) as pool:
        while len(seen) < processes:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(seen)} of {processes} processes answered /readyz: {answers}")
            for state in pool.map(lambda url: readiness(url)["dependencies"]["quota_store"], urls * 8):
                seen[state["replica_id"]] = {k: int(state[k]) for k in QUOTA_COUNTS}
                answers[state["replica_id"]] = answers.get(state["replica_id"], 0) + 1
    return {k: sum(s[k] for s in seen.values()) for k in QUOTA_COUNTS}


def chat_body(content_chars: int = 40, max_tokens: int = 32) -> bytes:
    return json.dumps({"model": "chat", "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "x" * content_chars}]}).encode()


@dataclass
class Result:
    status: int
    sent_s: float
    done_s: float
    request_id: str
    tokens: int = 0
    headers: dict[str, str] = field(default_factory=dict)


async def hammer(urls: list[str], key: str, body: bytes, *, duration_s: float, concurrency: int,
                 max_requests: int = 50_000, stop: asyncio.Event | None = None) -> list[Result]:
    """Closed-loop load: ``concurrency`` clients spread over ``urls`` for ``duration_s`` (or until
    ``stop`` is set); bounded in time and count, loopback only."""
    results: list[Result] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration_s
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    async def client(session: aiohttp.ClientSession, url: str) -> None:
        while loop.time() < deadline and len(results) < max_requests and not (stop and stop.is_set()):
            rid = uuid.uuid4().hex
            sent = time.monotonic()
            try:
                async with session.post(url + "/v1/chat/completions", data=body,
                                        headers={**headers, "x-request-id": rid}) as r:
                    data = await r.read()
                    status, rh = r.status, {k.lower(): v for k, v in r.headers.items()}
            except aiohttp.ClientError:
                status, data, rh = 599, b"", {}
            done = time.monotonic()
            tokens = 0
            if status == 200:
                tokens = int(json.loads(data)["usage"]["total_tokens"])
            results.append(Result(status, sent, done, rid, tokens, rh))

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        await asyncio.gather(*(client(session, urls[i % len(urls)]) for i in range(concurrency)))
    return results


def statuses(results: list[Result]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in results:
        out[r.status] = out.get(r.status, 0) + 1
    return out
