"""Legacy ``/v1/completions`` and ``GET /v1/models/{id}`` with the official openai SDK against a real
gateway and mock, bodies and chunks checked against OpenAI's published schema."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conformance.schema import completion_chunk_violations, violations
from tests.e2e.harness import Gateway

pytestmark = pytest.mark.e2e


def client(gw: Gateway, tier: str = "enterprise") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.keys[tier], max_retries=0, timeout=10)


def auth(gw: Gateway) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.keys['enterprise']}"}


def test_a_completion_passes_through_and_conforms(front_door):
    raw = httpx.post(front_door.url + "/v1/completions", headers=auth(front_door), timeout=10,
                     json={"model": "chat", "prompt": "Once upon a time", "max_tokens": 4})
    assert raw.status_code == 200 and violations("CreateCompletionResponse", raw.json()) == []
    result = client(front_door).completions.create(model="chat", prompt="Once upon a time", max_tokens=4)
    assert result.object == "text_completion" and result.choices[0].text == "tok0 tok1 tok2 tok3"
    assert result.choices[0].finish_reason == "length" and result.usage.completion_tokens == 4


def test_the_default_token_limit_is_openais_sixteen(front_door):
    result = client(front_door).completions.create(model="chat", prompt="Go")
    assert result.usage.completion_tokens == 16


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_streamed_completion_conforms_and_shows_usage_only_when_asked(front_door, include_usage):
    body = {"model": "chat", "prompt": "Once", "max_tokens": 3, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    chunks = []
    with httpx.stream("POST", front_door.url + "/v1/completions", json=body, headers=auth(front_door),
                      timeout=10) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(httpx.Response(200, content=line[6:]).json())
    for chunk in chunks:
        assert completion_chunk_violations(chunk) == []
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "tok0 tok1 tok2"
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage == ([{"prompt_tokens": usage[0]["prompt_tokens"], "completion_tokens": 3,
                       "total_tokens": usage[0]["prompt_tokens"] + 3}] if include_usage else [])
    sdk = list(client(front_door).completions.create(model="chat", prompt="Once", max_tokens=3, stream=True))
    assert "".join(c.choices[0].text for c in sdk if c.choices) == "tok0 tok1 tok2"


def test_an_anthropic_deployment_refuses_legacy_completions_clearly(front_door):
    with pytest.raises(openai.BadRequestError) as info:
        client(front_door).completions.create(model="claude", prompt="Once", max_tokens=3)
    assert info.value.code == "unsupported_operation" and "chat/completions" in info.value.message


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "chat"}, "prompt"),
    ({"model": "chat", "prompt": [1, "a"]}, "prompt"),
    ({"model": "chat", "prompt": "x", "max_tokens": -1}, "max_tokens"),
    ({"model": "chat", "prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
])
def test_bad_completions_are_openai_errors(front_door, body, param):
    resp = httpx.post(front_door.url + "/v1/completions", json=body, headers=auth(front_door), timeout=5)
    assert resp.status_code == 400 and violations("ErrorResponse", resp.json()) == []
    assert resp.json()["error"]["param"] == param


def test_retrieve_a_model_and_a_missing_one(front_door):
    model = client(front_door).models.retrieve("chat")
    assert (model.id, model.object) == ("chat", "model")
    raw = httpx.get(front_door.url + "/v1/models/chat", headers=auth(front_door), timeout=5)
    assert violations("Model", raw.json()) == []
    with pytest.raises(openai.NotFoundError) as info:
        client(front_door).models.retrieve("org/missing-model")
    assert info.value.code == "model_not_found"
    listed = httpx.get(front_door.url + "/v1/models", headers=auth(front_door), timeout=5).json()
    assert violations("ListModelsResponse", listed) == []
    assert httpx.get(front_door.url + "/v1/models/chat", timeout=5).status_code == 401
    assert httpx.head(front_door.url + "/v1/models/chat", headers=auth(front_door), timeout=5).status_code == 200
