"""The configuration schema: one YAML file, typed, units in every name.

Validation collects every error with its path in the file (``models[2].deployments[0].base_url:
not a URL``) so an operator fixes a file in one pass. Pydantic is used here, at load time only;
the hot path uses msgspec (see docs/decisions.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from seawall.core.types import Criticality
from seawall.safety.settings import GuardSettings
from seawall.slo.settings import SloSettings

__all__ = [
    "AuthSettings",
    "Config",
    "Deployment",
    "Model",
    "QuotaLimitSettings",
    "QuotaScopeSettings",
    "QuotaSettings",
    "ServerSettings",
    "StoreSettings",
    "Tenant",
    "Tier",
    "TimeoutSettings",
]

_CRITICALITIES = Literal["critical_plus", "critical", "sheddable_plus", "sheddable"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not a URL (expected http:// or https:// with a host)")
    return value.rstrip("/")


class TimeoutSettings(_Strict):
    connect_s: float = Field(5.0, gt=0, le=600)
    read_s: float = Field(60.0, gt=0, le=3600, description="longest gap between two bytes")
    total_s: float = Field(600.0, gt=0, le=7200)


def _registered(registry: str, value: str, what: str) -> str:
    """``value`` if it names a kind in ``config/registry.py``'s ``registry`` (imported when first
    checked: the registry builds from this schema)."""
    from seawall.config import registry as kinds

    known: dict[str, object] = getattr(kinds, registry)
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; known: {', '.join(sorted(known))}")
    return value


class Deployment(_Strict):
    name: str | None = None
    provider: str = Field("openai", description="a kind in config/registry.py PROVIDERS: openai, anthropic, mock")
    base_url: str | None = None
    model: str | None = Field(None, description="upstream model name; default: the public name")
    api_key_env: str | None = Field(None, description="environment variable holding the secret")
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    max_connections: int = Field(256, ge=1, le=100_000)
    weight: float = Field(1.0, ge=0, description="relative share for weighted balancing")
    priority: int = Field(0, ge=0, description="lower is preferred; higher tiers are fallbacks")
    ttft_timeout_s: float | None = Field(None, gt=0, description="fail over if no first token by then")
    metrics_url: str | None = Field(
        None, description="a self-hosted server's Prometheus metrics (vLLM, TGI, SGLang): its queue feeds admission"
    )
    metrics_interval_s: float = Field(0.5, gt=0, le=60)
    metrics_timeout_s: float = Field(0.25, gt=0, le=10, description="a slower answer is no reading")
    mock: dict[str, Any] | None = Field(
        None, description="in-process simulated upstream settings (seawall.mock.config.MockConfig)"
    )

    @field_validator("mock")
    @classmethod
    def _mock(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from seawall.mock.config import MockConfig

            MockConfig.from_mapping(value)  # raises ValueError naming the field
        return value

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        return _registered("PROVIDERS", value, "provider")

    @field_validator("base_url", "metrics_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @model_validator(mode="after")
    def _needs_url(self) -> Deployment:
        if self.provider != "mock" and self.base_url is None:
            raise ValueError(f"base_url is required for provider '{self.provider}'")
        return self


class Model(_Strict):
    name: str = Field(min_length=1)
    deployments: list[Deployment] = Field(min_length=1)
    kind: Literal["chat", "embeddings", "moderation"] = "chat"
    balancing: Literal["weighted", "least_inflight", "latency"] = "latency"


class Tier(_Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9_\-]+$")
    criticality: _CRITICALITIES


class Tenant(_Strict):
    name: str = Field(min_length=1)
    tier: str


class Lane(_Strict):
    """A dedicated listener process for the criticalities that must survive a flood (a bulkhead)."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9_\-]+$")
    port: int = Field(ge=1, le=65535)
    min_criticality: _CRITICALITIES = "critical"


