"""Real processes on loopback: the mock upstream and gateway processes, started and stopped per test
module. Every wait is bounded; a process that fails to start shows its output in the failure."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _start(cmd: list[str], url: str, log_path: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None, ready_path: str = "/healthz", timeout_s: float = 20.0) -> Proc:
    log = open(log_path, "wb")
    full_env = {**os.environ, **(env or {})}
    popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                             stdin=subprocess.DEVNULL)
    proc = Proc(popen, url, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {popen.returncode}:\n{proc.output()}")
        try:
            if httpx.get(url + ready_path, timeout=1.0).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{cmd} did not become ready in {timeout_s}s:\n{proc.output()}")


def start_mock(tmp: Path, *args: str) -> Proc:
    port = free_port()
    return _start([PYTHON, "-m", "seawall.mock", "--port", str(port), *args],
                  f"http://127.0.0.1:{port}", tmp / f"mock-{port}.log", ready_path="/mock/stats")


@dataclass
class Gateway:
    proc: Proc
    config_path: Path
    workdir: Path
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.proc.url

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PYTHON, "-m", "seawall", *args], capture_output=True, text=True,
                              cwd=self.workdir, timeout=30, check=check, stdin=subprocess.DEVNULL)

    def create_key(self, tenant: str, tier: str, models: list[str] | None = None) -> dict[str, Any]:
        args = ["keys", "create", "-c", str(self.config_path), "--tenant", tenant, "--tier", tier, "--json"]
        if models:
            args += ["--models", ",".join(models)]
        result: dict[str, Any] = json.loads(self.cli(*args).stdout)
        return result

    def stop(self) -> None:
        self.proc.stop()


def start_gateway(tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None,
                  tiers: tuple[str, ...] = ("enterprise", "free")) -> Gateway:
    workdir = tmp
    port = free_port()
    config = {**config, "server": {**config.get("server", {}), "port": port}}
    config.setdefault("store", {"sqlite_path": str(tmp / "seawall.db"), "refresh_interval_s": 0.5})
    config_path = tmp / f"gateway-{port}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    proc = _start([PYTHON, "-m", "seawall", "run", "-c", str(config_path), "--no-demo-keys"],
                  f"http://127.0.0.1:{port}", tmp / f"gateway-{port}.log",
                  env={"SEAWALL_LOG_LEVEL": "warning", **(env or {})}, cwd=workdir)
    gw = Gateway(proc, config_path, workdir)
    for tier in tiers:
        gw.keys[tier] = gw.create_key(f"t-{tier}", tier)["key"]
    for key in gw.keys.values():
        wait_for_key(gw.url, key)
    return gw


def wait_for_key(url: str, key: str, timeout_s: float = 5.0) -> float:
    """Seconds until ``key`` is accepted (keys reach a running gateway through its refresher)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        r = httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=2)
        if r.status_code == 200:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"key not accepted within {timeout_s}s")


def mock_config(mock_url: str, **extra: Any) -> dict[str, Any]:
    """A gateway config with chat and embeddings models served by the mock process at ``mock_url``."""
    return {
        "models": [
            {"name": "chat", "deployments": [{"name": "mock-a", "base_url": mock_url + "/v1",
                                              "timeouts": {"read_s": 2.0}}]},
            {"name": "chat-renamed", "deployments": [{"name": "mock-b", "base_url": mock_url + "/v1",
                                                      "model": "upstream-name"}]},
            {"name": "embed", "kind": "embeddings",
             "deployments": [{"name": "mock-e", "base_url": mock_url + "/v1"}]},
        ],
        **extra,
    }


def mock_stats(mock_url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(mock_url + "/mock/stats", timeout=5).json()
    return result
