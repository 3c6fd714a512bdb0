"""The guard's stage 1: quality on the labelled set, cost per request, and streaming added delay.

1. Precision and recall per category on bench/data/safety_eval.jsonl (>= 300 items, hard
   negatives included; regenerate with bench/data/make_safety_eval.py).
2. Stage-1 overhead per request, as the guard policy pays it (text out of a chat body, one
   Hyperscan pass, the decision), for 2 KB and 32 KB prompts: p50 and p99 of many single calls.
   Targets (issue 14): p99 <= 0.5 ms at 2 KB and <= 3 ms at 32 KB on one core. Beside it, the
   engines considered for the same rule table: RE2's ``Set`` (google-re2, if installed: it says
   which rules match, not where, so spans need a second pass) and a loop of Python ``re``.
3. guard_out on a stream: CPU added per streamed event, and what the window holds back.

    python bench/safety.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _lab import table, write_results
from seawall.algorithms.guard import GuardRules, after_stage1
from seawall.core.types import Operation
from seawall.edges.server import tune_gc
from seawall.providers import openai
from seawall.providers.sse import DONE, event
from seawall.safety.engine import Stage1
from seawall.safety.rules import CATEGORIES, RULES
from seawall.safety.stream import guard_stream
from seawall.safety.text import prompt_texts
from seawall.safety.window import OutputWindow

DATA = Path(__file__).resolve().parent / "data" / "safety_eval.jsonl"
PROSE = [json.loads(line)["text"] for line in DATA.read_text().splitlines()
         if json.loads(line)["kind"] in ("benign", "hard_negative")]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def prompt_of(size: int) -> str:
    """Realistic prose (benign prompts and hard negatives, numbers included) up to ``size`` bytes."""
    out: list[str] = []
    n = 0
    i = 0
    while n < size:
        t = PROSE[i % len(PROSE)]
        out.append(t)
        n += len(t) + 1
        i += 1
    return " ".join(out)[:size]


def evaluate(stage1: Stage1, rules: GuardRules) -> tuple[str, dict[str, tuple[float, float]]]:
    items = [json.loads(line) for line in DATA.read_text().splitlines()]
    rows = []
    scores = {}
    for cat in CATEGORIES:
        tp = fp = fn = 0
        for item in items:
            found = {f.category for f in stage1.scan(item["text"].encode()) if f.score >= rules.uncertain_score}
            hit, want = cat in found, cat in item["labels"]
            tp += hit and want
            fp += hit and not want
            fn += want and not hit
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        scores[cat] = (precision, recall)
        rows.append([cat, tp + fn, tp, fp, fn, f"{precision:.3f}", f"{recall:.3f}"])
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    body = (f"{len(items)} items ({summary}); a hit counts at score >= {rules.uncertain_score}.\n\n"
            + table(["category", "positives", "true pos", "false pos", "false neg", "precision", "recall"], rows))
    return body, scores


def timed(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(200, n)):
        fn()
    out = []
    perf = time.perf_counter
    for _ in range(n):
        t0 = perf()
        fn()
        out.append(perf() - t0)
    return out


def overhead(stage1: Stage1, rules: GuardRules, n: int) -> tuple[str, dict[int, float]]:
    rows = []
    p99s = {}
    try:
        import re2  # type: ignore[import-not-found]
    except ImportError:
        re2 = None
    pats = [re.compile(r.pattern.encode(), re.I if r.caseless else 0) for r in RULES]
    for size in (2048, 32768):
        body = {"model": "m", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                           {"role": "user", "content": prompt_of(size)}]}

        def guard_in(body: dict[str, object] = body) -> object:
            untrusted, _ = prompt_texts(Operation.CHAT, body)
            return after_stage1(stage1.scan("\n".join(untrusted).encode()), rules)

        xs = timed(guard_in, n)
        p99s[size] = pct(xs, 0.99) * 1e3
        rows.append([f"{size // 1024} KB", "guard_in stage 1 (Hyperscan)", f"{pct(xs, 0.5) * 1e6:.1f}",
                     f"{pct(xs, 0.99) * 1e6:.1f}"])
        data = "\n".join(prompt_texts(Operation.CHAT, body)[0]).encode()
        if re2 is not None:
            rs = re2.Set.SearchSet(re2.Options())
            for r in RULES:
                rs.Add(("(?i)" if r.caseless else "") + r.pattern.replace(r"\s", r"[ \t\n\r\f\v]"))
            rs.Compile()
            xs = timed(lambda rs=rs, data=data: rs.Match(data), n)
            rows.append([f"{size // 1024} KB", "RE2 Set, match only (no spans)", f"{pct(xs, 0.5) * 1e6:.1f}",
                         f"{pct(xs, 0.99) * 1e6:.1f}"])
        xs = timed(lambda data=data: [p.search(data) for p in pats], max(50, n // 20))
        rows.append([f"{size // 1024} KB", "Python re, one pass per rule", f"{pct(xs, 0.5) * 1e6:.1f}",
                     f"{pct(xs, 0.99) * 1e6:.1f}"])
    return table(["prompt", "engine", "p50 µs", "p99 µs"], rows), p99s


async def streaming(stage1: Stage1, events_n: int, rounds: int) -> str:
    pieces = (prompt_of(events_n * 6).split(" ") * 2)[:events_n]
    framed = [event(openai.chunk(id="c", created=1, model="m", content=p + " ")) for p in pieces] + [DONE]

    def stops(text: str) -> list[object]:
        return [f for f in stage1.scan(text.encode()) if f.category in ("secret", "pii")]

    async def source() -> object:
        for f in framed:
            yield f

    async def drain(stream: object) -> tuple[float, int]:
        t0 = time.perf_counter()
        first = -1
        i = 0
        async for _ in stream:  # type: ignore[attr-defined]
            if first < 0:
                first = i
            i += 1
        return time.perf_counter() - t0, first

    rows = []
    base = [(await drain(source()))[0] for _ in range(rounds)]
    for window_tokens, lookahead in ((8, 2), (32, 8)):
        times = []
        for _ in range(rounds):
            win = OutputWindow(stops, window_chars=window_tokens * 4, overlap_chars=32, lookahead_chars=lookahead * 4)
            took, _ = await drain(guard_stream(source(), win, "chat", lambda found: None))
            times.append(took)
        per_event_us = (pct(times, 0.5) - pct(base, 0.5)) / len(framed) * 1e6
        # The first text leaves once one window (minus the lookahead) is checked: at ~4 characters
        # a token, that is this many tokens after the upstream produced the first one.
        held_tokens = window_tokens
        rows.append([window_tokens, lookahead, f"{per_event_us:.1f}", held_tokens,
                     f"{held_tokens / 50 * 1000:.0f}", f"{(window_tokens + lookahead) / 50 * 1000:.0f}"])
    return table(["window tokens", "lookahead tokens", "CPU added per event µs", "first text held (tokens)",
                  "added TTFT at 50 tok/s (ms)", "max held-back at 50 tok/s (ms)"], rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    tune_gc()  # the collector settings `seawall run` uses (edges/server.py), so pauses are the gateway's
    stage1 = Stage1()
    rules = GuardRules()
    quality, _ = evaluate(stage1, rules)
    cost, p99s = overhead(stage1, rules, 2000 if args.quick else 20000)
    stream = asyncio.run(streaming(stage1, 500, 5 if args.quick else 30))
    verdict = (f"Targets: p99 <= 0.5 ms at 2 KB ({p99s[2048]:.3f} ms: "
               f"{'met' if p99s[2048] <= 0.5 else 'MISSED'}), <= 3 ms at 32 KB ({p99s[32768]:.3f} ms: "
               f"{'met' if p99s[32768] <= 3 else 'MISSED'}).")
    body = "\n\n".join([
        "### Quality of stage 1 on the labelled set", quality,
        "### Stage-1 overhead per request (one process, one core)", cost, verdict,
        "### guard_out on a 500-event chat stream", stream,
        "The set was written by the same session as the rules: read the figures as a regression "
        "floor, not as an independent benchmark."])
    print(body)
    write_results("safety", "Safety stage 1 and guard_out (bench/safety.py)", body, sys.argv)


if __name__ == "__main__":
    main()