class CorsSettings(_Strict):
    """Cross-origin access for browser clients; off unless ``allow_origins`` lists an origin (or ``*``)."""

    allow_origins: list[str] = Field(default_factory=list, description="exact origins, e.g."
                                     " https://app.example.com, or '*' for any")
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST", "DELETE", "OPTIONS"])
    allow_headers: list[str] = Field(default_factory=lambda: [
        "authorization", "content-type", "x-api-key", "anthropic-version", "anthropic-beta", "x-request-id",
        "x-request-timeout", "openai-organization", "openai-project"], description="'*' allows any")
    expose_headers: list[str] = Field(default_factory=lambda: [
        "x-request-id", "request-id", "retry-after", "retry-after-ms", "x-seawall-reason", "x-should-retry",
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"])
    allow_credentials: bool = False
    max_age_s: int = Field(600, ge=0, le=86400, description="how long a browser may cache a preflight")

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not (origin.startswith(("http://", "https://")) and origin.count("/") == 2):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], no path) or '*'")
        return value


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # What one client connection may cost before it is refused (edges/server.py, HttpProtocol).
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024,
                                  description="request line and headers together; 431 beyond")
    max_header_count: int = Field(100, ge=8, le=10_000, description="431 beyond")
    max_url_bytes: int = Field(8 * 1024, ge=256, le=1024 * 1024, description="414 beyond")
    header_timeout_s: float = Field(10.0, gt=0, le=300, description=(
        "from a connection's or a request's first byte to its last header; 408 beyond (slowloris)"))
    body_idle_timeout_s: float = Field(15.0, gt=0, le=600, description=(
        "the longest silence inside a request body; 408 beyond (slow POST)"))
    body_timeout_s: float = Field(120.0, gt=0, le=3600, description="a whole request body; 408 beyond")
    response_stall_timeout_s: float = Field(30.0, gt=0, le=3600, description=(
        "how long a client may leave our response unread (writes paused); the connection is closed beyond"))
    max_messages: int = Field(100_000, ge=1, le=10_000_000, description="per request body; 400 beyond")
    max_output_tokens: int = Field(1_048_576, ge=1, le=2**31, description=(
        "max_tokens (x n) a request may ask for; 400 beyond"))
    default_timeout_s: float = Field(120.0, gt=0, le=3600)
    max_timeout_s: float = Field(600.0, gt=0, le=7200)
    admin_key_env: str | None = Field(None, description="env var with a key that may read /admin")
    lanes: list[Lane] = Field(default_factory=list)
    cors: CorsSettings = Field(default_factory=CorsSettings)


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class StoreSettings(_Strict):
    sqlite_path: str = "./.seawall/seawall.db"
    refresh_interval_s: float = Field(1.0, gt=0, le=60, description="key snapshot refresh period")
    ledger: bool = Field(True, description="record one usage row per request")
    ledger_flush_interval_s: float = Field(0.5, gt=0, le=60, description="a finished request is in the"
                                           " ledger database at most this long after it was answered")
    ledger_spill_path: str = "./.seawall/ledger-spill.jsonl"
    responses_retention_s: float = Field(30 * 86400.0, gt=0, description="Responses API responses kept"
                                         " with store: true are readable and continuable this long (OpenAI: 30 days)")
    # Beyond one machine (see docs/decisions.md "Many replicas"): Redis for shared quota counters,
    # PostgreSQL for keys and the ledger. The top-level ``redis_url``/``database_url`` say the same.
    redis_url: str | None = Field(None, description="redis://host:port/db; shared quota counters")
    redis_url_env: str | None = Field(None, pattern=_ENV_NAME, description="environment variable holding redis_url"
                                      " (a password stays out of the file)")
    redis_prefix: str = Field("seawall", pattern=r"^[A-Za-z0-9_:\-.]{1,64}$",
                              description="prefix of every Redis key (one per gateway fleet)")
    database_url: str | None = Field(None, description="postgresql://...; keys and the usage ledger")
    database_url_env: str | None = Field(None, pattern=_ENV_NAME, description="environment variable holding"
                                         " database_url (a password stays out of the file)")
    database_schema: str = Field("seawall", pattern=r"^[a-z_][a-z0-9_]{0,47}$")
    database_timeout_s: float = Field(2.0, gt=0, le=60, description="per database call (not on the hot path)")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return _check_redis_url(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return _check_database_url(value)


def _shared_url(problems: list[str], environ: Mapping[str, str], name: str, check: Any, top: str | None,
                in_store: str | None, top_env: str | None, store_env: str | None) -> str | None:
    """The URL of one shared store from ``name``, ``store.name``, ``name_env`` or ``store.name_env``
    (set one; the two literal ones may repeat each other). Problems are appended with their path;
    a value read from the environment is never echoed (it may hold a password)."""
    if top and in_store and top != in_store:
        problems.append(f"{name}: differs from store.{name} (set one)")
    literal = top or in_store
    envs = [(path, var) for path, var in ((f"{name}_env", top_env), (f"store.{name}_env", store_env)) if var]
    if not envs:
        return literal
    path, var = envs[0]
    if literal:
        problems.append(f"{path}: set, and {name if top else f'store.{name}'} too (set one)")
        return literal
    if len(envs) == 2 and top_env != store_env:
        problems.append(f"{name}_env: differs from store.{name}_env (set one)")
    value = environ.get(var, "")
    if not value:
        problems.append(f"{path}: environment variable {var} is unset or empty")
        return None
    try:
        check(value)
    except ValueError as exc:
        problems.append(f"{path}: environment variable {var}: {exc}")
        return None
    return value


def _check_redis_url(value: str | None) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("not a Redis URL (expected redis://, rediss:// or unix://)")
    return value


def _check_database_url(value: str | None) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("postgres", "postgresql"):
        raise ValueError("not a PostgreSQL URL (expected postgresql://)")
    return value


class QuotaLimitSettings(_Strict):
    """Limits of one scope. Unset: inherited from the less specific entry; ``null``: unlimited."""

    requests_per_min: int | None = Field(None, ge=1)
    tokens_per_min: int | None = Field(None, ge=1, description="estimated at admission, then actual usage")
    concurrent_requests: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1, description="UTC day; refusals say x-should-retry: false")


