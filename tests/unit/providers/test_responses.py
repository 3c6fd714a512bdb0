"""The Responses API <-> chat completions translation: requests, whole answers and streams, byte-level."""

import json

import msgspec
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from seawall.core.errors import InvalidRequest, Overloaded, UpstreamError
from seawall.providers import responses as r
from seawall.providers.responses_stream import ChatToResponsesStream
from seawall.providers.sse import DONE, event

EVENTS = TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"type": "function", "name": "get_weather", "description": "Weather now", "parameters": WEATHER}


def call(**body):
    return r.parse_responses(json.dumps({"model": "m", "input": "Hi", **body}).encode())


# ------------------------------------------------------------------------------------- requests


def test_a_string_input_with_instructions_is_a_system_then_user_chat_body():
    chat, turn = r.chat_request(call(instructions="Be terse.", max_output_tokens=7, temperature=0.2), [])
    assert msgspec.json.encode(chat) == (
        b'{"model":"m","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Hi"}],'
        b'"max_completion_tokens":7,"temperature":0.2}'
    )
    assert turn == [{"role": "user", "content": "Hi"}], "instructions are not carried into later turns"


def test_items_function_calls_and_outputs_become_assistant_tool_calls_and_tool_messages():
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in "}, {"type": "input_text",
                                                                                   "text": "Paris?"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city":"Lyon"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "20C"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
    ]
    chat, _ = r.chat_request(call(input=items, tools=[TOOL], tool_choice={"type": "function",
                                                                          "name": "get_weather"}), [])
    assert chat["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": "20C"},
    ]
    assert chat["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                                               "parameters": WEATHER}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_history_follows_instructions_and_precedes_the_turn_and_streams_ask_for_usage():
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    chat, _ = r.chat_request(call(instructions="I", stream=True), history)
    assert [m["content"] for m in chat["messages"]] == ["I", "a", "b", "Hi"]
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


def test_text_formats_and_images_map_to_chat():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    chat, _ = r.chat_request(call(text={"format": {"type": "json_schema", "name": "x", "schema": schema,
                                                   "strict": True}}), [])
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "x", "schema": schema,
                                                                             "strict": True}}
    chat, _ = r.chat_request(call(text={"format": {"type": "json_object"}}), [])
    assert chat["response_format"] == {"type": "json_object"}
    image = [{"role": "user", "content": [{"type": "input_text", "text": "What?"},
                                          {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]}]
    chat, _ = r.chat_request(call(input=image), [])
    assert chat["messages"][0]["content"] == [{"type": "text", "text": "What?"},
                                              {"type": "image_url", "image_url": {"url": "https://x/y.png",
                                                                                  "detail": "low"}}]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "", "input": "x"}, "model"),
    ({"model": "m"}, "input"),
    ({"model": "m", "input": []}, "input"),
    ({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "m", "input": "x", "temperature": 3}, "temperature"),
    ({"model": "m", "input": "x", "store": "yes"}, "store"),
    ({"model": "m", "input": "x", "background": True}, "background"),
    ({"model": "m", "input": "x", "previous_response_id": 5}, "previous_response_id"),
])
def test_bad_requests_name_the_field(body, param):
    with pytest.raises(InvalidRequest) as info:
        r.parse_responses(json.dumps(body).encode())
    assert info.value.param == param and info.value.status == 400


@pytest.mark.parametrize(("items", "param"), [
    ([{"type": "file_search_call", "id": "x"}], "input[0].type"),
    ([{"role": "robot", "content": "x"}], "input[0].role"),
    ([{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}], "input[0].content[0].type"),
    ([{"type": "function_call", "name": "f", "arguments": "{}"}], "input[0].call_id"),
    ([{"type": "function_call_output", "call_id": "c", "output": 5}], "input[0].output"),
])
def test_bad_items_name_the_item(items, param):
    with pytest.raises(InvalidRequest) as info:
        r.chat_request(call(input=items), [])
    assert info.value.param == param


# ------------------------------------------------------------------------------- whole answers

CHAT = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m-2024",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Checking.",
        "tool_calls": [{"id": "call_9", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
              "prompt_tokens_details": {"cached_tokens": 3}},
}


def test_a_chat_completion_becomes_a_response_with_message_and_function_call_items():
    body = r.response_body(call(tools=[TOOL]), CHAT, id="resp_ab", created_at=100, completed_at=101)
    assert body["output"] == [
        {"id": "msg_ab", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
        {"id": "fc_ab_0", "type": "function_call", "status": "completed", "call_id": "call_9",
         "name": "get_weather", "arguments": '{"city":"Paris"}'},
    ]
    assert body["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
                             "output_tokens": 4,
                             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14}
    assert (body["status"], body["completed_at"], body["model"]) == ("completed", 101, "m-2024")
    parsed = Response.model_validate(body)
    assert parsed.output_text == "Checking."


def test_a_length_cut_is_incomplete_and_the_conversation_carries_the_answer_forward():
    chat = {**CHAT, "choices": [{"index": 0, "finish_reason": "length",
                                 "message": {"role": "assistant", "content": "tok0 tok1"}}]}
    body = r.response_body(call(), chat, id="resp_x", created_at=1, completed_at=2)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["completed_at"] is None
    assert r.conversation_after([{"role": "user", "content": "Hi"}], body["output"]) == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "tok0 tok1"}]
    calls = r.response_body(call(), CHAT, id="resp_y", created_at=1, completed_at=2)["output"]
    assert r.conversation_after([], calls)[0]["tool_calls"][0]["id"] == "call_9"


# ---------------------------------------------------------------------------------------- streams


