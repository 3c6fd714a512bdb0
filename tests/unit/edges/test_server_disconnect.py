"""The server edge cancels a request whose client went away: through seawall's protocol hook, or,
under any other ASGI server, through a task waiting for ``http.disconnect``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from seawall.cli import create_key
from seawall.config.load import parse_config
from seawall.config.stack import build_runtime
from seawall.core.types import Request, Response, Usage
from seawall.edges.server import DisconnectHook, GatewayApp
from seawall.edges.stores import key_store_for

BODY = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
ANSWER = b'{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}'


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        config = parse_config(yaml.safe_load(f"""
store: {{sqlite_path: "{tmp_path}/s.db", ledger_spill_path: "{tmp_path}/spill.jsonl"}}
models:
  - name: chat
    deployments: [{{base_url: "http://127.0.0.1:9/v1"}}]
"""))
        _, self.key, _ = create_key(config, key_store_for(config), "t", "enterprise", None)
        self.runtime = build_runtime(config)
        self.app = GatewayApp(self.runtime)
        self.upstream_started = asyncio.Event()
        self.upstream_cancelled = asyncio.Event()
        self.release = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def start(self) -> None:
        await self.runtime.start()
        assert self.runtime.router is not None
        for group in self.runtime.router.groups.values():
            for dep in group.deployments:
                dep.send = self._upstream  # type: ignore[method-assign]

    async def _upstream(self, request: Request) -> Response:
        self.upstream_started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.upstream_cancelled.set()
            raise
        return Response(200, ANSWER, headers=[("content-type", "application/json")], usage=Usage(1, 1),
                        deployment="d")

    def scope(self, hook: DisconnectHook | None) -> dict[str, Any]:
        scope: dict[str, Any] = {
            "type": "http", "method": "POST", "path": "/v1/chat/completions", "client": ("127.0.0.1", 1),
            "headers": [(b"authorization", f"Bearer {self.key}".encode()), (b"content-type", b"application/json")],
        }
        if hook is not None:
            scope[DisconnectHook.KEY] = hook
        return scope

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


@pytest.fixture
async def harness(tmp_path: Path):  # type: ignore[no-untyped-def]
    h = Harness(tmp_path)
    await h.start()
    yield h
    h.release.set()
    await h.runtime.stop()


def body_then(after: Callable[[], Awaitable[dict[str, Any]]]) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI ``receive``: the request body first, then whatever ``after`` says."""
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": BODY, "more_body": False}
        return await after()

    return receive


async def test_the_protocol_hook_cancels_the_request_and_its_upstream_call(harness: Harness) -> None:
    hook = DisconnectHook()

    async def nothing_waits_here() -> dict[str, Any]:
        raise AssertionError("with the hook, nothing waits in receive()")

    task = asyncio.create_task(harness.app(harness.scope(hook), body_then(nothing_waits_here), harness.send))
    await asyncio.wait_for(harness.upstream_started.wait(), 5)
    assert hook.callback is not None
    hook.callback()  # what HttpProtocol.connection_lost does
    await asyncio.wait_for(harness.upstream_cancelled.wait(), 5)
    await asyncio.wait_for(task, 5)  # the app absorbs the cancellation: nothing to answer to
    assert harness.sent == [] and not task.cancelled()
    assert hook.callback is None  # a late disconnect after the request is a no-op


async def test_without_the_hook_a_task_waits_for_http_disconnect(harness: Harness) -> None:
    gone = asyncio.Event()

    async def disconnect() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    task = asyncio.create_task(harness.app(harness.scope(None), body_then(disconnect), harness.send))
    await asyncio.wait_for(harness.upstream_started.wait(), 5)
    gone.set()
    await asyncio.wait_for(harness.upstream_cancelled.wait(), 5)
    await asyncio.wait_for(task, 5)
    assert harness.sent == []


async def test_a_completed_request_is_answered_and_the_hook_is_cleared(harness: Harness) -> None:
    hook = DisconnectHook()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    harness.release.set()
    await asyncio.wait_for(harness.app(harness.scope(hook), receive, harness.send), 5)
    assert harness.sent[0]["status"] == 200 and harness.sent[1]["body"] == ANSWER
    assert hook.callback is None


async def _lifespan(app: GatewayApp, owns: bool) -> list[str]:
    import gc

    from seawall.edges.server import GC_THRESHOLDS

    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            assert (gc.get_threshold() == GC_THRESHOLDS) is owns
            assert (gc.get_freeze_count() > 0) is owns

    await app({"type": "lifespan"}, receive, send)
    return sent


async def test_lifespan_tunes_the_collector_only_when_the_app_owns_its_process(tmp_path: Path) -> None:
    import gc

    before = gc.get_threshold()
    try:
        for owns in (False, True):
            app = GatewayApp(Harness(tmp_path / str(owns)).runtime, tune_gc=owns)
            assert await _lifespan(app, owns) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
