"""What seawall's :class:`~seawall.edges.server.HttpProtocol` relies on inside uvicorn's httptools
protocol, checked against the uvicorn installed: every name it overrides or reads, then the behaviour
it builds on, driven byte by byte through the real protocol on a fake transport.

uvicorn is pinned to a tested range (pyproject.toml; why in docs/decisions.md, "Hardening"). When an
upgrade moves one of these, this test fails with the name that drifted and where seawall uses it,
before the e2e tests fail with a hang or a missing cancellation. To widen the pin: install the new
version, run this file and ``tests/e2e/test_raw_http.py``, then move the bound."""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from pathlib import Path
from typing import Any

import httptools
import pytest
import uvicorn
from packaging.requirements import Requirement
from uvicorn.protocols.http import httptools_impl
from uvicorn.server import ServerState

from seawall.edges.http_limits import LimitedHttpProtocol
from seawall.edges.server import CoalescingWriter, DisconnectHook, HttpProtocol

VERSION = f"uvicorn {uvicorn.__version__}, httptools {httptools.__version__}"

# name -> why seawall needs it (edges/server.py, HttpProtocol)
OVERRIDDEN = {
    "on_message_begin": "adds the DisconnectHook to each request's scope; starts the head's timer",
    "on_headers_complete": "checks URL, header count and head size; puts a CoalescingWriter under the cycle",
    "connection_lost": "calls the hook when the client goes away mid-request",
    "connection_made": "arms the header timeout (server.header_timeout_s)",
    "data_received": "counts head bytes as they arrive (server.max_header_bytes), notes body progress",
    "on_message_complete": "stops the body's timer",
    "pause_writing": "notes when the client stopped reading (server.response_stall_timeout_s)",
    "resume_writing": "the client reads again",
    "send_400_response": "answers what llhttp refuses (smuggling, bad bytes) in OpenAI's format",
}
PROTOCOL_ATTRIBUTES = {
    "app": "the loaded app, where the connection limits are read",
    "loop": "the event loop the timers run on",
    "flow": "flow control: a client we stopped reading is not timed out (flow.read_paused)",
    "url": "the URL, read when the head is complete (server.max_url_bytes)",
    "headers": "the head's headers as (name, value), read when it is complete (count and size)",
    "scope": "the request's ASGI scope, built in on_message_begin",
    "cycle": "the RequestResponseCycle, built in on_headers_complete",
    "transport": "the connection's transport",
}
CYCLE_ATTRIBUTES = {
    "transport": "what the cycle writes the response to (swapped for a CoalescingWriter)",
    "response_complete": "whether a disconnect interrupts a response still being sent",
    "response_started": "whether a timeout may still answer 408",
    "scope": "where connection_lost finds the hook",
}


