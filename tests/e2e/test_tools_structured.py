"""Tool calls and structured outputs end to end: the official SDKs against a gateway process and the
built-in mock, through chat completions, the Responses API and an Anthropic deployment."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.conformance.schema import violations
from tests.e2e.harness import Gateway

pytestmark = pytest.mark.e2e

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
           "additionalProperties": False}
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": True}]


class Step(BaseModel):
    explanation: str
    output: str


class Solution(BaseModel):
    steps: list[Step]
    final_answer: str


def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.keys["enterprise"], max_retries=0, timeout=10)


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_a_chat_tool_loop_calls_then_answers(front_door, model):
    c = client(front_door)
    messages: list = [{"role": "user", "content": "Weather in Paris?"}]
    first = c.chat.completions.create(model=model, messages=messages, tools=CHAT_TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18C"}]
    second = c.chat.completions.create(model=model, messages=messages, tools=CHAT_TOOLS)
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content


def test_a_streamed_tool_call_reassembles_in_the_sdk(front_door):
    with client(front_door).chat.completions.stream(model="chat", messages=[{"role": "user", "content": "x"}],
                                                    tools=CHAT_TOOLS, tool_choice="required") as stream:
        final = stream.get_final_completion()
    assert json.loads(final.choices[0].message.tool_calls[0].function.arguments) == {"city": "mock"}


@pytest.mark.parametrize("model", ["chat", "claude"])
def test_a_responses_function_call_round_trip(front_door, model):
    c = client(front_door)
    first = c.responses.create(model=model, input="Weather in Paris?", tools=RESPONSE_TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "mock"}
    second = c.responses.create(model=model, previous_response_id=first.id, tools=RESPONSE_TOOLS,
                                input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                        "output": "18C"}])
    assert second.status == "completed" and second.output_text and not any(
        item.type == "function_call" for item in second.output)
    # The same loop without the store: the caller sends the whole history back.
    third = c.responses.create(model=model, store=False, tools=RESPONSE_TOOLS, input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C"}])
    assert third.output_text


def test_a_streamed_responses_function_call(front_door):
    with client(front_door).responses.stream(model="chat", input="Weather?", tools=RESPONSE_TOOLS,
                                             tool_choice="required") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert json.loads(final.output[0].arguments) == {"city": "mock"}


def test_structured_outputs_parse_in_both_apis(front_door):
    c = client(front_door)
    parsed = c.chat.completions.parse(model="chat", messages=[{"role": "user", "content": "Solve 8x + 7 = -23"}],
                                      response_format=Solution)
    assert isinstance(parsed.choices[0].message.parsed, Solution)
    result = c.responses.parse(model="chat", input="Solve 8x + 7 = -23", text_format=Solution)
    assert isinstance(result.output_parsed, Solution)
    obj = c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "json"}],
                                    response_format={"type": "json_object"})
    assert json.loads(obj.choices[0].message.content)


def test_n_logprobs_and_stop(front_door):
    raw = httpx.post(front_door.url + "/v1/chat/completions", timeout=10,
                     headers={"authorization": f"Bearer {front_door.keys['enterprise']}"},
                     json={"model": "chat", "messages": [{"role": "user", "content": "x"}], "n": 2,
                           "logprobs": True, "top_logprobs": 2, "max_tokens": 3})
    assert violations("CreateChatCompletionResponse", raw.json()) == []
    body = raw.json()
    assert [c["index"] for c in body["choices"]] == [0, 1] and body["usage"]["completion_tokens"] == 6
    assert [t["token"] for t in body["choices"][0]["logprobs"]["content"]] == ["tok0", " tok1", " tok2"]
    assert len(body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2
    stopped = client(front_door).chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}],
                                                         stop=[" tok3"])
    assert stopped.choices[0].message.content == "tok0 tok1 tok2" and stopped.choices[0].finish_reason == "stop"
    chunks = list(client(front_door).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "x"}], n=2, max_tokens=2, stream=True))
    texts = {k: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == k)
             for k in (0, 1)}
    assert texts == {0: "tok0 tok1", 1: "tok0 tok1"}


def test_anthropic_sdk_tool_use_through_the_gateway(front_door):
    claude = anthropic.Anthropic(base_url=front_door.url, api_key=front_door.keys["enterprise"], max_retries=0,
                                 timeout=10)
    message = claude.messages.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": "x"}],
                                     tools=[{"name": "get_weather", "input_schema": WEATHER}])
    assert message.stop_reason == "tool_use" and message.content[0].input == {"city": "mock"}
    with claude.messages.stream(model="claude", max_tokens=100, messages=[{"role": "user", "content": "x"}],
                                tools=[{"name": "get_weather", "input_schema": WEATHER}],
                                tool_choice={"type": "any"}) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "mock"}


def test_legacy_functions_to_an_anthropic_deployment_are_a_clear_400(front_door):
    """Issue 12 defect 7."""
    with pytest.raises(openai.BadRequestError) as info:
        client(front_door).chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "x"}],
            functions=[{"name": "get_weather", "parameters": WEATHER}])
    assert info.value.code == "untranslatable" and info.value.param == "functions"
    assert "'tools'" in info.value.message
