"""The upstream HTTP/1.1 client against raw servers on loopback that misbehave on purpose."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from seawall.edges.upstreams.http1 import (
    ConnectFailed,
    HttpClient,
    HttpTimeout,
    ProtocolViolation,
    ReadFailed,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BODY = b'{"hello":"world"}'


class Server:
    """A loopback TCP server running ``handler`` per request; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_peer = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_peer += 1
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.handler(reader, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def ok(body: bytes = BODY, extra: bytes = b"") -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + extra
                     + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
    return handler


async def post(client: HttpClient, path: str = "/v1/chat", *, read_s: float = 5.0, total_s: float = 5.0,
               stream: bool = False, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return await client.post(client.origin + path, BODY, headers or {"content-type": "application/json"},
                             connect_s=2.0, read_s=read_s, total_s=total_s, stream=stream)


@pytest.fixture
async def client() -> AsyncIterator[Callable[..., HttpClient]]:
    made: list[HttpClient] = []

    def make(url: str, **kw: object) -> HttpClient:
        made.append(HttpClient(url, **kw))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for c in made:
        await c.close()


async def test_keep_alive_reuses_one_connection_and_sends_a_well_formed_request(client) -> None:  # type: ignore[no-untyped-def]
    async with Server(ok()) as server:
        c = client(server.url + "/v1")
        for _ in range(5):
            resp = await post(c, headers={"content-type": "application/json", "x-request-id": "r1"})
            assert resp.status == 200 and resp.headers["content-type"] == "application/json"
            assert await resp.read() == BODY
            resp.release()
        assert server.connections == 1 and len(server.requests) == 5
        head, _, body = server.requests[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/chat HTTP/1.1"
        assert f"host: {server.url[7:]}".encode() in lines
        assert b"x-request-id: r1" in lines and b"content-length: %d" % len(BODY) in lines
        assert body == BODY


async def test_connection_close_and_http10_are_not_reused(client) -> None:  # type: ignore[no-untyped-def]
    async with Server(ok(extra=b"connection: close\r\n")) as server:
        c = client(server.url)
        for _ in range(3):
            resp = await post(c)
            assert await resp.read() == BODY
            resp.release()
        assert server.connections == 3


async def test_a_body_delimited_by_the_end_of_the_connection(client) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n" + BODY)
        await writer.drain()
        writer.close()

    async with Server(handler) as server:
        resp = await post(client(server.url))
        assert await resp.read() == BODY


async def test_chunked_and_gzip_bodies_are_decoded(client) -> None:  # type: ignore[no-untyped-def]
    packed = gzip.compress(BODY * 100)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip\r\n\r\n")
        for i in range(0, len(packed), 7):
            part = packed[i:i + 7]
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async with Server(handler) as server:
        c = client(server.url)
        resp = await post(c)
        assert await resp.read() == BODY * 100
        resp.release()
        resp = await post(c)  # the same connection carries the next one
        assert await resp.read() == BODY * 100
        resp.release()
        assert server.connections == 1


async def test_a_stream_arrives_piece_by_piece(client) -> None:  # type: ignore[no-untyped-def]
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"5\r\nfirst\r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()

    async with Server(handler) as server:
        resp = await post(client(server.url), stream=True)
        pieces = resp.chunks()
        assert await pieces.__anext__() == b"first"
        gate.set()
        assert [p async for p in pieces] == [b"second"]
        assert resp.complete


async def test_headers_over_the_limit_are_a_protocol_violation(client) -> None:  # type: ignore[no-untyped-def]
    async with Server(ok(extra=b"x-big: " + b"a" * 70_000 + b"\r\n")) as server:
        with pytest.raises(ProtocolViolation, match="head over"):
            await post(client(server.url))


async def test_a_buffered_body_over_the_limit_is_refused_but_a_stream_is_not(client) -> None:  # type: ignore[no-untyped-def]
    async with Server(ok(body=b"x" * 5000)) as server:
        c = client(server.url, max_body_bytes=4096)
        resp = await post(c)
        with pytest.raises(ProtocolViolation, match="over 4096 bytes"):
            await resp.read()
        resp.close()
        resp = await post(c, stream=True)
        assert b"".join([p async for p in resp.chunks()]) == b"x" * 5000


async def test_garbage_is_a_protocol_violation(client) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SMTP ready\r\n\r\n")

    async with Server(handler) as server:
        with pytest.raises(ProtocolViolation):
            await post(client(server.url))


async def test_stalls_time_out_between_reads_and_in_total(client) -> None:  # type: ignore[no-untyped-def]
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(100):  # a byte every 50 ms: never a read timeout, but a total one
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with Server(silent) as server:
        with pytest.raises(HttpTimeout, match="no data"):
            await post(client(server.url), read_s=0.2)
    async with Server(trickle) as server:
        resp = await post(client(server.url), read_s=0.5, total_s=0.6, stream=True)
        with pytest.raises(HttpTimeout, match="total"):
            async for _ in resp.chunks():
                pass


async def test_connect_failures(client) -> None:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectFailed):
        await post(client(f"http://127.0.0.1:{port}"))


async def test_a_reset_mid_body_is_a_read_failure(client) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    async with Server(handler) as server:
        resp = await post(client(server.url))
        with pytest.raises(ReadFailed):
            await resp.read()


async def test_the_pool_limit_makes_callers_wait_and_closing_frees_the_slot(client) -> None:  # type: ignore[no-untyped-def]
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        await ok()(reader, writer)

    async with Server(slow) as server:
        c = client(server.url, max_connections=2)
        first = [asyncio.create_task(post(c)) for _ in range(2)]
        third = asyncio.create_task(post(c, total_s=5))
        await asyncio.sleep(0.2)
        assert server.connections == 2 and not third.done()
        release.set()
        for task in first:
            (await task).release()
        resp = await third
        assert await resp.read() == BODY
        resp.release()
        assert server.connections == 2
        blockers = [await post(c) for _ in range(2)]  # hold both connections, unread
        with pytest.raises(HttpTimeout, match="no free connection"):
            await post(c, total_s=0.2)
        blockers[0].close()  # a closed connection frees its slot for a new one
        resp = await post(c)
        assert await resp.read() == BODY
        assert server.connections == 3


async def test_cancelling_a_request_closes_its_connection(client) -> None:  # type: ignore[no-untyped-def]
    gone = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # returns at EOF: the client went away
        gone.set()

    async with Server(hang) as server:
        task = asyncio.create_task(post(client(server.url)))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(gone.wait(), 2)


async def test_a_stream_released_just_before_its_end_is_drained_and_reused(client) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\n[DONE]\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with Server(handler) as server:
        c = client(server.url)
        for _ in range(3):
            resp = await post(c, stream=True)
            assert await resp.chunks().__anext__() == b"[DONE]"
            resp.release()  # the terminator has not arrived yet
            await asyncio.sleep(0.1)
        assert server.connections == 1


async def test_an_idle_connection_closed_by_the_server_is_not_reused(client) -> None:  # type: ignore[no-untyped-def]
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ok()(reader, writer)
        writer.close()  # without saying so in a header

    async with Server(once) as server:
        c = client(server.url)
        for _ in range(3):
            resp = await post(c)
            assert await resp.read() == BODY
            resp.release()
            await asyncio.sleep(0.05)
        assert server.connections == 3


def test_header_injection_and_foreign_urls_are_refused() -> None:
    async def go() -> None:
        c = HttpClient("http://127.0.0.1:9")
        with pytest.raises(ValueError, match="line breaks"):
            await c.post("http://127.0.0.1:9/x", b"", {"x": "a\r\nevil: 1"}, connect_s=1, read_s=1, total_s=1)
        with pytest.raises(ValueError, match="is not on"):
            await c.post("http://example.com/x", b"", {}, connect_s=1, read_s=1, total_s=1)
        with pytest.raises(ValueError, match="not an http"):
            HttpClient("ftp://x")

    asyncio.run(go())


def _self_signed(tmp_path):  # type: ignore[no-untyped-def]
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_https_verifies_the_server_certificate(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ssl

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    plain = Server(ok())
    server = await asyncio.start_server(plain._serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectFailed):  # the system's trust store does not know this certificate
            await post(client(f"https://127.0.0.1:{port}"))
        trusting = ssl.create_default_context(cafile=str(cert))
        c = client(f"https://127.0.0.1:{port}", ssl_context=trusting)
        for _ in range(2):
            resp = await post(c)
            assert await resp.read() == BODY
            resp.release()
        assert plain.connections == 1  # the refused handshake never reached it; then one kept alive
    finally:
        server.close()


async def test_a_slow_stream_consumer_pauses_the_socket_and_loses_nothing(client) -> None:  # type: ignore[no-untyped-def]
    from seawall.edges.upstreams import http1

    piece = b"x" * 65536
    count = 3 * http1.HIGH_WATER // len(piece)  # three times what may wait for the consumer

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (count * len(piece)))
        for _ in range(count):
            writer.write(piece)
            await writer.drain()

    async with Server(flood) as server:
        resp = await post(client(server.url), stream=True)
        pieces = resp.chunks()
        got = [await pieces.__anext__()]
        for _ in range(100):  # the consumer sleeps; the client stops reading past the high-water mark
            await asyncio.sleep(0.01)
            if resp._conn is not None and resp._conn.paused:
                break
        assert resp._conn is not None and resp._conn.paused
        assert resp._buffered <= http1.HIGH_WATER + 256 * 1024  # plus at most one socket read (256 KiB)
        got += [p async for p in pieces]
        assert len(b"".join(got)) == count * len(piece) and resp.complete


async def test_idle_connections_expire_after_keepalive(client) -> None:  # type: ignore[no-untyped-def]
    async with Server(ok()) as server:
        c = client(server.url, keepalive_s=0.05)
        for _ in range(2):
            resp = await post(c)
            assert await resp.read() == BODY
            resp.release()
            await asyncio.sleep(0.15)
        assert server.connections == 2


async def test_a_stream_that_never_ends_after_release_is_closed_after_the_drain_time(  # type: ignore[no-untyped-def]
        client, monkeypatch) -> None:
    from seawall.edges.upstreams import http1

    monkeypatch.setattr(http1, "DRAIN_S", 0.1)
    gone = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\n[DONE]\r\n")
        await writer.drain()
        await reader.read()  # until the client closes
        gone.set()

    async with Server(endless) as server:
        c = client(server.url)
        resp = await post(c, stream=True)
        assert await resp.chunks().__anext__() == b"[DONE]"
        resp.release()
        await asyncio.wait_for(gone.wait(), 2)
        assert c._open == 0 and not c._idle