class QuotaScopeSettings(_Strict):
    key: QuotaLimitSettings | None = Field(None, description="limits of each key")
    tenant: QuotaLimitSettings | None = Field(None, description="limits of the tenant, all its keys together")


class QuotaSettings(_Strict):
    """Quotas per key and per tenant: defaults per tier, overridden per tenant, then per key id."""

    tiers: dict[str, QuotaScopeSettings] = Field(default_factory=dict)
    tenants: dict[str, QuotaScopeSettings] = Field(default_factory=dict)
    keys: dict[str, QuotaLimitSettings] = Field(default_factory=dict, description="by key id")
    redis_timeout_s: float = Field(0.05, gt=0, le=5, description="per Redis call; slower means local fallback")
    heartbeat_interval_s: float = Field(1.0, gt=0, le=60, description="replica heartbeat into Redis")


class FailureThrottleSettings(_Strict):
    """Per client address: after ``burst`` failed authentications, ``per_s`` more per second."""

    burst: int = Field(20, ge=1)
    per_s: float = Field(2.0, gt=0)
    max_addresses: int = Field(100_000, ge=100)


class AuthSettings(_Strict):
    failure_throttle: FailureThrottleSettings = Field(default_factory=FailureThrottleSettings)
    negative_cache_size: int = Field(100_000, ge=0)
    negative_cache_ttl_s: float = Field(10.0, gt=0)
    jwt: Any | None = Field(None, description="seawall.auth.jwt.JwtSettings")

    @field_validator("jwt", mode="before")
    @classmethod
    def _jwt(cls, value: Any) -> Any:
        if value is None:
            return None
        from seawall.auth.jwt import JwtSettings

        return JwtSettings.model_validate(value)


class BreakerSettings(_Strict):
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)
    min_requests: int = Field(20, ge=1)
    consecutive_failures: int = Field(5, ge=1)
    window_s: float = Field(10.0, gt=0)
    open_s: float = Field(5.0, gt=0)
    max_open_s: float = Field(60.0, gt=0)
    half_open_max_probes: int = Field(1, ge=1)
    probe_successes_to_close: int = Field(2, ge=1)


