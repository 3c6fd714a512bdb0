"""The guard policy from the ``guard:`` config: stage 1, stage 2 on its own router and gate, the
audit queue and its drainer. Used by ``config/stack.py`` (imported only when a guard is configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seawall.algorithms.ejection import EjectionGuard
from seawall.algorithms.guard import AuditQueue
from seawall.algorithms.retry_budget import RetryBudget
from seawall.config.registry import make_guard_gate
from seawall.env import Clock, Rng
from seawall.policies.guard import AuditItem, GuardPolicy
from seawall.policies.guard_stage2 import AuditDrainer, Stage2
from seawall.policies.route import RetrySettings, Router
from seawall.safety.engine import Stage1

if TYPE_CHECKING:
    from seawall.config.schema import Config

__all__ = ["build_guard"]


def build_guard(config: Config, router: Router, *, clock: Clock, rng: Rng, metrics: Any,
                background: list[Any]) -> GuardPolicy | None:
    """None when no guard is configured (then it is not in the stack at all)."""
    settings = config.guard
    if settings is None or not settings.enabled:
        return None
    stage2 = None
    audit: AuditQueue[AuditItem] | None = None
    s2 = settings.stage2
    if s2 is not None:
        r = config.resilience
        # Its own router: the moderation group's deployments (breakers shared with direct
        # moderation traffic) with its own retry budget, so a moderation outage spends no chat retries.
        own = Router({s2.model: router.groups[s2.model]}, clock=clock, rng=rng,
                     budget=RetryBudget(s2.retry_budget_ratio, r.retry_min_per_s, r.retry_window_s),
                     ejection=EjectionGuard(r.max_ejected_fraction),
                     retry=RetrySettings(min(r.max_attempts, 2), r.backoff_base_s, r.backoff_cap_s))
        stage2 = Stage2(s2.model, own, make_guard_gate(s2, clock), clock=clock, timeout_s=s2.timeout_s)
        audit = AuditQueue(s2.audit_queue_max_items)
        on_audit = getattr(metrics, "on_guard_audit", None)

        def on_result(request_id: str, flagged: bool | None) -> None:
            if on_audit is not None:
                on_audit("flagged" if flagged else "clean")

        drainer = AuditDrainer(stage2, audit, clock=clock, interval_s=s2.audit_interval_s, on_result=on_result)
        drainer.start()
        background.append(drainer)
        register = getattr(metrics, "gauge_callback", None)
        if register is not None:
            q = audit
            register("seawall_guard_audit_queue", "Degraded prompts waiting for a stage-2 audit, and those"
                     " dropped (oldest first) because the queue was full.", ["kind"],
                     lambda: {("queued",): float(len(q)), ("dropped",): float(q.dropped)})
    return GuardPolicy(settings, Stage1(), clock=clock, stage2=stage2, metrics=metrics, audit=audit)
