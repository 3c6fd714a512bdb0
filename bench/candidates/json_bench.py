"""JSON candidates: msgspec vs orjson vs stdlib json on OpenAI chat bodies.

Run from the repo root inside the candidate venv:

    python bench/candidates/json_bench.py [--reps 3] [--min-time 0.4]

Bodies: a ~1 KB chat-completion *request* (system + 4 turns, a tool, the usual
sampling knobs) and a ~0.8 KB chat-completion *response*.  For each op the
number of loops is calibrated with timeit.autorange(), then timed `--reps`
times; the table shows the median ns/op (and the min for reference).

Decode ops:  json.loads(bytes), orjson.loads(bytes), msgspec.json.decode to
             plain dict/list, msgspec.json.decode into a typed Struct
             (request: ~6 declared fields, nested Message structs, unknown
             fields ignored; response: id/model/choices/usage structs).
Encode ops:  json.dumps(obj).encode() (bytes, what a server sends),
             orjson.dumps(obj), msgspec.json.encode(obj) for the same dict,
             msgspec.json.encode(struct) for the decoded Struct.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import timeit

import msgspec
import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_bench as sb

REQUEST = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant for an online bookshop. "
         "Answer briefly and cite the catalogue id when you recommend a title."},
        {"role": "user", "content": "I liked 'The Name of the Wind'. What should I read next? "
         "Something with a similar voice, not too long."},
        {"role": "assistant", "content": "You might enjoy 'The Lies of Locke Lamora' "
         "(cat-1183): witty first-person-adjacent narration and a tight heist plot."},
        {"role": "user", "content": "Is it part of a series, and is the series finished? "
         "Also, do you have it in paperback?"},
    ],
    "temperature": 0.7,
    "top_p": 1,
    "max_tokens": 256,
    "stream": False,
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "user": "customer-42f1c9",
    "tools": [{"type": "function", "function": {
        "name": "lookup_stock", "description": "Check stock for a catalogue id",
        "parameters": {"type": "object", "properties": {"id": {"type": "string"}},
                       "required": ["id"]}}}],
    "metadata": {"session": "a1b2c3d4e5f6", "channel": "web"},
}

RESPONSE = {
    "id": "chatcmpl-AZ9xYzAbCdEfGhIjKlMnOpQrStUvWx",
    "object": "chat.completion",
    "created": 1732670000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "Yes - it is book one of the Gentleman Bastard sequence. Two sequels are "
            "out ('Red Seas Under Red Skies', 'The Republic of Thieves'); the series is not "
            "finished yet. We have the paperback in stock (cat-1183-pb), ships in 1-2 days. "
            "Would you like me to reserve a copy for you?",
            "refusal": None,
        },
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {
        "prompt_tokens": 187, "completion_tokens": 74, "total_tokens": 261,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_0ba0d124f1",
}

REQ_BYTES = json.dumps(REQUEST).encode()
RESP_BYTES = json.dumps(RESPONSE).encode()


# Typed views (unknown fields are ignored by default in msgspec).
class Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None = None
    name: str | None = None


class ChatRequest(msgspec.Struct, omit_defaults=True):  # ~6 declared fields
    model: str
    messages: list[Message]
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    user: str | None = None


class Choice(msgspec.Struct):
    index: int
    message: Message
    finish_reason: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(msgspec.Struct):
    id: str
    model: str
    created: int
    choices: list[Choice]
    usage: Usage | None = None


def build_cases():
    dec = msgspec.json.Decoder()
    dec_req = msgspec.json.Decoder(ChatRequest)
    dec_resp = msgspec.json.Decoder(ChatResponse)
    enc = msgspec.json.Encoder()
    req_struct = dec_req.decode(REQ_BYTES)
    resp_struct = dec_resp.decode(RESP_BYTES)
    # sanity: all decoders agree
    assert json.loads(REQ_BYTES) == orjson.loads(REQ_BYTES) == dec.decode(REQ_BYTES)
    assert json.loads(RESP_BYTES) == orjson.loads(RESP_BYTES) == dec.decode(RESP_BYTES)
    assert req_struct.messages[3].role == "user" and resp_struct.usage.total_tokens == 261

    cases = []
    for name, body, obj, struct, sdec in (
        ("request", REQ_BYTES, REQUEST, req_struct, dec_req),
        ("response", RESP_BYTES, RESPONSE, resp_struct, dec_resp),
    ):
        cases += [
            (name, "decode", "json.loads", lambda b=body: json.loads(b)),
            (name, "decode", "orjson.loads", lambda b=body: orjson.loads(b)),
            (name, "decode", "msgspec -> dict", lambda b=body: dec.decode(b)),
            (name, "decode", "msgspec -> Struct", lambda b=body, d=sdec: d.decode(b)),
            (name, "encode", "json.dumps().encode()", lambda o=obj: json.dumps(o).encode()),
            (name, "encode", "orjson.dumps", lambda o=obj: orjson.dumps(o)),
            (name, "encode", "msgspec dict", lambda o=obj: enc.encode(o)),
            (name, "encode", "msgspec Struct", lambda s=struct: enc.encode(s)),
        ]
    return cases


def time_op(fn, reps: int, min_time: float) -> tuple[float, float]:
    t = timeit.Timer(fn)
    n, _ = t.autorange()  # loops taking >= 0.2 s
    n = max(1, int(n * min_time / 0.2))
    per = [x / n * 1e9 for x in t.repeat(repeat=reps, number=n)]
    return statistics.median(per), min(per)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.4, help="seconds per repetition")
    a = ap.parse_args()
    print(f"# json_bench: request {len(REQ_BYTES)} B, response {len(RESP_BYTES)} B; "
          f"msgspec {msgspec.__version__}, orjson {orjson.__version__}; "
          f"median of {a.reps} reps, ~{a.min_time:g}s each")
    print()
    print("| body | op | library | ns/op (median) | ns/op (min) | speed-up vs json | bg CPU % |")
    print("|---|---|---|---:|---:|---:|---:|")
    base = {}
    for body, op, lib, fn in build_cases():
        sb.wait_quiet(20)
        g = sb.BgLoad()
        m, lo = time_op(fn, a.reps, a.min_time)
        bg = g.pct()
        base.setdefault((body, op), m)
        print(f"| {body} | {op} | {lib} | {m:,.0f} | {lo:,.0f} | {base[(body, op)] / m:.1f}x "
              f"| {bg:.0f} |", flush=True)


if __name__ == "__main__":
    main()