class ResilienceSettings(_Strict):
    """Failover: how many attempts, what retries may cost, when a deployment is taken out."""

    max_attempts: int = Field(3, ge=1, le=10)
    retry_budget_ratio: float = Field(0.2, ge=0, le=1, description="retries per request, over the window")
    retry_min_per_s: float = Field(10.0, ge=0, description="retries always allowed per second")
    retry_window_s: float = Field(10.0, gt=0)
    backoff_base_s: float = Field(0.05, ge=0)
    backoff_cap_s: float = Field(2.0, ge=0)
    max_ejected_fraction: float = Field(0.5, ge=0, le=1)
    pace_rate_limits: bool = Field(True, description="hold sends a deployment's stated rate budget has no "
                                   "room for (x-ratelimit-*, anthropic-ratelimit-*), instead of earning a 429")
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)


_DEFAULT_SHARES: dict[_CRITICALITIES, float] = {
    "critical_plus": 0.3, "critical": 0.3, "sheddable_plus": 0.2, "sheddable": 0.1}
_DEFAULT_LAG_SHED_S: dict[_CRITICALITIES, float] = {
    "sheddable": 0.05, "sheddable_plus": 0.1, "critical": 0.5}


class AdmissionSettings(_Strict):
    """Admission control per model group: adaptive limit in work units (estimated tokens),
    reserved shares per criticality, a bounded queue, and early shedding on event-loop lag."""

    enabled: bool = True
    algorithm: str = Field("gradient2", description="a kind in config/registry.py LIMITS: gradient2, vegas, aimd")
    initial_limit_units: float = Field(65536, gt=0, description="generous: a 429 or queueing brings it down at once")
    min_limit_units: float = Field(256, gt=0)
    latency_tolerance: float = Field(1.2, ge=1.0, description=(
        "gradient2: latency may rise this much over its baseline before the limit comes down; real "
        "LLM traffic (mixed deployments and answer lengths) makes window means noisier than 5%"))
    min_queue_requests: float = Field(2.0, ge=0, description=(
        "gradient2: in a window without queueing the limit grows by at least this many requests' "
        "worth (times its smoothing), so a limit cut to a request or two recovers in a few windows"))
    max_limit_units: float = Field(10_000_000, gt=0)
    shares: dict[_CRITICALITIES, float] = Field(default_factory=lambda: dict(_DEFAULT_SHARES))
    queue_max_items: int = Field(1024, ge=1)
    queue_max_units_ratio: float = Field(2.0, gt=0)
    max_queue_wait_s: float = Field(0.5, ge=0, description="longest wait for capacity before a 503")
    critical_max_queue_wait_s: float = Field(5.0, ge=0, description=(
        "the same for critical tiers: an LLM answer takes seconds, so capacity frees up over a service "
        "time, and a paying request is better started a little late than refused"))
    codel_target_s: float = Field(0.05, gt=0)
    codel_interval_s: float = Field(0.5, gt=0)
    protect_window_s: float = Field(0.0, ge=0, description=(
        "sheddable tiers leave free the room the critical tiers needed within the last one to two "
        "windows of this many seconds (trunk reservation); 0 (default) turns it off"))
    probe_interval_windows: int = Field(0, ge=0, description=(
        "gradient2/vegas: lower the limit to re-measure the no-load latency every this many windows; "
        "0 (default): never (a probe halves the limit for seconds when requests take seconds)"))
    loop_lag_shed_s: dict[_CRITICALITIES, float] = Field(default_factory=lambda: dict(_DEFAULT_LAG_SHED_S))

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        return _registered("LIMITS", value, "admission algorithm")

    @model_validator(mode="after")
    def _check(self) -> AdmissionSettings:
        if sum(self.shares.values()) > 1.0 + 1e-9:
            raise ValueError("admission.shares: must sum to at most 1")
        if not self.min_limit_units <= self.initial_limit_units <= self.max_limit_units:
            raise ValueError("admission.initial_limit_units: must lie within min and max")
        if self.codel_target_s >= self.codel_interval_s:
            raise ValueError("admission.codel_target_s: must be below codel_interval_s")
        return self


DEFAULT_TIERS = (
    Tier(name="enterprise", criticality="critical_plus"),
    Tier(name="api", criticality="critical"),
    Tier(name="plus", criticality="sheddable_plus"),
    Tier(name="free", criticality="sheddable"),
)


