"""``/v1/responses`` with the official openai SDK against a real gateway process and real mock upstreams:
OpenAI-compatible and Anthropic deployments, streaming helpers, stored conversations, retrieve and
delete, failures mid-stream; every body and event the gateway sends is checked against OpenAI's
published schema (tests/conformance)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conformance.schema import event_violations, violations
from tests.e2e.harness import Gateway

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gw(front_door: Gateway) -> Gateway:
    return front_door


def client(gw: Gateway, tier: str = "enterprise") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.keys[tier], max_retries=0, timeout=10)


def post(gw: Gateway, body: dict, tier: str = "enterprise") -> httpx.Response:
    return httpx.post(gw.url + "/v1/responses", json=body, timeout=10,
                      headers={"authorization": f"Bearer {gw.keys[tier]}"})


def raw_events(gw: Gateway, body: dict) -> list[dict]:
    """The stream's events, each checked: SSE name = type, schema, and sequence numbers 0, 1, 2..."""
    events = []
    with httpx.stream("POST", gw.url + "/v1/responses", json={**body, "stream": True}, timeout=10,
                      headers={"authorization": f"Bearer {gw.keys['enterprise']}"}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["type"] == name
                assert event_violations(event) == []
                events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_create_conforms_and_the_sdk_reads_it(gw, model):
    resp = post(gw, {"model": model, "input": "Hello", "instructions": "Be brief.", "max_output_tokens": 50,
                     "metadata": {"team": "sre"}})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert violations("Response", body) == []
    assert body["id"].startswith("resp_") and resp.headers["x-request-id"]
    assert body["instructions"] == "Be brief." and body["metadata"] == {"team": "sre"}
    result = client(gw).responses.create(model=model, input="Hello", max_output_tokens=50)
    assert result.status == "completed" and result.output_text.startswith("tok0 tok1")
    assert result.usage is not None and result.usage.output_tokens == len(result.output_text.split())


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_stream_events_conform_and_the_stream_helper_completes(gw, model):
    events = raw_events(gw, {"model": model, "input": "Hello"})
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == text
    assert events[-1]["response"]["usage"]["output_tokens"] == len(text.split())
    with client(gw).responses.stream(model=model, input="Hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(deltas) and final.status == "completed"
    sdk_stream = client(gw).responses.create(model=model, input="Hello", stream=True)
    assert [e.type for e in sdk_stream][-1] == "response.completed"


def test_a_token_limit_in_a_stream_ends_with_response_incomplete(gw):
    events = raw_events(gw, {"model": "chat", "input": "Hello", "max_output_tokens": 3})
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_previous_response_id_continues_the_stored_conversation(gw):
    c = client(gw)
    first = c.responses.create(model="chat", input="My name is Ada. " * 20)
    alone = c.responses.create(model="chat", input="What is my name?")
    follow = c.responses.create(model="chat", input="What is my name?", previous_response_id=first.id)
    assert follow.previous_response_id == first.id
    # The mock counts prompt tokens from the request's size: the follow-up carried the first turn.
    assert follow.usage.input_tokens > alone.usage.input_tokens + 40
    with c.responses.stream(model="claude", input="And now?", previous_response_id=follow.id) as stream:
        final = stream.get_final_response()
    assert final.usage.input_tokens > alone.usage.input_tokens + 40


def test_retrieve_and_delete_a_stored_response_and_only_its_tenant_sees_it(gw):
    c = client(gw)
    made = c.responses.create(model="chat", input="Keep this")
    assert c.responses.retrieve(made.id).output_text == made.output_text
    raw = httpx.get(f"{gw.url}/v1/responses/{made.id}", headers={"authorization": f"Bearer {gw.keys['enterprise']}"})
    assert violations("Response", raw.json()) == []
    with pytest.raises(openai.NotFoundError):
        client(gw, "free").responses.retrieve(made.id)  # another tenant
    with pytest.raises(openai.BadRequestError) as info:
        client(gw, "free").responses.create(model="chat", input="x", previous_response_id=made.id)
    assert info.value.code == "previous_response_not_found"
    deleted = httpx.delete(f"{gw.url}/v1/responses/{made.id}",
                           headers={"authorization": f"Bearer {gw.keys['enterprise']}"})
    assert deleted.json() == {"id": made.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError) as gone:
        c.responses.retrieve(made.id)
    assert violations("ErrorResponse", gone.value.response.json()) == []
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(made.id)


def test_store_false_keeps_nothing(gw):
    made = client(gw).responses.create(model="chat", input="Forget this", store=False)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        client(gw).responses.retrieve(made.id)


def test_a_failure_mid_stream_ends_with_error_and_response_failed(gw):
    events = raw_events(gw, {"model": "broken", "input": "Hello"})
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created" and "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "chat"}, 400, "input"),
    ({"model": "chat", "input": "x", "tools": [{"type": "web_search"}]}, 400, "tools[0].type"),
    ({"model": "chat", "input": [{"type": "item_reference", "id": "msg_1"}]}, 400, "input[0].type"),
    ({"model": "nope", "input": "x"}, 404, "model"),
    ({"model": "embed", "input": "x"}, 400, "model"),
    ({"model": "chat", "input": "x", "previous_response_id": "resp_unknown"}, 400, "previous_response_id"),
])
def test_bad_requests_are_openai_errors(gw, body, status, param):
    resp = post(gw, body)
    assert resp.status_code == status, resp.text
    assert violations("ErrorResponse", resp.json()) == []
    assert resp.json()["error"]["param"] == param
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_no_key_is_401_and_bad_json_is_400(gw):
    resp = httpx.post(gw.url + "/v1/responses", json={"model": "chat", "input": "x"}, timeout=5)
    assert resp.status_code == 401 and violations("ErrorResponse", resp.json()) == []
    resp = httpx.post(gw.url + "/v1/responses", content=b"{nope", timeout=5,
                      headers={"authorization": f"Bearer {gw.keys['enterprise']}", "content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
    resp = httpx.put(f"{gw.url}/v1/responses/resp_1", timeout=5)
    assert resp.status_code == 405 and resp.headers["allow"] == "DELETE, GET, HEAD"


def test_responses_are_counted_under_their_own_route_refusals_included(gw):
    client(gw).responses.create(model="chat", input="count me")
    assert post(gw, {"model": "chat", "input": []}).status_code == 400  # refused before translation
    assert post(gw, {"model": "chat", "input": "x", "previous_response_id": "resp_gone"}).status_code == 400
    metrics = httpx.get(gw.url + "/metrics", timeout=5).text
    assert 'seawall_requests_total{reason="ok",route="responses",status="200",tier="enterprise"}' in metrics
    assert 'seawall_requests_total{reason="invalid_request",route="responses",status="400",tier="enterprise"}' \
        in metrics
    assert 'reason="previous_response_not_found",route="responses",status="400"' in metrics
