import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from seawall.core.errors import InvalidRequest, Overloaded
from seawall.providers import openai
from seawall.providers.sse import DONE, EventSplitter, data_of


def _body(**fields):
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return msgspec.json.encode({k: v for k, v in base.items() if v is not ...})


def test_parse_chat_reads_gateway_fields():
    p = openai.parse_chat(_body(stream=True, stream_options={"include_usage": True}, max_tokens=7,
                                service_tier="flex"))
    assert (p.model, p.stream, p.include_usage, p.max_tokens, p.service_tier) == ("m", True, True, 7, "flex")
    assert p.estimated_prompt_tokens > 0


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (_body(model=...), "model"),
        (_body(model=""), "model"),
        (_body(messages=[]), "messages"),
        (_body(messages="hi"), "messages"),
        (_body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
        (_body(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
        (_body(max_tokens="10"), "max_tokens"),
        (_body(max_tokens=0), "max_tokens"),
        (_body(max_tokens=True), "max_tokens"),
        (_body(stream="yes"), "stream"),
        (_body(stream_options={"include_usage": True}), "stream_options"),
        (_body(stream=True, stream_options={"include_usage": 1}), "stream_options.include_usage"),
        (_body(temperature=3), "temperature"),
        (_body(service_tier="gold"), "service_tier"),
    ],
)
def test_parse_chat_names_the_bad_field(raw, param):
    with pytest.raises(InvalidRequest) as exc:
        openai.parse_chat(raw)
    assert exc.value.param == param and exc.value.status == 400


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,2]", b"\xff\xfe{}", b'{"model": "\xc3\x28"}', b"null"])
def test_parse_chat_rejects_non_objects_and_bad_bytes(raw):
    with pytest.raises(InvalidRequest) as exc:
        openai.parse_chat(raw)
    assert exc.value.code == "invalid_json"


def test_parse_embeddings():
    assert openai.parse_embeddings(b'{"model":"e","input":["a","b"]}').model == "e"
    for bad in (b'{"model":"e"}', b'{"model":"e","input":[]}', b'{"model":"e","input":{"a":1}}'):
        with pytest.raises(InvalidRequest) as exc:
            openai.parse_embeddings(bad)
        assert exc.value.param == "input"


def test_error_body_is_openai_shape():
    err = Overloaded("busy", retry_after_s=2)
    body = msgspec.json.decode(openai.error_body(err))
    assert body == {"error": {"message": "busy", "type": "service_unavailable", "param": None,
                              "code": "overloaded"}}
    ev = openai.error_event(err)
    assert ev.startswith(b"data: {") and ev.endswith(b"\n\n")


def test_chunk_shapes():
    c = msgspec.json.decode(openai.chunk(id="x", created=1, model="m", content="hi"))
    assert c["object"] == "chat.completion.chunk" and c["choices"][0]["delta"] == {"content": "hi"}
    u = msgspec.json.decode(openai.chunk(id="x", created=1, model="m", no_choices=True,
                                         usage={"prompt_tokens": 1, "completion_tokens": 2,
                                                "total_tokens": 3}))
    assert u["choices"] == [] and u["usage"]["total_tokens"] == 3


def test_sse_splitter_handles_partial_and_crlf():
    s = EventSplitter()
    assert s.feed(b"data: {\"a\"") == []
    assert s.feed(b":1}\r\n\r\ndata: [DO") == [b'data: {"a":1}\n\n']
    assert s.feed(b"NE]\n\n") == [DONE]
    assert data_of(b"event: x\ndata: 1\ndata: 2\n\n") == b"1\n2"


def test_sse_splitter_bounds_memory():
    s = EventSplitter(max_event_bytes=10)
    with pytest.raises(ValueError):
        s.feed(b"data: " + b"x" * 100)


def test_bodies_the_gateway_builds_have_a_string_system_fingerprint():
    """OpenAI's schema types it as a string; strict clients reject a null."""
    whole = openai.completion(id="c", created=1, model="m", content="hi", finish_reason="stop",
                              prompt_tokens=1, completion_tokens=1)
    part = openai.chunk(id="c", created=1, model="m", content="hi")
    assert ChatCompletion.model_validate_json(whole).system_fingerprint == openai.SYSTEM_FINGERPRINT
    assert ChatCompletionChunk.model_validate_json(part).system_fingerprint == openai.SYSTEM_FINGERPRINT
    assert all(isinstance(msgspec.json.decode(b)["system_fingerprint"], str) for b in (whole, part))


_EVENTS = st.lists(st.binary(min_size=1, max_size=12).map(lambda b: b.replace(b"\r", b"x").replace(b"\n", b"y")),
                   min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(_EVENTS, st.sampled_from([b"\n", b"\r\n", b"\r"]), st.lists(st.integers(0, 200), max_size=8))
def test_sse_splitter_is_blind_to_chunk_boundaries(payloads, eol, cuts):
    """However the bytes are cut into reads (a CRLF split in two included), the same events come out,
    for LF, CRLF and CR line ends."""
    wire = b"".join(b"data: " + p + eol + eol for p in payloads) + b"data: tail"
    points = sorted({min(c, len(wire)) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    splitter = EventSplitter()
    events = [e for piece in pieces for e in splitter.feed(piece)]
    assert [data_of(e) for e in events] == payloads
    assert all(e.endswith(b"\n\n") and b"\r" not in e for e in events)


def test_a_crlf_split_across_two_reads_is_not_an_event_boundary():
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r") == []
    assert splitter.feed(b"\ndata: b\r\n\r\n") == [b"data: a\ndata: b\n\n"]