class Config(_Strict):
    server: ServerSettings = Field(default_factory=ServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    tiers: list[Tier] = Field(default_factory=lambda: list(DEFAULT_TIERS), min_length=1)
    tenants: list[Tenant] = Field(default_factory=list)
    models: list[Model] = Field(min_length=1)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    guard: GuardSettings | None = Field(None, description="safety stages on prompts and completions"
                                        " (seawall.safety.settings)")
    slo: SloSettings = Field(default_factory=SloSettings, description="SLOs, alerts, status page (seawall.slo)")
    redis_url: str | None = Field(None, description="same as store.redis_url")
    redis_url_env: str | None = Field(None, pattern=_ENV_NAME, description="same as store.redis_url_env")
    database_url: str | None = Field(None, description="same as store.database_url")
    database_url_env: str | None = Field(None, pattern=_ENV_NAME, description="same as store.database_url_env")
    replicas: int | None = Field(None, ge=1, le=10_000, description="gateway replicas sharing the quotas; "
                                 "each falls back to 1/N of them without Redis (default: from heartbeats)")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return _check_redis_url(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return _check_database_url(value)

    _resolved_redis_url: str | None = PrivateAttr(None)
    _resolved_database_url: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _shared_store_refs(self, info: ValidationInfo) -> Config:
        """One URL per shared store, written in the file or read from the environment variable the
        file names (``environ`` in the validation context, else the process environment)."""
        environ: Mapping[str, str] = (info.context or {}).get("environ", os.environ)
        problems: list[str] = []
        self._resolved_redis_url = _shared_url(
            problems, environ, "redis_url", _check_redis_url, self.redis_url, self.store.redis_url,
            self.redis_url_env, self.store.redis_url_env)
        self._resolved_database_url = _shared_url(
            problems, environ, "database_url", _check_database_url, self.database_url, self.store.database_url,
            self.database_url_env, self.store.database_url_env)
        tier_names = {t.name for t in self.tiers}
        problems += [f"quotas.tiers.{name}: unknown tier" for name in self.quotas.tiers if name not in tier_names]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def shared_redis_url(self) -> str | None:
        return self._resolved_redis_url

    @property
    def shared_database_url(self) -> str | None:
        return self._resolved_database_url

    @model_validator(mode="after")
    def _cross_refs(self) -> Config:
        tier_names = [t.name for t in self.tiers]
        problems = []
        if len(set(tier_names)) != len(tier_names):
            problems.append("tiers: names must be unique")
        for i, tenant in enumerate(self.tenants):
            if tenant.tier not in tier_names:
                problems.append(f"tenants[{i}].tier: unknown tier '{tenant.tier}'")
        names = [m.name for m in self.models]
        for i, name in enumerate(names):
            if names.index(name) != i:
                problems.append(f"models[{i}].name: duplicate model '{name}'")
        for i, model in enumerate(self.models):
            dnames = [d.name for d in model.deployments if d.name]
            if len(set(dnames)) != len(dnames):
                problems.append(f"models[{i}].deployments: names must be unique")
        if self.guard is not None and self.guard.stage2 is not None and not any(
                m.name == self.guard.stage2.model and m.kind == "moderation" for m in self.models):
            problems.append(f"guard.stage2.model: no model group '{self.guard.stage2.model}' of kind moderation")
        problems += [f"slo.tiers.{name}: unknown tier" for name in self.slo.tiers if name not in tier_names]
        if self.server.default_timeout_s > self.server.max_timeout_s:
            problems.append("server.default_timeout_s: larger than server.max_timeout_s")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def criticality_of(self, tier: str) -> Criticality:
        for t in self.tiers:
            if t.name == tier:
                return Criticality.parse(t.criticality)
        raise KeyError(tier)

    def tenant_tier(self, tenant: str) -> str | None:
        for t in self.tenants:
            if t.name == tenant:
                return t.tier
        return None

    def deployment_name(self, model_index: int, deployment_index: int) -> str:
        dep = self.models[model_index].deployments[deployment_index]
        return dep.name or f"{self.models[model_index].name}#{deployment_index}"
