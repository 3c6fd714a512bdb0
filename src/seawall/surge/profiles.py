"""Gateway configurations a surge runs under: seawall's defaults, a naive pass-through, or a file.

A profile is an overlay on the gateway's own :class:`~seawall.config.schema.Config` (its
``admission``, ``resilience``, ``auth``, ``server`` and ``tiers`` sections), applied after the
scenario's ``gateway.config`` overlay. The simulator builds its algorithm objects from the
resulting ``Config`` exactly as ``config/stack.py`` does; the live runner writes it out as the
config of the gateway process it starts. So one name means the same thing in both modes.

- ``seawall``: the defaults — adaptive limit, reserved shares, bounded queue, retry budget, breakers.
- ``naive``: admission off, one attempt per request, breakers that never open: a pass-through that
  forwards everything, like the ``bench/surge.py`` baseline.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from seawall.config.load import ConfigError, parse_config
from seawall.config.schema import Config
from seawall.surge.scenario import Scenario

__all__ = ["PROFILES", "gateway_config", "gateway_config_dict", "profile_overlay"]

_SECTIONS = ("admission", "resilience", "auth", "server", "tiers")

PROFILES: dict[str, dict[str, Any]] = {
    "seawall": {},
    "naive": {
        "admission": {"enabled": False},
        "resilience": {"max_attempts": 1, "pace_rate_limits": False,
                       "breaker": {"consecutive_failures": 1_000_000, "min_requests": 1_000_000}},
    },
}


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def profile_overlay(profile: str) -> dict[str, Any]:
    """The overlay for a profile name, or the gateway sections of a YAML config file."""
    if profile in PROFILES:
        return PROFILES[profile]
    path = Path(profile)
    if not path.exists():
        raise ValueError(f"unknown profile '{profile}': use {', '.join(PROFILES)} or a gateway config file")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{profile}: expected a mapping")
    return {k: v for k, v in data.items() if k in _SECTIONS}


def gateway_config_dict(scenario: Scenario, profile: str, base_urls: dict[str, str] | None = None,
                        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The gateway config (as YAML-ready data) for ``scenario`` under ``profile``.

    Models and deployments come from the scenario's upstream; ``base_urls`` maps deployment names
    to the URLs of live upstreams (without them the deployments are in-process mocks, which the
    simulator never starts)."""
    overlay = _merge({k: v for k, v in scenario.gateway.config.items() if k in _SECTIONS},
                     profile_overlay(profile))
    unknown = set(scenario.gateway.config) - set(_SECTIONS)
    if unknown:
        raise ValueError(f"gateway.config: unknown sections {sorted(unknown)}; allowed: {list(_SECTIONS)}")
    models = []
    for model in scenario.upstream.models:
        deployments = []
        for dep in model.deployments:
            entry: dict[str, Any] = {"name": dep.name, "weight": dep.weight, "priority": dep.priority}
            if dep.ttft_timeout_s is not None:
                entry["ttft_timeout_s"] = dep.ttft_timeout_s
            if base_urls is not None:
                entry.update(base_url=base_urls[dep.name], max_connections=4096)
            else:
                entry["provider"] = "mock"
            if dep.metrics:
                # live: the mock's /metrics beside its /v1; simulated: read from the model, never fetched
                root = base_urls[dep.name].removesuffix("/v1") if base_urls is not None else "http://127.0.0.1:9"
                entry["metrics_url"] = root + "/metrics"
            deployments.append(entry)
        models.append({"name": model.name, "deployments": deployments, "balancing": model.balancing})
    return _merge({**overlay, "models": models}, extra or {})


def gateway_config(scenario: Scenario, profile: str) -> Config:
    """The validated gateway config the simulator builds its algorithm objects from."""
    try:
        return parse_config(gateway_config_dict(scenario, profile))
    except ConfigError as exc:
        raise ValueError(f"profile '{profile}': " + "; ".join(exc.problems)) from None
