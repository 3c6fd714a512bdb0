"""Line charts as inline SVG: no plotting library, no scripts, viewable offline in any browser.

One function, :func:`line_chart`, draws series of (x, y) points (``None`` y values break a line)
with nice axis ticks, a legend, vertical markers for timed events and shaded bands for phases.
Every chart is an ``<svg class="plot" data-plot="ID">`` so a test can find each one by its id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["PALETTE", "Series", "line_chart"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")


@dataclass
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    color: str = ""
    dash: bool = False
    width: float = 1.6
    extra: dict[str, str] = field(default_factory=dict)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(value: float) -> str:
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:g}M"
    if a >= 1e4:
        return f"{value / 1e3:g}k"
    if a >= 100 or value == int(value):
        return f"{value:.0f}"
    if a >= 1:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"


def _time_ticks(x_max: float) -> list[float]:
    """Ticks at round seconds, minutes or hours, at most about 8."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600):
        if x_max / step <= 8:
            return [i * step for i in range(int(x_max / step + 1e-9) + 1)]
    return _nice_ticks(0.0, x_max, 6)


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600 and seconds % 60 == 0:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}"
    if seconds >= 120:
        return f"{seconds / 60:.3g}m"
    return f"{seconds:.3g}s"


def line_chart(plot_id: str, title: str, series: Sequence[Series], *, y_label: str = "",
               x_max: float | None = None, y_max: float | None = None, y_min: float = 0.0,
               markers: Sequence[tuple[float, str]] = (), bands: Sequence[tuple[float, float, str]] = (),
               width: int = 560, height: int = 240, note: str = "") -> str:
    """An SVG line chart; x is time in seconds."""
    left, right, top, bottom = 58, 12, 26, 44
    legend_rows = math.ceil(len(series) / 3) if series else 0
    height_total = height + legend_rows * 16
    pw, ph = width - left - right, height - top - bottom
    xs_all = [x for s in series for x in s.xs]
    ys_all = [y for s in series for y in s.ys if y is not None and math.isfinite(y)]
    xmax = x_max if x_max is not None else (max(xs_all) if xs_all else 1.0)
    xmax = xmax if xmax > 0 else 1.0
    ymax: float = y_max if y_max is not None else (max(ys_all) * 1.08 if ys_all else 1.0)
    if ymax <= y_min:
        ymax = y_min + 1.0

    def px(x: float) -> float:
        return left + pw * min(max(x / xmax, 0.0), 1.0)

    def py(y: float) -> float:
        return top + ph * (1.0 - (min(max(y, y_min), ymax) - y_min) / (ymax - y_min))

    out = [f'<svg class="plot" data-plot="{escape(plot_id)}" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="0 0 {width} {height_total}" width="{width}" height="{height_total}" role="img" '
           f'aria-label="{escape(title)}">',
           f'<title>{escape(title)}</title>',
           f'<rect x="0" y="0" width="{width}" height="{height_total}" fill="#fff"/>',
           f'<text x="{left}" y="16" font-size="13" font-weight="600" fill="#222">{escape(title)}</text>']
    for x0, x1, label in bands:
        a, b = px(x0), px(x1)
        out.append(f'<rect x="{a:.1f}" y="{top}" width="{max(b - a, 0):.1f}" height="{ph}" fill="#f3f3f3"/>')
        if b - a > 40:
            out.append(f'<text x="{(a + b) / 2:.1f}" y="{top + 11}" font-size="9" fill="#888" '
                       f'text-anchor="middle">{escape(label)}</text>')
    for t in _nice_ticks(y_min, ymax):
        y = py(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{left - 5}" y="{y + 3:.1f}" font-size="10" fill="#555" '
                   f'text-anchor="end">{_fmt(t)}</text>')
    for t in _time_ticks(xmax):
        x = px(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#888"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 15}" font-size="10" fill="#555" '
                   f'text-anchor="middle">{_fmt_time(t)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    if y_label:
        out.append(f'<text x="12" y="{top + ph / 2:.1f}" font-size="10" fill="#555" text-anchor="middle" '
                   f'transform="rotate(-90 12 {top + ph / 2:.1f})">{escape(y_label)}</text>')
    for x, label in markers:
        xx = px(x)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top}" y2="{top + ph}" stroke="#b22" '
                   f'stroke-dasharray="3,3" stroke-width="1"><title>{escape(label)}</title></line>')
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for x, yv in zip(s.xs, s.ys, strict=False):
            if yv is None or not math.isfinite(yv):
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append(f"{px(x):.1f},{py(yv):.1f}")
        dash = ' stroke-dasharray="6,3"' if s.dash else ""
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="1.8" fill="{color}"/>')
            elif run:
                out.append(f'<polyline class="series" data-series="{escape(s.label)}" fill="none" '
                           f'stroke="{color}" stroke-width="{s.width}"{dash} points="{" ".join(run)}"/>')
        row, col = divmod(i, 3)
        lx, ly = left + col * (pw / 3), height + 4 + row * 16
        out.append(f'<line x1="{lx:.1f}" x2="{lx + 18:.1f}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{color}" '
                   f'stroke-width="2"{dash}/>')
        out.append(f'<text x="{lx + 22:.1f}" y="{ly + 3:.1f}" font-size="10" fill="#333">{escape(s.label)}</text>')
    if not series or not ys_all:
        out.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph / 2:.1f}" font-size="12" fill="#999" '
                   f'text-anchor="middle">{escape(note or "no data")}</text>')
    out.append("</svg>")
    return "".join(out)
