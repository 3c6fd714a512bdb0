"""Raw HTTP against a real gateway process: bad input of every kind gets a clear error in OpenAI's
format, never a stack trace or a hang; a client that goes away cancels the upstream request."""

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time

import aiohttp
import httpx
import pytest
import yaml

from tests.e2e.harness import mock_stats, wait_for_key

CHAT = "/v1/chat/completions"
GOOD = b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'


def post(gw, body: bytes, headers=None, key="enterprise", path=CHAT):
    h = {"content-type": "application/json"}
    if key:
        h["authorization"] = f"Bearer {gw.keys[key]}"
    h.update(headers or {})
    return httpx.post(gw.url + path, content=body, headers=h, timeout=10)


def assert_openai_error(r: httpx.Response, status: int, code: str | None = None, param: str | None = None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert "x-request-id" in r.headers
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    return body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[]", None),
        (b'{"model": "chat", "messages": [{"role": "user", "content": "\xff\xfe"}]}', None),
        (b'\xef\xbb\xbf{"model": 1}', None),
        (b'{"model":"chat","messages":"hi"}', "messages"),
        (b'{"model":"chat","messages":[{"role":"user","content":"x"}],"n":0}', "n"),
        (b'{"model":"chat","messages":[{"role":"user","content":"x"}],"stream":"true"}', "stream"),
    ],
)
def test_malformed_bodies_are_400_naming_the_field(gateway, body, param):
    data = assert_openai_error(post(gateway, body), 400, param=param)
    assert data["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_is_415(gateway, ctype):
    assert_openai_error(post(gateway, GOOD, headers={"content-type": ctype}), 415, "unsupported_media_type")


def test_json_content_type_with_charset_is_fine(gateway):
    r = post(gateway, GOOD, headers={"content-type": "application/json; charset=utf-8"})
    assert r.status_code == 200


def test_body_over_the_limit_is_413_by_content_length_and_by_streaming(gateway):
    huge = b'{"model":"chat","messages":[{"role":"user","content":"' + b"x" * (5 * 1024 * 1024) + b'"}]}'
    assert_openai_error(post(gateway, huge), 413, "request_too_large")

    def chunks():
        yield huge[: 1024 * 1024]
        for i in range(1024 * 1024, len(huge), 1024 * 1024):
            yield huge[i : i + 1024 * 1024]

    r = httpx.post(gateway.url + CHAT, content=chunks(), timeout=10,
                   headers={"content-type": "application/json",
                            "authorization": f"Bearer {gateway.keys['enterprise']}"})
    assert_openai_error(r, 413, "request_too_large")


def test_body_just_under_the_limit_is_accepted(gateway):
    pad = 4 * 1024 * 1024 - 200
    body = b'{"model":"chat","max_tokens":1,"messages":[{"role":"user","content":"' + b"y" * pad + b'"}]}'
    assert len(body) < 4 * 1024 * 1024
    assert post(gateway, body).status_code == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"authorization": "Bearer sw-000000000000-" + "0" * 48}, "invalid_api_key"),
        ({"authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
        ({"x-api-key": "\u00e9t\u00e9".encode("latin-1")}, "invalid_api_key"),
    ],
)
def test_bad_keys_are_401(gateway, headers, code):
    h = {"content-type": "application/json", **headers}
    r = httpx.post(gateway.url + CHAT, content=GOOD, headers=h, timeout=10)
    assert_openai_error(r, 401, code)


def test_unknown_path_and_wrong_method(gateway):
    missing = httpx.get(gateway.url + "/v1/nope", timeout=5)
    assert_openai_error(missing, 404, "unknown_url")
    wrong = httpx.get(gateway.url + CHAT, timeout=5)
    assert_openai_error(wrong, 405, "method_not_allowed")
    assert wrong.headers["allow"] == "POST"
    media = httpx.post(gateway.url + CHAT, content=GOOD, headers={"content-type": "text/plain"}, timeout=5)
    assert_openai_error(media, 415)
    # the client sent something wrong: OpenAI's type for that, not a server error
    assert {r.json()["error"]["type"] for r in (missing, wrong, media)} == {"invalid_request_error"}


def test_head_answers_at_once_on_every_route(gateway):
    """A HEAD response has no body to carry its head; it once waited for one for ever."""
    for path, status in (("/healthz", 200), ("/readyz", 200), ("/v1/models", 401), (CHAT, 405), ("/v1/nope", 404)):
        started = time.monotonic()
        r = httpx.head(gateway.url + path, timeout=5)
        assert time.monotonic() - started < 2.0, path  # generous: the bound is "not a hang"
        assert r.status_code == status, path
        assert r.content == b"" and "x-request-id" in r.headers
    assert httpx.head(gateway.url + "/healthz", timeout=5).headers["content-type"] == "application/json"


def test_bad_request_timeout_header(gateway):
    assert_openai_error(post(gateway, GOOD, headers={"x-request-timeout": "soon"}), 400,
                        param="x-request-timeout")
    assert_openai_error(post(gateway, GOOD, headers={"x-request-timeout": "-1"}), 400)


def test_deadline_shorter_than_upstream_is_504(gateway):
    body = b'{"model":"chat","messages":[{"role":"user","content":"x"}],"mock":{"latency_s":2}}'
    r = post(gateway, body, headers={"x-request-timeout": "0.3"})
    assert_openai_error(r, 504)


