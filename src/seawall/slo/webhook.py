"""Alert delivery by webhook: generic JSON or Slack-compatible, with retries, off the request path.

``notify()`` only queues (bounded; a full queue drops the oldest and counts it). One task per
webhook sends in order: a connection error, a timeout, a 429 or a 5xx is retried with full-jitter
backoff up to ``max_attempts``; any other 4xx is final (the receiver refuses the message; sending
it again would not help). A message already delivered (same ``dedup_key`` and status) is not sent
twice, and every message carries its ``dedup_key`` so a receiver can dedupe a retry whose first
try did arrive. Resolve messages are sent like the firing ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from typing import Any

import aiohttp
import msgspec

from seawall.algorithms.backoff import full_jitter
from seawall.core.background import Background, sleep_or_wake
from seawall.env import Clock, Rng
from seawall.slo.alerts import AlertMessage
from seawall.slo.settings import WebhookSettings

__all__ = ["WebhookNotifier", "slack_body"]

log = logging.getLogger("seawall.slo")

MAX_QUEUE = 1000
DEDUP_MEMORY = 10_000


def slack_body(msg: AlertMessage, page_url: str = "") -> dict[str, Any]:
    """Slack incoming-webhook shape (``text`` plus an attachment); Mattermost and others read it too."""
    firing = msg.status == "firing"
    icon = ":rotating_light:" if firing and msg.severity == "page" else ":warning:" if firing else ":white_check_mark:"
    title = f"{icon} [{msg.status.upper()}] {msg.severity}: {msg.summary}"
    fields = [{"title": "Component", "value": msg.component_name, "short": True},
              {"title": "Tier", "value": msg.tier, "short": True},
              {"title": "SLI", "value": f"{msg.sli} (objective {msg.objective:.4%})", "short": True}]
    if msg.burn_rate is not None:
        fields.append({"title": "Burn rate", "value": f"{msg.burn_rate:.1f}x ({msg.rule})", "short": True})
    if msg.error_budget_remaining is not None:
        fields.append({"title": "Error budget left", "value": f"{msg.error_budget_remaining:.1%}", "short": True})
    attachment: dict[str, Any] = {"color": "#d00000" if firing else "#2eb886", "fallback": title, "fields": fields,
                                  "footer": f"seawall {msg.dedup_key}"}
    if page_url:
        attachment["title_link"] = page_url
    return {"text": title, "attachments": [attachment]}


class WebhookNotifier:
    def __init__(self, hooks: list[WebhookSettings], *, clock: Clock, rng: Rng, page_url: str = "") -> None:
        self.hooks = hooks
        self.clock = clock
        self.rng = rng
        self.page_url = page_url
        self._queues: list[deque[AlertMessage]] = [deque() for _ in hooks]
        self._wakes = [asyncio.Event() for _ in hooks]
        self._tasks = [Background(f"webhook-{i}") for i in range(len(hooks))]
        self._sent: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def notify(self, msg: AlertMessage) -> None:
        for i, hook in enumerate(self.hooks):
            if msg.severity not in hook.severities:
                continue
            queue = self._queues[i]
            if len(queue) >= MAX_QUEUE:
                queue.popleft()
                self.dropped += 1
            queue.append(msg)
            self._wakes[i].set()

    def body(self, hook: WebhookSettings, msg: AlertMessage) -> bytes:
        if hook.format == "slack":
            return msgspec.json.encode(slack_body(msg, self.page_url))
        return msgspec.json.encode(msg)

    async def _deliver(self, i: int, msg: AlertMessage) -> bool:
        hook = self.hooks[i]
        mark = (msg.dedup_key, msg.status, i)
        if mark in self._sent:
            return True
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = self.body(hook, msg)
        headers = {"content-type": "application/json", "user-agent": "seawall-alerts",
                   "idempotency-key": f"{msg.dedup_key}:{msg.status}"}
        for attempt in range(hook.max_attempts):
            retry = True
            try:
                async with self._session.post(hook.url, data=body, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=hook.timeout_s)) as resp:
                    await resp.read()
                    if resp.status < 300:
                        self._remember(mark)
                        self.delivered += 1
                        return True
                    retry = resp.status == 429 or resp.status >= 500
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if not retry or attempt + 1 == hook.max_attempts:
                log.warning("webhook %s gave up on %s after %d attempt(s): %s", hook.url, msg.dedup_key,
                            attempt + 1, problem)
                self.failed += 1
                return False
            await self.clock.sleep(full_jitter(attempt, hook.backoff_base_s, hook.backoff_cap_s, self.rng.random()))
        return False  # pragma: no cover - the loop returns

    def _remember(self, mark: tuple[str, str, int]) -> None:
        self._sent[mark] = None
        while len(self._sent) > DEDUP_MEMORY:
            self._sent.popitem(last=False)

    async def _run(self, i: int) -> None:
        queue, wake = self._queues[i], self._wakes[i]
        while True:
            while queue:
                await self._deliver(i, queue.popleft())
            await sleep_or_wake(self.clock, 3600.0, wake)
            wake.clear()

    def start(self) -> None:
        for i, task in enumerate(self._tasks):
            task.start(lambda i=i: self._run(i))  # type: ignore[misc]

    async def drain(self) -> None:
        """Deliver what is queued now (tests, shutdown)."""
        for i, queue in enumerate(self._queues):
            while queue:
                await self._deliver(i, queue.popleft())

    async def stop(self) -> None:
        for task in self._tasks:
            await task.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
