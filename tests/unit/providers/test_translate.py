import json

import msgspec
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from seawall.core.errors import InvalidRequest, UpstreamError
from seawall.core.types import Usage
from seawall.providers import translate as t
from seawall.providers.sse import DONE, EventSplitter, data_of

EVENTS = TypeAdapter(RawMessageStreamEvent)
WEATHER_SCHEMA = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
IMAGE = "data:image/png;base64,iVBORw0KGgo="

OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER_SCHEMA},
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]

OPENAI_CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Weather and time in Paris?"},
            {"type": "image_url", "image_url": {"url": IMAGE}},
        ],
    },
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": "18C, clear"},
    {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "14:02"}]},
    {"role": "user", "content": "Thanks. Tomorrow?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_c",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_c", "content": "20C"},
    {"role": "assistant", "content": "20C tomorrow."},
    {"role": "user", "content": "Great"},
]


# ------------------------------------------------------------------------------------------ requests


def test_openai_request_to_anthropic_exact():
    body = {
        "model": "gpt-4o",
        "messages": OPENAI_CONVERSATION,
        "tools": OPENAI_TOOLS,
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_completion_tokens": 300,
        "stop": "END",
        "temperature": 1.4,
        "top_p": 0.9,
        "stream": True,
        "user": "u-1",
        "seed": 7,
        "presence_penalty": 0.5,
    }
    assert t.openai_request_to_anthropic(body) == {
        "model": "gpt-4o",
        "max_tokens": 300,
        "system": "You are terse.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather and time in Paris?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_a",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                    {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_a", "content": "18C, clear"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_b",
                        "content": [{"type": "text", "text": "14:02"}],
                    },
                    {"type": "text", "text": "Thanks. Tomorrow?"},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_c",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_c", "content": "20C"}]},
            {"role": "assistant", "content": "20C tomorrow."},
            {"role": "user", "content": "Great"},
        ],
        "stop_sequences": ["END"],
        "temperature": 1,
        "top_p": 0.9,
        "tools": [
            {"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }


def test_openai_request_defaults_and_system_hoisting():
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "rule one"},
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "system", "content": [{"type": "text", "text": "rule two"}]},
        ],
        "max_tokens": 9,
        "temperature": 0.3,
    }
    out = t.openai_request_to_anthropic(body)
    assert out["max_tokens"] == 9 and out["temperature"] == 0.3
    assert out["system"] == [{"type": "text", "text": "rule one"}, {"type": "text", "text": "rule two"}]
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert "stream" not in out and "tools" not in out
    one = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert t.openai_request_to_anthropic(one)["max_tokens"] == t.DEFAULT_MAX_TOKENS


def test_tool_result_blocks_come_first_in_a_merged_user_turn():
    body = {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "user", "content": "meanwhile"},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
    }
    user = t.openai_request_to_anthropic(body)["messages"][1]
    assert [b["type"] for b in user["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", None, {"type": "any"}),
        ("none", False, {"type": "none"}),
        ({"type": "function", "function": {"name": "get_time"}}, None, {"type": "tool", "name": "get_time"}),
    ],
)
def test_tool_choice_to_anthropic(choice, parallel, expected):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": OPENAI_TOOLS}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert t.openai_request_to_anthropic(body).get("tool_choice") == expected


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_untranslatable_openai_requests_name_the_field(fields, param):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **fields}
    with pytest.raises(t.Untranslatable) as exc:
        t.openai_request_to_anthropic(body)
    assert exc.value.param == param and isinstance(exc.value, InvalidRequest)


ANTHROPIC_BODY = {
    "model": "claude",
    "max_tokens": 512,
    "system": "You are terse.",
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "need tool", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "text", "text": "And a picture?"},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
            ],
        },
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather now",
            "input_schema": WEATHER_SCHEMA,
            "cache_control": {"type": "ephemeral"},
        }
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_k": 40,
    "metadata": {"user_id": "u-2"},
    "stream": True,
}


