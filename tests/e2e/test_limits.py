"""Every limit of the server edge, crossed on raw sockets against a real gateway process (small limits
configured, so each test is quick): the body with and without content-length, the head's size,
header count and URL, JSON depth and numbers, message count and ``max_tokens``, slowloris and slow
POST, request smuggling, invalid UTF-8 and NUL bytes. Each is refused with its status and a clear
error in OpenAI's format, never a stack trace, a hang or a 500, and the gateway serves on.

Time bounds here are generous socket timeouts (a hang fails the test); no test asserts how long an
answer took."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Gateway, Proc, mock_config, mock_stats, start_gateway, start_mock

pytestmark = pytest.mark.e2e

LIMITS = {"max_body_bytes": 65536, "max_header_bytes": 4096, "max_header_count": 20, "max_url_bytes": 1024,
          "header_timeout_s": 0.5, "body_idle_timeout_s": 0.5, "body_timeout_s": 2.0, "max_messages": 50,
          "max_output_tokens": 4096}
CHAT = b"/v1/chat/completions"
GOOD = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'


@pytest.fixture(scope="module")
def gw(e2e_tmp: Path, mock: Proc) -> Iterator[Gateway]:
    gateway = start_gateway(e2e_tmp, mock_config(mock.url, server=LIMITS))
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def fast_mock(e2e_tmp: Path) -> Iterator[Proc]:
    proc = start_mock(e2e_tmp, "--base-latency-s", "0.001", "--tokens-per-s", "1000000", "--seed", "2")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def stall_gw(e2e_tmp: Path, fast_mock: Proc) -> Iterator[Gateway]:
    """A gateway in front of an upstream that streams as fast as it can."""
    (e2e_tmp / "stall").mkdir(exist_ok=True)
    gateway = start_gateway(e2e_tmp / "stall", mock_config(fast_mock.url, server={"response_stall_timeout_s": 1.0}))
    yield gateway
    gateway.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after this answer

    def error(self) -> dict[str, object]:
        assert self.headers["content-type"] == "application/json", self
        data = json.loads(self.body)
        assert set(data["error"]) == {"message", "type", "param", "code"}, data
        assert b"Traceback" not in self.body
        return data["error"]  # type: ignore[no-any-return]


def connect(gw: Gateway) -> socket.socket:
    host, port = gw.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.settimeout(10)
    return sock


def read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed without an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    closing = headers.get("connection") == "close"
    return Answer(int(lines[0].split()[1]), headers, body[:length], closed=closing and _eof(sock))


def _eof(sock: socket.socket) -> bool:
    """The server closed its side (it announced ``connection: close``): the next read is the end."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except (TimeoutError, OSError):
        return False


def exchange(gw: Gateway, data: bytes) -> Answer:
    with connect(gw) as sock:
        sock.sendall(data)
        return read_answer(sock)


def request(gw: Gateway, body: bytes, path: bytes = CHAT, extra: bytes = b"", key: str = "enterprise") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer " + gw.keys[key].encode()
            + b"\r\ncontent-type: application/json\r\ncontent-length: " + str(len(body)).encode() + b"\r\n"
            + extra + b"\r\n" + body)


def chat(**fields: object) -> bytes:
    return json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                       **fields}).encode()


def healthy(gw: Gateway) -> None:
    assert httpx.get(gw.url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert exchange(gw, request(gw, GOOD)).status == 200


# -- body size -----------------------------------------------------------------------------------
def test_a_body_over_the_limit_by_content_length_is_refused_before_it_is_sent(gw: Gateway):
    with connect(gw) as sock:
        sock.sendall(request(gw, b"")[:-2].replace(b"content-length: 0", b"content-length: 65537") + b"\r\n")
        answer = read_answer(sock)  # the head alone: refused without waiting for the body
    assert answer.status == 413 and answer.error()["code"] == "request_too_large"


def test_a_chunked_body_over_the_limit_is_refused_while_it_arrives(gw: Gateway):
    with connect(gw) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        piece = b"x" * 16384
        try:
            for _ in range(8):  # 128 KiB announced in chunks, twice the limit
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError:
            pass  # refused and closed while we were still sending: the answer is already there
        answer = read_answer(sock)
    assert answer.status == 413 and answer.error()["code"] == "request_too_large"


def test_a_body_at_the_limit_is_accepted(gw: Gateway):
    body = chat(user="u" * (65536 - len(chat(user=""))))
    assert len(body) == 65536
    assert exchange(gw, request(gw, body)).status == 200


# -- the head ------------------------------------------------------------------------------------
def test_a_head_over_the_limit_is_431(gw: Gateway):
    answer = exchange(gw, b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-big: " + b"a" * 5000 + b"\r\n\r\n")
    assert answer.status == 431 and answer.closed
    assert answer.error()["code"] == "request_header_fields_too_large"


def test_a_head_sent_in_pieces_is_counted_as_it_arrives(gw: Gateway):
    with connect(gw) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-big: ")
        try:
            for _ in range(10):
                sock.sendall(b"a" * 1000)  # one header value, never finished: llhttp would buffer it all
        except OSError:
            pass
        answer = read_answer(sock)
    assert answer.status == 431 and answer.closed


def test_a_head_just_under_the_limits_is_served(gw: Gateway):
    headers = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 150) for i in range(18))  # 20 with host and the key
    answer = exchange(gw, b"GET /v1/models HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer "
                      + gw.keys["enterprise"].encode() + b"\r\n" + headers + b"\r\n")
    assert answer.status == 200


