"""Real Redis and PostgreSQL for the scale tests.

Shared servers come from ``REDIS_URL`` / ``DATABASE_URL``; otherwise a throwaway server is started
from binaries on PATH (``redis-server``; ``initdb``/``pg_ctl``, also looked for under
``/usr/lib/postgresql/*/bin``). PostgreSQL refuses to run as root, so as root the cluster is made
and run as the ``postgres`` user (``runuser``). Fault tests always use their own throwaway servers,
since they stop them: the machine's shared servers are never stopped.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.e2e.harness import free_port


def _wait_port(port: int, timeout_s: float, up: bool = True) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return True
        except OSError:
            if not up:
                return True
        time.sleep(0.02)
    return False


class RedisServer:
    """A throwaway redis-server on loopback, no persistence."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def find(cls) -> RedisServer | None:
        binary = shutil.which("redis-server")
        return cls(binary) if binary else None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--protected-mode", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL)
        if not _wait_port(self.port, 10):
            raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        """Gone at once, as in a crash (SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
        _wait_port(self.port, 5, up=False)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return candidates[-1] if candidates else None


class PgCluster:
    """A throwaway PostgreSQL cluster in a temporary directory, trust auth on loopback."""

    def __init__(self, initdb: str, pg_ctl: str, port: int | None = None) -> None:
        self.initdb = initdb
        self.pg_ctl = pg_ctl
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="seawall-pg-"))
        self.as_postgres = os.geteuid() == 0
        self.prefix: list[str] = []
        if self.as_postgres:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root without runuser: cannot start PostgreSQL")
            self.prefix = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        self._run([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])

    @classmethod
    def find(cls) -> tuple[PgCluster | None, str]:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            return None, "no DATABASE_URL and no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin"
        try:
            return cls(initdb, pg_ctl), ""
        except (RuntimeError, subprocess.CalledProcessError, LookupError, PermissionError) as exc:
            return None, f"no DATABASE_URL and a throwaway PostgreSQL could not be made: {exc}"

    def _run(self, cmd: list[str]) -> None:
        subprocess.run([*self.prefix, *cmd], check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        # fsync=off only skips flushes to the disk (the OS keeps the data across a PostgreSQL crash);
        # commits stay synchronous, so an acknowledged insert survives the "immediate" stop below.
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run([self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "-t", "30",
                   "start"])

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in an outage."""
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        _wait_port(self.port, 5, up=False)

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
