"""Atlassian Statuspage v2 JSON (``/api/v2/*.json``) and an Atom feed of incidents.

Field names and values follow Statuspage's public API so aggregators and chat bots that read
``summary.json`` read seawall's unchanged: ``page``, ``status.indicator`` (none, minor, major,
critical), ``components`` (status in operational, degraded_performance, partial_outage,
major_outage, under_maintenance), ``incidents`` with ``incident_updates``, and
``scheduled_maintenances``. Component ids are seawall's (``front_door``, ``group:<model>``...).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import msgspec

from seawall.edges.status.model import ComponentView, StatusView, iso
from seawall.slo.settings import MaintenanceSettings
from seawall.slo.store import Incident

__all__ = ["atom_feed", "components_json", "incidents_json", "status_json", "summary_json"]

PAGE_ID = "seawall"


def _page(view: StatusView) -> dict[str, Any]:
    return {"id": PAGE_ID, "name": view.title, "url": view.url, "time_zone": "Etc/UTC",
            "updated_at": iso(view.created_s)}


def _component(c: ComponentView, now: str | None) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "status": c.state.value, "created_at": now, "updated_at": now,
            "position": c.position, "description": None, "showcase": True, "start_date": None, "group_id": None,
            "page_id": PAGE_ID, "group": False, "only_show_if_degraded": False}


def _incident(i: Incident, view: StatusView) -> dict[str, Any]:
    by_id = {c.id: c for c in view.components}
    now = iso(view.created_s)
    monitoring = next((u.created_at for u in reversed(i.updates) if u.status == "monitoring"), None)
    affected = [{"code": cid, "name": by_id[cid].name if cid in by_id else cid,
                 "old_status": "operational", "new_status": by_id[cid].state.value if cid in by_id else "operational"}
                for cid in i.components]
    return {
        "id": i.id, "name": i.name, "status": i.status, "created_at": iso(i.created_at),
        "updated_at": iso(i.updated_at), "monitoring_at": iso(monitoring), "resolved_at": iso(i.resolved_at),
        "impact": i.impact, "shortlink": f"{view.url}#{i.id}" if view.url else f"#{i.id}",
        "started_at": iso(i.created_at), "page_id": PAGE_ID,
        "incident_updates": [{
            "id": u.id, "status": u.status, "body": u.body, "incident_id": i.id, "created_at": iso(u.created_at),
            "updated_at": iso(u.created_at), "display_at": iso(u.created_at), "affected_components": affected,
            "deliver_notifications": True, "custom_tweet": None, "tweet_id": None} for u in i.updates],
        "components": [_component(by_id[cid], now) for cid in i.components if cid in by_id],
    }


def _maintenance(m: MaintenanceSettings, view: StatusView) -> dict[str, Any]:
    start, end = m.starts_at.timestamp(), m.ends_at.timestamp()
    now = view.now_s
    status = "scheduled" if now < start else "in_progress" if now < end else "completed"
    by_id = {c.id: c for c in view.components}
    ids = m.components or [c.id for c in view.components]
    return {
        "id": m.id, "name": m.name, "status": status, "created_at": iso(start), "updated_at": iso(start),
        "monitoring_at": None, "resolved_at": iso(end) if status == "completed" else None, "impact": "maintenance",
        "shortlink": f"{view.url}#{m.id}" if view.url else f"#{m.id}", "started_at": iso(start), "page_id": PAGE_ID,
        "scheduled_for": iso(start), "scheduled_until": iso(end),
        "incident_updates": [{"id": f"{m.id}-1", "status": status, "body": m.description or m.name,
                              "incident_id": m.id, "created_at": iso(start), "updated_at": iso(start),
                              "display_at": iso(start), "affected_components": [], "deliver_notifications": True,
                              "custom_tweet": None, "tweet_id": None}],
        "components": [_component(by_id[c], iso(view.created_s)) for c in ids if c in by_id],
    }


def _status(view: StatusView) -> dict[str, str]:
    indicator, description = view.indicator
    return {"indicator": indicator, "description": description}


def _upcoming(view: StatusView) -> list[MaintenanceSettings]:
    return [m for m in view.maintenances if m.ends_at.timestamp() > view.now_s]


def summary_json(view: StatusView) -> bytes:
    now = iso(view.created_s)
    return msgspec.json.encode({
        "page": _page(view), "status": _status(view),
        "components": [_component(c, now) for c in view.components],
        "incidents": [_incident(i, view) for i in view.incidents if i.resolved_at is None],
        "scheduled_maintenances": [_maintenance(m, view) for m in _upcoming(view)],
    })


def status_json(view: StatusView) -> bytes:
    return msgspec.json.encode({"page": _page(view), "status": _status(view)})


def components_json(view: StatusView) -> bytes:
    now = iso(view.created_s)
    return msgspec.json.encode({"page": _page(view), "components": [_component(c, now) for c in view.components]})


def incidents_json(view: StatusView) -> bytes:
    return msgspec.json.encode({"page": _page(view), "incidents": [_incident(i, view) for i in view.incidents]})


def atom_feed(view: StatusView) -> bytes:
    """RFC 4287: one entry per incident, its updates in the content, newest update as ``updated``."""
    base = view.url or "/status"
    out = ['<?xml version="1.0" encoding="utf-8"?>', '<feed xmlns="http://www.w3.org/2005/Atom">',
           f"<id>tag:seawall,2026:{escape(base)}</id>", f"<title>{escape(view.title)} - incident history</title>",
           f'<link href="{escape(base)}" rel="alternate" type="text/html"/>',
           f"<updated>{_rfc3339(max([view.created_s, *(i.updated_at for i in view.incidents)]))}</updated>",
           "<author><name>seawall</name></author>"]
    for i in view.incidents:
        content = "".join(f"<p><strong>{escape(u.status.capitalize())}</strong> ({_rfc3339(u.created_at)}) - "
                          f"{escape(u.body)}</p>" for u in i.updates)
        out += ["<entry>", f"<id>tag:seawall,2026:incident:{escape(i.id)}</id>", f"<title>{escape(i.name)}</title>",
                f"<published>{_rfc3339(i.created_at)}</published>", f"<updated>{_rfc3339(i.updated_at)}</updated>",
                f'<link href="{escape(base)}#{escape(i.id)}" rel="alternate" type="text/html"/>',
                f'<content type="html">{escape(content)}</content>', "</entry>"]
    out.append("</feed>")
    return "\n".join(out).encode()


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