def test_garbage_on_the_socket_does_not_hurt_the_server(gateway):
    host, port = gateway.url.removeprefix("http://").split(":")
    for junk in (b"\x00\x01\x02 nonsense\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"POST " + b"a" * 70000):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(junk)
            s.settimeout(5)
            try:
                s.recv(4096)
            except (TimeoutError, ConnectionResetError):
                pass
    assert httpx.get(gateway.url + "/healthz", timeout=5).json() == {"status": "ok"}


def test_health_ready_metrics(gateway):
    assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200
    ready = httpx.get(gateway.url + "/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["dependencies"]["key_store"]["status"] == "ok"
    assert ready.json()["upstreams"]["mock-a"]["breaker"] == "closed"
    post(gateway, GOOD)
    metrics = httpx.get(gateway.url + "/metrics", timeout=5).text
    assert 'seawall_requests_total{reason="ok",route="chat",status="200",tier="enterprise"}' in metrics
    assert "seawall_request_duration_seconds_bucket" in metrics


async def _disconnect_mid_stream(gateway, mock_url, stream: bool):
    base = mock_stats(mock_url)
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5000,
            "stream": stream, "mock": {"completion_tokens": 5000}}
    if not stream:
        body["mock"] = {"latency_s": 5}
    headers = {"authorization": f"Bearer {gateway.keys['enterprise']}"}
    started_stream = asyncio.Event()

    async def call(session):
        async with session.post(gateway.url + CHAT, json=body, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=10)) as resp:
            assert resp.status == 200
            await resp.content.readuntil(b"\n\n")
            started_stream.set()
            await asyncio.sleep(10)

    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(call(session))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if mock_stats(mock_url)["in_flight"] >= 1 and (started_stream.is_set() or not stream):
                break
            await asyncio.sleep(0.02)
        assert mock_stats(mock_url)["in_flight"] >= 1
        task.cancel()  # the client goes away: aiohttp closes the connection
        with contextlib.suppress(asyncio.CancelledError):
            await task
    started = time.monotonic()
    while time.monotonic() - started < 3:
        stats = mock_stats(mock_url)
        if stats["in_flight"] == 0 and stats["cancelled"] > base["cancelled"]:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"upstream request not cancelled: {mock_stats(mock_url)}")


async def test_client_disconnect_mid_stream_cancels_upstream(gateway, mock):
    elapsed = await _disconnect_mid_stream(gateway, mock.url, stream=True)
    assert elapsed < 1.0


async def test_client_disconnect_while_waiting_cancels_upstream(gateway, mock):
    elapsed = await _disconnect_mid_stream(gateway, mock.url, stream=False)
    assert elapsed < 1.0


def test_revocation_takes_effect_within_2s_without_restart(gateway):
    created = gateway.create_key("revokee", "free")
    wait_for_key(gateway.url, created["key"])
    gateway.cli("keys", "revoke", "-c", str(gateway.config_path), created["key_id"])
    start = time.monotonic()
    while time.monotonic() - start < 5:
        r = post(gateway, GOOD, headers={"authorization": f"Bearer {created['key']}"}, key=None)
        if r.status_code == 401:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    assert r.status_code == 401 and elapsed < 2.0, elapsed
    listing = gateway.cli("keys", "list", "-c", str(gateway.config_path), "--json").stdout
    assert '"revoked": true' in listing and created["key"] not in listing


def test_keys_are_stored_only_as_hashes(gateway, e2e_tmp):
    db = (e2e_tmp / "seawall.db").read_bytes()
    for key in gateway.keys.values():
        assert key.encode() not in db


def test_invalid_config_refuses_to_start_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": [{"name": "a", "deployments": [{"base_url": "nope"}]}]}))
    result = subprocess.run([sys.executable, "-m", "seawall", "run", "-c", str(path)], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "models[0].deployments[0].base_url: not a URL" in lines[0]
    check = subprocess.run([sys.executable, "-m", "seawall", "check-config", str(path)], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert check.returncode == 1 and "models[0].deployments[0].base_url: not a URL" in check.stdout


def test_every_request_lands_in_the_ledger(gateway):
    before = gateway.cli("usage", "-c", str(gateway.config_path), "--by", "tenant", "--json").stdout
    import json

    def count(text):
        return sum(r["requests"] for r in json.loads(text) if r["tenant"] == "t-free")

    n0 = count(before)
    for _ in range(5):
        assert post(gateway, GOOD, key="free").status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = gateway.cli("usage", "-c", str(gateway.config_path), "--by", "tenant", "--json").stdout
        if count(after) >= n0 + 5:
            break
        time.sleep(0.1)
    rows = [r for r in json.loads(after) if r["tenant"] == "t-free"]
    assert count(after) == n0 + 5
    assert rows[0]["tokens_out"] >= 10


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_dialect_answers_carry_request_id(gateway, stream):
    """The anthropic SDK reads ``request-id``; it matches the gateway's ``x-request-id``."""
    body = json.dumps({"model": "chat", "max_tokens": 4, "stream": stream,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    r = post(gateway, body, path="/v1/messages")
    assert r.status_code == 200, r.text
    assert r.headers["request-id"] == r.headers["x-request-id"]
    chat = post(gateway, GOOD)
    assert chat.status_code == 200 and "request-id" not in chat.headers  # OpenAI's dialect has its own
