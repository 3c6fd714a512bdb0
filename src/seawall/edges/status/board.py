"""The status page's own failure domain: a render refreshed in the background, served from memory.

Every ``refresh_interval_s`` the board reads the SLO store (recent windows, day buckets, the last
24 hours of fine buckets, incidents), builds a :class:`StatusView` and renders every
representation (HTML, the four Statuspage JSON documents, Atom) to bytes. A request for the page
copies those bytes to the socket: no database, no auth, no admission, no parsing, so the page
answers while the gateway sheds load, and while the database is down (it then says the render is
stale). A failed refresh keeps the last render.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from seawall.algorithms.burn_rate import StateThresholds
from seawall.core.background import Background, sleep_or_wake
from seawall.edges.status.html import render_html
from seawall.edges.status.model import StatusView, build_view
from seawall.edges.status.statuspage import atom_feed, components_json, incidents_json, status_json, summary_json
from seawall.env import Clock
from seawall.slo.settings import StatusSettings
from seawall.slo.sli import FRONT_DOOR
from seawall.slo.store import DAY_S, CountRow, Incident, SloStore, WindowRow

__all__ = ["SECURITY_HEADERS", "Rendered", "StatusBoard"]

log = logging.getLogger("seawall.status")

INCIDENT_HISTORY_S = 14 * DAY_S

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                 b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


@dataclass(frozen=True, slots=True)
class Rendered:
    content_type: bytes
    body: bytes


_RENDERERS: dict[str, tuple[bytes, Callable[[StatusView], bytes]]] = {
    "/status": (b"text/html; charset=utf-8", render_html),
    "/api/v2/summary.json": (b"application/json", summary_json),
    "/api/v2/status.json": (b"application/json", status_json),
    "/api/v2/components.json": (b"application/json", components_json),
    "/api/v2/incidents.json": (b"application/json", incidents_json),
    "/status/history.atom": (b"application/atom+xml; charset=utf-8", atom_feed),
}
PATHS = frozenset(_RENDERERS)


class StatusBoard:
    def __init__(self, store: SloStore, settings: StatusSettings, component_ids: list[str], *, clock: Clock,
                 bucket_s: int, paging: Callable[[], Mapping[str, set[str]]] = dict,
                 thresholds: StateThresholds = StateThresholds()) -> None:
        self.store = store
        self.settings = settings
        self.component_ids = component_ids
        self.clock = clock
        self.bucket_s = bucket_s
        self.paging = paging
        self.thresholds = thresholds
        self.view = self._build(clock.wall(), [], [], [], [])  # before the first refresh: no data yet
        self.pages = self._render(self.view)
        self.refreshes = 0
        self.last_error: str | None = None
        self._bg = Background("status-board")
        self._wake = asyncio.Event()

    def _build(self, now: float, recent: list[WindowRow], days: list[CountRow], fine: list[CountRow],
               incidents: list[Incident]) -> StatusView:
        s = self.settings
        return build_view(title=s.title, url=s.url, now_s=now, component_ids=self.component_ids, recent=recent,
                          days=days, fine=fine, incidents=incidents, maintenances=list(s.maintenances),
                          paging=self.paging(), uptime_days=s.uptime_days, bucket_s=self.bucket_s,
                          thresholds=self.thresholds)

    @staticmethod
    def _render(view: StatusView) -> dict[str, Rendered]:
        return {path: Rendered(ctype, render(view)) for path, (ctype, render) in _RENDERERS.items()}

    async def refresh(self) -> None:
        now = self.clock.wall()
        s = self.settings
        try:
            recent = await self.store.windows(now, [s.state_window_s], self.bucket_s)
            days = await self.store.buckets(DAY_S, (now // DAY_S - s.uptime_days + 1) * DAY_S)
            fine = await self.store.buckets(self.bucket_s, now - 86400, FRONT_DOOR)  # the response-time chart
            incidents = await self.store.incidents(now - INCIDENT_HISTORY_S)
        except Exception as exc:
            if self.last_error is None:
                log.warning("status page refresh failed; serving the last render: %s", exc)
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            if not self.view.stale:
                v = self.view
                self.view = StatusView(v.title, v.url, v.now_s, v.components, v.incidents, v.maintenances,
                                       v.latency_series, v.uptime_days, stale=True, created_s=v.created_s)
                self.pages = self._render(self.view)
            return
        self.last_error = None
        self.view = self._build(now, recent, days, fine, incidents)
        # Rendering is CPU work on the event loop: ~1 ms for tens of components (bench/status.py).
        self.pages = self._render(self.view)
        self.refreshes += 1

    def poke(self) -> None:
        """Refresh now (an operator posted an update)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await sleep_or_wake(self.clock, self.settings.refresh_interval_s, self._wake)
            self._wake.clear()

    def start(self) -> None:
        self._bg.start(self._run)

    async def stop(self) -> None:
        await self._bg.stop()
