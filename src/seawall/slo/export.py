"""The configured SLOs as OpenSLO v1 documents and as a Prometheus rules file.

Both read the counter the gateway exports, ``seawall_slo_events_total{component,tier,sli,outcome}``,
and both come from the same objects the gateway evaluates (:meth:`SloSettings.rules`,
:func:`objectives`), so the three can never disagree.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import yaml

from seawall.algorithms.burn_rate import BurnRateRule, Severity
from seawall.slo.settings import TierObjective, default_objective
from seawall.slo.sli import AUTH, FRONT_DOOR, component_name, deployment_id, group_id

if TYPE_CHECKING:
    from seawall.config.schema import Config

__all__ = ["components", "objectives", "openslo_documents", "openslo_yaml", "prometheus_rules",
           "prometheus_rules_yaml"]

METRIC = "seawall_slo_events_total"


def objectives(config: Config) -> dict[str, TierObjective]:
    """Each tier's objective: ``slo.tiers`` where given, else the default of its criticality."""
    return {t.name: config.slo.tiers.get(t.name) or default_objective(t.criticality) for t in config.tiers}


def components(config: Config) -> list[str]:
    """Every component, in the order the status page lists them."""
    out = [FRONT_DOOR, AUTH]
    for mi, model in enumerate(config.models):
        out.append(group_id(model.name))
        out += [deployment_id(config.deployment_name(mi, di)) for di in range(len(model.deployments))]
    return out


def _dns(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:63].strip("-")


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _query(component: str, tier: str, sli: str, outcome: str | None) -> str:
    labels = f'component="{component}",tier="{tier}",sli="{sli}"'
    if outcome:
        labels += f',outcome="{outcome}"'
    return f"sum({METRIC}{{{labels}}})"  # a raw counter: OpenSLO's ratioMetric with counter: true


def openslo_documents(config: Config) -> list[dict[str, Any]]:
    rules = config.slo.rules()
    docs: list[dict[str, Any]] = [{
        "apiVersion": "openslo/v1", "kind": "Service",
        "metadata": {"name": "seawall", "displayName": config.slo.status.title},
        "spec": {"description": "LLM API gateway: front door, authentication, model groups and deployments"},
    }]
    for rule in rules:
        docs.append({
            "apiVersion": "openslo/v1", "kind": "AlertCondition",
            "metadata": {"name": _dns("burn", rule.name)},
            "spec": {"severity": rule.severity.value, "description": f"{rule.factor}x burn over "
                     f"{_duration(rule.long_window_s)} and {_duration(rule.short_window_s)}",
                     "condition": {"kind": "burnrate", "op": "gte", "threshold": rule.factor,
                                   "lookbackWindow": _duration(rule.long_window_s),
                                   "alertAfter": _duration(rule.short_window_s)}},
        })
    for severity in Severity:
        conditions = [{"conditionRef": _dns("burn", r.name)} for r in rules if r.severity is severity]
        if conditions:
            docs.append({"apiVersion": "openslo/v1", "kind": "AlertPolicy",
                         "metadata": {"name": f"seawall-{severity.value}"},
                         "spec": {"description": f"seawall {severity.value} alerts", "alertWhenBreaching": True,
                                  "alertWhenResolved": True, "alertWhenNoData": False,
                                  "conditions": conditions, "notificationTargets": []}})
    policies = [{"alertPolicyRef": f"seawall-{s.value}"} for s in Severity if any(r.severity is s for r in rules)]
    for tier, objective in objectives(config).items():
        for component in components(config):
            for sli in ("availability", "latency"):
                target = objective.availability if sli == "availability" else objective.latency
                desc = ("share of valid requests not failed by the service" if sli == "availability" else
                        f"share of successful answers with first token within {objective.ttft_threshold_s:g} s"
                        f" (streams) or complete within {objective.latency_threshold_s:g} s")
                name = _dns(tier, sli, component)
                docs.append({
                    "apiVersion": "openslo/v1", "kind": "SLO",
                    "metadata": {"name": name, "displayName": f"{component_name(component)}: {sli} for {tier}",
                                 "labels": {"tier": [tier], "component": [component]}},
                    "spec": {
                        "description": desc, "service": "seawall", "budgetingMethod": "Occurrences",
                        "indicator": {"metadata": {"name": f"{name}-sli"}, "spec": {"ratioMetric": {
                            "counter": True,
                            "good": {"metricSource": {"type": "Prometheus",
                                                      "spec": {"query": _query(component, tier, sli, "good")}}},
                            "total": {"metricSource": {"type": "Prometheus",
                                                       "spec": {"query": _query(component, tier, sli, None)}}},
                        }}},
                        "timeWindow": [{"duration": f"{objective.window_days}d", "isRolling": True}],
                        "objectives": [{"displayName": sli, "target": target}],
                        "alertPolicies": policies,
                    },
                })
    return docs


def openslo_yaml(config: Config) -> str:
    return yaml.safe_dump_all(openslo_documents(config), sort_keys=False)


def _ratio(window_s: int) -> str:
    return f"seawall:slo_error_ratio:rate{_duration(window_s)}"


def prometheus_rules(config: Config) -> dict[str, Any]:
    """Recording rules (error ratio per window) and, per tier and SLI, one page and one ticket alert."""
    rules = config.slo.rules()
    windows = sorted({w for r in rules for w in (r.long_window_s, r.short_window_s)})
    by = "component, tier, sli"
    recording = [{
        "record": _ratio(w),
        "expr": (f'sum by ({by}) (rate({METRIC}{{outcome="bad"}}[{_duration(w)}])) / '
                 f"sum by ({by}) (rate({METRIC}[{_duration(w)}]))"),
    } for w in windows]
    alerts = []
    for tier, objective in objectives(config).items():
        for sli in ("availability", "latency"):
            target = objective.availability if sli == "availability" else objective.latency
            for severity in Severity:
                mine = [r for r in rules if r.severity is severity]
                if not mine:
                    continue
                alerts.append({
                    "alert": f"SeawallSLO{sli.capitalize()}{severity.value.capitalize()}",
                    "expr": " or ".join(_condition(r, tier, sli, target) for r in mine),
                    "labels": {"severity": severity.value, "tier": tier, "sli": sli},
                    "annotations": {
                        "summary": f"{{{{ $labels.component }}}}: {sli} SLO for {tier} burning its error budget",
                        "description": f"Objective {target:.4%} over {objective.window_days}d; rules: "
                                       + ", ".join(f"{r.factor}x over {_duration(r.long_window_s)} and "
                                                   f"{_duration(r.short_window_s)}" for r in mine)},
                })
    return {"groups": [{"name": "seawall-slo-recording", "rules": recording},
                       {"name": "seawall-slo-alerts", "rules": alerts}]}


def _condition(rule: BurnRateRule, tier: str, sli: str, target: float) -> str:
    threshold = round(rule.factor * (1 - target), 10)
    sel = f'{{tier="{tier}",sli="{sli}"}}'
    return (f"({_ratio(rule.long_window_s)}{sel} > {threshold:g}"
            f" and {_ratio(rule.short_window_s)}{sel} > {threshold:g})")


def prometheus_rules_yaml(config: Config) -> str:
    return yaml.safe_dump(prometheus_rules(config), sort_keys=False, width=200)
