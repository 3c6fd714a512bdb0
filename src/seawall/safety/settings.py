"""The ``guard:`` section of the config: stage-1 actions, stage 2 and its budget, per model group
and tier, and the output guard's windows.

```yaml
guard:
  stage2: {model: moderation, timeout_s: 0.3, limit_requests: 32,
           shares: {critical_plus: 0.4, critical: 0.4, sheddable_plus: 0.1, sheddable: 0.1}}
  default: {stage2: uncertain, on_unavailable: degrade}
  policies:                     # first match wins; a field left out keeps the default's
    - {tiers: [free], on_unavailable: fail_open}
    - {tiers: [enterprise], models: [gpt-4o], stage2: always, on_unavailable: fail_closed}
  output: {window_tokens: 32, overlap_tokens: 8}
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from seawall.algorithms.guard import GuardRules

__all__ = ["GuardOutputSettings", "GuardPolicySettings", "GuardSettings", "GuardStage2Settings"]

_Action = Literal["allow", "flag", "redact", "block"]
_Category = Literal["injection", "jailbreak", "secret", "pii"]
_CRITICALITIES = Literal["critical_plus", "critical", "sheddable_plus", "sheddable"]


_DEFAULT_SHARES: dict[_CRITICALITIES, float] = {
    "critical_plus": 0.4, "critical": 0.4, "sheddable_plus": 0.1, "sheddable": 0.1}
_DEFAULT_OUTPUT_ACTIONS: dict[_Category, _Action] = {"secret": "block", "pii": "block"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GuardPolicySettings(_Strict):
    """One policy; in ``policies`` it applies to the listed ``models`` and ``tiers`` (all if unset)."""

    models: list[str] | None = None
    tiers: list[str] | None = None
    actions: dict[_Category, _Action] | None = Field(None, description="default: injection, jailbreak and"
                                                     " secret block, pii redact")
    block_score: float | None = Field(None, ge=0, le=1, description="a hit at least this sure acts alone")
    uncertain_score: float | None = Field(None, ge=0, le=1, description="below: ignored; up to block_score:"
                                          " uncertain (stage 2 decides, or flagged)")
    stage2: Literal["off", "uncertain", "always"] | None = None
    moderation_action: Literal["flag", "block"] | None = None
    on_unavailable: Literal["fail_closed", "degrade", "fail_open"] | None = Field(
        None, description="when stage 2 is needed and saturated, slow or down")
    output: bool | None = Field(None, description="check completions (guard_out) when guard.output is set")

    def over(self, base: GuardRules) -> GuardRules:
        """``base`` with the fields this policy sets."""
        return GuardRules(
            actions={str(k): str(v) for k, v in self.actions.items()} if self.actions is not None else base.actions,
            block_score=self.block_score if self.block_score is not None else base.block_score,
            uncertain_score=self.uncertain_score if self.uncertain_score is not None else base.uncertain_score,
            stage2=self.stage2 or base.stage2, moderation_action=self.moderation_action or base.moderation_action,
            on_unavailable=self.on_unavailable or base.on_unavailable,
        )

    def applies(self, model: str, tier: str) -> bool:
        return (self.models is None or model in self.models) and (self.tiers is None or tier in self.tiers)


class GuardStage2Settings(_Strict):
    """Stage 2: a model group of kind ``moderation`` (any OpenAI ``/v1/moderations`` server), called
    with its own deadline, breaker (the deployments'), retry budget and capacity with reserved
    shares per criticality, so free traffic cannot take the guard capacity paying traffic needs."""

    model: str = Field(min_length=1, description="a model group of kind moderation")
    timeout_s: float = Field(0.3, gt=0, le=30, description="stage 2's whole deadline, queueing included")
    limit_requests: float = Field(32, gt=0, description="stage-2 calls in flight at most (adaptive below)")
    min_limit_requests: float = Field(2, gt=0)
    shares: dict[_CRITICALITIES, float] = Field(default_factory=lambda: dict(_DEFAULT_SHARES))
    max_queue_wait_s: float = Field(0.05, ge=0, description="longest wait for stage-2 capacity")
    audit_queue_max_items: int = Field(1000, ge=0, description="degraded prompts kept for a later audit;"
                                       " the oldest is dropped first")
    audit_interval_s: float = Field(0.5, gt=0, description="how often the audit queue is drained")
    retry_budget_ratio: float = Field(0.1, ge=0, le=1)


class GuardOutputSettings(_Strict):
    """``guard_out`` on streams: the text is checked in windows of ``window_tokens`` (about four
    characters each) overlapping by ``overlap_tokens``, holding back at most ``lookahead_tokens``."""

    window_tokens: int = Field(32, ge=4, le=4096)
    overlap_tokens: int = Field(8, ge=0, le=1024)
    lookahead_tokens: int = Field(8, ge=0, le=1024, description="text held back before the client sees it")
    actions: dict[_Category, _Action] = Field(default_factory=lambda: dict(_DEFAULT_OUTPUT_ACTIONS))


class GuardSettings(_Strict):
    enabled: bool = True
    default: GuardPolicySettings = Field(default_factory=GuardPolicySettings)
    policies: list[GuardPolicySettings] = Field(default_factory=list)
    stage2: GuardStage2Settings | None = None
    output: GuardOutputSettings | None = None
    log_prompts: bool = Field(False, description="log the text of blocked prompts (off: never logged)")

    def rules_for(self, model: str, tier: str) -> GuardRules:
        """The first matching policy over the default over the built-in defaults."""
        base = self.default.over(GuardRules(stage2="uncertain" if self.stage2 is not None else "off"))
        for policy in self.policies:
            if policy.applies(model, tier):
                return policy.over(base)
        return base

    def output_for(self, model: str, tier: str) -> bool:
        if self.output is None:
            return False
        for policy in self.policies:
            if policy.applies(model, tier) and policy.output is not None:
                return policy.output
        return self.default.output if self.default.output is not None else True