def test_too_many_headers_is_431(gw: Gateway):
    headers = b"".join(b"x-h%d: v\r\n" % i for i in range(25))
    answer = exchange(gw, b"GET /healthz HTTP/1.1\r\nhost: gw\r\n" + headers + b"\r\n")
    assert answer.status == 431 and "headers" in str(answer.error()["message"])


def test_a_long_url_is_414(gw: Gateway):
    answer = exchange(gw, b"GET /healthz?" + b"q" * 1100 + b" HTTP/1.1\r\nhost: gw\r\n\r\n")
    assert answer.status == 414 and answer.error()["code"] == "uri_too_long" and answer.closed


# -- JSON ----------------------------------------------------------------------------------------
def test_json_nested_too_deep_is_400_not_500(gw: Gateway):
    """Finding: a body nested 100,000 deep raised RecursionError in the decoder: a 500 and a stack
    trace in the log."""
    deep = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"x":' + b"[" * 30000 + b"]" * 30000 + b"}"
    error = exchange(gw, request(gw, deep)).error()
    assert error["code"] == "invalid_json" and "nested too deeply" in str(error["message"])
    nested = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"x":' + b"[" * 100
    assert exchange(gw, request(gw, nested + b"]" * 100 + b"}")).status == 200  # ordinary depth is fine


@pytest.mark.parametrize(("field", "number", "code"), [
    (b"max_tokens", b"9" * 400, "invalid_request"),  # a big integer decodes; the bound refuses it
    (b"max_tokens", b"1e400", "invalid_json"),  # out of a double's range: the decoder refuses it
    (b"temperature", b"-1e400", "invalid_json"),
    (b"x", b"9" * 5000, "invalid_json"),  # msgspec's bound on an integer's digits
])
def test_numbers_out_of_range_are_400(gw: Gateway, field: bytes, number: bytes, code: str):
    body = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"' + field + b'":' + number + b"}"
    answer = exchange(gw, request(gw, body))
    assert answer.status == 400 and answer.error()["code"] == code


def test_the_message_count_is_bounded(gw: Gateway):
    many = [{"role": "user", "content": "a"}] * 51
    error = exchange(gw, request(gw, chat(messages=many))).error()
    assert error["param"] == "messages" and "at most 50" in str(error["message"])
    assert exchange(gw, request(gw, chat(messages=many[:50]))).status == 200


