"""Webhook delivery against a real HTTP receiver on 127.0.0.1: retries, deduplication, resolve
messages, the Slack shape, and giving up on a refusal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from seawall.env import SystemClock
from seawall.slo.alerts import AlertMessage
from seawall.slo.settings import WebhookSettings
from seawall.slo.webhook import WebhookNotifier
from seawall.testing import SeededRng
from tests.e2e.harness import free_port


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.fail_next: list[int] = []  # statuses to answer before succeeding

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if self.fail_next:
            return web.Response(status=self.fail_next.pop(0))
        self.bodies.append(json.loads(await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield rec, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


def message(status: str = "firing") -> AlertMessage:
    return AlertMessage(
        status=status, alert="deployment:a|enterprise|availability|page", severity="page",
        component="deployment:a", component_name="Deployment a", tier="enterprise", sli="availability",
        objective=0.999, burn_rate=40.0 if status == "firing" else None, rule="page-1h-5m",
        error_budget_remaining=0.8, started_at=1_700_000_000.0,
        resolved_at=None if status == "firing" else 1_700_000_600.0,
        summary="Elevated errors on Deployment a for enterprise traffic since 22:13 UTC", dedup_key="k@1700000000")


def notifier(url: str, fmt: str = "json", attempts: int = 4) -> WebhookNotifier:
    hook = WebhookSettings(url=url, format=fmt, max_attempts=attempts, backoff_base_s=0.01, backoff_cap_s=0.05)
    return WebhookNotifier([hook], clock=SystemClock(), rng=SeededRng(1))


async def test_retries_a_5xx_then_delivers_once_and_sends_the_resolve(receiver):
    rec, url = receiver
    n = notifier(url)
    rec.fail_next = [503, 500]
    n.notify(message())
    await n.drain()
    n.notify(message())  # the same firing again (another evaluation, a restart): not sent twice
    n.notify(message("resolved"))
    await n.drain()
    await n.stop()
    assert [b["status"] for b in rec.bodies] == ["firing", "resolved"]
    assert len(rec.headers) == 4  # two refused tries, then one each
    assert rec.bodies[0]["dedup_key"] == rec.bodies[1]["dedup_key"] == "k@1700000000"
    assert rec.bodies[0]["burn_rate"] == 40.0 and rec.bodies[0]["component"] == "deployment:a"
    assert rec.headers[-1]["idempotency-key"] == "k@1700000000:resolved"
    assert n.delivered == 2 and n.failed == 0


async def test_slack_shape(receiver):
    rec, url = receiver
    n = notifier(url, "slack")
    n.notify(message())
    n.notify(message("resolved"))
    await n.drain()
    await n.stop()
    firing, resolved = rec.bodies
    assert firing["text"].startswith(":rotating_light: [FIRING] page: Elevated errors on Deployment a")
    assert firing["attachments"][0]["color"] == "#d00000"
    assert {f["title"] for f in firing["attachments"][0]["fields"]} >= {"Component", "Tier", "Burn rate"}
    assert resolved["text"].startswith(":white_check_mark: [RESOLVED]")


async def test_a_4xx_is_final_and_a_dead_receiver_is_retried_then_given_up(receiver):
    rec, url = receiver
    n = notifier(url, attempts=3)
    rec.fail_next = [400]
    n.notify(message())
    await n.drain()
    assert len(rec.headers) == 1 and rec.bodies == [] and n.failed == 1
    await n.stop()
    dead = notifier(f"http://127.0.0.1:{free_port()}/hook", attempts=3)
    dead.notify(message())
    await dead.drain()
    await dead.stop()
    assert dead.failed == 1 and dead.delivered == 0
