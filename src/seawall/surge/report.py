"""Reports: ``results.json`` and one self-contained HTML page, for one run or several side by side.

Every mode (simulated, live) turns its :class:`~seawall.surge.stats.Recorder` into a *run* with
:func:`run_json`; :func:`write_report` puts one or more runs of the same scenario into
``DIR/results.json`` and ``DIR/report.html``. The page has no scripts and no external resources:
the plots are inline SVG (:mod:`seawall.surge.svg`), so it opens offline and can be committed.

What a run holds: per tier, offered vs admitted vs succeeded over time, success rate and p50/p99
latency, shed reasons; the adaptive limit and upstream load over time; retry amplification (the
clients' — attempts per user request — and the gateway's — upstream attempts per request that
reached the router); recovery time after the disturbance; and a verdict per SLO.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from seawall.surge.profiles import PROFILES
from seawall.surge.scenario import Scenario
from seawall.surge.stats import Recorder
from seawall.surge.svg import PALETTE, Series, line_chart

__all__ = ["render_html", "results_json", "run_json", "write_report"]

_DEFAULT_RECOVERY_THRESHOLD = 0.99


def run_json(scenario: Scenario, recorder: Recorder, *, mode: str, profile: str,
             meta: dict[str, Any] | None = None, tiers: Sequence[str] | None = None) -> dict[str, Any]:
    """One run: the recorder's data plus verdicts, recovery and amplification."""
    data = recorder.to_json()
    names = list(tiers or scenario.tiers)
    summaries = {n: data["tiers"][n]["summary"] for n in names if n in data["tiers"]}
    verdicts = []
    for tier, slo in scenario.slo.items():
        s = summaries.get(tier)
        if s is None:
            continue
        if slo.success_rate_pct is not None:
            value = s["success_rate_pct"]
            verdicts.append({"tier": tier, "objective": "success_rate_pct", "target": slo.success_rate_pct,
                             "value": value, "pass": value is not None and value >= slo.success_rate_pct})
        if slo.p99_latency_s is not None:
            value = s["p99_s"]
            verdicts.append({"tier": tier, "objective": "p99_latency_s", "target": slo.p99_latency_s,
                             "value": value, "pass": value is not None and value <= slo.p99_latency_s})
    start = scenario.recovery_start_s()
    recovery: dict[str, float | None] = {}
    for i, tier in enumerate(recorder.tier_names):
        if tier not in summaries:
            continue
        tier_slo = scenario.slo.get(tier)
        target = (tier_slo.success_rate_pct / 100.0
                  if tier_slo is not None and tier_slo.success_rate_pct is not None else _DEFAULT_RECOVERY_THRESHOLD)
        recovery[tier] = recorder.recovery_s(i, start, min(target, _DEFAULT_RECOVERY_THRESHOLD))
    values = [v for v in recovery.values() if v is not None]
    arrivals = sum(s["requests"] for s in summaries.values())
    attempts = sum(s["attempts"] for s in summaries.values())
    return {
        "mode": mode,
        "profile": profile,
        "label": f"{profile if profile in PROFILES else Path(profile).stem} ({mode})",
        "meta": meta or {},
        "summary": summaries,
        "verdicts": verdicts,
        "slo_met": all(v["pass"] for v in verdicts) if verdicts else None,
        "recovery_from_s": start,
        "recovery_s": recovery,
        "recovery_all_s": None if len(values) < len(recovery) else (max(values) if values else None),
        "amplification": {
            "client": attempts / arrivals if arrivals else None,
            "gateway": data["gateway"]["amplification"],
        },
        **data,
    }


def results_json(scenario: Scenario, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    starts = scenario.phase_starts()
    return {
        "generated_unix": time.time(),
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "duration_s": scenario.duration_s,
            "tiers": list(scenario.tiers),
            "phases": [{"name": p.name, "start_s": s, "duration_s": p.duration_s}
                       for p, s in zip(scenario.phases, starts, strict=True)],
            "events": [e.model_dump(mode="json") for e in scenario.events],
            "slo": {k: v.model_dump(mode="json") for k, v in scenario.slo.items()},
        },
        "runs": list(runs),
        "plots": plot_ids(runs, list(scenario.tiers)),
    }


def plot_ids(runs: Sequence[dict[str, Any]], tiers: Sequence[str]) -> list[str]:
    ids = [f"compare-{metric}-{tier}" for metric in ("success", "p99") for tier in tiers]
    for r, _ in enumerate(runs):
        ids += [f"traffic-{tier}-{r}" for tier in tiers]
        ids += [f"success-{r}", f"latency-{r}", f"shed-{r}", f"limit-{r}", f"upstream-{r}", f"amplification-{r}"]
    return ids