def drift(what: str, why: str) -> str:
    return (f"uvicorn drifted ({VERSION}): {what} changed; seawall's HttpProtocol ({why}) in edges/server.py "
            "depends on it. Re-check it against this version before moving the pin in pyproject.toml.")


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class App:
    """Answers ``ok``, or, for ``/wait``, waits until the test lets it go (to disconnect mid-request)."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.hook_called = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        hook = scope.get(DisconnectHook.KEY)
        if scope["path"] == "/wait" and isinstance(hook, DisconnectHook):
            hook.callback = self.hook_called.set
            await self.release.wait()
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def connect(app: App) -> tuple[HttpProtocol, FakeTransport]:
    config = uvicorn.Config(app, http=HttpProtocol, lifespan="off", log_level="warning", server_header=False,
                            date_header=False)
    protocol = HttpProtocol(config=config, server_state=ServerState(), app_state={},
                            _loop=asyncio.get_running_loop())
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def settle(protocol: HttpProtocol) -> None:
    for task in list(protocol.server_state.tasks):
        await asyncio.wait_for(task, 5)


def test_the_installed_versions_are_in_the_tested_range() -> None:
    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())["project"]
    pins = {req.name: req for req in map(Requirement, project["dependencies"])}
    for name, installed in (("uvicorn", uvicorn.__version__), ("httptools", httptools.__version__)):
        spec = pins[name].specifier
        assert any(s.operator == "<" for s in spec), f"{name} needs an upper bound in pyproject.toml (tested range)"
        assert spec.contains(installed), f"{name} {installed} is outside the tested range {spec} (pyproject.toml)"


def test_every_name_seawall_overrides_still_exists_with_its_signature() -> None:
    base = httptools_impl.HttpToolsProtocol
    assert issubclass(HttpProtocol, base) and LimitedHttpProtocol.__bases__ == (base,), drift("the class", "base")
    for name, why in OVERRIDDEN.items():
        theirs = base.__dict__.get(name)
        assert callable(theirs), drift(f"HttpToolsProtocol.{name} is gone", why)
        ours = getattr(HttpProtocol, name)
        assert list(inspect.signature(theirs).parameters) == list(inspect.signature(ours).parameters), (
            drift(f"the signature of HttpToolsProtocol.{name}", why))


async def test_every_attribute_seawall_reads_is_there_on_a_live_request() -> None:
    app = App()
    protocol, _ = connect(app)
    protocol.data_received(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
    for name, why in PROTOCOL_ATTRIBUTES.items():
        assert hasattr(protocol, name), drift(f"HttpToolsProtocol.{name}", why)
    assert hasattr(protocol.flow, "read_paused"), drift("FlowControl.read_paused", PROTOCOL_ATTRIBUTES["flow"])
    cycle = protocol.cycle
    assert isinstance(cycle, httptools_impl.RequestResponseCycle), drift("the cycle's type", "on_headers_complete")
    for name, why in CYCLE_ATTRIBUTES.items():
        assert hasattr(cycle, name), drift(f"RequestResponseCycle.{name}", why)
    await settle(protocol)
    assert cycle.response_complete is True, drift("RequestResponseCycle.response_complete", "set when sent")


async def test_the_hook_reaches_the_app_and_head_and_body_leave_in_one_write() -> None:
    app = App()
    protocol, transport = connect(app)
    protocol.data_received(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
    await settle(protocol)
    assert isinstance(app.scopes[0].get(DisconnectHook.KEY), DisconnectHook), (
        drift("the scope handed to the app is no longer the one on_message_begin built", "DisconnectHook"))
    assert isinstance(protocol.cycle.transport, CoalescingWriter), drift("cycle.transport", "CoalescingWriter")
    assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n"), (
        drift("how the cycle writes a response (no longer through cycle.transport.write)", "CoalescingWriter"))
    assert transport.writes[0].endswith(b"\r\n\r\nok")


async def test_a_head_response_is_never_held_back() -> None:
    app = App()
    protocol, transport = connect(app)
    protocol.data_received(b"HEAD /x HTTP/1.1\r\nhost: a\r\n\r\n")
    await settle(protocol)
    assert protocol.cycle.transport is transport, drift("the HEAD response path", "CoalescingWriter")
    assert transport.writes and transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


async def test_a_lost_connection_calls_the_hook_of_the_request_in_flight() -> None:
    app = App()
    protocol, _ = connect(app)
    protocol.data_received(b"GET /wait HTTP/1.1\r\nhost: a\r\n\r\n")
    for _ in range(100):
        if app.scopes:
            break
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    assert app.hook_called.is_set(), drift("connection_lost or cycle.response_complete", "the disconnect hook")
    app.release.set()
    await settle(protocol)


@pytest.mark.parametrize("name", sorted(set(OVERRIDDEN) - {"send_400_response"}))  # that one replaces theirs
def test_each_override_calls_uvicorns_own(name: str) -> None:
    """An override that stopped calling ``super()`` would silently drop uvicorn's behaviour."""
    for cls in (HttpProtocol, LimitedHttpProtocol):
        if name in cls.__dict__:
            assert "super()." in inspect.getsource(cls.__dict__[name]), f"{cls.__name__}.{name} must call uvicorn's"


async def test_a_refusal_from_the_parser_is_answered_in_openai_format() -> None:
    """llhttp refuses Content-Length with Transfer-Encoding; uvicorn calls send_400_response."""
    protocol, transport = connect(App())
    protocol.data_received(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n")
    assert transport.closed and transport.writes[0].startswith(b"HTTP/1.1 400 Bad Request\r\n"), (
        drift("the parser's refusal no longer reaches send_400_response", OVERRIDDEN["send_400_response"]))
    assert b'"code":"invalid_http"' in transport.writes[0]
