import msgspec
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from seawall.core.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from seawall.providers import anthropic
from seawall.providers.sse import EventSplitter, data_of

EVENTS = TypeAdapter(RawMessageStreamEvent)


def _body(**fields):
    base = {"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return msgspec.json.encode({k: v for k, v in base.items() if v is not ...})


def _named(framed: bytes) -> tuple[str, dict]:
    name = framed.split(b"\n", 1)[0].removeprefix(b"event: ").decode()
    return name, msgspec.json.decode(data_of(framed))


# ------------------------------------------------------------------------------------------ parsing


def test_parse_messages_reads_gateway_fields():
    raw = _body(
        stream=True,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        temperature=1,
        tools=[
            {"name": "f", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        tool_choice={"type": "tool", "name": "f"},
        stop_sequences=["END"],
        metadata={"user_id": "u1"},
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
    )
    p = anthropic.parse_messages(raw)
    assert (p.model, p.stream, p.max_tokens) == ("claude", True, 64)
    assert p.estimated_prompt_tokens == len(raw) // 4
    assert p.body["stop_sequences"] == ["END"]


def test_parse_messages_stream_defaults_false():
    assert anthropic.parse_messages(_body()).stream is False


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (_body(model=...), "model"),
        (_body(model=3), "model"),
        (_body(max_tokens=...), "max_tokens"),
        (_body(max_tokens=0), "max_tokens"),
        (_body(max_tokens="5"), "max_tokens"),
        (_body(max_tokens=True), "max_tokens"),
        (_body(max_tokens=1.5), "max_tokens"),
        (_body(messages=...), "messages"),
        (_body(messages=[]), "messages"),
        (_body(messages=["hi"]), "messages.0"),
        (_body(messages=[{"role": "system", "content": "x"}]), "messages.0.role"),
        (
            _body(messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]),
            "messages.1.role",
        ),
        (_body(messages=[{"role": "user"}]), "messages.0.content"),
        (_body(messages=[{"role": "user", "content": {"text": "x"}}]), "messages.0.content"),
        (_body(messages=[{"role": "user", "content": [{"text": "x"}]}]), "messages.0.content.0"),
        (
            _body(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]),
            "messages.0.content.0.text",
        ),
        (_body(system=5), "system"),
        (_body(system=[{"type": "image"}]), "system.0"),
        (_body(stream="yes"), "stream"),
        (_body(temperature=1.5), "temperature"),
        (_body(temperature=-0.1), "temperature"),
        (_body(temperature="hot"), "temperature"),
        (_body(top_p=2), "top_p"),
        (_body(top_k=-1), "top_k"),
        (_body(tools={"name": "f"}), "tools"),
        (_body(tools=[{"input_schema": {}}]), "tools.0.name"),
        (_body(tools=[{"name": "f"}]), "tools.0.input_schema"),
        (_body(tool_choice={"type": "required"}), "tool_choice.type"),
        (_body(tool_choice={"type": "tool"}), "tool_choice.name"),
        (_body(stop_sequences="END"), "stop_sequences"),
        (_body(stop_sequences=["a", 1]), "stop_sequences"),
        (_body(metadata="x"), "metadata"),
        (_body(metadata={"user_id": 7}), "metadata.user_id"),
    ],
)
def test_parse_messages_names_the_bad_field(raw, param):
    with pytest.raises(InvalidRequest) as exc:
        anthropic.parse_messages(raw)
    assert exc.value.param == param and exc.value.status == 400
    assert exc.value.message.startswith(f"{param}: ")


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,2]", b"\xff\xfe{}", b'{"model": "\xc3\x28"}', b"null"])
def test_parse_messages_rejects_non_objects_and_bad_bytes(raw):
    with pytest.raises(InvalidRequest) as exc:
        anthropic.parse_messages(raw)
    assert exc.value.code == "invalid_json"


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("err", "error_type", "status"),
    [
        (InvalidRequest("x"), "invalid_request_error", 400),
        (AuthenticationFailed("x"), "authentication_error", 401),
        (GatewayError("x", status=402), "billing_error", 402),
        (PermissionDenied("x"), "permission_error", 403),
        (ModelNotFound("x"), "not_found_error", 404),
        (PayloadTooLarge("x"), "request_too_large", 413),
        (GatewayError("x", status=422), "invalid_request_error", 422),
        (RateLimited("x"), "rate_limit_error", 429),
        (GatewayError("x"), "api_error", 500),
        (UpstreamError("x"), "api_error", 502),
        (Overloaded("x"), "overloaded_error", 529),
        (GatewayError("x", status=503), "overloaded_error", 529),
        (UpstreamTimeout("x"), "api_error", 504),
        (GatewayError("x", status=529), "overloaded_error", 529),
    ],
)
def test_error_type_and_status_table(err, error_type, status):
    assert anthropic.error_type(err) == error_type
    assert anthropic.status_for(err) == status