def _events_markers(scenario: dict[str, Any]) -> list[tuple[float, str]]:
    out = []
    for e in scenario["events"]:
        at = e["at_s"]
        label = e["kind"].replace("_", " ") + (f" {e['deployment']}" if e.get("deployment") else "")
        if e["kind"] == "capacity_added":
            out.append((at + e["cold_start_s"], label + " (serving)"))
        if e["kind"] == "invalid_key_flood":
            out.append((at + e["duration_s"], "flood ends"))
        out.append((at, label))
    return out


def _bands(scenario: dict[str, Any]) -> list[tuple[float, float, str]]:
    return [(p["start_s"], p["start_s"] + p["duration_s"], p["name"])
            for i, p in enumerate(scenario["phases"]) if i % 2 == 1]


def _rate(values: Sequence[float | int | None], bucket_s: float) -> list[float | None]:
    return [None if v is None else v / bucket_s for v in values]


def _plots_for_run(results: dict[str, Any], r: int) -> list[str]:
    run = results["runs"][r]
    sc = results["scenario"]
    n, bucket = run["buckets"], run["bucket_s"]
    xs = [(b + 0.5) * bucket for b in range(n)]
    common: dict[str, Any] = {"x_max": sc["duration_s"], "markers": _events_markers(sc), "bands": _bands(sc)}
    label = run["label"]
    out = []
    for tier in sc["tiers"]:
        s = run["tiers"][tier]["series"]
        out.append(line_chart(
            f"traffic-{tier}-{r}", f"{tier}: offered / admitted / succeeded — {label}",
            [Series("offered", xs, _rate(s["offered"], bucket), color="#7f7f7f"),
             Series("admitted", xs, _rate(s["admitted"], bucket), color="#1f77b4"),
             Series("succeeded", xs, _rate(s["ok"], bucket), color="#2ca02c")],
            y_label="requests/s", **common))
    series = []
    for i, tier in enumerate(sc["tiers"]):
        s = run["tiers"][tier]["series"]
        ratio = []
        for b in range(n):
            ended = sum(s[o][b] for o in ("ok", "shed", "upstream_429", "error", "cancelled"))
            ratio.append(100.0 * s["ok"][b] / ended if ended else None)
        series.append(Series(tier, xs, ratio, color=_tier_color(i)))
    out.append(line_chart(f"success-{r}", f"attempt success rate by tier (%) — {label}", series,
                          y_label="% of attempts ok", y_max=100.0, **common))
    out.append(line_chart(
        f"latency-{r}", f"p99 latency of successful requests (s) — {label}",
        [Series(tier, xs, run["tiers"][tier]["series"]["p99_s"], color=_tier_color(i))
         for i, tier in enumerate(sc["tiers"])], y_label="seconds", **common))
    reasons = sorted(run["reasons"].items(), key=lambda kv: -sum(kv[1]))[:8]
    out.append(line_chart(
        f"shed-{r}", f"refusals and failures by reason (per s, all tiers) — {label}",
        [Series(k, xs, _rate(v, bucket)) for k, v in reasons], y_label="per second",
        note="nothing refused", **common))
    gauges = run["gauges"]
    limit_series = []
    for key, values in gauges.items():
        if key.startswith("limit_units.") and key.endswith(".total"):
            group = key.split(".")[1]
            limit_series.append(Series(f"limit {group} (all replicas)", xs, values, color="#1f77b4"))
            used = gauges.get(f"inflight_units.{group}.total")
            if used:
                limit_series.append(Series(f"in flight {group}", xs, used, color="#ff7f0e"))
    out.append(line_chart(f"limit-{r}", f"adaptive limit, work units (estimated tokens) — {label}",
                          limit_series, y_label="tokens", note="admission off: no limit", **common))
    up_series = []
    for i, key in enumerate(k for k in gauges if k.startswith("upstream_in_flight.")):
        dep = key.split(".", 1)[1]
        color = _tier_color(i)
        up_series.append(Series(f"{dep} in flight", xs, gauges[key], color=color))
        cap = gauges.get(f"upstream_capacity.{dep}")
        if cap:
            up_series.append(Series(f"{dep} capacity", xs, cap, color=color, dash=True, width=1.0))
    out.append(line_chart(f"upstream-{r}", f"upstream requests in flight vs capacity — {label}", up_series,
                          y_label="requests", **common))
    arrivals = [sum(run["tiers"][t]["series"]["arrivals"][b] for t in sc["tiers"]) for b in range(n)]
    offered = [sum(run["tiers"][t]["series"]["offered"][b] for t in sc["tiers"]) for b in range(n)]
    greq, gatt = run["gateway"]["requests_series"], run["gateway"]["attempts_series"]
    out.append(line_chart(
        f"amplification-{r}", f"retry amplification — {label}",
        [Series("client: attempts / user requests", xs, [o / a if a else None for o, a in zip(offered, arrivals,
                                                                                            strict=True)]),
         Series("gateway: upstream attempts / requests", xs,
                [at / rq if rq else None for at, rq in zip(gatt, greq, strict=True)], dash=True)],
        y_label="x", y_min=0.0, **common))
    return out