def test_anthropic_request_to_openai_exact():
    assert t.anthropic_request_to_openai(ANTHROPIC_BODY) == {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And a picture?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            },
        ],
        "max_completion_tokens": 512,
        "stop": ["END"],
        "temperature": 0.5,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather now",
                    "parameters": WEATHER_SCHEMA,
                },
            }
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "user": "u-2",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_anthropic_system_blocks_and_server_tools():
    body = {
        "model": "c",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "system": [
            {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "b"},
        ],
    }
    assert t.anthropic_request_to_openai(body)["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    }
    with pytest.raises(t.Untranslatable) as exc:
        t.anthropic_request_to_openai(
            {**body, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
        )
    assert exc.value.param == "tools.0.type"
    doc = {"role": "user", "content": [{"type": "document", "source": {}}]}
    with pytest.raises(t.Untranslatable) as exc:
        t.anthropic_request_to_openai({**body, "messages": [doc]})
    assert exc.value.param == "messages.0.content.0.type"


def _normal(messages):
    """OpenAI messages reduced to their meaning: parts as tuples, arguments decoded."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            parts = (("text", content),) if content else ()
        else:
            parts = tuple(
                ("text", p["text"]) if p["type"] == "text" else ("image", p["image_url"]["url"])
                for p in content or []
            )
        calls = tuple(
            (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"))
            for c in m.get("tool_calls") or []
        )
        out.append((m["role"], parts, calls, m.get("tool_call_id")))
    return out


def test_round_trip_openai_anthropic_openai_preserves_meaning():
    body = {
        "model": "m",
        "messages": OPENAI_CONVERSATION,
        "tools": OPENAI_TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "max_completion_tokens": 100,
        "stop": ["X", "Y"],
        "temperature": 0.2,
    }
    back = t.anthropic_request_to_openai(t.openai_request_to_anthropic(body))
    assert _normal(back["messages"]) == _normal(OPENAI_CONVERSATION)
    assert back["tools"] == OPENAI_TOOLS
    assert (back["tool_choice"], back["parallel_tool_calls"]) == (body["tool_choice"], False)
    assert (back["max_completion_tokens"], back["stop"], back["temperature"]) == (100, ["X", "Y"], 0.2)


def test_round_trip_anthropic_openai_anthropic_is_exact_minus_dropped_fields():
    body = {k: v for k, v in ANTHROPIC_BODY.items() if k != "top_k"}
    body["tools"] = [{k: v for k, v in body["tools"][0].items() if k != "cache_control"}]
    body["messages"] = [
        body["messages"][0],
        {"role": "assistant", "content": body["messages"][1]["content"][1:]},
        body["messages"][2],
    ]
    assert t.openai_request_to_anthropic(t.anthropic_request_to_openai(body)) == body


# ----------------------------------------------------------------------------------------- responses


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_finish_reason_table(stop_reason, finish_reason):
    assert t.finish_reason_from_anthropic(stop_reason) == finish_reason


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reason_table(finish_reason, stop_reason):
    assert t.stop_reason_from_openai(finish_reason) == stop_reason


def test_anthropic_response_to_openai():
    msg = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 20,
            "output_tokens": 7,
        },
    }
    out = t.anthropic_response_to_openai(msg, model="gpt-alias", created=1700000000)
    assert out == {
        "id": "msg_1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-alias",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me look.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 35,
            "completion_tokens": 7,
            "total_tokens": 42,
            "prompt_tokens_details": {"cached_tokens": 20},
        },
        "system_fingerprint": "fp_seawall",
    }
    parsed = ChatCompletion.model_validate(out)
    assert parsed.choices[0].message.tool_calls[0].function.name == "get_weather"
    only_tool = t.anthropic_response_to_openai({**msg, "content": msg["content"][2:]}, model="m")
    assert only_tool["choices"][0]["message"]["content"] is None


def test_openai_response_to_anthropic():
    resp = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "logprobs": None,
                "message": {
                    "role": "assistant",
                    "content": "On it.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                        }
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 9,
            "total_tokens": 39,
            "prompt_tokens_details": {"cached_tokens": 12},
        },
    }
    out = t.openai_response_to_anthropic(resp, model="claude-alias")
    assert out == {
        "id": "chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "claude-alias",
        "content": [
            {"type": "text", "text": "On it."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 18, "output_tokens": 9, "cache_read_input_tokens": 12},
    }
    assert Message.model_validate(out).content[1].input == {"location": "Paris"}
    # Usage survives the trip back: prompt tokens include the cached ones again.
    again = t.anthropic_response_to_openai(out, model="gpt-4o")
    assert again["usage"]["prompt_tokens"] == 30 and again["usage"]["total_tokens"] == 39


def test_openai_response_to_anthropic_rejects_malformed_upstream():
    with pytest.raises(UpstreamError):
        t.openai_response_to_anthropic({"choices": []}, model="m")
    bad = {
        "choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}]}}]
    }
    with pytest.raises(UpstreamError) as exc:
        t.openai_response_to_anthropic(bad, model="m")
    assert exc.value.status == 502


# ------------------------------------------------------------------------------------------- streams

ANTHROPIC_WIRE = "\r\n".join(
    line
    for line in """event: message_start
data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":28,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants weather."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let me check "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"the weather — and time."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\": \\"San Fra"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\\", \\"unit\\": \\"fahrenheit\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_01B","name":"get_time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\\"tz\\": \\"PST\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: ping
data: {"type": "ping"}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

""".split("\n")  # noqa: E501
).encode()


def _split(wire: bytes, step: int) -> list[bytes]:
    splitter = EventSplitter()
    return [e for i in range(0, len(wire), step) for e in splitter.feed(wire[i : i + step])]


def test_anthropic_stream_to_openai_chunks_parse_and_reassemble():
    conv = t.AnthropicToOpenAIStream("gpt-alias", "chatcmpl-9", 1700000000, include_usage=True)
    out = [chunk for event in _split(ANTHROPIC_WIRE, 13) for chunk in conv.feed(event)]
    assert out[-1] == DONE and out.count(DONE) == 1
    state = ChatCompletionStreamState()
    chunks = []
    for framed in out[:-1]:
        assert framed.startswith(b"data: ") and framed.endswith(b"\n\n")
        chunk = ChatCompletionChunk.model_validate(json.loads(data_of(framed)))
        assert (chunk.id, chunk.model, chunk.object) == ("chatcmpl-9", "gpt-alias", "chat.completion.chunk")
        chunks.append(chunk)
        state.handle_chunk(chunk)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Okay, let me check the weather — and time."
    args: dict[int, str] = {}
    for c in chunks:
        for call in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            args[call.index] = args.get(call.index, "") + (call.function.arguments or "")
    assert json.loads(args[0]) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert json.loads(args[1]) == {"tz": "PST"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 500
    assert chunks[-1].usage.completion_tokens == 89
    # The SDK's own accumulator agrees.
    final = state.get_final_completion()
    message = final.choices[0].message
    assert message.content == text and final.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name) for c in message.tool_calls] == [
        ("toolu_01A", "get_weather"),
        ("toolu_01B", "get_time"),
    ]
    assert conv.usage == Usage(500, 89) and conv.done
    assert conv.feed(b'event: ping\ndata: {"type": "ping"}\n\n') == []


def test_anthropic_stream_to_openai_is_byte_exact():
    conv = t.AnthropicToOpenAIStream("m", "c1", 7, include_usage=False)
    wire = [
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg","type":"message",'
        b'"role":"assistant","model":"x","content":[],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hi"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens",'
        b'"stop_sequence":null},"usage":{"output_tokens":1}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    out = [chunk for event in wire for chunk in conv.feed(event)]
    head = (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",'
        b'"system_fingerprint":"fp_seawall",'
    )
    assert out == [
        head + b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
        b'"finish_reason":null}],"usage":null}\n\n',
        head + b'"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],'
        b'"usage":null}\n\n',
        head
        + b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null}\n\n',
        b"data: [DONE]\n\n",
    ]


def test_anthropic_stream_error_event_raises_upstream_error():
    conv = t.AnthropicToOpenAIStream("m", "c", 1)
    conv.feed(
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":1}}}\n\n'
    )
    with pytest.raises(UpstreamError) as exc:
        conv.feed(
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
            b'"message":"Overloaded"}}\n\n'
        )
    assert (exc.value.code, exc.value.message, exc.value.status) == ("overloaded_error", "Overloaded", 502)
    with pytest.raises(UpstreamError):
        conv.feed(b"event: content_block_delta\ndata: {not json\n\n")


def _openai_chunk(delta=None, finish=None, usage=None, choices=True):
    out = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
        if choices
        else [],
        "usage": usage,
    }
    return b"data: " + msgspec.json.encode(out) + b"\n\n"


OPENAI_WIRE = b"".join(
    [
        _openai_chunk({"role": "assistant", "content": "", "refusal": None}),
        _openai_chunk({"content": "Let me "}),
        _openai_chunk({"content": "check — "}),
        _openai_chunk({"content": "now."}),
        _openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"loc'}}]}),
        _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ation": "Paris"}'}}]}),
        _openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    }
                ]
            }
        ),
        _openai_chunk(finish="tool_calls"),
        b": keep-alive comment\n\n",
        _openai_chunk(
            choices=False,
            usage={
                "prompt_tokens": 50,
                "completion_tokens": 20,
                "total_tokens": 70,
                "prompt_tokens_details": {"cached_tokens": 10},
            },
        ),
        DONE,
    ]
)


def test_openai_stream_to_anthropic_events_are_sdk_valid_and_reassemble():
    conv = t.OpenAIToAnthropicStream("claude-alias", "msg_9", input_tokens=42)
    out = [ev for event in _split(OPENAI_WIRE, 11) for ev in conv.feed(event)]
    names, parsed = [], []
    for framed in out:
        name = framed.split(b"\n", 1)[0].removeprefix(b"event: ").decode()
        data = json.loads(data_of(framed))
        assert data["type"] == name
        names.append(name)
        if name != "ping":
            parsed.append(EVENTS.validate_python(data))
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = parsed[0]
    assert (start.message.id, start.message.model, start.message.usage.input_tokens) == (
        "msg_9",
        "claude-alias",
        42,
    )
    blocks: dict[int, dict] = {}
    for ev in parsed:
        if ev.type == "content_block_start":
            blocks[ev.index] = {"block": ev.content_block, "text": "", "json": ""}
        elif ev.type == "content_block_delta":
            if ev.delta.type == "text_delta":
                blocks[ev.index]["text"] += ev.delta.text
            else:
                blocks[ev.index]["json"] += ev.delta.partial_json
    assert blocks[0]["text"] == "Let me check — now."
    assert (blocks[1]["block"].id, blocks[1]["block"].name) == ("call_a", "get_weather")
    assert json.loads(blocks[1]["json"]) == {"location": "Paris"}
    assert (blocks[2]["block"].name, json.loads(blocks[2]["json"])) == ("get_time", {})
    delta = parsed[-2]
    assert delta.delta.stop_reason == "tool_use"
    assert (delta.usage.output_tokens, delta.usage.input_tokens) == (20, 40)
    assert conv.usage == Usage(50, 20) and conv.done


def test_openai_stream_without_usage_or_finish_still_closes_cleanly():
    conv = t.OpenAIToAnthropicStream("c", "msg_1")
    out = conv.feed(_openai_chunk({"content": "Hi"})) + conv.feed(DONE)
    assert out == [
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","model":"c","content":[],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":0,"output_tokens":1}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n',
        b'event: ping\ndata: {"type": "ping"}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"Hi"}}\n\n',
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        b'"stop_sequence":null},"usage":{"output_tokens":0}}\n\n',
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    assert conv.feed(DONE) == []


def test_openai_stream_error_raises_upstream_error():
    conv = t.OpenAIToAnthropicStream("c", "m")
    conv.feed(_openai_chunk({"content": "partial"}))
    with pytest.raises(UpstreamError) as exc:
        conv.feed(
            b'data: {"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}'
            b"\n\n"
        )
    assert (exc.value.code, exc.value.message) == ("rate_limit_exceeded", "Rate limit reached")


def test_streams_chain_back_to_the_same_content():
    """Anthropic -> OpenAI -> Anthropic keeps text, tool ids, names and inputs."""
    a2o = t.AnthropicToOpenAIStream("gpt", "chatcmpl-1", 1, include_usage=True)
    o2a = t.OpenAIToAnthropicStream("claude", "msg_2", input_tokens=1)
    out = [ev for event in _split(ANTHROPIC_WIRE, 64) for mid in a2o.feed(event) for ev in o2a.feed(mid)]
    text, inputs, tools = "", {}, []
    for framed in out:
        data = json.loads(data_of(framed))
        if data["type"] == "content_block_start" and data["content_block"]["type"] == "tool_use":
            tools.append((data["content_block"]["id"], data["content_block"]["name"]))
            inputs[data["index"]] = ""
        elif data["type"] == "content_block_delta":
            if data["delta"]["type"] == "text_delta":
                text += data["delta"]["text"]
            else:
                inputs[data["index"]] += data["delta"]["partial_json"]
    assert text == "Okay, let me check the weather — and time."
    assert tools == [("toolu_01A", "get_weather"), ("toolu_01B", "get_time")]
    assert [json.loads(v) for v in inputs.values()] == [
        {"location": "San Francisco, CA", "unit": "fahrenheit"},
        {"tz": "PST"},
    ]
    assert o2a.usage == Usage(500, 89)
    assert json.loads(data_of(out[-2]))["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize("legacy", [
    {"functions": [{"name": "f", "parameters": {"type": "object"}}]},
    {"function_call": "auto"},
    {"function_call": {"name": "f"}},
])
def test_legacy_functions_are_refused_for_anthropic_not_dropped(legacy):
    """Issue 12 defect 7: dropped, the model would answer as if no function existed."""
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **legacy}
    with pytest.raises(t.Untranslatable) as info:
        t.openai_request_to_anthropic(body)
    assert info.value.status == 400 and info.value.param in legacy and "'tools'" in info.value.message
