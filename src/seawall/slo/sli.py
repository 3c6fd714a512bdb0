"""What one finished request counts as, for each SLI it belongs to.

**Availability** counts valid requests; a request fails it when the *service* failed it:
- a 2xx/3xx answer, and a 4xx the client caused (bad body, bad key, unknown model), are good: the
  service did its job, and a flood of 401s must not page anyone;
- a 5xx, a 504 and an upstream failure are bad;
- a 503 from admission (``overload``, ``deadline``, ``queue_delay``, ``displaced``,
  ``gateway_overload``) is bad only for tiers with ``shed_counts`` (the paying ones by default:
  shedding free traffic is the design working);
- a 429 from the caller's own quota is bad only with ``quota_counts`` (off by default);
- a client that went away (499) is not counted at all: nobody was there to be failed.

**Latency** counts successful answers: a stream is good when its first token came within
``ttft_threshold_s``, any other answer when it was complete within ``latency_threshold_s``.

**Components**: every authenticated request counts for the front door and auth, for its model group
when the model names one, and for each deployment it was sent to: the last one gets the request's
outcome, each earlier one a failure (the request had to leave it). Requests refused before auth
knew a tier are not counted (no tier, no objective).
"""

from __future__ import annotations

from typing import NamedTuple

from seawall.slo.settings import TierObjective

__all__ = ["AUTH", "FRONT_DOOR", "SHED_REASONS", "Outcome", "component_name", "deployment_id", "group_id",
           "is_bad"]

FRONT_DOOR = "front_door"
AUTH = "auth"
SHED_REASONS = frozenset({"overload", "deadline", "queue_delay", "displaced", "gateway_overload"})


def group_id(name: str) -> str:
    return f"group:{name}"


def deployment_id(name: str) -> str:
    return f"deployment:{name}"


def component_name(component: str) -> str:
    """How a person reads a component id."""
    if component == FRONT_DOOR:
        return "API front door"
    if component == AUTH:
        return "Authentication"
    kind, _, name = component.partition(":")
    return f"Model {name}" if kind == "group" else f"Deployment {name}"


def is_bad(status: int, reason: str, objective: TierObjective) -> bool | None:
    """True: failed by the service; False: good; None: not counted (the client went away)."""
    if status < 400:
        return False
    if status == 499:
        return None
    if status == 503 and reason in SHED_REASONS:
        return objective.shed_counts
    if status == 429 and reason.startswith("quota_"):
        return objective.quota_counts
    return status >= 429  # other 4xx: the client's doing; 429 from upstream, 5xx: the service's


class Outcome(NamedTuple):
    """One request as the SLIs see it; ``slow`` is None when it does not count for latency. (A named
    tuple: made once per request, and a frozen dataclass costs a microsecond to build.)"""

    tier: str
    bad: bool | None
    slow: bool | None
    latency_s: float


def outcome(tier: str, status: int, reason: str, latency_s: float, ttft_s: float | None,
            objective: TierObjective) -> Outcome:
    bad = is_bad(status, reason, objective)
    slow = None
    if status < 400:
        slow = ttft_s > objective.ttft_threshold_s if ttft_s is not None else latency_s > objective.latency_threshold_s
    return Outcome(tier, bad, slow, ttft_s if ttft_s is not None else latency_s)