def _tier_color(i: int) -> str:
    return ("#6a3d9a", "#1f78b4", "#33a02c", "#e6a100", "#e31a1c", "#777777")[i % 6]


def _compare_plots(results: dict[str, Any]) -> list[str]:
    """Per tier, one line per run: success rate and p99 over time, in coarser steps (about 60 over
    the run) so that several runs stay readable on one chart."""
    sc = results["scenario"]
    runs = results["runs"]
    out = []
    for metric in ("success", "p99"):
        for tier in sc["tiers"]:
            series = []
            for run in runs:
                n, bucket = run["buckets"], run["bucket_s"]
                k = max(1, math.ceil(n / 60))
                s = run["tiers"][tier]["series"]
                xs, ys = [], []
                for start in range(0, n, k):
                    stop = min(n, start + k)
                    xs.append((start + stop) / 2 * bucket)
                    if metric == "success":
                        ok = sum(s["ok"][start:stop])
                        ended = sum(sum(s[o][start:stop]) for o in ("ok", "shed", "upstream_429", "error", "cancelled"))
                        ys.append(100.0 * ok / ended if ended else None)
                    else:
                        values = [v for v in s["p99_s"][start:stop] if v is not None]
                        ys.append(max(values) if values else None)
                profiles = list(dict.fromkeys(x["profile"] for x in runs))
                modes = {x["mode"] for x in runs}
                series.append(Series(run["label"], xs, ys, color=PALETTE[profiles.index(run["profile"]) % len(PALETTE)],
                                     dash=len(modes) > 1 and run["mode"] == "sim"))
            title = (f"{tier}: success rate (% of attempts), every run" if metric == "success"
                     else f"{tier}: p99 latency of successful requests (s), every run")
            out.append(line_chart(f"compare-{metric}-{tier}", title, series,
                                  y_label="% ok" if metric == "success" else "seconds",
                                  y_max=100.0 if metric == "success" else None, x_max=sc["duration_s"],
                                  markers=_events_markers(sc), bands=_bands(sc)))
    return out


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def render_html(results: dict[str, Any]) -> str:
    sc = results["scenario"]
    runs = results["runs"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>seawall surge lab — {escape(sc['name'])}</title>",
        "<style>body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}"
        "table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ddd;padding:3px 8px;"
        "text-align:right}th{background:#f5f5f5}td.l,th.l{text-align:left}.pass{color:#1a7f37;font-weight:600}"
        ".fail{color:#c62828;font-weight:600}.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));"
        "gap:10px}.grid svg{max-width:100%;height:auto}h2{margin-top:28px}code{background:#f3f3f3;padding:1px 4px}"
        "</style></head><body>",
        f"<h1>Surge lab: {escape(sc['name'])}</h1>",
        f"<p>{escape(sc['description'])}</p>",
        "<p>Runs: " + "; ".join(
            f"<b>{escape(run['label'])}</b> ({_meta_line(run)})" for run in runs) + "</p>",
        "<h2>Verdicts against the scenario's SLOs</h2>", _verdict_table(results),
        "<h2>Per tier</h2>", _summary_table(results),
        "<h2>Side by side</h2>", "<div class='grid'>", *_compare_plots(results), "</div>",
    ]
    kinds = [("traffic", "Offered vs admitted vs succeeded"), ("success", "Success rate"),
             ("latency", "Latency"), ("shed", "Refusals by reason"), ("limit", "Adaptive limit"),
             ("upstream", "Upstream load"), ("amplification", "Retry amplification")]
    by_run = [_plots_for_run(results, r) for r in range(len(runs))]
    n_tiers = len(sc["tiers"])
    for k, (kind, heading) in enumerate(kinds):
        parts.append(f"<h2>{heading}</h2><div class='grid' style='grid-template-columns:repeat({len(runs)},"
                     f"minmax(0,1fr))'>")
        if kind == "traffic":
            for t in range(n_tiers):
                parts.extend(plots[t] for plots in by_run)
        else:
            parts.extend(plots[n_tiers + k - 1] for plots in by_run)
        parts.append("</div>")
    parts.append(_scenario_section(sc))
    parts.append("<p style='color:#777'>Generated by <code>seawall surge</code>. Latency is from the "
                 "user's first attempt to the last byte (client retries included); success is per user "
                 "request after the client's own retries. Plots of attempts count each HTTP exchange.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _meta_line(run: dict[str, Any]) -> str:
    m = run["meta"]
    shown = ("replicas", "shards", "seed", "time_scale", "load_scale", "wall_s", "requests", "target")
    bits = [f"{k}={v}" for k, v in m.items() if k in shown]
    return escape(", ".join(bits))


def _verdict_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    rows: dict[tuple[str, str, float], dict[int, dict[str, Any]]] = {}
    for r, run in enumerate(runs):
        for v in run["verdicts"]:
            rows.setdefault((v["tier"], v["objective"], v["target"]), {})[r] = v
    if not rows:
        return "<p>The scenario declares no SLOs.</p>"
    head = "".join(f"<th>{escape(run['label'])}</th>" for run in runs)
    out = [f"<table><tr><th class='l'>tier</th><th class='l'>objective</th><th>target</th>{head}</tr>"]
    for (tier, objective, target), by_run in rows.items():
        unit = "%" if objective == "success_rate_pct" else " s"
        cells = []
        for r in range(len(runs)):
            v = by_run.get(r)
            if v is None:
                cells.append("<td>-</td>")
            else:
                cls = "pass" if v["pass"] else "fail"
                cells.append(f"<td><span class='{cls}'>{'PASS' if v['pass'] else 'FAIL'}</span> "
                             f"{_fmt(v['value'], unit, 3 if unit == '%' else 2)}</td>")
        label = "success rate ≥" if objective == "success_rate_pct" else "p99 latency ≤"
        out.append(f"<tr><td class='l'>{escape(tier)}</td><td class='l'>{label}</td><td>{target:g}{unit}</td>"
                   f"{''.join(cells)}</tr>")
    out.append("</table>")
    return "".join(out)


def _summary_table(results: dict[str, Any]) -> str:
    out = ["<table><tr><th class='l'>run</th><th class='l'>tier</th><th>requests</th><th>success</th>"
           "<th>p50 s</th><th>p99 s</th><th>attempts / request</th><th>recovery s</th>"
           "<th class='l'>top refusals (attempts)</th></tr>"]
    for run in results["runs"]:
        for tier, s in run["summary"].items():
            reasons = ", ".join(f"{escape(k)} {v}" for k, v in list(s["reasons"].items())[:4])
            out.append(
                f"<tr><td class='l'>{escape(run['label'])}</td><td class='l'>{escape(tier)}</td>"
                f"<td>{s['requests']}</td><td>{_fmt(s['success_rate_pct'], '%')}</td><td>{_fmt(s['p50_s'])}</td>"
                f"<td>{_fmt(s['p99_s'])}</td><td>{_fmt(s['client_amplification'])}</td>"
                f"<td>{_fmt(run['recovery_s'].get(tier), '', 0)}</td><td class='l'>{reasons}</td></tr>")
        amp = run["amplification"]
        out.append(f"<tr><td class='l'>{escape(run['label'])}</td><td class='l' colspan='8'>retry amplification: "
                   f"clients {_fmt(amp['client'])}x, gateway {_fmt(amp['gateway'])}x; recovery (all tiers) "
                   f"{_fmt(run['recovery_all_s'], ' s', 0)} after {run['recovery_from_s']:g} s</td></tr>")
    out.append("</table>")
    return "".join(out)


def _scenario_section(sc: dict[str, Any]) -> str:
    phases = "".join(f"<tr><td class='l'>{escape(p['name'])}</td><td>{p['start_s']:g}</td>"
                     f"<td>{p['duration_s']:g}</td></tr>" for p in sc["phases"])
    events = "".join(f"<tr><td>{e['at_s']:g}</td><td class='l'>{escape(e['kind'])}</td><td class='l'>"
                     f"{escape(json.dumps({k: v for k, v in e.items() if k not in ('at_s', 'kind')}))}</td></tr>"
                     for e in sc["events"])
    return (f"<h2>Scenario</h2><table><tr><th class='l'>phase</th><th>start s</th><th>duration s</th></tr>"
            f"{phases}</table><table><tr><th>at s</th><th class='l'>event</th><th class='l'>details</th></tr>"
            f"{events}</table>")


def write_report(out_dir: str | Path, scenario: Scenario, runs: Sequence[dict[str, Any]]) -> Path:
    """Write ``results.json`` and ``report.html`` into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = results_json(scenario, runs)
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=False, default=_json_default))
    html_path = out / "report.html"
    html_path.write_text(render_html(results), encoding="utf-8")
    return html_path


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
