"""The ``/status`` page: one self-contained HTML document, inline CSS and SVG, no JavaScript.

Tooltips are SVG ``<title>`` elements and the page works with scripts and remote content blocked,
which is what its Content-Security-Policy allows anyway (``edges/status/board.py``).
"""

from __future__ import annotations

import time
from html import escape

from seawall.algorithms.burn_rate import ComponentState
from seawall.edges.status.model import ComponentView, DayBar, StatusView
from seawall.slo.settings import MaintenanceSettings
from seawall.slo.store import Incident

__all__ = ["render_html"]

_STATE_LABEL = {ComponentState.OPERATIONAL: "Operational", ComponentState.DEGRADED_PERFORMANCE: "Degraded performance",
                ComponentState.PARTIAL_OUTAGE: "Partial outage", ComponentState.MAJOR_OUTAGE: "Major outage",
                ComponentState.UNDER_MAINTENANCE: "Under maintenance"}
_STATE_COLOR = {ComponentState.OPERATIONAL: "#2f9e44", ComponentState.DEGRADED_PERFORMANCE: "#e0a800",
                ComponentState.PARTIAL_OUTAGE: "#e8590c", ComponentState.MAJOR_OUTAGE: "#c92a2a",
                ComponentState.UNDER_MAINTENANCE: "#1c7ed6"}
_INDICATOR_COLOR = {"none": "#2f9e44", "minor": "#e0a800", "major": "#e8590c", "critical": "#c92a2a"}

_CSS = """
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1f2328;background:#f6f8fa}main{max-width:860px;margin:0 auto;padding:24px 16px 48px}
h1{font-size:24px;margin:0 0 16px}h2{font-size:18px;margin:32px 0 12px}
.banner{color:#fff;border-radius:6px;padding:14px 18px;font-size:18px;font-weight:600}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px}.comp{padding:14px 18px;border-top:1px solid #eaeef2}
.comp:first-child{border-top:0}.row{display:flex;justify-content:space-between;align-items:baseline;gap:12px}
.name{font-weight:600}.state{font-size:14px;font-weight:600}.bars{display:block;width:100%;height:34px;margin-top:8px}
.legend{display:flex;justify-content:space-between;color:#656d76;font-size:12px}
.inc{padding:14px 18px;border-top:1px solid #eaeef2}.inc:first-child{border-top:0}
.inc h3{margin:0 0 6px;font-size:16px}.upd{margin:8px 0 0 0;padding-left:12px;border-left:3px solid #d0d7de}
.upd b{text-transform:capitalize}.muted{color:#656d76;font-size:13px}.chart{display:block;width:100%;height:auto}
footer{margin-top:32px;color:#656d76;font-size:13px}a{color:#0969da}
"""


def render_html(view: StatusView) -> bytes:
    indicator, description = view.indicator
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width,initial-scale=1">',
             f"<meta http-equiv=\"refresh\" content=\"60\"><title>{escape(view.title)}</title>",
             '<link rel="alternate" type="application/atom+xml" title="Incidents" href="/status/history.atom">',
             f"<style>{_CSS}</style></head><body><main>", f"<h1>{escape(view.title)}</h1>",
             f'<div class="banner" style="background:{_INDICATOR_COLOR[indicator]}">{escape(description)}</div>']
    if view.stale:
        parts.append('<p class="muted">This page could not be refreshed from the database; it shows the last'
                     " known state.</p>")
    active = [i for i in view.incidents if i.resolved_at is None]
    if active:
        parts.append("<h2>Active incidents</h2><div class=\"card\">")
        parts += [_incident(i) for i in active]
        parts.append("</div>")
    upcoming = [m for m in view.maintenances if m.ends_at.timestamp() > view.now_s]
    if upcoming:
        parts.append("<h2>Scheduled maintenance</h2><div class=\"card\">")
        parts += [_maintenance(m, view.now_s) for m in upcoming]
        parts.append("</div>")
    parts.append("<h2>Components</h2><div class=\"card\">")
    parts += [_component(c, view.uptime_days) for c in view.components]
    parts.append("</div>")
    parts.append("<h2>Response time</h2><div class=\"card\" style=\"padding:12px 18px\">")
    parts.append('<div class="muted">API front door, last 24 hours: mean time to the whole answer, or to the'
                 " first token for streams (15-minute slots, UTC)</div>")
    parts.append(_chart(view.latency_series))
    parts.append("</div>")
    past = [i for i in view.incidents if i.resolved_at is not None]
    parts.append("<h2>Past incidents</h2>")
    if past:
        parts.append('<div class="card">')
        parts += [_incident(i) for i in past]
        parts.append("</div>")
    else:
        parts.append('<p class="muted">No incidents in the last 14 days.</p>')
    parts.append(f'<footer>Updated {_when(view.created_s)} UTC. Machine-readable: <a href="/api/v2/summary.json">'
                 'summary.json</a>, <a href="/api/v2/incidents.json">incidents.json</a>, '
                 '<a href="/status/history.atom">Atom feed</a>.</footer></main></body></html>')
    return "".join(parts).encode()


