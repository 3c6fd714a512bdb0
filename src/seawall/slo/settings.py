"""The ``slo:`` section of the config: objectives per tier, alert rules, webhooks, the status page."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seawall.algorithms.burn_rate import BurnRateRule, Severity

__all__ = ["AlertRuleSettings", "MaintenanceSettings", "SloSettings", "StatusSettings", "TierObjective",
           "WebhookSettings", "default_objective"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierObjective(_Strict):
    """One tier's targets, applied to every component (front door, auth, each group and deployment)."""

    availability: float = Field(0.999, gt=0, lt=1, description="share of valid requests not failed by the service")
    latency: float = Field(0.99, gt=0, lt=1, description="share of successful answers under the threshold")
    latency_threshold_s: float = Field(30.0, gt=0, description="whole answer, non-streaming requests")
    ttft_threshold_s: float = Field(2.0, gt=0, description="time to first token, streams")
    window_days: int = Field(28, ge=1, le=365, description="the SLO window the error budget is counted over")
    shed_counts: bool = Field(True, description="a 503 from admission (overload, deadline) fails the SLI")
    quota_counts: bool = Field(False, description="a 429 from the caller's own quota fails the SLI")


#: Defaults by criticality: the paying tiers are promised more, and being shed fails only them.
_DEFAULTS = {
    "critical_plus": TierObjective(availability=0.9995),
    "critical": TierObjective(availability=0.999),
    "sheddable_plus": TierObjective(availability=0.995, shed_counts=False),
    "sheddable": TierObjective(availability=0.99, latency=0.95, shed_counts=False),
}


def default_objective(criticality: str) -> TierObjective:
    return _DEFAULTS[criticality]


class AlertRuleSettings(_Strict):
    severity: Literal["page", "ticket"]
    burn_rate: float = Field(gt=0)
    long_window_s: int = Field(gt=0, le=35 * 86400)
    short_window_s: int = Field(gt=0)

    @model_validator(mode="after")
    def _short(self) -> AlertRuleSettings:
        if self.short_window_s >= self.long_window_s:
            raise ValueError("short_window_s must be below long_window_s")
        return self

    def rule(self) -> BurnRateRule:
        return BurnRateRule(Severity(self.severity), self.burn_rate, self.long_window_s, self.short_window_s)


def _default_rules() -> list[AlertRuleSettings]:
    return [AlertRuleSettings(severity="page", burn_rate=14.4, long_window_s=3600, short_window_s=300),
            AlertRuleSettings(severity="page", burn_rate=6.0, long_window_s=6 * 3600, short_window_s=1800),
            AlertRuleSettings(severity="ticket", burn_rate=1.0, long_window_s=3 * 86400, short_window_s=6 * 3600)]


class WebhookSettings(_Strict):
    url: str
    format: Literal["json", "slack"] = "json"
    severities: list[Literal["page", "ticket"]] = Field(default_factory=lambda: ["page", "ticket"])  # type: ignore[arg-type]
    timeout_s: float = Field(5.0, gt=0, le=60)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base_s: float = Field(1.0, ge=0, le=60)
    backoff_cap_s: float = Field(60.0, ge=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("not a URL (expected http:// or https://)")
        return value


class MaintenanceSettings(_Strict):
    """Scheduled maintenance, shown on the status page; its components show ``under_maintenance``."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    name: str = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime
    components: list[str] = Field(default_factory=list, description="component ids; empty: all")
    description: str = ""

    @model_validator(mode="after")
    def _order(self) -> MaintenanceSettings:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("starts_at and ends_at need a time zone (for example 2026-03-01T02:00:00Z)")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class StatusSettings(_Strict):
    enabled: bool = True
    title: str = "Seawall status"
    url: str = Field("", description="public URL of the page, for the JSON 'page.url' and the Atom feed")
    refresh_interval_s: float = Field(5.0, gt=0, le=600, description="how old a served render may be")
    state_window_s: int = Field(300, ge=60, le=86400, description="recent window a component's state is judged on")
    uptime_days: int = Field(90, ge=1, le=365)
    maintenances: list[MaintenanceSettings] = Field(default_factory=list)


class SloSettings(_Strict):
    enabled: bool = True
    tiers: dict[str, TierObjective] = Field(default_factory=dict, description="by tier name; default by criticality")
    alerts: list[AlertRuleSettings] = Field(default_factory=_default_rules)
    alert_min_events: int = Field(10, ge=1, description="a long window with fewer events never fires")
    bucket_s: int = Field(60, ge=10, le=3600, description="resolution of the stored counters")
    flush_interval_s: float = Field(5.0, gt=0, le=300, description="counters reach the database this often")
    evaluate_interval_s: float = Field(30.0, gt=0, le=3600, description="alerts are evaluated this often")
    minute_retention_days: int = Field(8, ge=4, le=90, description="fine buckets kept (>= the longest alert window)")
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    status: StatusSettings = Field(default_factory=StatusSettings)

    def rules(self) -> tuple[BurnRateRule, ...]:
        return tuple(a.rule() for a in self.alerts)
