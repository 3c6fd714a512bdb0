"""HTTP routes of the status page and of incident management.

Public, read-only: ``/status``, ``/status/history.atom`` and ``/api/v2/{summary,status,components,
incidents}.json`` (cached bytes, see :mod:`seawall.edges.status.board`). With the admin key:
``POST /admin/incidents`` (open one), ``POST /admin/incidents/{id}/updates`` (post an update;
status ``resolved`` resolves it), ``GET /admin/slo`` (every SLO's budget and burn rates).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import msgspec

from seawall.core.errors import InvalidRequest, ModelNotFound, PermissionDenied
from seawall.edges.status.board import PATHS, SECURITY_HEADERS, StatusBoard
from seawall.slo.alerts import SloEvaluator
from seawall.slo.store import INCIDENT_STATUSES, Incident, IncidentUpdate, SloStore

__all__ = ["ADMIN_INCIDENTS", "ADMIN_INCIDENT_UPDATES", "IncidentRequest", "StatusRoutes", "UpdateRequest",
           "new_incident", "new_update"]

ADMIN_INCIDENTS = "/admin/incidents"
ADMIN_INCIDENT_UPDATES = "/admin/incidents/{incident_id}/updates"
ADMIN_SLO = "/admin/slo"
IMPACTS = ("none", "minor", "major", "critical")

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class IncidentRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    body: str
    status: str = "investigating"
    impact: str = "major"
    components: list[str] = []


class UpdateRequest(msgspec.Struct, forbid_unknown_fields=True):
    status: str
    body: str


def _check(status: str, impact: str = "none") -> None:
    if status not in INCIDENT_STATUSES:
        raise InvalidRequest(f"'status' must be one of {', '.join(INCIDENT_STATUSES)}.", param="status")
    if impact not in IMPACTS:
        raise InvalidRequest(f"'impact' must be one of {', '.join(IMPACTS)}.", param="impact")


def _ident(prefix: str, now: float) -> str:
    return f"{prefix}_{int(now * 1000):x}{os.urandom(4).hex()}"


def new_incident(req: IncidentRequest, now: float) -> tuple[Incident, IncidentUpdate]:
    """An operator's incident and its first update (the CLI and the admin API share this)."""
    _check(req.status, req.impact)
    if not req.name.strip() or not req.body.strip():
        raise InvalidRequest("'name' and 'body' must not be empty.", param="name")
    ident = _ident("inc", now)
    resolved = now if req.status == "resolved" else None
    incident = Incident(id=ident, name=req.name, status=req.status, impact=req.impact, components=req.components,
                        alert_key=None, created_at=now, updated_at=now, resolved_at=resolved)
    return incident, IncidentUpdate(_ident("upd", now), ident, req.status, req.body, now)


def new_update(incident_id: str, req: UpdateRequest, now: float) -> IncidentUpdate:
    _check(req.status)
    if not req.body.strip():
        raise InvalidRequest("'body' must not be empty.", param="body")
    return IncidentUpdate(_ident("upd", now), incident_id, req.status, req.body, now)


class StatusRoutes:
    def __init__(self, board: StatusBoard | None, store: SloStore, evaluator: SloEvaluator | None,
                 is_admin: Callable[[Mapping[str, str], str], bool], wall: Callable[[], float] = time.time) -> None:
        self.board = board
        self.store = store
        self.evaluator = evaluator
        self.is_admin = is_admin
        self.wall = wall
        self.public = PATHS if board is not None else frozenset()
        self.paths = self.public | {ADMIN_INCIDENTS, ADMIN_INCIDENT_UPDATES, ADMIN_SLO}
        max_age = int(board.settings.refresh_interval_s) if board is not None else 0
        self._cache = f"public, max-age={max(max_age, 1)}".encode()

    def page(self, path: str) -> Answer:
        """A public page from the last render."""
        assert self.board is not None
        rendered = self.board.pages[path]
        headers = [(b"content-type", rendered.content_type), (b"cache-control", self._cache),
                   (b"access-control-allow-origin", b"*"), *SECURITY_HEADERS]
        return 200, headers, rendered.body

    async def admin(self, method: str, path: str, item: str, headers: Mapping[str, str], body: bytes,
                    client_addr: str) -> Answer:
        if not self.is_admin(headers, client_addr):
            raise PermissionDenied("This endpoint needs the admin key.", code="admin_only")
        json_ct = [(b"content-type", b"application/json")]
        if path == ADMIN_SLO:
            reports = [dataclasses.asdict(r) for r in self.evaluator.reports] if self.evaluator else []
            state = self.evaluator.state() if self.evaluator else {"status": "off"}
            return 200, json_ct, msgspec.json.encode({"evaluator": state, "slos": reports})
        now = self.wall()
        if method == "GET" and not item:
            incidents = await self.store.incidents(now - 90 * 86400, limit=200)
            return 200, json_ct, msgspec.json.encode({"incidents": incidents})
        if method != "POST":
            raise InvalidRequest(f"Method {method} is not allowed here; use POST.", status=405,
                                 code="method_not_allowed")
        if not item:
            incident, first = new_incident(_decode(body, IncidentRequest), now)
            await self.store.open_incident(incident, first)
            self._poke()
            return 201, json_ct, msgspec.json.encode(msgspec.structs.replace(incident, updates=[first]))
        incident_id, _, tail = item.partition("/")
        if tail != "updates":
            raise InvalidRequest("Post updates to /admin/incidents/{id}/updates.", status=404, code="unknown_url")
        updated = await self.store.add_update(new_update(incident_id, _decode(body, UpdateRequest), now))
        if updated is None:
            raise ModelNotFound(f"No incident '{incident_id[:100]}'.", code="incident_not_found")
        self._poke()
        return 200, json_ct, msgspec.json.encode(updated)

    def _poke(self) -> None:
        if self.board is not None:
            self.board.poke()


T = TypeVar("T")


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid body: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidRequest("The body is not valid JSON.") from None