def _component(c: ComponentView, days: int) -> str:
    uptime = c.uptime
    label = "no traffic" if uptime is None else f"{_pct(uptime)} uptime"
    return (f'<div class="comp" id="{escape(c.id)}"><div class="row"><span class="name">{escape(c.name)}</span>'
            f'<span class="state" style="color:{_STATE_COLOR[c.state]}">{_STATE_LABEL[c.state]}</span></div>'
            f"{_bars(c.days)}<div class=\"legend\"><span>{days} days ago</span><span>{label}</span>"
            "<span>Today</span></div></div>")


def _bar_color(bar: DayBar) -> str:
    uptime = bar.uptime
    if uptime is None:
        return "#d0d7de"
    if uptime >= 0.999:
        return "#2f9e44"
    if uptime >= 0.99:
        return "#e0a800"
    if uptime >= 0.95:
        return "#e8590c"
    return "#c92a2a"


def _bars(bars: list[DayBar]) -> str:
    n = max(len(bars), 1)
    step = 900 / n
    width = max(step - 2, 1)
    rects = []
    for i, bar in enumerate(bars):
        day = time.strftime("%Y-%m-%d", time.gmtime(bar.day_s))
        tip = f"{day}: no traffic" if bar.uptime is None else \
            f"{day}: {_pct(bar.uptime)} of {bar.total:,} requests served ({bar.bad:,} failed)"
        rects.append(f'<rect x="{i * step:.1f}" y="0" width="{width:.1f}" height="34" rx="2" '
                     f'fill="{_bar_color(bar)}"><title>{escape(tip)}</title></rect>')
    return (f'<svg class="bars" viewBox="0 0 900 34" preserveAspectRatio="none" role="img" '
            f'aria-label="uptime per day">{"".join(rects)}</svg>')


def _chart(series: list[tuple[int, float | None]]) -> str:
    w, h, left, bottom = 820, 180, 52, 24
    values = [v for _, v in series if v is not None]
    if not values:
        return '<p class="muted">No requests in the last 24 hours.</p>'
    top = _nice(max(values) * 1.15)
    n = max(len(series) - 1, 1)

    def x(i: int) -> float:
        return left + (w - left - 8) * i / n

    def y(v: float) -> float:
        return 8 + (h - bottom - 8) * (1 - v / top)

    segments: list[list[str]] = [[]]
    for i, (_, v) in enumerate(series):
        if v is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{x(i):.1f},{y(v):.1f}")
    lines = "".join(f'<polyline fill="none" stroke="#0969da" stroke-width="2" points="{" ".join(s)}"/>'
                    for s in segments if len(s) > 1)
    dots = "".join(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="#0969da"><title>'
                   f'{time.strftime("%H:%M", time.gmtime(t))} UTC: {_ms(v)}</title></circle>'
                   for i, (t, v) in enumerate(series) if v is not None)
    grid = []
    for k in range(5):
        v = top * k / 4
        grid.append(f'<line x1="{left}" x2="{w - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eaeef2"/>'
                    f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end" fill="#656d76">'
                    f"{_ms(v)}</text>")
    ticks = []
    for i in range(0, len(series), max(len(series) // 6, 1)):
        ticks.append(f'<text x="{x(i):.1f}" y="{h - 6}" font-size="11" text-anchor="middle" fill="#656d76">'
                     f'{time.strftime("%H:%M", time.gmtime(series[i][0]))}</text>')
    return (f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="response time, last 24 hours">'
            f'{"".join(grid)}{"".join(ticks)}{lines}{dots}</svg>')


def _incident(i: Incident) -> str:
    when = _when(i.created_at) + (f" - resolved {_when(i.resolved_at)}" if i.resolved_at else "")
    updates = "".join(f'<div class="upd">{_lead(u.status, u.body)}{escape(u.body)}'
                      f'<div class="muted">{_when(u.created_at)} UTC</div></div>' for u in i.updates)
    return (f'<div class="inc" id="{escape(i.id)}"><h3>{escape(i.name)}</h3>'
            f'<div class="muted">Impact: {escape(i.impact)} · {when} UTC</div>{updates}</div>')


def _lead(status: str, body: str) -> str:
    """The update's status in bold, unless its text already starts with it (drafted updates do)."""
    return "" if body.lower().startswith(status) else f"<b>{escape(status)}</b> - "


def _maintenance(m: MaintenanceSettings, now_s: float) -> str:
    state = "in progress" if m.starts_at.timestamp() <= now_s else "scheduled"
    return (f'<div class="inc" id="{escape(m.id)}"><h3>{escape(m.name)}</h3><div class="muted">{state}: '
            f"{_when(m.starts_at.timestamp(), year=True)} to {_when(m.ends_at.timestamp(), year=True)} UTC</div>"
            f"{'<p>' + escape(m.description) + '</p>' if m.description else ''}</div>")


def _when(ts: float, year: bool = False) -> str:
    return time.strftime("%b %d %Y, %H:%M" if year else "%b %d, %H:%M", time.gmtime(ts))


def _pct(share: float) -> str:
    return f"{share * 100:.3f}".rstrip("0").rstrip(".") + "%" if share < 1 else "100%"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def _nice(v: float) -> float:
    """A round axis top at or above ``v``."""
    if v <= 0:
        return 1.0
    scale = 10 ** len(str(int(v * 1000))) / 1000 / 10
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * scale:
            return m * scale
    return v
