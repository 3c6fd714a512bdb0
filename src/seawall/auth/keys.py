"""API keys: format, hashing, the in-memory snapshot, and its background refresher.

A key looks like ``sw-<key_id>-<secret>``. Only ``sha256(key)`` is stored; the key id (public, 12
hex digits) finds the record in a dict and the hash is compared in constant time, so a lookup costs
one SHA-256 of ~60 bytes and no I/O. The refresher reloads the snapshot from the store when the
store's change counter moves (and at once when an unknown key id appears, at most once per
``refresh_interval_s``); if the store is unreachable, the last snapshot keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from seawall.core.background import Background, sleep_or_wake
from seawall.core.types import Criticality, Principal
from seawall.env import Clock

__all__ = [
    "KeyRecord",
    "KeyRefresher",
    "KeySnapshot",
    "KeyStore",
    "NegativeCache",
    "hash_key",
    "new_key",
    "split_key",
]

log = logging.getLogger("seawall.auth")

KEY_PREFIX = "sw-"


def new_key(token_hex: Callable[[int], str]) -> tuple[str, str]:
    """Return ``(key_id, key)``; the caller shows ``key`` once and stores only its hash."""
    key_id = token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}-{token_hex(24)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def split_key(key: str) -> str | None:
    """The key id of a well-formed key, else ``None`` (cheap, no hashing)."""
    if not key.startswith(KEY_PREFIX) or len(key) != 3 + 12 + 1 + 48 or key[15] != "-":
        return None
    return key[3:15]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    key_hash: str
    tenant: str
    tier: str
    models: frozenset[str] | None
    created_at: float
    revoked_at: float | None = None
    name: str | None = None


class KeyStore(Protocol):
    """Where keys live (SQLite by default, PostgreSQL beyond one machine)."""

    async def version(self) -> int: ...

    async def load(self) -> tuple[int, list[KeyRecord]]: ...


class KeySnapshot:
    """Immutable-per-refresh map of key id -> (hash, principal); swapped atomically."""

    __slots__ = ("_by_id", "size", "version")

    def __init__(self, by_id: dict[str, tuple[bytes, Principal]], version: int) -> None:
        self._by_id = by_id
        self.version = version
        self.size = len(by_id)

    @classmethod
    def build(
        cls,
        records: Iterable[KeyRecord],
        version: int,
        criticality_of: Callable[[str], Criticality],
    ) -> KeySnapshot:
        by_id: dict[str, tuple[bytes, Principal]] = {}
        for r in records:
            if r.revoked_at is not None:
                continue
            try:
                crit = criticality_of(r.tier)
            except KeyError:
                log.warning("key %s has unknown tier %r; skipped", r.key_id, r.tier)
                continue
            principal = Principal(r.key_id, r.tenant, r.tier, crit, r.models, "key")
            by_id[r.key_id] = (bytes.fromhex(r.key_hash), principal)
        return cls(by_id, version)

    def knows(self, key_id: str) -> bool:
        return key_id in self._by_id

    def verify(self, key: str) -> Principal | None:
        key_id = split_key(key)
        if key_id is None:
            return None
        entry = self._by_id.get(key_id)
        if entry is None:
            return None
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        return entry[1] if hmac.compare_digest(digest, entry[0]) else None


class NegativeCache:
    """Recently seen unknown key ids, so a flood of bad keys cannot trigger a refresh storm."""

    __slots__ = ("_seen", "capacity", "ttl_s")

    def __init__(self, capacity: int, ttl_s: float) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def hit(self, key_id: str, now_s: float) -> bool:
        expires = self._seen.get(key_id)
        if expires is None:
            return False
        if expires < now_s:
            del self._seen[key_id]
            return False
        return True

    def add(self, key_id: str, now_s: float) -> None:
        if self.capacity <= 0:
            return
        self._seen[key_id] = now_s + self.ttl_s
        self._seen.move_to_end(key_id)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


class KeyRefresher:
    """Keeps ``snapshot`` fresh in the background; never blocks a request, never drops keys on error."""

    def __init__(
        self,
        store: KeyStore,
        criticality_of: Callable[[str], Criticality],
        *,
        clock: Clock,
        interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.criticality_of = criticality_of
        self.clock = clock
        self.interval_s = interval_s
        self.snapshot = KeySnapshot({}, -1)
        self.loaded = False
        self.last_success_s: float | None = None
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._task = Background("key-refresher")

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload if the store changed; return False if the store could not be read."""
        try:
            if not force and self.loaded:
                version = await self.store.version()
                if version == self.snapshot.version:
                    self._ok()
                    return True
            version, records = await self.store.load()
            self.snapshot = KeySnapshot.build(records, version, self.criticality_of)
            self.loaded = True
            self._ok()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any store failure: keep serving the last snapshot
            if self.last_error is None:
                log.warning("key store unreachable, serving the last snapshot: %s", exc)
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            return False

    def _ok(self) -> None:
        if self.last_error is not None:
            log.info("key store reachable again")
        self.last_error = None
        self.last_success_s = self.clock.now()

    def poke(self) -> None:
        """Ask for an early refresh (an unknown key id appeared); coalesced with the next run."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await sleep_or_wake(self.clock, self.interval_s, self._wake)
            self._wake.clear()
            await self.refresh()
            await self.clock.sleep(min(0.05, self.interval_s))  # coalesce pokes

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()

    def state(self) -> dict[str, object]:
        if not self.loaded:
            status = "starting" if self.last_error is None else "failed"
        else:
            status = "ok" if self.last_error is None else "degraded"
        age = None if self.last_success_s is None else round(self.clock.now() - self.last_success_s, 3)
        return {
            "status": status,
            "keys": self.snapshot.size,
            "version": self.snapshot.version,
            "last_success_age_s": age,
            "last_error": self.last_error,
        }
