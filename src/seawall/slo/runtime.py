"""The SLO machinery of one gateway process, assembled from the config: recorder, evaluator,
webhooks, status board and routes. ``config/stack.py`` holds one of these when ``slo.enabled``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from seawall.core.types import Request, Response
from seawall.edges.status.board import StatusBoard
from seawall.edges.status.routes import StatusRoutes
from seawall.env import Clock, Rng
from seawall.slo.alerts import SloEvaluator
from seawall.slo.export import components, objectives
from seawall.slo.recorder import SloRecorder
from seawall.slo.store import SloStore
from seawall.slo.webhook import WebhookNotifier

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from seawall.config.schema import Config

__all__ = ["SloRuntime"]


class SloRuntime:
    def __init__(self, config: Config, store: SloStore, *, clock: Clock, rng: Rng,
                 registry: CollectorRegistry | None = None) -> None:
        s = config.slo
        self.store = store
        objs = objectives(config)
        groups = {m.name: [config.deployment_name(mi, di) for di in range(len(m.deployments))]
                  for mi, m in enumerate(config.models)}
        self.recorder = SloRecorder(store, objs, groups, clock=clock, bucket_s=s.bucket_s,
                                    flush_interval_s=s.flush_interval_s, minute_retention_days=s.minute_retention_days)
        if registry is not None:
            self.recorder.register(registry)
        self.notifier = WebhookNotifier(list(s.webhooks), clock=clock, rng=rng, page_url=s.status.url) \
            if s.webhooks else None
        self.evaluator = SloEvaluator(store, objs, s.rules(), clock, bucket_s=s.bucket_s,
                                      interval_s=s.evaluate_interval_s, min_events=s.alert_min_events,
                                      notify=self.notifier.notify if self.notifier else None, groups=groups)
        self.board = StatusBoard(store, s.status, components(config), clock=clock, bucket_s=s.bucket_s,
                                 paging=self.evaluator.paging) if s.status.enabled else None
        self.clock = clock

    def on_finish(self, request: Request, response: Response | None, status: int, reason: str) -> None:
        self.recorder.record(request, response, status, reason)

    def routes(self, is_admin: Callable[[Mapping[str, str], str], bool]) -> StatusRoutes:
        return StatusRoutes(self.board, self.store, self.evaluator, is_admin, wall=self.clock.wall)

    def start(self) -> None:
        self.recorder.start()
        self.evaluator.start()
        if self.notifier is not None:
            self.notifier.start()
        if self.board is not None:
            self.board.start()

    async def stop(self) -> None:
        if self.board is not None:
            await self.board.stop()
        await self.evaluator.stop()
        await self.recorder.stop()
        if self.notifier is not None:
            await self.notifier.stop()
        await self.store.close()

    def state(self) -> dict[str, Any]:
        recorder = self.recorder.state()
        evaluator = self.evaluator.state()
        ok = recorder["status"] == "ok" and evaluator["status"] == "ok"
        return {"status": "ok" if ok else "degraded", "recorder": recorder, "evaluator": evaluator}
