"""Guard: safety stages on the prompt (``guard_in``) and on streamed completions (``guard_out``).

After admission (nothing is spent on a request the gateway cannot afford) and before route (nothing
unsafe leaves). Stage 1 (``safety/engine.py``: Hyperscan rules for injection, jailbreak, secrets,
PII) always runs and costs microseconds. Stage 2 (``policies/guard_stage2.py``: any
``/v1/moderations`` server, budgeted like a deployment) runs when stage 1 is uncertain or the
tier's policy says always. The verdicts are decided in ``algorithms/guard.py``; this policy acts:

- ``block``: nothing is sent upstream. OpenAI clients get a 400 ``content_filter`` error (Azure
  OpenAI's shape, which the SDKs raise as ``BadRequestError``); Anthropic clients get a message
  with ``stop_reason: refusal``, streamed if they asked for a stream.
- ``redact``: PII (or secrets) in the prompt is replaced with ``[rule]`` before the prompt leaves.
- ``flag``: the request goes on; ``x-seawall-guard`` says what was found, and the ledger records it.
- stage 2 unavailable: ``fail_closed`` raises ``safety_unavailable`` (503, in the client's format);
  ``degrade`` goes on with stage 1 (``x-seawall-guard-degraded``) and queues an audit;
  ``fail_open`` goes on and logs it.

Every decision is recorded on the request (``ctx.guard``) for the ledger and metrics; prompt text is
never logged unless ``guard.log_prompts`` says so.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from seawall.algorithms.guard import (
    AuditQueue,
    GuardRules,
    Verdict,
    after_stage1,
    after_stage2,
    stage2_unavailable,
)
from seawall.core.compose import Handler
from seawall.core.errors import InvalidRequest, Overloaded
from seawall.core.types import Operation, Principal, Request, Response
from seawall.env import Clock
from seawall.policies.guard_stage2 import Stage2, Stage2Unavailable
from seawall.providers import anthropic
from seawall.safety.engine import Finding, Stage1
from seawall.safety.settings import GuardSettings
from seawall.safety.stream import guard_stream
from seawall.safety.text import map_prompt, prompt_texts
from seawall.safety.window import OutputWindow

__all__ = ["AuditItem", "ContentFiltered", "GuardMetrics", "GuardPolicy", "GuardRecord", "SafetyUnavailable"]

log = logging.getLogger("seawall.guard")

_GUARDED = frozenset({Operation.CHAT, Operation.RESPONSES, Operation.COMPLETIONS, Operation.MESSAGES})
_TRUSTED_CATEGORIES = frozenset({"secret", "pii"})
_CHARS_PER_TOKEN = 4
_encode = msgspec.json.encode


class ContentFiltered(InvalidRequest):
    """The prompt was blocked by the guard (OpenAI dialects; Anthropic clients get a refusal)."""

    code = "content_filter"


class SafetyUnavailable(Overloaded):
    """Stage 2 was needed and could not answer, and the tier fails closed."""

    code = "safety_unavailable"


@dataclass(slots=True)
class GuardRecord:
    """What the guard decided for one request (ledger columns ``guard_*``; never the text)."""

    action: str
    stage: str
    rules: str
    score: float
    latency_s: float
    degraded: bool
    reason: str | None = None  # why stage 2 was unavailable
    output: str | None = None  # guard_out: "block:<category>/<rule>" when a stream was cut


@dataclass(frozen=True, slots=True)
class AuditItem:
    """A degraded prompt waiting for a stage-2 audit (in memory only, bounded)."""

    request_id: str
    text: str
    principal: Principal


class GuardMetrics(Protocol):
    """The sink this policy writes to (``seawall.edges.metrics.GatewayMetrics`` implements it)."""

    def on_guard(self, direction: str, action: str, stage: str, degraded: bool, seconds: float) -> None: ...


class GuardPolicy:
    def __init__(self, settings: GuardSettings, stage1: Stage1, *, clock: Clock, stage2: Stage2 | None = None,
                 metrics: GuardMetrics | None = None, audit: AuditQueue[AuditItem] | None = None) -> None:
        self.settings = settings
        self.stage1 = stage1
        self.clock = clock
        self.stage2 = stage2
        self.metrics = metrics
        self.audit = audit
        self._rules: dict[tuple[str, str], tuple[GuardRules, bool]] = {}

    def rules_for(self, model: str, tier: str) -> tuple[GuardRules, bool]:
        key = (model, tier)
        found = self._rules.get(key)
        if found is None:
            found = self._rules[key] = (self.settings.rules_for(model, tier), self.settings.output_for(model, tier))
        return found

    def scan_prompt(self, operation: Operation, body: dict[str, Any]) -> tuple[list[Finding], str]:
        """Stage 1 over the prompt: findings, and the untrusted text (for stage 2)."""
        untrusted, trusted = prompt_texts(operation, body)
        text = "\n".join(untrusted)
        hits = self.stage1.scan(text.encode())
        if trusted:
            hits += [h for h in self.stage1.scan("\n".join(trusted).encode()) if h.category in _TRUSTED_CATEGORIES]
        return hits, text

    async def __call__(self, request: Request, next_handler: Handler) -> Response:
        operation = request.operation
        if operation not in _GUARDED:
            return await next_handler(request)
        payload = request.payload
        principal = request.principal
        rules, check_output = self.rules_for(payload.model, principal.tier)
        started = self.clock.now()
        hits, text = self.scan_prompt(operation, payload.body)
        verdict = after_stage1(hits, rules)
        reason = None
        if verdict.ask_stage2:
            verdict, reason = await self._stage2(request, principal, verdict, rules, text)
        record = GuardRecord(verdict.action, verdict.stage, ",".join(verdict.rules), round(verdict.score, 3),
                             round(self.clock.now() - started, 6), verdict.degraded, reason)
        request.ctx.guard = record
        if self.metrics is not None:
            self.metrics.on_guard("in", verdict.action, verdict.stage, verdict.degraded, record.latency_s)
        action = verdict.action
        if action == "unavailable":
            raise SafetyUnavailable("The safety check is unavailable right now; try again shortly.",
                                    reason="safety_unavailable", retry_after_s=1.0)
        if action == "block":
            if self.settings.log_prompts:
                log.info("guard blocked request %s (%s): %r", request.id, record.rules, text[:2000])
            return self._blocked(request, verdict)
        if action == "redact":
            request = self._redacted(request, verdict)
        response = await next_handler(request)
        if action == "flag" or action == "redact":
            response.headers.append(("x-seawall-guard", f"{action}; rules={record.rules}"))
        if verdict.degraded:
            response.headers.append(("x-seawall-guard-degraded", reason or "stage2_unavailable"))
        if check_output and response.stream is not None and self.settings.output is not None:
            response.stream = self._guard_out(request, response, record)
        return response

    async def _stage2(self, request: Request, principal: Principal, first: Verdict, rules: GuardRules,
                      text: str) -> tuple[Verdict, str | None]:
        if self.stage2 is None:  # "uncertain" with no stage 2 configured: stage 1's flag stands
            return dataclasses.replace(first, ask_stage2=False), None
        crit = request.ctx.criticality if request.ctx.criticality is not None else principal.criticality
        try:
            m = await self.stage2.check(text, principal=principal, criticality=crit, request_id=request.id,
                                        deadline_s=request.deadline)
        except Stage2Unavailable as exc:
            verdict = stage2_unavailable(first, rules)
            if verdict.audit and self.audit is not None:
                self.audit.push(AuditItem(request.id, text, principal))
            if rules.on_unavailable == "fail_open":
                log.warning("guard stage 2 unavailable (%s): request %s went on with stage 1 only",
                            exc.reason, request.id)
            return verdict, exc.reason
        return after_stage2(first, m.flagged, m.categories, m.score, rules), None

    def _redacted(self, request: Request, verdict: Verdict) -> Request:
        categories = verdict.redact
        redact = self.stage1.redact

        def rewrite(text: str, trusted: bool) -> str:
            return redact(text, categories)[0]

        payload = request.payload
        body = map_prompt(request.operation, payload.body, rewrite)
        out = Request(id=request.id, api=request.api, operation=request.operation, raw=_encode(body),
                      headers=request.headers, client_addr=request.client_addr, received_at=request.received_at,
                      deadline=request.deadline, payload=dataclasses.replace(payload, body=body))
        out.ctx = request.ctx
        return out

    def _blocked(self, request: Request, verdict: Verdict) -> Response:
        categories = ", ".join(sorted(verdict.categories)) or "policy"
        if request.operation is not Operation.MESSAGES:
            param = "prompt" if request.operation is Operation.COMPLETIONS else "messages"
            raise ContentFiltered(f"The prompt was blocked by the gateway's content filter ({categories}).",
                                  param=param, reason="guard_block")
        payload = request.payload
        msg_id = f"msg_guard_{request.id}"
        headers = [("x-seawall-guard", f"block; rules={','.join(verdict.rules)}")]
        if payload.stream:
            events = anthropic.text_stream(id=msg_id, model=payload.model, pieces=[], stop_reason="refusal",
                                           input_tokens=payload.estimated_prompt_tokens, output_tokens=0)
            return Response(200, headers=[("content-type", "text/event-stream"), ("cache-control", "no-cache"),
                                          *headers], stream=_once(b"".join(events)))
        body = anthropic.message(id=msg_id, model=payload.model, content=[], stop_reason="refusal",
                                 input_tokens=payload.estimated_prompt_tokens, output_tokens=0)
        return Response(200, body, headers=[("content-type", "application/json"), *headers])

    def _guard_out(self, request: Request, response: Response, record: GuardRecord) -> Any:
        out = self.settings.output
        assert out is not None and response.stream is not None
        actions: dict[str, str] = {str(k): str(v) for k, v in out.actions.items()}
        scan = self.stage1.scan

        def stops(text: str) -> Sequence[Finding]:
            return [f for f in scan(text.encode()) if actions.get(f.category, "allow") == "block"]

        window = OutputWindow(stops, window_chars=out.window_tokens * _CHARS_PER_TOKEN,
                              overlap_chars=out.overlap_tokens * _CHARS_PER_TOKEN,
                              lookahead_chars=out.lookahead_tokens * _CHARS_PER_TOKEN)
        dialect = {Operation.MESSAGES: "anthropic", Operation.COMPLETIONS: "completions"}.get(request.operation,
                                                                                            "chat")
        started = self.clock.now()

        def on_flag(found: Sequence[Any]) -> None:
            first = found[0]
            record.output = f"block:{first.category}/{first.rule}"
            if self.metrics is not None:
                self.metrics.on_guard("out", "block", "1", False, self.clock.now() - started)

        return guard_stream(response.stream, window, dialect, on_flag)


async def _once(data: bytes) -> Any:
    yield data
