"""Running the simulated upstream: in-process, as an aiohttp application, or as a blocking server.

The server is aiohttp's low-level ``web.Server`` around :class:`MockUpstream` with handler
cancellation on (a client that disconnects cancels its handler, counted as ``cancelled``), no access
log, and uvloop when installed for the blocking entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from seawall.env import Clock, Rng
from seawall.mock.config import MockConfig
from seawall.mock.handler import MockUpstream

__all__ = ["MOCK_KEY", "MockUpstream", "create_app", "run_mock", "start_mock", "upstream_of"]

_SHUTDOWN_TIMEOUT_S = 1.0  # in-flight streams are cut after this on shutdown
_LISTEN_BACKLOG = 2048  # loopback benchmarks open hundreds of connections at once
# aiohttp refuses bodies over 1 MiB by default; a provider takes far larger prompts, and the gateway
# in front enforces its own limit, so the mock must not be the one that says 413.
_MAX_BODY_BYTES = 64 * 1024 * 1024

MOCK_KEY = web.AppKey("seawall_mock", MockUpstream)


def create_app(config: MockConfig, *, clock: Clock | None = None, rng: Rng | None = None) -> web.Application:
    """The mock as an ``aiohttp.web.Application`` (``app[MOCK_KEY]`` is the handler, for its stats).

    Run it with ``web.AppRunner(app, handler_cancellation=True)`` so disconnects are counted;
    :func:`start_mock` skips the application layer and is faster.
    """
    upstream = MockUpstream(config, clock=clock, rng=rng)
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app[MOCK_KEY] = upstream

    async def handle(request: web.Request) -> web.StreamResponse:
        return await upstream(request)

    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def start_mock(
    config: MockConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Clock | None = None,
    rng: Rng | None = None,
) -> tuple[web.BaseRunner, int]:
    """Serve the mock inside the running loop; returns the runner (``await runner.cleanup()`` to
    stop) and the bound port (``port=0`` picks a free one)."""
    upstream = MockUpstream(config, clock=clock, rng=rng)
    loop = asyncio.get_running_loop()

    def make_request(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=_MAX_BODY_BYTES
        )

    server = web.Server(upstream, request_factory=make_request, handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=_LISTEN_BACKLOG)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


def upstream_of(runner: web.BaseRunner) -> MockUpstream:
    """The handler behind a runner from :func:`start_mock`, to read stats or reconfigure in-process."""
    server = runner.server
    if server is None or not isinstance(server.request_handler, MockUpstream):
        raise ValueError("not a running mock upstream runner")
    return server.request_handler


def run_mock(config: MockConfig, host: str = "127.0.0.1", port: int = 8001, *, announce: bool = True) -> None:
    """Serve until SIGINT or SIGTERM (blocking), on uvloop when it is installed.

    With ``announce`` one line ``seawall mock upstream listening on http://HOST:PORT`` goes to
    stdout once bound, which is how a parent process learns the port when ``port=0``.
    """
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(config, host, port, announce))


async def _serve(config: MockConfig, host: str, port: int, announce: bool) -> None:
    runner, bound = await start_mock(config, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    if announce:
        print(f"seawall mock upstream listening on http://{host}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return None
    return uvloop.new_event_loop
