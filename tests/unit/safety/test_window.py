"""guard_out: the window only releases checked text, and a flag ends the stream in the client's format."""

import msgspec

from seawall.providers import anthropic, openai
from seawall.providers.sse import DONE, event
from seawall.safety.engine import Stage1
from seawall.safety.stream import guard_stream
from seawall.safety.window import OutputWindow

STAGE1 = Stage1()
SECRET = "AKIAIOSFODNN7EXAMPLE"


def stops(text: str):
    return [f for f in STAGE1.scan(text.encode()) if f.category == "secret"]


def window(w: int = 16, overlap: int = 24, lookahead: int = 8) -> OutputWindow:
    return OutputWindow(stops, window_chars=w, overlap_chars=overlap, lookahead_chars=lookahead)


def test_text_leaves_only_after_a_window_is_checked_and_minus_the_lookahead():
    win = window()
    assert win.feed("hello ") == () and win.released == 0
    assert win.feed("world, how are") == () and win.released == 20 - 8
    assert win.finish() == () and win.released == 20


def test_a_secret_split_across_windows_is_found_in_the_overlap():
    win = window(w=16, overlap=24)
    assert win.feed("the key is AKIAIOSF") == ()  # 19 chars: checked, no whole key yet
    assert win.feed("ODNN7EXAMPLE and more text") != ()


def test_memory_is_bounded_by_the_overlap():
    win = window(w=16, overlap=8, lookahead=4)
    for _ in range(1000):
        win.feed("abcdefgh")
    assert len(win._tail) <= 16 + 8 + 8


def chat_events(pieces):
    out = [event(openai.chunk(id="c1", created=1, model="m", role="assistant", content=""))]
    out += [event(openai.chunk(id="c1", created=1, model="m", content=p)) for p in pieces]
    out += [event(openai.chunk(id="c1", created=1, model="m", finish_reason="stop")), DONE]
    return out


async def run(events, dialect="chat", **kw):
    async def inner():
        for e in events:
            yield e

    flagged = []
    out = b"".join([c async for c in guard_stream(inner(), window(**kw), dialect, flagged.extend)])
    return out, flagged


async def test_a_clean_stream_passes_byte_for_byte():
    events = chat_events(["The answer ", "is forty-two, ", "as everyone knows."])
    out, flagged = await run(events)
    assert out == b"".join(events) and flagged == []


async def test_a_secret_ends_the_chat_stream_with_content_filter():
    events = chat_events(["Sure, the key ", "is AKIA", "IOSFODNN7", "EXAMPLE and ", "that is all."])
    out, flagged = await run(events)
    assert [f.rule for f in flagged] == ["aws_access_key"]
    assert b"IOSFODNN7" not in out and out.endswith(DONE)
    last = msgspec.json.decode(out.split(b"\n\n")[-3][len(b"data: "):])
    assert last["choices"][0]["finish_reason"] == "content_filter" and last["id"] == "c1"


async def test_a_secret_ends_the_anthropic_stream_with_refusal():
    events = anthropic.text_stream(id="msg_1", model="claude", pieces=["Here: ", SECRET[:10], SECRET[10:], " ok"],
                                   stop_reason="end_turn", input_tokens=3, output_tokens=4)
    out, flagged = await run(events, dialect="anthropic", w=8, overlap=24, lookahead=4)
    assert flagged and SECRET[10:].encode() not in out
    assert out.startswith(b"event: message_start") and out.endswith(anthropic.MESSAGE_STOP)
    assert b'"stop_reason":"refusal"' in out
    assert out.count(b"content_block_start") == out.count(b"content_block_stop")  # a valid sequence