def chunk(delta=None, finish=None, usage=None, choices=True):
    obj = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m-2024",
           "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []}
    if usage is not None:
        obj["usage"] = usage
    return event(msgspec.json.encode(obj))


def run(translator, events):
    out = []
    for ev in events:
        out.extend(translator.feed(ev))
    return out


def decoded(framed):
    name, data = framed.split(b"\n", 1)
    obj = json.loads(data.removeprefix(b"data: "))
    assert name == b"event: " + obj["type"].encode(), "the SSE event name is the event's type"
    return obj


def test_a_text_stream_emits_the_typed_sequence_byte_for_byte():
    tr = ChatToResponsesStream(call(), id="resp_s", created_at=5, now=lambda: 6)
    out = run(tr, [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
                   chunk(finish="stop"), chunk(usage={"prompt_tokens": 3, "completion_tokens": 2}, choices=False),
                   DONE])
    assert out[2] == (b'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
                      b'"output_index":0,"item":{"id":"msg_s","type":"message","status":"in_progress",'
                      b'"role":"assistant","content":[]},"sequence_number":2}\n\n')
    assert out[4] == (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                      b'"item_id":"msg_s","output_index":0,"content_index":0,"delta":"Hel","logprobs":[],'
                      b'"sequence_number":4}\n\n')
    events = [decoded(e) for e in out]
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello" and final["usage"]["total_tokens"] == 5
    assert final["completed_at"] == 6 and final["model"] == "m-2024" and tr.done and tr.response == final
    for e in events:
        EVENTS.validate_python(e)
    assert tr.feed(DONE) == []


def test_tool_calls_stream_as_function_call_items_after_the_text():
    tr = ChatToResponsesStream(call(tools=[TOOL]), id="resp_t", created_at=5, now=lambda: 6)
    call0 = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    out = run(tr, [chunk({"content": "One moment."}), chunk({"tool_calls": [call0]}),
                   chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
                   chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
                   chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "get_weather",
                                                                                   "arguments": "{}"}}]}),
                   chunk(finish="tool_calls"), DONE])
    events = [decoded(e) for e in out]
    kinds = [e["type"] for e in events]
    assert kinds[kinds.index("response.output_item.done") + 1] == "response.output_item.added"
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(d["arguments"], d["output_index"], d["name"]) for d in done] == [
        ('{"city":"Paris"}', 1, "get_weather"), ("{}", 2, "get_weather")]
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call", "function_call"]
    assert final["output"][1] == {"id": "fc_t_0", "type": "function_call", "status": "completed",
                                  "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    for e in events:
        EVENTS.validate_python(e)


def test_a_length_cut_ends_with_response_incomplete():
    tr = ChatToResponsesStream(call(), id="resp_l", created_at=5, now=lambda: 6)
    events = [decoded(e) for e in run(tr, [chunk({"content": "a"}), chunk(finish="length"), DONE])]
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_failure_mid_stream_ends_with_error_then_response_failed():
    tr = ChatToResponsesStream(call(), id="resp_f", created_at=5, now=lambda: 6)
    run(tr, [chunk({"content": "a"})])
    events = [decoded(e) for e in tr.fail(UpstreamError("Upstream 'x' broke the stream.", reason="upstream_io"))]
    assert [e["type"] for e in events] == ["error", "response.failed"]
    assert events[0]["code"] == "bad_gateway" and events[0]["param"] is None
    assert events[1]["response"]["error"] == {"code": "server_error", "message": "Upstream 'x' broke the stream."}
    assert events[1]["response"]["status"] == "failed" and tr.done and tr.fail(Overloaded("x")) == []
    for e in events:
        EVENTS.validate_python(e)


def test_a_failure_before_any_content_still_opens_the_stream():
    tr = ChatToResponsesStream(call(), id="resp_g", created_at=5, now=lambda: 6)
    kinds = [decoded(e)["type"] for e in tr.fail(Overloaded("busy", status=429))]
    assert kinds == ["response.created", "response.in_progress", "error", "response.failed"]


def test_an_undecodable_chunk_is_an_upstream_error():
    tr = ChatToResponsesStream(call(), id="resp_u", created_at=5, now=lambda: 6)
    with pytest.raises(UpstreamError):
        tr.feed(b"data: {nope\n\n")


@pytest.mark.parametrize("chat", [
    {"choices": []},
    {"choices": ["x"]},
    {"choices": [{"message": "text"}]},
    {"choices": [{"message": {"tool_calls": [{"id": "c"}]}}]},
    {"choices": [{"message": {"tool_calls": "x"}}]},
])
def test_a_malformed_chat_completion_is_a_502_not_a_crash(chat):
    with pytest.raises(UpstreamError) as info:
        r.response_body(call(), chat, id="resp_m", created_at=1, completed_at=2)
    assert info.value.status == 502


@pytest.mark.parametrize("delta", [[1], "text"])
def test_a_malformed_delta_is_an_upstream_error(delta):
    tr = ChatToResponsesStream(call(), id="resp_d", created_at=5, now=lambda: 6)
    with pytest.raises(UpstreamError):
        tr.feed(event(msgspec.json.encode({"choices": [{"index": 0, "delta": delta}]})))


def test_odd_but_harmless_chunks_are_ignored():
    tr = ChatToResponsesStream(call(), id="resp_o", created_at=5, now=lambda: 6)
    out = run(tr, [chunk({"content": None, "tool_calls": None}), chunk({"tool_calls": [{"index": 0, "function": 5}]}),
                   event(b"[1, 2]"), DONE])
    assert decoded(out[-1])["type"] == "response.completed"