@pytest.mark.parametrize(("fields", "param"), [
    ({"max_tokens": 4097}, "max_tokens"),
    ({"max_tokens": 2**62}, "max_tokens"),
    ({"max_completion_tokens": 10**9}, "max_completion_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 2048, "n": 3}, "n"),
    ({"n": 129}, "n"),
])
def test_max_tokens_is_bounded(gw: Gateway, fields: dict[str, int], param: str):
    answer = exchange(gw, request(gw, chat(**fields)))
    assert answer.status == 400 and answer.error()["param"] == param


def test_max_tokens_is_bounded_on_the_anthropic_route_in_its_format(gw: Gateway):
    body = json.dumps({"model": "chat", "max_tokens": 5000, "messages": [{"role": "user", "content": "hi"}]})
    answer = exchange(gw, request(gw, body.encode(), path=b"/v1/messages"))
    assert answer.status == 400
    data = json.loads(answer.body)
    assert data["type"] == "error" and "max_tokens" in data["error"]["message"]
    assert exchange(gw, request(gw, chat(max_tokens=4096))).status == 200


# -- slow clients --------------------------------------------------------------------------------
def test_a_connection_that_never_sends_is_closed(gw: Gateway):
    with connect(gw) as sock:
        assert sock.recv(1024) == b""  # closed after header_timeout_s, without an answer to nothing


def test_slowloris_a_head_trickling_in_is_408(gw: Gateway):
    with connect(gw) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n")
        try:
            for i in range(100):  # a header every 0.1 s, each arriving in time, the head never ending
                sock.sendall(b"x-%d: v\r\n" % i)
                time.sleep(0.1)
        except OSError:
            pass
        answer = read_answer(sock)
    assert answer.status == 408 and answer.error()["code"] == "request_timeout" and answer.closed


def test_a_body_that_stops_is_408_and_never_reaches_the_upstream(gw: Gateway, mock: Proc):
    before = mock_stats(mock.url)["by_path"].get("/v1/chat/completions", 0)
    with connect(gw) as sock:
        sock.sendall(request(gw, GOOD)[:-10])  # the head and most of the body, then silence
        answer = read_answer(sock)
    assert answer.status == 408 and "stopped arriving" in str(answer.error()["message"]) and answer.closed
    assert mock_stats(mock.url)["by_path"].get("/v1/chat/completions", 0) == before


def test_slow_post_a_body_trickling_in_is_bounded(gw: Gateway):
    body = chat(user="u" * 200)
    with connect(gw) as sock:
        sock.sendall(request(gw, body)[: -len(body)])
        try:
            for i in range(len(body)):  # a byte every 0.2 s: never silent for 0.5 s, never done in 2 s
                sock.sendall(body[i:i + 1])
                time.sleep(0.2)
        except OSError:
            pass
        answer = read_answer(sock)
    assert answer.status == 408 and "did not arrive within 2 s" in str(answer.error()["message"])


def test_keep_alive_between_requests_is_not_a_header_timeout(gw: Gateway):
    with connect(gw) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
            answer = read_answer(sock)
            assert answer.status == 200 and "connection" not in answer.headers
            time.sleep(0.7)  # longer than header_timeout_s, idle between requests: uvicorn's keep-alive


def test_a_client_that_stops_reading_a_stream_is_cut_off_and_its_upstream_freed(stall_gw: Gateway,
                                                                                   fast_mock: Proc):
    """The client reads nothing of a long stream: once our writes have been paused for
    response_stall_timeout_s (1 s), the connection is closed and the upstream request cancelled,
    long before the request's own deadline (60 s)."""
    before = mock_stats(fast_mock.url)["cancelled"]
    body = json.dumps({"model": "chat", "stream": True, "max_tokens": 500_000, "mock": {"completion_tokens": 500_000},
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    host, port = stall_gw.url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the stall shows soon
        sock.connect((host, int(port)))
        sock.sendall(request(stall_gw, body, extra=b"x-request-timeout: 60\r\n"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = mock_stats(fast_mock.url)
            if stats["cancelled"] > before and stats["in_flight"] == 0:
                break
            time.sleep(0.1)
    assert stats["cancelled"] == before + 1 and stats["in_flight"] == 0, stats
    healthy(stall_gw)


# -- smuggling and bad bytes ---------------------------------------------------------------------
SMUGGLED = b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n"


@pytest.mark.parametrize("framing", [
    b"content-length: 4\r\ntransfer-encoding: chunked\r\n",
    b"transfer-encoding: chunked\r\ncontent-length: 4\r\n",
    b"content-length: 4\r\ncontent-length: 40\r\n",
    b"content-length: 4\r\ncontent-length: 4\r\n",
    b"content-length: +4\r\n",
    b"transfer-encoding : chunked\r\n",
    b"transfer-encoding: xchunked\r\n",
    b"transfer-encoding: chunked, identity\r\n",
    b"transfer-encoding: chunked\r\ntransfer-encoding: identity\r\n",
    b"transfer-encoding:\x0bchunked\r\n",
], ids=["cl-te", "te-cl", "two-cl", "same-cl-twice", "cl-sign", "te-space", "te-xchunked", "te-identity",
        "te-twice", "te-vtab"])
def test_request_smuggling_is_400_and_the_connection_closed(gw: Gateway, framing: bytes):
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n" + framing
    with connect(gw) as sock:
        sock.sendall(head + b"\r\n0\r\n\r\n" + SMUGGLED)
        answer = read_answer(sock)
        assert answer.status == 400 and answer.error()["code"] == "invalid_http"
        assert answer.closed  # the smuggled request after it was never answered


@pytest.mark.parametrize("head", [
    b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-a: a\x00b\r\n\r\n",
    b"GET /heal\x00thz HTTP/1.1\r\nhost: gw\r\n\r\n",
    b"GET /v1/\xff HTTP/1.1\r\nhost: gw\r\n\r\n",
    b"\x00\x01\x02 nonsense\r\n\r\n",
], ids=["nul-header", "nul-path", "bad-utf8-path", "garbage"])
def test_nul_and_invalid_bytes_in_the_head_are_400_in_openai_format(gw: Gateway, head: bytes):
    answer = exchange(gw, head)
    assert answer.status == 400 and answer.error()["type"] == "invalid_request_error" and answer.closed


def test_invalid_utf8_and_nul_in_the_body_are_400_saying_so(gw: Gateway):
    error = exchange(gw, request(gw, b'{"model":"chat","messages":[{"role":"user","content":"\xc3\x28"}]}')).error()
    assert "not valid UTF-8" in str(error["message"])
    error = exchange(gw, request(gw, b'{"model":"chat","messages":[{"role":"user","content":"a\x00b"}]}')).error()
    assert "NUL byte (at byte 55)" in str(error["message"])


def test_the_gateway_serves_on_and_logged_no_stack_trace(gw: Gateway):
    healthy(gw)
    assert "Traceback" not in gw.proc.output()