def test_error_body_is_byte_exact_anthropic_shape():
    err = InvalidRequest("max_tokens: is required", param="max_tokens")
    assert anthropic.error_body(err) == (
        b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: is required"}}'
    )
    assert anthropic.error_body(Overloaded("Overloaded"), request_id="req_1") == (
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}'
    )
    parsed = ErrorResponse.model_validate_json(anthropic.error_body(Overloaded("busy"), request_id="r"))
    assert (parsed.error.type, parsed.error.message, parsed.request_id) == ("overloaded_error", "busy", "r")


def test_error_event_is_byte_exact():
    assert anthropic.error_event(Overloaded("Overloaded")) == (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )


# ----------------------------------------------------------------------------------------- messages


def test_message_is_byte_exact_and_sdk_valid():
    raw = anthropic.message(
        id="msg_1", model="claude", content="Hello", stop_reason="end_turn", input_tokens=10, output_tokens=2
    )
    assert raw == (
        b'{"id":"msg_1","type":"message","role":"assistant","model":"claude",'
        b'"content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,'
        b'"usage":{"input_tokens":10,"output_tokens":2}}'
    )
    msg = Message.model_validate_json(raw)
    assert msg.content[0].type == "text" and msg.usage.output_tokens == 2


def test_message_with_tool_use_blocks():
    blocks = [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]
    raw = anthropic.message(
        id="m", model="c", content=blocks, stop_reason="tool_use", input_tokens=1, output_tokens=1
    )
    msg = Message.model_validate_json(raw)
    assert msg.stop_reason == "tool_use" and msg.content[0].type == "tool_use"
    assert msg.content[0].input == {"a": 1}


# ------------------------------------------------------------------------------------------- stream


def test_stream_builders_are_byte_exact():
    assert anthropic.message_start(id="msg_1", model="claude", input_tokens=25) == (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,'
        b'"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
    )
    assert anthropic.text_block_start(0) == (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
    )
    assert anthropic.tool_use_block_start(1, id="toolu_1", name="get_weather") == (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,'
        b'"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}\n\n'
    )
    assert anthropic.PING == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert anthropic.text_delta(0, 'say "hi"\n') == (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"say \\"hi\\"\\n"}}\n\n'
    )
    assert anthropic.input_json_delta(12, '{"city": "Pa') == (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":12,'
        b'"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}}\n\n'
    )
    assert anthropic.content_block_stop(3) == (
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":3}\n\n'
    )
    assert anthropic.message_delta(stop_reason="end_turn", output_tokens=15) == (
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        b'"stop_sequence":null},"usage":{"output_tokens":15}}\n\n'
    )
    assert anthropic.message_delta(
        stop_reason="stop_sequence", stop_sequence="END", output_tokens=2, input_tokens=9
    ) == (
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"stop_sequence",'
        b'"stop_sequence":"END"},"usage":{"input_tokens":9,"output_tokens":2}}\n\n'
    )
    assert anthropic.MESSAGE_STOP == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def test_text_stream_sequence_is_sdk_valid_and_reassembles():
    events = anthropic.text_stream(
        id="msg_1",
        model="claude",
        pieces=["Hel", "lo", " wörld"],
        stop_reason="end_turn",
        input_tokens=5,
        output_tokens=3,
    )
    names = [_named(e)[0] for e in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = []
    for framed in events:
        name, data = _named(framed)
        assert data["type"] == name
        if name == "ping":
            continue
        parsed = EVENTS.validate_python(data)
        if parsed.type == "content_block_delta":
            text.append(parsed.delta.text)
    assert "".join(text) == "Hello wörld"
    # The framing survives the splitter the edges use, byte for byte.
    splitter = EventSplitter()
    wire = b"".join(events)
    got = [e for i in range(0, len(wire), 7) for e in splitter.feed(wire[i : i + 7])]
    assert got == events
