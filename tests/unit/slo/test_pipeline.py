"""Requests -> recorder -> SQLite buckets -> evaluator -> alerts, incidents and webhook messages, on a
fake clock. One deployment fails half its requests for 20 minutes, then recovers."""

from __future__ import annotations

from seawall.algorithms.burn_rate import DEFAULT_RULES
from seawall.core.types import Criticality, Principal
from seawall.edges.stores.sqlite_slo import SqliteSloStore
from seawall.slo.alerts import AlertMessage, SloEvaluator
from seawall.slo.recorder import SloRecorder
from seawall.slo.settings import TierObjective
from seawall.slo.sli import is_bad
from seawall.testing import FakeClock, make_request

ENTERPRISE = Principal(key_id="k1", tenant="acme", tier="enterprise", criticality=Criticality.CRITICAL_PLUS)
FREE = Principal(key_id="k2", tenant="bob", tier="free", criticality=Criticality.SHEDDABLE)
OBJECTIVES = {"enterprise": TierObjective(availability=0.999), "free": TierObjective(availability=0.99,
                                                                                     shed_counts=False)}
CHAT = b'{"model":"chat","messages":[{"role":"user","content":"hi"}]}'


def clock() -> FakeClock:
    return FakeClock(start_s=0.0, wall_offset_s=1_700_006_400.0)  # wall starts at a UTC midnight


def finish(rec: SloRecorder, c: FakeClock, principal: Principal, status: int, reason: str = "ok",
           tried: tuple[str, ...] = ("dep-a",), ttft_s: float | None = None, parsed: bool = True) -> None:
    request = make_request(CHAT, principal=principal, now_s=c.now())
    if parsed:  # admission and routing parse the body; a request shed on its tier alone is never parsed
        assert request.payload.model == "chat"
    request.ctx.deployments_tried.extend(tried)
    request.ctx.ttft_s = ttft_s
    rec.record(request, None, status, reason)
    assert (request.parsed_payload is not None) == parsed  # recording never parses a body


def test_what_counts_as_a_failure_of_the_service():
    paying, free = OBJECTIVES["enterprise"], OBJECTIVES["free"]
    assert is_bad(200, "ok", paying) is False
    assert is_bad(400, "invalid_request", paying) is False  # the client's doing
    assert is_bad(401, "invalid_api_key", paying) is False
    assert is_bad(499, "client_disconnect", paying) is None  # nobody left to fail
    assert is_bad(502, "upstream_error", paying) is True
    assert is_bad(503, "overload", paying) is True and is_bad(503, "overload", free) is False
    assert is_bad(503, "breaker_open", free) is True  # no deployment left is the service failing
    assert is_bad(429, "quota_requests", paying) is False  # the caller's own quota, by default
    assert is_bad(429, "quota_requests", TierObjective(quota_counts=True)) is True


async def test_counts_per_component_and_latency_by_ttft(tmp_path):
    c = clock()
    store = SqliteSloStore(tmp_path / "slo.db")
    rec = SloRecorder(store, OBJECTIVES, {"chat": ["dep-a", "dep-b"]}, clock=c, bucket_s=60)
    finish(rec, c, ENTERPRISE, 200, tried=("dep-a", "dep-b"), ttft_s=0.1)  # failed over from a to b
    finish(rec, c, ENTERPRISE, 200, ttft_s=5.0)  # a slow first token
    finish(rec, c, FREE, 503, "overload", tried=(), parsed=False)  # shed on its tier alone: fine for free
    finish(rec, c, ENTERPRISE, 499, "client_disconnect")  # not counted
    await rec.flush()
    rows = {(r.component, r.tier): (r.total, r.bad, r.lat_total, r.lat_slow)
            for r in await store.windows(c.wall() + 60, [300], 60)}
    assert rows[("front_door", "enterprise")] == (2, 0, 2, 1)
    assert rows[("group:chat", "enterprise")] == (2, 0, 2, 1)
    assert rows[("deployment:dep-a", "enterprise")] == (2, 1, 1, 1)  # it had to be left once
    assert rows[("deployment:dep-b", "enterprise")] == (1, 0, 1, 0)
    assert rows[("front_door", "free")] == (1, 0, 0, 0)
    assert ("group:chat", "free") not in rows  # its model was never read
    assert rec.totals[("deployment:dep-a", "enterprise", "availability", "bad")] == 1
    day = await store.buckets(86400, 0)
    assert sum(r.total for r in day if r.component == "front_door") == 3


async def test_a_failing_deployment_pages_opens_an_incident_and_moves_it_to_monitoring(tmp_path):
    c = clock()
    store = SqliteSloStore(tmp_path / "slo.db")
    rec = SloRecorder(store, OBJECTIVES, {"chat": ["dep-a", "dep-b"]}, clock=c, bucket_s=60)
    sent: list[AlertMessage] = []
    ev = SloEvaluator(store, OBJECTIVES, DEFAULT_RULES, c, bucket_s=60, min_events=10, notify=sent.append)
    fired_at = resolved_at = None
    for minute in range(90):
        failing = 10 <= minute < 30
        for i in range(20):
            bad = failing and i % 2 == 0
            finish(rec, c, ENTERPRISE, 502 if bad else 200, "upstream_error" if bad else "ok")
        c.advance(60)
        await rec.flush()
        for msg in await ev.evaluate():
            if msg.component == "deployment:dep-a" and msg.severity == "page":
                if msg.status == "firing":
                    fired_at = minute
                else:
                    resolved_at = minute
    # 50% errors on a 99.9% objective is a 500x burn: the page fires in the first failing minute. The
    # 14.4x rule's 5-minute window is clean from minute 34, but the 6x rule's 30-minute window holds a
    # failing minute (10 bad of 600 is already 16x) until minute 29 has left it: the page resolves at 59.
    assert fired_at == 10
    assert resolved_at == 29 + 30
    pages = [m for m in sent if m.severity == "page" and m.component == "deployment:dep-a"]
    assert [m.status for m in pages] == ["firing", "resolved"]
    assert pages[0].dedup_key == pages[1].dedup_key and pages[0].burn_rate and pages[0].burn_rate > 14.4
    incident = await store.incident_for_alert("component:deployment:dep-a")
    assert incident is not None and incident.status == "monitoring"
    # The deployment, its group and the front door all paged: one incident, named after the deployment.
    assert [i.id for i in await store.incidents(0.0)] == [incident.id]
    assert incident.components == ["deployment:dep-a", "group:chat", "front_door"]
    first = incident.updates[-1]
    assert first.status == "investigating"
    assert first.body.startswith("Investigating: elevated errors on Deployment dep-a for enterprise traffic since ")
    assert incident.updates[0].body.startswith("Monitoring:")
    # A new evaluator (a restart) picks up the state and does not page again.
    again = SloEvaluator(store, OBJECTIVES, DEFAULT_RULES, c, bucket_s=60, min_events=10, notify=sent.append)
    before = len(sent)
    await again.evaluate()
    assert len(sent) == before
