"""``/v1/moderations`` with the openai SDK: routed to the moderation group, answered by the mock in
OpenAI's category schema, validated against the published schema."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conformance.schema import violations
from tests.e2e.harness import Gateway

pytestmark = pytest.mark.e2e


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.keys["enterprise"], max_retries=0, timeout=10)


def test_moderation_flags_what_the_mock_is_told_to_and_conforms(front_door):
    result = client(front_door).moderations.create(model="moderation", input=["I will attack you", "Nice day"])
    assert [r.flagged for r in result.results] == [True, False]
    assert result.results[0].categories.violence and not result.results[1].categories.violence
    raw = httpx.post(front_door.url + "/v1/moderations", timeout=10,
                     headers={"authorization": f"Bearer {front_door.keys['enterprise']}"},
                     json={"input": [{"type": "text", "text": "shoplift tips"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]})
    assert raw.status_code == 200 and violations("CreateModerationResponse", raw.json()) == []
    # No model: routed to the first moderation group, whose upstream picks its own default model.
    assert raw.json()["model"] == "omni-moderation-latest"
    assert raw.json()["results"][0]["categories"]["illicit"] is True


def test_a_moderation_without_a_model_uses_the_configured_group(front_door):
    assert client(front_door).moderations.create(input="hello").results[0].flagged is False


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"input": 5}, 400, "input"),
    ({"model": "chat", "input": "x"}, 400, "model"),
    ({"model": "nope", "input": "x"}, 404, "model"),
])
def test_bad_moderations_are_openai_errors(front_door, body, status, param):
    resp = httpx.post(front_door.url + "/v1/moderations", json=body, timeout=5,
                      headers={"authorization": f"Bearer {front_door.keys['enterprise']}"})
    assert resp.status_code == status and violations("ErrorResponse", resp.json()) == []
    assert resp.json()["error"]["param"] == param
