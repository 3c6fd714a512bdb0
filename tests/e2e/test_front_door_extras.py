"""OPTIONS on every route, CORS (off by default, then configured), count_tokens with the anthropic SDK
and /openapi.json, against real gateway processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.e2e.harness import Gateway, Proc, mock_config, start_gateway

pytestmark = pytest.mark.e2e

ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/responses/resp_1",
          "/v1/messages", "/v1/messages/count_tokens", "/v1/models", "/v1/models/chat", "/v1/moderations",
          "/healthz", "/readyz", "/metrics", "/admin/admission", "/openapi.json"]
ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def cors_gateway(e2e_tmp: Path, mock: Proc) -> Iterator[Gateway]:
    config = mock_config(mock.url, server={"cors": {"allow_origins": [ORIGIN]}},
                         store={"sqlite_path": str(e2e_tmp / "cors.db"), "refresh_interval_s": 0.5})
    gw = start_gateway(e2e_tmp, config, tiers=("enterprise",))
    yield gw
    gw.stop()


def test_options_answers_at_once_on_every_route_without_auth(front_door):
    for path in ROUTES:
        started = time.monotonic()
        r = httpx.options(front_door.url + path, timeout=5)
        assert time.monotonic() - started < 0.5, path
        assert r.status_code == 204 and "OPTIONS" in r.headers["allow"], path
        assert "access-control-allow-origin" not in r.headers, "CORS is off by default"
    preflight = httpx.options(front_door.url + "/v1/chat/completions", timeout=5, headers={
        "origin": ORIGIN, "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    assert httpx.options(front_door.url + "/v1/nope", timeout=5).status_code == 404


def test_cors_preflight_and_answers_for_an_allowed_origin_only(cors_gateway):
    url = cors_gateway.url + "/v1/chat/completions"
    preflight = httpx.options(url, timeout=5, headers={"origin": ORIGIN, "access-control-request-method": "POST",
                                                       "access-control-request-headers": "authorization"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert preflight.headers["access-control-max-age"] == "600"
    key = cors_gateway.keys["enterprise"]
    answer = httpx.post(url, timeout=10, headers={"origin": ORIGIN, "authorization": f"Bearer {key}"},
                        json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in answer.headers["access-control-expose-headers"]
    refused = httpx.post(url, timeout=10, headers={"origin": ORIGIN}, json={})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN, \
        "a browser must be able to read the error too"
    other = httpx.options(url, timeout=5, headers={"origin": "https://evil.example",
                                                   "access-control-request-method": "POST"})
    assert other.status_code == 204 and "access-control-allow-origin" not in other.headers


def test_count_tokens_with_the_anthropic_sdk(front_door):
    claude = anthropic.Anthropic(base_url=front_door.url, api_key=front_door.keys["enterprise"], max_retries=0,
                                 timeout=10)
    short = claude.messages.count_tokens(model="claude", messages=[{"role": "user", "content": "Hello"}])
    long = claude.messages.count_tokens(model="claude", system="Be terse." * 50,
                                        messages=[{"role": "user", "content": "Hello " * 400}],
                                        tools=[{"name": "f", "input_schema": {"type": "object"}}])
    assert 1 <= short.input_tokens < 20 and long.input_tokens > 600
    # served by the gateway alone: no upstream call, any deployment kind
    assert claude.messages.count_tokens(model="chat", messages=[{"role": "user", "content": "x"}]).input_tokens
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.count_tokens(model="claude", messages=[])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=front_door.url, api_key="nope", max_retries=0).messages.count_tokens(
            model="claude", messages=[{"role": "user", "content": "x"}])


def test_openapi_json_is_served_without_a_key(front_door):
    r = httpx.get(front_door.url + "/openapi.json", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["openapi"] == "3.1.0" and "/v1/responses/{response_id}" in doc["paths"]


def test_head_answers_at_once_on_the_new_routes(front_door):
    auth = {"authorization": f"Bearer {front_door.keys['enterprise']}"}
    for path, headers, status in (("/openapi.json", {}, 200), ("/v1/models/chat", auth, 200),
                                  ("/v1/responses/resp_missing", auth, 404), ("/v1/responses/resp_x", {}, 401),
                                  ("/v1/responses", auth, 405), ("/v1/completions", auth, 405),
                                  ("/v1/moderations", auth, 405), ("/v1/messages/count_tokens", auth, 405)):
        started = time.monotonic()
        r = httpx.head(front_door.url + path, headers=headers, timeout=5)
        assert time.monotonic() - started < 0.5, path
        assert r.status_code == status and r.content == b"", path
